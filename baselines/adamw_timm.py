"""`adamw_timm`: AdamW with timm's warmup + cosine schedule, per step or per epoch.

timm's `CosineLRScheduler` (the recipe of DeiT/Swin training scripts) differs from the `adamw`
recipe's schedule in three ways, kept here so a vision run can follow a timm recipe exactly:
warmup rises linearly from an absolute `warmup_lr_init` (timm: 1e-6), not from lr/warmup; the
cosine runs over the whole run including the warmup (timm's default `warmup_prefix=False`) down to an
absolute `min_lr`; and with `per_epoch` the LR changes only at epoch boundaries (`t_in_epochs=True`).
Parameter groups are the trainer's (no decay on norms, biases and timm's `no_weight_decay()`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from baselines.adamw import AdamW
from claimbench.registry import register_recipe


class TimmAdamWOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warmup_lr_init: float = Field(1e-6, ge=0, description="absolute LR at step 0 of the warmup")
    min_lr: float = Field(1e-5, ge=0, description="absolute LR at the end of the cosine")
    per_epoch: bool = Field(False, description="change the LR at epoch boundaries only (timm t_in_epochs)")
    steps_per_epoch: int | None = Field(None, ge=1, description="needed with per_epoch (dataset size / batch)")

    @model_validator(mode="after")
    def _epochs(self):
        if self.per_epoch and self.steps_per_epoch is None:
            raise ValueError("per_epoch: true needs steps_per_epoch")
        return self


def timm_cosine(lr: float, total: int, warmup: int, warmup_lr_init: float, min_lr: float,
                steps_per_epoch: int = 1) -> Callable[[int], float]:
    """step -> multiplier of `lr`, as timm's CosineLRScheduler with t counted in units of steps_per_epoch."""
    total_t, warmup_t = total / steps_per_epoch, warmup / steps_per_epoch

    def f(step: int) -> float:
        t = step // steps_per_epoch
        if t < warmup_t:
            value = warmup_lr_init + t * (lr - warmup_lr_init) / warmup_t
        elif t < total_t:
            value = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / total_t))
        else:
            value = min_lr
        return value / lr
    return f


@register_recipe("adamw_timm")
class TimmAdamW(AdamW):
    """AdamW with timm's CosineLRScheduler (absolute warmup start and floor; per step or per epoch)."""

    Options = TimmAdamWOptions

    def lr_lambda(self, train):
        o = self.options
        return timm_cosine(train.lr, train.steps, train.warmup_steps, o.warmup_lr_init, o.min_lr,
                           o.steps_per_epoch if o.per_epoch else 1)
