"""`mup`: the muP baseline (Yang et al., Tensor Programs V, Adam form with MuReadout), as a method so it can
reach the model: width-scaled init, per-role LR and forward multipliers, and the paper's tuning levels.

Width rules, m = width / base_width (all roles from the side table, never from names or tensor attributes):
  - hidden matrices (hidden_matrix, attn_q/k/v/out): init std x m^-1/2 (existing weights rescaled, so the RNG
    stream is the standard one), Adam LR x 1/m;
  - embedding: unchanged; readout: init std x m^-1/2, output multiplier x 1/m, LR unchanged;
  - attention scale 1/head_dim instead of 1/sqrt(head_dim) (GPT: the current scale x base_head_dim/head_dim).
At m = 1 every factor is exactly 1, so muP at base width is the standard parametrization (a test checks it).
Tuning levels of the LRM paper's ablation (§5.1): the tuned multipliers are options, applied by level:
NONE (all 1), LR (lr_mult), LRWD (lr_mult, wd_mult), FULL (+ forward multipliers fwd_mult). The tuned values
are supplied by the config (e.g. from a base-width sweep); this module does not choose them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, field_validator

from claimbench.plugin import MATRIX_ROLES, ROLES, Method
from claimbench.registry import register_method

HIDDEN = frozenset({"hidden_matrix", "attn_q", "attn_k", "attn_v", "attn_out"})
LEVELS = ("NONE", "LR", "LRWD", "FULL")


class MupOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_width: int = Field(128, ge=1)  # the width at which muP equals the standard parametrization
    level: Literal["NONE", "LR", "LRWD", "FULL"] = "NONE"
    lr_mult: dict[str, float] = Field(default_factory=dict)  # role -> tuned LR multiplier (levels LR, LRWD, FULL)
    wd_mult: dict[str, float] = Field(default_factory=dict)  # role -> tuned WD multiplier (LRWD, FULL)
    fwd_mult: dict[Literal["embedding", "readout", "attn"], float] = Field(default_factory=dict)  # FULL only

    @field_validator("lr_mult", "wd_mult")
    @classmethod
    def _roles(cls, v: dict[str, float]) -> dict[str, float]:
        for role, k in v.items():
            if role not in ROLES:
                raise ValueError(f"unknown role '{role}' (roles: {', '.join(sorted(ROLES))})")
            if not k > 0:
                raise ValueError(f"{role}: multiplier must be > 0, got {k}")
        return v


def model_width(model: nn.Module, roles: dict[str, str]) -> int:
    """The width muP scales with: the readout's fan-in (GPT n_embd, ViT embed_dim, MLP width), else the
    embedding's output dimension."""
    params = dict(model.named_parameters())
    for role, dim in (("readout", 1), ("embedding", 1)):
        p = next((params[n] for n, r in roles.items() if r == role and n in params and params[n].ndim >= 2), None)
        if p is not None:
            return int(p.shape[dim])
    raise ValueError("mup: the model has neither a readout nor an embedding matrix to read its width from")


def role_factors(opts: MupOptions, m: float) -> dict[str, tuple[float, float]]:
    """role -> (LR factor, WD factor): the width rule times the tuned multipliers the level enables."""
    out = {}
    for role in ROLES:
        lr = 1.0 / m if role in HIDDEN else 1.0
        wd = 1.0
        if opts.level in ("LR", "LRWD", "FULL"):
            lr *= opts.lr_mult.get(role, 1.0)
        if opts.level in ("LRWD", "FULL"):
            wd *= opts.wd_mult.get(role, 1.0)
        out[role] = (lr, wd)
    return out


@torch.no_grad()
def apply_mup(model: nn.Module, roles: dict[str, str], opts: MupOptions) -> float:
    """Rescale init and set the forward multipliers in place; returns the width multiplier m."""
    from benchmarks.models.gpt import GPT, Attention

    width = model_width(model, roles)
    m = width / opts.base_width
    fwd = opts.fwd_mult if opts.level == "FULL" else {}
    for name, p in model.named_parameters():
        if roles[name] in HIDDEN or roles[name] == "readout":
            if p.ndim >= 2 and m != 1.0:
                p.mul_(m ** -0.5)
    emb_mult, logit_mult = fwd.get("embedding", 1.0), fwd.get("readout", 1.0) / m
    if isinstance(model, GPT):
        model.cfg.embed_mult *= emb_mult
        model.cfg.logit_mult *= logit_mult
        for mod in model.modules():
            if isinstance(mod, Attention):
                mod.scale = mod.scale * (1.0 / m) * fwd.get("attn", 1.0)  # head_dim grows with m at fixed heads
    else:  # forward hooks on the modules owning the embedding / readout matrices; attention left as is
        owners = {id(p): r for n, p in model.named_parameters() if (r := roles[n]) in ("embedding", "readout")}
        for mod in model.modules():
            w = mod._parameters.get("weight")
            k = {"embedding": emb_mult, "readout": logit_mult}.get(owners.get(id(w), ""), 1.0) if w is not None else 1
            if k != 1.0:
                mod.register_forward_hook(lambda _m, _i, out, k=k: out * k)
    return m


def split_by_factor(groups: list[dict], roles: dict[str, str], factors: dict[str, tuple[float, float]]) -> list[dict]:
    """Each group split by its params' (LR, WD) factors; factor-(1, 1) params stay in the original group."""
    out = []
    for g in groups:
        parts: dict[tuple[float, float], dict] = {}
        for p, n in zip(g["params"], g["names"], strict=True):
            f = factors.get(roles.get(n, ""), (1.0, 1.0))
            part = parts.get(f)
            if part is None:
                part = parts[f] = {**g, "params": [], "names": [], "lr_scale": g.get("lr_scale", 1.0) * f[0],
                                   "weight_decay": g.get("weight_decay", 0.0) * f[1]}
                if f == (1.0, 1.0):
                    part.update(lr_scale=g.get("lr_scale", 1.0), weight_decay=g.get("weight_decay", 0.0))
            part["params"].append(p)
            part["names"].append(n)
        out += list(parts.values())
    return out


@register_method("mup")
class Mup(Method):
    """muP by role, with the LRM paper's tuning levels. List it before `lrm` (lrm init=mup absorbs its forward
    multipliers)."""

    Options = MupOptions

    def transform_model(self, model: nn.Module) -> nn.Module:
        if not any(r in MATRIX_ROLES for r in self.ctx.roles.values()):
            return model
        self.m = apply_mup(model, self.ctx.roles, self.options)
        return model

    def param_groups(self, model: nn.Module, groups: list[dict]) -> list[dict]:
        return split_by_factor(groups, self.ctx.roles, role_factors(self.options, self.m))
