"""claimbench.stats against values worked out by hand (or by an independent formula)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from claimbench import stats

T975 = {2: 4.302652729911275, 3: 3.182446305284263}  # Student t quantiles, two-sided 95%


def test_summarize_mean_sd_and_t_interval():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["n"] == 4
    assert s["sd"] == pytest.approx(math.sqrt(5 / 3))
    half = T975[3] * math.sqrt(5 / 3) / 2
    assert (s["ci_lo"], s["ci_hi"]) == pytest.approx((2.5 - half, 2.5 + half))


def test_summarize_one_seed_has_no_interval_and_a_miss_is_kept():
    one = stats.summarize([3.0])
    assert one["ci_lo"] == -math.inf and one["ci_hi"] == math.inf
    miss = stats.summarize([3.0, math.inf])  # a diverged seed: infinite loss, never dropped
    assert miss["mean"] == math.inf and miss["ci_lo"] == math.inf


def test_miss_value():
    assert stats.miss_value("lower") == math.inf
    assert stats.miss_value("higher", chance=0.1) == 0.1
    assert stats.miss_value("higher") == 0.0


def test_paired_difference_by_hand():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.5, 1: 1.0, 2: 3.0}
    assert stats.paired_differences(a, b) == [0.5, 1.0, 1.0]
    d = stats.difference(a, b)
    assert d["paired"] and d["estimate"] == pytest.approx(5 / 6)
    sd = np.std([0.5, 1.0, 1.0], ddof=1)
    half = T975[2] * sd / math.sqrt(3)
    assert (d["ci_lo"], d["ci_hi"]) == pytest.approx((5 / 6 - half, 5 / 6 + half))


def test_unpaired_difference_is_welch():
    a = {0: 1.0, 1: 2.0, 2: 3.5, 3: 2.2}
    b = {10: 0.2, 11: 0.9, 12: 0.4}
    d = stats.difference(a, b)
    ref = sps.ttest_ind(list(a.values()), list(b.values()), equal_var=False).confidence_interval(0.95)
    assert not d["paired"]
    assert (d["ci_lo"], d["ci_hi"]) == pytest.approx((ref.low, ref.high))


def test_difference_with_a_diverged_seed_is_infinite_not_dropped():
    d = stats.difference({0: math.inf, 1: 2.0}, {0: 2.1, 1: 2.0})
    assert d["estimate"] == math.inf and d["ci_lo"] == math.inf


def test_bootstrap_interval_is_deterministic_and_brackets_the_estimate():
    a = {i: 1.0 + 0.1 * i for i in range(6)}
    b = {i: 0.5 + 0.05 * i for i in range(6)}
    d1 = stats.difference(a, b, method="bootstrap", seed=3)
    d2 = stats.difference(a, b, method="bootstrap", seed=3)
    assert d1 == d2 and d1["ci_lo"] <= d1["estimate"] <= d1["ci_hi"]
    assert d1["ci_lo"] > 0  # every paired difference is positive


def test_ratio():
    r = stats.ratio({0: 2.0, 1: 4.0}, {0: 1.0, 1: 2.0})
    assert r["estimate"] == pytest.approx(2.0)
    assert r["ci_lo"] == pytest.approx(2.0) and r["ci_hi"] == pytest.approx(2.0)  # constant log-ratio


def test_diverged_fraction_wilson_interval():
    d = stats.diverged_fraction([True, True, False])
    assert d["estimate"] == pytest.approx(2 / 3) and d["k"] == 2
    assert (d["ci_lo"], d["ci_hi"]) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    none = stats.diverged_fraction([False, False])
    assert none["estimate"] == 0 and none["ci_lo"] == 0


def test_best_of_sweep_and_edges():
    b = stats.best_of_sweep([4e-3, 1e-3, 2e-3], [2.5, 3.0, 2.0])
    assert b["best"] == 2.0 and b["argbest"] == 2e-3 and not b["at_edge"]
    assert stats.best_of_sweep([1, 2, 3], [0.1, 0.5, math.inf])["at_edge"]
    acc = stats.best_of_sweep([1, 2, 3], [0.1, 0.5, 0.3], direction="higher")
    assert acc["argbest"] == 2


def test_optimum_parabola_recovers_a_quadratic_minimum():
    xs = [2.0 ** k for k in range(-12, -5)]
    centre = math.log2(3e-3)
    ys = [(math.log2(x) - centre) ** 2 + 1.0 for x in xs]
    o = stats.optimum_log2(xs, ys)
    assert o["refined"] and o["log2_opt"] == pytest.approx(centre) and o["resolution"] == pytest.approx(1.0)
    coarse = stats.optimum_log2(xs, ys, refine=False)
    assert abs(coarse["log2_opt"] - centre) <= 0.5


def test_optimum_shift_in_log2_units_with_grid_resolution():
    xs = [2.0 ** k for k in range(-14, -4)]
    base = [(math.log2(x) + 8.0) ** 2 for x in xs]
    target = [(math.log2(x) + 11.5) ** 2 for x in xs]
    s = stats.optimum_shift((xs, base), (xs, target))
    assert s["shift"] == pytest.approx(-3.5) and s["resolution"] == pytest.approx(1.0)
    assert (s["ci_lo"], s["ci_hi"]) == pytest.approx((-4.5, -2.5))
    edge = stats.optimum_shift((xs, base), (xs, [float(i) for i in range(len(xs))]))
    assert edge["at_edge"]


def test_rank_correlation_against_ranks_by_hand():
    assert stats.rank_correlation([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])["rho"] == pytest.approx(1.0)
    assert stats.rank_correlation([1, 2, 3, 4, 5], [9, 7, 5, 3, 1])["rho"] == pytest.approx(-1.0)
    x, y = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    ry = [1, 2, 3.5, 5, 3.5]  # average ranks of the tie
    assert stats.rank_correlation(x, y)["rho"] == pytest.approx(np.corrcoef(x, ry)[0, 1])
    assert math.isnan(stats.rank_correlation([1, 2], [1, 2])["rho"])
