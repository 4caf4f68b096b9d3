"""Per-run fixed cost of a train job: the plain command (`python -m claimbench train`) against the warm-start
client (claimbench/warm.py), both on a 1-step micro GPT run, so almost all of the cost is start-up.

Reports CPU seconds per run (the job's own process tree: for the warm client, the client plus the forked
child's CPU time from result.json) and wall seconds; on a shared machine read the CPU column.

    python scripts/speed/bench_warm.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from claimbench.testing import REPO, micro_data_dir


def _cmd(out: Path) -> list[str]:
    return ["train", str(REPO / "benchmarks/configs/gpt.yaml"), "--set", "size=micro", "--set", "train.steps=1",
            "--set", f"data.dir={micro_data_dir()}", "--set", "eval.batches=1", "--out", str(out)]


def _one(prefix: list[str], out: Path, forked: bool) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([*prefix, *_cmd(out)], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if forked:  # the child is the server's: its CPU time is in the run's result
        cpu += json.loads((out / "result.json").read_text())["cpu_s"]
    return cpu, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sock = tmp / "w.sock"
        server = subprocess.Popen([py, "-m", "claimbench.warm", "serve", str(sock)], cwd=REPO)
        while not sock.exists():
            time.sleep(0.1)
        rows = {"plain": [], "warm": []}
        try:
            for i in range(args.runs):  # alternated, so a change in load hits both
                rows["plain"].append(_one([py, "-m", "claimbench"], tmp / f"p{i}", False))
                rows["warm"].append(_one([py, "-m", "claimbench.warm", str(sock)], tmp / f"w{i}", True))
        finally:
            server.terminate()
            server.wait()
    for name, r in rows.items():
        cpu, wall = zip(*r, strict=True)
        print(f"{name:6s} per run: CPU {statistics.median(cpu):.2f} s (min {min(cpu):.2f}), "
              f"wall {statistics.median(wall):.2f} s (min {min(wall):.2f})  [{len(r)} runs, 1-step micro GPT]")


if __name__ == "__main__":
    main()
