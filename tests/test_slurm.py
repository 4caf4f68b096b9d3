"""The DAG on a real SLURM cluster, and how train jobs are launched there (claimbench/launch.py).

The slow test starts a real one-node cluster (scripts/slurm_local.sh: Debian slurm-wlm 22.05 + munge, apt-installed
if missing), runs a micro grid through `snakemake --executor slurm` as real sbatch jobs and checks the results equal
a local run's. The SLURM executor plugin is installed into .cache/slurm-plugin (not the venv: with it installed and
no controller, every snakemake call waits seconds) and put on PYTHONPATH for the snakemake subprocess only; sbatch
jobs inherit that environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from claimbench import launch
from claimbench.config import ConfigError
from claimbench.testing import REPO, micro_data_dir

PLUGIN_DIR = REPO / ".cache" / "slurm-plugin"
JOBSTEP = "snakemake-executor-plugin-slurm-jobstep==0.6.1"  # what slurm 2.8.0 resolves to with snakemake 9.27.1
FAST_STATUS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
               "--seconds-between-status-checks", "2", "--latency-wait", "5"]


# --- the launch command and settings (fast) ---

def test_train_command_is_unchanged_for_one_process_and_torchrun_for_more():
    today = ("{params.py} -m claimbench train {input.config} {params.sets} --set data.dir={params.data_dir} "
             "--set train.threads={threads} --out {params.out} > {log} 2>&1")
    assert launch.train_shell(1) == "{params.pin}" + today  # pin is "" unless a local run has GPUs
    many = launch.train_shell(4)
    assert many.startswith("{params.pin}{params.py} -m torch.distributed.run --standalone --nproc_per_node 4 "
                           "-m claimbench train {input.config} ")
    assert "--set train.threads={params.proc_threads}" in many and many.endswith("> {log} 2>&1")


def test_gpus_and_nproc_settings():
    assert launch.gpus_nproc({}) == (0, 1)
    assert launch.gpus_nproc({"gpus_per_run": 8, "nproc_per_run": 8}) == (8, 8)
    assert launch.gpus_nproc({"nproc_per_run": 2}) == (0, 2)  # CPU data parallelism (gloo)
    for cfg, msg in [({"gpus_per_run": 4, "nproc_per_run": 2}, "nproc_per_run: 2 but gpus_per_run: 4"),
                     ({"nproc_per_run": 0}, "nproc_per_run: 0"), ({"gpus_per_run": -1}, "gpus_per_run: -1"),
                     ({"gpus_per_run": "two"}, "gpus_per_run/nproc_per_run must be integers")]:
        with pytest.raises(ConfigError, match=msg):
            launch.gpus_nproc(cfg)
    assert launch.train_resources({"mem_mb_per_run": 64000, "runtime_per_run": 720}, 8) == {
        "mem_mb": 64000, "gpu": 8, "runtime": 720}
    assert "runtime" not in launch.train_resources({}, 0)  # the profile's default-resources decide


def test_slurm_profile_and_cluster_extra():
    prof = yaml.safe_load((REPO / "config" / "slurm" / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert prof["default-resources"]["slurm_account"] == "" and prof["default-resources"]["slurm_partition"] == ""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    cluster = project["optional-dependencies"]["cluster"]
    assert "snakemake-executor-plugin-slurm==2.8.0" in cluster
    assert any(r.startswith("snakemake-executor-plugin-kubernetes==") for r in cluster)
    assert not [r for r in project["dependencies"] if "executor-plugin" in r]  # never in the default install


# --- a real SLURM cluster (slow) ---

MICRO = {
    "profile": "micro", "runs_dir": "runs/micro", "results_dir": "results", "threads_per_run": 1,
    "grid": [{"name": "micro", "config": "benchmarks/configs/gpt.yaml", "data": "micro", "workload": "gpt",
              "size": "micro", "recipes": ["adamw"], "seeds": [0, 1],
              "set": {"train.steps": 6, "train.batch_size": 4, "eval.every": 3, "eval.batches": 2, "ckpt.every": 0,
                      "log.every": 1}}],
}


def _plugin_dir() -> Path:
    """The SLURM executor plugin (the pin in pyproject's cluster extra) in .cache/slurm-plugin, installed once."""
    if not (PLUGIN_DIR / "snakemake_executor_plugin_slurm").is_dir():
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        slurm = next(r for r in project["optional-dependencies"]["cluster"] if "plugin-slurm" in r)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(PLUGIN_DIR),
                            slurm, JOBSTEP], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"pip could not install {slurm} {JOBSTEP}: {r.stderr[-2000:]}"
    return PLUGIN_DIR


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory) -> dict[str, str]:
    """A running one-node cluster (stopped at teardown) and the environment that reaches it."""
    if os.geteuid() != 0:
        pytest.skip("a real SLURM cluster needs root (slurmd, and apt-get for slurm-wlm/munge)")
    state = tmp_path_factory.mktemp("slurm")
    script = str(REPO / "scripts" / "slurm_local.sh")
    r = subprocess.run([script, "start", str(state)], capture_output=True, text=True, timeout=600)
    try:
        if r.returncode == 3:
            pytest.skip(f"slurm-wlm/munge cannot be installed here: {r.stderr.strip()}")
        assert r.returncode == 0, r.stdout + r.stderr
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(_plugin_dir()), os.environ.get("PYTHONPATH")])),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    finally:
        subprocess.run([script, "stop", str(state)], capture_output=True, text=True, timeout=60)


def _workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "micro.yaml").write_text(yaml.safe_dump({**MICRO, "data": {"micro": {"dir": str(micro_data_dir())}}}))
    return path


def _snakemake(workdir: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snakemake", "results/runs.csv", "--snakefile",
                             str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
                             str(workdir / "micro.yaml"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _squeue(env: dict) -> list[tuple[str, str, str]]:
    """(job name, comment, state) of every job the controller knows, finished ones included (MinJobAge=600)."""
    out = subprocess.run(["squeue", "--states=all", "-h", "-O", "Name:80,Comment:300,State:20"], env=env,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [tuple(line.split()) for line in out.splitlines()]


def _run_id(out: str) -> str:
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("SLURM run ID:"))


def _losses(workdir: Path) -> dict[str, float]:
    return {p.parent.name: json.loads(p.read_text())["final_train_loss"]
            for p in sorted((workdir / "runs" / "micro").glob("*/result.json"))}


@pytest.mark.slow
def test_micro_grid_through_real_sbatch_jobs_equals_a_local_run(slurm_env, tmp_path):
    slurm, local, unset = _workdir(tmp_path / "slurm"), _workdir(tmp_path / "local"), _workdir(tmp_path / "unset")
    profile = ["--profile", str(REPO / "config" / "slurm"), *FAST_STATUS, "--jobs", "4"]
    # side by side: the profile as shipped (account and partition not filled), the profile filled in on the
    # command line (as a user fills it in the file), and the same grid run locally without SLURM
    no_account = _snakemake(unset, slurm_env, *profile)
    run = _snakemake(slurm, slurm_env, *profile, "--default-resources", "slurm_account=claimbench",
                     "slurm_partition=debug", "runtime=10", "mem_mb=1000")
    plain = _snakemake(local, {**slurm_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, "--cores", "2")
    outs = {name: p.communicate(timeout=900)[0] for name, p in
            [("no_account", no_account), ("run", run), ("plain", plain)]}
    assert no_account.returncode != 0
    assert "slurm_account is not set" in outs["no_account"] and "config/slurm/config.yaml" in outs["no_account"], \
        outs["no_account"][-3000:]
    assert run.returncode == 0, outs["run"][-5000:]
    assert plain.returncode == 0, outs["plain"][-3000:]
    jobs = _squeue(slurm_env)
    # the unfilled profile stopped before submitting anything
    assert not [j for j in jobs if j[0] == _run_id(outs["no_account"])], jobs
    # real sbatch jobs ran the filled one: two train jobs and the aggregate job, all COMPLETED
    ours = sorted((comment.split("_wildcards_")[0], state) for name, comment, state in jobs
                  if name == _run_id(outs["run"]))
    assert ours == [("rule_aggregate", "COMPLETED"), ("rule_train", "COMPLETED"), ("rule_train", "COMPLETED")], jobs
    # with the same numbers as the local run
    losses = _losses(slurm)
    assert len(losses) == 2 and losses == _losses(local)
    # every column but the timing and the commit (provenance: moves if someone commits to the checkout meanwhile)
    cluster_csv, local_csv = (pd.read_csv(d / "results" / "runs.csv").drop(columns=["wall_s", "git_sha"])
                              for d in (slurm, local))
    assert len(cluster_csv) == 2 and (cluster_csv["status"] == "ok").all()
    pd.testing.assert_frame_equal(cluster_csv, local_csv)


@pytest.mark.slow
def test_torchrun_inside_the_job_through_the_dag(tmp_path):
    """nproc_per_run: 2 launches the train job through torchrun (CPU, gloo here): both ranks train one run."""
    work = _workdir(tmp_path)
    cfg = yaml.safe_load((work / "micro.yaml").read_text())
    cfg["grid"][0]["seeds"] = [0]
    (work / "micro.yaml").write_text(yaml.safe_dump({**cfg, "nproc_per_run": 2, "threads_per_run": 2}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    p = _snakemake(work, env, "--cores", "2", "--printshellcmds")
    out = p.communicate(timeout=600)[0]
    assert p.returncode == 0, out[-3000:]
    assert "-m torch.distributed.run --standalone --nproc_per_node 2 -m claimbench train" in out
    assert "--set train.threads=1 " in out  # the job's 2 threads shared by its 2 processes
    (result,) = (work / "runs" / "micro").glob("*/result.json")
    assert json.loads(result.read_text())["world_size"] == 2
    assert (pd.read_csv(work / "results" / "runs.csv")["status"] == "ok").all()
