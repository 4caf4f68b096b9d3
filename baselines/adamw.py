"""AdamW recipes: `adamw` (linear warmup + the configured schedule) and `adamw_nowarmup`."""

from __future__ import annotations

import torch

from baselines.schedules import from_train_config
from claimbench.plugin import Recipe
from claimbench.registry import register_recipe


@register_recipe("adamw")
class AdamW(Recipe):
    """nanoGPT/timm-style AdamW: decay on matrices, none on norms/biases (groups come from roles)."""

    def build_optimizer(self, groups, train):
        fused = train.device.startswith("cuda")
        return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps,
                                 weight_decay=train.weight_decay, fused=fused or None)

    def lr_lambda(self, train):
        return from_train_config(train)


@register_recipe("adamw_nowarmup")
class AdamWNoWarmup(AdamW):
    """The same AdamW with warmup forced off: the no-warmup crash control."""

    forced = {"warmup_steps": 0}
