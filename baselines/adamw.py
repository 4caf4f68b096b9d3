"""AdamW recipes: `adamw` (linear warmup + the configured schedule) and `adamw_nowarmup`."""

from __future__ import annotations

import torch

from baselines.schedules import from_train_config
from claimbench.plugin import Recipe
from claimbench.registry import register_recipe


def kernel(device: str) -> dict:
    """fused on a GPU; on a CPU the multi-tensor (foreach) update, which torch leaves off there by default: it
    gives the per-tensor loop's numbers bit for bit (tests/test_bit_identity.py) without its Python cost per tensor,
    which a method adding many small parameters pays per step (LRM's 58 multiplier vectors: ~2 points of its
    step overhead at the speed suite's size)."""
    return {"fused": True} if device.startswith("cuda") else {"foreach": True}


@register_recipe("adamw")
class AdamW(Recipe):
    """nanoGPT/timm-style AdamW: decay on matrices, none on norms/biases (groups come from roles)."""

    def build_optimizer(self, groups, train):
        return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps,
                                 weight_decay=train.weight_decay, **kernel(train.device))

    def lr_lambda(self, train):
        return from_train_config(train)


@register_recipe("adamw_nowarmup")
class AdamWNoWarmup(AdamW):
    """The same AdamW with warmup forced off: the no-warmup crash control."""

    forced = {"warmup_steps": 0}
