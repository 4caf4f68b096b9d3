"""Pin each local job to its own GPU(s): a file-lock slot allocator for `snakemake --resources gpu=N`.

Snakemake's `--resources gpu=N` only counts: it starts jobs while their `gpu` sum fits in N, but it tells a
job nothing about *which* devices are free, so two one-GPU jobs would both train on cuda:0. Snakemake has no
per-job device id and no executor plugin does this for local runs, so the few lines of allocation live here
(hand-written for that reason): one lock file per device under `.snakemake/gpu-slots/`, taken with an
exclusive `fcntl.flock`. A job takes k free devices, sets CUDA_VISIBLE_DEVICES to them and exec()s its
command with the lock files still open: the locks belong to the training process itself, so the kernel
releases them when it exits for any reason (success, exception, SIGKILL, OOM kill); nothing is left to clean.

`python -m claimbench.gpu_slots --gpus K --pool N -- CMD ...` is the same as `claimbench gpu-run ...` without the
CLI's start-up (the full CLI imports torch for other subcommands: seconds per job), so the Snakefile uses it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from claimbench.config import ConfigError

DEFAULT_DIR = Path(".snakemake") / "gpu-slots"
POOL_HINT = "run snakemake with --resources gpu=N, N = the GPUs on this machine (README: 'local multi-GPU')"


def pool_ids(pool: int | None, visible: str | None = None) -> list[str]:
    """The device ids `--resources gpu=N` stands for: the first N of CUDA_VISIBLE_DEVICES if set, else 0..N-1."""
    if pool is None:
        raise ConfigError(f"gpus_per_run > 0 but snakemake was given no GPU pool: {POOL_HINT}")
    if pool < 1:
        raise ConfigError(f"--resources gpu={pool}: the GPU pool is empty; {POOL_HINT}")
    if visible is None:
        return [str(i) for i in range(pool)]
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if len(ids) < pool:
        raise ConfigError(f"--resources gpu={pool} but CUDA_VISIBLE_DEVICES='{visible}' lists {len(ids)} "
                          f"device(s): lower gpu= or widen CUDA_VISIBLE_DEVICES")
    return ids[:pool]


def check_request(gpus: int, ids: Sequence[str], device_count: int | None = None) -> None:
    """A job's GPU request against the pool and, when known, the CUDA devices this machine really has."""
    if gpus < 0:
        raise ConfigError(f"gpus_per_run: {gpus} is negative")
    if device_count is not None and gpus > 0 and device_count == 0:
        raise ConfigError(f"gpus_per_run: {gpus} but this machine has no CUDA device (torch.cuda.device_count() "
                          f"is 0): set gpus_per_run: 0 (and train.device: cpu) or run on a GPU machine")
    if device_count is not None and len(ids) > device_count:
        raise ConfigError(f"--resources gpu={len(ids)} but this machine has {device_count} CUDA device(s)")
    if gpus > len(ids):
        raise ConfigError(f"gpus_per_run: {gpus} but the GPU pool has {len(ids)} device(s) "
                          f"(--resources gpu={len(ids)}): no job could ever start")


@dataclass
class Held:
    """Devices a job holds: their ids and the open, flock'ed lock files."""

    ids: list[str]
    fds: list[int]

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)  # closing the last descriptor of the open file drops its flock
        self.fds = []


def _lock_path(slots_dir: Path, dev: str) -> Path:
    return slots_dir / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', dev)}.lock"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def holders(slots_dir: Path, ids: Sequence[str]) -> dict[str, str]:
    """Who holds each busy device (the pid line its holder wrote), for error messages."""
    out = {}
    for dev in ids:
        path = _lock_path(slots_dir, dev)
        fd = _try_lock(path) if path.exists() else None
        if fd is not None:
            os.close(fd)
        elif path.exists():
            out[dev] = path.read_text().strip() or "?"
    return out


@contextmanager
def _alloc_lock(slots_dir: Path):
    """One allocator at a time, so two jobs never each grab part of what both need (no livelock)."""
    fd = os.open(slots_dir / "alloc.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def acquire(gpus: int, ids: Sequence[str], slots_dir: Path = DEFAULT_DIR, wait_s: float = 120.0,
            poll_s: float = 0.2, label: str = "") -> Held:
    """Take `gpus` free devices of `ids` (lowest first), waiting up to `wait_s` for a holder to exit."""
    check_request(gpus, ids)
    slots_dir = Path(slots_dir)
    slots_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        with _alloc_lock(slots_dir):
            got = Held([], [])
            for dev in ids:
                if len(got.ids) == gpus:
                    break
                fd = _try_lock(_lock_path(slots_dir, dev))
                if fd is not None:
                    got.ids.append(dev)
                    got.fds.append(fd)
            if len(got.ids) == gpus:
                for fd in got.fds:  # who holds it, for the next job's error message
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"pid {os.getpid()} {label}".strip().encode() + b"\n", 0)
                return got
            got.release()
        if time.monotonic() >= deadline:
            busy = ", ".join(f"{d}: {h}" for d, h in holders(slots_dir, ids).items())
            raise ConfigError(f"no {gpus} free GPU(s) of {list(ids)} after {wait_s:.0f} s (held: {busy}); "
                              f"another run sharing {slots_dir}, or --resources gpu= larger than the GPUs free")
        time.sleep(poll_s)


def exec_pinned(gpus: int, pool: int | None, command: Sequence[str], slots_dir: Path = DEFAULT_DIR,
                wait_s: float = 120.0) -> None:
    """Acquire, export CUDA_VISIBLE_DEVICES and exec() `command`, which inherits the locks (never returns)."""
    if not command:
        raise ConfigError("gpu-run: no command given (usage: claimbench gpu-run --gpus K --pool N -- CMD ...)")
    env = dict(os.environ)
    ids = pool_ids(pool, env.get("CUDA_VISIBLE_DEVICES"))
    held = acquire(gpus, ids, slots_dir, wait_s, label=" ".join(command)[:200])
    for fd in held.fds:
        os.set_inheritable(fd, True)  # Python opens descriptors close-on-exec; the command must keep the locks
    env["CUDA_VISIBLE_DEVICES"] = ",".join(held.ids)  # CUDA_DEVICE_ORDER left as the user has it
    print(f"claimbench gpu-run: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} (pool {','.join(ids)})",
          file=sys.stderr, flush=True)
    try:
        os.execvpe(command[0], list(command), env)
    except OSError as e:
        held.release()
        raise ConfigError(f"gpu-run: cannot run {command[0]!r}: {e.strerror}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", type=int, required=True, help="GPUs the command needs")
    p.add_argument("--pool", type=int, help="GPUs snakemake shares out (its --resources gpu=N)")
    p.add_argument("--slots-dir", default=str(DEFAULT_DIR), help="lock files, one per device (default %(default)s)")
    p.add_argument("--wait", type=float, default=120.0,
                   help="seconds to wait for a busy device before failing (default %(default)s)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")


def run_from_args(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    exec_pinned(args.gpus, args.pool, command, Path(args.slots_dir), args.wait)
    return 0  # not reached: exec_pinned replaces this process or raises


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m claimbench.gpu_slots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    try:
        return run_from_args(p.parse_args(argv))
    except ConfigError as e:
        print(f"claimbench gpu-run: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
