"""Each test-based claim of `nowarmup` on synthetic values (no training): reproduced on a planted effect, not
reproduced on its placebo or a null; the faults it replaced (a data-derived parity margin, a better result failing
the claim, a stall verdict flipping on one seed, a cost read from run wall clocks) stay fixed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from claimbench.claims import load_file
from claimbench.judge import OUT_OF_SCOPE, judge

REPO = Path(__file__).resolve().parents[1]
CLAIMS = {c.id: c for c in load_file(REPO / "benchmarks" / "claims" / "nowarmup.yaml")}


def _arm(values: list[float]) -> dict:
    return {(s,): v for s, v in enumerate(values)}


def _gpt(adamw2: list[float], warmup: list[float], plain: list[float], cid: str = "nowarmup.parity_gpt") -> dict:
    arm = "tau_hi" if cid == "nowarmup.tau_band" else "adamw2"
    return judge(CLAIMS[cid], {arm: _arm(adamw2), "warmup": _arm(warmup), "plain": _arm(plain)}, {}, None)


WARMUP = [5.88, 5.82, 5.93, 5.86]
STALLED = [6.07, 6.05, 6.09, 6.06]  # plain AdamW without warmup on the unigram plateau


def test_every_claim_carries_a_test_and_no_rule_decides():
    for c in CLAIMS.values():
        assert c.test, c.id
        for key in ("margin", "paper_effect"):
            assert not isinstance(c.test.get(key), str), c.id  # constants, never an expression of the data


@pytest.mark.parametrize("cid", ["nowarmup.parity_gpt", "nowarmup.tau_band"])
def test_gpt_parity_reproduced_on_a_match_and_not_on_a_gap(cid):
    match = _gpt([w + d for w, d in zip(WARMUP, (0.01, -0.005, 0.0, 0.012), strict=True)], WARMUP, STALLED, cid)
    assert match["verdict"] == "reproduced" and match["placebo"] == "passed", match
    gap = _gpt([w + d for w, d in zip(WARMUP, (0.2, 0.21, 0.19, 0.22), strict=True)], WARMUP, STALLED, cid)
    assert gap["verdict"] == "not_reproduced", gap


def test_gpt_parity_a_better_method_does_not_fail_and_a_miss_counts():
    better = _gpt([w - d for w, d in zip(WARMUP, (0.1, 0.12, 0.09, 0.11), strict=True)], WARMUP, STALLED)
    assert better["verdict"] == "reproduced"
    # a diverged AdamW^2 seed is a miss (+inf), not dropped: one miss never passes, misses in most seeds fail
    assert _gpt([math.inf, 5.88, 5.82, 5.93], WARMUP, STALLED)["verdict"] != "reproduced"
    assert _gpt([math.inf, math.inf, math.inf, 5.93], WARMUP, STALLED)["verdict"] == "not_reproduced"


def test_gpt_parity_is_out_of_scope_when_plain_adamw_matches_too():
    same = [w + d for w, d in zip(WARMUP, (0.01, -0.005, 0.0, 0.012), strict=True)]
    out = _gpt(same, WARMUP, [w + 0.001 for w in WARMUP])
    assert out["verdict"] == OUT_OF_SCOPE


def test_gpt_parity_needs_three_seeds():
    out = _gpt([5.89, 5.83], WARMUP[:2], STALLED[:2])
    assert out["verdict"] == "inconclusive" and "seeds" in out["why"]


def test_old_parity_gpt_numbers_do_not_reproduce():
    """The case the old rule passed: 0.063 nats worse, 2 seeds, margin 2 x seed SD."""
    out = _gpt([5.9348, 5.9414], [5.927, 5.8236], [6.076, 6.043])
    assert out["verdict"] != "reproduced"


@pytest.mark.parametrize("cid", ["nowarmup.parity_vit", "nowarmup.parity_swin"])
def test_vision_parity(cid):
    warm = [0.766, 0.772, 0.760, 0.769]
    crashed = [0.10, 0.12, 0.10, 0.11]  # no-warmup runs at chance: a failure to remove
    c = CLAIMS[cid]

    def run(adamw2, plain):
        return judge(c, {"adamw2": _arm(adamw2), "warmup": _arm(warm), "plain": _arm(plain)}, {}, None)

    assert run([w + 0.002 for w in warm], crashed)["verdict"] == "reproduced"
    # better by 1.3 points (seen on other hardware for Swin) must not fail the claim
    assert run([w + 0.013 for w in warm], crashed)["verdict"] == "reproduced"
    assert run([w - 0.05 for w in warm], crashed)["verdict"] == "not_reproduced"
    # plain AdamW without warmup trains as well (as at smoke): nothing for AdamW^2 to fix
    assert run([w + 0.002 for w in warm], [w - 0.001 for w in warm])["verdict"] == OUT_OF_SCOPE


def _crash(est, lo, hi, w_lo, n=3):
    vals = {"estimate": est, "ci_lo": lo, "ci_hi": hi, "n": n, "warmup_ci_lo": w_lo, "warmup_ci_hi": w_lo + 0.1}
    return judge(CLAIMS["nowarmup.crash"], {}, vals, None)


def test_crash_needs_the_whole_interval_on_the_plateau():
    assert _crash(0.05, 0.02, 0.08, -0.3)["verdict"] == "reproduced"
    assert _crash(-0.15, -0.2, -0.1, -0.3)["verdict"] == "not_reproduced"
    # one seed just over the line (the flip seen on another CPU): inconclusive, not a verdict a rerun reverses
    assert _crash(0.019, -0.009, 0.047, -0.3)["verdict"] == "inconclusive"
    # fewer than 3 seeds: the analysis writes no interval
    assert _crash(0.02, math.nan, math.nan, -0.3, n=2)["verdict"] == "inconclusive"
    # the warmup reference on the plateau too: the LR is outside the claim's setting
    assert _crash(0.05, 0.02, 0.08, 0.01)["verdict"] == OUT_OF_SCOPE


def test_crash_reads_each_seeds_height_and_must_hold_over_their_resamples(tmp_path):
    """The analysis stores every seed's height; the claim reads them (at the analysis's 90% level), so a
    `reproduced` held up by one interval edge is checked against resamples of the seeds like every per-seed claim."""
    import json

    from claimbench.claims import Claim
    from claimbench.study import compute
    from methods.nowarmup.analysis import LEVEL, t_interval

    c = CLAIMS["nowarmup.crash"]
    assert c.statistic["level"] == LEVEL

    def run(heights):
        est, lo, hi = t_interval(heights)
        prereg = {"estimate": est, "ci_lo": lo, "ci_hi": hi, "n": len(heights), "heights": heights, "lr": 0.1,
                  "crashed_nowarmup": len(heights), "crashed_warmup": 0,
                  "warmup_estimate": -0.14, "warmup_ci_lo": -0.18, "warmup_ci_hi": -0.10}
        (tmp_path / "lr_crash.json").write_text(json.dumps({"prereg": prereg}))
        stat = {**c.statistic, "path": str(tmp_path / "lr_crash.json")}
        vals = compute(stat, {}, {}, {}, {})
        return judge(Claim(**{**c.__dict__, "statistic": stat}), {}, vals, None)

    steady = run([0.05, 0.06, 0.055, 0.052, 0.058, 0.061])
    assert steady["verdict"] == "reproduced" and steady["stability"] >= 0.9
    smoke = run([0.0355, 0.0202, 0.0019, 0.0874, -0.0061, 0.0816])  # the smoke tier's six seeds
    assert smoke["verdict"] == "inconclusive" and "unstable" in smoke["why"] and smoke["stability"] < 0.9


def test_sigma_growth_band():
    c = CLAIMS["nowarmup.sigma_growth"]
    assert judge(c, {}, {"estimate": 30.0, "ci_lo": 12.0, "ci_hi": 80.0, "n": 3}, None)["verdict"] == "reproduced"
    assert judge(c, {}, {"estimate": 1.57, "ci_lo": 0.9, "ci_hi": 3.0, "n": 3}, None)["verdict"] == "not_reproduced"
    assert judge(c, {}, {"estimate": 1.0, "ci_lo": 1.0, "ci_hi": 1.0, "n": 3}, None)["verdict"] == "inconclusive"


@pytest.mark.parametrize("cid,arms,ref,sign", [
    ("nowarmup.sec_concentration", ("nowarmup", "warmup"), [0.55, 0.58, 0.52, 0.56, 0.54, 0.57], 1),
    ("nowarmup.adamw2_sec", ("adamw2", "nowarmup"), [0.85, 0.88, 0.82, 0.86, 0.84, 0.87], -1),
])
def test_sec_directional_with_split_placebo(cid, arms, ref, sign):
    """A planted 0.3 gap in the claim's direction reproduces with the placebo passed; seed-level noise does not."""
    c = CLAIMS[cid]
    planted = judge(c, {arms[0]: _arm([r + sign * (0.3 + 0.01 * i) for i, r in enumerate(ref)]), arms[1]: _arm(ref)},
                    {}, None)
    assert planted["verdict"] == "reproduced" and planted["placebo"] == "passed", planted
    noise = (0.01, -0.02, 0.0, 0.01, -0.01, 0.0)
    null = judge(c, {arms[0]: _arm([r + d for r, d in zip(ref, noise, strict=True)]), arms[1]: _arm(ref)}, {}, None)
    assert null["verdict"] != "reproduced"


def test_malignant_collapse_band():
    c = CLAIMS["nowarmup.malignant_collapse"]
    assert judge(c, {}, {"estimate": 0.39, "ci_lo": 0.21, "ci_hi": 0.61, "n": 26}, None)["verdict"] == "reproduced"
    assert judge(c, {}, {"estimate": 0.0, "ci_lo": -0.2, "ci_hi": 0.2, "n": 26}, None)["verdict"] == "inconclusive"
    assert judge(c, {}, {"estimate": -0.3, "ci_lo": -0.5, "ci_hi": -0.1, "n": 26}, None)["verdict"] == \
        "not_reproduced"


def test_cost_is_never_decided_without_a_speed_suite_interval():
    c = CLAIMS["nowarmup.cost"]
    # the speed suite's output (results/speed/<profile>.json), not tokens/s of runs
    assert c.statistic["kind"] == "from_file" and c.statistic["path"] == "{speed}"
    assert c.statistic["key"] == "overheads.adamw2.overhead" and c.statistic["values"] == {"n": "overheads.adamw2.n"}
    # a point estimate without an interval: out of scope, naming the speed suite
    out = judge(c, {}, {"estimate": 0.039, "ci_lo": math.nan, "ci_hi": math.nan, "n": math.nan}, None)
    assert out["verdict"] == OUT_OF_SCOPE and "speed suite" in out["why"]
    # with an interval it would decide
    assert judge(c, {}, {"estimate": 0.04, "ci_lo": 0.02, "ci_hi": 0.06, "n": 6}, None)["verdict"] == "reproduced"
    assert judge(c, {}, {"estimate": 0.4, "ci_lo": 0.3, "ci_hi": 0.5, "n": 6}, None)["verdict"] == "not_reproduced"


def test_scale_reads_inconclusive_with_one_seed():
    out = _gpt([2.84], [2.848], [9.0], "nowarmup.scale")
    assert out["verdict"] == "inconclusive"


def test_malignant_collapse_placebo_from_the_analysis():
    """The LR placebo (stable runs above vs below LR_crash) shows the same difference: the crash decides nothing."""
    c = CLAIMS["nowarmup.malignant_collapse"]
    real = {"estimate": 0.39, "ci_lo": 0.21, "ci_hi": 0.61, "n": 26}
    calm = {"placebo_estimate": 0.05, "placebo_ci_lo": -0.1, "placebo_ci_hi": 0.2, "placebo_n": 19}
    lr_too = {"placebo_estimate": 0.35, "placebo_ci_lo": 0.1, "placebo_ci_hi": 0.6, "placebo_n": 19}
    j = judge(c, {}, {**real, **calm}, None)
    assert j["verdict"] == "reproduced" and j["placebo"] == "passed"
    j = judge(c, {}, {**real, **lr_too}, None)
    assert j["verdict"] == "inconclusive" and j["placebo"] == "uninformative"


def test_adamw2_sigma_band_premise_and_placebo():
    """AdamW^2 against plain no-warmup AdamW: the 10x band of sigma_growth; out of scope when no-warmup AdamW is
    shown to have no runaway (sigma_growth's interval below 10x); uninformative when warmup/AdamW^2 is 10x too."""
    c = CLAIMS["nowarmup.adamw2_sigma"]
    run_away = {"growth_estimate": 30.0, "growth_ci_hi": 60.0}
    calm = {"placebo_estimate": 1.2, "placebo_ci_lo": 0.9, "placebo_ci_hi": 1.6, "placebo_n": 6}
    hit = {"estimate": 25.0, "ci_lo": 12.0, "ci_hi": 50.0, "n": 6}
    j = judge(c, {}, {**hit, **run_away, **calm}, None)
    assert j["verdict"] == "reproduced" and j["placebo"] == "passed", j
    assert judge(c, {}, {"estimate": 1.5, "ci_lo": 1.1, "ci_hi": 2.0, "n": 6, **run_away, **calm},
                 None)["verdict"] == "not_reproduced"
    no_runaway = {"growth_estimate": 1.6, "growth_ci_hi": 3.0}
    assert judge(c, {}, {**hit, **no_runaway, **calm}, None)["verdict"] == OUT_OF_SCOPE
    shrinks = {"placebo_estimate": 20.0, "placebo_ci_lo": 11.0, "placebo_ci_hi": 40.0, "placebo_n": 6}
    j = judge(c, {}, {**hit, **run_away, **shrinks}, None)
    assert j["verdict"] == "inconclusive" and j["placebo"] == "uninformative"


def test_adamw2_collapse_band_and_placebo():
    c = CLAIMS["nowarmup.adamw2_collapse"]
    real = {"estimate": 0.5, "ci_lo": 0.2, "ci_hi": 0.8, "n": 12}
    calm = {"placebo_estimate": 0.0, "placebo_ci_lo": -0.2, "placebo_ci_hi": 0.2, "placebo_n": 12}
    assert judge(c, {}, {**real, **calm}, None)["verdict"] == "reproduced"
    assert judge(c, {}, {"estimate": -0.4, "ci_lo": -0.6, "ci_hi": -0.1, "n": 12, **calm},
                 None)["verdict"] == "not_reproduced"
    fewer_anyway = {"placebo_estimate": 0.5, "placebo_ci_lo": 0.2, "placebo_ci_hi": 0.8, "placebo_n": 12}
    assert judge(c, {}, {**real, **fewer_anyway}, None)["placebo"] == "uninformative"
