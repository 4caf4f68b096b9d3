"""`claimbench gpu-run --gpus K --pool N -- CMD ...`: run CMD on K GPUs no other job holds.

On a local run with `--resources gpu=N` the Snakefile puts this (as `python -m claimbench.gpu_slots`, the same
code with a faster start) in front of the train command: Snakemake counts GPUs but never says which are free, so
each job takes its own from a pool of N device ids (the first N of CUDA_VISIBLE_DEVICES if set, else 0..N-1)
through lock files in --slots-dir, exports CUDA_VISIBLE_DEVICES and exec()s CMD. The locks live as long as CMD:
they are released when it exits, crashes or is killed.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from claimbench.gpu_slots import add_arguments, run_from_args

    p = sub.add_parser("gpu-run", help="run a command pinned to free GPUs of a pool (local multi-GPU runs)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(fn=run_from_args)
