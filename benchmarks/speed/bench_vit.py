"""ViT training throughput: the claimbench harness vs the same timm model in a plain PyTorch loop.

Both sides use the same model (built by the `vit` workload), optimizer, schedule and real
Fashion-MNIST batches from the same pipeline; the plain loop is timm's train loop reduced to
batch, forward, loss, backward, clip, step. They are timed alternately (A B A B ...) in one process
and the medians compared, because CPU timings drift by tens of percent between repeats.

    python benchmarks/speed/bench_vit.py [--workload vit] [--size smoke] [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.data.images import micro_image_dir
from claimbench.config import load_config
from claimbench.testing import REPO
from claimbench.train import Trainer, prepare


def make_trainer(workload: str, size: str, steps: int, out: Path, threads: int) -> Trainer:
    cfg = load_config(REPO / f"benchmarks/configs/{workload}.yaml", [
        f"size={size}", f"train.steps={steps}", "eval.every=0", "ckpt.every=0", "log.every=10",
        f"train.threads={threads}", f"data.dir={micro_image_dir()}"])
    return Trainer(prepare(cfg, out))


def harness_run(workload: str, size: str, steps: int, threads: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as d:
        t = make_trainer(workload, size, steps, Path(d) / "run", threads)
        t0 = time.perf_counter()
        t.fit(Path(d) / "metrics.jsonl", Path(d) / "ckpt.pt")
        return time.perf_counter() - t0, steps * t.train_cfg.batch_size


def plain_run(workload: str, size: str, steps: int, threads: int) -> tuple[float, float, int]:
    """Returns (total seconds, seconds in forward/backward/optimizer, samples)."""
    with tempfile.TemporaryDirectory() as d:
        t = make_trainer(workload, size, steps, Path(d) / "run", threads)  # same model, groups, optimizer, data
        model, opt, wl, tc, lam = t.model, t.optimizer, t.run.workload, t.train_cfg, t.lr_lambda
        model.train()
        compute = 0.0
        t0 = time.perf_counter()
        for step in range(steps):
            x, y = wl.train_batch(step, 0, tc.batch_size)
            c0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = tc.lr * lam(step)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            compute += time.perf_counter() - c0
            if step % 10 == 0:
                loss.item()
        return time.perf_counter() - t0, compute, steps * tc.batch_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="vit", choices=["vit", "swin", "mlp"])
    p.add_argument("--size", default="smoke")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    harness_run(a.workload, a.size, 5, a.threads)  # warm-up: allocator, data pages
    plain, harness, compute_share = [], [], []
    for _ in range(a.repeats):
        tp, comp, samples = plain_run(a.workload, a.size, a.steps, a.threads)
        th, _ = harness_run(a.workload, a.size, a.steps, a.threads)
        plain.append(samples / tp)
        harness.append(samples / th)
        compute_share.append(comp / tp)
    rp, rh = statistics.median(plain), statistics.median(harness)
    print(f"{a.workload} {a.size}, {a.steps} steps x {a.repeats} repeats, {a.threads} thread(s)")
    print(f"plain PyTorch loop : {rp:10.1f} samples/s  (runs: {', '.join(f'{v:.1f}' for v in plain)})")
    print(f"claimbench harness : {rh:10.1f} samples/s  (runs: {', '.join(f'{v:.1f}' for v in harness)})")
    print(f"ratio harness/plain: {rh / rp:10.3f}")
    print(f"share of the plain loop's time spent making batches: {1 - statistics.median(compute_share):.1%}")


if __name__ == "__main__":
    main()
