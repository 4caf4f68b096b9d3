"""Bad input is one line naming the key or file, exit code 2, before any work, and nothing on disk changes;
a finished run is never replaced; valid edge cases (negative seed, string numbers, lrm on mlp) still pass."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from claimbench.cli import main
from claimbench.config import load_config, to_yaml
from claimbench.testing import REPO, micro_overrides
from claimbench.train import execute, prepare

GPT = str(REPO / "benchmarks/configs/gpt.yaml")
TOY_CLAIMS = {
    "paper": {"id": "toy", "title": "A toy paper", "arxiv": "2501.00001"},
    "claims": [{
        "id": "toy.c1", "statement": "Warmup lowers the final loss.", "source": "Table 1",
        "paper_value": {"value": -0.1, "unit": "nats", "setting": "toy"},
        "grid": {"smoke": {"a": {"workload": "gpt", "size": "micro", "recipes": ["adamw"], "seeds": [0, 1]},
                           "b": {"workload": "gpt", "size": "micro", "recipes": ["adamw_nowarmup"], "seeds": [0, 1]}}},
        "statistic": {"kind": "difference", "arms": ["a", "b"], "metric": "final_val_loss"},
        "rule": {"reproduced_if": "ci_hi < 0", "not_reproduced_if": "ci_lo > 0"},
    }],
}


def snapshot(root: Path) -> dict:
    """Every path under root with its bytes' digest (directories as None): what 'nothing changed' compares."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def train_args(out: Path, *sets: str, config: str = GPT, **extra) -> list[str]:
    base = micro_overrides(steps=3, **extra)
    return ["train", config, *[a for s in [*base, *sets] for a in ("--set", s)], "--out", str(out)]


def bad_data(tmp_path: Path, data_dir: Path, name: str, content: bytes) -> Path:
    """A copy of the micro corpus (links to its files) with one file replaced."""
    d = tmp_path / "data"
    d.mkdir()
    for f in data_dir.iterdir():
        (d / f.name).symlink_to(f)
    (d / name).unlink()
    (d / name).write_bytes(content)
    return d


def same_config_dir(out: Path) -> None:
    """An unfinished run directory of exactly the config `train_args(out)` gives."""
    cfg = load_config(GPT, micro_overrides(steps=3))
    out.mkdir()
    (out / "config.yaml").write_text(to_yaml(cfg))


# (case id, setup(tmp_path, data_dir) -> (argv, watched dir), words the one line must contain)
def _train(*sets, **extra):
    return lambda tmp, data: (train_args(tmp / "run", *sets, **extra), tmp / "run")


def _device_tpu(tmp, data):
    return train_args(tmp / "run", "train.device=tpu"), tmp / "run"


def _meta_not_json(tmp, data):
    d = bad_data(tmp, data, "meta.json", b"{vocab_size: oops")
    return train_args(tmp / "run", f"data.dir={d}"), tmp


def _train_bin_one_byte(tmp, data):
    d = bad_data(tmp, data, "train.bin", b"\x01")
    return train_args(tmp / "run", f"data.dir={d}"), tmp


def _config_random_bytes(tmp, data):
    cfg = tmp / "noise.yaml"
    cfg.write_bytes(bytes(range(256)) * 4)
    return train_args(tmp / "run", config=str(cfg)), tmp


def _config_duplicate_key(tmp, data):
    cfg = tmp / "dup.yaml"
    cfg.write_text(Path(GPT).read_text() + "\nseed: 1\nseed: 2\n")
    return train_args(tmp / "run", config=str(cfg)), tmp


def _out_is_file(tmp, data):
    (tmp / "taken").write_text("not a run\n")
    return train_args(tmp / "taken"), tmp


def _out_under_file(tmp, data):
    (tmp / "taken").write_text("not a run\n")
    return train_args(tmp / "taken" / "run"), tmp


def _failed_other_config(tmp, data):
    out = tmp / "run"
    other = load_config(GPT, micro_overrides(steps=3, seed=7))
    out.mkdir()
    (out / "config.yaml").write_text(to_yaml(other))
    (out / "result.json").write_text(json.dumps({"status": "failed", "error": "x", "config_hash": other.hash()}))
    return train_args(out), out


def _corrupt_ckpt_unfinished(tmp, data):
    out = tmp / "run"
    same_config_dir(out)
    (out / "ckpt.pt").write_bytes(b"PK\x03\x04 truncated")
    return train_args(out), out


def _law_binary_csv(tmp, data):
    (tmp / "curves").mkdir()
    (tmp / "curves" / "a.csv").write_bytes(bytes(range(256)) * 8)
    return ["law", "fit", "--curves", str(tmp / "curves"), "--law", "multipower", "--fit", "a", "--predict", "a",
            "--out", str(tmp / "fit.json")], tmp


def _law_loss_not_number(tmp, data):
    run = tmp / "runs" / "r1"
    run.mkdir(parents=True)
    rows = [{"step": 1, "lr": 1e-3, "train_loss": 3.0}, {"step": 2, "lr": 1e-3, "train_loss": "abc"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ["law", "fit", "--runs", str(tmp / "runs"), "--law", "multipower", "--fit", "r1", "--predict", "r1",
            "--out", str(tmp / "fit.json")], tmp


def _law_out_under_file(tmp, data):
    (tmp / "curves").mkdir()
    (tmp / "curves" / "a.csv").write_text("step,lr,loss\n1,0.1,3.0\n2,0.1,2.9\n")
    (tmp / "taken").write_text("x\n")
    return ["law", "fit", "--curves", str(tmp / "curves"), "--law", "multipower", "--fit", "a", "--predict", "a",
            "--out", str(tmp / "taken" / "fit.json")], tmp


def _lm_eval_task_typo(tmp, data):
    return ["lm-eval", "--model", "claimbench", "--model_args", f"checkpoint={tmp / 'ckpt.pt'}",
            "--tasks", "cb_quartzz"], tmp


def _lm_eval_vit(tmp, data):
    from benchmarks.data.images import micro_image_dir as image_dir

    run = tmp / "vit"
    cfg = load_config(None, [f"data.dir={image_dir()}", "workload=vit", "size=micro"], base={})
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(cfg))
    (run / "ckpt.pt").write_bytes(b"not read")
    return ["lm-eval", "--model", "claimbench", "--model_args", f"checkpoint={run / 'ckpt.pt'},device=cpu",
            "--tasks", "cb_quartz", "--include_path", str(REPO / "benchmarks/lm_eval_tasks"), "--limit", "1"], tmp


def _rule(expr: str):
    def setup(tmp, data):
        doc = json.loads(json.dumps(TOY_CLAIMS))
        doc["claims"][0]["rule"]["reproduced_if"] = expr
        (tmp / "claims").mkdir()
        (tmp / "claims" / "toy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return ["tables", "--claims-dir", str(tmp / "claims"), "--runs-dir", str(tmp / "runs"), "--results-dir",
                str(tmp / "results"), "--no-figures"], tmp
    return setup


CASES = [
    ("device-tpu", _device_tpu, ["train.device", "tpu"]),
    ("heads-do-not-divide", _train("model.n_embd=30", "model.n_head=4"), ["n_embd", "n_head"]),
    ("seed-above-2^63", _train(f"seed={2**63}"), ["seed"]),
    ("steps-1e12", _train("train.steps=1e12"), ["train.steps"]),
    ("steps-10^12", _train(f"train.steps={10**12}"), ["train.steps"]),
    ("batch-1e9", _train("train.batch_size=1e9"), ["train.batch_size"]),
    ("batch-10^9", _train(f"train.batch_size={10**9}"), ["train.batch_size", "GiB"]),
    ("n_embd-1e9", _train("model.n_embd=1e9"), ["n_embd"]),
    ("n_embd-10^5", _train(f"model.n_embd={10**5}"), ["n_embd", "parameters"]),
    ("eval-batches-10^12", _train(f"eval.batches={10**12}", "eval.every=0"), ["eval.batches"]),
    ("meta-not-json", _meta_not_json, ["meta.json"]),
    ("train-bin-one-byte", _train_bin_one_byte, ["train.bin"]),
    ("config-random-bytes", _config_random_bytes, ["noise.yaml"]),
    ("config-duplicate-key", _config_duplicate_key, ["dup.yaml", "seed"]),
    ("set-yaml-parser-error", _train("methods=[{name: zloss"), ["--set methods", "YAML"]),
    ("out-is-a-file", _out_is_file, ["--out", "taken"]),
    ("out-under-a-file", _out_under_file, ["--out", "taken"]),
    ("piecewise-negative", _train("train.schedule=[[0, 1.0], [2, -0.5]]"), ["train.schedule"]),
    ("steps-bool", _train("train.steps=true"), ["train.steps"]),
    ("duplicate-method", _train("methods=[zloss, zloss]"), ["methods", "zloss"]),
    ("lr-inf", _train("train.lr=.inf"), ["train.lr"]),
    ("failed-run-of-other-config", _failed_other_config, ["--out", "different config", "remove"]),
    ("corrupt-ckpt-unfinished", _corrupt_ckpt_unfinished, ["ckpt.pt", "remove"]),
    ("law-binary-csv", _law_binary_csv, ["a.csv"]),
    ("law-loss-not-a-number", _law_loss_not_number, ["metrics.jsonl", "train_loss"]),
    ("law-out-under-a-file", _law_out_under_file, ["--out", "taken"]),
    ("lm-eval-task-typo", _lm_eval_task_typo, ["cb_quartzz", "did you mean 'cb_quartz'"]),
    ("lm-eval-vit-checkpoint", _lm_eval_vit, ["config.yaml", "not a language model"]),
    ("rule-huge-power", _rule("ci_hi < 9**9**9"), ["toy.c1", "reproduced_if", "**"]),
    ("rule-deep-nesting", _rule("not " * 1500 + "ci_hi < 0"), ["toy.c1", "reproduced_if", "nested"]),
]
if not torch.cuda.is_available():
    CASES.append(("device-cuda-without-cuda", _train("train.device=cuda"), ["train.device", "CUDA"]))


@pytest.mark.parametrize("setup,words", [pytest.param(s, w, id=i) for i, s, w in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_changes(tmp_path, data_dir, capsys, setup, words):
    argv, watched = setup(tmp_path, data_dir)
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("claimbench: error: "), err
    for w in words:
        assert w in err, (w, err)
    assert snapshot(tmp_path) == before, "bad input changed files"
    assert elapsed < 10, f"took {elapsed:.1f} s"


def test_the_real_cli_prints_one_line(tmp_path, data_dir):
    """The same through `python -m claimbench` (no in-process shortcuts): one stderr line, exit 2."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "claimbench", *train_args(tmp_path / "run", "train.device=tpu")],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "train.device" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_finished_run_is_never_replaced_and_stale_temp_files_go(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".ckpt.pt.abc123.tmp").write_bytes(b"left by a kill")  # a killed atomic write's leftover
    assert main(train_args(out)) == 0
    assert not list(out.glob(".*.tmp")), "resume must remove stale temp files"
    result = (out / "result.json").read_bytes()
    assert json.loads(result)["status"] == "ok"
    with open(out / "ckpt.pt", "r+b") as f:  # a truncated checkpoint beside a finished result
        f.truncate(100)
    before = snapshot(out)
    capsys.readouterr()
    assert main(train_args(out)) == 0
    err = capsys.readouterr().err
    assert "already finished" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(out) == before and (out / "result.json").read_bytes() == result


def test_lm_eval_model_args_device_wins_over_the_cli_default(tmp_path, data_dir):
    from claimbench.lm_eval_model import ClaimbenchLM

    out = tmp_path / "run"
    cfg = load_config(None, micro_overrides(steps=2), base={})
    assert execute(prepare(cfg, out)) == 0
    lm = ClaimbenchLM.create_from_arg_string(f"checkpoint={out / 'ckpt.pt'},device=cpu",
                                             {"device": "cuda", "batch_size": 2, "max_batch_size": None})
    assert lm.device == torch.device("cpu") and lm.batch_size == 2


def test_tables_warn_on_a_result_with_a_list_git_sha_and_still_build(tmp_path, capsys):
    from claimbench.claims import load_file
    from claimbench.synthetic import write_run

    (tmp_path / "claims").mkdir()
    path = tmp_path / "claims" / "toy.yaml"
    path.write_text(yaml.safe_dump(TOY_CLAIMS, sort_keys=False))
    (claim,) = load_file(path)
    runs = tmp_path / "runs"
    rids = [rid for specs in claim.arms("smoke").values() for rid in sorted(specs)]
    for i, rid in enumerate(rids):
        write_run(runs / rid, final_val_loss=1.0 + 0.1 * i)
    bad = runs / rids[0] / "result.json"
    bad.write_text(json.dumps({**json.loads(bad.read_text()), "git_sha": ["abc", "def"]}))
    code = main(["tables", "--claims-dir", str(tmp_path / "claims"), "--runs-dir", str(runs), "--results-dir",
                 str(tmp_path / "results"), "--no-figures"])
    err = capsys.readouterr().err
    assert code == 0 and (tmp_path / "results" / "claims.md").is_file()
    assert f"{bad}: corrupt" in err and "git_sha" in err, err


def test_valid_edge_cases_are_accepted(tmp_path, data_dir):
    from benchmarks.data.images import micro_image_dir as image_dir

    result_dir = tmp_path / "neg"
    cfg = load_config(GPT, micro_overrides(steps=2, seed=-5))
    assert execute(prepare(cfg, result_dir)) == 0
    assert json.loads((result_dir / "result.json").read_text())["status"] == "ok"
    text = tmp_path / "lr.yaml"
    text.write_text(Path(GPT).read_text().replace("lr: ", "lr: '1e-3'  # ", 1))
    assert load_config(text, micro_overrides(steps=2)).train.lr == 1e-3
    mlp = load_config(str(REPO / "benchmarks/configs/mlp.yaml"),
                      [f"data.dir={image_dir()}", "size=micro", "methods=[lrm]", "train.steps=2"])
    prepare(mlp, tmp_path / "mlp")
    assert not (tmp_path / "mlp").exists()
