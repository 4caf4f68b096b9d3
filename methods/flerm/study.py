"""The FLeRM transfer study: optimal-LR shift per scale, SP vs FLeRM, tables, figures and verdicts.

Reads the paper's grid file (config/papers/flerm.<profile>.yaml): entries `flerm:<group>:base` (the base model
at every LR, the record runs) and `flerm:<study>:<arm>` (arm `sp` or `fl`) sweep `train.lr` and one scale key;
its `studies:` section gives each study's base group, `across` key (a config key, or `<method>.<option>` such as
`lora.rank`), scale `values` (first = base) with their `scales` labels, and kind (`width`, `depth` or `rank`).
Both arms share the base runs as their x1 point, so every shift is measured against the base model's optimum.
Metric: final train loss (the paper's), a diverged run counts as infinite loss. Per seed, a parabola through the 3
points around the grid optimum of log-loss vs log2 LR gives eta*; the shift s(m) = log2 eta*(m) / eta*(base) of the
same seed is averaged over seeds.

Rule (ours, docs/papers/flerm.md): width studies are `reproduced` when |s_FL| <= 1 at every scale and s_SP <= -2 at the
largest multiplier; depth and LoRA-rank studies when |s_FL| <= 1 at every scale (SP already transfers in some
setups, and no SP rank shift is stated by the paper);
`partial` when max |s_FL| <= 2 or max |s_FL| < |s_SP| / 2 at the largest scale; else `not_reproduced`.
A study with missing runs is `not_run`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from claimbench import stats
from claimbench.config import parse_value
from claimbench.grid import expand
from claimbench.io import atomic_save_png


def _sets(spec) -> dict:
    return {k: parse_value(v) for k, v in (s.split("=", 1) for s in spec.sets)}


def scale_value(sets: dict, across: str):
    """The run's value of a study's scale key: a set key (`model`), or `<method>.<option>` of one of its methods
    (`lora.rank`), as LoRA's rank lives in the method list, not in a config key."""
    if across in sets:
        return sets[across]
    name, _, opt = across.partition(".")
    for m in sets.get("methods") or []:
        if isinstance(m, dict) and m.get("name") == name and opt in m:
            return m[opt]
    raise ValueError(f"flerm study: runs have no `{across}` (neither a set key nor a method option)")


def _loss(run_dir: Path) -> float | None:
    """Final train loss; inf for a diverged run; None when missing or failed."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    if res.get("status") == "diverged":
        return math.inf
    v = res.get("final_train_loss") if res.get("status") == "ok" else None
    return float(v) if v is not None and math.isfinite(v) else (math.inf if v is not None else None)


def collect(grid: list[dict], studies: dict, runs_dir: Path) -> tuple[dict, list[str]]:
    """study -> arm -> scale index -> seed -> {lr: loss} (index 0: the base group's runs, shared by the arms);
    and the run ids that are missing."""
    bases: dict = {}
    arms: dict = {}
    missing = []
    for entry in grid:
        parts = str(entry.get("name", "")).split(":")
        if len(parts) != 3 or parts[0] != "flerm":
            continue
        for rid, spec in expand([entry]).items():
            s = _sets(spec)
            loss = _loss(runs_dir / rid)
            if loss is None:
                missing.append(f"{entry['name']} {rid}")
                continue
            if parts[2] == "base":
                bases.setdefault(parts[1], {}).setdefault(s["seed"], {})[float(s["train.lr"])] = loss
            elif parts[1] in studies:
                st = studies[parts[1]]
                idx = st["values"].index(scale_value(s, st["across"]))
                (arms.setdefault(parts[1], {}).setdefault(parts[2], {}).setdefault(idx, {})
                 .setdefault(s["seed"], {})[float(s["train.lr"])]) = loss
    data = {}
    for name, st in studies.items():
        data[name] = {arm: {0: bases.get(st["base"], {}), **per} for arm, per in arms.get(name, {}).items()}
    return data, missing


def optimum(curve: dict[float, float]) -> dict:
    xs = sorted(curve)
    ys = [math.log(curve[x]) if curve[x] > 0 and math.isfinite(curve[x]) else math.inf for x in xs]
    return stats.optimum_log2(xs, ys, "lower", refine=True)


def _mean_curve(per_seed: dict[int, dict[float, float]]) -> dict[float, float]:
    """The seed-mean loss per LR over the LRs every seed has."""
    lrs = sorted(set.intersection(*(set(c) for c in per_seed.values())))
    return {lr: float(np.mean([c[lr] for c in per_seed.values()])) for lr in lrs}


def analyse_arm(per_scale: dict[int, dict[int, dict[float, float]]], n_scales: int) -> dict:
    """Per scale: eta* per seed, its shift against the base's eta* of the same seed (or, for a seed the base runs
    lack, e.g. the paper's transfer seed 8 against base seeds 0-7, the base's seed-mean curve), best loss."""
    seeds = sorted(set.intersection(*(set(per_scale.get(i, {})) for i in range(1, n_scales))) if n_scales > 1
                   else set(per_scale.get(0, {})))
    base_mean = optimum(_mean_curve(per_scale[0]))
    base = [optimum(per_scale[0][sd]) if sd in per_scale[0] else base_mean for sd in seeds]
    shifts, log2_opt, best, edge = [], [], [], False
    for i in range(n_scales):
        rows = {sd: per_scale[i][sd] for sd in (seeds if i else sorted(per_scale[0]))}
        opts = [optimum(per_scale[i][sd]) if i else b for sd, b in zip(seeds, base, strict=True)]
        edge = edge or any(o["at_edge"] for o in opts)
        sh = [o["log2_opt"] - b["log2_opt"] for o, b in zip(opts, base, strict=True)]
        shifts.append({"mean": float(np.mean(sh)), "sd": float(np.std(sh, ddof=1)) if len(sh) > 1 else 0.0,
                       "per_seed": sh})
        log2_opt.append(float(np.mean([o["log2_opt"] for o in opts])))
        best.append(min(_mean_curve(rows).values()))  # best loss of the seed-mean curve
    return {"seeds": seeds, "shift": shifts, "log2_opt": log2_opt, "best_loss": best, "at_edge": edge}


def verdict(kind: str, sp: dict | None, fl: dict) -> tuple[str, str]:
    fl_max = max(abs(s["mean"]) for s in fl["shift"][1:]) if len(fl["shift"]) > 1 else 0.0
    sp_last = sp["shift"][-1]["mean"] if sp else math.nan
    cond_sp = kind != "width" or (sp is not None and sp_last <= -2)
    why = f"max |s_FL| = {fl_max:.2f}, s_SP(largest) = {sp_last:.2f}"
    if fl_max <= 1 and cond_sp:
        return "reproduced", why
    if fl_max <= 2 or (sp is not None and fl_max < abs(sp_last) / 2):
        return "partial", why
    return "not_reproduced", why


def run(grid_file: Path, runs_dir: Path) -> dict:
    cfg = yaml.safe_load(grid_file.read_text())
    studies = cfg.get("studies", {})
    data, missing = collect(cfg["grid"], studies, runs_dir)
    out: dict = {"grid": str(grid_file), "metric": "final_train_loss", "studies": {}}
    for name, st in studies.items():
        labels = st["scales"]
        arms = data.get(name, {})
        res: dict = {"kind": st.get("kind", "width"), "across": st["across"], "scales": labels, "arms": {},
                     "base_group": st["base"],
                     "values": [v if isinstance(v, int | float | str) else None for v in st["values"]]}
        complete = all(len(arms.get(a, {})) == len(labels) and all(arms[a].values()) for a in ("sp", "fl"))
        if not complete or any(m.startswith((f"flerm:{name}:", f"flerm:{st['base']}:base")) for m in missing):
            res.update(verdict="not_run", why="runs missing")
        else:
            for arm, per_scale in arms.items():
                res["arms"][arm] = analyse_arm(per_scale, len(labels))
            res["verdict"], res["why"] = verdict(res["kind"], res["arms"].get("sp"), res["arms"]["fl"])
            # one number for a claims file's from_file statistic: 1 reproduced, 0.5 partial, 0 not reproduced
            res["score"] = {"reproduced": 1.0, "partial": 0.5}.get(res["verdict"], 0.0)
            res["fl_max_abs_shift"] = max((abs(s["mean"]) for s in res["arms"]["fl"]["shift"]), default=0.0)
            res["sp_shift_largest"] = res["arms"]["sp"]["shift"][-1]["mean"]
            res["fl_shift_largest"] = res["arms"]["fl"]["shift"][-1]["mean"]
            res["best_loss_fl_minus_sp"] = [f - s for f, s in zip(res["arms"]["fl"]["best_loss"],
                                                                  res["arms"]["sp"]["best_loss"], strict=True)]
        out["studies"][name] = res
    out["missing"] = missing
    out["curves"] = {s: {a: {str(i): {str(sd): c for sd, c in v.items()} for i, v in ps.items()}
                         for a, ps in arms.items()} for s, arms in data.items()}
    return out


def fslr_markdown(fs: dict) -> str:
    """Claim 13's table: per base model, the ratios and the per-tensor FSLRs (per unit LR) at the first record."""
    lines = ["## Function-space LRs of Adam per tensor (claim 13)", "",
             "Per unit LR, at the first record step (after the 41-pass warm-up), base LR closest to the optimum, "
             "averaged over the base seeds. Paper: ResMLP input 2.3e3 vs hidden 64-92 (ratio ~30); PostNorm "
             "transformer V/O 65-96 vs Q/K 7-9 (ratio ~10).", ""]
    for group, row in fs.get("groups", {}).items():
        ratios = ", ".join(f"{k} = {row[k]:.3g}" for k in ("input_over_hidden", "vo_over_qk") if k in row)
        lines += [f"**{group}** (lr {row['lr']:.4g}, step {row['step']}): {ratios or 'no ratio for this model'}", "",
                  "| tensor | FSLR per unit LR |", "|---|---|"]
        lines += [f"| {n} | {v:.4g} |" for n, v in sorted(row["fslr"].items())] + [""]
    return "\n".join(lines) + "\n"


def markdown(res: dict, notes: str, fig_rel: str = "figures/flerm") -> str:
    lines = ["# Function-Space Learning Rates (FLeRM): LR transfer", "",
             "Generated by `python -m methods.flerm.study` from the runs of " f"`{res['grid']}`.", "", notes.strip(),
             "", "Shift = log2(eta*(scale) / eta*(base)), parabola-refined on log train loss, mean (sd) over seeds. "
             "Rule: |s_FL| <= 1 at every scale (and s_SP <= -2 at the largest width) -> reproduced; "
             "max |s_FL| <= 2 or < |s_SP|/2 -> partial.", ""]
    for name, st in res["studies"].items():
        lines += [f"## {name} ({st['kind']}, across `{st['across']}`): **{st['verdict']}**", "", st.get("why", ""), ""]
        if st["verdict"] == "not_run":
            continue
        sp, fl = st["arms"]["sp"], st["arms"]["fl"]
        lines += ["| scale | SP log2 eta* | SP shift | FL log2 eta* | FL shift | best loss SP | best loss FL "
                  "| FL - SP |", "|---|---|---|---|---|---|---|---|"]
        for i, lab in enumerate(st["scales"]):
            val = (st.get("values") or [None] * len(st["scales"]))[i]
            lab = f"{lab} ({st['across']} {val})" if val is not None else lab
            lines.append(f"| x{lab} | {sp['log2_opt'][i]:.2f} "
                         f"| {sp['shift'][i]['mean']:+.2f} ({sp['shift'][i]['sd']:.2f}) | {fl['log2_opt'][i]:.2f} "
                         f"| {fl['shift'][i]['mean']:+.2f} ({fl['shift'][i]['sd']:.2f}) "
                         f"| {sp['best_loss'][i]:.4f} | {fl['best_loss'][i]:.4f} "
                         f"| {st['best_loss_fl_minus_sp'][i]:+.4f} |")
        if sp["at_edge"] or fl["at_edge"]:
            lines.append("\nAn optimum sits at an edge of the LR grid: that shift is a bound, not a value.")
        lines += ["", f"![{name}]({fig_rel}/{name}.png)", ""]
    if res["missing"]:
        lines += [f"Missing runs: {len(res['missing'])} (e.g. {', '.join(res['missing'][:3])})", ""]
    return "\n".join(lines) + "\n"


def figures(res: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, arms in res["curves"].items():
        st = res["studies"][name]
        if not arms:
            continue
        fig, axes = plt.subplots(1, len(arms), figsize=(5 * len(arms), 3.6), sharey=True, squeeze=False)
        for ax, (arm, per_scale) in zip(axes[0], sorted(arms.items(), key=lambda a: a[0] != "sp"), strict=True):
            for i, per_seed in sorted(per_scale.items(), key=lambda kv: int(kv[0])):
                if not per_seed or not all(per_seed.values()):
                    continue
                lrs = sorted(set.intersection(*(set(map(float, c)) for c in per_seed.values())))
                ys = [np.mean([per_seed[sd][lr] if lr in per_seed[sd] else per_seed[sd][str(lr)]
                               for sd in per_seed]) for lr in lrs]
                ys = [y if math.isfinite(y) else np.nan for y in ys]
                ax.plot(lrs, ys, marker="o", label=f"x{st['scales'][int(i)]}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("base learning rate")
            ax.set_title(f"{name}: {'FLeRM' if arm == 'fl' else 'standard (SP)' if arm == 'sp' else arm}")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("final train loss")
        fig.tight_layout()
        atomic_save_png(fig, out_dir / f"{name}.png", dpi=110)
        plt.close(fig)


def fslr_figures(grid: list[dict], res: dict, out_dir: Path) -> list[str]:
    """The analysis figure: per-tensor function-space LR (recorded per-unit value x LR) over training, for Adam on
    each base model, at the base LR closest to the base's optimum (seed-averaged records)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for entry in grid:
        parts = str(entry.get("name", "")).split(":")
        if len(parts) != 3 or parts[2] != "base":
            continue
        lr, path = _base_record(entry, res)
        if not path.is_file():
            continue
        rec = json.loads(path.read_text())
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, vals in sorted(rec["tensors"].items()):
            ax.plot(rec["steps"], [v * rec["lr"] for v in vals], marker=".", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("function-space LR (RMS output change)")
        ax.set_title(f"{parts[1]}: Adam at lr {lr:.3g}, seeds {rec['seeds']}")
        ax.legend(fontsize=5, ncol=2)
        fig.tight_layout()
        atomic_save_png(fig, out_dir / f"fslr_{parts[1]}.png", dpi=110)
        plt.close(fig)
        made.append(f"fslr_{parts[1]}")
    return made


def _base_record(entry: dict, res: dict) -> tuple[float, Path] | None:
    """(lr, record path) of a base group at the base LR closest to its SP optimum (the grid middle if unknown)."""
    from methods.flerm.records import record_path

    group = str(entry.get("name", "")).split(":")[1]
    tmpl = next(m["record"] for m in entry["methods"][0] if isinstance(m, dict) and m.get("record"))
    lrs = sorted(float(x) for x in entry["sweep"]["train.lr"])
    opts = [a["arms"]["sp"]["log2_opt"][0] for a in res["studies"].values()
            if a.get("arms") and a.get("base_group") == group]
    lr = min(lrs, key=lambda x: abs(math.log2(x) - opts[0])) if opts else lrs[len(lrs) // 2]
    return lr, Path(record_path(tmpl, lr))


def fslr_analysis(grid: list[dict], res: dict) -> dict:
    """Claim 13 (flerm.c13_fslr_analysis): Adam's per-tensor FSLRs at the first record step of each base model, at the
    base LR closest to its optimum. ResMLP: input weight over the median hidden weight (paper ~2.3e3 / 64-92);
    transformer: mean V/O weights over mean Q/K weights (paper 65-96 vs 7-9). Per unit LR, seed-averaged records."""
    out: dict = {"groups": {}}
    for entry in grid:
        parts = str(entry.get("name", "")).split(":")
        if len(parts) != 3 or parts[2] != "base" or any(m.get("name") == "lora" for m in entry["methods"][0]):
            continue
        lr, path = _base_record(entry, res)
        if not path.is_file():
            continue
        rec = json.loads(path.read_text())
        f0 = {n: v[0] for n, v in rec["tensors"].items()}
        row: dict = {"lr": lr, "record": str(path), "step": rec["steps"][0], "fslr": f0}

        def mean(pat: str, f0: dict = f0) -> float | None:
            vals = [v for n, v in f0.items() if n.endswith(".weight") and any(f".{p}." in n for p in pat.split())]
            return float(np.mean(vals)) if vals else None

        hidden = [v for n, v in f0.items() if n.startswith("blocks.") and n.endswith(".weight")]
        if "inp.weight" in f0 and hidden:
            row.update(input_fslr=f0["inp.weight"], hidden_median_fslr=float(np.median(hidden)))
            row["input_over_hidden"] = row["input_fslr"] / row["hidden_median_fslr"]
            for k in ("input_over_hidden", "input_fslr", "hidden_median_fslr"):
                out.setdefault(k, row[k])
        vo, qk = mean("v o"), mean("q k")
        if vo and qk:
            row.update(vo_fslr=vo, qk_fslr=qk, vo_over_qk=vo / qk)
            for k in ("vo_over_qk", "vo_fslr", "qk_fslr"):
                out.setdefault(k, row[k])
        out["groups"][parts[1]] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m methods.flerm.study", description=__doc__.split("\n")[0])
    p.add_argument("--grid", required=True)
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--figures", required=True)
    p.add_argument("--fslr", help="write the FSLR analysis (claim 13) here as JSON")
    args = p.parse_args(argv)
    from claimbench.io import atomic_write_json, atomic_write_text

    res = run(Path(args.grid), Path(args.runs_dir))
    notes = (yaml.safe_load(Path(args.grid).read_text()) or {}).get("notes", "")
    figures(res, Path(args.figures))
    grid_cfg = yaml.safe_load(Path(args.grid).read_text())
    made = fslr_figures(grid_cfg["grid"], res, Path(args.figures))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), res)
    fs = fslr_analysis(grid_cfg["grid"], res)
    if args.fslr:
        atomic_write_json(Path(args.fslr), fs)
    import os

    fig_rel = os.path.relpath(args.figures, Path(args.md).parent)
    md = markdown(res, notes, fig_rel)
    if made:
        md += "\n## Function-space LRs of Adam over training (base models)\n\n" + "\n".join(
            f"![{m}]({fig_rel}/{m}.png)" for m in made) + "\n"
    md += "\n" + fslr_markdown(fs)
    atomic_write_text(Path(args.md), md)
    for name, st in res["studies"].items():
        print(f"{name}: {st['verdict']} ({st.get('why', '')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
