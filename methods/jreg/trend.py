"""jreg's `trend` statistic (jreg.c3_amplification): how a per-step metric rises over training within each run.

Per run, Spearman's rho of the metric against the step; the claim's number is the mean over seeds with its
t-interval. A diverged run is a miss, never dropped nor read off its partial series: its rho counts as no trend
(`chance`, 0). Registered by name and found through the plugin discovery, so the core never imports it.

`metrics:jreg/jump_at/mid` (or `/<l>`) is not logged: it is J's form with a middle layer l (default ceil(L/2)) in
the final layer's place, d_l / mean of the other middle distances d_2..d_{L-1}, from each log step's jreg/dist/*
(jreg.c3_amplification's placebo: a non-final layer, whose "jump" must not grow).
"""

from __future__ import annotations

import math

import numpy as np

from claimbench import stats
from claimbench.evidence import metric_series
from claimbench.statistics import register_statistic

MIDDLE_JUMP = "jreg/jump_at/"


def middle_jump_series(ev, key: str) -> tuple[list[float], list[float]]:
    """(steps, d_l / mean d_j over j = 2..L-1, j != l) per log step carrying every jreg/dist/<j>."""
    steps, vals = [], []
    for r in ev.metrics():
        d = {int(k.rsplit("/", 1)[1]): v for k, v in r.items() if k.startswith("jreg/dist/")}
        n = len(d)
        at = key[len(MIDDLE_JUMP):]
        lay = math.ceil(n / 2) if at == "mid" else int(at)
        others = [d.get(j) for j in range(2, n) if j != lay]
        if n < 4 or sorted(d) != list(range(1, n + 1)) or not 1 < lay < n or not all(
                isinstance(x, (int, float)) and math.isfinite(x) for x in [d[lay], *others]) or sum(others) <= 0:
            continue
        steps.append(float(r["step"]))
        vals.append(d[lay] / (sum(others) / len(others)))
    return steps, vals


@register_statistic("trend", arm_values=False,
                    outputs=lambda stat, per_arm: {"estimate", "ci_lo", "ci_hi", "rho_min", "rho_max", "n", "misses",
                                                   "per_seed"})
def trend(stat: dict, evidence: dict, grid: dict, paths: dict, arm_vals: dict, out: dict) -> dict:
    key = stat["metric"].split(":")[1] if stat["metric"].startswith("metrics:") else stat["metric"]
    rhos, misses = [], 0
    for ev in evidence[stat["arm"]]:
        if ev.status == "diverged" and stat.get("diverged", "miss") == "miss":
            rhos.append(float(stat.get("chance", 0.0)))
            misses += 1
            continue
        steps, vals = (middle_jump_series if key.startswith(MIDDLE_JUMP) else metric_series)(ev, key)
        rhos.append(stats.rank_correlation(steps, vals)["rho"])
    s = stats.summarize(rhos, stat.get("level", 0.95))
    return dict(estimate=s["mean"], ci_lo=s["ci_lo"], ci_hi=s["ci_hi"], n=len(rhos), rho_min=float(np.min(rhos)),
                rho_max=float(np.max(rhos)), misses=misses, per_seed=rhos)
