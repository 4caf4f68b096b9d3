"""The Opt-Laws study over a grid of runs: the three laws side by side on the claims' statistics.

Operational definitions (the suite's, since the paper's are not public; see docs/papers/optlaws.md):
- fitting window: logged points after the first 10% of steps (the published MPL curves likewise start
  after warmup); the laws describe the slow phase, not the first drop from ln(vocab);
- final loss: mean logged train loss over the last 5% of steps (actual), mean prediction there (predicted);
- seed noise sigma: the pooled seed standard deviation of the final loss over the repeated (family, peak LR)
  pairs (sqrt of the mean per-pair sample variance); two schedules whose final losses differ by at most 1 sigma
  are tied (C1/C2: "any schedule within 1 sigma of the best");
- held-out accuracy (C6): fit on constant, cosine and two-stage runs (as MPL fits on constant, cosine and a
  two-stage curve) at every peak LR, predict every other family;
- Top-2 (C1): a configuration is a peak LR; fit on the other peak LRs, hit if a schedule tied with the
  actual best is among the two predicted best;
- out-of-family (C2): leave one family out of the fit (5 settings), hit if the predicted best family at the
  middle peak LR is tied with the actual best;
- divergence (C3): leave-one-run-out threshold rule on each law's divergence score over all runs (probes
  included), F1 against status == diverged; baseline: peak LR above the median peak LR.
- scaling limit (C8): each law fitted on all peak LRs predicts the grid's constant-LR schedules; reproduced
  in the suite's sense if the prediction vs steps is monotone (non-increasing) and L(t) = L_inf + A t^-alpha fits
  it with R^2 >= 0.95, over the fitted range (10%..100% of the steps; also reported out to 10x the steps).
A law whose fit fails is reported as a failed fit for that statistic, never scored as a prediction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from claimbench.grid import expand
from claimbench.io import atomic_save_png, atomic_write_text
from methods.optlaws.base import LAWS, FitError, Law
from methods.optlaws.curves import Curve, read_run
from methods.optlaws.selection import ThresholdRule, f1

LAW_ORDER = ("optlaws", "multipower", "annealing")
FIT_FAMILIES = ("constant", "cosine", "two_stage")
OUT_OF_FAMILY = ("wsd_exp", "wsd", "linear", "two_stage", "inverse_sqrt")
SKIP_FRAC = 0.1


def window(curve: Curve, skip_frac: float = SKIP_FRAC) -> Curve:
    """The curve without its logged points in the first `skip_frac` of the planned steps (schedule kept whole)."""
    keep = curve.steps > skip_frac * len(curve.lrs)
    return Curve(curve.name, curve.lrs, curve.steps[keep], curve.loss[keep], curve.source, curve.meta)


@dataclass
class Run:
    curve: Curve
    family: str
    lr: float
    seed: int
    probe: bool
    status: str

    @property
    def final(self) -> float:
        return final_of(self.curve, self.curve.loss)


def final_of(curve: Curve, values: np.ndarray) -> float:
    keep = curve.steps > 0.95 * len(curve.lrs)
    return float(np.mean(values[keep])) if keep.any() else float(values[-1])


def load_runs(grid_path: Path, runs_dir: Path) -> list[Run]:
    runs = []
    for rid, spec in expand(yaml.safe_load(grid_path.read_text())["grid"]).items():
        kind, fam = spec.meta["group"].split(":", 1)
        sets = dict(s.split("=", 1) for s in spec.sets)
        res = runs_dir / rid / "result.json"
        status = json.loads(res.read_text())["status"] if res.is_file() else "missing"
        if status == "missing":
            continue
        runs.append(Run(window(read_run(runs_dir / rid)), fam, float(sets["train.lr"]), int(sets["seed"]),
                        kind == "optlaws-probe", status))
    return runs


def _fit(name: str, curves: list[Curve], seed: int) -> tuple[Law | None, str | None]:
    try:
        return LAWS[name].fit(curves, seed=seed), None
    except FitError as e:
        return None, str(e)


def _r2(pred: np.ndarray, act: np.ndarray) -> float:
    ss = float(np.sum((act - act.mean()) ** 2))
    return 1 - float(np.sum((act - pred) ** 2)) / ss if ss > 0 else float("nan")


def seed_noise(runs: list[Run]) -> dict:
    """Pooled seed SD (sigma) of the final loss over (family, peak LR) groups run with several seeds; tie = 1 sigma.

    Pooled as sqrt(sum of squared deviations / sum of (n_i - 1)); with no repeated group sigma is 0 (exact ties only).
    """
    by: dict[tuple[str, float], dict[int, float]] = {}
    for r in runs:
        if not r.probe and r.status == "ok":
            by.setdefault((r.family, r.lr), {})[r.seed] = r.final
    groups = {f"{fam}@{lr:g}": list(v.values()) for (fam, lr), v in by.items() if len(v) >= 2}
    dof = sum(len(v) - 1 for v in groups.values())
    ss = sum(float(np.sum((np.asarray(v) - np.mean(v)) ** 2)) for v in groups.values())
    sigma = math.sqrt(ss / dof) if dof else 0.0
    return {"pairs": len(groups), "groups": groups, "gaps": [float(max(v) - min(v)) for v in groups.values()],
            "dof": dof, "sigma": sigma, "tie": sigma, "tie_rule": "1 sigma (pooled seed SD of the final loss)"}


def held_out(law_name: str, base: list[Run], seed: int) -> dict:
    fit = [r.curve for r in base if r.family in FIT_FAMILIES]
    law, err = _fit(law_name, fit, seed)
    if law is None:
        return {"failed": err}
    rows = {}
    for r in base:
        if r.family in FIT_FAMILIES:
            continue
        p = law.predict(r.curve)
        fp, fa = final_of(r.curve, p), r.final
        rows[f"{r.family}@{r.lr:g}"] = {"family": r.family, "lr": r.lr, "final_pred": fp, "final_actual": fa,
                                        "rel_error": abs(fp - fa) / fa, "r2": _r2(p, r.curve.loss),
                                        "mae": float(np.mean(np.abs(p - r.curve.loss))), "curve_pred": p.tolist()}
    errs = [v["rel_error"] for v in rows.values()]
    return {"fit": sorted({f"{r.family}@{r.lr:g}" for r in base if r.family in FIT_FAMILIES}), "predictions": rows,
            "rel_error_mean": float(np.mean(errs)), "rel_error_worst": float(np.max(errs)),
            "rel_error_median": float(np.median(errs)), "r2_mean": float(np.mean([v["r2"] for v in rows.values()])),
            "params": law.params}


def _best_hit(pred: dict[str, float], actual: dict[str, float], tie: float, k: int) -> bool:
    best = min(actual.values())
    top = sorted(pred, key=pred.get)[:k]
    return any(actual[s] - best <= tie for s in top)


def top2(law_name: str, base: list[Run], tie: float, seed: int) -> dict:
    groups = {}
    for lr in sorted({r.lr for r in base}):
        inside = [r for r in base if r.lr == lr]
        law, err = _fit(law_name, [r.curve for r in base if r.lr != lr], seed)
        if law is None:
            groups[f"{lr:g}"] = {"failed": err}
            continue
        pred = {r.family: final_of(r.curve, law.predict(r.curve)) for r in inside}
        actual = {r.family: r.final for r in inside}
        groups[f"{lr:g}"] = {"hit": _best_hit(pred, actual, tie, 2), "predicted_top2": sorted(pred, key=pred.get)[:2],
                             "actual_best": min(actual, key=actual.get), "candidates": len(inside)}
    scored = [g for g in groups.values() if "hit" in g]
    hits = sum(g["hit"] for g in scored)
    k = max((g["candidates"] for g in scored), default=0)
    return {"groups": groups, "hits": hits, "n": len(scored), "hit_rate": hits / len(scored) if scored else None,
            "wilson_low": wilson_low(hits, len(scored)), "random_rate": 2 / k if k else None,
            "failed_fits": len(groups) - len(scored)}


def out_of_family(law_name: str, base: list[Run], tie: float, seed: int) -> dict:
    lrs = sorted({r.lr for r in base})
    ref = lrs[len(lrs) // 2]
    settings = {}
    for fam in OUT_OF_FAMILY:
        law, err = _fit(law_name, [r.curve for r in base if r.family != fam], seed)
        if law is None:
            settings[fam] = {"failed": err}
            continue
        inside = [r for r in base if r.lr == ref]
        pred = {r.family: final_of(r.curve, law.predict(r.curve)) for r in inside}
        actual = {r.family: r.final for r in inside}
        settings[fam] = {"hit": _best_hit(pred, actual, tie, 1), "predicted_best": min(pred, key=pred.get),
                         "actual_best": min(actual, key=actual.get)}
    scored = [s for s in settings.values() if "hit" in s]
    return {"reference_lr": ref, "settings": settings, "hits": sum(s["hit"] for s in scored), "n": len(scored),
            "failed_fits": len(settings) - len(scored)}


def divergence(law: Law | None, runs: list[Run]) -> dict:
    if law is None:
        return {"failed": "no fitted law"}
    obs = [r for r in runs if r.status in ("ok", "diverged") and r.seed == 0]
    y = np.array([r.status == "diverged" for r in obs])
    score = [law.divergence_score(r.curve) for r in obs]
    pred = np.array([ThresholdRule.fit(score[:i] + score[i + 1:], list(y[:i]) + list(y[i + 1:])).predict(score[i])
                     for i in range(len(obs))])
    lrs = np.array([r.lr for r in obs])
    base = lrs > np.median(lrs)
    return {"f1": f1(y, pred), "tp": int(np.sum(y & pred)), "fp": int(np.sum(~y & pred)),
            "fn": int(np.sum(y & ~pred)), "tn": int(np.sum(~y & ~pred)), "diverged": int(y.sum()),
            "stable": int((~y).sum()), "baseline_f1_peak_lr_above_median": f1(y, base),
            "threshold_all_runs": ThresholdRule.fit(score, list(y)).threshold}


def power_law_fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares fit of y = L_inf + A x^-alpha (scipy curve_fit, started from the best alpha of a grid on which
    (L_inf, A) are linear); returns the parameters and R^2."""
    from scipy.optimize import curve_fit

    def f(x, L, A, alpha):
        return L + A * x ** (-alpha)

    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 1e-18 * max(1.0, float(np.sum(y ** 2))):
        return {"failed": "the prediction is flat: no power law to fit", "r2": None}
    best = None
    for alpha in np.geomspace(0.01, 5.0, 60):
        X = np.column_stack([np.ones_like(x), x ** (-alpha)])
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        res = float(np.sum((X @ coef - y) ** 2))
        if best is None or res < best[0]:
            best = (res, np.array([coef[0], coef[1], alpha]))
    p = best[1]
    try:
        q, _ = curve_fit(f, x, y, p0=p, bounds=([-np.inf, -np.inf, 1e-4], [np.inf, np.inf, 10.0]), maxfev=5000)
        if float(np.sum((f(x, *q) - y) ** 2)) < best[0]:
            p = q
    except (RuntimeError, ValueError):  # keep the grid optimum: curve_fit only polishes it
        pass
    r2 = 1 - float(np.sum((f(x, *p) - y) ** 2)) / ss_tot
    return {"L_inf": float(p[0]), "A": float(p[1]), "alpha": float(p[2]), "r2": r2}


def scaling_limit(law: Law | None, runs: list[Run], extend: int = 10, points: int = 100) -> dict:
    """C8: the law's prediction on each constant-LR schedule of the grid, checked for monotonicity and a power law.

    r2 / monotone (the claim's numbers): worst case over the constant runs' peak LRs, over the fitted range
    (steps from SKIP_FRAC*T to T); r2_to_<extend>x / monotone_to_<extend>x: the same schedule held constant
    to extend*T steps (extrapolation, reported beside it).
    """
    if law is None:
        return {"failed": "no fitted law"}
    consts = sorted((r for r in runs if r.family == "constant" and not r.probe and r.status == "ok" and r.seed == 0),
                    key=lambda r: r.lr)
    if not consts:
        return {"failed": "no constant-LR run in the grid"}
    per = {}
    for r in consts:
        T = len(r.curve.lrs)
        row = {}
        for tag, upto in (("", T), (f"_to_{extend}x", extend * T)):
            lrs = np.concatenate([r.curve.lrs, np.full(upto - T, r.curve.lrs[-1])])
            steps = np.unique(np.geomspace(int(SKIP_FRAC * T) + 1, upto, points).astype(int))
            pred = law.predict(Curve(f"constant@{r.lr:g}", lrs, steps))
            fit = power_law_fit(steps / T, pred)
            row[f"monotone{tag}"] = bool(np.all(np.diff(pred) <= 1e-9 * float(np.max(np.abs(pred)))))
            row[f"r2{tag}"] = fit["r2"]
            row[f"power_law{tag}"] = fit
        per[f"{r.lr:g}"] = row
    out: dict = {"per_lr": per, "steps": [int(SKIP_FRAC * len(consts[0].curve.lrs)) + 1, len(consts[0].curve.lrs)]}
    for tag in ("", f"_to_{extend}x"):
        r2s = [v[f"r2{tag}"] for v in per.values()]
        out[f"r2{tag}"] = None if any(x is None for x in r2s) else float(min(r2s))
        out[f"monotone{tag}"] = all(v[f"monotone{tag}"] for v in per.values())
    return out


def wilson_low(k: int, n: int, z: float = 1.96) -> float | None:
    if n == 0:
        return None
    p = k / n
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def run_study(grid: Path, runs_dir: Path, out: Path, md: Path, figures: Path, seed: int = 0) -> dict:
    import torch

    torch.set_num_threads(1)
    runs = load_runs(grid, runs_dir)
    base = [r for r in runs if not r.probe and r.status == "ok" and r.seed == 0]
    noise = seed_noise(runs)
    tie = noise["tie"]
    result: dict = {"grid": str(grid), "runs": len(runs), "law_runs": len(base), "seed_noise": noise, "laws": {}}
    for name in LAW_ORDER:
        full, err = _fit(name, [r.curve for r in base], seed)
        result["laws"][name] = {
            "label": LAWS[name].label,
            "held_out": held_out(name, base, seed),
            "top2": top2(name, base, tie, seed),
            "out_of_family": out_of_family(name, base, tie, seed),
            "divergence": divergence(full, runs),
            "scaling_limit": scaling_limit(full, runs),
            "full_fit": {"failed": err} if full is None else {"params": full.params, "info": full.info},
        }
    result["actual_final"] = {f"{r.family}@{r.lr:g}/s{r.seed}": r.final for r in runs if r.status == "ok"}
    result["run_wall_s"] = {r.curve.name: float(r.curve.meta.get("wall_s") or 0.0) for r in runs}
    result["train_wall_s_sum"] = float(sum(result["run_wall_s"].values()))
    result["status"] = {f"{r.family}@{r.lr:g}/s{r.seed}{'/probe' if r.probe else ''}": r.status for r in runs}
    figs = plot(result, base, figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1, default=float) + "\n")
    from methods.optlaws.report import markdown

    md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md, markdown(result, figs, out, md))
    return result


def plot(result: dict, base: list[Run], figures: Path) -> list[Path]:
    """One figure per held-out schedule: actual curve and each law's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in base:
        key = f"{r.family}@{r.lr:g}"
        if r.family in FIT_FAMILIES:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ax.plot(r.curve.steps, r.curve.loss, color="black", lw=1, label="actual")
        for name in LAW_ORDER:
            ho = result["laws"][name]["held_out"]
            if "predictions" in ho and key in ho["predictions"]:
                ax.plot(r.curve.steps, ho["predictions"][key]["curve_pred"], lw=1.2, label=LAWS[name].label)
        ax.set(title=f"held out: {key}", xlabel="step", ylabel="train loss")
        lo = float(np.min(r.curve.loss))
        ax.set_ylim(lo - 0.1, lo + 1.5)
        ax.legend(fontsize=6)
        fig.tight_layout()
        paths.append(atomic_save_png(fig, figures / f"heldout_{r.family}_lr{r.lr:g}.png", dpi=90))
        plt.close(fig)
    return paths
