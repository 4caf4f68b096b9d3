"""How the Snakefile launches a train job: torchrun for nproc_per_run > 1, GPU pinning on a local run, and the
checks a cluster or multi-GPU run needs before anything is started (kept here, out of the Snakefile, so
`snakemake --lint` stays clean and the logic has tests).

Config keys (all optional; the profile's config file sets them): gpus_per_run (the job's GPUs), nproc_per_run
(torchrun processes; must equal gpus_per_run on GPUs), threads_per_run, mem_mb_per_run, runtime_per_run (minutes).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from claimbench import gpu_slots
from claimbench.config import ConfigError

SLURM_SETTINGS = ("slurm_account", "slurm_partition")


def gpus_nproc(config: Mapping[str, Any]) -> tuple[int, int]:
    """gpus_per_run and nproc_per_run from the config, checked against each other."""
    try:
        gpus, nproc = int(config.get("gpus_per_run", 0)), int(config.get("nproc_per_run", 1))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"gpus_per_run/nproc_per_run must be integers ({e})") from None
    if gpus < 0:
        raise ConfigError(f"gpus_per_run: {gpus} (must be >= 0)")
    if nproc < 1:
        raise ConfigError(f"nproc_per_run: {nproc} (must be >= 1)")
    if gpus and nproc > 1 and nproc != gpus:
        raise ConfigError(f"nproc_per_run: {nproc} but gpus_per_run: {gpus}; torchrun starts one process per GPU")
    return gpus, nproc


def train_resources(config: Mapping[str, Any], gpus: int) -> dict[str, Any]:
    """The train rule's resources; runtime only when the config names one (else --default-resources decides)."""
    res: dict[str, Any] = {"mem_mb": config.get("mem_mb_per_run", 4000), "gpu": gpus}
    if "runtime_per_run" in config:
        res["runtime"] = config["runtime_per_run"]
    return res


def train_shell(nproc: int, warm: bool = False) -> str:
    """The train rule's shell command. With one process it is the plain `claimbench train` line (through the
    warm-start client when the profile sets `warm: true`: claimbench/warm.py); with more, torchrun starts them
    inside the job (--standalone: one node, a free rendezvous port) and each gets an equal share of the job's
    threads."""
    if nproc > 1:
        launch = f"{{params.py}} -m torch.distributed.run --standalone --nproc_per_node {nproc} -m claimbench train"
        threads = "{params.proc_threads}"
    elif warm:
        launch, threads = f"{{params.py}} -m claimbench.warm {WARM_SOCKET} train", "{threads}"
    else:
        launch, threads = "{params.py} -m claimbench train", "{threads}"
    return (f"{{params.pin}}{launch} {{input.config}} {{params.sets}} --set data.dir={{params.data_dir}} "
            f"--set train.threads={threads} --out {{params.out}} > {{log}} 2>&1")


WARM_SOCKET = ".snakemake/claimbench-warm.sock"  # relative to the DAG's working directory, like the jobs
_warm: list = []


def start_warm(workflow, py: str) -> None:
    """onstart of a local run whose profile sets `warm: true`: the warm-start server, if it comes up within
    30 s (a job that finds none runs the plain command)."""
    import subprocess
    import time

    if executor(workflow) != "local":
        return
    Path(WARM_SOCKET).parent.mkdir(exist_ok=True)
    Path(WARM_SOCKET).unlink(missing_ok=True)
    log = open(Path(WARM_SOCKET).with_suffix(".log"), "w")  # noqa: SIM115  (the server's, for its lifetime)
    _warm.append(subprocess.Popen([py, "-m", "claimbench.warm", "serve", WARM_SOCKET], stdout=log, stderr=log,
                                  start_new_session=True))
    for _ in range(300):
        if Path(WARM_SOCKET).exists() or _warm[-1].poll() is not None:
            break
        time.sleep(0.1)


def stop_warm() -> None:
    """onsuccess / onerror: stop the server (its running children are the jobs Snakemake already waited for)."""
    while _warm:
        proc = _warm.pop()
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001
            proc.kill()


def executor(workflow) -> str:
    """The executor plugin running the jobs ('local', 'slurm', 'slurm-jobstep' inside a SLURM job, 'dryrun')."""
    plugin = workflow.executor_plugin
    return plugin.name if plugin is not None else "local"


def gpu_pool(workflow) -> int | None:
    """N of `snakemake --resources gpu=N`, None when not given."""
    res = workflow.global_resources.get("gpu")
    return getattr(res, "value", res)


def gpu_pin(workflow, py: str, gpus: int) -> str:
    """`claimbench gpu-run` (as `python -m claimbench.gpu_slots`: no torch import at start-up) in front of the
    train command on a local run with GPUs; nothing elsewhere (SLURM gives each job its own GPUs)."""
    if gpus == 0 or executor(workflow) != "local":
        return ""
    pool = gpu_pool(workflow)
    return f"{shlex.quote(py)} -m claimbench.gpu_slots --gpus {gpus}" + (f" --pool {pool}" if pool else "") + " -- "


def check_before_start(workflow, gpus: int, train_rule: str = "train") -> None:
    """onstart: after the DAG is built, before any job is started or submitted. A SLURM run needs an account and
    a partition for every job; a local run with GPUs needs a pool (--resources gpu=N) that this machine has."""
    name = executor(workflow)
    jobs = list(workflow.dag.needrun_jobs())
    if name == "slurm":
        for job in jobs:
            for key in SLURM_SETTINGS:
                if not job.resources.get(key):
                    raise ConfigError(f"{key} is not set (rule {job.rule.name}): fill it in config/slurm/config.yaml "
                                      f"under default-resources, or pass --default-resources {key}=...")
    elif name == "local" and gpus > 0 and any(job.rule.name == train_rule for job in jobs):
        import torch

        ids = gpu_slots.pool_ids(gpu_pool(workflow), os.environ.get("CUDA_VISIBLE_DEVICES"))
        gpu_slots.check_request(gpus, ids, torch.cuda.device_count())
