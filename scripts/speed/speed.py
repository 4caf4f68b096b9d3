"""The speed suite: harness vs plain PyTorch throughput, method overheads and MFU, with intervals.

1. Throughput: every workload (GPT `smoke` and `gpu` = GPT-2 124M, ViT, Swin, ResMLP at `smoke`) trained by the
   claimbench Trainer vs a plain nanoGPT-style loop over the same model (for ViT/Swin the bare timm model the
   workload builds), optimizer, LR schedule and batches (batch, forward, loss, backward, clip, step; a host sync
   every 10 steps as nanoGPT's logging does). Both arms build a fresh model per repeat (build time not timed),
   are run alternately (A B A B ...) in one process, and each repeat pair's ratio taken, because CPU timings
   drift by tens of percent between repeats: the ratio is the mean over pairs with a 95% interval
   (`ratio_interval`). Wall and process-CPU clocks are both reported: on a loaded machine the CPU clock of a
   1-thread run is the robust one.
2. Method overheads: the per-step time of each method plugin over the same run without it (bench_lrm's trainers
   and interleaved step blocks, the order of the two swapped every round, the methods' metrics at the log
   interval as in a real run): one ratio per round, their mean with a 95% interval; FLeRM's, whose cost is a
   fixed warm-up rather than a per-step one, from bench_flerm's rounds (extrapolated to a 2,000-step run).
3. MFU per workload from claimbench.flops: FLOPs counted from the model, against the measured matmul peak on a CPU
   and the datasheet peak on a known GPU.

    python scripts/speed/speed.py [--quick] [--threads 1] [--note "measured under load"] [--out results/speed/smoke]

Nothing is written unless `--out PREFIX` is given: then PREFIX.json (machine-readable; `overheads` holds each
method's overhead with its interval and n, which the claims nowarmup.cost, lrm.throughput and flerm.overhead
read from results/speed/smoke.json) and PREFIX.md, each via a temporary file and a rename.
    python scripts/speed/speed.py --device cuda --dtype bfloat16 --compile   # on a GPU

Selections (scripts/speed/gpu_check.sh uses them): `--cases gpt:gpu vit:gpu` (workload:size[:batch]), `--steps`
/ `--repeats` for every case, `--gpt-data` / `--image-data` (e.g. synth_data.py's 50,304-token set for GPT-2 124M's
exact shape), `--methods lrm adamw2 jreg --methods-size gpu --methods-batch 12` (the overheads at that size) and
`--flerm-size gpu`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from claimbench.allocator import retain_freed_memory
from claimbench.config import ConfigError, load_config
from claimbench.flops import mfu, peak_flops, train_flops_per_unit
from claimbench.io import atomic_write_json, atomic_write_text, git_sha
from claimbench.testing import REPO
from claimbench.train import Trainer, prepare
from scripts.speed import bench_flerm
from scripts.speed.bench_lrm import make_trainer as make_gpt_trainer
from scripts.speed.bench_lrm import time_block

TARGET = 0.95  # harness / plain throughput on this CPU, every workload
DATA = {"gpt": "data/shakespeare", "vit": "data/fashion-mnist", "swin": "data/fashion-mnist",
        "mlp": "data/fashion-mnist"}
GPU_MICRO_BATCH = 12  # nanoGPT's GPT-2 124M micro-batch (12 x 1024 tokens) on a GPU
LEVEL = 0.95  # the intervals' confidence level


def ratio_interval(ref: list[float], new: list[float], level: float = LEVEL, seed: int = 0) -> dict:
    """new/ref from paired repeats (the same repeat of both arms, adjacent in time): one ratio per pair, their
    mean with a BCa bootstrap interval (scipy.stats.bootstrap, fixed seed: the same timings give the same
    interval) and a t interval beside it. The bootstrap is the one reported (`ci_lo`, `ci_hi`) when it is
    defined; with fewer than 4 pairs, or ratios all equal, the t interval is. Costs are per unit of work (time
    per step), so ratio - 1 is the overhead."""
    from scipy import stats as st

    r = np.asarray(new, dtype=float) / np.asarray(ref, dtype=float)
    n, mean = len(r), float(np.mean(r)) if len(r) else math.nan
    out = {"ratio": mean, "median": float(np.median(r)) if n else math.nan, "n": n, "level": level,
           "ratios": [float(x) for x in r]}
    sd = float(np.std(r, ddof=1)) if n > 1 else math.nan
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan
    out.update(t_lo=mean - half, t_hi=mean + half)
    lo, hi, how = out["t_lo"], out["t_hi"], "t"
    if n >= 4 and sd > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = st.bootstrap((r,), np.mean, confidence_level=level, n_resamples=9999, method="BCa",
                              random_state=np.random.default_rng(seed)).confidence_interval
        if math.isfinite(ci.low) and math.isfinite(ci.high):
            lo, hi, how = float(ci.low), float(ci.high), "bootstrap BCa"
    out.update(ci_lo=lo, ci_hi=hi, interval=how)
    return out


def overhead_summary(iv: dict, clock: str, **extra) -> dict:
    """An interval on a ratio as an overhead (ratio - 1): what the claims read."""
    return {"overhead": iv["ratio"] - 1, "ci_lo": iv["ci_lo"] - 1, "ci_hi": iv["ci_hi"] - 1, "n": iv["n"],
            "level": iv["level"], "interval": iv["interval"], "clock": clock, **extra}


@dataclass(frozen=True)
class Case:
    """One throughput comparison: a workload at a size, timed for `steps` x `repeats` per arm."""

    workload: str
    size: str
    steps: int
    repeats: int
    sets: tuple[str, ...] = ()
    data: str = ""  # data.dir; empty: DATA[workload]

    @property
    def label(self) -> str:
        return f"{self.workload} {self.size}"


def cases(quick: bool, device: str, gpt_gpu_batch: int | None) -> list[Case]:
    """The suite (default: ~8 min on 2 idle cores at 1 thread); --quick: a ~2-minute check that everything runs."""
    q = quick
    gpu_batch = gpt_gpu_batch or (1 if device == "cpu" else GPU_MICRO_BATCH)  # 1 x 1024 tokens: ~5-10 s/step on CPU
    return [Case("gpt", "smoke", 10 if q else 30, 2 if q else 3),
            Case("gpt", "gpu", 1 if q else 2, 2, (f"train.batch_size={gpu_batch}",)),
            Case("vit", "smoke", 5 if q else 15, 2 if q else 3),
            Case("swin", "smoke", 5 if q else 15, 2 if q else 3),
            Case("mlp", "smoke", 60 if q else 300, 2 if q else 3)]  # ~4 ms steps: runs of >= 1 s, else noise


def select_cases(suite: list[Case], specs: list[str] | None, steps: int | None, repeats: int | None,
                 data: dict[str, str]) -> list[Case]:
    """`--cases workload:size[:batch] ...` (a case the suite has keeps its steps, else 20 x 2), then `--steps` /
    `--repeats` for all, and each case's data directory."""
    chosen = list(suite)
    if specs:
        known = {(c.workload, c.size): c for c in suite}
        chosen = []
        for spec in specs:
            parts = spec.split(":")
            if len(parts) not in (2, 3) or parts[0] not in DATA:
                raise ConfigError(f"--cases: '{spec}' is not workload:size[:batch] with workload one of "
                                  f"{', '.join(DATA)}")
            base = known.get((parts[0], parts[1]), Case(parts[0], parts[1], 20, 2))
            sets = tuple(s for s in base.sets if not s.startswith("train.batch_size="))
            if len(parts) == 3:
                sets += (f"train.batch_size={int(parts[2])}",)
            else:
                sets = base.sets
            chosen.append(Case(base.workload, base.size, base.steps, base.repeats, sets))
    return [Case(c.workload, c.size, steps or c.steps, repeats or c.repeats, c.sets, data[c.workload])
            for c in chosen]


def make_trainer(case: Case, steps: int, out: Path, run_sets: tuple[str, ...]) -> Trainer:
    cfg = load_config(REPO / f"benchmarks/configs/{case.workload}.yaml", [
        f"size={case.size}", f"train.steps={steps}", "eval.every=0", "ckpt.every=0", "log.every=10",
        f"data.dir={case.data or REPO / DATA[case.workload]}", *run_sets, *case.sets])
    return Trainer(prepare(cfg, out))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def harness_run(case: Case, steps: int, run_sets: tuple[str, ...]) -> tuple[float, float, int]:
    """(wall s, process CPU s, units) of the Trainer's own fit() loop over `steps` steps."""
    with tempfile.TemporaryDirectory() as d:
        t = make_trainer(case, steps, Path(d) / "run", run_sets)
        t0, c0 = time.perf_counter(), time.process_time()
        t.fit(Path(d) / "metrics.jsonl", Path(d) / "ckpt.pt")
        _sync(t.device)
        units = steps * t.train_cfg.batch_size * (t.run.workload.opts.block_size if case.workload == "gpt" else 1)
        return time.perf_counter() - t0, time.process_time() - c0, units


def bare_logits(workload: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own forward, as a user of it would call it (GPT output object, ResMLP (logits, hidden))."""
    out = model(x)
    if workload == "gpt":
        return out.logits
    return out[0] if workload == "mlp" else out


def plain_run(case: Case, steps: int, run_sets: tuple[str, ...], compile_: bool) -> tuple[float, float, int]:
    """nanoGPT's loop over the same model, param groups, optimizer, schedule and batches; (wall, CPU, units)."""
    with tempfile.TemporaryDirectory() as d:
        t = make_trainer(case, steps, Path(d) / "run", run_sets)  # only for identical model/optimizer/data
        model, opt, wl, tc, lam, dev = t.model, t.optimizer, t.run.workload, t.train_cfg, t.lr_lambda, t.device
        fwd = torch.compile(model) if compile_ else model
        ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if tc.dtype == "bfloat16" else nullcontext()
        model.train()
        units = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for step in range(steps):
            x, y = (v.to(dev, non_blocking=True) for v in wl.train_batch(step, 0, tc.batch_size))
            for g in opt.param_groups:
                g["lr"] = tc.lr * g.get("lr_scale", 1.0) * lam(step)
            with ctx:
                logits = bare_logits(case.workload, fwd, x)
                loss = F.cross_entropy(logits.flatten(0, -2).float(), y.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            units += x.numel() if case.workload == "gpt" else x.shape[0]
            if step % 10 == 0:
                loss.item()
        loss.item()
        _sync(dev)
        return time.perf_counter() - t0, time.process_time() - c0, units


def compare(case: Case, run_sets: tuple[str, ...], compile_: bool) -> dict:
    """Alternating plain/harness repeats; medians of units/s on both clocks, FLOPs per unit and MFU."""
    with tempfile.TemporaryDirectory() as d:  # warm-up (allocator, data pages, compile) and the FLOP count
        t = make_trainer(case, 1, Path(d) / "run", run_sets)
        t.fit(Path(d) / "metrics.jsonl", Path(d) / "ckpt.pt")
        batch = tuple(v.to(t.device) for v in t.run.workload.train_batch(0, 0, t.train_cfg.batch_size))
        flops = train_flops_per_unit(t.run.workload, t.model, batch)
        batch_size, unit = t.train_cfg.batch_size, t.run.workload.unit
        units_per_sample = t.run.workload.batch_units(batch) // batch_size  # tokens per sequence for GPT
        n_params = sum(p.numel() for p in t.model.parameters())
        vocab = int(t.run.workload.meta["vocab_size"]) if case.workload == "gpt" else None
        del t, batch
    runs: dict[str, dict[str, list[float]]] = {a: {"wall": [], "cpu": []} for a in ("plain", "harness")}
    for _ in range(case.repeats):
        for arm, fn in (("plain", lambda: plain_run(case, case.steps, run_sets, compile_)),
                        ("harness", lambda: harness_run(case, case.steps, run_sets))):
            wall, cpu, units = fn()
            runs[arm]["wall"].append(units / wall)
            runs[arm]["cpu"].append(units / cpu)
    med = {a: {c: statistics.median(v) for c, v in r.items()} for a, r in runs.items()}
    # units/s of plain over harness = harness time over plain time per unit: its interval, inverted, is the ratio's
    iv = {c: ratio_interval(runs["harness"][c], runs["plain"][c]) for c in ("wall", "cpu")}
    inv = {c: {"ratio": 1 / v["ratio"], "ci_lo": 1 / v["ci_hi"], "ci_hi": 1 / v["ci_lo"], "n": v["n"],
               "interval": v["interval"]} for c, v in iv.items()}
    return {"workload": case.workload, "size": case.size, "params": n_params, "batch": batch_size, "unit": unit,
            "units_per_sample": units_per_sample,
            "steps": case.steps, "repeats": case.repeats, "sets": list(case.sets),
            "plain_per_s": med["plain"]["wall"], "harness_per_s": med["harness"]["wall"],
            "ratio_wall": med["harness"]["wall"] / med["plain"]["wall"],
            "ratio_cpu": med["harness"]["cpu"] / med["plain"]["cpu"],
            "ratio_wall_interval": inv["wall"], "ratio_cpu_interval": inv["cpu"],
            "runs_per_s": runs, "train_flops_per_unit": flops, "vocab": vocab, "data": case.data}


# method -> (setting, overrides shared by both arms, the method list): each method in its paper's setting
METHODS = {
    "lrm": ("Llama 4L x d128", ("model.arch=llama",), [{"name": "lrm"}]),
    "adamw2": ("GPT-2 4L x d128, AdamW without warmup", ("recipe=adamw_nowarmup",), ["adamw2"]),
    "jreg": ("Llama 6L x d128, lam 0.1 (final layer)", ("model.arch=llama", "model.n_layer=6"),
             [{"name": "jreg", "lam": 0.1}]),
    "zloss": ("GPT-2 4L x d128, coef 1e-4", (), [{"name": "zloss"}]),
    # the method matrix's other rows and the interaction table's combinations (results/methods.md,
    # results/interactions.md read these by name)
    "mup": ("GPT-2 4L x d128, muP multipliers", (), [{"name": "mup"}]),
    "sigma_reparam": ("GPT-2 4L x d128", (), [{"name": "sigma_reparam"}]),
    "lrm+jreg": ("Llama 6L x d128, jreg lam 0.1", ("model.arch=llama", "model.n_layer=6"),
                 [{"name": "lrm"}, {"name": "jreg", "lam": 0.1}]),
    "lrm+adamw2": ("Llama 4L x d128, AdamW without warmup", ("model.arch=llama", "recipe=adamw_nowarmup"),
                   [{"name": "lrm"}, "adamw2"]),
    "adamw2+jreg": ("GPT-2 6L x d128, AdamW without warmup, jreg lam 0.1",
                    ("recipe=adamw_nowarmup", "model.n_layer=6"), ["adamw2", {"name": "jreg", "lam": 0.1}]),
    # LRM again at 4x the tokens per step: its cost is O(params) a step against an O(tokens) step, so the overhead
    # falls as the batch grows (the claims read `lrm`, at the suite's batch)
    "lrm@4x": ("Llama 4L x d128", ("model.arch=llama",), [{"name": "lrm"}]),
}
BATCH_MULT = {"lrm@4x": 4}  # rows stepped at a multiple of the suite's batch (--methods-batch)


def method_overheads(run_sets: tuple[str, ...], threads: int, block: int, rounds: int, size: str = "smoke",
                     batch: int = 16, names: list[str] | None = None, data_dir: str = "") -> list[dict]:
    """Per-step time of each method over its baseline (GPT `size`, `batch` sequences), adjacent blocks, medians.
    At size smoke the settings are the ones named in METHODS; at another size the same overrides (arch, layers)
    on that size's width and context, and the row's setting says so."""
    rows = []
    data = (f"data.dir={data_dir}",) if data_dir else ()
    with tempfile.TemporaryDirectory() as d:
        for name in names or list(METHODS):
            setting, sets, methods = METHODS[name]
            b = batch * BATCH_MULT.get(name, 1)
            arms = {a: make_gpt_trainer(size, m, Path(d) / f"{name}-{a}", threads, "gpt2", b,
                                        extra=(*sets, *run_sets, *data))
                    for a, m in (("baseline", []), (name, methods))}
            if size != "smoke":
                o = arms[name].run.workload.opts
                setting = (f"{o.arch} {o.n_layer}L x d{o.n_embd} (size {size}), "
                           + ", ".join(x for x in setting.split(", ")[1:]))
                setting = setting.rstrip(", ")
            for t in arms.values():
                time_block(t, 2, 0)  # warm-up
            times: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
            order = list(arms)
            for r in range(rounds):  # the order swapped every round: drift within a round favours neither arm
                for a in (order if r % 2 == 0 else order[::-1]):
                    times[a].append(time_block(arms[a], block, 10))
            med = {a: [statistics.median(x[i] for x in v) for i in (0, 1)] for a, v in times.items()}
            iv = {clock: ratio_interval([x[i] for x in times["baseline"]], [x[i] for x in times[name]])
                  for i, clock in enumerate(("wall", "cpu"))}
            block_size = arms[name].run.workload.opts.block_size
            rows.append({"method": name, "setting": f"{setting}, batch {b} x {block_size} tokens",
                         "steps": block * rounds, "base_step_s": med["baseline"][0],
                         "step_s": med[name][0], "overhead_wall": med[name][0] / med["baseline"][0] - 1,
                         "overhead_cpu": med[name][1] / med["baseline"][1] - 1,
                         "interval_wall": iv["wall"], "interval_cpu": iv["cpu"], "block": block, "rounds": rounds})
            del arms
    return rows


def flerm_overhead(quick: bool, size: str = "smoke", data_dir: str = "", run_sets: tuple[str, ...] = (),
                   steps: int | None = None, rounds: int | None = None) -> dict:
    """bench_flerm's measurement (scaled GPT, EMA warm-up once and every 100 steps, over a 2,000-step run)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "flerm.json"
        argv = ["--workload", "gpt", "--steps", str(steps or (20 if quick else 60)),
                "--rounds", str(rounds or (2 if quick else 6)), "--out", str(out), "--size", size]
        argv += ["--data-dir", data_dir] if data_dir else []
        argv += [x for s in run_sets if not s.startswith("train.threads=") for x in ("--set", s)]
        bench_flerm.main(argv)
        res = json.loads(out.read_text())
    where = "CPU, 1 thread" if not run_sets or "train.device=cpu" in run_sets else ", ".join(
        s.split("=", 1)[1] for s in run_sets if s.startswith(("train.device=", "train.dtype=")))
    # per round: (B - A) / (A * target / steps), i.e. (B/A - 1) * steps / target, and with the periodic passes
    iv = ratio_interval(res["all_s"]["A_plain"], res["all_s"]["B_once"])
    scale = res["steps"] / res["target_steps"]
    periodic_extra = (res["overhead_periodic_pct"] - res["overhead_once_pct"]) / 100
    once = {"overhead": (iv["ratio"] - 1) * scale, "ci_lo": (iv["ci_lo"] - 1) * scale,
            "ci_hi": (iv["ci_hi"] - 1) * scale, "n": iv["n"], "level": iv["level"], "interval": iv["interval"],
            "clock": "wall"}
    return {"method": "flerm", "interval_once": once, "ratio_interval": iv,
            "periodic_extra": periodic_extra, "target_steps": res["target_steps"],
            "setting": f"{where}: GPT {res['model']}, {res['steps']} steps x "
            f"{res['rounds']} "
            f"rounds, extrapolated to {res['target_steps']} steps", "overhead_once": res["overhead_once_pct"] / 100,
            "overhead_periodic": res["overhead_periodic_pct"] / 100, "warmup_s": res["warmup_s"],
            "step_s": res["step_s"]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs"


def fmt_rate(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_iv(iv: dict | None, pct: bool = False) -> str:
    """'x [lo, hi] (n=...)' of a ratio interval (pct: as the overhead, ratio - 1, in percent)."""
    if not iv:
        return "-"
    key = "ratio" if "ratio" in iv else "overhead"
    f = (lambda v: f"{v - 1:+.1%}") if pct else (lambda v: f"{v:.3f}")  # noqa: E731
    return f"{f(iv[key])} [{f(iv['ci_lo'])}, {f(iv['ci_hi'])}] (n={iv['n']})"


def render(res: dict) -> str:
    m = res["meta"]
    lines = [
        "# Speed: claimbench harness vs plain PyTorch, method overheads, MFU", "",
        f"- machine: {m['machine']}; torch threads: {m['threads']}; device: {m['device']}, dtype {m['dtype']}"
        f"{', torch.compile' if m['compile'] else ''}",
        f"- torch {m['torch']}, git {m['git_sha']}, {m['date']}; wall time of the suite {m['suite_s']:.0f} s",
        f"- load average (1 min) at start / end: {m['load_start']:.2f} / {m['load_end']:.2f}",
        f"- command: `{m['command']}`",
    ]
    if m["note"]:
        lines.append(f"- note: {m['note']}")
    lines += [
        "", f"Target on this CPU: harness/plain throughput >= {TARGET} for every workload. Ratios are medians of "
        "alternating repeats in one process (the interval: the mean over repeat pairs, 95%); the CPU-clock ratio "
        "(process CPU time, robust to other users' load at 1 thread) is the one to read on a shared machine, the "
        "wall-clock one on an idle machine.", "",
        "## Throughput: claimbench Trainer vs a plain PyTorch loop", "",
        "| workload | params | batch | steps x repeats | plain /s | harness /s | ratio (wall) | ratio (CPU) | "
        f"CPU ratio, mean [95% CI] | >= {TARGET} | train FLOPs/unit | MFU (wall) | MFU (CPU clock) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["throughput"]:
        ok = "yes" if min(r["ratio_cpu"], r["ratio_wall"]) >= TARGET else (
            "yes (CPU clock)" if r["ratio_cpu"] >= TARGET else "**no**")
        batch = f"{r['batch']}" + (f" x {r['units_per_sample']} tokens" if r["units_per_sample"] > 1 else "")
        lines.append(
            f"| {r['workload']} {r['size']} | {r['params'] / 1e6:.2f}M | {batch} | {r['steps']} x {r['repeats']} "
            f"| {fmt_rate(r['plain_per_s'])} {r['unit']} | {fmt_rate(r['harness_per_s'])} {r['unit']} "
            f"| {r['ratio_wall']:.3f} | {r['ratio_cpu']:.3f} | {fmt_iv(r.get('ratio_cpu_interval'))} | {ok} "
            f"| {r['train_flops_per_unit']:.3g} "
            f"| {r['mfu']:.1%} | {format(r['mfu_cpu_clock'], '.1%') if 'mfu_cpu_clock' in r else '-'} |")
    lines += ["", "MFU = train FLOPs/unit x harness units/s / peak; the CPU-clock column counts units per "
              "process-CPU second x threads (what the run would do with the cores to itself), the wall one what it "
              "did. "
              f"Peak {res['peak']['flops'] / 1e9:,.1f} GFLOP/s "
              f"({res['peak']['source']}). FLOPs per unit are counted from each model by claimbench.flops "
              "(FlopCounterMode over one forward, x3 for forward+backward: the PaLM/nanoGPT convention; matmuls and "
              "attention only). A measured CPU peak is what this machine's BLAS achieves on one 1024^2 fp32 "
              "matmul at these threads (best of ~0.3 s of repeats, on the faster of the wall and CPU clocks), not a "
              "datasheet number.", ""]
    for r in res["throughput"]:
        if r["workload"] == "gpt" and r["size"] == "gpu":
            vocab = r.get("vocab") or 2048
            lines += [f"`gpt gpu` is GPT-2 small's shape (12 layers, d 768, 12 heads, context 1024) with a "
                      f"{vocab:,}-token vocabulary ({r['params'] / 1e6:.0f}M parameters"
                      + ("; nanoGPT's 50,304 gives 124M" if vocab != 50304 else "") + ")"
                      + (", random tokens (synthetic data: throughput only)" if "synth" in (r.get("data") or "")
                         else "") + f"; {r['batch']} sequence(s) per step.", ""]
            break
    if res["meta"]["device"] == "cpu":
        lines += ["GPU (`--device cuda --dtype bfloat16 --compile`, MFU against the datasheet peaks in "
                  "claimbench/flops.py): **not measured here** (no GPU on this machine).", ""]
    lines += ["## Method plugins: per-step overhead over the same run without them", "",
              "| method | setting | steps per arm | baseline ms/step | method ms/step | overhead (wall) | "
              "overhead (CPU) | wall: mean [95% CI] (pairs) | CPU: mean [95% CI] (pairs) |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines.insert(-2, "Method and baseline are two trainers of the same config stepped in adjacent blocks (their order "
                 "swapped every round), the methods' metrics computed every 10 steps as in a run; the overhead "
                 "columns are medians of per-step times, the intervals the mean of the per-round ratios with a 95% "
                 "bootstrap (BCa) interval, a t interval under 4 rounds.\n")
    for r in res["methods"]:
        lines.append(f"| {r['method']} | {r['setting']} | {r['steps']} | {1e3 * r['base_step_s']:.1f} "
                     f"| {1e3 * r['step_s']:.1f} | {r['overhead_wall']:+.1%} | {r['overhead_cpu']:+.1%} "
                     f"| {fmt_iv(r.get('interval_wall'), pct=True)} | {fmt_iv(r.get('interval_cpu'), pct=True)} |")
    f = res.get("flerm")
    if f:
        lines += ["", f"FLeRM's cost is a fixed EMA warm-up at step 0 ({f['warmup_s']:.2f} s here), not a per-step "
                  f"one: {f['setting']}: {f['overhead_once']:+.1%} applied once, {f['overhead_periodic']:+.1%} "
                  "re-applied every 100 steps (wall clock, from scripts/speed/bench_flerm.py)."]
        o = f.get("interval_once")
        if o:
            lines[-1] += (f" Applied once, the mean over rounds: {o['overhead']:+.2%} [{o['ci_lo']:+.2%}, "
                          f"{o['ci_hi']:+.2%}] (95%, n={o['n']}, {o['interval']}).")
    return "\n".join(lines) + "\n"


def overheads(res: dict, device: torch.device) -> dict:
    """Each method's overhead with its interval and n, flat, for the claims: on a CPU the process-CPU clock
    (1 thread: the wall clock of an idle machine, and robust to other users' load), on a GPU the wall clock.
    FLeRM's is its one-off warm-up over a `target_steps` run."""
    clock = "cpu" if device.type == "cpu" else "wall"
    out = {r["method"]: overhead_summary(r[f"interval_{clock}"], clock, setting=r["setting"])
           for r in res.get("methods", []) if f"interval_{clock}" in r}
    f = res.get("flerm")
    if f and "interval_once" in f:
        out["flerm"] = {**f["interval_once"], "setting": f["setting"]}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few steps and repeats: checks the suite runs (~2 min)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on a CPU")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="as train.dtype")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in both arms")
    p.add_argument("--gpt-gpu-batch", type=int,
                   help=f"sequences per step of GPT gpu (default 1 on CPU, {GPU_MICRO_BATCH} on cuda)")
    p.add_argument("--only", nargs="+", choices=["throughput", "methods", "flerm"],
                   default=["throughput", "methods", "flerm"])
    p.add_argument("--cases", nargs="+", metavar="WORKLOAD:SIZE[:BATCH]",
                   help="throughput cases to run (default: the whole suite), e.g. gpt:gpu:12 vit:gpu")
    p.add_argument("--steps", type=int, help="steps per repeat of every throughput case")
    p.add_argument("--repeats", type=int, help="repeats per arm of every throughput case")
    p.add_argument("--gpt-data", default=str(REPO / DATA["gpt"]), help="data.dir of the GPT cases and methods")
    p.add_argument("--image-data", default=str(REPO / DATA["vit"]), help="data.dir of the ViT/Swin/ResMLP cases")
    p.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="method overheads to time (default all)")
    p.add_argument("--methods-size", default="smoke", help="GPT size of the method overheads (gpu: 124M shape)")
    p.add_argument("--methods-batch", type=int, help="sequences per step of the method overheads "
                   f"(default 16 at smoke, {GPU_MICRO_BATCH} at other sizes)")
    p.add_argument("--methods-block", type=int, help="steps per timed block (default 5, --quick 2)")
    p.add_argument("--methods-rounds", type=int, help="alternating rounds, one ratio each (default 12, --quick 4)")
    p.add_argument("--flerm-size", default="smoke", choices=["smoke", "gpu"],
                   help="bench_flerm's scaled GPT (gpu: 12L x d768, context 1024, batch 12)")
    p.add_argument("--flerm-steps", type=int, help="steps per arm of bench_flerm (default 60, --quick 20)")
    p.add_argument("--flerm-rounds", type=int, help="rounds of bench_flerm (default 6, --quick 2)")
    p.add_argument("--note", default="", help="a line for the header, e.g. 'measured under load'")
    p.add_argument("--out", help="writes OUT.json and OUT.md (e.g. results/speed/smoke, which the claims read); "
                   "without it nothing is written")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: '{a.device}' requested but no CUDA device is available")
    run_sets = (f"train.threads={a.threads}", f"train.device={a.device}", f"train.dtype={a.dtype}",
                f"train.compile={str(a.compile).lower()}")
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(a.threads)
    retain_freed_memory()  # as the Trainer does, before the plain reference arm allocates anything
    peak, source = peak_flops(device, a.dtype)
    res: dict = {"peak": {"flops": peak, "source": source}, "throughput": [], "methods": []}
    if "throughput" in a.only:
        data = {w: a.gpt_data if w == "gpt" else a.image_data for w in DATA}
        for case in select_cases(cases(a.quick, device.type, a.gpt_gpu_batch), a.cases, a.steps, a.repeats, data):
            print(f"[speed] {case.label}: {case.steps} steps x {case.repeats} repeats per arm", flush=True)
            r = compare(case, run_sets, a.compile)
            r["mfu"] = mfu(r["train_flops_per_unit"], r["harness_per_s"], peak)
            r["mfu_plain"] = mfu(r["train_flops_per_unit"], r["plain_per_s"], peak)
            if device.type == "cpu":  # units per process-CPU second x threads: what an idle machine would do
                cpu_rate = statistics.median(r["runs_per_s"]["harness"]["cpu"]) * a.threads
                r["mfu_cpu_clock"] = mfu(r["train_flops_per_unit"], cpu_rate, peak)
            print(f"[speed]   plain {r['plain_per_s']:.1f} harness {r['harness_per_s']:.1f} {r['unit']}/s, ratio "
                  f"wall {r['ratio_wall']:.3f} CPU {r['ratio_cpu']:.3f}, MFU {r['mfu']:.2%}", flush=True)
            res["throughput"].append(r)
    if "methods" in a.only:
        print("[speed] method overheads", flush=True)
        batch = a.methods_batch or (16 if a.methods_size == "smoke" else GPU_MICRO_BATCH)
        res["methods"] = method_overheads(run_sets, a.threads, a.methods_block or (2 if a.quick else 5),
                                          a.methods_rounds or (4 if a.quick else 12), a.methods_size, batch,
                                          a.methods, a.gpt_data)
    if "flerm" in a.only:
        print("[speed] flerm", flush=True)
        res["flerm"] = flerm_overhead(a.quick, a.flerm_size, a.gpt_data if a.flerm_size == "gpu" else "",
                                      run_sets, a.flerm_steps, a.flerm_rounds)
    res["meta"] = {"machine": machine(device), "threads": a.threads, "device": a.device, "dtype": a.dtype,
                   "compile": a.compile, "torch": torch.__version__, "git_sha": git_sha(),
                   "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                   "command": shlex.join(["python", "scripts/speed/speed.py", *sys.argv[1:]] if argv is None
                                         else ["python", "scripts/speed/speed.py", *argv]),
                   "note": a.note, "quick": a.quick, "suite_s": time.perf_counter() - t_start,
                   "load_start": load_start, "load_end": os.getloadavg()[0]}
    res = {"meta": res.pop("meta"), "overheads": overheads(res, device), **res}
    if a.out:
        prefix = a.out[:-len(".json")] if a.out.endswith(".json") else a.out
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(f"{prefix}.json", res)
        atomic_write_text(f"{prefix}.md", render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
