"""Step-time overhead of AdamW^2 over AdamW (both without warmup), in one process.

Two trainers on the same model, data and schedule, differing only in `methods: [adamw2]`, are timed
alternately (A B A B ...) and the medians compared, because CPU timings drift by tens of percent
between repeats. Reports whole-step throughput and the optimizer step alone (where the power
iterations run). The suite's target: at most 10% on CPU at the smoke sizes.

    python scripts/speed/bench_nowarmup.py [--workloads gpt vit] [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from claimbench.config import load_config
from claimbench.testing import REPO
from claimbench.train import Trainer, prepare

CONFIGS = {"gpt": ("benchmarks/configs/gpt.yaml", "data/shakespeare"),
           "vit": ("benchmarks/configs/vit.yaml", "data/fashion-mnist"),
           "swin": ("benchmarks/configs/swin.yaml", "data/fashion-mnist")}


def make_trainer(workload: str, methods: str, steps: int, out: Path, threads: int) -> Trainer:
    config, data = CONFIGS[workload]
    cfg = load_config(REPO / config, [
        "size=smoke", "recipe=adamw_nowarmup", f"methods={methods}", f"train.steps={steps}", "eval.every=0",
        "ckpt.every=0", "log.every=10", f"train.threads={threads}", f"data.dir={REPO / data}"])
    return Trainer(prepare(cfg, out))


def timed_run(workload: str, methods: str, steps: int, threads: int) -> tuple[float, float]:
    """(seconds per step, seconds per optimizer step), the optimizer timed by wrapping its step()."""
    with tempfile.TemporaryDirectory() as d:
        t = make_trainer(workload, methods, steps, Path(d) / "run", threads)
        opt_times: list[float] = []
        inner = t.optimizer.step

        def step(*args, **kwargs):
            t0 = time.perf_counter()
            r = inner(*args, **kwargs)
            opt_times.append(time.perf_counter() - t0)
            return r

        t.optimizer.step = step
        t0 = time.perf_counter()
        t.fit(Path(d) / "metrics.jsonl", Path(d) / "ckpt.pt")
        return (time.perf_counter() - t0) / steps, statistics.median(opt_times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", nargs="+", default=["gpt", "vit"], choices=sorted(CONFIGS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    arms = {"adamw": "[]", "adamw2": "[adamw2]"}
    for wl in a.workloads:
        for m in arms.values():
            timed_run(wl, m, 3, a.threads)  # warm-up: allocator, data pages
        res: dict[str, list[tuple[float, float]]] = {k: [] for k in arms}
        for _ in range(a.repeats):
            for k, m in arms.items():
                res[k].append(timed_run(wl, m, a.steps, a.threads))
        step = {k: statistics.median(x for x, _ in v) for k, v in res.items()}
        opt = {k: statistics.median(y for _, y in v) for k, v in res.items()}
        print(f"{wl} smoke, {a.steps} steps x {a.repeats} repeats (alternated), {a.threads} thread(s)")
        print(f"  step time   adamw {step['adamw'] * 1e3:8.1f} ms   adamw2 {step['adamw2'] * 1e3:8.1f} ms   "
              f"overhead {step['adamw2'] / step['adamw'] - 1:+.1%}")
        print(f"  optimizer   adamw {opt['adamw'] * 1e3:8.1f} ms   adamw2 {opt['adamw2'] * 1e3:8.1f} ms   "
              f"(+{(opt['adamw2'] - opt['adamw']) * 1e3:.1f} ms per step)")


if __name__ == "__main__":
    main()
