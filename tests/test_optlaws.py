"""Opt-Laws: the laws on real published curves, bad input, determinism, failed fits, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from claimbench.cli import main
from claimbench.testing import REPO
from methods.optlaws import LAWS, FitError
from methods.optlaws.base import scores
from methods.optlaws.curves import CurveError, read_csv, read_csv_dir, read_run
from methods.optlaws.selection import ThresholdRule, candidate_grid, rank

# the published curves are not in the repository: data/multipower_curves/{25,100}, or wherever this variable says
CURVES = Path(os.environ.get("CLAIMBENCH_MPL_CURVES") or REPO / "data" / "multipower_curves")
FIT = ["cosine_24000", "constant_24000", "wsdcon_9"]
needs_curves = pytest.mark.skipif(not CURVES.is_dir(), reason="published MPL curves not present")


@needs_curves
@pytest.mark.parametrize("size", ["25", "100"])
def test_multipower_predicts_held_out_published_curves(size):
    """As the Multi-Power Law paper reports: fit on 3 schedules, < 0.5% mean final error and R^2 > 0.99 on 6."""
    curves = read_csv_dir(CURVES / size)
    law = LAWS["multipower"].fit([curves[n] for n in FIT], seed=0)
    held = [c for n, c in curves.items() if n not in FIT]
    assert len(held) == 6
    s = [scores(law.predict(c), c.loss) for c in held]
    assert np.mean([x["rel_error"] for x in s]) < 0.005
    assert np.mean([x["r2"] for x in s]) > 0.99
    # the ranking target: WSD-style decay beats cosine beats constant at 24k steps
    f = {n: law.final_loss(curves[n]) for n in ("wsd_20000_24000", "cosine_24000", "constant_24000")}
    assert f["wsd_20000_24000"] < f["cosine_24000"] < f["constant_24000"]


@needs_curves
@pytest.mark.parametrize("name", ["annealing", "optlaws"])
def test_fits_are_deterministic(name):
    curves = read_csv_dir(CURVES / "25")
    a = LAWS[name].fit([curves[n] for n in FIT], seed=3)
    b = LAWS[name].fit([curves[n] for n in FIT], seed=3)
    assert a.params == b.params
    assert np.array_equal(a.predict(curves["cosine_72000"]), b.predict(curves["cosine_72000"]))


def _csv(tmp_path: Path, text: str, name: str = "c.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,msg", [
    ("step,lr\n1,0.1\n2,0.1\n", "row 1: missing column(s) loss"),
    ("step,lr,loss\n1,0.1,3.0\n3,0.1,2.9\n2,0.1,2.8\n", "row 4: steps not increasing"),
    ("step,lr,loss\n1,0.1,3.0\n2,0.1,nan\n", "row 3: loss is nan"),
    ("step,lr,loss\n1,0.1,3.0\n", "only 1 data row"),
    ("step,lr,loss\n1,0.1,3.0\n2,x,2.0\n", "row 3: not three numbers"),
    ("step,lr,loss\n1,0.1,3.0\nnan,0.1,2.0\n", "row 3: step must be a positive integer"),
    ("step,lr,loss\n1,0.1,3.0\n2,0.1,inf\n", "row 3: loss is inf"),
])
def test_bad_csv_names_file_and_row(tmp_path, text, msg):
    p = _csv(tmp_path, text)
    with pytest.raises(CurveError) as e:
        read_csv(p)
    assert str(p) in str(e.value) and msg in str(e.value)


def test_too_few_points_is_a_failed_fit_naming_the_file(tmp_path):
    p = _csv(tmp_path, "step,lr,loss\n10,0.1,3.0\n20,0.1,2.9\n30,0.05,2.8\n", "short.csv")
    with pytest.raises(FitError, match="short.csv: rows 2-4: fewer than the law's 7 parameters"):
        LAWS["multipower"].fit([read_csv(p)])


def test_cli_reports_a_failed_fit_not_a_prediction(tmp_path, capsys):
    d = tmp_path / "curves"
    d.mkdir()
    _csv(d, "step,lr,loss\n10,0.1,3.0\n20,0.1,2.9\n", "a.csv")
    _csv(d, "step,lr,loss\n10,0.1,3.1\n20,0.05,2.8\n", "b.csv")
    out = tmp_path / "fit.json"
    rc = main(["law", "fit", "--curves", str(d), "--law", "multipower", "--fit", "a", "--predict", "b",
               "--out", str(out)])
    res = json.loads(out.read_text())
    assert rc == 1 and res["failed"] is True and res["predictions"] == {}
    assert "fewer than" in capsys.readouterr().err


@pytest.mark.parametrize("text,msg", [
    ("step,loss\n1,3\n2,2\n", "a.csv: row 1: missing column(s) lr"),
    ("step,lr,loss\n1,0.1,3.0\n2,0.1,2.9\n2,0.1,2.8\n", "a.csv: row 4: steps not increasing (2 after 2)"),
    ("step,lr,loss\n1,0.1,3.0\n2,0.1,NaN\n", "a.csv: row 3: loss is NaN"),
])
def test_cli_bad_csv_exit_2(tmp_path, capsys, text, msg):
    d = tmp_path / "curves"
    d.mkdir()
    _csv(d, text, "a.csv")
    out = tmp_path / "o.json"
    rc = main(["law", "fit", "--curves", str(d), "--law", "annealing", "--fit", "a", "--predict", "a",
               "--out", str(out)])
    assert rc == 2 and msg in capsys.readouterr().err and not out.exists()


def test_cli_reports_a_non_converged_fit_as_failed(tmp_path, capsys, monkeypatch):
    """L-BFGS-B stopped by its iteration limit: a failed fit (exit 1, no predictions), never a prediction."""
    import functools

    from methods.optlaws import annealing, fitting

    monkeypatch.setattr(annealing, "multistart", functools.partial(fitting.multistart, long_iter=1))
    root = tmp_path / "runs"
    _fake_run(root, "cos", "cosine", 1e-3)
    _fake_run(root, "const", "constant", 1e-3)
    out = tmp_path / "fit.json"
    rc = main(["law", "fit", "--runs", str(root), "--law", "annealing", "--fit", "cos,const", "--predict", "cos",
               "--out", str(out)])
    res = json.loads(out.read_text())
    assert rc == 1 and res["failed"] is True and res["predictions"] == {} and "params" not in res
    assert "did not converge in 1 iterations" in capsys.readouterr().err


def _fake_run(root: Path, name: str, schedule: str, lr: float, steps: int = 200) -> Path:
    """A run directory in the trainer's format, with a loss that follows an annealing-law shape."""
    from baselines.schedules import from_train_config
    from claimbench.config import RunConfig

    cfg = RunConfig(workload="gpt", train={"steps": steps, "lr": lr, "schedule": schedule, "warmup_steps": 10})
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    f = from_train_config(cfg.train)
    lrs = np.array([lr * f(i) for i in range(steps)])
    s1 = np.cumsum(lrs)
    drop = np.concatenate([[0.0], np.clip(lrs[:-1] - lrs[1:], 0, None)])
    s2 = np.cumsum(np.cumsum(drop))  # lambda = 1 for the test shape
    rows = [{"step": s, "train_loss": float(2.0 + 0.5 * s1[s - 1] ** -0.5 - 20.0 * s2[s - 1]), "lr": float(lrs[s - 1])}
            for s in range(5, steps + 1, 5)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "result.json").write_text(json.dumps({"status": "ok"}))
    return d


def test_runs_use_the_exact_schedule_and_cli_fits_them(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "cos", "cosine", 1e-3)
    _fake_run(root, "const", "constant", 1e-3)
    _fake_run(root, "lin", "linear", 1e-3)
    c = read_run(root / "cos")
    assert len(c.lrs) == 200 and c.lrs[0] == pytest.approx(1e-4) and c.lrs[9] == pytest.approx(1e-3)
    out = tmp_path / "fit.json"
    assert main(["law", "fit", "--runs", str(root), "--law", "annealing", "--fit", "cos,const",
                 "--predict", "lin", "--out", str(out)]) == 0
    p = json.loads(out.read_text())["predictions"]["lin"]
    assert set(p) == {"final_pred", "final_actual", "rel_error", "r2", "mae"}
    assert p["rel_error"] < 0.02


def test_threshold_rule_and_selection():
    rule = ThresholdRule.fit([0.001, 0.003, 0.01, 1.0, 3.0, 10.0], [False, False, False, False, True, True])
    assert rule.predict(5.0) and not rule.predict(1.0)
    assert ThresholdRule.fit([1.0, 2.0], [False, False]).threshold is None

    class Toy(LAWS["annealing"]):  # a known law: lower final LR = lower loss
        def _predict(self, schedule):
            return 3.0 + schedule.lrs[schedule.steps - 1] * 100

    from methods.optlaws.base import Units

    law = Toy({}, Units(1e-3, 100))
    cands = candidate_grid(100, [1e-3, 5.0], [5], [0.2], [0.1], [0.3])
    out = rank(law, cands, rule, top_k=2)
    assert all("lr=0.001" in s for s in out["top_k"])
    flagged = [r for r in out["ranking"] if r["predicted_diverge"]]
    assert flagged and all(r["peak_lr"] == 5.0 for r in flagged)


def test_plugin_registers_an_analysis_method():
    from claimbench import registry
    from claimbench.plugin import Method
    from methods.optlaws import OptLaws

    m = registry.METHODS["optlaws"]  # registered on import (no full plugin discovery: it imports every workload)
    assert m is OptLaws
    from claimbench import papers

    paper = papers.discover()["optlaws"]
    stages = paper.plan(papers.Dag({"profile": "smoke", "runs_dir": "runs/smoke", "results_dir": "results",
                                    "papers": ["optlaws"]}, paper.root, {}, {})).stages
    assert [s.name for s in stages] == ["optlaws_analysis"] and "methods.optlaws" in paper.methods
    assert not any(m.overrides(h) for h in ("transform_model", "param_groups", "extra_loss", "before_step"))
    assert issubclass(m, Method)
    assert LAWS["optlaws"].label == "Opt-Laws (reconstructed)"


def _study_run(family: str, lr: float, loss: np.ndarray | float, seed: int = 0, probe: bool = False,
               status: str = "ok", total: int = 100, every: int = 1):
    from methods.optlaws.analysis import Run
    from methods.optlaws.curves import Curve

    steps = np.arange(every, total + 1, every)
    loss = np.broadcast_to(np.asarray(loss, float), steps.shape).copy()
    return Run(Curve(f"{family}@{lr:g}/s{seed}", np.full(total, lr), steps, loss), family, lr, seed, probe, status)


def test_seed_noise_is_pooled_over_repeated_groups_and_a_diverged_seed_is_a_miss():
    """Seed noise (C6's premise): pooled seed SD over groups with >= 2 seeds; a diverged seed makes it infinite."""
    import math

    from methods.optlaws.analysis import seed_noise

    runs = [_study_run("constant", 3e-3, 3.0), _study_run("constant", 3e-3, 3.1, seed=1),
            _study_run("constant", 3e-3, 3.2, seed=2), _study_run("cosine", 3e-3, 4.0),
            _study_run("cosine", 3e-3, 4.2, seed=1), _study_run("linear", 3e-3, 9.0),  # one seed: no information
            _study_run("constant", 3.0, 1.0), _study_run("constant", 3.0, 9.0, seed=1, probe=True)]  # probes: ignored
    noise = seed_noise(runs)
    assert noise["pairs"] == 2 and noise["dof"] == 3 and noise["seeds_min"] == 2
    assert noise["sigma"] == pytest.approx(math.sqrt((0.02 + 0.02) / 3))
    runs[1].status = "diverged"
    assert seed_noise(runs)["sigma"] == math.inf


def test_power_law_fit_recovers_a_power_law_and_rejects_other_shapes():
    from methods.optlaws.analysis import power_law_fit

    x = np.geomspace(0.1, 1.0, 100)
    f = power_law_fit(x, 2.0 + 0.5 * x ** -0.3)
    assert f["r2"] > 0.9999
    assert f["alpha"] == pytest.approx(0.3, rel=1e-3) and f["L_inf"] == pytest.approx(2.0, rel=1e-3)
    assert power_law_fit(x, np.sin(8 * x))["r2"] < 0.5
    assert power_law_fit(x, np.full_like(x, 3.0))["r2"] is None


def test_scaling_limit_of_a_fitted_law_and_of_a_non_monotone_one():
    """C8: a law fitted on power-law-like curves gives a monotone power law at constant LR; a bumpy one does not."""
    from methods.optlaws.analysis import scaling_limit
    from methods.optlaws.base import Units

    runs = []
    for fam in ("constant", "cosine"):
        for lr in (1e-3, 3e-3):
            r = _study_run(fam, lr, 0.0, total=400, every=5)
            if fam == "cosine":
                r.curve.lrs = lr * (0.55 + 0.45 * np.cos(np.pi * np.arange(400) / 400))
            r.curve.loss = 3.0 + 2.0 * (np.cumsum(r.curve.lrs)[r.curve.steps - 1] / 1e-3) ** -0.4
            runs.append(r)
    law = LAWS["optlaws"].fit([r.curve for r in runs])
    sl = scaling_limit(law, runs)
    assert set(sl["per_lr"]) == {"0.001", "0.003"}
    assert sl["monotone"] and sl["r2"] > 0.95 and sl["r2_to_10x"] is not None

    class Bumpy(LAWS["annealing"]):
        def _predict(self, schedule):
            return 3.0 + 0.1 * np.sin(schedule.steps / 30.0)

    bumpy = scaling_limit(Bumpy({}, Units(1e-3, 400)), runs)
    assert not bumpy["monotone"] and bumpy["r2"] < 0.95
    assert scaling_limit(None, runs) == {"failed": "no fitted law"}
    assert "failed" in scaling_limit(law, [r for r in runs if r.family != "constant"])


def _fake_grid_runs(root: Path, grids: tuple[str, ...] = ("config/papers/optlaws.smoke.yaml",)) -> None:
    """Every run of config/papers/optlaws.smoke.yaml (or of `grids`) as a run directory (no training): an
    annealing-law loss shape, seed s offset by 0.02 s, probes at peak LR >= 3 diverged at step 60; logged every 20
    steps (keeps the fits quick)."""
    from baselines.schedules import from_train_config
    from claimbench.config import load_config
    from claimbench.grid import expand

    repo = Path(__file__).resolve().parents[1]
    grid = expand([e for g in grids for e in yaml.safe_load((repo / g).read_text())["grid"]])
    for rid, spec in grid.items():
        cfg = load_config(repo / spec.config, list(spec.sets))
        f = from_train_config(cfg.train)
        lrs = np.array([cfg.train.lr * f(i) for i in range(cfg.train.steps)])
        s1 = np.cumsum(lrs) / 1e-3
        drop = np.concatenate([[0.0], np.clip(lrs[:-1] - lrs[1:], 0, None)]) / 1e-3
        s2 = np.cumsum(np.cumsum(drop)) / cfg.train.steps
        loss = 3.0 + 2.0 * s1 ** -0.4 - 0.05 * s2 + 0.02 * cfg.seed + 0.3 * max(0.0, np.log10(cfg.train.lr / 3e-3))
        diverged = cfg.train.lr >= 3.0
        last = 60 if diverged else cfg.train.steps
        d = root / rid
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        rows = [{"step": s, "train_loss": float(loss[s - 1]), "lr": float(lrs[s - 1])} for s in range(20, last + 1, 20)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "result.json").write_text(json.dumps({"status": "diverged" if diverged else "ok", "steps": last,
                                                   "config_hash": cfg.hash(), "git_sha": "test", "wall_s": 1.0,
                                                   "versions": {}}))


@pytest.mark.slow
def test_study_writes_every_key_the_claims_read(tmp_path):
    """The DAG stage on the smoke grid's run ids (synthetic curves): each smoke claim of benchmarks/claims/optlaws.yaml
    finds its numbers in optlaws.json and gets a verdict (none is not_run for a missing key), C8 included."""
    from claimbench.claims import load_all
    from claimbench.study import run_study as claim_study

    root, res = tmp_path / "runs", tmp_path / "results"
    _fake_grid_runs(root)
    assert main(["law", "study", "--grid", "config/papers/optlaws.smoke.yaml", "--runs-dir", str(root),
                 "--out", str(res / "optlaws.json"), "--md", str(res / "analysis/optlaws/summary.md"),
                 "--figures", str(res / "figures/optlaws")]) == 0
    out = json.loads((res / "optlaws.json").read_text())
    assert out["runs"] == 33 and out["law_runs"] == 21 and out["diverged_law_runs"] == 0 and not out["not_usable"]
    assert out["seed_noise"]["sigma"] == pytest.approx(0.02) and out["seed_noise"]["seeds_min"] == 3
    assert out["tie_nats"] == 0.01 and out["placebo"]["top2"]["pick"] == ["constant", "cosine"]
    for law in ("optlaws", "multipower", "annealing"):
        assert {"r2", "monotone", "r2_to_10x", "per_lr"} <= set(out["laws"][law]["scaling_limit"])
    md = (res / "analysis/optlaws/summary.md").read_text()
    assert "Opt-Laws (reconstructed)" in md and "Placebos" in md and "](../../figures/optlaws/heldout_" in md
    studied = [c for c in load_all() if c.paper["id"] == "optlaws" and c.grid.get("smoke")]
    assert {c.id.split("_")[0] for c in studied} == {"optlaws.c1", "optlaws.c2", "optlaws.c3", "optlaws.c6",
                                                      "optlaws.c8"}
    verdicts = {}
    for c in studied:
        s = claim_study(c, "smoke", root, res)
        assert s["verdict"] in ("reproduced", "not_reproduced", "inconclusive", "out_of_scope"), (c.id, s.get("why"))
        assert s["estimate"] is not None
        verdicts[c.id] = s
    c8 = verdicts["optlaws.c8_scaling_limit"]
    assert c8["verdict"] == "out_of_scope" and "paper's own law" in c8["why"]
    c6 = verdicts["optlaws.c6_accuracy"]  # seed SD 0.02 nats is ~0.5% of the loss: 0.1% cannot be scored
    assert c6["verdict"] == "out_of_scope" and "repeats across seeds" in c6["why"]
    for cid in ("optlaws.c1_top2", "optlaws.c2_out_of_family"):
        assert verdicts[cid]["test"] == "hit_rate" and len(verdicts[cid]["values"]["chance"]) == verdicts[cid][
            "values"]["n"]


def test_cpu_tier_grid_adds_runs_and_the_study_reads_seed_means(tmp_path):
    """config/papers/optlaws.cpu.yaml holds only runs the smoke grid lacks (59 schedule runs, 21 probes); with the
    smoke grid they make 4 peak LRs x 7 families x 3 seeds, and every case then reads the mean of its 3 seeds. With
    the smoke grid alone a case reads seed 0 (only constant and cosine are repeated at 3e-3)."""
    import methods.optlaws.analysis as S
    from claimbench.grid import expand

    smoke, cpu = "config/papers/optlaws.smoke.yaml", "config/papers/optlaws.cpu.yaml"
    ids = {g: set(expand(yaml.safe_load(Path(g).read_text())["grid"])) for g in (smoke, cpu)}
    assert len(ids[cpu]) == 80 and not ids[cpu] & ids[smoke]
    _fake_grid_runs(tmp_path, (smoke, cpu))
    runs, bad = S.load_runs(Path(cpu), tmp_path)  # the cpu file includes the smoke grid
    assert len(runs) == 113 and not bad
    assert S.case_seeds(runs) == {lr: [0, 1, 2] for lr in (1e-3, 3e-3, 5e-3, 1e-2)}
    finals = S.case_finals(runs)
    assert all(len(v) == 7 for v in finals.values())
    seed0 = {(r.family, r.lr): r.final for r in runs if not r.probe and r.seed == 0}
    for lr, fams in finals.items():  # seeds offset by 0.00, 0.02, 0.04: the mean is seed 0 + 0.02
        for fam, v in fams.items():
            assert v == pytest.approx(seed0[fam, lr] + 0.02, abs=1e-9)
    band = {(r.family, r.lr) for r in runs if r.probe and r.lr in (1.5, 2.0, 2.5)}
    assert len(band) == 21
    smoke_runs, _ = S.load_runs(Path(smoke), tmp_path)
    assert S.case_seeds(smoke_runs) == {1e-3: [0], 3e-3: [0], 1e-2: [0]}
    assert S.case_finals(smoke_runs)[3e-3]["constant"] == pytest.approx(seed0["constant", 3e-3])


@pytest.mark.slow
def test_cpu_tier_study_scores_4_cases_of_seed_means(tmp_path):
    """The study on the smoke grid plus the cpu file (synthetic curves): 4 Top-2 cases and 20 out-of-family cases,
    each of 3-seed means; the cpu arms of C1/C2 are those runs; C1's verdict reads them."""
    from claimbench.claims import load_all
    from claimbench.study import run_study as claim_study

    root, res = tmp_path / "runs", tmp_path / "results" / "cpu"
    grids = ("config/papers/optlaws.smoke.yaml", "config/papers/optlaws.cpu.yaml")
    _fake_grid_runs(root, grids)
    assert main(["law", "study", "--grid", grids[1], "--runs-dir", str(root), "--out", str(res / "optlaws.json"),
                 "--md", str(res / "analysis/optlaws/summary.md"), "--figures", str(res / "figures/optlaws")]) == 0
    out = json.loads((res / "optlaws.json").read_text())
    assert out["runs"] == 113 and out["law_runs"] == 28 and not out["not_usable"]
    assert out["case_seeds"] == {lr: [0, 1, 2] for lr in ("0.001", "0.003", "0.005", "0.01")}
    assert out["seed_noise"]["pairs"] == 28 and out["seed_noise"]["seeds_min"] == 3
    for law in ("optlaws", "multipower", "annealing"):
        assert out["laws"][law]["top2"]["n"] == 4 and out["laws"][law]["out_of_family"]["n"] == 20
    assert out["laws"]["optlaws"]["divergence"]["n"] == 28 + 8 + 21
    c1 = next(c for c in load_all() if c.id == "optlaws.c1_top2")
    s = claim_study(c1, "cpu", root, res)
    assert s["test"] == "hit_rate" and len(s["values"]["chance"]) == 4, s.get("why")


def test_paper_dag_reads_both_grids_in_the_cpu_tier_and_writes_under_its_results():
    """The study stage of the cpu tier reads the cpu file (which includes the smoke grid and its `study:` constants)
    and writes under the tier's results directory."""
    from claimbench.papers import Dag
    from methods.optlaws.paper import PAPER, dag

    def mk(**cfg):
        return Dag(config={"papers": ["optlaws"], "runs_dir": "runs/smoke", **cfg}, repo=Path("."), runs={}, data={})

    smoke = mk(profile="smoke", results_dir="results")
    assert Path(dag(PAPER, smoke).stages[0].input["grid"]).name == "optlaws.smoke.yaml"
    for d in (mk(profile="cpu", results_dir="results/cpu"),):
        st = dag(PAPER, d).stages[0]
        assert Path(st.input["grid"]).name == "optlaws.cpu.yaml" and len(st.input["runs"]) == 113
        assert all(v.startswith("results/cpu/") for v in st.output.values()) and st.log.startswith("results/cpu/")
    assert len(dag(PAPER, smoke).stages[0].input["runs"]) == 33


def test_law_study_reads_the_evidence_store_with_store(tmp_path, monkeypatch, capsys):
    """`--store DIR` reaches the study's run loader (evidence.locate: the runs directory first, then the store);
    a store that is not a directory is a one-line error before anything is read."""
    import methods.optlaws.analysis as S

    seen = {}
    monkeypatch.setattr(S, "run_analysis", lambda *a: seen.setdefault("args", a))
    store = tmp_path / "store"
    store.mkdir()
    args = ["law", "study", "--grid", "config/papers/optlaws.smoke.yaml", "--runs-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / "o.json"), "--md", str(tmp_path / "o.md"), "--figures", str(tmp_path / "f")]
    assert main([*args, "--store", str(store)]) == 0
    assert seen["args"][-1] == store
    seen.clear()
    assert main(args) == 0 and seen["args"][-1] is None
    seen.clear()
    assert main([*args, "--store", str(tmp_path / "nope")]) == 2
    assert "--store" in capsys.readouterr().err and not seen


def test_cli_unknown_fit_procedure_is_one_line_exit_2(tmp_path, capsys):
    """`law fit --procedure` names the law's fitting procedure (multipower: converged | release); a wrong one is
    refused in one line before anything is written."""
    d = tmp_path / "curves"
    d.mkdir()
    _csv(d, "step,lr,loss\n" + "".join(f"{i * 10},0.1,{3 - i * 0.01}\n" for i in range(1, 20)), "a.csv")
    out = tmp_path / "o.json"
    rc = main(["law", "fit", "--curves", str(d), "--law", "multipower", "--fit", "a", "--predict", "a",
               "--procedure", "nosuch", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--procedure" in err and "nosuch" in err and not out.exists()
