"""jreg's `trend` statistic (jreg.c3_amplification): how a per-step metric rises over training within each run.

Per run, Spearman's rho of the metric against the step; the claim's number is the mean over seeds with its
t-interval. A diverged run is a miss, never dropped nor read off its partial series: its rho counts as no trend
(`chance`, 0). Registered by name and found through the plugin discovery, so the core never imports it.
"""

from __future__ import annotations

import numpy as np

from claimbench import stats
from claimbench.evidence import metric_series
from claimbench.statistics import register_statistic


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
        steps, vals = metric_series(ev, key)
        rhos.append(stats.rank_correlation(steps, vals)["rho"])
    s = stats.summarize(rhos, stat.get("level", 0.95))
    return dict(estimate=s["mean"], ci_lo=s["ci_lo"], ci_hi=s["ci_hi"], n=len(rhos), rho_min=float(np.min(rhos)),
                rho_max=float(np.max(rhos)), misses=misses, per_seed=rhos)
