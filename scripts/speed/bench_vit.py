"""ViT training throughput: the claimbench harness vs the bare timm model in a plain loop (see bench_train.py).

    python scripts/speed/bench_vit.py [--workload vit|swin|mlp] [--size smoke] [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import sys

from scripts.speed.bench_train import main

if __name__ == "__main__":
    args = sys.argv[1:]
    main((["--workload", "vit"] if "--workload" not in args else []) + (["--steps", "30"] + args))
