"""Data parallelism under `torchrun`: the process group, who writes files, and loss averaging.

`torchrun --nproc_per_node N` sets RANK, WORLD_SIZE and LOCAL_RANK; without them (or with
WORLD_SIZE=1) every helper here is a no-op, so a plain `claimbench train` runs exactly as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from claimbench.config import ConfigError


@dataclass(frozen=True)
class Env:
    """The launcher's view of this process (torchrun's environment variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env() -> Env:
    """RANK/WORLD_SIZE/LOCAL_RANK from the environment; a single process when WORLD_SIZE is unset."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"torchrun environment: RANK/WORLD_SIZE/LOCAL_RANK must be integers ({e})") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"torchrun environment: RANK {rank} is not in [0, WORLD_SIZE {world})")
    return Env(rank, world, local)


def world_size() -> int:
    return env().world_size


def is_main() -> bool:
    """Rank 0 (or the only process) writes the run files; the other ranks only train."""
    return env().rank == 0


def device_for(requested: str) -> str:
    """The device this process trains on: `cuda` means cuda:LOCAL_RANK under torchrun."""
    e = env()
    if requested == "cuda" and e.enabled:
        return f"cuda:{e.local_rank}"
    return requested


def check(requested_device: str, batch_size: int, grad_accum: int) -> None:
    """Reject a launch that cannot work, before anything runs (one line naming the setting)."""
    e = env()
    if batch_size % (e.world_size * grad_accum):
        raise ConfigError(f"train.batch_size {batch_size} is not divisible by nproc_per_node {e.world_size} "
                          f"x train.grad_accum {grad_accum}")
    if not e.enabled:
        return
    if requested_device.startswith("cuda"):
        if requested_device != "cuda":
            raise ConfigError(f"train.device: '{requested_device}' names one GPU but torchrun started "
                              f"{e.world_size} processes; use 'cuda' (each process takes cuda:LOCAL_RANK)")
        visible = torch.cuda.device_count()
        if e.local_rank >= visible:
            raise ConfigError(f"train.device: 'cuda' with LOCAL_RANK {e.local_rank} needs {e.local_rank + 1} "
                              f"visible GPUs, {visible} visible (lower --nproc_per_node or check "
                              "CUDA_VISIBLE_DEVICES)")
    elif requested_device != "cpu":
        raise ConfigError(f"train.device: '{requested_device}' is not supported under torchrun (use cpu or cuda)")


def init(device: torch.device) -> None:
    """Join the process group torchrun set up: NCCL on GPUs, gloo on CPU. No-op for one process."""
    if not env().enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over ranks (a new tensor; `t` itself when there is one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
