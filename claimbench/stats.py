"""The statistics behind every verdict, small and tested against known values.

Conventions: a diverged run is a *miss*, never dropped: the caller replaces its value with
`miss_value()` (infinite loss, or chance accuracy) before calling anything here. Intervals are
two-sided at `level` (default 95%). A non-finite input gives a non-finite or degenerate interval
on purpose, so a rule comparing it with a threshold reads the miss as a miss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps


def miss_value(direction: str, chance: float | None = None) -> float:
    """What a diverged run counts as: +inf loss when lower is better, chance (or 0) accuracy otherwise."""
    if direction == "lower":
        return math.inf
    return 0.0 if chance is None else float(chance)


def summarize(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, sample SD and a Student-t interval of the mean over seeds."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "ci_lo": math.nan, "ci_hi": math.nan}
    mean = float(np.mean(x))
    if not np.all(np.isfinite(x)):
        return {"n": n, "mean": mean, "sd": math.nan, "ci_lo": mean, "ci_hi": mean}
    sd = float(np.std(x, ddof=1)) if n > 1 else math.nan
    lo, hi = t_interval(mean, sd, n, level)
    return {"n": n, "mean": mean, "sd": sd, "ci_lo": lo, "ci_hi": hi}


def t_interval(mean: float, sd: float, n: int, level: float = 0.95, df: float | None = None) -> tuple[float, float]:
    """mean +- t_{df} * sd / sqrt(n); unbounded with one sample (no spread is known)."""
    if n < 2 or not math.isfinite(sd):
        return (-math.inf, math.inf) if math.isfinite(mean) else (mean, mean)
    half = sps.t.ppf(0.5 + level / 2, df if df is not None else n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def paired_differences(a: dict, b: dict) -> list[float]:
    """a[seed] - b[seed] for the seeds both arms share (seed-matched data order and init)."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def difference(a: dict, b: dict, level: float = 0.95, method: str = "t", n_boot: int = 4000,
               seed: int = 0) -> dict:
    """Mean(a) - mean(b) with an interval; paired when both arms ran the same seeds.

    `a`, `b` map seed -> value. Paired: t interval of the per-seed differences. Unpaired: Welch.
    `method="bootstrap"`: percentile bootstrap (resampling seeds jointly when paired).
    """
    va, vb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    paired = bool(a) and set(a) == set(b)
    out = {"paired": paired, "n_a": len(va), "n_b": len(vb)}
    if len(va) == 0 or len(vb) == 0:
        return {**out, "estimate": math.nan, "ci_lo": math.nan, "ci_hi": math.nan, "sd": math.nan}
    est = float(np.mean(va) - np.mean(vb)) if np.all(np.isfinite(va)) or np.all(np.isfinite(vb)) else math.nan
    if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))):
        return {**out, "estimate": est, "ci_lo": est, "ci_hi": est, "sd": math.nan}
    rng = np.random.default_rng(seed)
    if paired:
        d = np.array(paired_differences(a, b))
        sd = float(np.std(d, ddof=1)) if len(d) > 1 else math.nan
        if method == "bootstrap":
            boots = rng.choice(d, size=(n_boot, len(d)), replace=True).mean(axis=1)
            lo, hi = np.quantile(boots, [0.5 - level / 2, 0.5 + level / 2])
        else:
            lo, hi = t_interval(est, sd, len(d), level)
        return {**out, "estimate": est, "ci_lo": float(lo), "ci_hi": float(hi), "sd": sd}
    sa = float(np.var(va, ddof=1)) if len(va) > 1 else math.nan
    sb = float(np.var(vb, ddof=1)) if len(vb) > 1 else math.nan
    se2 = sa / len(va) + sb / len(vb)
    sd = math.sqrt((sa + sb) / 2) if math.isfinite(se2) else math.nan
    if method == "bootstrap":
        ba = rng.choice(va, size=(n_boot, len(va)), replace=True).mean(axis=1)
        bb = rng.choice(vb, size=(n_boot, len(vb)), replace=True).mean(axis=1)
        lo, hi = np.quantile(ba - bb, [0.5 - level / 2, 0.5 + level / 2])
    elif math.isfinite(se2) and se2 > 0:
        dof = se2 ** 2 / ((sa / len(va)) ** 2 / (len(va) - 1) + (sb / len(vb)) ** 2 / (len(vb) - 1))
        half = sps.t.ppf(0.5 + level / 2, dof) * math.sqrt(se2)
        lo, hi = est - half, est + half
    elif se2 == 0:
        lo = hi = est
    else:
        lo, hi = -math.inf, math.inf
    return {**out, "estimate": est, "ci_lo": float(lo), "ci_hi": float(hi), "sd": sd}


def ratio(a: dict, b: dict, level: float = 0.95) -> dict:
    """mean(a)/mean(b), with the interval of the log-ratio (t on paired or Welch log values)."""
    la = {k: math.log(v) if v > 0 else math.nan for k, v in a.items()}
    lb = {k: math.log(v) if v > 0 else math.nan for k, v in b.items()}
    d = difference(la, lb, level)
    ma, mb = float(np.mean(list(a.values()))), float(np.mean(list(b.values())))
    est = ma / mb if mb else math.inf
    return {**d, "estimate": est, "ci_lo": math.exp(d["ci_lo"]), "ci_hi": math.exp(d["ci_hi"])}


def diverged_fraction(diverged: Sequence[bool], level: float = 0.95) -> dict:
    """Share of diverged seeds with a Wilson score interval."""
    n, k = len(diverged), int(sum(bool(d) for d in diverged))
    if n == 0:
        return {"k": 0, "n": 0, "estimate": math.nan, "ci_lo": math.nan, "ci_hi": math.nan}
    z = sps.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"k": k, "n": n, "estimate": p, "ci_lo": max(0.0, centre - half), "ci_hi": min(1.0, centre + half)}


def best_of_sweep(xs: Sequence[float], ys: Sequence[float], direction: str = "lower") -> dict:
    """The best value of a sweep and where it sits (ties: the first, i.e. smallest x, wins)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    score = np.where(np.isnan(ys), np.inf, ys if direction == "lower" else -ys)
    i = int(np.argmin(score))
    return {"best": float(ys[i]), "argbest": float(xs[i]), "index": i, "at_edge": i in (0, len(xs) - 1)}


def optimum_log2(xs: Sequence[float], ys: Sequence[float], direction: str = "lower",
                 refine: bool = True) -> dict:
    """log2 of the sweep's optimum, refined by a parabola through the 3 points around the grid optimum.

    The grid's resolution (largest log2 step between neighbours) is the uncertainty; at an edge of
    the grid or with a non-finite neighbour the grid point is kept and `at_edge`/`refined` say so.
    """
    best = best_of_sweep(xs, ys, direction)
    lx = np.log2(np.sort(np.asarray(xs, float)))
    ys_sorted = np.asarray(ys, float)[np.argsort(np.asarray(xs, float))]
    resolution = float(np.max(np.diff(lx))) if len(lx) > 1 else math.inf
    i, opt, refined = best["index"], float(lx[best["index"]]), False
    if refine and not best["at_edge"]:
        y3 = ys_sorted[i - 1: i + 2]
        if direction != "lower":
            y3 = -y3
        if np.all(np.isfinite(y3)):
            a, b, _ = np.polyfit(lx[i - 1: i + 2], y3, 2)
            if a > 0:
                opt = float(np.clip(-b / (2 * a), lx[i - 1], lx[i + 1]))
                refined = True
    opt = round(opt, 9)  # fit noise must not decide a rule like "shift <= 1"
    return {"log2_opt": opt, "opt": 2.0 ** opt, "resolution": resolution, "at_edge": best["at_edge"],
            "refined": refined, "best": best["best"]}


def optimum_shift(base: tuple[Sequence[float], Sequence[float]], target: tuple[Sequence[float], Sequence[float]],
                  direction: str = "lower", refine: bool = True) -> dict:
    """log2(x*_target / x*_base) with the coarser grid resolution as its uncertainty."""
    b, t = optimum_log2(*base, direction, refine), optimum_log2(*target, direction, refine)
    res = max(b["resolution"], t["resolution"])
    shift = t["log2_opt"] - b["log2_opt"]
    return {"shift": shift, "resolution": res, "ci_lo": shift - res, "ci_hi": shift + res,
            "at_edge": b["at_edge"] or t["at_edge"], "base": b, "target": t}


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> dict:
    """Spearman's rho (ties get average ranks) and its two-sided p-value."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return {"rho": math.nan, "p": math.nan, "n": len(x)}
    res = sps.spearmanr(x, y)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(x)}
