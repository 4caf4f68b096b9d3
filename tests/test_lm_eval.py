"""Downstream evaluation through lm-eval: the `claimbench` model against lm-eval's API contract,
offline tasks end to end on a real micro checkpoint, data hygiene, the DAG plan and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from lm_eval.api.instance import Instance

from benchmarks.data.text import VAL_PLAYS, shakespeare_splits
from claimbench.config import ConfigError
from claimbench.lm_eval_catalog import TASKS, check_data
from claimbench.testing import REPO, run_micro

OFFLINE = ["cb_shakespeare_cloze", "cb_quartz", "cb_shakespeare_ppl"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm_eval") / "micro-run"
    run_micro(out, steps=30)
    return out


@pytest.fixture(scope="module")
def lm(run_dir):
    from claimbench.lm_eval_model import ClaimbenchLM

    return ClaimbenchLM(str(run_dir / "ckpt.pt"), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def task_data() -> Path:
    """The offline tasks' jsonl in data/lm_eval (QuaRTz fetched by fetch_data.sh if it is not there yet)."""
    from benchmarks.lm_eval_tasks.prepare import DEFAULT_DIR, RAW_QUARTZ, prepare

    if not (DEFAULT_DIR / RAW_QUARTZ).is_file():
        subprocess.run(["bash", str(REPO / "benchmarks/lm_eval_tasks/fetch_data.sh")], check=True, timeout=300,
                       env={**os.environ, "PY": sys.executable})
    prepare(DEFAULT_DIR)
    return DEFAULT_DIR


def _ll_requests(lm, texts: list[tuple[str, str]]) -> list[Instance]:
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(texts)]


def _manual_ll(lm, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
    """A plain single-sequence forward, independent of the model class's batching (a continuation longer than the
    context scored on its last max_length tokens)."""
    inp = (ctx + cont)[-(lm.max_length + 1):][:-1]
    cont = cont[-lm.max_length:]
    with torch.no_grad():
        lp = F.log_softmax(lm.model(torch.tensor([inp])).logits[0, -len(cont):].float(), -1)
    t = torch.tensor(cont)
    return lp.gather(-1, t[:, None]).sum().item(), bool((lp.argmax(-1) == t).all())


PAIRS = [("KING HENRY\nMy lord, the", " duke"), ("", "To be, or not to be"),
         ("First Witch\nWhen shall we", " three meet"),
         ("A b c d e f g h i j k l m n o p q r s t u v w x y z " * 3, "a b"), ("Enter MACBETH", "\n\nMACBETH\nSo foul")]


def test_loglikelihood_contract_and_values(lm):
    out = lm.loglikelihood(_ll_requests(lm, PAIRS), disable_tqdm=True)
    assert len(out) == len(PAIRS)
    for ll, greedy in out:
        assert isinstance(ll, float) and isinstance(greedy, bool) and ll < 0
    # the value is the plain forward's log-probability
    for i in (0, 3):  # 3: a context longer than the model's is left-truncated
        ctx, cont = lm._encode_pair(*PAIRS[i])
        assert out[i] == (pytest.approx(_manual_ll(lm, ctx, cont)[0], abs=1e-5), _manual_ll(lm, ctx, cont)[1])


def test_requests_longer_than_the_context_are_left_truncated_and_counted(lm, caplog):
    """As lm-eval's HF model: the context is cut from the left; a continuation that alone exceeds the context is
    scored on its last max_length tokens (micro checkpoints have 32, shorter than some QuaRTz prompts)."""
    pairs = [("A", " b" * 40), PAIRS[3], PAIRS[0], ("Question: " + "why so? " * 30 + "\nAnswer:", " less")]
    with caplog.at_level("WARNING", logger="claimbench.lm_eval_model"):
        out = lm.loglikelihood(_ll_requests(lm, pairs), disable_tqdm=True)
    for (ctx_s, cont_s), (ll, greedy) in zip(pairs, out, strict=True):
        ctx, cont = lm._encode_pair(ctx_s, cont_s)
        want = _manual_ll(lm, ctx, cont)
        assert ll == pytest.approx(want[0], abs=1e-5) and greedy == want[1] and ll < 0
    assert len(lm._encode_pair(*pairs[0])[1]) > lm.max_length
    (msg,) = [r.getMessage() for r in caplog.records if r.name == "claimbench.lm_eval_model"]
    assert "3 of 4 loglikelihood requests exceed its context of 32 tokens" in msg, msg
    assert "2 had their context left-truncated" in msg and "1 a continuation longer" in msg, msg
    caplog.clear()
    with caplog.at_level("WARNING", logger="claimbench.lm_eval_model"):
        lm.loglikelihood(_ll_requests(lm, [PAIRS[0]]), disable_tqdm=True)
    assert not caplog.records  # nothing cut, nothing said


def test_empty_continuation_is_a_one_line_error_naming_task_and_document(lm):
    """Scored as (0.0, True) it would be a certain, correct answer; lm-eval's HF model refuses it too."""
    reqs = [Instance("loglikelihood", {}, ("MACBETH\nSo foul", " and fair"), 0, ("cb_shakespeare_cloze", 3, 1)),
            Instance("loglikelihood", {}, ("MACBETH\nSo foul", ""), 0, ("cb_shakespeare_cloze", 4, 1))]
    with pytest.raises(ValueError) as e:
        lm.loglikelihood(reqs, disable_tqdm=True)
    msg = str(e.value)
    assert "task 'cb_shakespeare_cloze', document 4" in msg and "empty" in msg and "\n" not in msg, msg
    with pytest.raises(ValueError, match="task 'cb_quartz', document 9"):  # an empty context too
        lm.loglikelihood([Instance("loglikelihood", {}, ("", ""), 0, ("cb_quartz", 9, 1))], disable_tqdm=True)
    ctx = lm.tok_encode("MACBETH")
    with pytest.raises(ValueError, match=r"request 1: .*'x' encodes to no tokens"):  # empty only after tokenising
        lm._loglikelihood_tokens([(None, ctx, [5]), (("MACBETH", "x"), ctx, [])], disable_tqdm=True)


def test_greedy_flag(lm):
    ctx = lm.tok_encode("KING HENRY\nMy lord,")
    with torch.no_grad():
        first = lm.model(torch.tensor([ctx])).logits[0, -1].argmax().item()
        second = lm.model(torch.tensor([ctx + [first]])).logits[0, -1].argmax().item()
    other = (first + 1) % lm.tok.get_vocab_size()
    res = lm._loglikelihood_tokens([(None, ctx, [first, second]), (None, ctx, [first]), (None, ctx, [other])],
                                   disable_tqdm=True)
    assert [g for _, g in res] == [True, True, False]
    assert res[0][0] < res[1][0] <= 0


def test_batch_size_does_not_change_results(run_dir, lm):
    from claimbench.lm_eval_model import ClaimbenchLM

    one = ClaimbenchLM(str(run_dir), device="cpu", batch_size=1)
    pairs = PAIRS + [(f"Speech number {i}:" + " so" * i, " farewell") for i in range(1, 40, 3)]
    a = one.loglikelihood(_ll_requests(one, pairs), disable_tqdm=True)
    b = lm.loglikelihood(_ll_requests(lm, pairs), disable_tqdm=True)
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True)) < 1e-5
    assert [x[1] for x in a] == [y[1] for y in b]
    docs = [Instance("loglikelihood_rolling", {}, ("Hail, hail! " * n,), n) for n in (1, 7, 40)]
    ra, rb = one.loglikelihood_rolling(docs, disable_tqdm=True), lm.loglikelihood_rolling(docs, disable_tqdm=True)
    assert max(abs(x - y) for x, y in zip(ra, rb, strict=True)) < 1e-5


def test_llama_arch_loads_and_is_batch_invariant(tmp_path):
    from claimbench.lm_eval_model import ClaimbenchLM

    run_micro(tmp_path / "llama", steps=3, **{"model.arch": "llama"})
    a, b = (ClaimbenchLM(str(tmp_path / "llama"), device="cpu", batch_size=bs) for bs in (1, 8))
    reqs = [Instance("loglikelihood", {}, (" ".join(["word"] * i) or "x", " end"), i) for i in range(20)]
    x, y = a.loglikelihood(reqs, disable_tqdm=True), b.loglikelihood(reqs, disable_tqdm=True)
    assert max(abs(p[0] - q[0]) for p, q in zip(x, y, strict=True)) < 1e-5


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 101])
def test_rolling_windows_score_every_token_once(lm, n):
    assert lm.max_length == 32  # micro block_size
    tokens = list(range(3, 3 + n))
    windows = lm.rolling_windows(tokens)
    predicted = [t for _, pred in windows for t in pred]
    assert predicted == tokens  # each token once, in order
    for ctx, pred in windows:
        assert 1 <= len(ctx) and len(ctx) + len(pred) - 1 <= lm.max_length


def test_rolling_equals_loglikelihood_of_a_short_document(lm):
    doc = "Fair is foul, and foul is fair"
    roll = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (doc,), 0)], disable_tqdm=True)[0]
    ll = lm.loglikelihood(_ll_requests(lm, [("", doc)]), disable_tqdm=True)[0][0]
    assert roll == pytest.approx(ll, abs=1e-5)


def test_generate_until_greedy_stop_and_max_tokens(lm):
    ctx = "MACBETH\nSo foul and fair a day"
    ids = lm.tok_encode(ctx)
    with torch.no_grad():
        for _ in range(6):
            ids.append(lm.model(torch.tensor([ids[-lm.max_length:]])).logits[0, -1].argmax().item())
    greedy6 = lm.tok_decode(ids[len(lm.tok_encode(ctx)):])
    reqs = [Instance("generate_until", {}, (ctx, {"until": ["@@never@@"], "max_gen_toks": 6}), 0),
            Instance("generate_until", {}, (ctx, {"until": [greedy6[2:4]], "max_gen_toks": 6}), 1),
            Instance("generate_until", {}, ("Other context entirely", {"until": ["@@"], "max_gen_toks": 3}), 2)]
    out = lm.generate_until(reqs, disable_tqdm=True)
    assert len(out) == 3 and all(isinstance(s, str) for s in out)
    assert out[0] == greedy6.split(lm.tok_decode([lm.eot_token_id]))[0]  # the eot string is a stop too
    assert out[1] == greedy6[:greedy6.index(greedy6[2:4])]
    with pytest.raises(ValueError, match="greedily"):
        lm.generate_until([Instance("generate_until", {}, (ctx, {"do_sample": True}), 0)])


def test_missing_and_corrupt_checkpoint_one_line_error(run_dir, tmp_path):
    from claimbench.lm_eval_model import ClaimbenchLM

    with pytest.raises(ConfigError, match="unknown chekpoint"):
        ClaimbenchLM(str(run_dir), chekpoint="x")

    with pytest.raises(ConfigError) as e:
        ClaimbenchLM(str(tmp_path / "nope" / "ckpt.pt"), device="cpu")
    assert str(tmp_path / "nope" / "ckpt.pt") in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(run_dir / "config.yaml", bad / "config.yaml")
    data = (run_dir / "ckpt.pt").read_bytes()
    for blob in (data[: len(data) // 2], b"not a checkpoint"):
        (bad / "ckpt.pt").write_bytes(blob)
        with pytest.raises(ConfigError) as e:
            ClaimbenchLM(str(bad / "ckpt.pt"), device="cpu")
        assert str(bad / "ckpt.pt") in str(e.value) and "\n" not in str(e.value)


def test_simple_evaluate_each_offline_task(run_dir, task_data, tmp_path):
    from claimbench.lm_eval_run import evaluate_run

    out = tmp_path / "lm_eval.json"
    env = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    doc = evaluate_run(run_dir, [("cb_shakespeare_cloze", 0), ("cb_quartz", 0), ("cb_shakespeare_ppl", None)],
                       out=out, limit=3, batch_size=4, device="cpu")
    assert json.loads(out.read_text()) == doc
    assert doc["run_id"] == run_dir.name and doc["chance"]["cb_quartz"] == {"acc": 0.5, "acc_norm": 0.5}
    res = doc["results"]
    assert 0 <= res["cb_quartz"]["acc,none"] <= 1 and "acc_norm_stderr,none" in res["cb_quartz"]
    assert res["cb_shakespeare_cloze"]["perplexity,none"] > 1 and "acc_stderr,none" in res["cb_shakespeare_cloze"]
    assert res["cb_shakespeare_ppl"]["bits_per_byte,none"] > 0
    assert doc["n-samples"]["cb_quartz"]["effective"] == 3
    assert env == {k: os.environ.get(k) for k in env}  # the offline settings were the call's only
    assert (run_dir / "hf_home").is_dir()  # run-local HF_HOME


def _task_instances(task_data: Path, name: str, monkeypatch, limit: int | None = None, shots: int | None = None):
    """The requests lm-eval's own task builds (TaskManager.load, as simple_evaluate does) from the prepared data."""
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("CLAIMBENCH_LM_EVAL_DATA", str(task_data))
    task = TaskManager(include_path=str(REPO / "benchmarks/lm_eval_tasks"), include_defaults=False).load([name])
    task = task["tasks"][name]
    if shots is not None:
        task.set_config(key="num_fewshot", value=shots)
        task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return task.instances


def test_cloze_requests_rejoin_the_source_with_one_space(lm, task_data, monkeypatch):
    """lm-eval ignores target_delimiter for loglikelihood: the continuation must carry the word's space itself, or
    "...his fortunes" + "thine" is scored as "fortunesthine" (and the glue can re-tokenise the context)."""
    from benchmarks.lm_eval_tasks.prepare import val_play_texts

    val = val_play_texts()
    reqs = _task_instances(task_data, "cb_shakespeare_cloze", monkeypatch)
    assert len(reqs) == sum(1 for _ in (task_data / "cb_shakespeare_cloze.jsonl").open()) > 500
    for r in reqs:
        ctx, cont = r.args
        assert ctx == r.doc["context"] and cont == " " + r.doc["target"], (r.doc_id, ctx[-30:], cont)
        assert cont[1:].strip() == cont[1:] != "" and not ctx[-1].isspace()
        assert (ctx + cont).split("\n", 1)[1] in val[r.doc["play"]]  # the source text, one space between
        ctx_enc, cont_enc = lm._encode_pair(ctx, cont)
        assert ctx_enc == lm.tok_encode(ctx) and cont_enc and lm.tok_decode(cont_enc) == cont  # no re-tokenising
    # a few-shot example is the same passage: one space (target_delimiter "" as the target has its own)
    passages = {r.args[0] + r.args[1] for r in reqs}
    for r in _task_instances(task_data, "cb_shakespeare_cloze", monkeypatch, limit=3, shots=1):
        example, query = r.args[0].split("\n\n")
        assert query == r.doc["context"] and example in passages, example[-40:]


def test_quartz_and_perplexity_requests_are_not_glued(task_data, monkeypatch):
    """The other offline tasks: QuaRTz is multiple_choice (lm-eval inserts target_delimiter " " itself) and the
    perplexity task scores whole documents."""
    reqs = _task_instances(task_data, "cb_quartz", monkeypatch, limit=200)
    assert len(reqs) == 400
    for r in reqs:
        ctx, cont = r.args
        assert ctx == f"Question: {r.doc['question']}\nAnswer:" and cont in [" " + c for c in r.doc["choices"]]
        assert cont[1:].strip() == cont[1:] != ""
    for r in _task_instances(task_data, "cb_shakespeare_ppl", monkeypatch):
        assert r.args == (r.doc["text"],) and r.doc["text"].strip()


def test_prepared_cloze_targets_are_whole_words():
    from benchmarks.lm_eval_tasks.prepare import cloze_doc_ok, cloze_docs

    docs = cloze_docs()
    assert len(docs) > 500 and all(cloze_doc_ok(d) and d["target"].replace("'", "").isalpha() for d in docs)
    for bad in ({"context": "A\nb c", "target": ""}, {"context": "A\nb c ", "target": "d"},
                {"context": "A\nb c", "target": " d"}, {"context": "", "target": "d"}):
        assert not cloze_doc_ok(bad), bad


def test_batch_size_in_model_args_wins_over_lm_evals_own(run_dir):
    """What simple_evaluate calls for a string and a dict of model_args, with the CLI's batch_size beside them."""
    from lm_eval.api.registry import get_model

    cls = get_model("claimbench")
    cli = {"batch_size": 16, "max_batch_size": None, "device": "cpu"}
    assert cls.create_from_arg_string(f"checkpoint={run_dir},batch_size=3", cli).batch_size == 3
    assert cls.create_from_arg_obj({"checkpoint": str(run_dir), "batch_size": 5}, cli).batch_size == 5
    assert cls.create_from_arg_obj({"checkpoint": str(run_dir)}, cli).batch_size == 16


def test_output_path_folder_is_named_after_the_run(run_dir, tmp_path):
    """lm-eval names it after model_args' pretrained/model/path; for `checkpoint=` it used a random id."""
    from lm_eval.loggers import EvaluationTracker

    import claimbench.lm_eval_model  # noqa: F401

    for i, args in enumerate((f"checkpoint={run_dir / 'ckpt.pt'},device=cpu", {"checkpoint": str(run_dir)})):
        tracker = EvaluationTracker(output_path=str(tmp_path / str(i)))
        tracker.general_config_tracker.log_experiment_args(model_source="claimbench", model_args=args,
                                                           system_instruction=None, chat_template=None,
                                                           fewshot_as_multiturn=False)
        tracker.save_results_aggregated(results={"results": {}})
        assert [p.relative_to(tmp_path / str(i)).parts[0] for p in (tmp_path / str(i)).rglob("results_*.json")] \
            == [run_dir.name]
    other = EvaluationTracker().general_config_tracker  # other models keep lm-eval's naming
    other.log_experiment_args(model_source="hf", model_args="pretrained=org/name", system_instruction=None,
                              chat_template=None, fewshot_as_multiturn=False)
    assert other.model_name_sanitized == "org__name"


def test_built_in_lm_eval_models_stay_registered():
    from lm_eval.api.registry import get_model, model_registry

    import claimbench.lm_eval_model  # noqa: F401

    assert get_model("claimbench").__name__ == "ClaimbenchLM"
    assert get_model("dummy").__name__ == "DummyLM"
    assert "hf" in model_registry.keys()  # resolving it needs `accelerate`, which this stack does not install


def test_missing_task_data_fails_before_any_model(tmp_path, monkeypatch):
    from claimbench.lm_eval_run import evaluate_run

    with pytest.raises(ConfigError, match=r"'hellaswag'.*Rowan/hellaswag.*load_dataset"):
        evaluate_run(tmp_path / "no-such-run", [("hellaswag", 10)], hf_home=tmp_path / "hf")  # no ckpt either
    monkeypatch.setenv("CLAIMBENCH_LM_EVAL_DATA", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"'cb_quartz'.*fetch_data.sh"):
        check_data(["cb_quartz"], None)
    hub = tmp_path / "hf" / "hub" / "datasets--Rowan--hellaswag"
    hub.mkdir(parents=True)
    check_data(["hellaswag"], tmp_path / "hf")


def test_cloze_and_perplexity_docs_come_from_held_out_plays_only(task_data):
    train, _ = shakespeare_splits()
    from benchmarks.lm_eval_tasks.prepare import val_play_texts

    val = val_play_texts()
    cloze = [json.loads(x) for x in (task_data / "cb_shakespeare_cloze.jsonl").read_text().splitlines()]
    ppl = [json.loads(x) for x in (task_data / "cb_shakespeare_ppl.jsonl").read_text().splitlines()]
    assert len(cloze) > 500 and len(ppl) > 50
    assert {d["play"] for d in cloze} == {d["play"] for d in ppl} == set(VAL_PLAYS)
    for d in cloze[::7]:
        passage = d["context"].split("\n", 1)[1] + " " + d["target"]
        assert passage in val[d["play"]] and passage not in train
    for d in ppl[::5]:
        assert d["text"].strip() in val[d["play"]] and d["text"][:300] not in train


def test_no_evaluation_data_in_the_pretraining_corpus(task_data):
    train, _ = shakespeare_splits()
    assert "BENCHMARK DATA SHOULD NEVER APPEAR" not in train and "canary GUID" not in train
    quartz = [json.loads(x) for x in (task_data / "cb_quartz.jsonl").read_text().splitlines()]
    assert len(quartz) == 3860 and {d["label"] for d in quartz} == {0, 1}
    assert not any(d["question"] in train for d in quartz[::20])


def test_chance_levels_cover_every_configured_task():
    from claimbench.lm_eval_catalog import chance
    from claimbench.lm_eval_plan import section

    for profile in ("smoke", "gpu", "paper"):
        sec = section(yaml.safe_load((REPO / "config" / f"{profile}.yaml").read_text()))
        for suite in sec.suites:
            for spec in sec.tasks(suite):
                assert spec.task in TASKS, (profile, spec.task)
    assert chance("cb_quartz", "acc,none") == 0.5 and chance("hellaswag", "acc_norm") == 0.25
    assert chance("cb_shakespeare_ppl", "bits_per_byte") is None


def test_plan_from_profile_section():
    from claimbench.grid import expand
    from claimbench.lm_eval_plan import Plan

    cfg = {"lm_eval": {"suites": {"s": ["cb_quartz", {"task": "hellaswag", "shots": 10}]}, "runs": {"g": "s"},
                       "limit": 5}}
    runs = expand([{"name": "g", "config": "x.yaml", "workload": "gpt", "size": "micro", "seeds": [0, 1]},
                   {"name": "h", "config": "x.yaml", "workload": "gpt", "size": "smoke"}])
    plan = Plan(cfg, runs)
    assert len(plan.targets) == 2 and all(runs[r].meta["group"] == "g" for r in plan.targets)
    assert plan.tasks_arg(plan.targets[0]) == "cb_quartz,hellaswag:10"
    assert plan.offline_tasks(plan.targets[0]) == ["cb_quartz"] and "--limit 5" in plan.options()
    other = next(r for r in runs if r not in plan.targets)
    with pytest.raises(ConfigError, match="default_suite"):
        plan.suite(other)
    with pytest.raises(ConfigError, match="suite 'nope'"):
        Plan({"lm_eval": {"suites": {}, "runs": {"g": "nope"}}}, runs)


def _offline_env(tmp_path: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"),
            "PYTHONUNBUFFERED": "1"}


def _no_network() -> list[str]:
    ok = shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    return ["unshare", "-n"] if ok else []


@pytest.mark.slow
def test_cli_evaluates_checkpoint_offline_and_other_models_pass_through(run_dir, task_data, tmp_path):
    base = [*_no_network(), sys.executable, "-m", "claimbench", "lm-eval", "--tasks", "cb_quartz,cb_shakespeare_cloze",
            "--include_path", str(REPO / "benchmarks/lm_eval_tasks"), "--limit", "3", "--batch_size", "4"]
    p = subprocess.run([*base, "--model", "claimbench", "--model_args",
                        f"checkpoint={run_dir / 'ckpt.pt'},batch_size=2", "--output_path", str(tmp_path / "out")],
                       cwd=REPO, env=_offline_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "cb_quartz" in p.stdout and "acc_norm" in p.stdout and "perplexity" in p.stdout
    saved = list((tmp_path / "out").rglob("results_*.json"))
    assert [s.parent for s in saved] == [tmp_path / "out" / run_dir.name]  # named after the run, not at random
    assert saved and json.loads(saved[0].read_text())["results"]["cb_quartz"]["sample_len"] == 3
    p = subprocess.run([*base, "--model", "dummy"], cwd=REPO, env=_offline_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0 and "cb_quartz" in p.stdout, p.stderr[-3000:]


@pytest.mark.slow
def test_cli_missing_checkpoint_and_missing_data(tmp_path, cli):
    p = cli("lm-eval-run", str(tmp_path / "gone"), "--tasks", "cb_shakespeare_ppl", timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and str(tmp_path / "gone" / "ckpt.pt") in p.stderr
    env = _offline_env(tmp_path)
    p = subprocess.run([sys.executable, "-m", "claimbench", "lm-eval", "--model", "claimbench", "--tasks", "hellaswag"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "'hellaswag'" in p.stderr and p.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_task_table_matches_lm_eval_task_yaml():
    """Our data-set table (used to check data before loading a model) agrees with lm-eval's own task configs."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(REPO / "benchmarks/lm_eval_tasks"))
    index = tm.task_index
    for name, info in TASKS.items():
        assert name in index, name
        leaf = name
        while index[leaf].kind.name != "TASK":  # a group's first member, a tag's first task
            e = index[leaf]
            first = e.cfg["task"][0] if e.kind.name == "GROUP" else next(n for n, x in index.items() if leaf in x.tags)
            leaf = first if isinstance(first, str) else first["task"]
        if info.offline:
            assert index[leaf].yaml_path.parent == REPO / "benchmarks/lm_eval_tasks", name
            continue
        path = index[leaf].cfg.get("dataset_path")
        assert path in {p for p, _ in info.hub}, (name, leaf, path)


@pytest.mark.slow
def test_dag_runs_lm_eval_stage_for_the_runs_that_ask(tmp_path, task_data):
    """A micro grid through the real Snakefile: the `lm_eval` rule makes lm_eval.json for the listed entry only."""
    cfg = {"profile": "lmeval-test", "runs_dir": "runs/t", "results_dir": "results", "threads_per_run": 1,
           "data": {"shakespeare": {"corpus": "shakespeare", "vocab_size": 512, "dir": "data/shakespeare"}},
           "grid": [{"name": name, "config": "benchmarks/configs/gpt.yaml", "workload": "gpt", "size": "micro",
                     "recipes": ["adamw"], "seeds": [0], "set": {"train.steps": 10 + i, "eval.every": 0}}
                    for i, name in enumerate(("evaluated", "not_evaluated"))],
           "lm_eval": {"suites": {"offline": ["cb_shakespeare_ppl", "cb_quartz"]}, "runs": {"evaluated": "offline"},
                       "limit": 2, "batch_size": 4}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "configs").symlink_to(REPO / "benchmarks" / "configs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    p = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "2"],
                       capture_output=True, text=True, env=env, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    (done,) = list((tmp_path / "runs" / "t").glob("*/lm_eval.json"))
    doc = json.loads(done.read_text())
    assert doc["run_id"] == done.parent.name and set(doc["results"]) == {"cb_shakespeare_ppl", "cb_quartz"}
    assert (tmp_path / "data" / "lm_eval" / "cb_quartz.jsonl").is_file()  # made by the lm_eval_data rule
    assert len(list((tmp_path / "runs" / "t").glob("*/result.json"))) == 2
