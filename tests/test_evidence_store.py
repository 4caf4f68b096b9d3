"""The evidence store: runs archived verbatim, tables rebuilt from it byte-identically, `plan` and
`reproduce` input checks, provenance (dirty flag, hardware, CPU time), `verify`, and the DAG's run lists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from claimbench.claims import load_file
from claimbench.commands.reproduce import cost, parse_papers
from claimbench.config import ConfigError
from claimbench.evidence import RUN_FILES, archive, locate
from claimbench.io import checkout_sha
from claimbench.synthetic import write_run
from claimbench.tables import build_studies, write_tables
from claimbench.testing import REPO

CLAIMS = {
    "paper": {"id": "toy", "title": "A toy paper", "arxiv": "2501.00001"},
    "claims": [{
        "id": "toy.better", "statement": "arm a ends with a lower validation loss than arm b", "source": "Table 1",
        "paper_value": {"value": -0.5, "unit": "nats", "setting": "toy"},
        "grid": {"smoke": {
            "a": {"workload": "gpt", "size": "micro", "recipes": ["adamw"], "seeds": [0, 1, 2],
                  "set": {"train.lr": 1e-3}},
            "b": {"workload": "gpt", "size": "micro", "recipes": ["adamw"], "seeds": [0, 1, 2],
                  "set": {"train.lr": 2e-3}}}},
        "statistic": {"kind": "difference", "arms": ["a", "b"], "metric": "final_val_loss"},
        "rule": {"reproduced_if": "ci_hi < 0", "not_reproduced_if": "ci_lo > 0"}}],
}


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(CLAIMS, sort_keys=False))
    claims = load_file(tmp_path / "toy.yaml")
    runs = tmp_path / "runs"
    for arm, base in (("a", 1.0), ("b", 2.0)):
        for i, rid in enumerate(sorted(claims[0].arms("smoke")[arm])):
            write_run(runs / rid, final_val_loss=base + 0.1 * i, curve=[4.0, 3.0, base])
            (runs / rid / "config.yaml").write_text(f"seed: {i}\n")
            (runs / rid / "ckpt.pt").write_bytes(b"weights")
    return claims, runs, tmp_path


def _tables(claims, runs, results, store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        studies = build_studies(claims, "smoke", runs, results, store)
    write_tables(studies, claims, results, "smoke")
    return studies, {p.name: p.read_bytes() for p in results.glob("*.md")}


def test_archive_copies_the_small_files_verbatim_never_the_checkpoint(toy):
    _, runs, tmp = toy
    store = tmp / "evidence"
    dirs = sorted(runs.iterdir())
    kept = archive(dirs + [tmp / "nothing-here"], store)
    assert sorted(kept) == [d.name for d in dirs]  # a directory without result.json is skipped
    for d in dirs:
        assert not (store / d.name / "ckpt.pt").exists()
        for name in RUN_FILES:
            assert (store / d.name / name).is_file() == (d / name).is_file()
            if (d / name).is_file():
                assert (store / d.name / name).read_bytes() == (d / name).read_bytes()
    # a second archive after a file went away removes its copy; other runs in the store stay
    (dirs[0] / "metrics.jsonl").unlink()
    archive(dirs[:1], store)
    assert not (store / dirs[0].name / "metrics.jsonl").exists()
    assert (store / dirs[1].name / "metrics.jsonl").is_file()


def test_tables_from_the_store_equal_tables_from_the_runs(toy):
    claims, runs, tmp = toy
    store = tmp / "evidence"
    archive(sorted(runs.iterdir()), store)
    live, from_runs = _tables(claims, runs, tmp / "r1", store)
    kept, from_store = _tables(claims, tmp / "no-runs-here", tmp / "r2", store)
    assert live[0]["verdict"] == kept[0]["verdict"] == "reproduced"
    assert from_runs == from_store  # a table never says where its runs were read
    assert all(r["run_dir"].startswith(str(store)) for rs in kept[0]["runs"].values() for r in rs)
    assert all(r["run_dir"].startswith(str(runs)) for rs in live[0]["runs"].values() for r in rs)


def test_locate_prefers_the_runs_directory(toy):
    _, runs, tmp = toy
    rid = sorted(runs.iterdir())[0].name
    store = tmp / "evidence"
    assert locate(rid, runs, store) == runs / rid  # not in the store: the runs directory
    archive([runs / rid], store)
    assert locate(rid, runs, store) == runs / rid
    assert locate(rid, tmp / "elsewhere", store) == store / rid
    assert locate("nosuch", tmp / "elsewhere", store) == tmp / "elsewhere" / "nosuch"


def test_corrupt_evidence_is_a_warning_naming_the_file_and_a_missing_run(toy):
    claims, runs, tmp = toy
    store = tmp / "evidence"
    archive(sorted(runs.iterdir()), store)
    bad = store / sorted(runs.iterdir())[0].name / "result.json"
    bad.write_text(bad.read_text()[:20])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (s,) = build_studies(claims, "smoke", tmp / "no-runs-here", tmp / "r", store)
    assert any(str(bad) in str(w.message) for w in caught)
    assert s["verdict"] == "not_run" and bad.parent.name in s["why"]


def test_claimbench_tables_says_where_it_read_the_runs(toy, cli):
    _, runs, tmp = toy
    store = tmp / "evidence"
    archive(sorted(runs.iterdir())[:2], store)
    r = cli("tables", "--profile", "smoke", "--claims-dir", str(tmp), "--runs-dir", str(tmp / "none"),
            "--results-dir", str(tmp / "results"), "--evidence-dir", str(store), "--no-figures")
    assert r.returncode == 0, r.stderr
    assert "runs read: 0 from" in r.stderr and "2 from the evidence store, 4 missing" in r.stderr


def test_unknown_paper_is_one_line_naming_the_valid_ones(cli):
    r = cli("plan", "--papers", "lrm,nosuch")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "unknown paper 'nosuch'" in r.stderr and "optlaws" in r.stderr
    with pytest.raises(ConfigError):
        parse_papers("nosuch")
    assert parse_papers("flerm, lrm") == ["flerm", "lrm"]
    assert parse_papers(None) == ["flerm", "jreg", "lrm", "nowarmup", "optlaws"]


def test_make_reproduce_refuses_an_unknown_paper_before_training():
    r = subprocess.run(["make", "-s", "reproduce", "PAPERS=nosuch"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown paper 'nosuch'" in r.stderr
    assert "Job stats" not in r.stdout


def test_cost_uses_recorded_cpu_then_the_family_median():
    known = {"gpt-smoke-adamw-none-1-s0": 10.0, "gpt-smoke-adamw-none-2-s0": 30.0, "vit-smoke-x-s0": 5.0}
    total, unknown = cost(["gpt-smoke-adamw-none-1-s0", "gpt-smoke-other-s1", "mlp-smoke-a-s0"], known)
    assert total == 10.0 + 20.0 and unknown == 1


def test_dirty_flag_ignores_results_runs_and_data(tmp_path):
    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    for f in ("code.py", "results/claims.md", "data/x.txt", "runs/r.txt"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("a\n")
    git("add", "-A")
    git("commit", "-qm", "x")
    for f in ("results/claims.md", "data/x.txt", "runs/r.txt"):
        (tmp_path / f).write_text("b\n")
    assert not checkout_sha(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("b\n")
    assert checkout_sha(tmp_path).endswith("-dirty")


def test_a_run_records_its_hardware_and_cpu_time(tmp_path):
    from claimbench.testing import run_micro

    res, _ = run_micro(tmp_path / "run", steps=2)
    hw = res["hardware"]
    assert hw["cpu"] and hw["isa"] and hw["threads"] >= 1 and "blas" in hw and hw["bf16_units"]
    assert res["cpu_s"] > 0


def test_hardware_class_separates_bf16_units():
    """A bfloat16 run (torch's Muon) gives other bits on a host with bf16 matmul units than on one without, under
    the same CPU name and SIMD level; a record from before the field was kept is judged on name and SIMD level."""
    from claimbench.io import hardware_class, same_hardware

    base = {"cpu": "Intel(R) Xeon(R) Processor", "isa": "AVX512"}
    with_units, without = {**base, "bf16_units": "avx512_bf16,amx_bf16,amx_tile"}, {**base, "bf16_units": "none"}
    assert hardware_class(with_units) != hardware_class(without)
    assert not same_hardware(with_units, without) and same_hardware(without, dict(without))
    assert same_hardware(base, with_units) and same_hardware(without, base)
    assert not same_hardware({**base, "isa": "AVX2"}, without)


def _dry_run(papers: str) -> str:
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--profile", "config/smoke", "--forceall",
                        "--config", f"papers=[{papers}]"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout + r.stderr


def _train_jobs(out: str) -> dict[str, str]:
    """run id -> its train-like rule, from a dry run's job list."""
    jobs, rule = {}, None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s+wildcards: .*run_id=([^,\s]+)", line)
        if m and rule and rule.endswith("train"):
            jobs[m.group(1)] = rule
    return jobs


def test_aggregate_and_evidence_cover_every_run_of_the_dag():
    """The aggregate and evidence jobs read the complete run list, the replayed-warmup runs included."""
    out = _dry_run("nowarmup")
    jobs = _train_jobs(out)
    assert any("replayed_warmup" in rid for rid in jobs)
    for rule in ("aggregate", "evidence"):
        block = out.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
        inputs = re.search(r"input: (.*)", block).group(1)
        ids = set(re.findall(r"runs/smoke/([^/]+)/result\.json", inputs))
        assert ids == set(jobs), (rule, set(jobs) - ids)


def test_replayed_warmup_runs_are_train_jobs_reading_their_source():
    """nowarmup's replay runs are jobs of the one train rule (same command line and resources) whose extra input
    is the result.json of the run whose warmup they replay."""
    out = _dry_run("nowarmup")
    assert set(_train_jobs(out).values()) == {"train"}
    blocks = [b for b in out.split("\n\n") if re.search(r"rule train:", b)]
    replays = [b for b in blocks if "replayed_warmup" in re.search(r"wildcards: (.*)", b).group(1)]
    assert replays
    for b in replays:
        inputs = re.search(r"input: (.*)", b).group(1).split(", ")
        sources = [p for p in inputs if p.endswith("/result.json")]
        assert len(sources) == 1 and "-adamw2-" in sources[0], inputs
    from claimbench.launch import train_shell

    pattern = ".*".join(re.escape(part) for part in re.split(r"\{[a-z_.]+\}", train_shell(1, warm=True)))
    assert all(re.search(pattern, b) for b in blocks)
    assert len({re.search(r"resources: (.*)", b).group(1) for b in blocks}) == 1


def _needing_a_checkpoint(src: Path, dst: Path, ckpt: str) -> None:
    """A stored run turned into one that fine-tunes `ckpt` (a LoRA run reads its base run's checkpoint)."""
    import shutil

    shutil.copytree(src, dst)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    cfg["methods"] = [{"name": "lora", "options": {"checkpoint": ckpt}}]
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_verify_remakes_what_a_run_reads_from_the_store_or_says_it_cannot(tmp_path, cli):
    """The store keeps no checkpoints or records: a run that reads one is retrained after its input is made from
    the store (here: the run whose checkpoint it tunes, retrained), and one whose input the store cannot give back
    is reported, not retrained, and not counted as a difference."""
    from claimbench.commands.evidence import upstream_inputs
    from claimbench.testing import run_micro

    run_micro(tmp_path / "runs" / "base", steps=1)
    store = tmp_path / "evidence"
    archive([tmp_path / "runs" / "base"], store)
    _needing_a_checkpoint(store / "base", store / "tuned", "runs/smoke/base/ckpt.pt")
    _needing_a_checkpoint(store / "base", store / "orphan", "runs/smoke/nowhere/ckpt.pt")
    assert upstream_inputs(store / "base", store) == {}
    (cmd,) = upstream_inputs(store / "tuned", store)["runs/smoke/base/ckpt.pt"]
    assert cmd[-4:] == ["train", str((store / "base" / "config.yaml").resolve()), "--out", "runs/smoke/base"]
    assert upstream_inputs(store / "orphan", store) == {"runs/smoke/nowhere/ckpt.pt": None}
    r = cli("verify", "--evidence-dir", str(store), "--runs", "orphan", "--work", str(tmp_path / "w"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "orphan: not retrained: it reads runs/smoke/nowhere/ckpt.pt" in r.stdout
    assert "verdicts: unchanged" in r.stdout and not (tmp_path / "w" / "orphan").exists()


@pytest.mark.slow
def test_verify_retrains_a_lora_run_after_the_run_it_tunes(tmp_path, data_dir, cli, monkeypatch):
    from claimbench.testing import run_micro

    monkeypatch.chdir(tmp_path)  # the checkpoint path is relative, as the DAG writes it
    run_micro(Path("runs/smoke/base"), steps=3)
    run_micro(Path("runs/smoke/tuned"), steps=3, methods=[{"name": "lora",
                                                          "options": {"checkpoint": "runs/smoke/base/ckpt.pt"}}])
    store = tmp_path / "evidence"
    archive([Path("runs/smoke/base"), Path("runs/smoke/tuned")], store)
    r = cli("verify", "--evidence-dir", str(store), "--runs", "tuned", "--work", str(tmp_path / "w"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tuned: bit-identical (after remaking runs/smoke/base/ckpt.pt from the store)" in r.stdout


@pytest.mark.slow
def test_verify_retrains_stored_runs_bit_identically(tmp_path, data_dir, cli):
    from claimbench.testing import run_micro

    runs = tmp_path / "runs"
    for seed in (0, 1):
        run_micro(runs / f"micro-s{seed}", steps=3, seed=seed)
    store = tmp_path / "evidence"
    archive(sorted(runs.iterdir()), store)
    _needing_a_checkpoint(store / "micro-s0", store / "tuned-s0", "runs/smoke/nowhere/ckpt.pt")
    r = cli("verify", "--evidence-dir", str(store), "--sample", "3", "--work", str(tmp_path / "w1"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("bit-identical") == 2 and "verdicts: unchanged" in r.stdout
    assert "drawn from the 2 the store can retrain: 1 others read a file" in r.stdout and "tuned-s0" not in r.stdout
    # a stored number that the code does not give back is found and named
    res_path = store / "micro-s0" / "result.json"
    res = json.loads(res_path.read_text())
    res["final_val_loss"] += 1e-3
    res_path.write_text(json.dumps(res))
    r = cli("verify", "--evidence-dir", str(store), "--runs", "micro-s0", "--work", str(tmp_path / "w2"))
    assert r.returncode == 1 and "DIFFERS" in r.stdout and "final_val_loss" in r.stdout


def test_lm_eval_loads_a_run_that_relied_on_the_default_data_dir(tmp_path, data_dir, monkeypatch):
    """A run whose config has no data.dir still finds its tokenizer: the workload's default directory."""
    from benchmarks.workloads.gpt import TextData
    from claimbench.lm_eval_model import load_run_model
    from claimbench.testing import run_micro

    run_micro(tmp_path / "run", steps=2, **{"ckpt.every": 2})
    cfg_path = tmp_path / "run" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data"] = {}
    cfg_path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(TextData.model_fields["dir"], "default", str(data_dir))  # the micro corpus as default
    model, tok, ctx = load_run_model(tmp_path / "run")
    assert ctx == 32 and tok is not None
