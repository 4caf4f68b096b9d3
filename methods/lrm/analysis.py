"""The LRM studies: one JSON of per-claim numbers from the runs of config/papers/lrm.<profile>.yaml.

Each grid entry names its `study`; this module reads every run through claimbench.evidence (the runs directory, or
the evidence store where the runs directory lacks a run) and reduces each study to the numbers the claims
(benchmarks/claims/lrm.yaml, via `from_file`) and results/analysis/lrm/summary.md show. A diverged run is a miss,
never dropped: its loss is +inf (the worst), and a norm or slope it cannot give makes the number NaN (undecided).
A missing or failed run is reported as such (its numbers are None/NaN), never filled in. Every number a claim reads
carries its estimate, a bootstrap interval over seeds (or over runs within a design cell), n and the runs used.

    python -m methods.lrm.analysis --grid config/papers/lrm.smoke.yaml --runs-dir runs/smoke \
        --store results/evidence/smoke --out results/analysis/lrm/summary.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats as scipy_stats

from claimbench.evidence import locate, read_run
from claimbench.grid import RunSpec, expand
from claimbench.io import atomic_write_json, atomic_write_text
from claimbench.stats import miss_value
from methods.lrm.mup_sweep import load_sweep, trial_grid

NAN = float("nan")
MIN_SEEDS = 3  # an interval needs at least 3 seeds (per design cell); fewer: no interval, the claim is undecided
N_BOOT = 2000  # bootstrap resamples (seeded: the same runs give the same interval)
LEVEL = 0.95


def _sets(spec: RunSpec) -> dict[str, Any]:
    return {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in spec.sets)}


def _lrm_opts(sets: dict) -> dict:
    for m in sets.get("methods") or []:
        if m == "lrm":
            return {"name": "lrm"}
        if isinstance(m, dict) and m.get("name") == "lrm":
            return m
    return {}


class Run:
    """One run as claimbench.evidence reads it: its grid sets, status, result and metrics.

    `loss` of a diverged run is the miss value (+inf); its last norms are None, like a missing run's, and the
    studies turn a None they need into NaN (undecided) while counting the run in `misses`, never dropping it."""

    def __init__(self, spec: RunSpec, runs_dir: Path, store: Path | None = None):
        self.spec, self.sets = spec, _sets(spec)
        self.lrm = _lrm_opts(self.sets)
        self.ev = read_run(locate(spec.run_id, runs_dir, store))
        self.result = self.ev.result
        self.rows = self.ev.metrics() if self.ok else []

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def status(self) -> str:
        return self.ev.status

    @property
    def ok(self) -> bool:
        return self.ev.status == "ok"

    @property
    def diverged(self) -> bool:
        return self.ev.status == "diverged"

    @property
    def seed(self) -> int:
        return int(self.sets.get("seed", 0))

    @property
    def loss(self) -> float | None:
        if self.diverged:
            return miss_value("lower")
        v = self.result.get("final_val_loss") if self.ok else None
        return float(v) if isinstance(v, (int, float)) else None

    def last(self, key: str) -> float | None:
        vals = [r[key] for r in self.rows if r.get(key) is not None]
        return vals[-1] if vals else None

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]


def _mean_sd(xs: list[float | None]) -> dict[str, Any]:
    """Mean and SD over runs; a miss (+inf) keeps the mean infinite, a missing value (None) is counted."""
    v = [x for x in xs if x is not None and not math.isnan(x)]
    fin = all(math.isfinite(x) for x in v)
    return {"mean": (statistics.fmean(v) if fin else max(v)) if v else None,
            "sd": statistics.stdev(v) if len(v) > 1 and fin else None, "n": len(v), "missing": len(xs) - len(v)}


def _f(x: float | None) -> float:
    return NAN if x is None else float(x)


def _quantiles(draws: list[float]) -> tuple[float, float]:
    """Percentile interval of bootstrap draws; an infinite draw (a miss) stays infinite, a NaN one voids it."""
    d = np.asarray(draws, float)
    if len(d) == 0 or np.isnan(d).any():
        return NAN, NAN
    a = (1 - LEVEL) / 2
    return float(np.quantile(d, a, method="lower")), float(np.quantile(d, 1 - a, method="higher"))


def bootstrap(units: list, stat: Callable[[list], float], strata: Callable[[Any], Any] | None = None,
              seed: int = 0) -> dict[str, Any]:
    """estimate = stat(units) with a seeded percentile bootstrap interval: units (seeds, or runs within a design
    cell `strata`) resampled with replacement. Fewer than MIN_SEEDS units in a cell: no interval (NaN).

    A seeded resample rather than scipy.stats.bootstrap: cells are resampled separately (a slope's x values are the
    design, not a sample) and a miss (+inf) must stay in the draws, which scipy's BCa cannot take."""
    cells: dict[Any, list] = defaultdict(list)
    for u in units:
        cells[strata(u) if strata else 0].append(u)
    est = _safe(stat, units) if units else NAN
    out = {"estimate": est, "ci_lo": NAN, "ci_hi": NAN, "n": len(units),
           "min_per_cell": min((len(c) for c in cells.values()), default=0)}
    if not units or out["min_per_cell"] < MIN_SEEDS or math.isnan(est):
        return out
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(N_BOOT):
        sample = [c[i] for c in cells.values() for i in rng.integers(0, len(c), len(c))]
        draws.append(_safe(stat, sample))
    out["ci_lo"], out["ci_hi"] = _quantiles(draws)
    return out


def seed_mean(values: list[float], fallback: dict[str, Any]) -> dict[str, Any]:
    """A mean of per-seed values with its Student-t interval. With 3-5 seeds a percentile bootstrap cannot reach
    beyond the range of the seeds (it under-covers badly); the t interval is the standard small-sample one. A miss
    (non-finite value) keeps the bootstrap's result (`fallback`), whose draws carry it."""
    v = np.asarray(values, float)
    if len(v) < MIN_SEEDS or not np.isfinite(v).all():
        return fallback
    lo, hi = scipy_stats.t.interval(LEVEL, len(v) - 1, loc=float(v.mean()), scale=float(scipy_stats.sem(v)))
    return {**fallback, "estimate": float(v.mean()), "ci_lo": float(lo), "ci_hi": float(hi), "n": len(v),
            "interval": "t over seeds"}


def _safe(stat: Callable[[list], float], units: list) -> float:
    try:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            v = float(stat(units))
    except (ValueError, ZeroDivisionError, np.linalg.LinAlgError):
        return NAN
    return v


def pooled_slope(x: list[float], y: list[float], groups: list | None = None) -> float:
    """Least-squares slope of log y on log x with one intercept per group; NaN when a value is missing, not
    positive or infinite (a miss), or the design cannot identify the slope."""
    if not x or any(v is None or not math.isfinite(v) or v <= 0 for v in list(x) + list(y)):
        return NAN
    groups = groups if groups is not None else [0] * len(x)
    names = sorted(set(groups), key=str)
    X = np.column_stack([np.log(x)] + [[1.0 if g == n else 0.0 for g in groups] for n in names])
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return NAN
    coef = np.linalg.lstsq(X, np.log(y), rcond=None)[0]
    return float(coef[0])


def _equilibrium(runs: list[Run]) -> dict[str, float]:
    """What the weight-decay equilibrium premise reads: the runs' steps, peak LR and global WD (the s_factor
    roles keep lr*wd fixed), and steps * lr * wd, the run length in relaxation times 1/(lr*wd) (at the peak LR:
    an upper bound for a decaying schedule)."""
    if not runs:
        return {"steps": NAN, "lr": NAN, "wd": NAN, "lr_wd_steps": NAN}
    s = runs[0].sets
    steps, lr, wd = float(s.get("train.steps", NAN)), float(s.get("train.lr", NAN)), \
        float(s.get("train.weight_decay", NAN))
    return {"steps": steps, "lr": lr, "wd": wd, "lr_wd_steps": steps * lr * wd}


def _counts(runs: list[Run]) -> dict[str, Any]:
    return {"misses": sum(r.diverged for r in runs), "missing": sum(r.status not in ("ok", "diverged") for r in runs),
            "runs": sorted(r.run_id for r in runs)}


def _arm(run: Run) -> str:
    has_lrm = bool(run.lrm) and run.lrm.get("placement", "both") != "none"
    return f"{run.sets['recipe']}{'+lrm' if has_lrm else ''}"


# ------------------------------------------------------------------------------------------ studies

def _best(cells: dict[float, dict[int, float]], seeds: list[int]) -> tuple[float, float | None]:
    """(lowest mean loss over the seeds, its LR) of one arm; a diverged seed makes its LR's mean +inf."""
    means = {lr: float(np.mean([c.get(s, NAN) for s in seeds])) for lr, c in cells.items()}
    scored = {lr: m for lr, m in means.items() if not math.isnan(m)}
    if not scored or len(scored) < len(means):
        return NAN, None
    lr = min(scored, key=scored.get)
    return scored[lr], lr


def perf(runs: list[Run]) -> dict:
    """C10 (loss) and C5 context: each arm at its best LR of the shared grid (mean over seeds); the LRM gain
    (LRM - baseline at their own best LRs) with a t interval over the seeds' paired differences at those LRs (a
    bootstrap that re-picks the LRs where a seed missed); whether an arm's optimum sits on the grid's edge (the
    claims' premise)."""
    by: dict[str, dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    rs_by: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by[_arm(r)][float(r.sets["train.lr"])][r.seed] = _f(r.loss)
        rs_by[_arm(r)].append(r)
    arms = {}
    for arm, cells in by.items():
        seeds = sorted({s for c in cells.values() for s in c})
        best, lr = _best(cells, seeds)
        spread = {k: _mean_sd([x.last(f"lrm/row_spread/{k}") for x in rs_by[arm]
                               if lr is not None and float(x.sets["train.lr"]) == lr]) for k in ("attn_q", "mlp_gate")}
        table = {str(k): _mean_sd(list(v.values())) for k, v in sorted(cells.items())}
        arms[arm] = {"by_lr": table, "best_lr": lr, "best": table[str(lr)] if lr is not None else None,
                     "row_spread": spread, "edge_optimum": lr is not None and lr in (min(cells), max(cells)),
                     **_counts(rs_by[arm])}

    def gain(vec: str, base: str) -> dict:
        if vec not in by or base not in by:
            return {"estimate": NAN, "ci_lo": NAN, "ci_hi": NAN, "n": 0, "edge_lrm": NAN, "edge_base": NAN,
                    "per_seed": []}
        seeds = sorted(set.intersection(*({*c} for a in (vec, base) for c in by[a].values())))
        b = bootstrap(seeds, lambda ss: _best(by[vec], ss)[0] - _best(by[base], ss)[0])
        lv, lb = arms[vec]["best_lr"], arms[base]["best_lr"]
        per_seed: list[float] = []
        if lv is not None and lb is not None:  # paired by seed at each arm's best LR (the estimate's own LRs)
            per_seed = [by[vec][lv][s] - by[base][lb][s] for s in seeds]
            b = seed_mean(per_seed, b)
        # per_seed: the paired differences the t interval is over (the engine's stability and seed plan read them)
        return {**b, "per_seed": per_seed, "edge_lrm": int(arms[vec]["edge_optimum"]),
                "edge_base": int(arms[base]["edge_optimum"]),
                "best_lr_lrm": arms[vec]["best_lr"], "best_lr_base": arms[base]["best_lr"],
                "lrs": sorted(by[vec]), "runs": sorted(arms[vec]["runs"] + arms[base]["runs"])}

    def ratio(k: str) -> float | None:
        a, b = ((arms.get(x) or {}).get("row_spread", {}).get(k, {}).get("mean") for x in ("adamw+lrm", "adamw"))
        return a / b if a and b else None

    best_mean = lambda a: ((arms.get(a) or {}).get("best") or {}).get("mean")  # noqa: E731
    sds = [arms[a]["best"]["sd"] for a in arms if arms[a]["best"] and arms[a]["best"].get("sd") is not None]
    mv = best_mean("muon"), best_mean("adamw")
    return {"arms": arms, "gain_adamw": gain("adamw+lrm", "adamw"), "gain_muon": gain("muon+lrm", "muon"),
            "muon_vs_adamw": mv[0] - mv[1] if None not in mv else None, "max_seed_sd": max(sds) if sds else None,
            "row_spread_ratio_attn_q": ratio("attn_q"), "row_spread_ratio_mlp_gate": ratio("mlp_gate")}


PROJECTOR = {"frozen": "FPN", "scalar": "SPN", "vector": "VPN"}


def projector(runs: list[Run]) -> dict:
    """C1/C2 at the paper's S = lr/wd of the head relative to the base run (s_factor k: LR*k, WD/k, so S = k^2;
    k in 1/8..8 is the paper's S in 8^-2..8^2).

    C1: log-log slope of the head's RMS on S, FPN/SPN/VPN pooled with one intercept each (theory: ||W|| is
    proportional to sqrt(lr/wd) = sqrt(S): slope 0.5 on this axis, 1 on log k), bootstrap over the seeds of each
    (arm, S) cell; the same
    slope of the ABM reference (the premise: the equilibrium is reached at this run length) and of head/ABM.
    C2: per seed, [mean loss at the extreme S - loss at S=1] of FPN minus the same of VPN (placebo: SPN minus
    VPN, both with a norm multiplier), bootstrap over seeds. A diverged run: loss +inf, norm NaN."""
    pts = []
    for r in runs:
        name = PROJECTOR.get(r.lrm.get("final_norm", "vector"))
        S = float(r.lrm.get("s_factor", {}).get("readout", 1.0)) ** 2  # lr/wd scales by k^2
        pts.append({"arm": name, "S": S, "seed": r.seed, "head_rms": _f(r.last("lrm/readout_rms_w")),
                    "abm_rms": _f(r.last("lrm/abm_rms")), "loss": _f(r.loss), "run_id": r.run_id})
    cell = lambda p: (p["arm"], p["S"])  # noqa: E731
    fit = lambda key: (lambda ps: pooled_slope([p["S"] for p in ps], [p[key] for p in ps],  # noqa: E731
                                               [p["arm"] for p in ps]))
    head = bootstrap(pts, fit("head_rms"), cell)
    abm = bootstrap(pts, fit("abm_rms"), cell)
    for p in pts:
        p["head_over_abm"] = p["head_rms"] / p["abm_rms"] if p["abm_rms"] and p["abm_rms"] > 0 else NAN
    track = bootstrap(pts, fit("head_over_abm"), cell)
    eq, counts = _equilibrium(runs), _counts(runs)
    c1 = {**head, "abm_slope": abm["estimate"], "abm_ci_lo": abm["ci_lo"], "abm_ci_hi": abm["ci_hi"],
          "head_over_abm_slope": track["estimate"], "head_over_abm_ci": [track["ci_lo"], track["ci_hi"]],
          "by_arm": {a: pooled_slope([p["S"] for p in pts if p["arm"] == a], [p["head_rms"] for p in pts
                                                                             if p["arm"] == a])
                     for a in PROJECTOR.values()},
          **eq, **counts, "axis": "log S, S = lr/wd of the head relative to the base run (s_factor k: S = k^2)",
          "note": "slope of log head RMS on log S (theory 0.5); bootstrap over the seeds of each (arm, S) cell"}

    def excess(ps: list[dict], arm: str) -> float:
        by = {p["S"]: p["loss"] for p in ps if p["arm"] == arm}
        if len(by) < 3 or 1.0 not in by:
            return NAN
        return float(np.mean([by[min(by)], by[max(by)]]) - by[1.0])

    seeds = sorted({p["seed"] for p in pts})
    per_seed = {s: [p for p in pts if p["seed"] == s] for s in seeds}

    def dd(arm: str, ref: str = "VPN") -> Callable[[list], float]:
        return lambda ss: float(np.mean([excess(per_seed[s], arm) - excess(per_seed[s], ref) for s in ss]))

    # per seed values (the engine's stability and seed plan) and the placebo block (the engine's placebo test):
    # SPN in FPN's place, both learn the norm's scale, so an excess there is no FPN effect
    fpn = [dd("FPN")([s]) for s in seeds]
    c2 = {**seed_mean(fpn, bootstrap(seeds, dd("FPN"))), "per_seed": fpn,
          "placebo": {**seed_mean([dd("SPN")([s]) for s in seeds], bootstrap(seeds, dd("SPN"))),
                      "what": "SPN in FPN's place (SPN minus VPN)",
                      "runs": sorted(p["run_id"] for p in pts if p["arm"] in ("SPN", "VPN"))},
          "excess": {a: float(np.mean([excess(per_seed[s], a) for s in seeds])) if seeds else NAN
                     for a in PROJECTOR.values()},
          "abm_slope": abm["estimate"], **eq, **counts,
          "note": "per seed [mean loss at the extreme S - loss at S=1] of FPN minus the same of VPN; t interval over "
                  "seeds; placebo: SPN in FPN's place (both learn the norm's scale)"}
    return {"points": pts, "c1": c1, "c2": c2}


def mlp_scale(runs: list[Run]) -> dict:
    """C3: per seed, the val-loss rise from S_MLP = 1 to the largest S_MLP with all norms frozen, without
    multipliers (`no_mult`) and with the three scalar MLP multipliers (the estimate), bootstrap over seeds; the
    run length in relaxation times (the premise)."""
    out: dict[str, Any] = {}
    for arm, placement in (("no_mult", "none"), ("scalar_mult", "mlp_scalar")):
        rs = [r for r in runs if r.lrm.get("placement") == placement]
        by: dict[int, dict[float, float]] = defaultdict(dict)
        for r in rs:
            by[r.seed][float(r.lrm["s_factor"]["hidden_matrix"])] = _f(r.loss)

        def rise(ss: list, by=by) -> float:
            return float(np.mean([by[s][max(by[s])] - by[s].get(1.0, NAN) for s in ss]))

        out[arm] = {**bootstrap(sorted(by), rise), "val_loss_by_S": {str(s): {str(k): v for k, v in sorted(d.items())}
                                                                      for s, d in by.items()}}
    return {**out["scalar_mult"], "no_mult_rise": out["no_mult"]["estimate"], "no_mult_ci_lo": out["no_mult"]["ci_lo"],
            "no_mult_ci_hi": out["no_mult"]["ci_hi"], "arms": out, **_equilibrium(runs), **_counts(runs)}


def symmetry(runs: list[Run]) -> dict:
    """C6: final |log10(M_q/M_k)|, log10(M_q M_k) and the residual RMS growth (last / after warmup), for the
    multiplier-WD-0 runs (`no_wd`) and the WD 2e-3 ones (`with_wd`); the estimate: no_wd - with_wd of the
    |log10 ratio|, paired by seed, bootstrap over seeds. Keys hold no dots, for dotted look-ups."""
    out: dict[str, Any] = {"no_wd": {}, "with_wd": {}}
    for r in runs:
        resid = r.series("lrm/resid_rms")
        start = next((v for s, v in resid if s > r.sets.get("train.warmup_steps", 0)), None)
        wd = r.lrm.get("weight_decay", 2e-3)
        out["no_wd" if wd == 0 else "with_wd"][r.seed] = {
            "weight_decay": wd, "qk_log10_ratio": _f(r.last("lrm/qk_log10_ratio")),
            "qk_log10_prod": _f(r.last("lrm/qk_log10_prod")),
            "resid_growth": resid[-1][1] / start if resid and start else NAN, "val_loss": _f(r.loss),
            "status": r.status}
    seeds = sorted(set(out["no_wd"]) & set(out["with_wd"]))
    b = bootstrap(seeds, lambda ss: float(np.mean([out["no_wd"][s]["qk_log10_ratio"] - out["with_wd"][s]
                                                   ["qk_log10_ratio"] for s in ss])))
    for arm in ("no_wd", "with_wd"):  # the first seed's numbers at the top level (summary table), all seeds below
        out[arm] = {**(out[arm].get(min(out[arm])) if out[arm] else {}), "by_seed": {str(s): v for s, v in
                                                                                     out[arm].items()}}
    return {**out, **b, **_equilibrium(runs), **_counts(runs)}


def width(runs: list[Run]) -> dict:
    """C7: exponent a of the learned projector multiplier ~ d^-a (the scalar final-norm gain), bootstrap over the
    seeds at each width; log-log slopes of the mean What RMS and the logit RMS as context; the run length in
    relaxation times (the premise)."""
    pts = []
    for r in runs:
        v = [x for k, x in (r.rows[-1].items() if r.rows else []) if k.startswith("lrm/rms_w/")]
        pts.append({"d": float(r.sets["model.n_embd"]), "seed": r.seed, "mult": _f(r.last("lrm/final_norm_rms")),
                    "w_rms": statistics.fmean(v) if v else NAN, "logit_rms": _f(r.last("lrm/logit_rms"))})
    fit = lambda key: (lambda ps: pooled_slope([p["d"] for p in ps], [p[key] for p in ps]))  # noqa: E731
    b = bootstrap(pts, lambda ps: -fit("mult")(ps), lambda p: p["d"])
    return {**b, "widths": sorted({p["d"] for p in pts}), "points": pts, "slope_w_rms": fit("w_rms")(pts),
            "slope_logit_rms": fit("logit_rms")(pts), "slope_projector_mult": fit("mult")(pts),
            **_equilibrium(runs), **_counts(runs),
            "note": "a in multiplier ~ d^-a, the learned projector multiplier = the scalar final-norm gain"}


def clip(runs: list[Run], reference: list[Run]) -> dict:
    """C8 context (the claim tests the runs' final_val_loss itself): mean clip factor over the first 10% of steps
    with the multipliers included (its own norm) and in the excluded reference; final val-loss difference."""
    def early(rs: list[Run], key: str) -> dict:
        vals = []
        for r in rs:
            n = max(1, r.sets["train.steps"] // 10)
            s = [v for step, v in r.series(key) if step <= n]
            vals.append(statistics.fmean(s) if s else None)
        return _mean_sd(vals)

    inc, exc = _mean_sd([r.loss for r in runs]), _mean_sd([r.loss for r in reference])
    return {"early_clip_factor_include": early(runs, "lrm/clip_factor_incl"),
            "early_clip_factor_exclude": early(reference, "lrm/clip_factor_excl"),
            "val_loss_include": inc, "val_loss_exclude": exc,
            "loss_diff": inc["mean"] - exc["mean"] if inc["mean"] is not None and exc["mean"] is not None else None}


def head(runs: list[Run], reference: list[Run]) -> dict:
    """C9 context (the claim tests the runs' final_val_loss itself): (head row multipliers) - (head left alone)."""
    a, b = _mean_sd([r.loss for r in runs]), _mean_sd([r.loss for r in reference])
    return {"val_loss_head_row": a, "val_loss_reference": b,
            "loss_diff": a["mean"] - b["mean"] if a["mean"] is not None and b["mean"] is not None else None}


def _mup_opts(sets: dict) -> dict:
    return next((m for m in sets.get("methods") or [] if isinstance(m, dict) and m.get("name") == "mup"), {})


LEVELS = ("NONE", "LR", "LRWD", "FULL")


def levels(runs: list[Run]) -> dict:
    """C10 tuning ablation (Fig. 7): per muP level (NONE: no mup method, all multipliers 1), the val loss of the
    baseline and of +LRM over seeds and the LRM gain (LRM - baseline, paired by seed); the worst level's gain
    (the largest mean gain) with a t interval over the seeds' paired gains at that level (a bootstrap that
    re-picks the worst level where a seed missed);
    each tuned level's baseline against NONE's (does tuning help?). A diverged run is a +inf loss."""
    from claimbench import stats

    by: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    tuned_files = set()
    for r in runs:
        mup = _mup_opts(r.sets)
        if mup.get("tuned"):
            tuned_files.add(mup["tuned"])
        arm = "lrm" if _arm(r).endswith("+lrm") else "base"
        by[mup.get("level", "NONE")][arm][r.seed] = _f(r.loss)
    out: dict[str, Any] = {"levels": {}}
    for level in LEVELS:
        if level not in by:
            continue
        base, lrm = by[level].get("base", {}), by[level].get("lrm", {})
        row = {"base": _mean_sd(list(base.values())), "lrm": _mean_sd(list(lrm.values())),
               "gain": NAN, "ci_lo": NAN, "ci_hi": NAN}
        if base and lrm and set(base) == set(lrm):
            d = stats.difference(lrm, base)
            row.update(gain=d["estimate"], ci_lo=d["ci_lo"], ci_hi=d["ci_hi"], paired=d["paired"])
        out["levels"][level] = row
    complete = all(lv in by for lv in LEVELS)
    seeds = sorted(set.intersection(*({*by[lv][a]} for lv in LEVELS for a in ("base", "lrm")))) if complete else []

    def worst(ss: list) -> float:
        return max(float(np.mean([by[lv]["lrm"][s] - by[lv]["base"][s] for s in ss])) for lv in LEVELS)

    b = bootstrap(seeds, worst) if complete else {"estimate": NAN, "ci_lo": NAN, "ci_hi": NAN, "n": 0}
    per_seed: list[float] = []
    if complete and seeds:  # paired by seed at the worst level (the estimate's own level)
        lv = max(LEVELS, key=lambda x: float(np.mean([by[x]["lrm"][s] - by[x]["base"][s] for s in seeds])))
        per_seed = [by[lv]["lrm"][s] - by[lv]["base"][s] for s in seeds]
        b = seed_mean(per_seed, b)
        out["worst_level"] = lv
    # per_seed: the worst level's paired gains, which the t interval is over (the engine's stability and seed plan)
    out.update(worst_gain=b["estimate"], worst_ci_lo=b["ci_lo"], worst_ci_hi=b["ci_hi"], n=b["n"], per_seed=per_seed,
               **_counts(runs))
    out["overhead"] = overhead(by)
    none = (out["levels"].get("NONE") or {}).get("base", {}).get("mean")
    out["tuned_minus_none"] = {lv: (r["base"]["mean"] - none if none is not None and r["base"]["mean"] is not None
                                    else NAN) for lv, r in out["levels"].items() if lv != "NONE"}
    out["tuned_file"] = sorted(tuned_files)
    tuned = {}
    for f in sorted(tuned_files):
        path = Path(f)
        if path.is_file():
            tuned = json.loads(path.read_text()).get("levels", {})
    out["tuned"] = tuned
    return out


def overhead(by: dict[str, dict[str, dict[int, float]]], tuned: str = "FULL") -> dict:
    """C14 (tuning overhead): per seed, the val loss of untuned muP + LRM (NONE + LRM) minus that of the fully tuned
    muP baseline without LRM (FULL), t interval over the seeds (paired by seed); `tuning_gain`, the tuned baseline
    minus the untuned one (mean over seeds), is the premise: a tuning gain for LRM to replace."""
    need = [("NONE", "lrm"), ("NONE", "base"), (tuned, "base")]
    seeds = sorted(set.intersection(*({*by.get(lv, {}).get(a, {})} for lv, a in need)))
    out: dict[str, Any] = {"estimate": NAN, "ci_lo": NAN, "ci_hi": NAN, "n": len(seeds), "per_seed": [],
                           "tuning_gain": NAN, "tuned_level": tuned}
    if not seeds:
        return out
    per_seed = [by["NONE"]["lrm"][s] - by[tuned]["base"][s] for s in seeds]
    b = bootstrap(seeds, lambda ss: float(np.mean([by["NONE"]["lrm"][s] - by[tuned]["base"][s] for s in ss])))
    out.update({k: v for k, v in seed_mean(per_seed, b).items() if k in ("estimate", "ci_lo", "ci_hi", "n",
                                                                          "interval")})
    out["per_seed"] = per_seed
    out["tuning_gain"] = float(np.mean([by[tuned]["base"][s] - by["NONE"]["base"][s] for s in seeds]))
    return out


def depth(runs: list[Run], reference: list[Run]) -> dict:
    """C4: per seed, the ratio scalar-LRM / baseline of each block's output RMS and its Spearman rho with the
    layer index; the mean rho with a bootstrap over seeds; the layer count (the premise reads it)."""
    from scipy import stats

    ref = {r.seed: r for r in reference}
    ratios: dict[int, list[float] | None] = {}
    for r in runs:
        b = ref.get(r.seed)
        if b is None or not r.rows or not b.rows:
            ratios[r.seed] = None  # a diverged or missing run: no ratio (a miss, counted below)
            continue
        a, c = r.rows[-1], b.rows[-1]
        layers = sorted(int(k.rsplit("/", 1)[1]) for k in a if k.startswith("lrm/resid_rms/"))
        ratios[r.seed] = [a[f"lrm/resid_rms/{i}"] / c[f"lrm/resid_rms/{i}"] for i in layers
                          if f"lrm/resid_rms/{i}" in c]

    def rho(s: int) -> float:
        v = ratios[s]
        return float(stats.spearmanr(range(len(v)), v)[0]) if v and len(v) >= 3 else NAN

    seeds = sorted(ratios)
    b = bootstrap(seeds, lambda ss: float(np.mean([rho(s) for s in ss])))
    n_layers = int(runs[0].sets.get("model.n_layer", 0)) if runs else 0
    first = ratios.get(seeds[0]) if seeds else None
    return {**b, "rho_by_seed": {str(s): rho(s) for s in seeds}, "ratio_by_layer": first,
            "rises_with_depth": bool(first) and len(first) > 1 and first[-1] > first[0], "n_layers": n_layers,
            **_counts(runs + reference)}


def claim_files(s: dict) -> dict[str, dict]:
    """The files benchmarks/claims/lrm.yaml reads with `from_file`, one per claim family, from the studies."""
    proj = s["C1_C2"]
    return {"c1_norm_slope.json": proj["c1"], "c2_projector.json": proj["c2"], "c3_mlp_scale.json": s["C3"],
            "c4_residual_norms.json": s["C4"], "c6_symmetry.json": s["C6"], "c7_width.json": s["C7"],
            "c10_perf.json": {"adamw": s["C10"]["gain_adamw"], "muon": s["C10"]["gain_muon"]},
            "c10_levels.json": {k: v for k, v in (s.get("C10_levels") or {"worst_gain": NAN, "worst_ci_lo": NAN,
                                                                             "worst_ci_hi": NAN, "n": 0,
                                                                             "per_seed": [],
                                                                             "overhead": overhead({})}).items()
                                if k not in ("tuned",)}}


def analyse(grid: list[dict], runs_dir: Path, store: Path | None = None) -> dict:
    studies: dict[str, list[Run]] = defaultdict(list)
    for entry in grid:
        for spec in expand([entry]).values():
            studies[entry.get("study", "")].append(Run(spec, runs_dir, store))
    perf_runs = studies.get("perf", [])
    # the references of C8, C9, C4: lrm:perf's AdamW arms at the fixed LR of those studies
    lr = next((r.sets["train.lr"] for r in studies.get("clip", []) + studies.get("head", [])), None)
    ref_lrm = [r for r in perf_runs if _arm(r) == "adamw+lrm" and r.sets["train.lr"] == lr and r.lrm == {"name": "lrm"}]
    depth_runs = studies.get("depth", [])
    ref_probe = [r for r in depth_runs if r.lrm.get("placement") == "none"]
    depth_runs = [r for r in depth_runs if r.lrm.get("placement") != "none"]
    out = {"C10": perf(perf_runs), "C1_C2": projector(studies.get("projector", [])),
           "C3": mlp_scale(studies.get("mlp_scale", [])), "C6": symmetry(studies.get("symmetry", [])),
           "C7": width(studies.get("width", [])), "C8": clip(studies.get("clip", []), ref_lrm),
           "C9": head(studies.get("head", []), ref_lrm), "C4": depth(depth_runs, ref_probe)}
    if studies.get("levels"):
        out["C10_levels"] = levels(studies["levels"])
    unique = {r.spec.run_id: r for v in studies.values() for r in v}.values()  # shared runs counted once
    out["runs"] = {"total": len(unique), "ok": sum(r.ok for r in unique),
                   "diverged": sum(r.diverged for r in unique),
                   "wall_s_sum": sum(float(r.result.get("wall_s") or 0.0) for r in unique),
                   "sweep_trials": len({r.spec.run_id for r in studies.get("mup_sweep", [])})}
    return out


def _grouped(mults: dict | None) -> str:
    """{role: value} as 'value (role, role)' groups: the sweep gives one value to several roles."""
    by: dict[float, list[str]] = defaultdict(list)
    for role, v in sorted((mults or {}).items()):
        by[v].append(role)
    return "; ".join(f"{v:g} ({', '.join(roles)})" for v, roles in by.items()) or "1"


def summary_md(s: dict) -> str:
    c10, c8, c9 = s["C10"], s["C8"], s["C9"]
    fmt = lambda x: "n/a" if x is None else f"{x:+.4f}" if isinstance(x, float) else str(x)  # noqa: E731
    runs = s["runs"]
    lines = ["# LRM studies (methods/lrm/analysis.py)", "",
             f"Runs: {runs['ok']}/{runs['total']} ok, {runs['diverged']} diverged (the muP sweep's "
             f"{runs.get('sweep_trials', 0)} trials included). Compute: the runs' wall_s sum to "
             f"{runs.get('wall_s_sum', 0.0):.0f} s, i.e. about {runs.get('wall_s_sum', 0.0) / 2 / 60:.1f} min of a "
             "2-core DAG at one thread per run (an upper bound when the machine was shared; lm-eval jobs excluded).",
             ""]
    tuned = (s.get("C10_levels") or {}).get("tuned") or {}
    if tuned:
        lines += ["muP levels tuned by the base-width sweep (methods/lrm/mup_sweep.py; lowest final val loss of the "
                  "level's trials):", "", "| level | lr_mult | wd_mult | fwd_mult | trial val loss |",
                  "|---|---|---|---|---|"]
        for level, v in tuned.items():
            loss = v.get("final_val_loss")
            lines.append(f"| {level} | {_grouped(v.get('lr_mult'))} | {_grouped(v.get('wd_mult'))} | "
                         f"{_grouped(v.get('fwd_mult'))} | {'-' if loss is None else f'{loss:.4f}'} |")
        lines.append("")
    iv = lambda d: f"{fmt(d.get('estimate'))} [{fmt(d.get('ci_lo'))}, {fmt(d.get('ci_hi'))}] (n={d.get('n')})"  # noqa: E731
    c1, c2 = s["C1_C2"]["c1"], s["C1_C2"]["c2"]
    lines += ["| claim | number | value [95% bootstrap interval] |", "|---|---|---|",
              f"| C10 | val loss gain of LRM, AdamW (best LR each) | {iv(c10['gain_adamw'])} |",
              f"| C10 | val loss gain of LRM, Muon | {iv(c10['gain_muon'])} |",
              f"| C10 | Muon - AdamW | {fmt(c10['muon_vs_adamw'])} |",
              f"| C5 | row-norm spread ratio LRM/baseline, W_q | {fmt(c10['row_spread_ratio_attn_q'])} |",
              f"| C5 | row-norm spread ratio LRM/baseline, W_gate | {fmt(c10['row_spread_ratio_mlp_gate'])} |",
              f"| C1 | slope of log head RMS on log S, S = lr/wd (theory 0.5) | {iv(c1)} |",
              f"| C1 | same, ABM reference; head/ABM | {fmt(c1['abm_slope'])}; {fmt(c1['head_over_abm_slope'])} |",
              f"| C1-C3, C7 | steps x lr x wd (relaxation times) | C1 {fmt(c1['lr_wd_steps'])}, C3 "
              f"{fmt(s['C3']['lr_wd_steps'])}, C7 {fmt(s['C7']['lr_wd_steps'])} |",
              f"| C2 | FPN excess loss at extreme S over VPN's | {iv(c2)} |",
              f"| C2 | placebo: SPN over VPN | {iv(c2['placebo'])} |",
              f"| C3 | rise loss(S max) - loss(S=1): no multipliers; scalar multipliers | "
              f"{fmt(s['C3']['no_mult_rise'])}; {iv(s['C3'])} |",
              f"| C6 | no-WD minus WD \\|log10 Mq/Mk\\| | {iv(s['C6'])} |",
              f"| C7 | exponent a of the projector multiplier ~ d^-a | {iv(s['C7'])} |",
              f"| C7 | slopes vs width: What RMS, logit RMS | {fmt(s['C7']['slope_w_rms'])}, "
              f"{fmt(s['C7']['slope_logit_rms'])} |",
              f"| C8 | early clip factor include / exclude | {fmt(c8['early_clip_factor_include']['mean'])} / "
              f"{fmt(c8['early_clip_factor_exclude']['mean'])} |",
              f"| C8 | val loss include - exclude | {fmt(c8['loss_diff'])} |",
              f"| C9 | val loss head rows - none | {fmt(c9['loss_diff'])} |",
              f"| C4 | Spearman rho of the block-output RMS ratio with depth ({s['C4']['n_layers']} layers) | "
              f"{iv(s['C4'])} |"]
    for level, v in (s.get("C10_levels") or {}).get("levels", {}).items():
        lines.append(f"| C10 levels | {level}: val loss baseline / +LRM; LRM gain [95% CI] | {fmt(v['base']['mean'])}"
                     f" / {fmt(v['lrm']['mean'])}; {fmt(v['gain'])} [{fmt(v['ci_lo'])}, {fmt(v['ci_hi'])}] |")
    if s.get("C10_levels"):
        lv = s["C10_levels"]
        lines.append(f"| C10 levels | worst level's gain | {fmt(lv['worst_gain'])} [{fmt(lv['worst_ci_lo'])}, "
                     f"{fmt(lv['worst_ci_hi'])}] (n={lv['n']}) |")
        ov = lv.get("overhead") or {}
        lines.append(f"| C14 | NONE + LRM minus the FULL-tuned baseline; FULL minus NONE baseline | {iv(ov)}; "
                     f"{fmt(ov.get('tuning_gain'))} |")
    return "\n".join(lines) + "\n"


def grid_cli(description: str, argv: list[str] | None) -> tuple[dict, str, Path, Path, Path | None]:
    """The lrm analysis stages' shared command line: (grid config, its path(s), runs dir, output file, evidence
    store: where a run the runs dir lacks is read from). A tier's grid file includes the grid it extends."""
    from claimbench.tiers import load_grid

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--grid", required=True)
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--store", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return (load_grid(a.grid), a.grid, Path(a.runs_dir), Path(a.out),
            Path(a.store) if a.store else None)


def main(argv: list[str] | None = None) -> None:
    cfg, grid, runs_dir, out, store = grid_cli(__doc__.splitlines()[0], argv)
    sweep = load_sweep(cfg, grid)
    trials = [{**e, "study": "mup_sweep"} for e in trial_grid(sweep)] if sweep else []
    s = analyse(cfg["grid"] + trials, runs_dir, store)
    atomic_write_json(out, s)
    for name, content in claim_files(s).items():
        atomic_write_json(out.parent / name, content)
    atomic_write_text(out.with_suffix(".md"), summary_md(s))


if __name__ == "__main__":
    main()
