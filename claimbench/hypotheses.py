"""Pre-registered tests: how a claim's numbers become a verdict, one test per kind of claim.

A claim's `test:` block names its kind and fixes every threshold (alpha, margin, the paper's effect,
the minimum seeds) in its YAML before any run is read; nothing here is computed from the observed
data except the statistic itself. Kinds (the registry `TESTS`):

- `directional`  the method beats the baseline: one-sided paired t-test (Welch when the seeds do not
  pair); `not_reproduced` when the (1 - 2 alpha) interval of the gain lies below `effect_fraction` of
  the paper's gain.
- `equivalence`  the two arms match: TOST with a fixed `margin` (statsmodels); `reproduced` when the
  whole (1 - 2 alpha) interval lies inside +-margin, `not_reproduced` when it lies outside.
- `noninferiority`  the method is not worse than the reference by more than `margin` (what a
  paper means by "matches" when better is also fine).
- `hit_rate`  a predictor's hits over cases against the exact chance distribution (each case's
  chance of a hit given its ties: a Poisson-binomial), read from an analysis output.
- `interval`  an analysis output's estimate with its interval and n against a fixed target band.

Misses (diverged runs) enter as the study's miss values (infinite loss, chance accuracy); a test
with a non-finite value falls back to a rank test and has no interval, so it cannot show a match.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from claimbench.statistics import TESTS as _TESTS
from claimbench.statistics import register_test

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not_reproduced", "inconclusive"
DEFAULT_MIN_SEEDS = 3


@dataclass
class Outcome:
    verdict: str
    why: str
    estimate: float = math.nan
    ci_lo: float = math.nan
    ci_hi: float = math.nan
    p: float | None = None
    values: dict = field(default_factory=dict)


TESTS: dict[str, Callable[..., Outcome]] = _TESTS  # the registry of claimbench.statistics, by test kind
# the keys each kind's `test:` block must / may set (the claims loader checks them)
REQUIRED = {"directional": {"paper_effect"}, "equivalence": {"margin", "margin_reason"},
            "noninferiority": {"margin", "margin_reason"}, "hit_rate": set(), "interval": {"band"}}
OPTIONAL = {"kind", "alpha", "min_seeds", "direction", "effect_fraction", "arms", "paper_effect", "margin",
            "margin_reason", "band", "band_reason", "note"}


register = register_test


def _arrays(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray, bool]:
    """Arm values as arrays; paired (same keys, seed by seed) when every key of each arm is in the other."""
    if set(a) == set(b) and len(a) >= 2:
        keys = sorted(a, key=str)
        return np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float), True
    return np.array(list(a.values()), float), np.array(list(b.values()), float), False


def _interval(x: np.ndarray, y: np.ndarray, paired: bool, level: float) -> tuple[float, float, float, float]:
    """(estimate, lo, hi, df) of mean(x - y): paired t, or Welch."""
    if paired:
        d = x - y
        n = len(d)
        est, se, df = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n)), n - 1
    else:
        va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        est, se = float(x.mean() - y.mean()), float(math.sqrt(va + vb))
        df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1)) if va + vb > 0 else len(x) + len(y) - 2
    if se == 0:
        return est, est, est, df
    t = sps.t.ppf(0.5 + level / 2, df)
    return est, est - t * se, est + t * se, df


def _too_few(test: dict, x: np.ndarray, y: np.ndarray) -> Outcome | None:
    need = int(test.get("min_seeds", DEFAULT_MIN_SEEDS))
    have = min(len(x), len(y))
    if have < need:
        return Outcome(INCONCLUSIVE, f"needs >= {need} seeds per arm (has {have})")
    return None


def _common(test: dict, a: dict, b: dict, worse: bool):
    """(x, y, paired, oriented difference: positive = method worse when `worse`, else method better)."""
    x, y, paired = _arrays(a, b)
    lower = test.get("direction", "lower") == "lower"
    sign = 1.0 if lower == worse else -1.0
    return x, y, paired, sign


def _one_sided_p(g: np.ndarray | tuple, paired: bool, alternative: str) -> float:
    """p of 'mean gain > 0' (alternative 'greater') on finite data; a rank test when values are not finite."""
    if paired:
        d = g
        if np.all(np.isfinite(d)):
            return float(sps.ttest_1samp(d, 0.0, alternative=alternative).pvalue)
        return float(sps.wilcoxon(np.where(np.isfinite(d), d, np.sign(d) * 1e300), alternative=alternative).pvalue)
    x, y = g
    if np.all(np.isfinite(x)) and np.all(np.isfinite(y)):
        return float(sps.ttest_ind(x, y, equal_var=False, alternative=alternative).pvalue)
    return float(sps.mannwhitneyu(x, y, alternative=alternative).pvalue)


@register("directional")
def directional(test: dict, a: dict, b: dict) -> Outcome:
    """Arm a (method) better than arm b (baseline)."""
    alpha = float(test.get("alpha", 0.05))
    x, y, paired, sign = _common(test, a, b, worse=False)
    if (o := _too_few(test, x, y)) is not None:
        return o
    gx, gy = sign * x, sign * y  # larger = better for both
    p = _one_sided_p(gx - gy if paired else (gx, gy), paired, "greater")
    finite = np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
    est, lo, hi, _ = _interval(gx, gy, paired, 1 - 2 * alpha) if finite else (math.nan,) * 4
    paper_gain = abs(float(test["paper_effect"])) * float(test.get("effect_fraction", 0.5))
    vals = {"gain": est, "gain_lo": lo, "gain_hi": hi, "paired": paired, "min_gain": paper_gain}
    if p < alpha:
        return Outcome(REPRODUCED, f"one-sided p={p:.3g} < {alpha}", est, lo, hi, p, vals)
    if hi < paper_gain:
        return Outcome(NOT_REPRODUCED, f"gain interval below {paper_gain:.3g} (a fraction of the paper's effect)",
                       est, lo, hi, p, vals)
    return Outcome(INCONCLUSIVE, f"p={p:.3g}, gain interval [{lo:.3g}, {hi:.3g}] reaches {paper_gain:.3g}",
                   est, lo, hi, p, vals)


@register("equivalence")
def equivalence(test: dict, a: dict, b: dict) -> Outcome:
    """mean(a - b) within +-margin (TOST)."""
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired

    alpha, m = float(test.get("alpha", 0.05)), float(test["margin"])
    x, y, paired, _ = _common(test, a, b, worse=True)
    if (o := _too_few(test, x, y)) is not None:
        return o
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return Outcome(INCONCLUSIVE, "a run missed (diverged): no interval, no equivalence")
    est, lo, hi, _ = _interval(x, y, paired, 1 - 2 * alpha)
    if lo == hi:  # no spread: TOST's t is undefined, the interval is the point
        p = 0.0 if -m < est < m else 1.0
    else:
        p = float((ttost_paired(x, y, -m, m) if paired else ttost_ind(x, y, -m, m, usevar="unequal"))[0])
    vals = {"margin": m, "paired": paired}
    if -m < lo and hi < m:
        return Outcome(REPRODUCED, f"{1 - 2 * alpha:.0%} interval inside +-{m:g} (TOST p={p:.3g})", est, lo, hi, p,
                       vals)
    if hi < -m or lo > m:
        return Outcome(NOT_REPRODUCED, f"{1 - 2 * alpha:.0%} interval outside +-{m:g}", est, lo, hi, p, vals)
    return Outcome(INCONCLUSIVE, f"interval [{lo:.3g}, {hi:.3g}] crosses +-{m:g}", est, lo, hi, p, vals)


@register("noninferiority")
def noninferiority(test: dict, a: dict, b: dict) -> Outcome:
    """Arm a not worse than arm b by more than margin (one-sided at alpha)."""
    alpha, m = float(test.get("alpha", 0.05)), float(test["margin"])
    x, y, paired, sign = _common(test, a, b, worse=True)
    if (o := _too_few(test, x, y)) is not None:
        return o
    wx, wy = sign * x, sign * y  # larger = worse
    vals = {"margin": m, "paired": paired}
    if not (np.all(np.isfinite(wx)) and np.all(np.isfinite(wy))):
        misses = int(np.sum(~np.isfinite(wx)))
        if misses > int(np.sum(~np.isfinite(wy))):
            return Outcome(NOT_REPRODUCED, f"the method missed (diverged) in {misses} seeds", math.inf, math.nan,
                           math.nan, None, vals)
        return Outcome(INCONCLUSIVE, "a run missed (diverged): no interval", p=None, values=vals)
    est, lo, hi, _ = _interval(wx, wy, paired, 1 - 2 * alpha)
    if lo == hi:
        p = 0.0 if est < m else 1.0
    else:
        p = _one_sided_p(wx - wy - m if paired else (wx - m, wy), paired, "less")
    if hi < m:
        return Outcome(REPRODUCED, f"worse by < {m:g}: {1 - 2 * alpha:.0%} interval [{lo:.3g}, {hi:.3g}]",
                       est, lo, hi, p, vals)
    if lo > m:
        return Outcome(NOT_REPRODUCED, f"worse by more than {m:g}: interval [{lo:.3g}, {hi:.3g}]", est, lo, hi, p,
                       vals)
    return Outcome(INCONCLUSIVE, f"interval [{lo:.3g}, {hi:.3g}] crosses the margin {m:g}", est, lo, hi, p, vals)


def poisson_binomial_sf(k: int, probs: list[float]) -> float:
    """P(X >= k) for X a sum of independent Bernoulli(p_i): the exact chance distribution of hits."""
    dist = np.array([1.0])
    for p in probs:
        dist = np.convolve(dist, [1 - p, p])
    return float(dist[k:].sum()) if k < len(dist) else 0.0


@register("hit_rate")
def hit_rate(test: dict, hits: int, chance: list[float], null: list[float] | None = None) -> Outcome:
    """`hits` of len(chance) cases, each case hit by chance with probability chance[i] (ties counted). `null`, when
    the analysis gives it, is the exact distribution of the hit count (P(hits = h), h = 0..n) for cases that are not
    independent; the Poisson-binomial assumes they are."""
    alpha = float(test.get("alpha", 0.05))
    n = len(chance)
    if n == 0:
        return Outcome(INCONCLUSIVE, "no cases")
    if null is not None:
        if len(null) != n + 1:
            raise ValueError(f"a null distribution of {n} cases has {n + 1} entries (got {len(null)})")

        def sf(h: int) -> float:
            return float(min(1.0, sum(null[h:])))

        expected = float(sum(h * q for h, q in enumerate(null)))
    else:
        def sf(h: int) -> float:
            return poisson_binomial_sf(h, [float(c) for c in chance])

        expected = float(sum(chance))
    p = sf(int(hits))
    need = next((h for h in range(n + 1) if sf(h) < alpha), None)
    vals = {"hits": int(hits), "cases": n, "chance_hits": expected, "hits_needed": need, "p_all_hit": sf(n)}
    rate = hits / n
    if p < alpha:
        return Outcome(REPRODUCED, f"{hits}/{n} hits, chance {expected:.2f}: exact p={p:.3g}", rate, p=p,
                       values=vals)
    reach = (f"these {n} cases cannot reach alpha {alpha:g} even if all hit (p={sf(n):.3g} at {n}/{n})"
             if need is None else
             f"these {n} cases cannot reach alpha {alpha:g} unless all hit" if need == n else
             f"these {n} cases reach alpha {alpha:g} only with >= {need}/{n} hits")
    if hits <= expected:
        return Outcome(NOT_REPRODUCED, f"{hits}/{n} hits, no better than chance ({expected:.2f})", rate, p=p,
                       values=vals)
    return Outcome(INCONCLUSIVE, f"{hits}/{n} hits, chance {expected:.2f}: p={p:.3g}; {reach}", rate, p=p,
                   values=vals)


@register("interval")
def interval(test: dict, estimate: float, lo: float, hi: float, n: int | None) -> Outcome:
    """An estimate with its interval against a fixed band [band_lo, band_hi]."""
    blo, bhi = (float(v) for v in test["band"])
    if n is None or not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
        return Outcome(INCONCLUSIVE, "no interval (or no n): cannot decide", estimate, lo, hi)
    need = int(test.get("min_seeds", DEFAULT_MIN_SEEDS))  # as for arm tests: fewer than 3 never decide
    if n < need:
        return Outcome(INCONCLUSIVE, f"needs n >= {need} (has {n})", estimate, lo, hi)
    if blo <= lo and hi <= bhi:
        return Outcome(REPRODUCED, f"interval [{lo:.3g}, {hi:.3g}] inside [{blo:g}, {bhi:g}] (n={n})", estimate, lo,
                       hi)
    if hi < blo or lo > bhi:
        return Outcome(NOT_REPRODUCED, f"interval [{lo:.3g}, {hi:.3g}] outside [{blo:g}, {bhi:g}] (n={n})",
                       estimate, lo, hi)
    return Outcome(INCONCLUSIVE, f"interval [{lo:.3g}, {hi:.3g}] overlaps [{blo:g}, {bhi:g}]", estimate, lo, hi)


ARM_TESTS = ("directional", "equivalence", "noninferiority")
MOST_SEEDS = 200  # the planner stops counting here: a plan at it means "this many or more"


def seeds_needed(test: dict, a: dict, b: dict, power: float = 0.8, most: int = MOST_SEEDS) -> int | None:
    """Seeds per arm for the test to decide at the paper's effect (or within the margin) with this power,
    from the observed spread of the differences; None when the spread is unknown."""
    from statsmodels.stats.power import TTestIndPower, TTestPower

    x, y, paired = _arrays(a, b)
    if len(x) < 2 or len(y) < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    alpha = float(test.get("alpha", 0.05))
    sd = float(np.std(x - y, ddof=1)) if paired else float(math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2))
    if test["kind"] == "directional":
        delta = abs(float(test["paper_effect"]))
    else:  # a true difference of zero against the margin; TOST fails when either one-sided test does
        delta = float(test["margin"])
        power = 1 - (1 - power) / 2 if test["kind"] == "equivalence" else power
    if sd == 0:
        return max(int(test.get("min_seeds", DEFAULT_MIN_SEEDS)), 2)
    es = delta / sd
    if es >= 4:  # a huge effect: the minimum decides (statsmodels' root finder does not converge there)
        return max(int(test.get("min_seeds", DEFAULT_MIN_SEEDS)), 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = (TTestPower() if paired else TTestIndPower()).solve_power(effect_size=es, alpha=alpha, power=power,
                                                                           alternative="larger")
    except (ValueError, RuntimeError):
        return None
    n = float(np.atleast_1d(n)[0])
    if not math.isfinite(n):
        return None
    return min(max(int(math.ceil(n)), int(test.get("min_seeds", DEFAULT_MIN_SEEDS))), most)


def stability(test: dict, a: dict, b: dict, verdict: str, draws: int = 200, seed: int = 0) -> float:
    """Share of bootstrap resamples of the seeds (pairs resampled together) that keep the verdict."""
    x, y, paired = _arrays(a, b)
    rng = np.random.default_rng(seed)
    keep = 0
    relaxed = {**test, "min_seeds": 2}
    for _ in range(draws):
        if paired:
            idx = rng.integers(0, len(x), len(x))
            ra, rb = dict(enumerate(x[idx])), dict(enumerate(y[idx]))
        else:
            ra = {("a", i): v for i, v in enumerate(rng.choice(x, len(x)))}
            rb = {("b", i): v for i, v in enumerate(rng.choice(y, len(y)))}
        try:
            keep += TESTS[test["kind"]](relaxed, ra, rb).verdict == verdict
        except (ValueError, ZeroDivisionError, FloatingPointError):
            pass
    return keep / draws


def _mean_interval(x: np.ndarray, level: float) -> tuple[float, float, float]:
    """(mean, lo, hi): the Student-t interval of a mean over seeds (scipy)."""
    m = float(np.mean(x))
    lo, hi = sps.t.interval(level, len(x) - 1, loc=m, scale=float(sps.sem(x)))
    return m, float(lo), float(hi)


def interval_stability(test: dict, per_seed: list[float], verdict: str, level: float = 0.95, draws: int = 200,
                       seed: int = 0) -> float | None:
    """Share of bootstrap resamples of the per-seed values whose t-interval of the mean keeps the interval test's
    verdict. A resample of one distinct seed has no spread and so no interval: it is drawn again rather than
    counted as a change (with 3 seeds one draw in nine is such a resample, whatever the data)."""
    x = np.asarray(per_seed, float)
    if len(x) < 2 or len(np.unique(x)) < 2 or not np.all(np.isfinite(x)):
        return None
    rng = np.random.default_rng(seed)
    relaxed = {**test, "min_seeds": 2}
    keep = done = 0
    while done < draws:
        r = rng.choice(x, len(x))
        if len(np.unique(r)) < 2:
            continue
        done += 1
        keep += interval(relaxed, *_mean_interval(r, level), len(r)).verdict == verdict
    return keep / draws


def interval_seeds_needed(test: dict, per_seed: list[float], level: float = 0.95, power: float = 0.8,
                          most: int = MOST_SEEDS) -> int | None:
    """Seeds for the t-interval of the mean to clear the band edge nearest the observed mean with this power, at
    the observed mean and spread (a planning figure, never a threshold); None when that is undefined."""
    from statsmodels.stats.power import TTestPower

    x = np.asarray(per_seed, float)
    if len(x) < 2 or not np.all(np.isfinite(x)):
        return None
    blo, bhi = (float(v) for v in test["band"])
    m, sd = float(np.mean(x)), float(np.std(x, ddof=1))
    edges = [e for e in (blo, bhi) if math.isfinite(e)]
    if not edges:
        return None
    delta = min(abs(m - e) for e in edges)
    floor = max(int(test.get("min_seeds", DEFAULT_MIN_SEEDS)), 2)
    if delta == 0:
        return None
    if sd == 0 or delta / sd >= 4:
        return floor
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = TTestPower().solve_power(effect_size=delta / sd, alpha=(1 - level) / 2, power=power,
                                         alternative="larger")
    except (ValueError, RuntimeError):
        return None
    n = float(np.atleast_1d(n)[0])
    return min(max(int(math.ceil(n)), floor), most) if math.isfinite(n) else None
