"""The FLeRM transfer study: optimal-LR shift per scale, SP vs FLeRM, with bootstrap intervals over seeds.

Reads the paper's grid file (config/papers/flerm.<profile>.yaml; a tier's file, flerm.cpu.yaml, includes the smoke
grid: its lists concatenated, its `studies` merged): entries `flerm:<group>:base` (the base
model at every LR, the record runs) and `flerm:<study>:<arm>` (arm `sp` or `fl`) sweep `train.lr` and one scale key;
its `studies:` section gives each study's base group, `across` key (a config key, or `<method>.<option>` such as
`lora.rank`), scale `values` (first = base) with their `scales` labels, and kind (`width`, `depth` or `rank`).
Both arms share the base runs as their x1 point, so every shift is measured against the base model's optimum.
A study may name another as `against` (the same design without one change, e.g. lrm_width's LRM against
mlp_width): its result then carries `against`, the two studies' shifts at the scales both have, as a table
(`columns`, `rows`) that results/interactions.md shows as it is.

Runs are read only through `claimbench.evidence` (runs directory, else the evidence store). Metric: final train
loss (the paper's); a diverged run counts as a miss (infinite loss), never dropped. Per arm and scale the seed-mean
curve of loss vs log2 LR gives eta* (grid argmin refined by a parabola through its 3 points on log loss); the
shift s(m) = log2 eta*(m) / eta*(base). Intervals: percentile bootstrap over seeds (the per-LR losses of whole
seeds resampled, jointly across scales when every scale ran the same seeds, else per scale; the optimum refitted
per resample), at `LEVEL` (90%, the two one-sided 5% tests of an equivalence band). Fewer than `MIN_SEEDS` seeds in
a cell: no interval (NaN), so nothing is decided from it. Per arm and scale `at_edge` says whether the optimum sits
at an edge of the LR grid (then the shift is only a bound); `at_edge_any` is the claims' premise, as is
`opt_ci_width_max`, the widest bootstrap interval of log2 eta* over all cells (wide where the loss is flat in the LR,
so the argmin is seed noise and no shift can be read).

The verdicts are the claims' pre-registered tests (benchmarks/claims/flerm.yaml); this stage only measures.
A study with missing runs is `not_run`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from claimbench import stats
from claimbench.config import parse_value
from claimbench.evidence import RunEvidence, locate, read_run
from claimbench.grid import expand, method_name
from claimbench.io import atomic_save_png
from claimbench.tiers import load_grid

LEVEL = 0.90  # two-sided; each side at 5%, the TOST reading of "inside a band"
MIN_SEEDS = 3  # fewer seeds in a cell: no interval (a bootstrap of 1-2 seeds is no spread)
DRAWS = 2000
ARMS = ("sp", "fl")


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


def run_loss(ev: RunEvidence) -> float | None:
    """Final train loss; inf (a miss) for a diverged run or a non-finite loss; None when missing or failed."""
    if ev.status == "diverged":
        return math.inf
    if ev.status != "ok":
        return None
    v = ev.result.get("final_train_loss")
    if not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else math.inf


def collect(grid: list[dict], studies: dict, runs_dir: Path, store: Path | None = None) -> tuple[dict, list[str], dict]:
    """study -> arm -> scale index -> seed -> {lr: loss} (index 0: the base group's runs, shared by the arms);
    the run ids that are missing; and study -> arm -> scale index -> [run ids used]."""
    bases: dict = {}
    base_ids: dict = {}
    arms: dict = {}
    ids: dict = {}
    missing = []
    for entry in grid:
        parts = str(entry.get("name", "")).split(":")
        if len(parts) != 3 or parts[0] != "flerm":
            continue
        for rid, spec in expand([entry]).items():
            s = _sets(spec)
            loss = run_loss(read_run(locate(rid, runs_dir, store)))
            if loss is None:
                missing.append(f"{entry['name']} {rid}")
                continue
            if parts[2] == "base":
                bases.setdefault(parts[1], {}).setdefault(s["seed"], {})[float(s["train.lr"])] = loss
                base_ids.setdefault(parts[1], []).append(rid)
            elif parts[1] in studies:
                st = studies[parts[1]]
                idx = st["values"].index(scale_value(s, st["across"]))
                (arms.setdefault(parts[1], {}).setdefault(parts[2], {}).setdefault(idx, {})
                 .setdefault(s["seed"], {})[float(s["train.lr"])]) = loss
                ids.setdefault(parts[1], {}).setdefault(parts[2], {}).setdefault(idx, []).append(rid)
    data, used = {}, {}
    for name, st in studies.items():
        data[name] = {arm: {0: bases.get(st["base"], {}), **per} for arm, per in arms.get(name, {}).items()}
        used[name] = {arm: {0: base_ids.get(st["base"], []), **per} for arm, per in ids.get(name, {}).items()}
    return data, missing, used


def optimum(curve: dict[float, float]) -> dict:
    """log2 eta* of one loss-vs-LR curve (parabola-refined on log loss; an infinite loss is a miss)."""
    xs = sorted(curve)
    ys = [math.log(curve[x]) if curve[x] > 0 and math.isfinite(curve[x]) else math.inf for x in xs]
    return stats.optimum_log2(xs, ys, "lower", refine=True)


def _matrix(per_seed: dict[int, dict[float, float]]) -> tuple[list, list[float], np.ndarray]:
    """(seeds, LRs every seed has, losses[seed, lr])."""
    seeds = sorted(per_seed, key=str)
    lrs = sorted(set.intersection(*(set(c) for c in per_seed.values()))) if seeds else []
    return seeds, lrs, np.array([[per_seed[sd][lr] for lr in lrs] for sd in seeds], float).reshape(len(seeds),
                                                                                                    len(lrs))


def _curve_stats(lrs: list[float], mat: np.ndarray) -> tuple[float, float, bool]:
    """(log2 eta*, best loss, at_edge) of the seed-mean curve."""
    with np.errstate(invalid="ignore"):
        mean = mat.mean(axis=0)
    o = optimum(dict(zip(lrs, mean.tolist(), strict=True)))
    return o["log2_opt"], float(np.min(mean)), bool(o["at_edge"])


def _interval(point: float, draws: np.ndarray, n: int) -> dict:
    """Estimate, percentile interval at LEVEL over the bootstrap draws, and n (no interval below MIN_SEEDS)."""
    ok = draws[np.isfinite(draws)] if draws.size else draws
    if n < MIN_SEEDS or ok.size < 0.9 * max(draws.size, 1):
        lo = hi = math.nan
    else:
        lo, hi = (float(q) for q in np.quantile(ok, [0.5 - LEVEL / 2, 0.5 + LEVEL / 2]))
    return {"estimate": float(point), "ci_lo": lo, "ci_hi": hi, "n": int(n), "level": LEVEL}


def analyse_study(arms: dict[str, dict[int, dict[int, dict[float, float]]]], n_scales: int,
                  draws: int = DRAWS, seed: int = 0) -> dict:
    """Per arm: per-scale optimum, shift (with a bootstrap interval over seeds), at_edge, best loss; and the
    cross-arm numbers the claims read (max |shift| of both arms, FL - SP best loss per scale)."""
    names = [a for a in ARMS if a in arms] + sorted(a for a in arms if a not in ARMS)
    cells: dict = {}  # (arm, scale) -> (seeds, lrs, matrix); scale 0 shared by the arms
    for arm in names:
        for i in range(n_scales):
            key = (None, 0) if i == 0 else (arm, i)
            if key not in cells:
                cells[key] = _matrix(arms[arm][i])
    seed_sets = {tuple(c[0]) for c in cells.values()}
    paired = len(seed_sets) == 1
    n = min(len(c[0]) for c in cells.values())
    rng = np.random.default_rng(seed)

    def cell(arm, i):
        return cells[(None, 0) if i == 0 else (arm, i)]

    point = {k: _curve_stats(c[1], c[2]) for k, c in cells.items()}
    boot = {k: np.empty((draws, 2)) for k in cells}
    for d in range(draws):
        shared = rng.integers(0, len(next(iter(cells.values()))[0]), len(next(iter(cells.values()))[0])) \
            if paired else None
        for k, (sds, lrs, mat) in cells.items():
            idx = shared if paired else rng.integers(0, len(sds), len(sds))
            lo2, best, _ = _curve_stats(lrs, mat[idx])
            boot[k][d] = (lo2, best)
    out: dict = {"n": n, "paired": paired, "level": LEVEL, "draws": draws, "min_seeds": MIN_SEEDS, "arms": {}}
    max_abs_draws = {}
    for arm in names:
        keys = [(None, 0) if i == 0 else (arm, i) for i in range(n_scales)]
        shifts, sdraws = [], []
        for k in keys:
            dr = boot[k][:, 0] - boot[(None, 0)][:, 0]
            sdraws.append(dr)
            shifts.append(_interval(point[k][0] - point[(None, 0)][0], dr, min(len(cells[k][0]),
                                                                                len(cells[(None, 0)][0]))))
        shifts[0] = {"estimate": 0.0, "ci_lo": 0.0, "ci_hi": 0.0, "n": len(cells[(None, 0)][0]), "level": LEVEL}
        n_arm = min(len(cell(arm, i)[0]) for i in range(n_scales))
        if n_scales > 1:
            mad = np.max(np.abs(np.stack(sdraws[1:])), axis=0)
            max_abs_draws[arm] = mad
            mx = _interval(max(abs(s["estimate"]) for s in shifts[1:]), mad, n_arm)
        else:
            mx = {"estimate": 0.0, "ci_lo": math.nan, "ci_hi": math.nan, "n": n_arm, "level": LEVEL}
        out["arms"][arm] = {
            "seeds": [cell(arm, i)[0] for i in range(n_scales)],
            "log2_opt": [point[k][0] for k in keys],
            "log2_opt_ci": [[_interval(point[k][0], boot[k][:, 0], len(cells[k][0]))[b] for b in ("ci_lo", "ci_hi")]
                            for k in keys],
            "best_loss": [point[k][1] for k in keys],
            "at_edge": [point[k][2] for k in keys], "shift": shifts, "shift_largest": shifts[-1],
            "max_abs_shift": mx}
    out["at_edge_any"] = any(any(a["at_edge"]) for a in out["arms"].values())
    # how well each optimum is located: the widest interval of log2 eta* over all cells (a flat curve's is wide)
    out["opt_ci_width_max"] = max(hi - lo for a in out["arms"].values() for lo, hi in a["log2_opt_ci"])
    if max_abs_draws:
        both = np.max(np.stack(list(max_abs_draws.values())), axis=0)
        out["both_max_abs_shift"] = _interval(max(a["max_abs_shift"]["estimate"] for a in out["arms"].values()),
                                              both, n)
    def gap(a: str, b: str) -> dict:
        """max over the scales of |log2 eta*_a - log2 eta*_b| (the arms share the base, so this is the largest
        difference of their shifts), with its bootstrap interval from the same draws."""
        d = np.stack([boot[(a, i)][:, 0] - boot[(b, i)][:, 0] for i in range(1, n_scales)])
        pt = max(abs(point[(a, i)][0] - point[(b, i)][0]) for i in range(1, n_scales))
        return _interval(pt, np.max(np.abs(d), axis=0),
                         min(min(len(cell(a, i)[0]), len(cell(b, i)[0])) for i in range(1, n_scales)))

    if "fp" in arms and "fl" in arms and n_scales > 1:  # claim 11: FLeRM applied once (fl) vs periodically (fp)
        out["once_minus_periodic_max_abs_shift"] = gap("fl", "fp")
        if "sp" in arms:  # its placebo: SP against FLeRM-once, which the paper shows differ
            out["sp_minus_once_max_abs_shift"] = gap("sp", "fl")
    if "sp" in arms and "fl" in arms:
        out["best_loss_fl_minus_sp"] = [
            _interval(point[("fl", i) if i else (None, 0)][1] - point[("sp", i) if i else (None, 0)][1],
                      boot[("fl", i) if i else (None, 0)][:, 1] - boot[("sp", i) if i else (None, 0)][:, 1],
                      min(len(cell("fl", i)[0]), len(cell("sp", i)[0])))
            for i in range(n_scales)]
    return out


def run(grid_file: str | Path, runs_dir: Path, store: Path | None = None, draws: int = DRAWS) -> dict:
    cfg = load_grid(grid_file)  # with the files its `include:` names (a tier's file includes the smoke grid)
    studies = cfg.get("studies") or {}
    data, missing, used = collect(cfg["grid"], studies, runs_dir, store)
    out: dict = {"grid": str(grid_file), "metric": "final_train_loss", "studies": {}}
    for name, st in studies.items():
        labels = st["scales"]
        arms = data.get(name, {})
        res: dict = {"kind": st.get("kind", "width"), "across": st["across"], "scales": labels, "arms": {},
                     "base_group": st["base"],
                     "values": [v if isinstance(v, int | float | str) else None for v in st["values"]]}
        complete = all(len(arms.get(a, {})) == len(labels) and all(arms[a].values()) for a in ARMS)
        if not complete or any(m.startswith((f"flerm:{name}:", f"flerm:{st['base']}:base")) for m in missing):
            res.update(status="not_run", why="runs missing")
        else:
            res.update(analyse_study(arms, len(labels), draws))
            for arm in res["arms"]:
                res["arms"][arm]["runs"] = [sorted(used[name][arm][i]) for i in range(len(labels))]
            res["status"] = "ok"
            res["why"] = (f"n = {res['n']} seed(s) per cell" + ("" if res["n"] >= MIN_SEEDS else
                          f": no interval (needs >= {MIN_SEEDS})")
                          + ("; an optimum sits at a grid edge" if res["at_edge_any"] else ""))
        out["studies"][name] = res
    for name, st in studies.items():
        if st.get("against"):
            out["studies"][name]["against"] = against(out["studies"], name, st["against"], cfg["grid"])
    out["missing"] = missing
    out["curves"] = {s: {a: {str(i): {str(sd): c for sd, c in v.items()} for i, v in ps.items()}
                         for a, ps in arms.items()} for s, arms in data.items()}
    return out


def arm_methods(grid: list[dict], study: str, arm: str) -> str:
    """The methods of a study arm's runs besides flerm (`lrm`, or `none`), as its grid entry lists them."""
    entry = next((e for e in grid if e.get("name") == f"flerm:{study}:{arm}"), {})
    names = {method_name(m) for ms in entry.get("methods") or [[]] for m in ms}
    return ", ".join(sorted(names - {"flerm"})) or "none"


def against(results: dict, name: str, other: str, grid: list[dict]) -> dict:
    """Study `name` beside study `other` at the scales both have: per study and scale, SP's and FLeRM's shift
    (log2, with its interval; `edge` where that arm's optimum or the base's sits on an LR grid edge) and n."""
    cols = ["study", "methods besides flerm", "scale", "SP shift (log2)", "FLeRM shift (log2)", "n"]
    out: dict = {"study": other, "columns": cols, "rows": []}
    pair = [(other, results.get(other)), (name, results.get(name))]
    missing = [s for s, r in pair if not r or r.get("status") != "ok"]
    if missing:
        out["status"], out["why"] = "not_run", f"study {missing[0]}: {(results.get(missing[0]) or {}).get('why', '')}"
        return out
    labels = [lab for lab in results[name]["scales"][1:] if lab in results[other]["scales"][1:]]
    for lab in labels:
        for study, res in pair:
            i = res["scales"].index(lab)
            cells = []
            for arm in ("sp", "fl"):
                a = res["arms"][arm]
                edge = " edge" if a["at_edge"][0] or a["at_edge"][i] else ""
                cells.append(_fmt(a["shift"][i]) + edge)
            out["rows"].append([study, arm_methods(grid, study, "sp"), f"x{lab}", *cells,
                                min(res["arms"]["sp"]["shift"][i]["n"], res["arms"]["fl"]["shift"][i]["n"])])
    out["status"] = "ok"
    return out


def _fmt(iv: dict) -> str:
    """'+0.12 [-0.40, +0.71]' or '+0.12 (no interval)'."""
    e, lo, hi = iv["estimate"], iv["ci_lo"], iv["ci_hi"]
    if math.isfinite(lo) and math.isfinite(hi):
        return f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    return f"{e:+.2f} (no interval)"


def markdown(res: dict, notes: str, fig_rel: str = "figures/flerm") -> str:
    lines = ["# Function-Space Learning Rates (FLeRM): LR transfer", "",
             "Generated by `python -m methods.flerm.analysis` from the runs of " f"`{res['grid']}`.", "", notes.strip(),
             "", f"Shift = log2(eta*(scale) / eta*(base)) of the seed-mean curve, parabola-refined on log train loss; "
             f"[{LEVEL:.0%} bootstrap interval over seeds] (none with fewer than {MIN_SEEDS} seeds). A diverged run is "
             "an infinite loss. `edge`: the optimum sits at an edge of the LR grid, so that shift is only a bound. "
             "Verdicts: the claims' pre-registered tests (benchmarks/claims/flerm.yaml), not this stage.", ""]
    for name, st in res["studies"].items():
        lines += [f"## {name} ({st['kind']}, across `{st['across']}`): {st['status']}", "", st.get("why", ""), ""]
        if st["status"] == "not_run":
            continue
        sp, fl = st["arms"]["sp"], st["arms"]["fl"]
        lines += ["| scale | SP log2 eta* | SP shift | FL log2 eta* | FL shift | best loss SP | best loss FL "
                  "| FL - SP |", "|---|---|---|---|---|---|---|---|"]
        for i, lab in enumerate(st["scales"]):
            val = (st.get("values") or [None] * len(st["scales"]))[i]
            lab = f"{lab} ({st['across']} {val})" if val is not None else lab
            edge = {a: " edge" if arm["at_edge"][i] else "" for a, arm in (("sp", sp), ("fl", fl))}
            lines.append(f"| x{lab} | {sp['log2_opt'][i]:.2f}{edge['sp']} | {_fmt(sp['shift'][i])} "
                         f"| {fl['log2_opt'][i]:.2f}{edge['fl']} | {_fmt(fl['shift'][i])} "
                         f"| {sp['best_loss'][i]:.4f} | {fl['best_loss'][i]:.4f} "
                         f"| {_fmt(st['best_loss_fl_minus_sp'][i])} |")
        lines += ["", f"max |shift| over scales: SP {_fmt(sp['max_abs_shift'])}, FL {_fmt(fl['max_abs_shift'])} "
                      f"(n = {st['n']})", ""]
        if "fp" in st["arms"]:
            fp = st["arms"]["fp"]
            lines += ["FLeRM re-applied periodically (fp), shift per scale: "
                      + ", ".join(f"x{lab} {_fmt(fp['shift'][i])}{' edge' if fp['at_edge'][i] else ''}"
                                  for i, lab in enumerate(st["scales"]) if i) + ".",
                      f"Largest |once - periodic| over the scales: {_fmt(st['once_minus_periodic_max_abs_shift'])}; "
                      f"|SP - once| (the placebo): {_fmt(st['sp_minus_once_max_abs_shift'])}.", ""]
        lines += [f"![{name}]({fig_rel}/{name}.png)", ""]
        if st.get("against"):
            cmp = st["against"]
            lines += [f"Beside study {cmp['study']} (the same design without this study's change):", ""]
            if cmp["status"] != "ok":
                lines += [f"not run ({cmp['why']})", ""]
                continue
            lines += ["| " + " | ".join(cmp["columns"]) + " |", "|" + "---|" * len(cmp["columns"])]
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in cmp["rows"]] + [""]
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
            title = {"fl": "FLeRM", "sp": "standard (SP)", "fp": "FLeRM, periodic"}.get(arm, arm)
            ax.set_title(f"{name}: {title}")
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


def _base_lr(entry: dict, res: dict) -> float:
    """The base LR closest to the base group's SP optimum (the seed-mean curve's), the grid middle if unknown."""
    group = str(entry.get("name", "")).split(":")[1]
    lrs = sorted(float(x) for x in entry["sweep"]["train.lr"])
    opts = [a["arms"]["sp"]["log2_opt"][0] for a in res["studies"].values()
            if a.get("arms") and a.get("base_group") == group]
    return min(lrs, key=lambda x: abs(math.log2(x) - opts[0])) if opts else lrs[len(lrs) // 2]


def _base_record(entry: dict, res: dict) -> tuple[float, Path]:
    """(lr, record path) of a base group at the base LR closest to its SP optimum."""
    from methods.flerm.records import record_path

    tmpl = next(m["record"] for m in entry["methods"][0] if isinstance(m, dict) and m.get("record"))
    lr = _base_lr(entry, res)
    return lr, Path(record_path(tmpl, lr))


def _first_fslr(ev: RunEvidence) -> tuple[int | None, dict[str, float]]:
    """The run's first logged FSLR row (after the warm-up): (step, {tensor: per-unit-LR FSLR})."""
    from methods.flerm.records import PREFIX

    for row in ev.metrics():
        if "flerm/at_step" in row:
            return int(row["flerm/at_step"]), {k[len(PREFIX):]: float(v) for k, v in row.items()
                                               if k.startswith(PREFIX) and isinstance(v, (int, float))}
    return None, {}


def _ratios(f0: dict[str, float]) -> dict[str, float]:
    """Claim 13's ratios of one run: input over the median hidden weight (ResMLP), mean V/O over mean Q/K (GPT),
    and the placebo: the largest over the smallest of like tensors (hidden weights; Q and K), which should be
    near 1."""
    out: dict = {}
    hidden = [v for n, v in f0.items() if n.startswith("blocks.") and n.endswith(".weight")]
    if "inp.weight" in f0 and hidden:
        out.update(input_fslr=f0["inp.weight"], hidden_median_fslr=float(np.median(hidden)))
        out["input_over_hidden"] = out["input_fslr"] / out["hidden_median_fslr"]
        out["placebo_ratio"] = max(hidden) / min(hidden) if min(hidden) > 0 else math.inf

    def mean(pat: str) -> float | None:
        vals = [v for n, v in f0.items() if n.endswith(".weight") and any(f".{p}." in n for p in pat.split())]
        return float(np.mean(vals)) if vals else None

    vo, q, k = mean("v o"), mean("q"), mean("k")
    if vo and q and k:
        out.update(vo_fslr=vo, qk_fslr=(q + k) / 2, vo_over_qk=vo / ((q + k) / 2))
        out["placebo_ratio"] = max(q, k) / min(q, k)
    return out


def plain_base(entry: dict) -> bool:
    """A base entry whose runs have flerm as their only method: claim 13 reads Adam's FSLRs of the plain models (not
    LoRA's adapters, nor an LRM model's split of each matrix into a weight and its multipliers)."""
    return all(method_name(m) == "flerm" for m in entry["methods"][0])


def fslr_analysis(grid: list[dict], res: dict, runs_dir: Path, store: Path | None = None) -> dict:
    """Claim 13 (flerm.c13_fslr_analysis): Adam's per-tensor FSLRs at the first record step of each base run, at the
    base LR closest to its optimum, one value per seed (read through claimbench.evidence). ResMLP: input weight over
    the median hidden weight (paper ~2.3e3 / 64-92); transformer: mean V/O weights over mean Q/K weights (paper
    65-96 vs 7-9). Each ratio: mean over seeds with its Student-t interval over the per-seed values and n (with 3
    seeds a percentile bootstrap cannot reach beyond the seeds' range and under-covers); `min_ratio` the smaller of
    the two models' means, `placebo_ratio` the largest like-tensor ratio, each with the interval [min (max) of the
    models' lower bounds, min (max) of their upper bounds] (both models' means inside their intervals puts the
    min/max inside it: an intersection-union bound, no resampling). A seed without a value (no FSLR row) makes
    the interval undefined (never dropped)."""
    out: dict = {"groups": {}, "level": LEVEL, "min_seeds": MIN_SEEDS}
    per_key: dict[str, list[np.ndarray]] = {}
    for entry in grid:
        parts = str(entry.get("name", "")).split(":")
        if len(parts) != 3 or parts[2] != "base" or not plain_base(entry):
            continue
        lr = _base_lr(entry, res)
        rows, runs, steps = [], [], set()
        for rid, spec in sorted(expand([entry]).items()):
            if float(_sets(spec)["train.lr"]) != lr:
                continue
            ev = read_run(locate(rid, runs_dir, store))
            if not ev.usable:
                continue  # a missing run: the stage runs only once all are there
            step, f0 = _first_fslr(ev)
            steps.add(step)
            rows.append(_ratios(f0) if f0 else {})
            runs.append({"run_id": rid, "status": ev.status, "seed": _sets(spec)["seed"]})
        if not runs:
            continue
        keys = sorted({k for r in rows for k in r})
        row: dict = {"lr": lr, "step": min((s for s in steps if s is not None), default=None), "runs": runs}
        for k in keys:
            vals = np.array([r.get(k, math.nan) for r in rows], float)
            row[k] = t_mean(vals)
            if k in ("input_over_hidden", "vo_over_qk", "placebo_ratio"):
                per_key.setdefault(k, []).append(vals)
        out["groups"][parts[1]] = row
        for k in ("input_over_hidden", "vo_over_qk", "input_fslr", "hidden_median_fslr", "vo_fslr", "qk_fslr"):
            if k in row:
                out.setdefault(k, row[k])
    ratio_vals = per_key.get("input_over_hidden", []) + per_key.get("vo_over_qk", [])
    if ratio_vals:
        out["min_ratio"] = _t_combine(ratio_vals, min)
    if per_key.get("placebo_ratio"):
        out["placebo_ratio"] = _t_combine(per_key["placebo_ratio"], max)
    return out


def t_mean(vals: np.ndarray) -> dict:
    """The mean of per-seed values with its Student-t interval at LEVEL (none below MIN_SEEDS or with a miss)."""
    from scipy import stats as scipy_stats

    v = np.asarray(vals, float)
    point = float(np.mean(v))
    if len(v) < MIN_SEEDS or not np.all(np.isfinite(v)):
        return {"estimate": point, "ci_lo": math.nan, "ci_hi": math.nan, "n": len(v), "level": LEVEL}
    if float(np.std(v)) == 0.0:
        lo = hi = point  # identical seeds: no spread (scipy's t.interval gives NaN at scale 0)
    else:
        lo, hi = scipy_stats.t.interval(LEVEL, len(v) - 1, loc=point, scale=float(scipy_stats.sem(v)))
    return {"estimate": point, "ci_lo": float(lo), "ci_hi": float(hi), "n": len(v), "level": LEVEL,
            "interval": "t over seeds"}


def _t_combine(groups: list[np.ndarray], how) -> dict:
    """how (min or max) of the groups' seed means, its interval how() of the groups' t bounds (monotone in each
    mean, so it holds whenever every group's interval does)."""
    per = [t_mean(g) for g in groups]

    def bound(key: str) -> float:  # a group without an interval leaves none (NaN never compares away)
        vals = [p[key] for p in per]
        return float(how(vals)) if all(math.isfinite(v) for v in vals) else math.nan

    return {"estimate": float(how(p["estimate"] for p in per)), "ci_lo": bound("ci_lo"), "ci_hi": bound("ci_hi"),
            "n": int(min(p["n"] for p in per)), "level": LEVEL, "interval": "t over seeds, per model"}


def fslr_markdown(fs: dict) -> str:
    """Claim 13's table: per base model, the ratios (mean over seeds [bootstrap interval], n)."""
    lines = ["## Function-space LRs of Adam per tensor (claim 13)", "",
             "Per unit LR, at the first record step (after the 41-pass warm-up), base LR closest to the optimum, "
             f"mean over the base seeds [{LEVEL:.0%} Student-t interval over seeds]. Paper: ResMLP input 2.3e3 vs "
             "hidden 64-92 (ratio ~30); PostNorm transformer V/O 65-96 vs Q/K 7-9 (ratio ~10). Placebo: the largest "
             "over the smallest of like tensors (hidden weights; Q and K), expected near 1.", "",
             "| model | lr | step | quantity | mean [interval] | n |", "|---|---|---|---|---|---|"]
    for group, row in fs.get("groups", {}).items():
        for k in ("input_over_hidden", "vo_over_qk", "placebo_ratio"):
            if k in row:
                iv = row[k]
                ci = f"[{iv['ci_lo']:.3g}, {iv['ci_hi']:.3g}]" if math.isfinite(iv["ci_lo"]) else "(no interval)"
                lines.append(f"| {group} | {row['lr']:.4g} | {row['step']} | {k} | {iv['estimate']:.3g} {ci} "
                             f"| {iv['n']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m methods.flerm.analysis", description=__doc__.split("\n")[0])
    p.add_argument("--grid", required=True, help="the profile's grid file (a tier's includes the grid it extends)")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--store", help="the evidence store, read where the runs directory lacks a run")
    p.add_argument("--out", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--figures", required=True)
    p.add_argument("--fslr", help="write the FSLR analysis (claim 13) here as JSON")
    args = p.parse_args(argv)
    from claimbench.io import atomic_write_json, atomic_write_text

    store = Path(args.store) if args.store else None
    res = run(args.grid, Path(args.runs_dir), store)
    grid_cfg = load_grid(args.grid)
    notes = grid_cfg.get("notes", "")
    figures(res, Path(args.figures))
    made = fslr_figures(grid_cfg["grid"], res, Path(args.figures))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), res)
    fs = fslr_analysis(grid_cfg["grid"], res, Path(args.runs_dir), store)
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
        print(f"{name}: {st['status']} ({st.get('why', '')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
