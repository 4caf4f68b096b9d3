"""The DAG end to end: a micro grid through the real Snakefile in a temp directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from claimbench.testing import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]

MICRO = {
    "profile": "micro", "runs_dir": "runs/micro", "results_dir": "results", "threads_per_run": 1,
    "data": {"shakespeare": {"corpus": "shakespeare", "vocab_size": 512, "dir": "data/shakespeare"}},
    "grid": [{"name": "micro", "config": "benchmarks/configs/gpt.yaml", "workload": "gpt", "size": "micro",
              "recipes": ["adamw", "adamw_nowarmup"], "seeds": [0, 1],
              "set": {"train.steps": 20, "eval.every": 10, "ckpt.every": 10, "log.every": 5}}],
}


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "micro.yaml"),
                           "--cores", "2", *args], capture_output=True, text=True, env=env, timeout=600)


def test_micro_grid_runs_and_is_idempotent(tmp_path):
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    dry = _snakemake(tmp_path, "-n", "results/runs.csv")
    assert dry.returncode == 0, dry.stderr
    assert "prepare_data" in dry.stdout and dry.stdout.count("rule train:") == 4
    run = _snakemake(tmp_path, "results/runs.csv")
    assert run.returncode == 0, run.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"ok"}
    assert set(runs["recipe"]) == {"adamw", "adamw_nowarmup"} and set(runs["seed"]) == {0, 1}
    assert (runs["final_val_loss"] < 6.3).all()  # ln(512) = 6.24 at chance: every run learned something
    again = _snakemake(tmp_path, "-n", "results/runs.csv")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_lint_is_clean():
    r = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr, r.stdout + r.stderr
