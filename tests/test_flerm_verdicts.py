"""FLeRM claims on the verdict engine: the study's bootstrap intervals, `at_edge` per arm and scale, misses, and
each claim's pre-registered test on planted effects, nulls and placebos (synthetic values, no training)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from claimbench.claims import CLAIMS_DIR, load_file
from claimbench.grid import expand
from claimbench.judge import judge
from claimbench.study import compute
from methods.flerm.analysis import analyse_study, run

CLAIMS = {c.id: c for c in load_file(CLAIMS_DIR / "flerm.yaml")}
LRS = [2.0 ** k for k in range(-12, -5)]  # log2 LR -12..-6
X1, W2, W8 = ({"width": w, "n_blocks": 2} for w in (16, 32, 128))


def _grid(tmp_path, name="mlp_width", base_seeds=(0, 1, 2), seeds=(0, 1, 2)):
    rec = str(tmp_path / "rec" / "lr{lr}.json")
    common = {"config": "benchmarks/configs/mlp.yaml", "data": "fashion_mnist", "workload": "mlp", "size": "micro"}
    grid = [{**common, "name": "flerm:m:base", "seeds": list(base_seeds),
             "methods": [[{"name": "flerm", "record": rec, "every": 100}]], "set": {"model": X1},
             "sweep": {"train.lr": LRS}},
            {**common, "name": f"flerm:{name}:sp", "seeds": list(seeds), "sweep": {"model": [W2, W8], "train.lr": LRS}},
            {**common, "name": f"flerm:{name}:fl", "seeds": list(seeds), "methods": [[{"name": "flerm", "base": rec}]],
             "sweep": {"model": [W2, W8], "train.lr": LRS}}]
    studies = {name: {"kind": "width", "base": "m", "across": "model", "scales": [1, 2, 8], "values": [X1, W2, W8]}}
    return grid, studies


def _write(tmp_path, grid, studies, loss_fn, where="runs"):
    """loss_fn(arm, width, log2 lr, seed) -> loss, or None for a diverged run."""
    for entry in grid:
        arm = entry["name"].split(":")[2]
        for rid, spec in expand([entry]).items():
            sets = dict(s.split("=", 1) for s in spec.sets)
            width = json.loads(sets["model"])["width"]
            loss = loss_fn(arm, width, math.log2(float(sets["train.lr"])), int(sets["seed"]))
            res = {"status": "diverged", "final_train_loss": None} if loss is None else \
                {"status": "ok", "final_train_loss": loss}
            d = tmp_path / where / rid
            d.mkdir(parents=True, exist_ok=True)
            (d / "result.json").write_text(json.dumps(res))
    gfile = tmp_path / "grid.yaml"
    gfile.write_text(yaml.safe_dump({"grid": grid, "studies": studies}))
    return gfile


OPT = {("base", 16): -9, ("sp", 32): -10, ("sp", 128): -11, ("fl", 32): -9, ("fl", 128): -9}


def _bowl(noise=0.01, opt=OPT):
    def fn(arm, width, l2, seed):
        rng = np.random.default_rng(hash((arm, width, l2, seed)) % 2 ** 32)
        return 1.0 + 0.1 * (l2 - opt[(arm, width)]) ** 2 + noise * rng.standard_normal()
    return fn


def test_shifts_have_bootstrap_intervals_with_n(tmp_path):
    grid, studies = _grid(tmp_path)
    res = run(_write(tmp_path, grid, studies, _bowl()), tmp_path / "runs", draws=300)["studies"]["mlp_width"]
    sp, fl = res["arms"]["sp"], res["arms"]["fl"]
    assert res["n"] == 3 and res["paired"] and not res["at_edge_any"] and res["opt_ci_width_max"] < 2
    for arm, truth in ((sp, [0, -1, -2]), (fl, [0, 0, 0])):
        for s, t in zip(arm["shift"][1:], truth[1:], strict=True):
            assert s["ci_lo"] < s["ci_hi"], s  # an interval, never [x, x]
            assert s["ci_lo"] - 0.3 <= t <= s["ci_hi"] + 0.3 and s["n"] == 3
        assert arm["at_edge"] == [False, False, False]
        assert len(arm["runs"]) == 3 and len(arm["runs"][1]) == len(LRS) * 3  # the runs each number used
    assert sp["max_abs_shift"]["estimate"] == pytest.approx(2, abs=0.3) and sp["max_abs_shift"]["ci_lo"] > 1
    assert fl["max_abs_shift"]["ci_hi"] < 1
    assert res["best_loss_fl_minus_sp"][2]["n"] == 3


def test_one_seed_at_the_transfer_points_gives_no_interval(tmp_path):
    grid, studies = _grid(tmp_path, seeds=(0,))
    res = run(_write(tmp_path, grid, studies, _bowl()), tmp_path / "runs", draws=100)["studies"]["mlp_width"]
    fl = res["arms"]["fl"]["max_abs_shift"]
    assert res["n"] == 1 and fl["n"] == 1 and math.isnan(fl["ci_lo"]) and math.isnan(fl["ci_hi"])
    assert not res["paired"] and "no interval" in res["why"]


def test_at_edge_is_exposed_per_arm_and_scale(tmp_path):
    grid, studies = _grid(tmp_path)
    opt = {**OPT, ("sp", 128): -13}  # SP's x8 optimum below the grid
    res = run(_write(tmp_path, grid, studies, _bowl(opt=opt)), tmp_path / "runs", draws=50)["studies"]["mlp_width"]
    assert res["arms"]["sp"]["at_edge"] == [False, False, True] and res["arms"]["fl"]["at_edge"] == [False] * 3
    assert res["at_edge_any"] is True and "edge" in res["why"]


def test_a_diverged_run_is_a_miss_not_dropped(tmp_path):
    """FLeRM's x8 model diverges at its true optimum in one seed: the seed-mean loss there is infinite, so the
    optimum moves off it (dropping the run would keep it there)."""
    grid, studies = _grid(tmp_path)
    clean = _bowl(noise=0.0)

    def fn(arm, width, l2, seed):
        return None if (arm, width, l2, seed) == ("fl", 128, -9, 1) else clean(arm, width, l2, seed)

    res = run(_write(tmp_path, grid, studies, fn), tmp_path / "runs", draws=50)["studies"]["mlp_width"]
    fl = res["arms"]["fl"]
    assert res["status"] == "ok" and len(fl["runs"][2]) == len(LRS) * 3  # the diverged run is counted
    assert abs(fl["shift"][2]["estimate"]) >= 1 - 1e-9  # the optimum left the diverged LR
    assert fl["shift"][1]["estimate"] == pytest.approx(0, abs=1e-6)


def test_runs_are_read_through_the_evidence_store(tmp_path):
    grid, studies = _grid(tmp_path)
    gfile = _write(tmp_path, grid, studies, _bowl(), where="store")
    (tmp_path / "runs").mkdir()
    assert run(gfile, tmp_path / "runs", draws=20)["studies"]["mlp_width"]["status"] == "not_run"
    res = run(gfile, tmp_path / "runs", tmp_path / "store", draws=20)["studies"]["mlp_width"]
    assert res["status"] == "ok" and res["n"] == 3


def test_flat_noisy_curves_decide_nothing():
    """flerm.c12's fault: LoRA losses flat in the LR (0.0002 nats between arms) with seeds 0.018 apart. The argmin
    is then seed noise: its bootstrap interval spans the grid, and the claim is out of scope with that premise named
    (the largest |shift| of pure noise is biased away from 0, so without the premise it would read not_reproduced)."""
    rng = np.random.default_rng(1)
    lrs = [2.0 ** k for k in range(-9, -4)]

    def cell():
        offs = rng.normal(0, 0.018, 3)  # a seed shifts its whole curve
        return {sd: {lr: 6.09 + offs[sd] + rng.normal(0, 0.004) - 0.0002 * (lr == lrs[2]) for lr in lrs}
                for sd in range(3)}
    base = cell()
    out = analyse_study({"sp": {0: base, 1: cell(), 2: cell()}, "fl": {0: base, 1: cell(), 2: cell()}}, 3,
                        draws=400)
    fl = out["arms"]["fl"]["max_abs_shift"]
    values = {"estimate": fl["estimate"], "ci_lo": fl["ci_lo"], "ci_hi": fl["ci_hi"], "n": fl["n"],
              "at_edge_any": 0.0, "sp_max_abs_shift_hi": out["arms"]["sp"]["max_abs_shift"]["ci_hi"],
              "opt_ci_width_max": out["opt_ci_width_max"]}
    assert fl["ci_hi"] - fl["ci_lo"] > 1 and out["opt_ci_width_max"] > 2
    v = judge(CLAIMS["flerm.c12_lora_rank"], {}, values, None)
    assert v["verdict"] == "out_of_scope" and "located" in v["why"]


def test_once_vs_periodic_gap_and_its_placebo():
    """Claim 11's numbers: the largest |log2 eta*(once) - log2 eta*(periodic)| over the scaled widths, and the same
    gap between SP and FLeRM-once (its placebo), from planted optima."""
    rng = np.random.default_rng(0)
    lrs = [2.0 ** k for k in range(-12, -5)]

    def cell(opt):
        return {sd: {lr: 1.0 + 0.1 * (math.log2(lr) - opt) ** 2 + 0.003 * rng.standard_normal() for lr in lrs}
                for sd in range(3)}
    base = cell(-9)
    arms = {"sp": {0: base, 1: cell(-10), 2: cell(-11)}, "fl": {0: base, 1: cell(-9), 2: cell(-9)},
            "fp": {0: base, 1: cell(-9), 2: cell(-8)}}
    out = analyse_study(arms, 3, draws=300)
    gap, placebo = out["once_minus_periodic_max_abs_shift"], out["sp_minus_once_max_abs_shift"]
    assert gap["estimate"] == pytest.approx(1.0, abs=0.1) and gap["ci_lo"] <= gap["estimate"] <= gap["ci_hi"]
    assert placebo["estimate"] == pytest.approx(2.0, abs=0.1) and gap["n"] == placebo["n"] == 3
    assert "once_minus_periodic_max_abs_shift" not in analyse_study({a: arms[a] for a in ("sp", "fl")}, 3, draws=50)


def test_transfer_claim_end_to_end_from_the_analysis_output(tmp_path):
    """The study's transfer.json through the claim's own from_file keys and test: FLeRM stays, SP moves ->
    reproduced; FLeRM moves like SP -> not_reproduced; an optimum at an edge -> out_of_scope (premise named)."""
    claim = CLAIMS["flerm.c1_resmlp_width"]
    grid, studies = _grid(tmp_path)

    def verdict(opt, sub):
        res = run(_write(tmp_path / sub, grid, studies, _bowl(noise=0.003, opt=opt)), tmp_path / sub / "runs",
                  draws=300)
        (tmp_path / sub / "analysis" / "flerm").mkdir(parents=True)
        (tmp_path / sub / "analysis" / "flerm" / "transfer.json").write_text(json.dumps(res))
        values = compute(claim.statistic, {}, {}, {"results": str(tmp_path / sub)})
        return judge(claim, {}, values, None)

    planted = {**OPT, ("sp", 128): -7, ("sp", 32): -8}  # SP +2 at x8 (inside the grid), FLeRM stays
    assert verdict(planted, "a")["verdict"] == "reproduced"
    null = {**planted, ("fl", 32): -8, ("fl", 128): -7}  # FLeRM moves as SP does
    assert verdict(null, "b")["verdict"] == "not_reproduced"
    placebo = {**OPT, ("sp", 32): -9, ("sp", 128): -9}  # SP transfers too: nothing to remove
    v = verdict(placebo, "c")
    assert v["verdict"] == "out_of_scope" and "placebo" in v["why"]
    edge = {**planted, ("sp", 128): -13}
    v = verdict(edge, "d")
    assert v["verdict"] == "out_of_scope" and "interior" in v["why"]


# planted effect / null (or placebo) values per claim, in the names each claim's statistic gives
GOOD_TRANSFER = {"n": 3, "at_edge_any": 0.0, "opt_ci_width_max": 0.8, "sp_max_abs_shift": 3.0,
                 "sp_max_abs_shift_lo": 2.2, "sp_max_abs_shift_hi": 3.8, "sp_minus_once": 3.0,
                 "sp_minus_once_hi": 3.8}
CASES = {
    "flerm.c1_resmlp_width": (dict(estimate=0.3, ci_lo=0.1, ci_hi=0.7), dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c2_resmlp_depth": (dict(estimate=1.2, ci_lo=0.6, ci_hi=1.8), dict(estimate=3.5, ci_lo=2.6, ci_hi=4.1)),
    "flerm.c3_postnorm_width": (dict(estimate=0.3, ci_lo=0.1, ci_hi=0.7), dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c4_postnorm_depth": (dict(estimate=0.3, ci_lo=0.1, ci_hi=0.7), dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c5_prenorm_width": (dict(estimate=0.3, ci_lo=0.1, ci_hi=0.7), dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c6_prenorm_depth": (dict(estimate=0.5, ci_lo=0.2, ci_hi=0.9), dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c7_prenormpostmod_width": (dict(estimate=0.3, ci_lo=0.1, ci_hi=0.7),
                                      dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c8_prenormpostmod_depth": (dict(estimate=0.5, ci_lo=0.2, ci_hi=0.9),
                                      dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c9_init_scale": (dict(estimate=-0.06, ci_lo=-0.08, ci_hi=-0.04, n=3),
                            dict(estimate=0.0, ci_lo=-0.01, ci_hi=0.01, n=3)),
    "flerm.c10_recorded_vs_equal": (dict(estimate=-0.2, ci_lo=-0.3, ci_hi=-0.1),
                                    dict(estimate=0.08, ci_lo=0.03, ci_hi=0.12)),
    "flerm.c11_once_vs_periodic": (dict(estimate=0.2, ci_lo=0.05, ci_hi=0.5),
                                   dict(estimate=2.0, ci_lo=1.4, ci_hi=2.6)),
    "flerm.c12_lora_rank": (dict(estimate=0.3, ci_lo=0.1, ci_hi=0.7), dict(estimate=2.5, ci_lo=1.9, ci_hi=3.1)),
    "flerm.c13_fslr_analysis": (dict(estimate=12.0, ci_lo=8.0, ci_hi=20.0, n=3, placebo_ratio_lo=1.1),
                                dict(estimate=1.3, ci_lo=1.0, ci_hi=1.7, n=3, placebo_ratio_lo=1.1)),
    "flerm.c14_estimator": (dict(estimate=0.2, ci_lo=0.1, ci_hi=0.3, n=3, placebo_ratio=1.0, placebo_ratio_hi=1.2),
                            dict(estimate=1.0, ci_lo=0.9, ci_hi=1.1, n=3, placebo_ratio=1.0, placebo_ratio_hi=1.2)),
    "flerm.overhead": (dict(estimate=0.015, ci_lo=0.01, ci_hi=0.02, n=6),
                       dict(estimate=0.08, ci_lo=0.06, ci_hi=0.1, n=6)),
}


def _values(cid, v):
    base = GOOD_TRANSFER if "at_edge_any" in CLAIMS[cid].statistic.get("values", {}) else {}
    return {**base, **v}


def test_every_claim_has_a_test_and_a_case():
    assert set(CASES) == set(CLAIMS) and all(c.test for c in CLAIMS.values())


@pytest.mark.parametrize("cid", sorted(CASES))
def test_planted_effect_reproduces_and_null_does_not(cid):
    claim = CLAIMS[cid]
    planted, null = CASES[cid]
    assert judge(claim, {}, _values(cid, planted), None)["verdict"] == "reproduced"
    assert judge(claim, {}, _values(cid, null), None)["verdict"] == "not_reproduced"
    no_interval = {**planted, "ci_lo": math.nan, "ci_hi": math.nan}  # one seed: nothing decided
    assert judge(claim, {}, _values(cid, no_interval), None)["verdict"] == "inconclusive"


@pytest.mark.parametrize("cid", sorted(c for c in CASES if "at_edge_any" in CLAIMS[c].statistic.get("values", {})))
def test_an_optimum_at_a_grid_edge_is_out_of_scope(cid):
    v = judge(CLAIMS[cid], {}, _values(cid, {**CASES[cid][0], "at_edge_any": 1.0}), None)
    assert v["verdict"] == "out_of_scope" and "interior" in v["why"]


@pytest.mark.parametrize("cid", sorted(c for c in CASES if "opt_ci_width_max" in CLAIMS[c].statistic.get("values", {})))
def test_an_unlocated_optimum_is_out_of_scope(cid):
    v = judge(CLAIMS[cid], {}, _values(cid, {**CASES[cid][0], "opt_ci_width_max": 3.0}), None)
    assert v["verdict"] == "out_of_scope" and "located" in v["why"]
    one_seed = {**CASES[cid][0], "opt_ci_width_max": math.nan, "ci_lo": math.nan, "ci_hi": math.nan}
    assert judge(CLAIMS[cid], {}, _values(cid, one_seed), None)["verdict"] == "inconclusive"


@pytest.mark.parametrize("cid", sorted(c for c in CASES if any("placebo" in p["name"] for p in CLAIMS[c].premises)))
def test_a_passing_placebo_is_out_of_scope(cid):
    """SP inside the band too (transfer claims), or like tensors 5x apart too (c13): no claim to test."""
    placebo = {"sp_max_abs_shift": 0.3, "sp_max_abs_shift_lo": 0.1, "sp_max_abs_shift_hi": 0.6,
               "placebo_ratio_lo": 6.0, "sp_minus_once_hi": 0.6, "placebo_ratio_hi": 0.4}
    v = judge(CLAIMS[cid], {}, _values(cid, {**CASES[cid][0], **placebo}), None)
    assert v["verdict"] == "out_of_scope" and "placebo" in v["why"]


def test_no_threshold_is_read_from_the_data():
    """Bands are constants with a reason; no rule, premise or band reads a seed SD."""
    for c in CLAIMS.values():
        assert all(isinstance(b, (int, float)) for b in c.test["band"]) and c.test.get("band_reason")
        text = json.dumps([c.test, c.premises])
        assert "sd_" not in text and "resolution" not in text


def test_estimator_comparison_stage_on_a_micro_resmlp(tmp_path):
    """Claim 14's stage end to end on a micro ResMLP (few draws): one entry per seed, the variance ratio and its
    placebo per weight matrix, and the claim's from_file keys read the output. The placebo (two independent
    full_cov draw sets) sits near 1, the Kronecker ratio below it."""
    from benchmarks.data.images import micro_image_dir
    from methods.flerm import variance

    grid = {"data": {"fm": {"corpus": "fashion-mnist", "dir": "unused"}},
            "grid": [{"name": variance.ENTRY, "config": "benchmarks/configs/mlp.yaml", "data": "fm",
                      "workload": "mlp", "size": "micro", "seeds": [0, 1, 2],
                      "methods": [[{"name": "flerm", "record": str(tmp_path / "r{lr}.json")}]],
                      "set": {"model": {"width": 16, "n_blocks": 2}, "train.batch_size": 16,
                              "data.augment": False},
                      "sweep": {"train.lr": [1e-3, 2e-3, 4e-3]}}]}
    gfile = tmp_path / "grid.yaml"
    gfile.write_text(yaml.safe_dump(grid))
    from claimbench.testing import REPO

    res = variance.run(gfile, REPO, draws=300, data_dirs={"fm": str(micro_image_dir())})
    assert res["lr"] == 2e-3 and sorted(res["seeds"]) == ["0", "1", "2"]
    for s in res["seeds"].values():
        assert len(s["matrices"]) >= 3 and all(m["var_ratio"] > 0 for m in s["matrices"].values())
    ratio, placebo = res["var_ratio_kron_over_full"], res["placebo_ratio"]
    assert ratio["n"] == 3 and ratio["ci_lo"] <= ratio["estimate"] <= ratio["ci_hi"]
    assert ratio["estimate"] < 1 and 0.6 < placebo["estimate"] < 1.6
    (tmp_path / "analysis" / "flerm").mkdir(parents=True)
    (tmp_path / "analysis" / "flerm" / "estimator.json").write_text(json.dumps(res))
    values = compute(CLAIMS["flerm.c14_estimator"].statistic, {}, {}, {"results": str(tmp_path)})
    assert values["estimate"] == ratio["estimate"] and values["placebo_ratio_hi"] == placebo["ci_hi"]
