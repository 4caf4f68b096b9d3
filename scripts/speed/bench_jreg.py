"""Per-step overhead of `jreg` over the same run without it, measured in one process.

Two (or more) trainers of the same config differ only in their methods; their steps are timed in
interleaved blocks (A, B, A, B, ...) so machine load drifts hit both alike, and the median per-step
time of each is compared. Target: at most 3% for the default final-layer penalty.

    .venv/bin/python scripts/speed/bench_jreg.py [--size smoke] [--arch llama] [--layers 6] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from claimbench.config import load_config
from claimbench.train import Trainer, prepare

REPO = Path(__file__).resolve().parents[2]
ARMS = {
    "baseline": [],
    "jreg_final": [{"name": "jreg", "lam": 0.1}],
    "jreg_uniform": [{"name": "jreg", "lam": 0.1, "weighting": "uniform"}],
    "jreg_probe_lam0": [{"name": "jreg", "lam": 0.0}],
}


def trainer(args, methods: list, tmp: Path) -> Trainer:
    sets = [f"size={args.size}", f"model.arch={args.arch}", f"model.n_layer={args.layers}",
            f"data.dir={args.data}", f"train.threads={args.threads}", f"train.steps={10 ** 6}",
            f"train.batch_size={args.batch}", f"methods={json.dumps(methods)}", f"train.device={args.device}",
            f"train.dtype={args.dtype}"]
    return Trainer(prepare(load_config(REPO / "benchmarks/configs/gpt.yaml", sets), tmp / "never-written"))


def timed_steps(t: Trainer, n: int) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per step. On a shared CPU the CPU time is the robust one: other users'
    load stretches wall time by up to 10x here but leaves a single-threaded process's CPU time nearly alone."""
    out = []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _, _, _ = t.train_step()
        loss.item()  # include the device's work in the step
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="smoke")
    p.add_argument("--arch", default="llama", choices=["gpt2", "llama"])
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--data", default="data/shakespeare")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rounds", type=int, default=8, help="interleaved blocks per arm")
    p.add_argument("--steps", type=int, default=5, help="timed steps per block")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        trainers = {}
        for arm in args.arms:  # same seed: identical initial weights and batches
            trainers[arm] = trainer(args, ARMS[arm], Path(d))
            timed_steps(trainers[arm], args.warmup)
        times: dict[str, list[tuple[float, float]]] = {arm: [] for arm in args.arms}
        for _ in range(args.rounds):
            for arm, t in trainers.items():
                times[arm] += timed_steps(t, args.steps)
    result = {"setting": {k: v for k, v in vars(args).items() if k != "out"}, "torch": torch.__version__,
              "steps_per_arm": len(next(iter(times.values())))}
    for i, clock in enumerate(("wall", "cpu")):
        med = {arm: statistics.median(x[i] for x in v) for arm, v in times.items()}
        base = med.get("baseline")
        result[f"median_step_s_{clock}"] = med
        result[f"overhead_vs_baseline_{clock}"] = {a: m / base - 1 for a, m in med.items() if base and a != "baseline"}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
