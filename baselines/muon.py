"""`muon` recipe: Muon (torch.optim.Muon, PyTorch's own) on the 2-D hidden matrices, AdamW on everything else
(embeddings, head, norms, biases, learnable multipliers), as in Jordan 2024 / Moonlight / Falcon-H1-Tiny.

Both use decoupled weight decay from the run's parameter groups (torch's Muon: p *= 1 - lr * wd). The update
scale is Moonlight's AdamW-RMS match by default (lr * 0.2 * sqrt(max(A, B)), so Muon and AdamW arms share one
LR grid); `adjust_lr: original` gives Jordan's lr * sqrt(max(1, A/B)). Which tensors are "hidden matrices" is
read from the role side table the trainer hands the recipe (`Recipe.roles`), never from parameter names.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from baselines.adamw import kernel
from baselines.schedules import from_train_config
from claimbench.plugin import Recipe
from claimbench.registry import register_recipe

MUON_ROLES = frozenset({"hidden_matrix", "attn_q", "attn_k", "attn_v", "attn_out"})


class MuonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    momentum: float = Field(0.95, ge=0, lt=1)
    nesterov: bool = True
    ns_steps: int = Field(5, ge=1)
    # Jordan's quintic (torch's default) leaves singular values in about [0.7, 1.2] by design (fast, not exact);
    # (1.5, -0.5, 0) is the classic cubic Newton-Schulz, which converges to exactly 1 in ~10 steps
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315)
    adjust_lr: Literal["match_rms_adamw", "original"] = "match_rms_adamw"
    lr_scale: float = Field(1.0, gt=0)  # Muon groups' LR relative to the AdamW groups'


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer over two inner ones that share the same param-group dicts, so an LR scheduler on this one
    drives both; its state_dict holds both inner states (exact resume)."""

    def __init__(self, muon_groups: list[dict], adamw_groups: list[dict], muon_kw: dict, adamw_kw: dict):
        self.muon = torch.optim.Muon(muon_groups, **muon_kw) if muon_groups else None
        self.adamw = torch.optim.AdamW(adamw_groups, **adamw_kw) if adamw_groups else None
        shared = [g for opt in (self.muon, self.adamw) if opt is not None for g in opt.param_groups]
        super().__init__(shared, {})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for opt in (self.muon, self.adamw):
            if opt is not None:
                opt.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {k: opt.state_dict() for k, opt in (("muon", self.muon), ("adamw", self.adamw)) if opt is not None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, opt in (("muon", self.muon), ("adamw", self.adamw)):
            if opt is not None:
                opt.load_state_dict(state[k])
        # torch's load_state_dict builds new group dicts: share them again, or a scheduler would drive stale ones
        self.param_groups = [g for opt in (self.muon, self.adamw) if opt is not None for g in opt.param_groups]


def split_groups(groups: list[dict], roles: dict[str, str], lr_scale: float = 1.0) -> tuple[list[dict], list[dict]]:
    """Each group split in its Muon part (2-D tensors of hidden-matrix roles) and its AdamW part."""
    muon, adamw = [], []
    for g in groups:
        names = g.get("names") or [None] * len(g["params"])
        parts: dict[bool, dict] = {}
        for p, n in zip(g["params"], names, strict=True):
            is_muon = p.ndim == 2 and n is not None and roles.get(n) in MUON_ROLES
            part = parts.setdefault(is_muon, {**g, "params": [], "names": []})
            part["params"].append(p)
            part["names"].append(n)
        if True in parts:
            parts[True]["lr"] = parts[True].get("lr", 0.0) * lr_scale
            muon.append(parts[True])
        if False in parts:
            adamw.append(parts[False])
    return muon, adamw


@register_recipe("muon")
class Muon(Recipe):
    """Muon on hidden matrices + AdamW elsewhere; warmup + the configured schedule (as `adamw`)."""

    Options = MuonOptions
    optimizer = "muon"

    def build_optimizer(self, groups, train):
        if self.roles is None:
            raise RuntimeError("muon: the trainer sets Recipe.roles before build_optimizer")
        o = self.options
        muon, adamw = split_groups(groups, self.roles, o.lr_scale)
        return MuonWithAdamW(
            muon, adamw,
            dict(lr=train.lr * o.lr_scale, weight_decay=train.weight_decay, momentum=o.momentum, nesterov=o.nesterov,
                 ns_steps=o.ns_steps, ns_coefficients=o.ns_coefficients, adjust_lr_fn=o.adjust_lr),
            dict(lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps, weight_decay=train.weight_decay,
                 **kernel(train.device)))

    def lr_lambda(self, train):
        return from_train_config(train)
