"""Summarise the JREG runs of a grid: final jump profiles, the jump over training, per-arm statistics.

Reads each run through `claimbench.evidence` (the runs directory, else the evidence store: its config.yaml,
result.json and metrics.jsonl) and the profile JSON written by `claimbench jump` (held-out windows, pre final
norm), and writes `summary.json`, `jump.md` (a table) and two figures. Every per-arm and paired number carries
its estimate, a bootstrap-over-seeds interval and n; a diverged run stays in n as a miss (infinite loss;
an undefined jump or distance, so that arm's jump statistic has no interval). The claims read the runs
themselves (benchmarks/claims/jreg.yaml); CLAIM_STATISTICS says which of these numbers mirrors each.

    python -m methods.jreg.analysis --runs-dir runs/smoke --store results/evidence/smoke --runs <run_id> ... \
        --profiles results/jreg/profiles/<run_id>.json ... --out results/jreg
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from claimbench.config import ConfigError
from claimbench.evidence import RunEvidence
from claimbench.io import atomic_save_png, atomic_write_json, atomic_write_text
from methods.jreg.metric import DEFAULT_JUMP_FORM, JUMP_FORM_STATUS, jump_strength
from methods.jreg.runs import load_runs, run_config, seed_interval

CLAIM_STATISTICS = {
    "jreg.c1_jump_shape": "arms.<baseline>.jump_train: J (metrics jreg/jump, last log step); interval test, band "
                          "[1.5, inf). arms.<baseline>.jump is the held-out profile's J beside it",
    "jreg.c3_amplification": "arms.<baseline>.growth: J over training per seed (the claim: Spearman rho vs step, "
                             "interval test, band [0.5, inf))",
    "jreg.c4_reduces_jump": "paired.<last_k arm>.jump_train: J(jreg) - J(baseline) per seed; directional test, "
                            "paper effect 0.5; premise: baseline J >= 1.5 in every seed",
    "jreg.c5_moves_earlier": "paired.<final-only arm>.d_prev_train: d_{L-1} difference; directional, paper effect 0.05",
    "jreg.c6_val_loss": "paired.<arm>.final_val_loss: non-inferiority, margin 0.02 nats",
    "jreg.c8_middle_layers": "paired.<arm>.early_exit_ce: directional, paper effect 0.1 nats",
}

# per key: what a diverged run counts as (a miss): the worst loss; a jump or distance has no worst value, so it is
# undefined and the arm's number for it has no interval
MISS = {"final_val_loss": math.inf, "early_exit_ce": math.inf}
KEYS = ("jump", "jump_train", "jump_k2", "d_last", "d_prev", "d_prev_train", "final_val_loss", "early_exit_ce")


def arm_label(cfg: dict) -> str:
    """A readable arm name from a run's methods (jreg with lam=0 is the baseline that logs the profile)."""
    parts = []
    for m in cfg.get("methods", []):
        o = m.get("options", {})
        if m["name"] == "jreg":
            if o.get("lam", 0.1) == 0:
                parts.append("baseline (jreg probe, lam=0)")
                continue
            w = o.get("weighting", "final")
            w = f"last_k(k={o.get('k', 2)})" if w == "last_k" else w
            parts.append(f"jreg {w} lam={o.get('lam', 0.1)}" + (" stop_grad=input" if o.get("stop_grad") == "input"
                                                                 else ""))
        else:
            parts.append(m["name"])
    return " + ".join(parts) or "baseline (no method)"


def setting_label(cfg: dict) -> str:
    """Workload, size, and the model/steps overrides that distinguish settings (size presets are implied)."""
    m = cfg.get("model", {})
    parts = [f"{cfg['workload']}-{cfg['size']}", m.get("arch", "")]
    parts += [f"{k}={m[key]}" for k, key in (("L", "n_layer"), ("d", "n_embd")) if key in m]
    return " ".join(p for p in parts + [f"steps={cfg['train']['steps']}"] if p)


def growth(series: list[tuple[int, float]], total_steps: int) -> dict:
    """Is J rising at the end of training? Last 4 logged points rise with at most one dip, and J_end > J@25%."""
    pts = [(s, j) for s, j in series if j is not None and math.isfinite(j)]
    if len(pts) < 4:
        return {"rising": None, "j_quarter": None, "j_end": None}
    last4 = [j for _, j in pts[-4:]]
    dips = sum(b < a for a, b in zip(last4, last4[1:], strict=False))
    quarter = min(pts, key=lambda p: abs(p[0] - total_steps / 4))[1]
    return {"rising": dips <= 1 and last4[-1] > last4[0] and pts[-1][1] > quarter, "j_quarter": quarter,
            "j_end": pts[-1][1], "dips_last4": dips}


def load_run(ev: RunEvidence, profile: Path | None) -> dict:
    """One run's numbers for the summary (a diverged run: its misses, see MISS)."""
    cfg = run_config(ev)
    rows = ev.metrics()
    series = [(r["step"], r.get("jreg/jump")) for r in rows if "jreg/jump" in r]
    dists = [(r["step"], [r[k] for k in sorted((k for k in r if k.startswith("jreg/dist/")),
                                               key=lambda k: int(k.rsplit("/", 1)[1]))]) for r in rows
             if "jreg/dist/1" in r]
    prof = json.loads(profile.read_text()) if profile and profile.is_file() else None
    d = prof["distances"] if prof else None
    last_dists = dists[-1][1] if dists else None

    def last(key):
        return next((r[key] for r in reversed(rows) if r.get(key) is not None), None)

    out = {"run_id": ev.run_id, "arm": arm_label(cfg), "setting": setting_label(cfg), "seed": cfg["seed"],
           "status": ev.status, "final_val_loss": ev.result.get("final_val_loss"), "distances": d,
           "jump": prof["jump"] if prof else None, "jump_train": last("jreg/jump"),
           "jump_k2": jump_strength(d, DEFAULT_JUMP_FORM, 2) if d and len(d) >= 2 else None,
           "d_last": d[-1] if d else None, "d_prev": d[-2] if d and len(d) >= 2 else None,
           "d_prev_train": last_dists[-2] if last_dists and len(last_dists) >= 2 else None,
           "final_is_max": (d[-1] == max(d[1:])) if d and len(d) >= 2 else None,
           "early_exit_ce": last("jreg/early_exit_ce"),
           "train_series": series, "train_dists": dists, "growth": growth(series, cfg["train"]["steps"])}
    if ev.status == "diverged":
        out.update({k: MISS.get(k, math.nan) for k in KEYS})
    return out


def _stats(values: list[float | None]) -> dict:
    """estimate, bootstrap-over-seeds interval and n (every run counted: a missing value is NaN, never dropped)."""
    return {**seed_interval([math.nan if x is None else x for x in values]),
            "values": [x for x in values if x is not None]}


def summarise(runs: list[dict]) -> dict:
    out: dict = {"jump_form": DEFAULT_JUMP_FORM, "jump_form_status": JUMP_FORM_STATUS,
                 "claim_statistics": CLAIM_STATISTICS, "settings": {}}
    by_setting: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_setting[r["setting"]][r["arm"]].append(r)
    for setting, arms in by_setting.items():
        s: dict = {"arms": {}, "paired": {}}
        for arm, rs in arms.items():
            s["arms"][arm] = {key: _stats([r[key] for r in rs]) for key in KEYS}
            s["arms"][arm]["seeds"] = [r["seed"] for r in rs]
            s["arms"][arm]["runs"] = [r["run_id"] for r in rs]
            s["arms"][arm]["n_diverged"] = sum(r["status"] == "diverged" for r in rs)
            s["arms"][arm]["final_is_max"] = [r["final_is_max"] for r in rs]
            s["arms"][arm]["growth"] = [r["growth"] for r in rs]
            s["arms"][arm]["mean_distances"] = ([statistics.fmean(x) for x in zip(*(r["distances"] for r in rs),
                                                                                     strict=True)]
                                                if all(r["distances"] for r in rs) else None)
        base = next((a for a in arms if a.startswith("baseline")), None)
        if base:
            by_seed = {r["seed"]: r for r in arms[base]}
            for arm, rs in arms.items():
                if arm == base:
                    continue
                s["paired"][arm] = {"seeds": sorted(r["seed"] for r in rs if r["seed"] in by_seed)}
                for key in KEYS:
                    diffs = [_minus(r[key], by_seed[r["seed"]][key]) for r in rs if r["seed"] in by_seed]
                    s["paired"][arm][key] = _stats(diffs)
        out["settings"][setting] = s
    out["runs"] = [{k: v for k, v in r.items() if k not in ("train_dists",)} for r in runs]
    return out


def _minus(a: float | None, b: float | None) -> float:
    """a - b; a miss on either side is no number (NaN), or the miss itself when only one side is infinite."""
    if a is None or b is None:
        return math.nan
    if math.isinf(a) and math.isinf(b):
        return math.nan
    return a - b


def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _ci(st: dict, nd: int = 3) -> str:
    return f"{_fmt(st['estimate'], nd)} [{_fmt(st['ci_lo'], nd)}, {_fmt(st['ci_hi'], nd)}]"


def markdown(summary: dict) -> str:
    lines = ["# JREG: jump profiles of our runs\n",
             f"Jump strength J = `{summary['jump_form']}` form, k=1 (**{summary['jump_form_status']}**: the paper's "
             f"formula is not public; see methods/jreg/metric.py). Profiles are measured before the final norm on "
             f"held-out validation windows; the over-training curve on each log step's training batch.\n"]
    for setting, s in summary["settings"].items():
        lines += [f"## {setting}\n", "Mean over seeds [95% bootstrap interval over seeds].\n",
                  "| arm | seeds | diverged | J held-out | J train (last log) | J, k=2 | d_{L-1} | d_L "
                  "| final val loss | J rising at end |", "|---|---|---|---|---|---|---|---|---|---|"]
        for arm, a in s["arms"].items():
            rising = [g["rising"] for g in a["growth"]]
            lines.append(f"| {arm} | {a['seeds']} | {a['n_diverged']} | {_ci(a['jump'])} | {_ci(a['jump_train'])} | "
                         f"{_ci(a['jump_k2'])} | {_ci(a['d_prev'])} | {_ci(a['d_last'])} | "
                         f"{_ci(a['final_val_loss'], 4)} | {sum(bool(r) for r in rising)}/{len(rising)} |")
        if s["paired"]:
            lines += ["", "Paired differences vs the baseline (same seeds): mean [95% bootstrap interval] (n)", "",
                      "| arm | ΔJ | ΔJ k=2 | Δd_{L-1} | Δd_L | Δ val loss |", "|---|---|---|---|---|---|"]
            for arm, p in s["paired"].items():
                cells = [f"{_ci(p[k], 4)} ({p[k]['n']})" for k in ("jump", "jump_k2", "d_prev", "d_last",
                                                                     "final_val_loss")]
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## What each claim reads (summary.json)\n"] + [f"- **{k}**: {v}" for k, v in
                                                               summary["claim_statistics"].items()]
    lines += ["", "Figures: `jump_over_training.png`, `profiles.png`. Early-exit CE (C8): summary.json.", ""]
    return "\n".join(lines)


def figures(summary: dict, runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(summary["settings"])
    colors = {}
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for r in (r for r in runs if r["setting"] == setting and r["train_series"]):
            c = colors.setdefault(r["arm"], f"C{len(colors)}")
            steps, js = zip(*[(s, j) for s, j in r["train_series"] if j is not None], strict=True)
            ax.plot(steps, js, color=c, alpha=0.8, label=f"{r['arm']}" if r["seed"] == min(
                x["seed"] for x in runs if x["arm"] == r["arm"] and x["setting"] == setting) else None)
        ax.axhline(1.0, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"jump J ({summary['jump_form']}, {summary['jump_form_status']})")
        ax.set_title(setting, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_png(fig, out / "jump_over_training.png")
    plt.close(fig)
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for arm, a in summary["settings"][setting]["arms"].items():
            for r in (r for r in runs if r["setting"] == setting and r["arm"] == arm and r["distances"]):
                ax.plot(range(1, len(r["distances"]) + 1), r["distances"], "o-", color=colors.get(arm, "k"),
                        alpha=0.6, ms=3, label=arm if r["seed"] == a["seeds"][0] else None)
        ax.set_xlabel("layer l")
        ax.set_ylabel("angular distance d_l (held-out, pre final norm)")
        ax.set_title(setting, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_png(fig, out / "profiles.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs-dir", required=True, help="where runs are trained")
    p.add_argument("--store", default=None, help="the evidence store, read where the runs directory lacks a run")
    p.add_argument("--runs", nargs="+", required=True, help="run ids")
    p.add_argument("--profiles", nargs="*", default=[], help="profile JSONs named <run_id>.json")
    p.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)
    profiles = {Path(x).stem: Path(x) for x in args.profiles}
    try:
        runs = [load_run(ev, profiles.get(ev.run_id)) for ev in load_runs(args.runs, args.runs_dir, args.store)]
    except ConfigError as e:
        print(f"methods.jreg.analysis: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "jump.md", markdown(summary))
    figures(summary, runs, out)
    print(f"{out}: summary.json, jump.md, jump_over_training.png, profiles.png ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
