"""Training throughput of one workload: the claimbench harness vs a plain PyTorch loop, in one process.

One entry of the speed suite (scripts/speed/speed.py, which holds the two loops and says how they are timed),
printed rather than written to results/. The plain loop is nanoGPT's (GPT) or timm's train loop reduced to
batch, forward, loss, backward, clip, step (ViT, Swin: the bare timm model; mlp: the bare ResMLP).

    python scripts/speed/bench_train.py [--workload gpt] [--size smoke] [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse

from scripts.speed.speed import DATA, Case, compare


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="gpt", choices=sorted(DATA))
    p.add_argument("--size", default="smoke")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    r = compare(Case(a.workload, a.size, a.steps, a.repeats), (f"train.threads={a.threads}",), False)
    print(f"{a.workload} {a.size}, {a.steps} steps x {a.repeats} repeats, {a.threads} thread(s)")
    for arm in ("plain", "harness"):
        runs = ", ".join(f"{v:.1f}" for v in r["runs_per_s"][arm]["wall"])
        print(f"{arm:8s}: {r[f'{arm}_per_s']:10.1f} {r['unit']}/s  (runs: {runs})")
    print(f"ratio harness/plain: wall {r['ratio_wall']:.3f}, process CPU {r['ratio_cpu']:.3f}")


if __name__ == "__main__":
    main()
