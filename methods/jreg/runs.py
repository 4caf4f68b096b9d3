"""How the JREG analyses read runs and put intervals on them: through `claimbench.evidence` (the runs
directory, else the evidence store), with a diverged run kept as a miss, and every number given with a
bootstrap-over-seeds interval and its n, so nothing downstream decides on a bare point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from scipy import stats as sps

from claimbench.config import ConfigError
from claimbench.evidence import RunEvidence, locate, read_run

LEVEL = 0.95
N_BOOT = 2000


def load_runs(run_ids: Sequence[str], runs_dir: str | Path, store: str | Path | None) -> list[RunEvidence]:
    """Each run as the evidence module reads it; a run that is missing or failed stops the analysis (its
    claims read `not_run`), a diverged one is kept (the caller counts it as a miss)."""
    out = []
    for rid in run_ids:
        ev = read_run(locate(rid, runs_dir, store))
        if not ev.usable:
            raise ConfigError(f"run {rid}: {ev.problem or ev.status} (looked in {runs_dir}"
                              + (f" and {store})" if store else ")"))
        out.append(ev)
    return out


def run_config(ev: RunEvidence) -> dict:
    """The run's resolved config (config.yaml is one of the evidence store's files)."""
    path = ev.run_dir / "config.yaml"
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable ({type(e).__name__})") from None
    if not isinstance(cfg, dict) or "seed" not in cfg:
        raise ConfigError(f"{path}: no 'seed'")
    return cfg


def seed_interval(values: Sequence[float], level: float = LEVEL, seed: int = 0) -> dict:
    """{estimate, ci_lo, ci_hi, n}: the mean over seeds with a percentile bootstrap interval over the seeds.

    A miss (a non-finite value) leaves the mean non-finite and no interval (NaN bounds): a diverged run is
    never dropped to make a number look defined. All seeds equal: the interval is the point (decides nothing).
    """
    v = np.asarray([math.nan if x is None else float(x) for x in values], float)
    n = len(v)
    out = {"estimate": float(v.mean()) if n else math.nan, "ci_lo": math.nan, "ci_hi": math.nan, "n": n}
    if n < 2 or not np.all(np.isfinite(v)):
        return out
    if np.ptp(v) == 0:
        return {**out, "ci_lo": float(v[0]), "ci_hi": float(v[0])}
    res = sps.bootstrap((v,), np.mean, confidence_level=level, n_resamples=N_BOOT, method="percentile",
                        rng=np.random.default_rng(seed))
    return {**out, "ci_lo": float(res.confidence_interval.low), "ci_hi": float(res.confidence_interval.high)}
