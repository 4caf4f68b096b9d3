"""Per-step overhead of vector LRM (the paper's placement) over the same run without it, in one process.

Two trainers over the same GPT (Llama-style, `smoke` size by default), data and optimizer; their steps are timed
in alternating blocks (A B A B ...) and the median per-step times compared, because CPU timings drift between
repeats. `train_step` is the forward/backward/clip/optimizer step the harness runs; the `+metrics` line adds the
lrm/ diagnostics at the default logging interval (one log row every `--log-every` steps).

    python scripts/speed/bench_lrm.py [--size smoke] [--block 10] [--rounds 5] [--threads 1]
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
from claimbench.testing import REPO
from claimbench.train import Trainer, prepare


def make_trainer(size: str, methods: list, out: Path, threads: int, arch: str, batch: int = 16,
                 extra: tuple[str, ...] = ()) -> Trainer:
    """A GPT trainer for step timing; `extra` are further --set overrides (recipe, device, ...)."""
    cfg = load_config(REPO / "benchmarks/configs/gpt.yaml", [f"train.batch_size={batch}",
        f"size={size}", "train.steps=100000", "eval.every=0", "ckpt.every=0", "log.every=10",
        f"train.threads={threads}", f"data.dir={REPO / 'data/shakespeare'}", f"model.arch={arch}",
        f"methods={json.dumps(methods)}", *extra])
    t = Trainer(prepare(cfg, out))
    t.t_start = time.perf_counter()
    return t


def time_block(t: Trainer, steps: int, log_every: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step over `steps` steps; with log_every > 0 the methods' metrics run at that
    interval. CPU time (this thread; torch runs on 1 thread here) is the robust number on a shared machine."""
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        loss, _, out, _ = t.train_step()
        if log_every and t.step % log_every == 0:
            for m in t.hooks["metrics"]:
                m.metrics(t.step, t.model, out)
    loss.item()
    return (time.perf_counter() - t0) / steps, (time.thread_time() - c0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="smoke")
    p.add_argument("--arch", default="llama")
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (CPU time is exact only for 1)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step (the overhead is O(params), "
                   "the step O(tokens): it shrinks as the batch grows)")
    p.add_argument("--ablate", action="store_true", help="also time lrm without ABM and the placement-none probe")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as d:
        arms = {"baseline": make_trainer(a.size, [], Path(d) / "a", a.threads, a.arch, a.batch_size),
                "lrm": make_trainer(a.size, [{"name": "lrm", "track_residual": False}], Path(d) / "b", a.threads,
                                    a.arch, a.batch_size),
                "lrm+metrics": make_trainer(a.size, [{"name": "lrm"}], Path(d) / "c", a.threads, a.arch,
                                            a.batch_size)}
        if a.ablate:  # where the overhead goes: no ABM reference; no multipliers (diagnostics only)
            arms["lrm-noABM"] = make_trainer(a.size, [{"name": "lrm", "track_residual": False, "abm_role": "none"}],
                                             Path(d) / "e", a.threads, a.arch, a.batch_size)
            arms["probe-only"] = make_trainer(a.size, [{"name": "lrm", "placement": "none", "track_residual": False}],
                                              Path(d) / "f", a.threads, a.arch, a.batch_size)
        for t in arms.values():
            time_block(t, 3, 0)  # warm-up
        wall: dict[str, list[float]] = {k: [] for k in arms}
        cpu: dict[str, list[float]] = {k: [] for k in arms}
        for _ in range(a.rounds):
            for k, t in arms.items():
                w, c = time_block(t, a.block, a.log_every if k == "lrm+metrics" else 0)
                wall[k].append(w)
                cpu[k].append(c)
    print(f"GPT {a.size} ({a.arch}), batch {a.batch_size}, {a.rounds} rounds x {a.block} steps per arm, "
          f"alternating, {a.threads} thread(s)")
    for label, times in (("CPU", cpu), ("wall", wall)):
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            print(f"{label:4s} {k:12s}: {1000 * v:8.1f} ms/step   overhead vs baseline {v / med['baseline'] - 1:+.1%}")


if __name__ == "__main__":
    main()
