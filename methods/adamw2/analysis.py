"""The crash study of the AdamW^2 paper from finished runs: LR_crash, the arms table, the benign/malignant
statistic, the tau band and the figures (spec section 5). Reads only run files (config.yaml, result.json,
metrics.jsonl), so it re-runs without training.

    python -m methods.adamw2.analysis --sweep RUN... --arms RUN... [--tau RUN...] --out DIR [--figures DIR]

Writes DIR/lr_crash.json, DIR/arms.json, DIR/malignant.json (value, ci_lo, ci_hi), DIR/tau_band.json
(log2_band_width), DIR/summary.md and, with --figures, sigma1/entropy-over-training plots.
Reconstructed thresholds (the paper gives none, spec section 5): a head is low-entropy below 0.3 nats and
low-rank when the effective rank of its map is below 10% of the sequence length.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LOW_ENTROPY = 0.3  # nats (spec section 5, row 5)
LOW_RANK_FRAC = 0.1  # effective rank / sequence length (reconstructed)
TOLERANCE = 0.02  # nats: the parity tolerance floor (spec section 5, row 1)


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


def arm_of(cfg: dict) -> tuple[str, float | None]:
    """The study arm of a run config, and its tau for AdamW^2 runs."""
    recipe = cfg["recipe"]["name"]
    methods = {m["name"]: m.get("options", {}) for m in cfg.get("methods", [])}
    if "adamw2" in methods:
        from methods.adamw2.method import DEFAULT_TAU

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
    return RunInfo(path, arm, float(cfg["train"]["lr"]), int(cfg["seed"]), tau, res["status"],
                   res.get("diverged_at"), res.get("final_val_loss"),
                   int(cfg.get("model", {}).get("block_size") or 128), rows)


def lr_crash(runs: list[RunInfo]) -> dict:
    """Smallest LR at which >= 2/3 of the no-warmup seeds diverge while no warmup seed does."""
    table = {}
    for lr in sorted({r.lr for r in runs}):
        frac = {a: [r.status == "diverged" for r in runs if r.lr == lr and r.arm == a] for a in ("nowarmup", "warmup")}
        table[lr] = {a: (sum(v) / len(v) if v else None) for a, v in frac.items()}
        table[lr]["seeds"] = {a: len(v) for a, v in frac.items()}
    crash = next((lr for lr, t in table.items() if t["nowarmup"] is not None and t["nowarmup"] >= 2 / 3 - 1e-9
                  and t["warmup"] == 0), None)
    return {"lr_crash": crash, "by_lr": {str(k): v for k, v in table.items()},
            "rule": "smallest LR with diverged fraction >= 2/3 without warmup and 0 with warmup"}


def arms_table(runs: list[RunInfo]) -> dict:
    out: dict = {}
    for lr in sorted({r.lr for r in runs}):
        for arm in sorted({r.arm for r in runs if r.lr == lr}):
            rs = [r for r in runs if r.lr == lr and r.arm == arm]
            ok = [r.val_loss for r in rs if r.status == "ok" and r.val_loss is not None]
            out.setdefault(str(lr), {})[arm] = {
                "seeds": len(rs), "diverged": sum(r.status == "diverged" for r in rs),
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


def malignant(runs: list[RunInfo], n_boot: int = 2000, seed: int = 0) -> dict:
    """Share of low-entropy heads that are also low-rank in crashed runs minus that share in stable runs;
    percentile bootstrap over runs. Positive: low rank goes with the crash (malignant vs benign)."""
    crashed = [low_entropy_heads(r) for r in runs if r.status == "diverged"]
    stable = [low_entropy_heads(r) for r in runs if r.status == "ok"]

    def share(xs):
        n = sum(a for a, _ in xs)
        return sum(b for _, b in xs) / n if n else math.nan

    value = share(crashed) - share(stable)
    rng = random.Random(seed)
    boots = []
    for _ in range(n_boot if crashed and stable else 0):
        d = share(rng.choices(crashed, k=len(crashed))) - share(rng.choices(stable, k=len(stable)))
        if math.isfinite(d):
            boots.append(d)
    boots.sort()
    ci = (boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]) if len(boots) > 20 else (None, None)
    return {"value": value if math.isfinite(value) else None, "ci_lo": ci[0], "ci_hi": ci[1],
            "crashed_runs": len(crashed), "stable_runs": len(stable),
            "low_entropy_heads": {"crashed": sum(a for a, _ in crashed), "stable": sum(a for a, _ in stable)},
            "thresholds": {"entropy_nats": LOW_ENTROPY, "erank_frac_of_seq": LOW_RANK_FRAC}}


def tau_band(tau_runs: list[RunInfo], warmup_runs: list[RunInfo]) -> dict:
    """Widest contiguous band of tau (log2 units) whose runs all train and sit within max(2 SD, 0.02) of warmup."""
    ref = [r.val_loss for r in warmup_runs if r.status == "ok" and r.val_loss is not None]
    if not ref or not tau_runs:
        return {"log2_band_width": None, "reason": "no warmup reference or no tau runs"}
    tol = max(2 * statistics.stdev(ref) if len(ref) > 1 else 0.0, TOLERANCE)
    ref_mean = statistics.mean(ref)
    per_tau = {}
    for tau in sorted({r.tau for r in tau_runs}):
        rs = [r for r in tau_runs if r.tau == tau]
        vals = [r.val_loss for r in rs if r.status == "ok" and r.val_loss is not None]
        good = len(vals) == len(rs) and abs(statistics.mean(vals) - ref_mean) <= tol
        per_tau[tau] = {"val_loss_mean": statistics.mean(vals) if vals else None, "good": good,
                        "diverged": sum(r.status == "diverged" for r in rs)}
    best, run = 0.0, []
    for tau, t in per_tau.items():
        run = [*run, tau] if t["good"] else []
        if run:
            best = max(best, math.log2(run[-1] / run[0]))
    any_good = any(t["good"] for t in per_tau.values())
    return {"log2_band_width": best if any_good else -1.0, "tolerance": tol, "warmup_val_loss": ref_mean,
            "per_tau": {str(k): v for k, v in per_tau.items()}}


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
                        label=f"{r.arm} lr={r.lr:g}", ls="--" if r.status == "diverged" else "-")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if name == "sigma1":
            ax.set_yscale("log")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax.set_title("dashed: diverged runs")
        fig.tight_layout()
        p = out / f"{name}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def summary_md(crash: dict, arms: dict, mal: dict, band: dict) -> str:
    lines = ["# nowarmup crash study (AdamW^2)", "", f"LR_crash: **{crash['lr_crash']}** ({crash['rule']})", "",
             "| lr | diverged without warmup | diverged with warmup |", "|---|---|---|"]
    lines += [f"| {lr} | {t['nowarmup']} of {t['seeds']['nowarmup']} | {t['warmup']} of {t['seeds']['warmup']} |"
              for lr, t in crash["by_lr"].items()]
    lines += ["", "| lr | arm | seeds | diverged | val loss (mean +- sd) |", "|---|---|---|---|---|"]
    for lr, t in arms.items():
        for arm, a in t.items():
            v = "-" if a["val_loss_mean"] is None else f"{a['val_loss_mean']:.4f} +- {a['val_loss_sd'] or 0:.4f}"
            lines.append(f"| {lr} | {arm} | {a['seeds']} | {a['diverged']} | {v} |")
    lines += ["", f"Malignant-collapse statistic: {mal['value']} (CI {mal['ci_lo']}, {mal['ci_hi']}); "
              f"low-entropy heads {mal['low_entropy_heads']}", "",
              f"tau band (log2 width): {band.get('log2_band_width')}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", nargs="*", default=[], help="LR sweep runs (adamw and adamw_nowarmup)")
    p.add_argument("--arms", nargs="*", default=[], help="all arms at LR_crash and 3x LR_crash")
    p.add_argument("--tau", nargs="*", default=[], help="adamw2 runs over tau (with their warmup references in --arms)")
    p.add_argument("--out", required=True)
    p.add_argument("--figures")
    a = p.parse_args(argv)
    load = lambda paths: [load_run(Path(x).parent if x.endswith(".json") else Path(x)) for x in paths]  # noqa: E731
    sweep, arms, taus = load(a.sweep), load(a.arms), load(a.tau)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    crash = lr_crash(sweep)
    table = arms_table(arms)
    mal = malignant(list({r.path: r for r in sweep + arms}.values()))  # sweep and arms share runs
    lr0 = min((r.lr for r in taus), default=None)
    taus += [r for r in arms if r.arm == "adamw2" and r.lr == lr0 and r.path not in {t.path for t in taus}]
    band = tau_band(taus, [r for r in arms if r.arm == "warmup" and r.lr == lr0])
    for name, obj in (("lr_crash", crash), ("arms", table), ("malignant", mal), ("tau_band", band)):
        (out / f"{name}.json").write_text(json.dumps(obj, indent=1) + "\n")
    (out / "summary.md").write_text(summary_md(crash, table, mal, band))
    if a.figures:
        figures(list({r.path: r for r in sweep + arms}.values()), Path(a.figures))


if __name__ == "__main__":
    main()
