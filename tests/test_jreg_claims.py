"""JREG's claims on the verdict engine: each test-based claim reproduces a planted effect and not a null or
its placebo; the claims file has no duplicate and no data-derived threshold; the analyses read runs through
the evidence module, keep diverged runs as misses and give every number an interval and n (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from claimbench.claims import load_file
from claimbench.judge import judge
from claimbench.stats import summarize

CLAIMS = Path(__file__).resolve().parents[1] / "benchmarks" / "claims" / "jreg.yaml"


@pytest.fixture(scope="module")
def claims() -> dict:
    return {c.id: c for c in load_file(CLAIMS)}


def _mean_values(vals: list[float]) -> dict:
    """What the `mean` / `trend` statistics hand the interval test."""
    s = summarize(vals)
    return {"estimate": s["mean"], "ci_lo": s["ci_lo"], "ci_hi": s["ci_hi"], "n": s["n"]}


def _base_values(base: dict) -> dict:
    s = summarize(list(base.values()))
    return {"mean_base": s["mean"], "sd_base": s["sd"], "n_base": s["n"], "min_base": min(base.values())}


def _verdict(claim, arms: dict, values: dict) -> str:
    return judge(claim, arms, values, None)["verdict"]


# ---- the claims file ------------------------------------------------------------------------------------

def test_every_claim_is_tested_and_none_is_a_duplicate(claims):
    """c2_metric was c1_jump_shape again (same statistic, same runs): removed, and no pair may repeat that."""
    assert "jreg.c2_metric" not in claims
    assert all(c.test for c in claims.values())
    seen = {}
    for c in claims.values():
        key = json.dumps([c.statistic, c.grid], sort_keys=True, default=str)
        assert key not in seen, f"{c.id} repeats {seen.get(key)}"
        seen[key] = c.id


def test_no_threshold_is_derived_from_data(claims):
    """Margins, effects and bands are constants; no seed SD in a threshold (a premise may bound every seed)."""
    doc = yaml.safe_load(CLAIMS.read_text())
    for c in doc["claims"]:
        t = c["test"]
        for key in ("margin", "paper_effect"):
            assert key not in t or isinstance(t[key], (int, float)), (c["id"], key)
        assert "sd_" not in json.dumps(t), c["id"]
        if t["kind"] in ("equivalence", "noninferiority"):
            assert t["margin_reason"]
        if t["kind"] == "interval":
            assert all(isinstance(x, float) for x in t["band"]) and t["band_reason"]
        assert "rule" not in c or "sd_" not in json.dumps(c["rule"]), c["id"]


def test_directional_claims_have_the_baseline_split_placebo(claims):
    for c in claims.values():
        if c.test["kind"] == "directional":
            assert c.placebo == {"split": c.test["arms"][1]}, c.id


def test_jump_threshold_is_one_constant(claims):
    from methods.jreg.metric import JUMP_CLEAR

    assert claims["jreg.c1_jump_shape"].test["band"][0] == JUMP_CLEAR
    assert f">= {JUMP_CLEAR}" in claims["jreg.c4_reduces_jump"].premises[0]["holds_if"]


# ---- planted effects, nulls, placebos ------------------------------------------------------------------------

def test_c1_jump_shape(claims):
    c = claims["jreg.c1_jump_shape"]
    assert _verdict(c, {}, _mean_values([2.0, 2.1, 1.9])) == "reproduced"
    assert _verdict(c, {}, _mean_values([1.0, 1.05, 0.95])) == "not_reproduced"
    assert _verdict(c, {}, _mean_values([0.9, 0.93, 1.3])) == "inconclusive"  # the smoke runs' J


def test_c3_amplification(claims):
    c = claims["jreg.c3_amplification"]
    assert _verdict(c, {}, _mean_values([0.93, 0.97, 0.99])) == "reproduced"  # interval may pass 1
    assert _verdict(c, {}, _mean_values([0.1, -0.1, 0.05])) == "not_reproduced"


@pytest.mark.parametrize("cid", ["jreg.c4_reduces_jump", "jreg.c4_reduces_jump_wide"])
def test_c4_reduces_jump(claims, cid):
    c = claims[cid]
    base = {0: 2.0, 1: 2.1, 2: 1.9}
    assert _verdict(c, {"jreg": {0: 1.1, 1: 1.25, 2: 0.95}, "base": base}, _base_values(base)) == "reproduced"
    null = {"jreg": {0: 2.02, 1: 2.07, 2: 1.93}, "base": base}
    assert _verdict(c, null, _base_values(base)) == "not_reproduced"
    # premise: no jump in the baseline (the smoke runs: J 0.91, 0.90, 1.27) -> out of scope, whatever JREG does
    small = {0: 0.91, 1: 0.90, 2: 1.27}
    out = judge(c, {"jreg": {0: 0.5, 1: 0.6, 2: 0.55}, "base": small}, _base_values(small), None)
    assert out["verdict"] == "out_of_scope" and "jump exists" in out["why"]
    # placebo: the baseline's own seeds split in two differ as much as the planted effect -> cannot be reproduced
    split = {0: 3.0, 1: 3.02, 2: 4.0, 3: 4.02}
    out = judge(c, {"jreg": {k: v - 1.0 for k, v in split.items()}, "base": split}, _base_values(split), None)
    assert out["placebo"] == "uninformative" and out["verdict"] != "reproduced"


@pytest.mark.parametrize("cid, arm, effect", [("jreg.c5_moves_earlier", "final_only", 0.05),
                                               ("jreg.c8_middle_layers", "jreg", -0.2)])
def test_c5_c8_directional(claims, cid, arm, effect):
    c = claims[cid]
    base = {0: 0.114, 1: 0.120, 2: 0.109} if cid.endswith("earlier") else {0: 5.1, 1: 5.2, 2: 5.15}
    planted = {k: v + effect + 0.002 * k for k, v in base.items()}
    assert _verdict(c, {arm: planted, "base": base}, {}) == "reproduced"
    null = {k: v + 0.0005 * (-1) ** k for k, v in base.items()}
    assert _verdict(c, {arm: null, "base": base}, {}) != "reproduced"
    split = {0: base[0], 1: base[1], 2: base[0] - 5 * effect, 3: base[1] - 5 * effect}
    out = judge(c, {arm: {k: v + effect for k, v in split.items()}, "base": split}, {}, None)
    assert out["placebo"] == "uninformative" and out["verdict"] != "reproduced"


def test_c6_downstream(claims):
    c = claims["jreg.c6_downstream"]
    base = {0: 0.70, 1: 0.72, 2: 0.69}
    planted = {k: v + 0.05 + 0.005 * k for k, v in base.items()}
    assert _verdict(c, {"jreg": planted, "base": base}, _base_values(base)) == "reproduced"
    assert _verdict(c, {"jreg": dict(base), "base": base}, _base_values(base)) != "reproduced"
    chance = {0: 0.50, 1: 0.51, 2: 0.49}  # a smoke model answers at chance: out of scope
    assert _verdict(c, {"jreg": planted, "base": chance}, _base_values(chance)) == "out_of_scope"


def test_c6_val_loss_noninferiority_fixed_margin(claims):
    c = claims["jreg.c6_val_loss"]
    assert c.test["margin"] == 0.02 and c.placebo is None
    base = {0: 4.869, 1: 4.903, 2: 4.875}
    same = {k: v - 0.003 + 0.001 * k for k, v in base.items()}
    assert _verdict(c, {"jreg": same, "base": base}, {}) == "reproduced"
    worse = {k: v + 0.1 + 0.002 * k for k, v in base.items()}
    assert _verdict(c, {"jreg": worse, "base": base}, {}) == "not_reproduced"
    two = {0: 4.87, 1: 4.90}  # two seeds decide nothing
    assert _verdict(c, {"jreg": two, "base": two}, {}) == "inconclusive"
    diverged = {**same, 2: math.inf}  # a diverged JREG run is a miss, not a dropped seed: never a match
    assert _verdict(c, {"jreg": diverged, "base": base}, {}) != "reproduced"


# ---- the analyses: evidence, misses, intervals -----------------------------------------------------------

def _run(root: Path, rid: str, seed: int, lam: float, status: str = "ok", lm: dict | None = None,
         metrics: list[dict] | None = None, loss: float = 4.9) -> str:
    d = root / rid
    d.mkdir(parents=True)
    cfg = {"seed": seed, "workload": "gpt", "size": "smoke", "model": {"arch": "llama", "n_layer": 4},
           "train": {"steps": 40}, "methods": [{"name": "jreg", "options": {"lam": lam}}]}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = {"status": status, "git_sha": "x", "config_hash": "h"}
    if status == "ok":
        res["final_val_loss"] = loss
    (d / "result.json").write_text(json.dumps(res))
    if lm is not None:
        (d / "lm_eval.json").write_text(json.dumps(lm))
    if metrics is not None:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    return rid


def _lm(scores: dict) -> dict:
    return {"results": {t: ({"acc,none": v} if t != "ppl" else {"word_perplexity,none": v})
                        for t, v in scores.items()},
            "chance": {"t_a": {"acc": 0.5}, "t_b": {"acc": 0.25}, "t_c": {"acc": 0.5}, "t_d": {"acc": 0.25},
                       "flat": {"acc": 0.5}}}


def _c7_runs(tmp_path: Path, regress: float) -> tuple[Path, Path, list[str], list[str]]:
    runs, store = tmp_path / "runs", tmp_path / "store"
    base, jreg = [], []
    for s in range(4):
        b = {"t_a": 0.70 + 0.01 * s, "t_b": 0.40, "t_c": 0.60 - 0.01 * s, "t_d": 0.45, "flat": 0.505,
             "ppl": 30.0}
        j = {**b, "t_a": b["t_a"] - regress - 0.003 * s, "t_b": 0.40 + 0.02 * (-1) ** s,
             "t_c": b["t_c"] - regress + 0.002 * s, "ppl": 20.0}
        base.append(_run(runs, f"base-s{s}", s, 0.0, lm=_lm(b)))
        jreg.append(_run(store, f"jreg-s{s}", s, 0.1, lm=_lm(j)))  # only in the evidence store
    return runs, store, jreg, base


def test_c7_task_regressions_end_to_end(claims, tmp_path):
    """tasks.py on runs found in the runs dir and the store -> the claim's from_file values -> its verdict."""
    from claimbench.study import compute
    from methods.jreg.tasks import main

    c = claims["jreg.c7_task_regressions"]
    for regress, verdict in ((0.10, "reproduced"), (0.0, "not_reproduced")):
        root = tmp_path / str(regress)
        runs, store, jreg, base = _c7_runs(root, regress)
        out = root / "analysis" / "jreg" / "task_regressions.json"
        out.parent.mkdir(parents=True)
        assert main(["--runs-dir", str(runs), "--store", str(store), "--jreg", *jreg, "--base", *base,
                     "--out", str(out)]) == 0
        r = json.loads(out.read_text())
        # 'flat' sits at chance and 'ppl' is no accuracy: neither is a case
        assert set(r["skipped"]) == {"flat", "ppl"} and r["n_cases"] == 4 and r["n_seeds"] == 4
        values = compute(c.statistic, {}, {}, {"results": str(root), "runs_dir": "", "profile": "smoke"})
        assert values["hits"] == (2 if regress else 0) and values["chance"] == [0.05] * 4
        assert values["n"] == 4 and values["ci_lo"] <= values["estimate"] <= values["ci_hi"]
        assert _verdict(c, {}, values) == verdict
    # one task off chance: nothing to be non-uniform about -> out of scope
    assert _verdict(c, {}, {"hits": 1, "chance": [0.05], "n_cases": 1}) == "out_of_scope"


def test_c7_diverged_run_scores_chance_and_missing_run_stops(tmp_path):
    from methods.jreg.runs import load_runs
    from methods.jreg.tasks import arm_docs, compare, main

    runs = tmp_path / "runs"
    base = [_run(runs, f"b{s}", s, 0.0, lm=_lm({"t_a": 0.70 + 0.01 * s})) for s in range(3)]
    jreg = [_run(runs, f"j{s}", s, 0.1, lm=_lm({"t_a": 0.70 + 0.01 * s})) for s in range(2)]
    jreg.append(_run(runs, "j2", 2, 0.1, status="diverged"))  # no lm_eval.json
    r = compare(arm_docs(load_runs(jreg, runs, None)), arm_docs(load_runs(base, runs, None)))
    assert r["n_diverged_jreg"] == 1 and r["n_seeds"] == 3
    assert r["tasks"]["t_a"]["diff_mean"] == pytest.approx((0.5 - 0.72) / 3)
    assert main(["--runs-dir", str(runs), "--jreg", "j0", "nope", "--base", *base,
                 "--out", str(tmp_path / "o.json")]) == 2
    assert not (tmp_path / "o.json").exists()


def test_summary_reads_the_store_and_keeps_diverged_runs(tmp_path):
    from methods.jreg.analysis import main

    runs, store = tmp_path / "runs", tmp_path / "store"

    def metrics(j: float) -> list[dict]:
        return [{"step": s, "jreg/jump": j * s / 40, "jreg/dist/1": 0.3, "jreg/dist/2": 0.1, "jreg/dist/3": 0.1,
                 "jreg/dist/4": 0.1 * j, "jreg/early_exit_ce": 5.0 - j / 10} for s in (10, 20, 30, 40)]

    ids = [_run(runs, f"b{s}", s, 0.0, metrics=metrics(2.0 + 0.1 * s), loss=4.9 + 0.01 * s) for s in range(3)]
    ids += [_run(store, f"j{s}", s, 0.1, metrics=metrics(1.0 + 0.1 * s), loss=4.91 + 0.01 * s) for s in range(2)]
    ids.append(_run(store, "j2", 2, 0.1, status="diverged", metrics=metrics(1.0)[:2]))
    assert main(["--runs-dir", str(runs), "--store", str(store), "--runs", *ids, "--out", str(tmp_path / "o")]) == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    (setting,) = s["settings"].values()
    base = setting["arms"]["baseline (jreg probe, lam=0)"]
    assert base["jump_train"]["n"] == 3 and base["jump_train"]["ci_lo"] <= 2.1 <= base["jump_train"]["ci_hi"]
    (arm,) = [a for a in setting["arms"] if a.startswith("jreg")]
    reg = setting["arms"][arm]
    assert reg["n_diverged"] == 1 and reg["final_val_loss"]["n"] == 3
    assert reg["final_val_loss"]["estimate"] == math.inf  # the miss, not an average of the two that finished
    assert math.isnan(reg["jump_train"]["ci_lo"])  # an undefined jump: no interval rather than a dropped seed
    paired = setting["paired"][arm]["jump_train"]
    assert paired["n"] == 3 and math.isnan(paired["ci_lo"])
    assert main(["--runs-dir", str(runs), "--runs", "missing-run", "--out", str(tmp_path / "o2")]) == 2


def test_trend_counts_a_diverged_run_as_a_miss(claims):
    """A run that diverged after a rising J is a miss (no trend, rho 0), never dropped nor read off its partial
    series: three rising seeds reproduce, two rising and one diverged do not."""
    from claimbench.evidence import RunEvidence
    from claimbench.study import compute

    def run(i: int, status: str) -> RunEvidence:
        ev = RunEvidence(run_id=f"r{i}", run_dir=Path("."), status=status)
        order = list(range(10))
        for k in range(i):  # seed i: i neighbouring pairs swapped, so the seeds' rhos differ (near 1)
            order[3 * k], order[3 * k + 1] = order[3 * k + 1], order[3 * k]
        ev._metrics = [{"step": s, "jreg/jump": 1.0 + 0.1 * order[s]} for s in range(10)]
        return ev

    c = claims["jreg.c3_amplification"]
    ok = compute(c.statistic, {"base": [run(i, "ok") for i in range(3)]}, {}, {})
    assert ok["misses"] == 0 and ok["n"] == 3 and _verdict(c, {}, ok) == "reproduced"
    one = compute(c.statistic, {"base": [run(0, "ok"), run(1, "ok"), run(2, "diverged")]}, {}, {})
    assert one["misses"] == 1 and one["n"] == 3 and one["per_seed"][2] == 0.0 and one["rho_min"] == 0.0
    assert _verdict(c, {}, one) != "reproduced"


def test_c4_wide_reads_a_second_model_size(claims):
    """The second size: the smoke design at twice the width (cpu tier) and the gpu profile's size M, same test."""
    c, c4 = claims["jreg.c4_reduces_jump_wide"], claims["jreg.c4_reduces_jump"]
    same = lambda t: {k: v for k, v in t.items() if k != "note"}  # noqa: E731
    assert same(c.test) == same(c4.test) and c.statistic == c4.statistic
    assert c.premises[0]["holds_if"] == "min_base >= 1.5"
    assert "smoke" not in c.grid and c.entries("cpu")["base"]["set"]["model.n_embd"] == 128
    assert c4.entries("cpu")["base"]["set"]["model.n_embd"] == 64
    assert c.entries("gpu")["base"]["set"]["model.n_embd"] == 512 and c.entries("cpu")["base"]["seeds"] == [0, 1, 2]


def test_cpu_arms_are_the_smoke_runs_plus_the_cpu_grid(claims):
    """The `cpu:` arms name config/papers/jreg.cpu.yaml's entries, some widened to seeds 0-8, 0-14 or 0-22: those seeds
    0-2 must be the smoke arms' runs (the cpu file's settings are the smoke grid's), and the rest is exactly what the
    cpu file adds to the smoke grid file it includes."""
    from claimbench.grid import expand
    from claimbench.tiers import load_grid

    papers_dir = CLAIMS.parents[2] / "config" / "papers"
    smoke_grid = set(expand(load_grid(papers_dir / "jreg.smoke.yaml")["grid"]))
    cpu_grid = set(expand(load_grid(papers_dir / "jreg.cpu.yaml")["grid"]))
    assert smoke_grid <= cpu_grid
    extra = set()
    for c in (c for c in claims.values() if "cpu" in c.grid):
        smoke = c.arms("smoke")
        for arm, runs in c.arms("cpu").items():
            assert set(smoke.get(arm, {})) <= set(runs), (c.id, arm)
            extra |= set(runs) - set(smoke.get(arm, {}))
    assert extra == cpu_grid - smoke_grid and len(extra) == 52


def test_arms_name_the_paper_grid_entries(claims):
    """Every arm at every profile names an entry of config/papers/jreg.<profile>.yaml (`entry:`, no copied settings;
    only `seeds` may widen one), and the arms' runs are that grid's: all of it at smoke (9 runs) and in the cpu tier
    (61), sizes S and M of the gpu grid's 27 (12; size L and the final_only arms are the summary's alone)."""
    from claimbench.grid import expand
    from claimbench.papers import discover

    for c in yaml.safe_load(CLAIMS.read_text())["claims"]:
        for profile, arms in c["grid"].items():
            for arm, e in arms.items():
                assert "entry" in e and set(e) <= {"entry", "seeds"}, (c["id"], profile, arm)
    paper = discover()["jreg"]
    for profile, n_grid, n_arms in (("smoke", 9, 9), ("cpu", 61, 61), ("gpu", 27, 12)):
        grid = expand(paper.grid_config(profile)["grid"])
        arms = {rid: spec for c in claims.values() for runs in c.arms(profile).values() for rid, spec in runs.items()}
        assert len(grid) == n_grid and len(arms) == n_arms and set(arms) <= set(grid), profile
        assert all(arms[rid] == grid[rid] for rid in arms), profile  # same config, data set and --set list
    assert {s.meta["group"] for s in expand(paper.grid_config("gpu")["grid"]).values()} == {
        f"jreg:{size}:{arm}" for size in "SML" for arm in ("base", "final_only", "jreg")}


def test_c3_placebo_is_the_trend_of_a_middle_layer(claims):
    """c3's placebo: the same rho on J's form at the middle layer ceil(L/2) (from jreg/dist/*). J rising while the
    middle layer's ratio stays flat reproduces; the whole profile drifting the same way is uninformative."""
    from claimbench.evidence import RunEvidence
    from claimbench.study import compute
    from methods.jreg.trend import middle_jump_series

    def run(i: int, mid_rises: bool) -> RunEvidence:
        ev = RunEvidence(run_id=f"r{i}", run_dir=Path("."), status="ok")
        rows = []
        for s in range(10):
            up = 0.01 * s + 0.006 * ((s * (i + 3)) % 4)  # rising, with seed-dependent dips
            d = [0.3, 0.1, 0.1 + (up if mid_rises else 0.002 * ((s * (i + 1)) % 3)), 0.1, 0.1, 0.1 + up]
            rows.append({"step": s, "jreg/jump": d[5] / 0.1 + (up if mid_rises else 0),
                         **{f"jreg/dist/{j + 1}": x for j, x in enumerate(d)}})
        ev._metrics = rows
        return ev

    steps, vals = middle_jump_series(run(0, True), "jreg/jump_at/mid")
    assert len(steps) == 10 and vals[0] == pytest.approx(0.1 / 0.1)  # d_3 / mean(d_2, d_4, d_5)
    assert middle_jump_series(run(0, True), "jreg/jump_at/3") == (steps, vals)
    c = claims["jreg.c3_amplification"]
    assert c.placebo["metric"] == "metrics:jreg/jump_at/mid"

    def values(mid_rises: bool) -> dict:
        ev = {"base": [run(i, mid_rises) for i in range(3)]}
        v = compute(c.statistic, ev, {}, {})
        pv = compute({**c.statistic, "metric": c.placebo["metric"]}, ev, {}, {})
        return {**v, **{f"placebo_{k}": pv[k] for k in ("estimate", "ci_lo", "ci_hi", "n")}}

    out = judge(c, {}, values(False), None)
    assert out["verdict"] == "reproduced" and out["placebo"] == "passed", out
    out = judge(c, {}, values(True), None)
    assert out["placebo"] == "uninformative" and out["verdict"] == "inconclusive", out
