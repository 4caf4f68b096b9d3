"""GPU pinning for local multi-GPU runs (claimbench/gpu_slots.py): real processes, real fcntl locks.

No GPU is needed: the allocator only hands out device ids and exports CUDA_VISIBLE_DEVICES; what the pinned
command does with them is its own business. The checks against the machine's real devices (which need torch's
device count) are tested through Snakemake on this GPU-less machine.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from claimbench import gpu_slots
from claimbench.config import ConfigError
from claimbench.testing import REPO, micro_data_dir

SLOTS = [sys.executable, "-m", "claimbench.gpu_slots"]


def _pinned(slots: Path, gpus: int, pool: int | None, *command: str, env: dict | None = None) -> subprocess.Popen:
    args = [*SLOTS, "--gpus", str(gpus), "--slots-dir", str(slots), "--wait", "60"]
    args += ["--pool", str(pool)] if pool is not None else []
    return subprocess.Popen([*args, "--", *command], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_pool_ids_and_requests():
    assert gpu_slots.pool_ids(3) == ["0", "1", "2"]
    assert gpu_slots.pool_ids(2, "4,GPU-abc,7") == ["4", "GPU-abc"]  # the first N of what the parent may see
    with pytest.raises(ConfigError, match=r"--resources gpu=N"):
        gpu_slots.pool_ids(None)  # no pool given to snakemake
    with pytest.raises(ConfigError, match=r"gpu=0.*empty"):
        gpu_slots.pool_ids(0)
    with pytest.raises(ConfigError, match=r"CUDA_VISIBLE_DEVICES=''.*0 device"):
        gpu_slots.pool_ids(1, "")
    with pytest.raises(ConfigError, match=r"gpus_per_run: 3 but the GPU pool has 2"):
        gpu_slots.check_request(3, ["0", "1"])
    with pytest.raises(ConfigError, match=r"gpus_per_run: 1 but this machine has no CUDA device"):
        gpu_slots.check_request(1, ["0"], device_count=0)
    with pytest.raises(ConfigError, match=r"--resources gpu=4 but this machine has 2 CUDA"):
        gpu_slots.check_request(1, ["0", "1", "2", "3"], device_count=2)
    gpu_slots.check_request(2, ["0", "1"], device_count=2)


def test_acquire_k_gpus_waits_and_releases(tmp_path):
    ids = ["0", "1", "2", "3"]
    a = gpu_slots.acquire(2, ids, tmp_path)
    b = gpu_slots.acquire(2, ids, tmp_path)
    assert a.ids == ["0", "1"] and b.ids == ["2", "3"]  # k > 1: distinct devices, lowest free first
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=rf"no 1 free GPU.*held: 0: pid {os.getpid()}"):
        gpu_slots.acquire(1, ids, tmp_path, wait_s=0.5, poll_s=0.05)
    assert time.monotonic() - t0 >= 0.5  # it waited for a holder before giving up
    a.release()
    c = gpu_slots.acquire(1, ids, tmp_path, wait_s=0)
    assert c.ids == ["0"]
    c.release()
    b.release()


def test_concurrent_jobs_never_share_a_device(tmp_path):
    """More jobs than devices at once, a mix of 1- and 2-GPU jobs: each device is held by one job at a time."""
    slots, rec = tmp_path / "slots", tmp_path / "rec"
    rec.mkdir()
    script = ('s=$(date +%s.%N); sleep 0.3; e=$(date +%s.%N); '
              'echo "$CUDA_VISIBLE_DEVICES $s $e" > {rec}/$$')
    jobs = [_pinned(slots, k, 3, "sh", "-c", script.format(rec=rec)) for k in (1, 2, 1, 1, 2, 1, 1, 1)]
    for p in jobs:
        assert p.wait(timeout=90) == 0, p.stderr.read()
    spans = [line.split() for f in rec.iterdir() for line in f.read_text().splitlines()]
    assert len(spans) == len(jobs)
    assert sorted(len(devs.split(",")) for devs, _, _ in spans) == [1] * 6 + [2] * 2
    held = [(d, float(s), float(e)) for devs, s, e in spans for d in devs.split(",")]
    assert {d for d, _, _ in held} == {"0", "1", "2"}
    for (d1, s1, e1), (d2, s2, e2) in itertools.combinations(held, 2):
        assert d1 != d2 or e1 <= s2 or e2 <= s1, f"device {d1} shared: {s1}-{e1} and {s2}-{e2}"


def test_lock_is_the_commands_and_is_released_on_crash_and_kill(tmp_path):
    ids = ["0", "1"]
    failed = _pinned(tmp_path, 2, 2, "sh", "-c", "exit 3")  # a command that fails
    assert failed.wait(timeout=30) == 3  # its exit code comes through unchanged
    gpu_slots.acquire(2, ids, tmp_path, wait_s=0).release()
    crashed = _pinned(tmp_path, 1, 2, "sh", "-c", "kill -9 $$")  # dies by SIGKILL: no cleanup code runs
    assert crashed.wait(timeout=30) == -signal.SIGKILL
    gpu_slots.acquire(2, ids, tmp_path, wait_s=0).release()
    running = _pinned(tmp_path, 1, 2, "sleep", "60")
    deadline = time.monotonic() + 30
    while not (tmp_path / "gpu-0.lock").exists() or "sleep" not in (tmp_path / "gpu-0.lock").read_text():
        assert time.monotonic() < deadline and running.poll() is None
        time.sleep(0.05)
    # exec(): the holder is the command itself (same pid), not a wrapper that could die and leave it running
    with pytest.raises(ConfigError, match=rf"held: 0: pid {running.pid} sleep 60"):
        gpu_slots.acquire(2, ids, tmp_path, wait_s=0)
    running.kill()
    running.wait(timeout=30)
    gpu_slots.acquire(2, ids, tmp_path, wait_s=0).release()


def test_cli_exports_visible_devices_and_rejects_bad_requests(tmp_path, cli):
    p = _pinned(tmp_path, 2, 2, "sh", "-c", "echo $CUDA_VISIBLE_DEVICES", env={"CUDA_VISIBLE_DEVICES": "5,3,9"})
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and out.strip() == "5,3", err
    for args, msg in [(["--gpus", "2", "--pool", "1"], "gpus_per_run: 2 but the GPU pool has 1"),
                      (["--gpus", "1"], "no GPU pool: run snakemake with --resources gpu=N")]:
        r = subprocess.run([*SLOTS, *args, "--slots-dir", str(tmp_path), "--", "true"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cli("gpu-run", "--gpus", "1", "--pool", "1", "--slots-dir", str(tmp_path), "--", "sh", "-c",
            "echo pinned=$CUDA_VISIBLE_DEVICES")
    assert r.returncode == 0 and "pinned=0" in r.stdout, r.stderr


# --- through Snakemake: a GPU asked for where there is none stops before any training ---

def _micro(tmp_path: Path, **extra) -> Path:
    cfg = {"profile": "micro", "runs_dir": "runs/micro", "results_dir": "results", "threads_per_run": 1,
           "data": {"micro": {"dir": str(micro_data_dir())}},
           "grid": [{"name": "micro", "config": "benchmarks/configs/gpt.yaml", "data": "micro", "workload": "gpt",
                     "size": "micro", "recipes": ["adamw"], "seeds": [0], "set": {"train.steps": 3}}], **extra}
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "micro.yaml"


def _snakemake(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cfg = _micro(tmp_path, gpus_per_run=1)
    return subprocess.run([sys.executable, "-m", "snakemake", "results/runs.csv", "--snakefile", REPO / "Snakefile",
                           "--directory", tmp_path, "--configfile", cfg, "--cores", "1", *args],
                          capture_output=True, text=True, env=env, timeout=300)


NO_GPU = pytest.mark.skipif(os.environ.get("CUDA_VISIBLE_DEVICES", "") != "" or Path("/dev/nvidia0").exists(),
                            reason="checks the error on a machine without a GPU")


@NO_GPU
def test_snakemake_gpu_where_none_exists_is_a_clear_error(tmp_path):
    r = _snakemake(tmp_path, "--resources", "gpu=1")
    assert r.returncode != 0
    assert "gpus_per_run: 1 but this machine has no CUDA device" in r.stderr, r.stderr[-3000:]
    assert not list(tmp_path.glob("runs/micro/*/train.log")), "training started before the check"


@pytest.mark.slow
@NO_GPU
def test_snakemake_gpu_run_without_a_pool_is_a_clear_error(tmp_path):
    r = _snakemake(tmp_path)
    assert r.returncode != 0
    assert "no GPU pool: run snakemake with --resources gpu=N" in r.stderr, r.stderr[-3000:]
    assert not list(tmp_path.glob("runs/micro/*/train.log")), "training started before the check"


@pytest.mark.slow
def test_local_gpu_run_pins_each_train_job(tmp_path):
    """The pinning prefix through the real DAG. This machine has no GPU, so the onstart device check is skipped
    with Snakemake's own --no-hooks; the micro runs train on the CPU whatever CUDA ids they are given."""
    cfg = _micro(tmp_path, gpus_per_run=1)
    micro = yaml.safe_load(cfg.read_text())
    micro["grid"][0]["seeds"] = [0, 1]
    cfg.write_text(yaml.safe_dump(micro))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/runs.csv", "--snakefile", REPO / "Snakefile",
                        "--directory", tmp_path, "--configfile", cfg, "--profile", REPO / "config" / "gpu-local",
                        "--cores", "2", "--no-hooks", "--resources", "gpu=2"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("-m claimbench.gpu_slots --gpus 1 --pool 2 -- ") == 2, r.stderr[-3000:]
    logs = sorted(tmp_path.glob("runs/micro/*/train.log"))
    pinned = [line for log in logs for line in log.read_text().splitlines() if line.startswith("claimbench gpu-run")]
    assert len(logs) == 2 and len(pinned) == 2, pinned
    assert all(line.endswith("(pool 0,1)") and "CUDA_VISIBLE_DEVICES=" in line for line in pinned), pinned
    assert list((tmp_path / ".snakemake" / "gpu-slots").glob("gpu-*.lock"))  # the DAG's default slots dir
