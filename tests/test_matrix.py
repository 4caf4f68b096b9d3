"""The method matrix: entries and LR choice, the table builder on synthetic runs, `claimbench compare`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from claimbench import matrix, matrix_table, registry
from claimbench.commands.compare import check_input
from claimbench.config import ConfigError
from claimbench.matrix import table_rows
from claimbench.plugin import Method

REPO = Path(__file__).resolve().parents[1]
BASE = {"gpt": 5.0, "mlp": 0.80}


def _config(tmp_path: Path, **extra) -> Path:
    cfg = {
        "profile": "smoke", "lr_mults": [0.5, 1.0, 2.0], "sweep_seed": 0, "seeds": [0, 1, 2],
        "workloads": {
            "gpt": {"config": "benchmarks/configs/gpt.yaml", "data": "tiny", "size": "micro", "steps": 8,
                    "lr": 3e-3, "metric": "final_val_loss", "direction": "lower"},
            "mlp": {"config": "benchmarks/configs/mlp.yaml", "data": "tiny_img", "size": "micro", "steps": 8,
                    "lr": 1e-3, "metric": "final_val_acc", "direction": "higher"},
        },
        "rows": [{"name": "zloss", "methods": ["zloss"]}, {"name": "lrm", "methods": ["lrm"], "paper": "lrm"},
                 {"name": "adamw2", "methods": ["adamw2"]}, {"name": "lora", "methods": ["lora"]}],
        "skip": {"none": "the baseline itself"},
        **extra,
    }
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _write(runs: Path, rid: str, status: str, **result):
    d = runs / rid
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps({"status": status, "cpu_s": 1.0, **result}))


# per-seed noise shared by every arm (paired runs see the same data order), plus a small arm-specific jitter
NOISE = {0: 0.0, 1: 0.03, 2: -0.02}
JITTER = {0: 0.004, 1: -0.003, 2: -0.001}


def _plant(m, runs: Path, row, wl: str, shift: float, status: str = "ok", best_mult: float = 1.0, sign: float = 1.0):
    """Sweep runs (the best at `best_mult`) and seed runs at the chosen LR: base + shift + seed noise."""
    w = m.workloads[wl]
    worse = 0.1 if w.direction == "lower" else -0.1
    for lr, spec in matrix.sweep_runs(m, row, wl).items():
        v = BASE[wl] + shift + (0 if abs(lr - w.lr * best_mult) < 1e-12 else worse)
        _write(runs, spec.run_id, status, **({w.metric: v} if status == "ok" else {}))
    if status != "ok":
        return
    for seed, spec in matrix.seed_runs(m, row, wl, matrix._lr(w.lr * best_mult)).items():
        if seed != m.sweep_seed:
            _write(runs, spec.run_id, "ok", **{w.metric: BASE[wl] + shift + NOISE[seed] + sign * JITTER[seed]})
        else:  # the sweep's run at this LR is seed 0: give it the seed noise as well
            _write(runs, spec.run_id, "ok", **{w.metric: BASE[wl] + shift + NOISE[0] + sign * JITTER[0]})


@pytest.fixture
def planted(tmp_path):
    m = matrix.load(_config(tmp_path))
    runs = tmp_path / "runs"
    rows = {r.name: r for r in m.rows}
    for wl in m.workloads:
        _plant(m, runs, matrix.baseline_row(), wl, 0.0)
        _plant(m, runs, rows["zloss"], wl, -0.2 if wl == "gpt" else 0.05, best_mult=2.0)  # planted: better
        _plant(m, runs, rows["lrm"], wl, 0.0, sign=-1.0)  # null
        _plant(m, runs, rows["adamw2"], wl, 0.0, status="diverged")  # every run diverged
    return m, runs


def test_lr_choice_and_seed_runs(planted):
    m, runs = planted
    st = matrix.state(m, m.row("zloss"), "gpt", runs, None)
    assert st.status == "chosen" and st.lr == pytest.approx(6e-3)
    assert set(st.seeds) == {0, 1, 2}
    # seed 0 at the chosen LR is the sweep's run (one run id, trained once)
    assert matrix.seed_runs(m, m.row("zloss"), "gpt", st.lr)[0].run_id == matrix.sweep_runs(m, m.row("zloss"),
                                                                                             "gpt")[st.lr].run_id
    p = matrix.plan(m, m.rows, runs, None, only=["zloss"])
    assert not p.missing and p.pending == 0
    assert {s.row.name for s in p.states} == {"baseline", "zloss"}


def test_planted_difference_coloured_null_not_and_all_diverged_row(planted, tmp_path):
    m, runs = planted
    built = matrix_table.build(m, m.rows, runs, None)
    z, null = built["matrix"]["zloss"]["gpt"], built["matrix"]["lrm"]["gpt"]
    assert z.kind == "ok" and z.significant and z.estimate == pytest.approx(-0.2, abs=0.01) and z.hi < 0
    assert z.better("lower")
    assert null.kind == "ok" and not null.significant and null.lo < 0 < null.hi
    assert built["matrix"]["zloss"]["mlp"].significant and built["matrix"]["zloss"]["mlp"].estimate > 0
    assert built["matrix"]["adamw2"]["gpt"].kind == "diverged"
    assert built["matrix"]["lora"]["mlp"].kind == "n/a"

    out = tmp_path / "results"
    (out).mkdir()
    (out / "lrm.md").write_text("# lrm\n")
    written = matrix_table.write(m, m.rows, runs, None, out)
    md = (out / "methods.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.split("## Chosen")[0].splitlines()
            if line.startswith("| ")}
    assert "**-0.200 [" in rows["zloss"]
    assert "**" not in rows["[lrm](lrm.md)"]
    assert "diverged at every LR of the sweep" in rows["adamw2"]
    assert "n/a: 'lora' declares workloads gpt, not mlp" in rows["lora"]
    assert (out / "figures" / "methods_matrix.png") in written
    # tables without figures (the DAG's tables job; its figures job draws the heatmap) link the same figure
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "lrm.md").write_text("# lrm\n")
    assert matrix_table.write(m, m.rows, runs, None, bare, figures=False) == [bare / "methods.md"]
    assert (bare / "methods.md").read_text() == md


def test_heatmap_colours_only_significant_cells(planted, tmp_path, monkeypatch):
    m, runs = planted
    built = matrix_table.build(m, m.rows, runs, None)
    seen = {}
    import matplotlib.axes

    real = matplotlib.axes.Axes.imshow

    def spy(self, img, *a, **k):
        seen["rgb"] = img
        return real(self, img, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", spy)
    matrix_table.heatmap(m, m.rows, built, tmp_path / "h.png")
    rgb = seen["rgb"]
    names = [r.name for r in m.rows]
    white = (1.0, 1.0, 1.0)
    assert tuple(rgb[names.index("zloss"), 0]) != white  # planted: coloured
    assert tuple(rgb[names.index("lrm"), 0]) == white  # null: not
    assert tuple(rgb[names.index("adamw2"), 0]) == white  # diverged: no interval, not coloured


def test_diverged_seed_is_a_miss(planted):
    m, runs = planted
    st = matrix.state(m, m.row("lrm"), "gpt", runs, None)
    spec = matrix.seed_runs(m, m.row("lrm"), "gpt", st.lr)[2]
    _write(runs, spec.run_id, "diverged")
    c = matrix_table.build(m, m.rows, runs, None)["matrix"]["lrm"]["gpt"]
    assert c.kind == "ok" and c.misses == 1 and "1/3 diverged" in c.text() and not c.significant


def test_failed_seed_is_named_not_pending(planted):
    m, runs = planted
    st = matrix.state(m, m.row("lrm"), "mlp", runs, None)
    spec = matrix.seed_runs(m, m.row("lrm"), "mlp", st.lr)[1]
    _write(runs, spec.run_id, "failed", error="boom")
    c = matrix_table.build(m, m.rows, runs, None)["matrix"]["lrm"]["mlp"]
    assert c.kind == "failed" and spec.run_id in c.text()


def test_missing_runs_pending_and_not_run(tmp_path):
    m = matrix.load(_config(tmp_path))
    runs = tmp_path / "runs"
    built = matrix_table.build(m, m.rows, runs, None)
    assert built["matrix"]["zloss"]["gpt"].kind == "not run"
    p = matrix.plan(m, m.rows, runs, None, interactions=False)
    # baseline + zloss + lrm + adamw2 on 2 workloads, lora on gpt: 9 entries x 3 sweep runs, 2 more seeds each later
    assert len(p.missing) == 27 and p.pending == 18


def test_interaction_rows_compare_against_each_part(planted, tmp_path):
    m, runs = planted
    m2 = matrix.load(_config(tmp_path, interactions={
        "workloads": ["gpt"], "rows": [{"name": "lrm+zloss", "methods": ["lrm", "zloss"], "parts": ["lrm", "zloss"]}]}))
    _plant(m2, runs, m2.row("lrm+zloss"), "gpt", -0.2, best_mult=2.0, sign=-1.0)
    built = matrix_table.build(m2, m2.rows, runs, None)
    cells = built["interactions"]["lrm+zloss"]["gpt"]
    assert cells["baseline"].significant and cells["lrm"].significant
    assert cells["zloss"].kind == "ok" and not cells["zloss"].significant
    md = matrix_table.interactions_md(m2, built, None)
    assert "| lrm+zloss |" in md and "not measured" in md


def test_interaction_row_analysis_section(planted, tmp_path):
    """An interaction row's `analysis` is a section of its own under the table: the block another stage wrote
    (columns, rows) as it is, or one line saying why there is none (no file or block yet, a study not run)."""
    m, runs = planted
    table = tmp_path / "analysis.json"
    spec = {"name": "lrm+zloss", "methods": ["lrm", "zloss"], "parts": ["lrm", "zloss"],
            "analysis": {"title": "T", "file": str(table), "table": "studies.s.against", "about": "A"}}
    m2 = matrix.load(_config(tmp_path, interactions={"workloads": ["gpt"], "rows": [spec]}))
    built = matrix_table.build(m2, m2.rows, runs, None)

    def section(block) -> str:
        table.write_text(json.dumps({"studies": {"s": {"against": block}}}))
        return matrix_table.interactions_md(m2, built, None).split("## lrm+zloss: T\n\nA\n\n")[1]

    table.unlink(missing_ok=True)
    assert matrix_table.interactions_md(m2, built, None).endswith(
        f"## lrm+zloss: T\n\nA\n\nNot run: no table at `{table}` (`studies.s.against`) (FileNotFoundError).\n")
    assert section({"status": "not_run", "why": "runs missing", "columns": [], "rows": []}).startswith(
        "Not run: runs missing")
    assert "| a | b |\n|---|---|\n| x | 1 |\n" in section({"status": "ok", "columns": ["a", "b"], "rows": [["x", 1]]})
    with pytest.raises(ConfigError, match="analysis: a mapping with title, file, table"):
        matrix.load(_config(tmp_path, interactions={"workloads": ["gpt"], "rows": [
            {**spec, "analysis": {"title": "T", "file": "f"}}]}))


def test_refusals_from_declarations(tmp_path):
    m = matrix.load(_config(tmp_path))
    assert matrix.refusal(matrix.Row("x", ("lora",)), "mlp") == "'lora' declares workloads gpt, not mlp"
    assert "cannot run together" in matrix.refusal(matrix.Row("x", ("lrm", "sigma_reparam")), "gpt")
    # a capability the workload lacks (jreg needs the model's depth; Swin does not provide it), as training would say
    why = matrix.refusal(matrix.Row("x", ("jreg",)), "swin")
    assert why == "'jreg' needs capability 'depth', which swin does not provide"
    assert matrix.refusal(matrix.Row("x", ("jreg",)), "vit") is None
    with pytest.raises(ConfigError, match="method 'lora' cannot run on workload 'mlp'"):
        check_input(m, "lora", ["mlp"])
    row, wls = check_input(m, "lora", None)
    assert wls == ["gpt"]


def test_method_declaring_no_workload(tmp_path, monkeypatch):
    m = matrix.load(_config(tmp_path))

    class Nowhere(Method):
        workloads = frozenset()

    registry.discover()
    monkeypatch.setitem(registry.METHODS, "nowhere", Nowhere)
    Nowhere.name = "nowhere"
    with pytest.raises(ConfigError, match="method 'nowhere' declares no workload"):
        check_input(m, "nowhere", None)


def test_cli_bad_input_exit_2_before_training(tmp_path):
    path = _config(tmp_path)
    r = subprocess.run([sys.executable, "-m", "claimbench", "compare", "lora", "--workloads", "mlp", "--matrix",
                        str(path), "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res"),
                        "--evidence-dir", str(tmp_path / "store")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["claimbench: error: method 'lora' cannot run on workload 'mlp': "
                                             "'lora' declares workloads gpt, not mlp"]
    assert not (tmp_path / "runs").exists()


def test_unrun_registered_methods_get_a_row(tmp_path):
    m = matrix.load(_config(tmp_path))
    names = [r.name for r in table_rows(m)]
    assert names[:4] == ["zloss", "lrm", "adamw2", "lora"]
    assert "jreg" in names and "none" not in names


def test_repo_matrix_config_loads():
    m = matrix.load(REPO / "config" / "matrix.smoke.yaml")
    assert len(m.seeds) >= 3 and len(m.lr_mults) == 3
    for r in [*m.rows, *m.interactions]:
        for n in r.method_names:
            registry.get("method", n)
        if r.recipe:
            registry.get("recipe", r.recipe)
    assert all(len(r.method_names) + bool(r.recipe) == 2 for r in m.interactions)
    covered = {n for r in m.rows for n in r.method_names} | set(m.skip)
    in_repo = {n for n in registry.names("method")  # other tests may register toy plugins
               if registry.get("method", n).__module__.split(".")[0] in ("methods", "baselines")}
    assert in_repo <= covered


@pytest.mark.slow
def test_compare_toy_method_end_to_end(tmp_path):
    """`claimbench new-method` into tmp_path, then `claimbench compare` on micro GPT: the row appears."""
    from claimbench.scaffold import new_method

    new_method("toy_matrix", tmp_path / "plugin")
    path = _config(tmp_path, data={"tiny": {"dir": "data/_test/shakespeare-512"}})
    cfg = yaml.safe_load(path.read_text())
    cfg["workloads"] = {"gpt": {**cfg["workloads"]["gpt"], "steps": 6,
                                "set": {"train.warmup_steps": 2, "eval.every": 6, "eval.batches": 2, "ckpt.every": 0,
                                        "log.every": 2, "train.batch_size": 4}}}
    cfg["rows"] = []
    path.write_text(yaml.safe_dump(cfg))
    profile = {"profile": "smoke", "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"),
               "evidence_dir": str(tmp_path / "store"), "threads_per_run": 1, "warm": False,
               "data": {"tiny": {"dir": "data/_test/shakespeare-512"}}, "grid": []}
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugin"), str(REPO)]),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "claimbench", "compare", "toy_matrix", "--matrix", str(path),
                        "--configfile", str(tmp_path / "profile.yaml"), "--cores", "2"],
                       cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert out.index("plan: ") < out.index("$ snakemake")  # the plan comes first
    md = (tmp_path / "results" / "methods.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| toy_matrix |"))
    assert "[" in row.split("|")[2] and "not run" not in row
    assert len(list((tmp_path / "runs").glob("*/result.json"))) == 10  # baseline 5 + toy 5
    # a second compare reuses every run (the store holds them too)
    r2 = subprocess.run([sys.executable, "-m", "claimbench", "compare", "toy_matrix", "--matrix", str(path),
                         "--configfile", str(tmp_path / "profile.yaml"), "--dry-run"],
                        cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert "10 present" in r2.stdout and "0 to train" in r2.stdout, r2.stdout + r2.stderr


def test_tables_name_the_code_version_of_their_runs():
    """One version is named; several are flagged as mixed (as the claims tables do)."""
    from types import SimpleNamespace

    from claimbench.evidence import RunEvidence
    from claimbench.matrix_table import _code

    def ev(rid, sha):
        return RunEvidence(rid, Path(rid), "ok", {"status": "ok", "git_sha": sha})

    one = SimpleNamespace(sweep={1: ev("a", "f" * 40)}, seeds={0: ev("a", "f" * 40), 1: ev("b", "f" * 40)})
    assert _code([one]) == "Runs: 2, all from code version `ffffffffffff`."
    two = SimpleNamespace(sweep={1: ev("c", "e" * 40)}, seeds={})
    assert "mixed code versions" in _code([one, two])
