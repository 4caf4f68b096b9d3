"""Studies -> PNGs in `results/figures/claims/` (matplotlib, Agg): one per claim that has runs.

Sweep statistics (`best_of_sweep`, `optimum_shift`) get loss-vs-swept-value curves, one per arm
and scale; everything else gets training-loss curves per arm, the mean over seeds with a band from
the seeds' min to max (no figure above MAX_CURVES curves). Diverged seeds are drawn up to where
they stopped and marked with an x.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from claimbench.claims import Claim
from claimbench.evidence import metric_series, metric_value, read_run
from claimbench.io import atomic_save_png

MAX_CURVES = 10  # more curves than matplotlib's colour cycle is unreadable: such a claim's page links its
# analysis stage's own figure (e.g. flerm's loss-vs-LR per scale) instead of a generic one


def loss_curves(ax, study: dict, key: str = "train_loss") -> bool:
    drew = False
    groups = _groups(study)
    if len(groups) > MAX_CURVES:
        return False
    for i, (label, runs) in enumerate(groups.items()):
        color = f"C{i % 10}"
        curves = []
        for r in runs:
            ev = read_run(Path(r["run_dir"]))
            if not ev.usable:
                continue
            steps, vals = metric_series(ev, key)
            if steps:
                curves.append((np.array(steps), np.array(vals)))
                if ev.status == "diverged":
                    ax.plot(steps[-1], vals[-1], "x", color=color, ms=8)
        if not curves:
            continue
        grid = np.unique(np.concatenate([s for s, _ in curves]))
        stacked = np.full((len(curves), len(grid)), np.nan)
        for j, (s, v) in enumerate(curves):
            stacked[j, np.searchsorted(grid, s)] = v
        with np.errstate(all="ignore"):
            mean = np.nanmean(stacked, axis=0)
        ax.plot(grid, mean, color=color, label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(grid, np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0), color=color, alpha=0.2)
        drew = True
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    return drew


def _groups(study: dict) -> dict[str, list[dict]]:
    """Runs per curve: one per arm, split by the arm's swept values (seeds pooled into the band)."""
    out: dict[str, list[dict]] = {}
    for arm, runs in study["runs"].items():
        varying = sorted({k for r in runs for k, v in r.get("sets", {}).items() if k != "seed"
                          and len({str(x.get("sets", {}).get(k)) for x in runs}) > 1})
        for r in runs:
            tag = ", ".join(f"{k.rsplit('.', 1)[-1]}={r['sets'].get(k)}" for k in varying)
            out.setdefault(f"{arm} {tag}".strip(), []).append(r)
    return out


def sweep_curves(ax, study: dict, claim: Claim) -> bool:
    stat = claim.statistic
    over, across = stat["over"], stat.get("across")
    drew = False
    for i, (arm, runs) in enumerate(study["runs"].items()):
        groups: dict = {}
        for r in runs:
            ev = read_run(Path(r["run_dir"]))
            if not ev.usable:
                continue
            ev.sets = r.get("sets", {})
            y = np.inf if ev.status == "diverged" else metric_value(ev, stat["metric"])
            scale = ev.sets.get(across) if across else None
            groups.setdefault(scale, {}).setdefault(float(ev.sets[over]), []).append(y)
        for j, (scale, pts) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
            xs = sorted(pts)
            ys = np.array([np.mean(pts[x]) for x in xs], float)
            ys[~np.isfinite(ys)] = np.nan
            label = arm + (f" {across}={scale}" if across else "")
            ax.plot(xs, ys, "o-", color=f"C{i}", alpha=0.4 + 0.6 * (j + 1) / len(groups), label=label)
            drew = True
    ax.set_xscale("log", base=2)
    ax.set_xlabel(over)
    ax.set_ylabel(stat["metric"])
    return drew


def claim_figure(study: dict, claim: Claim, out_dir: Path) -> Path | None:
    """Draw one claim's figure; None when it has no usable run yet."""
    if not any(r["status"] in ("ok", "diverged") for rs in study["runs"].values() for r in rs):
        return None
    fig = Figure(figsize=(6, 4), dpi=90)  # no pyplot: no global state, nothing to close
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.13, right=0.97, top=0.91, bottom=0.13)  # fixed margins: tight_layout is slow
    if claim.statistic["kind"] in ("best_of_sweep", "optimum_shift"):
        drew = sweep_curves(ax, study, claim)
    else:
        drew = loss_curves(ax, study)
    if not drew:
        return None
    ax.set_title(f"{claim.id}: {study['verdict']}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{claim.id}.png"
    return atomic_save_png(fig, path, dpi=90)


def figures_dir(results_dir: str | Path) -> Path:
    """Claim figures live in their own folder (a Snakemake directory output; other stages own siblings)."""
    return Path(results_dir) / "figures" / "claims"


def write_figures(studies: list[dict], claims: list[Claim], results_dir: str | Path) -> list[Path]:
    by_id = {c.id: c for c in claims}
    out = figures_dir(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [claim_figure(s, by_id[s["claim"]], out) for s in studies]
    for s, p in zip(studies, paths, strict=True):  # a claim that has no figure now keeps no stale one
        if p is None:
            (out / f"{s['claim']}.png").unlink(missing_ok=True)
    return [p for p in paths if p is not None]
