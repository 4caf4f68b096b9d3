"""GPT training throughput: the claimbench harness vs a plain PyTorch loop, in one process.

The reference is a nanoGPT-style loop over the same model, optimizer, schedule and batches with
no harness. Both are timed alternately (A B A B ...) and the medians compared, because CPU
timings drift by tens of percent between repeats. Also reports the share of the harness's step
time spent outside forward/backward/optimizer.

    python benchmarks/speed/bench_train.py [--size smoke] [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from claimbench.config import load_config
from claimbench.testing import REPO
from claimbench.train import Trainer, prepare


def make_trainer(size: str, steps: int, out: Path, threads: int) -> Trainer:
    cfg = load_config(REPO / "benchmarks/configs/gpt.yaml", [
        f"size={size}", f"train.steps={steps}", "eval.every=0", "ckpt.every=0", "log.every=10",
        f"train.threads={threads}", f"data.dir={REPO / 'data/shakespeare'}"])
    return Trainer(prepare(cfg, out))


def harness_run(size: str, steps: int, threads: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as d:
        t = make_trainer(size, steps, Path(d) / "run", threads)
        t0 = time.perf_counter()
        t.fit(Path(d) / "metrics.jsonl", Path(d) / "ckpt.pt")
        return time.perf_counter() - t0, steps * t.train_cfg.batch_size * t.run.workload.opts.block_size


def plain_run(size: str, steps: int, threads: int) -> tuple[float, float, int]:
    """nanoGPT's loop: batch, forward, loss, backward, clip, step. Returns (total, compute, tokens)."""
    with tempfile.TemporaryDirectory() as d:
        t = make_trainer(size, steps, Path(d) / "run", threads)  # same model, groups, optimizer, data
        model, opt, wl, tc = t.model, t.optimizer, t.run.workload, t.train_cfg
        lam = t.lr_lambda
        compute = 0.0
        t0 = time.perf_counter()
        for step in range(steps):
            x, y = wl.train_batch(step, 0, tc.batch_size)
            c0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = tc.lr * lam(step)
            logits = model(x).logits
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            compute += time.perf_counter() - c0
            if step % 10 == 0:
                loss.item()
        return time.perf_counter() - t0, compute, steps * tc.batch_size * wl.opts.block_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="smoke")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    harness_run(a.size, 5, a.threads)  # warm-up: allocator, data pages
    plain, harness, compute_share = [], [], []
    for _ in range(a.repeats):
        tp, comp, tokens = plain_run(a.size, a.steps, a.threads)
        th, _ = harness_run(a.size, a.steps, a.threads)
        plain.append(tokens / tp)
        harness.append(tokens / th)
        compute_share.append(comp / th)
    rp, rh = statistics.median(plain), statistics.median(harness)
    print(f"GPT {a.size}, {a.steps} steps x {a.repeats} repeats, {a.threads} thread(s)")
    print(f"plain PyTorch loop : {rp:10.0f} tokens/s")
    print(f"claimbench harness : {rh:10.0f} tokens/s")
    print(f"ratio harness/plain: {rh / rp:10.3f}")
    print(f"share of harness step time outside forward/backward/optimizer: "
          f"{1 - statistics.median(compute_share):.1%}")


if __name__ == "__main__":
    main()
