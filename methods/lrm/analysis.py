"""The LRM studies: one JSON of per-claim numbers from the runs of config/papers/lrm.<profile>.yaml.

Each grid entry names its `study`; this module reads every run's result.json and metrics.jsonl and reduces each
study to the numbers the claims (benchmarks/claims/lrm.yaml, via `from_file`) and results/analysis/lrm/summary.md
show. A missing or failed run is reported as such (its numbers are None), never filled in.

    python -m methods.lrm.analysis --grid config/papers/lrm.smoke.yaml --runs-dir runs/smoke \
        --out results/analysis/lrm/summary.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from claimbench.grid import RunSpec, expand
from claimbench.io import atomic_write_json, atomic_write_text, read_jsonl
from methods.lrm.mup_sweep import load_sweep, trial_grid


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
    """One run's sets, result and metrics (empty when it has not run or failed)."""

    def __init__(self, spec: RunSpec, runs_dir: Path):
        self.spec, self.sets = spec, _sets(spec)
        self.lrm = _lrm_opts(self.sets)
        d = runs_dir / spec.run_id
        self.result = json.loads((d / "result.json").read_text()) if (d / "result.json").is_file() else {}
        self.rows = read_jsonl(d / "metrics.jsonl") if self.ok else []

    @property
    def ok(self) -> bool:
        return self.result.get("status") == "ok"

    @property
    def loss(self) -> float | None:
        return self.result.get("final_val_loss") if self.ok else None

    def last(self, key: str) -> float | None:
        vals = [r[key] for r in self.rows if r.get(key) is not None]
        return vals[-1] if vals else None

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]


def _mean_sd(xs: list[float | None]) -> dict[str, Any]:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return {"mean": statistics.fmean(v) if v else None, "sd": statistics.stdev(v) if len(v) > 1 else None,
            "n": len(v), "missing": len(xs) - len(v)}


def _slope(xs: list[float], ys: list[float | None]) -> float | None:
    """Log-log slope of y against x over the points that exist and are positive."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0]
    if len(pts) < 2:
        return None
    return float(np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0])


def _arm(run: Run) -> str:
    has_lrm = bool(run.lrm) and run.lrm.get("placement", "both") != "none"
    return f"{run.sets['recipe']}{'+lrm' if has_lrm else ''}"


# ------------------------------------------------------------------------------------------ studies

def perf(runs: list[Run]) -> dict:
    """C10/C11 (loss) and C5: each arm at its best LR of the shared grid (mean over seeds), the LRM gains."""
    by = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by[_arm(r)][r.sets["train.lr"]].append(r)
    arms = {}
    for arm, lrs in by.items():
        table = {lr: _mean_sd([r.loss for r in rs]) for lr, rs in sorted(lrs.items())}
        scored = {lr: t["mean"] for lr, t in table.items() if t["mean"] is not None and t["missing"] == 0}
        best = min(scored, key=scored.get) if scored else None
        spread = {k: _mean_sd([r.last(f"lrm/row_spread/{k}") for r in lrs[best]]) if best else None
                  for k in ("attn_q", "mlp_gate")}
        arms[arm] = {"by_lr": {str(k): v for k, v in table.items()}, "best_lr": best,
                     "best": table[best] if best else None, "row_spread": spread,
                     "edge_optimum": best is not None and best in (min(lrs), max(lrs))}
    best = lambda a: (arms.get(a) or {}).get("best") or {}  # noqa: E731
    diff = lambda a, b: (best(a).get("mean") - best(b).get("mean")  # noqa: E731
                         if best(a).get("mean") is not None and best(b).get("mean") is not None else None)
    ratio = lambda a, b, k: (arms[a]["row_spread"][k]["mean"] / arms[b]["row_spread"][k]["mean"]  # noqa: E731
                             if a in arms and b in arms and arms[a]["row_spread"][k]
                             and arms[a]["row_spread"][k]["mean"] and arms[b]["row_spread"][k]["mean"] else None)
    sds = [best(a)["sd"] for a in arms if best(a).get("sd") is not None]
    sd = max(sds) if sds else None
    return {"arms": arms, "gain_adamw": diff("adamw+lrm", "adamw"), "gain_muon": diff("muon+lrm", "muon"),
            "muon_vs_adamw": diff("muon", "adamw"), "max_seed_sd": sd,
            "row_spread_ratio_attn_q": ratio("adamw+lrm", "adamw", "attn_q"),
            "row_spread_ratio_mlp_gate": ratio("adamw+lrm", "adamw", "mlp_gate")}


def projector(runs: list[Run]) -> dict:
    """C1/C2: per final-norm arm, the log-log slope of the head's RMS against S (paper: ~0.5), its ratio to the
    ABM reference, the norm multiplier's slope (compensation: about -0.5) and the loss range across S."""
    names = {"frozen": "FPN", "scalar": "SPN", "vector": "VPN"}
    out = {}
    for key, name in names.items():
        rs = sorted((r for r in runs if r.lrm.get("final_norm", "vector") == key),
                    key=lambda r: r.lrm["s_factor"]["readout"])
        s = [r.lrm["s_factor"]["readout"] for r in rs]
        w = [r.last("lrm/readout_rms_w") for r in rs]
        abm = [r.last("lrm/abm_rms") for r in rs]
        losses = [r.loss for r in rs]
        ok = [x for x in losses if x is not None]
        out[name] = {"S": s, "head_rms": w, "abm_rms": abm, "val_loss": losses,
                     "slope_head_rms": _slope(s, w), "slope_abm": _slope(s, abm),
                     "head_over_abm": [a / b if a and b else None for a, b in zip(w, abm, strict=True)],
                     "slope_norm_mult": _slope(s, [r.last("lrm/final_norm_rms") for r in rs]) if key != "frozen"
                     else None,
                     "loss_range": (max(ok) - min(ok)) if len(ok) == len(losses) and ok else None}
    return out


def mlp_scale(runs: list[Run]) -> dict:
    """C3: val loss against S_MLP without and with the 3 scalar MLP multipliers; `rise` = loss(S max) - loss(S=1)."""
    out = {}
    for arm, placement in (("no_mult", "none"), ("scalar_mult", "mlp_scalar")):
        rs = sorted((r for r in runs if r.lrm.get("placement") == placement),
                    key=lambda r: r.lrm["s_factor"]["hidden_matrix"])
        by_s = {r.lrm["s_factor"]["hidden_matrix"]: r.loss for r in rs}
        rise = by_s.get(max(by_s)) - by_s[1.0] if by_s and by_s.get(1.0) is not None and by_s.get(max(by_s)) \
            is not None else None
        out[arm] = {"val_loss_by_S": {str(k): v for k, v in by_s.items()}, "rise": rise}
    return out


def symmetry(runs: list[Run]) -> dict:
    """C6: final |log10(M_q/M_k)|, log10(M_q M_k) and the residual RMS growth (last / after warmup), for the
    multiplier-WD-0 run (`no_wd`) and the WD 2e-3 one (`with_wd`); keys hold no dots, for dotted look-ups."""
    out = {}
    for r in runs:
        resid = r.series("lrm/resid_rms")
        start = next((v for s, v in resid if s > r.sets.get("train.warmup_steps", 0)), None)
        wd = r.lrm.get("weight_decay", 2e-3)
        out["no_wd" if wd == 0 else "with_wd"] = {"weight_decay": wd,
            "qk_log10_ratio": r.last("lrm/qk_log10_ratio"), "qk_log10_prod": r.last("lrm/qk_log10_prod"),
            "resid_growth": resid[-1][1] / start if resid and start else None, "val_loss": r.loss,
            "status": r.result.get("status")}
    return out


def width(runs: list[Run]) -> dict:
    """C7: log-log slopes against width of the mean What RMS, the logit RMS and the learned projector multiplier."""
    rs = sorted(runs, key=lambda r: r.sets["model.n_embd"])
    d = [r.sets["model.n_embd"] for r in rs]

    def mean_w(r: Run) -> float | None:
        v = [x for k, x in (r.rows[-1].items() if r.rows else []) if k.startswith("lrm/rms_w/")]
        return statistics.fmean(v) if v else None

    w, logit, mult = [mean_w(r) for r in rs], [r.last("lrm/logit_rms") for r in rs], \
        [r.last("lrm/final_norm_rms") for r in rs]
    return {"width": d, "mean_w_rms": w, "logit_rms": logit, "projector_mult": mult,
            "slope_w_rms": _slope(d, w), "slope_logit_rms": _slope(d, logit), "slope_projector_mult": _slope(d, mult)}


def clip(runs: list[Run], reference: list[Run]) -> dict:
    """C8: mean clip factor over the first 10% of steps with the multipliers included (its own norm) and in the
    excluded reference; final val-loss difference include - exclude (mean over seeds)."""
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
    """C9: val-loss difference (head row multipliers) - (head left alone), mean over seeds."""
    a, b = _mean_sd([r.loss for r in runs]), _mean_sd([r.loss for r in reference])
    return {"val_loss_head_row": a, "val_loss_reference": b,
            "loss_diff": a["mean"] - b["mean"] if a["mean"] is not None and b["mean"] is not None else None}


def _mup_opts(sets: dict) -> dict:
    return next((m for m in sets.get("methods") or [] if isinstance(m, dict) and m.get("name") == "mup"), {})


def levels(runs: list[Run]) -> dict:
    """C10 tuning ablation (Fig. 7): per muP level (NONE: no mup method, all multipliers 1), the val loss of the
    baseline and of +LRM over seeds and the LRM gain (LRM - baseline, paired t interval over seeds); the worst
    level's gain and interval bounds for the claim; each tuned level's baseline against NONE's (does tuning help?).
    Missing numbers are NaN, so the claim's rule cannot hold on them."""
    from claimbench import stats

    by: dict[str, dict[str, dict[int, float | None]]] = defaultdict(lambda: defaultdict(dict))
    tuned_files = set()
    for r in runs:
        mup = _mup_opts(r.sets)
        if mup.get("tuned"):
            tuned_files.add(mup["tuned"])
        arm = "lrm" if _arm(r).endswith("+lrm") else "base"
        by[mup.get("level", "NONE")][arm][r.sets["seed"]] = r.loss
    nan = float("nan")
    out: dict[str, Any] = {"levels": {}}
    for level in ("NONE", "LR", "LRWD", "FULL"):
        if level not in by:
            continue
        base, lrm = by[level].get("base", {}), by[level].get("lrm", {})
        row = {"base": _mean_sd(list(base.values())), "lrm": _mean_sd(list(lrm.values())),
               "gain": nan, "ci_lo": nan, "ci_hi": nan}
        complete = lambda d: bool(d) and all(v is not None and math.isfinite(v) for v in d.values())  # noqa: E731
        if complete(base) and complete(lrm):
            d = stats.difference(lrm, base)
            row.update(gain=d["estimate"], ci_lo=d["ci_lo"], ci_hi=d["ci_hi"], paired=d["paired"])
        out["levels"][level] = row
    rows = list(out["levels"].values())
    full = len(rows) == 4 and all(math.isfinite(r["gain"]) for r in rows)
    out["worst_gain"] = max(r["gain"] for r in rows) if full else nan
    out["worst_ci_hi"] = max(r["ci_hi"] for r in rows) if full else nan
    out["max_ci_lo"] = max(r["ci_lo"] for r in rows) if full else nan
    none = (out["levels"].get("NONE") or {}).get("base", {}).get("mean")
    out["tuned_minus_none"] = {lv: (r["base"]["mean"] - none if none is not None and r["base"]["mean"] is not None
                                    else nan) for lv, r in out["levels"].items() if lv != "NONE"}
    out["tuned_file"] = sorted(tuned_files)
    tuned = {}
    for f in sorted(tuned_files):
        path = Path(f)
        if path.is_file():
            tuned = json.loads(path.read_text()).get("levels", {})
    out["tuned"] = tuned
    return out


def depth(runs: list[Run], reference: list[Run]) -> dict:
    """C4: ratio scalar-LRM / baseline of each block's output RMS, and whether it rises with depth."""
    if not runs or not reference or not runs[0].rows or not reference[0].rows:
        return {"ratio_by_layer": None, "rises_with_depth": None}
    a, b = runs[0].rows[-1], reference[0].rows[-1]
    layers = sorted(int(k.rsplit("/", 1)[1]) for k in a if k.startswith("lrm/resid_rms/"))
    ratio = [a[f"lrm/resid_rms/{i}"] / b[f"lrm/resid_rms/{i}"] for i in layers if f"lrm/resid_rms/{i}" in b]
    return {"ratio_by_layer": ratio, "rises_with_depth": len(ratio) > 1 and ratio[-1] > ratio[0]}


def _fit_ci(x: list[float], y: list[float], groups: list[str] | None = None) -> dict[str, float | None]:
    """Least-squares slope of log y on log x (one intercept per group) with a 95% t interval from its standard
    error; None where there are not more points than parameters."""
    groups = groups or ["all"] * len(x)
    names = sorted(set(groups))
    if len(x) <= len(names) + 1:
        return {"slope": None, "ci_lo": None, "ci_hi": None, "n": len(x)}
    from scipy import stats

    X = np.column_stack([np.log(x)] + [[1.0 if g == n else 0.0 for g in groups] for n in names])
    coef, res, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
    dof = len(x) - X.shape[1]
    resid = np.log(y) - X @ coef
    se = math.sqrt(float(resid @ resid) / dof * np.linalg.inv(X.T @ X)[0, 0])
    t = float(stats.t.ppf(0.975, dof))
    return {"slope": float(coef[0]), "ci_lo": float(coef[0] - t * se), "ci_hi": float(coef[0] + t * se),
            "n": len(x), "dof": dof}


def claim_files(s: dict) -> dict[str, dict]:
    """The files benchmarks/claims/lrm.yaml reads with `from_file` (c1_norm_slope, c2_projector, c4_residual_norms,
    c7_width), from this module's studies."""
    from scipy import stats

    pts = [(S, w, arm) for arm, v in s["C1_C2"].items() for S, w in zip(v["S"], v["head_rms"], strict=True)
           if w is not None and w > 0]
    c1 = _fit_ci([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]) if pts else {"slope": None}
    c1["note"] = "log-log slope of the head's What RMS vs S, FPN/SPN/VPN pooled with one intercept each"
    fpn, vpn = s["C1_C2"]["FPN"], s["C1_C2"]["VPN"]

    def excess(arm: dict) -> float | None:
        by = dict(zip(arm["S"], arm["val_loss"], strict=True))
        ext = [by.get(k) for k in (min(arm["S"], default=None), max(arm["S"], default=None))]
        if None in ext or by.get(1.0) is None:
            return None
        return statistics.fmean(ext) - by[1.0]

    e_f, e_v = excess(fpn), excess(vpn)
    sd = s["C10"]["max_seed_sd"]  # one seed per arm here: the seed noise of lrm:perf's runs (same model size)
    est = e_f - e_v if e_f is not None and e_v is not None else None
    half = 1.96 * math.sqrt(3) * sd if est is not None and sd is not None else None
    c2 = {"excess_fpn_over_vpn": est, "ci_lo": est - half if half is not None else None,
          "ci_hi": est + half if half is not None else None, "seed_sd_borrowed": sd,
          "note": "[mean loss at the extreme S - loss at S=1] for FPN minus the same for VPN; 1 seed per point, "
                  "interval from lrm:perf's seed SD (variance 3 sd^2)"}
    ratio = s["C4"]["ratio_by_layer"]
    rho = float(stats.spearmanr(range(len(ratio)), ratio)[0]) if ratio and len(ratio) >= 3 else None
    c4 = {"rho": rho, "ratio_by_layer": ratio, "note": "Spearman rho of the LRM/baseline block-output RMS ratio vs "
          "depth; None below 3 layers"}
    c7w = s["C7"]
    pts7 = [(d, m) for d, m in zip(c7w["width"], c7w["projector_mult"], strict=True) if m is not None and m > 0]
    fit = _fit_ci([p[0] for p in pts7], [p[1] for p in pts7]) if pts7 else {"slope": None}
    c7 = {"exponent": -fit["slope"] if fit.get("slope") is not None else None,
          "ci_lo": -fit["ci_hi"] if fit.get("ci_hi") is not None else None,
          "ci_hi": -fit["ci_lo"] if fit.get("ci_lo") is not None else None, "widths": [p[0] for p in pts7],
          "note": "a in multiplier ~ d^-a, the learned projector multiplier = the scalar final-norm gain"}
    return {"c1_norm_slope.json": c1, "c2_projector.json": c2, "c4_residual_norms.json": c4, "c7_width.json": c7}


def analyse(grid: list[dict], runs_dir: Path) -> dict:
    studies: dict[str, list[Run]] = defaultdict(list)
    for entry in grid:
        for spec in expand([entry]).values():
            studies[entry.get("study", "")].append(Run(spec, runs_dir))
    perf_runs = studies.get("perf", [])
    # the references of C8, C9, C4: lrm:perf's AdamW arms at the fixed LR of those studies
    lr = next((r.sets["train.lr"] for r in studies.get("clip", []) + studies.get("head", [])), None)
    ref_lrm = [r for r in perf_runs if _arm(r) == "adamw+lrm" and r.sets["train.lr"] == lr and r.lrm == {"name": "lrm"}]
    depth_runs = studies.get("depth", [])
    ref_probe = ([r for r in depth_runs if r.lrm.get("placement") == "none"]
                 or [r for r in perf_runs if _arm(r) == "adamw" and r.sets["train.lr"] == lr and r.sets["seed"] == 0])
    depth_runs = [r for r in depth_runs if r.lrm.get("placement") != "none"]
    out = {"C10": perf(perf_runs), "C1_C2": projector(studies.get("projector", [])),
           "C3": mlp_scale(studies.get("mlp_scale", [])), "C6": symmetry(studies.get("symmetry", [])),
           "C7": width(studies.get("width", [])), "C8": clip(studies.get("clip", []), ref_lrm),
           "C9": head(studies.get("head", []), ref_lrm), "C4": depth(depth_runs, ref_probe)}
    if studies.get("levels"):
        out["C10_levels"] = levels(studies["levels"])
    unique = {r.spec.run_id: r for v in studies.values() for r in v}.values()  # shared runs counted once
    out["runs"] = {"total": len(unique), "ok": sum(r.ok for r in unique),
                   "diverged": sum(r.result.get("status") == "diverged" for r in unique),
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
    lines += ["| claim | number | value |", "|---|---|---|",
             f"| C10 | val loss gain of LRM, AdamW (best LR each) | {fmt(c10['gain_adamw'])} |",
             f"| C10 | val loss gain of LRM, Muon | {fmt(c10['gain_muon'])} |",
             f"| C10 | Muon - AdamW | {fmt(c10['muon_vs_adamw'])} |",
             f"| C10 | largest seed SD at the best LR | {fmt(c10['max_seed_sd'])} |",
             f"| C5 | row-norm spread ratio LRM/baseline, W_q | {fmt(c10['row_spread_ratio_attn_q'])} |",
             f"| C5 | row-norm spread ratio LRM/baseline, W_gate | {fmt(c10['row_spread_ratio_mlp_gate'])} |"]
    for name, v in s["C1_C2"].items():
        lines.append(f"| C1/C2 | {name}: slope of head RMS vs S; slope of ABM; loss range over S | "
                     f"{fmt(v['slope_head_rms'])}; {fmt(v['slope_abm'])}; {fmt(v['loss_range'])} |")
    for arm, v in s["C3"].items():
        lines.append(f"| C3 | {arm}: loss(S max) - loss(S=1) | {fmt(v['rise'])} |")
    for arm, v in s["C6"].items():
        lines.append(f"| C6 | {arm}: |log10 Mq/Mk|, residual RMS growth | {fmt(v['qk_log10_ratio'])}, "
                     f"{fmt(v['resid_growth'])} |")
    c7 = s["C7"]
    lines += [f"| C7 | slopes vs width: What RMS, logit RMS, projector multiplier | {fmt(c7['slope_w_rms'])}, "
              f"{fmt(c7['slope_logit_rms'])}, {fmt(c7['slope_projector_mult'])} |",
              f"| C8 | early clip factor include / exclude | {fmt(c8['early_clip_factor_include']['mean'])} / "
              f"{fmt(c8['early_clip_factor_exclude']['mean'])} |",
              f"| C8 | val loss include - exclude | {fmt(c8['loss_diff'])} |",
              f"| C9 | val loss head rows - none | {fmt(c9['loss_diff'])} |",
              f"| C4 | block-output RMS ratio scalar-LRM/baseline by depth | {s['C4']['ratio_by_layer']} |"]
    for level, v in (s.get("C10_levels") or {}).get("levels", {}).items():
        lines.append(f"| C10 levels | {level}: val loss baseline / +LRM; LRM gain [95% CI] | {fmt(v['base']['mean'])}"
                     f" / {fmt(v['lrm']['mean'])}; {fmt(v['gain'])} [{fmt(v['ci_lo'])}, {fmt(v['ci_hi'])}] |")
    return "\n".join(lines) + "\n"


def grid_cli(description: str, argv: list[str] | None) -> tuple[dict, str, Path, Path]:
    """The lrm analysis stages' shared command line: (grid config, its path, runs dir, output file)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--grid", required=True)
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return yaml.safe_load(Path(a.grid).read_text()) or {}, a.grid, Path(a.runs_dir), Path(a.out)


def main(argv: list[str] | None = None) -> None:
    cfg, grid, runs_dir, out = grid_cli(__doc__.splitlines()[0], argv)
    sweep = load_sweep(cfg, grid)
    trials = [{**e, "study": "mup_sweep"} for e in trial_grid(sweep)] if sweep else []
    s = analyse(cfg["grid"] + trials, runs_dir)
    atomic_write_json(out, s)
    for name, content in claim_files(s).items():
        atomic_write_json(out.parent / name, content)
    atomic_write_text(out.with_suffix(".md"), summary_md(s))


if __name__ == "__main__":
    main()
