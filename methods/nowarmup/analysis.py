"""The crash study of the AdamW^2 paper from finished runs: LR_crash, the arms table, the benign/malignant
statistic, the tau band and the figures (docs/papers/nowarmup.md). Reads only run files (config.yaml, result.json,
metrics.jsonl), so it re-runs without training.

    python -m methods.nowarmup.analysis --sweep RUN... --arms RUN... [--tau RUN...] [--vision RUN...] --out DIR
        [--figures DIR]

Writes DIR/lr_crash.json (with `prereg`: the crash at the pre-registered LR_crash, estimate/ci/n),
DIR/arms.json, DIR/malignant.json (value, ci_lo, ci_hi, n), DIR/sigma_growth.json (estimate, ci, n),
DIR/tau_band.json (log2_band_width), DIR/cost.json (the speed suite's overhead, with --speed), DIR/vision.json,
DIR/summary.md and, with --figures, sigma1/entropy-over-training plots.
Reconstructed thresholds (the paper gives none): a head is low-entropy below 0.3 nats and
low-rank when the effective rank of its map is below 10% of the sequence length.

What counts as a crash (ours; the harness's own rule is untouched): a run
*crashes* if the harness marked it `diverged` (non-finite loss, or > 1.5x its step-1 loss for 50 steps:
claimbench/divergence.py), or a classifier ended `collapsed` (val accuracy below chance + 5 points: the suite's
classification clause), or a language model *stalled*: its final val loss is within STALL_MARGIN nats of the
unigram loss of its data (the cross-entropy of the val tokens under the train-token frequencies, i.e. it learned
nothing beyond token frequencies). The stall clause is ours: at smoke scale a no-warmup pre-LN GPT spikes early
and then falls back onto that plateau and stays there, instead of producing a non-finite loss, while the same
model with warmup trains below it. LR_crash is reported under both definitions (`lr_crash`: ours,
`lr_crash_diverged`: the harness's divergence only).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import stats as sps

from claimbench.io import atomic_save_png, atomic_write_json, atomic_write_text

LOW_ENTROPY = 0.3  # nats (ours)
LOW_RANK_FRAC = 0.1  # effective rank / sequence length (reconstructed)
MARGIN = 0.05  # nats: the non-inferiority margin of nowarmup.parity_gpt / tau_band (fixed, benchmarks/claims)
STALL_MARGIN = 0.1  # nats: a GPT run that ends within this of the unigram loss has stalled (ours, see above)
LEVEL = 0.90  # two-sided level of the intervals written here: a one-sided 95% bound, as claimbench.hypotheses
MIN_SEEDS = 3  # fewer seeds than this: no interval is written (NaN), so nothing is decided from it


@dataclass
class RunInfo:
    path: Path
    arm: str
    lr: float
    seed: int
    tau: float | None
    status: str
    diverged_at: int | None
    val_loss: float | None
    seq_len: int
    rows: list[dict] = field(repr=False, default_factory=list)
    workload: str = "gpt"
    collapsed: bool = False  # classifier: final val accuracy below chance + 5 points (the harness's flag)
    unigram: float | None = None  # LM: the unigram loss of its data (nats), the stall reference
    val_acc: float | None = None
    wall_s: float | None = None  # the harness's wall-clock for the run (the study's cost line)


def crash_kind(r: RunInfo) -> str | None:
    """'diverged' | 'collapsed' | 'stalled' | None: our crash definition (module docstring)."""
    if r.status == "diverged":
        return "diverged"
    if r.collapsed:
        return "collapsed"
    if r.unigram is not None and r.val_loss is not None and r.val_loss > r.unigram - STALL_MARGIN:
        return "stalled"
    return None


@functools.cache
def unigram_loss(data_dir: str) -> float | None:
    """Cross-entropy (nats) of the val tokens under the add-one-smoothed train-token frequencies: the loss of a
    model that learned only token frequencies, the plateau a stalled run sits on. None without token files."""
    d = Path(data_dir)
    if not ((d / "train.bin").is_file() and (d / "val.bin").is_file()):
        return None
    vocab = int(json.loads((d / "meta.json").read_text())["vocab_size"])  # the workload's token files
    train = np.memmap(d / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(d / "val.bin", dtype=np.uint16, mode="r")
    p = (np.bincount(train, minlength=vocab) + 1.0) / (len(train) + vocab)
    q = np.bincount(val, minlength=vocab) / len(val)
    return float(-(q * np.log(p)).sum())


def arm_of(cfg: dict) -> tuple[str, float | None]:
    """The study arm of a run config, and its tau for AdamW^2 runs."""
    recipe = cfg["recipe"]["name"]
    methods = {m["name"]: m.get("options", {}) for m in cfg.get("methods", [])}
    if "adamw2" in methods:
        from methods.nowarmup.method import DEFAULT_TAU

        return "adamw2" + ("_warmup" if recipe == "adamw" else ""), float(methods["adamw2"].get("tau", DEFAULT_TAU))
    if "sigma_reparam" in methods:
        return "sigma_reparam", None
    if cfg.get("model", {}).get("qk_norm"):
        return "qk_norm", None
    return {"adamw": "warmup", "adamw_nowarmup": "nowarmup", "radam": "radam",
            "replayed_warmup": "replayed"}.get(recipe, recipe), None


def load_run(path: Path) -> RunInfo:
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    res = json.loads((path / "result.json").read_text())
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines() if x.strip()]
    arm, tau = arm_of(cfg)
    if cfg["workload"] != "gpt":  # vision arms are tabled apart from the GPT ones
        arm = f"{cfg['workload']}_{arm}"
    lm = cfg["workload"] == "gpt" and cfg.get("data", {}).get("dir")
    return RunInfo(path, arm, float(cfg["train"]["lr"]), int(cfg["seed"]), tau, res["status"],
                   res.get("diverged_at"), res.get("final_val_loss"),
                   int(cfg.get("model", {}).get("block_size") or 128), rows, workload=cfg["workload"],
                   collapsed=bool(res.get("collapsed")), unigram=unigram_loss(str(lm)) if lm else None,
                   val_acc=res.get("final_val_acc"), wall_s=res.get("wall_s"))


def _frac(v: list[bool]) -> float | None:
    return sum(v) / len(v) if v else None


def lr_crash(runs: list[RunInfo], arm_lrs: list[float] | None = None) -> dict:
    """Smallest LR at which >= 2/3 of the no-warmup seeds crash while no warmup seed does (ours), under
    our crash definition (`lr_crash`) and under the harness's divergence alone (`lr_crash_diverged`).
    `crash_frac` (the crash claim's estimate): the largest no-warmup crashed fraction over the LRs at which no
    warmup seed crashed (0 if none). With `arm_lrs`, `arms_at_crash` says whether those are LR_crash and 3x."""
    table = {}
    for lr in sorted({r.lr for r in runs}):
        rs = {a: [r for r in runs if r.lr == lr and r.arm == a] for a in ("nowarmup", "warmup")}
        table[lr] = {a: _frac([crash_kind(r) is not None for r in v]) for a, v in rs.items()}
        table[lr]["diverged"] = {a: _frac([r.status == "diverged" for r in v]) for a, v in rs.items()}
        table[lr]["kinds"] = {a: sorted(k for r in v if (k := crash_kind(r))) for a, v in rs.items()}
        table[lr]["val_loss"] = {a: [r.val_loss for r in v] for a, v in rs.items()}
        table[lr]["seeds"] = {a: len(v) for a, v in rs.items()}

    def first(get) -> float | None:
        return next((lr for lr, t in table.items() if get(t)["nowarmup"] is not None
                     and get(t)["nowarmup"] >= 2 / 3 - 1e-9 and get(t)["warmup"] == 0), None)

    def best(get) -> float:
        return max((get(t)["nowarmup"] for t in table.values() if get(t)["warmup"] == 0
                    and get(t)["nowarmup"] is not None), default=0.0)

    crash = first(lambda t: t)
    unigram = sorted({r.unigram for r in runs if r.unigram is not None})
    out = {"lr_crash": crash, "lr_crash_diverged": first(lambda t: t["diverged"]),
           "crash_frac": best(lambda t: t), "crash_frac_diverged": best(lambda t: t["diverged"]),
           "by_lr": {str(k): v for k, v in table.items()},
           "rule": "smallest LR with crashed fraction >= 2/3 without warmup and 0 with warmup",
           "crash_definition": f"diverged (harness) or collapsed (val acc < chance + 5 points) or stalled (final val "
                               f"loss > unigram loss - {STALL_MARGIN} nats); ours, methods/nowarmup/analysis.py",
           "unigram_loss": unigram[0] if len(unigram) == 1 else unigram or None, "stall_margin": STALL_MARGIN,
           "highest_lr": max(table, default=None)}
    # numeric twins for the claim tables (claimbench.study reads numbers): NaN where no LR crashes
    out["lr_crash_num"] = math.nan if crash is None else crash
    out["lr_crash_diverged_num"] = math.nan if out["lr_crash_diverged"] is None else out["lr_crash_diverged"]
    if arm_lrs:
        want = sorted({crash, 3 * crash}) if crash is not None else None
        out["arm_lrs"] = sorted(arm_lrs)
        out["arms_at_crash"] = want is not None and all(
            any(math.isclose(a, w, rel_tol=1e-6) for a in arm_lrs) for w in want)
    return out


def arms_table(runs: list[RunInfo]) -> dict:
    out: dict = {}
    for lr in sorted({r.lr for r in runs}):
        for arm in sorted({r.arm for r in runs if r.lr == lr}):
            rs = [r for r in runs if r.lr == lr and r.arm == arm]
            ok = [r.val_loss for r in rs if r.status == "ok" and r.val_loss is not None]
            out.setdefault(str(lr), {})[arm] = {
                "seeds": len(rs), "diverged": sum(r.status == "diverged" for r in rs),
                "crashed": sum(crash_kind(r) is not None for r in rs),
                "val_loss_mean": statistics.mean(ok) if ok else None,
                "val_loss_sd": statistics.stdev(ok) if len(ok) > 1 else None}
    return out


def _last_probe(r: RunInfo) -> dict | None:
    """The last probe row before divergence (or at the end)."""
    rows = [x for x in r.rows if "attn/entropy_min" in x and (r.diverged_at is None or x["step"] < r.diverged_at)]
    return rows[-1] if rows else None


def low_entropy_heads(r: RunInfo) -> tuple[int, int]:
    """(low-entropy heads, of which low-rank) at the run's last probe."""
    row = _last_probe(r)
    if row is None:
        return 0, 0
    heads = [k.split("/")[-1] for k in row if k.startswith("attn/head_entropy/")]
    low = [h for h in heads if row[f"attn/head_entropy/{h}"] < LOW_ENTROPY]
    return len(low), sum(row[f"attn/head_erank/{h}"] < LOW_RANK_FRAC * r.seq_len for h in low)


def _share(xs: list[tuple[int, int]]) -> float:
    n = sum(a for a, _ in xs)
    return sum(b for _, b in xs) / n if n else math.nan


def _share_difference(first: list, second: list, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(share(first) - share(second), 95% percentile bootstrap interval over runs, each group resampled)."""
    value = _share(first) - _share(second)
    rng = random.Random(seed)
    boots = []
    for _ in range(n_boot if first and second else 0):
        d = _share(rng.choices(first, k=len(first))) - _share(rng.choices(second, k=len(second)))
        if math.isfinite(d):
            boots.append(d)
    boots.sort()
    ci = (boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]) if len(boots) > 20 else (math.nan,) * 2
    return value, ci[0], ci[1]


def malignant(runs: list[RunInfo], n_boot: int = 2000, seed: int = 0, lr_crash: float | None = None) -> dict:
    """Share of low-entropy heads that are also low-rank in crashed runs minus that share in stable runs;
    percentile bootstrap over runs. Positive: low rank goes with the crash (malignant vs benign). Crashed: our
    crash definition (crash_kind), read at the last probe before `diverged_at` (or the run's last probe).

    Placebo (`placebo`): the same difference between stable runs at the pre-registered LR_crash or above and
    stable runs below it. No run of either group crashed, so a difference there is the LR's, not the crash's."""
    crashed = [low_entropy_heads(r) for r in runs if crash_kind(r) is not None]
    stable_runs = [r for r in runs if crash_kind(r) is None and r.status == "ok"]
    stable = [low_entropy_heads(r) for r in stable_runs]
    value, lo, hi = _share_difference(crashed, stable, n_boot, seed)
    out = {"value": value, "ci_lo": lo, "ci_hi": hi,
           "n": len(crashed) + len(stable), "crashed_runs": len(crashed), "stable_runs": len(stable),
           "low_entropy_heads": {"crashed": sum(a for a, _ in crashed), "stable": sum(a for a, _ in stable)},
           "thresholds": {"entropy_nats": LOW_ENTROPY, "erank_frac_of_seq": LOW_RANK_FRAC}}
    if lr_crash is not None:
        high = [r for r in stable_runs if r.lr >= lr_crash]
        low = [r for r in stable_runs if r.lr < lr_crash]
        pv, plo, phi = _share_difference([low_entropy_heads(r) for r in high], [low_entropy_heads(r) for r in low],
                                         n_boot, seed)
        # one group empty (a grid with LR_crash only, as at smoke): n = 0, which the judge reads as an unchecked
        # placebo, never as a passed one; there every crashed and stable run shares the one LR
        out["placebo"] = {"estimate": pv, "ci_lo": plo, "ci_hi": phi, "n": len(high) + len(low) if high and low else 0,
                          "what": f"stable runs at lr >= {lr_crash:g} (LR_crash) minus stable runs below it",
                          "runs": sorted(r.path.name for r in high + low)}
        if not (high and low):
            out["placebo"]["reason"] = f"no stable runs {'below' if high else 'at or above'} LR_crash {lr_crash:g}"
        out["adamw2"] = malignant_vs_adamw2(runs, lr_crash, n_boot, seed)
    return out


def malignant_vs_adamw2(runs: list[RunInfo], lr: float, n_boot: int = 2000, seed: int = 0) -> dict:
    """The same share (low-entropy heads that are also low-rank, at each run's last probe before a crash), in the
    no-warmup AdamW runs minus the AdamW^2 runs at the pre-registered LR_crash, whatever each run's crash status:
    positive when AdamW^2 removes the malignant collapse plain no-warmup AdamW shows (nowarmup.adamw2_collapse).
    `placebo`: warmup minus AdamW^2, two arms that train (positive there: AdamW^2 has fewer low-rank heads than any
    AdamW, not a collapse removed)."""
    at = {a: [r for r in runs if r.arm == a and math.isclose(r.lr, lr, rel_tol=1e-6)]
          for a in ("nowarmup", "adamw2", "warmup")}
    heads = {a: [low_entropy_heads(r) for r in v] for a, v in at.items()}
    value, lo, hi = _share_difference(heads["nowarmup"], heads["adamw2"], n_boot, seed)
    pv, plo, phi = _share_difference(heads["warmup"], heads["adamw2"], n_boot, seed)
    return {"value": value, "ci_lo": lo, "ci_hi": hi, "n": len(at["nowarmup"]) + len(at["adamw2"]),
            "runs": {a: len(v) for a, v in at.items()}, "lr": lr,
            "low_entropy_heads": {a: sum(h for h, _ in v) for a, v in heads.items()},
            "placebo": {"estimate": pv, "ci_lo": plo, "ci_hi": phi,
                        "n": len(at["warmup"]) + len(at["adamw2"]) if at["warmup"] and at["adamw2"] else 0,
                        "what": "warmup AdamW runs minus AdamW^2 runs at LR_crash (neither crashes)"}}


def tau_band(tau_runs: list[RunInfo], warmup_runs: list[RunInfo], margin: float = MARGIN) -> dict:
    """Widest contiguous band of tau (log2 units) whose runs are each shown no worse than the warmup runs by more
    than the fixed `margin` (nats): the one-sided upper bound (LEVEL) of the paired-by-seed difference is below it.
    Descriptive: nowarmup.tau_band's verdict is its own non-inferiority test on the tau = 1.0 runs. A diverged or
    stalled tau run is a miss (+inf loss): that tau is not good, it is never dropped."""
    ref = {r.seed: _loss_or_miss(r) for r in warmup_runs}
    if not ref or not tau_runs:
        return {"log2_band_width": None, "reason": "no warmup reference or no tau runs"}
    per_tau = {}
    for tau in sorted({r.tau for r in tau_runs}):
        rs = {r.seed: _loss_or_miss(r) for r in tau_runs if r.tau == tau}
        seeds = sorted(set(rs) & set(ref))
        d = [rs[k] - ref[k] for k in seeds]
        _, lo, hi = t_interval(d)
        per_tau[tau] = {"diff_mean": float(np.mean(d)) if d else None, "diff_ci": [lo, hi], "n": len(d),
                        "good": bool(hi < margin), "shown_worse": bool(lo > margin),
                        "missed": sum(not math.isfinite(v) for v in rs.values())}
    best, run = 0.0, []
    for tau, t in per_tau.items():
        run = [*run, tau] if t["good"] else []
        if run:
            best = max(best, math.log2(run[-1] / run[0]))
    any_good = any(t["good"] for t in per_tau.values())
    return {"log2_band_width": best if any_good else -1.0, "margin": margin, "level": LEVEL,
            "warmup_val_loss": float(np.mean(list(ref.values()))), "per_tau": {str(k): v for k, v in per_tau.items()}}


def _loss_or_miss(r: RunInfo) -> float:
    """Final val loss; +inf for a crash (our definition) or a run without one: a miss, counted, never dropped."""
    if crash_kind(r) is not None or r.val_loss is None or not math.isfinite(r.val_loss):
        return math.inf
    return float(r.val_loss)


def t_interval(x: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi) of the mean over seeds, Student t; NaN bounds below MIN_SEEDS values or with a miss (inf)."""
    a = np.asarray(x, float)
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    mean = float(a.mean())
    if len(a) < MIN_SEEDS or not np.all(np.isfinite(a)):
        return mean, math.nan, math.nan
    if float(a.std(ddof=1)) == 0.0:
        return mean, mean, mean  # a point: the engine reads [x, x] as no interval
    ci = sps.ttest_1samp(a, 0.0).confidence_interval(level)
    return mean, float(ci.low), float(ci.high)


def height(r: RunInfo) -> float:
    """How far above the stall line (unigram loss - STALL_MARGIN) the run ended, nats: > 0 is a stall. A diverged
    run (or one without a val loss) enters at STALL_MARGIN, the height of a run on the unigram plateau: the least a
    crash counts as, so it is a crash and keeps the interval finite."""
    if r.unigram is None:
        return math.nan
    if r.status == "diverged" or r.val_loss is None or not math.isfinite(r.val_loss):
        return STALL_MARGIN
    return float(r.val_loss) - (r.unigram - STALL_MARGIN)


def prereg_crash(runs: list[RunInfo], lr: float | None) -> dict:
    """The crash at the pre-registered LR_crash (the arms' lowest LR, fixed from the pilot before the grid ran):
    each arm's mean height above the stall line with its t interval over seeds (LEVEL), and k of n stalled.
    nowarmup.crash is reproduced when the no-warmup interval lies above the line: a single seed near the line
    leaves it inconclusive instead of flipping the verdict on a rerun."""
    out: dict = {"lr": lr, "stall_margin": STALL_MARGIN, "level": LEVEL, "min_seeds": MIN_SEEDS}
    for arm, pre in (("nowarmup", ""), ("warmup", "warmup_")):
        rs = sorted((r for r in runs if r.arm == arm and lr is not None and math.isclose(r.lr, lr, rel_tol=1e-6)),
                    key=lambda r: r.seed)
        hs = [height(r) for r in rs]
        est, lo, hi = t_interval(hs) if hs and all(math.isfinite(h) for h in hs) else (math.nan,) * 3
        out.update({f"{pre}estimate": est, f"{pre}ci_lo": lo, f"{pre}ci_hi": hi, f"{pre}n": len(rs),
                    f"{pre}heights": hs, f"{pre}seeds": [r.seed for r in rs],
                    f"crashed_{arm}": sum(crash_kind(r) is not None for r in rs)})
    return out


def _sigma_max(r: RunInfo) -> float | None:
    """Max over the run of sigma1(W_q^T W_k) (max over layers and heads), before diverged_at: a diverged run keeps
    the values it logged."""
    vals = [x["attn/qk_sigma1_max"] for x in r.rows if "attn/qk_sigma1_max" in x
            and (r.diverged_at is None or x["step"] < r.diverged_at)]
    vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(vals) if vals else None


def sigma_growth(runs: list[RunInfo], lr: float | None, num: str = "nowarmup", ref: str = "warmup") -> dict:
    """Max sigma1(W_q^T W_k), the `num` arm over the `ref` arm (no warmup over warmup: nowarmup.sigma_growth),
    paired by seed at the pre-registered LR_crash: the geometric mean ratio with the t interval (LEVEL) of the log
    ratios over seeds, and n pairs. The default call also carries, as its block `adamw2`, no warmup over AdamW^2
    (nowarmup.adamw2_sigma) with that block's `placebo`, warmup over AdamW^2 (two arms without a runaway)."""
    at = {a: {r.seed: _sigma_max(r) for r in runs if r.arm == a and lr is not None
              and math.isclose(r.lr, lr, rel_tol=1e-6)} for a in (num, ref)}
    seeds = sorted(set(at[num]) & set(at[ref]))
    unprobed = [s for s in seeds if not (at[num][s] and at[ref][s])]
    logs = [math.log(at[num][s] / at[ref][s]) for s in seeds if s not in unprobed]
    m, lo, hi = t_interval(logs) if not unprobed else (math.nan,) * 3
    out = {"estimate": math.exp(m) if math.isfinite(m) else math.nan,
           "ci_lo": math.exp(lo) if math.isfinite(lo) else math.nan,
           "ci_hi": math.exp(hi) if math.isfinite(hi) else math.nan, "n": len(seeds) if not unprobed else 0,
           "lr": lr, "level": LEVEL, "ratio": f"{num} / {ref}", "seeds": seeds, "unprobed_seeds": unprobed,
           "sigma_max": {a: {str(k): v for k, v in d.items()} for a, d in at.items()}}
    if (num, ref) == ("nowarmup", "warmup"):
        out["adamw2"] = {**sigma_growth(runs, lr, "nowarmup", "adamw2"),
                         "placebo": sigma_growth(runs, lr, "warmup", "adamw2")}
    return out


def cost_from_speed(path: str | None) -> dict:
    """The speed suite's step-time overhead of AdamW^2 (scripts/speed/speed.py: method and baseline stepped in
    interleaved blocks in one process), if its output is there: with its interval and n from the suite's
    `overheads` (an older output without them: the median, interval NaN); run wall clocks are never used."""
    out = {"estimate": math.nan, "ci_lo": math.nan, "ci_hi": math.nan, "n": math.nan, "source": path}
    if not path or not Path(path).is_file():
        return {**out, "reason": "no speed-suite output"}
    data = json.loads(Path(path).read_text())
    iv = data.get("overheads", {}).get("adamw2")
    if iv:
        return {**out, "estimate": iv["overhead"], "ci_lo": iv["ci_lo"], "ci_hi": iv["ci_hi"], "n": iv["n"],
                "clock": iv.get("clock"), "setting": iv.get("setting"),
                "reason": f"mean of per-round ratios, {iv.get('interval')} interval"}
    rows = [r for r in data.get("methods", []) if r.get("method") == "adamw2"]
    if not rows:
        return {**out, "reason": "the speed-suite output has no adamw2 row"}
    r = rows[0]
    return {**out, "estimate": float(r["overhead_wall"]), "overhead_cpu": r.get("overhead_cpu"),
            "setting": r.get("setting"), "steps": r.get("steps"),
            "reason": "medians of interleaved blocks, no interval: the speed suite does not give one"}


def figures(runs: list[RunInfo], out: Path) -> list[Path]:
    """sigma1(W_q^T W_k) (max over layers) and min attention entropy over training, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    colors = {"warmup": "tab:blue", "nowarmup": "tab:red", "adamw2": "tab:green"}
    for key, label, name in (("attn/qk_sigma1_max", "max over layers of sigma1(W_q^T W_k)", "sigma1"),
                             ("attn/entropy_min", "min attention entropy (nats)", "entropy")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in runs:
            if r.arm not in colors:
                continue
            pts = [(x["step"], x[key]) for x in r.rows if key in x]
            if pts:
                ax.plot(*zip(*pts, strict=True), color=colors[r.arm], alpha=0.7,
                        label=f"{r.arm} lr={r.lr:g}", ls="--" if crash_kind(r) else "-")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if name == "sigma1":
            ax.set_yscale("log")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax.set_title("dashed: crashed runs (diverged or stalled, ours)")
        fig.tight_layout()
        paths.append(atomic_save_png(fig, out / f"{name}.png"))
        plt.close(fig)
    return paths


def vision_table(runs: list[RunInfo]) -> dict:
    """Per vision arm: seeds, harness-diverged, collapsed (below chance + 5 points) and val accuracy. A collapsed
    no-warmup run counts as a crash (the classification clause), as in crash_kind."""
    out: dict = {}
    for arm in sorted({r.arm for r in runs}):
        rs = [r for r in runs if r.arm == arm]
        acc = [r.val_acc for r in rs if r.val_acc is not None]
        out[arm] = {"lr": sorted({r.lr for r in rs}), "seeds": len(rs),
                    "diverged": sum(r.status == "diverged" for r in rs), "collapsed": sum(r.collapsed for r in rs),
                    "crashed": sum(crash_kind(r) is not None for r in rs),
                    "val_acc_mean": statistics.mean(acc) if acc else None,
                    "val_acc_sd": statistics.stdev(acc) if len(acc) > 1 else None}
    return out


def _f(x, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def cost(runs: list[RunInfo]) -> dict:
    """Summed wall-clock of the study's runs: the CPU-seconds it costs (each smoke run uses one thread), so
    seconds / cores is the time on an idle machine. On a shared machine wall_s includes waiting for the CPU."""
    walls = [r.wall_s for r in runs if r.wall_s is not None]
    return {"runs": len(runs), "timed": len(walls), "wall_s_sum": sum(walls),
            "wall_s_max": max(walls, default=None)}


def summary_md(crash: dict, arms: dict, mal: dict, band: dict, vision: dict | None = None,
               spent: dict | None = None) -> str:
    lines = ["# nowarmup crash study (AdamW^2)", "",
             f"LR_crash: **{crash['lr_crash']}** ({crash['rule']}; crash = {crash['crash_definition']}). "
             f"With the harness's divergence rule alone: {crash['lr_crash_diverged']}. Unigram loss of the data: "
             f"{crash.get('unigram_loss')} nats.", ""]
    if "prereg" in crash:
        pr = crash["prereg"]
        lines += [f"At the pre-registered LR_crash {pr['lr']}: height of the final val loss above the stall line "
                  f"(unigram - {pr['stall_margin']} nats), mean [{pr['level']:.0%} t interval] over seeds: no warmup "
                  f"{_f(pr['estimate'])} [{_f(pr['ci_lo'])}, {_f(pr['ci_hi'])}] ({pr['crashed_nowarmup']} of "
                  f"{pr['n']} stalled), warmup {_f(pr['warmup_estimate'])} [{_f(pr['warmup_ci_lo'])}, "
                  f"{_f(pr['warmup_ci_hi'])}] ({pr['crashed_warmup']} of {pr['warmup_n']}).", ""]
    if "arms_at_crash" in crash:
        lines += [f"All-arms LRs {crash['arm_lrs']}: "
                  + ("LR_crash and 3x LR_crash." if crash["arms_at_crash"] else "NOT LR_crash and 3x LR_crash."), ""]
    lines += ["| lr | crashed without warmup | crashed with warmup | kinds (no warmup / warmup) | diverged (harness) "
              "without / with warmup | final val loss without / with warmup |", "|---|---|---|---|---|---|"]
    for lr, t in crash["by_lr"].items():
        vl = {a: ", ".join(_f(v, ".3f") for v in t["val_loss"][a]) for a in ("nowarmup", "warmup")}
        lines.append(f"| {lr} | {_f(t['nowarmup'], '.2f')} of {t['seeds']['nowarmup']} | {_f(t['warmup'], '.2f')} of "
                     f"{t['seeds']['warmup']} | {', '.join(t['kinds']['nowarmup']) or '-'} / "
                     f"{', '.join(t['kinds']['warmup']) or '-'} | {_f(t['diverged']['nowarmup'], '.2f')} / "
                     f"{_f(t['diverged']['warmup'], '.2f')} | {vl['nowarmup']} / {vl['warmup']} |")
    lines += ["", "| lr | arm | seeds | diverged (harness) | crashed (ours) | val loss (mean +- sd) |",
              "|---|---|---|---|---|---|"]
    for lr, t in arms.items():
        for arm, a in t.items():
            v = "-" if a["val_loss_mean"] is None else f"{a['val_loss_mean']:.4f} +- {a['val_loss_sd'] or 0:.4f}"
            lines.append(f"| {lr} | {arm} | {a['seeds']} | {a['diverged']} | {a.get('crashed', '-')} | {v} |")
    if vision:
        lines += ["", "| vision arm | lr | seeds | diverged | collapsed | val acc (mean +- sd) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {arm} | {v['lr']} | {v['seeds']} | {v['diverged']} | {v['collapsed']} | "
                  f"{_f(v['val_acc_mean'])} +- {_f(v['val_acc_sd'])} |" for arm, v in vision.items()]
    lines += ["", f"Malignant-collapse statistic: {mal['value']} (CI {mal['ci_lo']}, {mal['ci_hi']}); crashed runs "
              f"{mal['crashed_runs']}, stable runs {mal['stable_runs']}; low-entropy heads {mal['low_entropy_heads']}",
              "", f"tau band (log2 width): {band.get('log2_band_width')}", ""]
    if spent:
        lines += [f"Cost: {spent['runs']} runs read (those another grid trained included), summed wall_s "
                  f"{spent['wall_s_sum']:.0f} s, one thread each: {spent['wall_s_sum'] / 2 / 60:.1f} min on 2 cores, "
                  f"an upper bound on a shared machine, where wall_s includes the wait for the CPU; longest run "
                  f"{_f(spent['wall_s_max'], '.0f')} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", nargs="*", default=[], help="LR sweep runs (adamw and adamw_nowarmup)")
    p.add_argument("--arms", nargs="*", default=[], help="all arms at LR_crash and 3x LR_crash")
    p.add_argument("--tau", nargs="*", default=[], help="adamw2 runs over tau (with their warmup references in --arms)")
    p.add_argument("--vision", nargs="*", default=[], help="ViT/Swin runs (warmup, no warmup, AdamW^2)")
    p.add_argument("--speed", help="the speed suite's output (results/speed.json), for cost.json; optional")
    p.add_argument("--out", required=True)
    p.add_argument("--figures")
    a = p.parse_args(argv)
    load = lambda paths: [load_run(Path(x).parent if x.endswith(".json") else Path(x)) for x in paths]  # noqa: E731
    sweep, arms, taus, vision = load(a.sweep), load(a.arms), load(a.tau), load(a.vision)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    crash = lr_crash(sweep, sorted({r.lr for r in arms}))
    # the pre-registered LR_crash: the arms run at LR_crash and 3x, placed from the pilot before the grid ran
    lr0_crash = min((r.lr for r in arms if r.workload == "gpt"), default=None)
    both = list({r.path: r for r in sweep + arms}.values())
    crash["prereg"] = prereg_crash(both, lr0_crash)
    growth = sigma_growth(both, lr0_crash)
    table = arms_table(arms)
    mal = malignant(list({r.path: r for r in sweep + arms}.values()), lr_crash=lr0_crash)  # sweep, arms share runs
    lr0 = min((r.lr for r in taus), default=None)
    taus += [r for r in arms if r.arm == "adamw2" and r.lr == lr0 and r.path not in {t.path for t in taus}]
    band = tau_band(taus, [r for r in arms if r.arm == "warmup" and r.lr == lr0])
    vis = vision_table(vision)
    spent = cost(list({r.path: r for r in sweep + arms + taus + vision}.values()))
    for name, obj in (("lr_crash", crash), ("arms", table), ("malignant", mal), ("tau_band", band),
                      ("vision", vis), ("sigma_growth", growth), ("cost", cost_from_speed(a.speed))):
        atomic_write_json(out / f"{name}.json", obj)
    atomic_write_text(out / "summary.md", summary_md(crash, table, mal, band, vis, spent))
    if a.figures:
        figures(list({r.path: r for r in sweep + arms}.values()), Path(a.figures))


if __name__ == "__main__":
    main()
