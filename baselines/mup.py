"""`mup`: the muP baseline (Yang et al., Tensor Programs V, Adam form with MuReadout), as a method so it can
reach the model: width-scaled init, per-role LR and forward multipliers, and the paper's tuning levels.

Width rules, m = width / base_width (all roles from the side table, never from names or tensor attributes):
  - hidden matrices (hidden_matrix, attn_q/k/v/out): init std x m^-1/2 (existing weights rescaled, so the RNG
    stream is the standard one), Adam LR x 1/m;
  - embedding: unchanged; readout: init std x m^-1/2, output multiplier x 1/m, LR unchanged;
  - attention scale 1/head_dim instead of 1/sqrt(head_dim) (GPT: the current scale x base_head_dim/head_dim).
Forward multipliers (embedding, logit, attention scale) are set through the workload's `forward_multipliers`.
At m = 1 every factor is exactly 1, so muP at base width is the standard parametrization (a test checks it).
Tuning levels of the LRM paper's ablation (§5.1): the tuned multipliers are options, applied by level:
NONE (all 1), LR (lr_mult), LRWD (lr_mult, wd_mult), FULL (+ forward multipliers fwd_mult). The tuned values
come from the config, either inline or as `tuned: FILE`, the per-level choice of the base-width sweep the DAG
runs (methods/lrm/mup_sweep.py); the file is a Snakemake input of the run, so a changed sweep retrains it.
This module does not choose them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from claimbench.capabilities import Multiplier
from claimbench.config import ConfigError
from claimbench.plugin import MATRIX_ROLES, ROLES, Method, Workload
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
    # the sweep's choice file (methods/lrm/mup_sweep.py): the level's multipliers are read from it at run start
    tuned: str | None = None

    @model_validator(mode="after")
    def _tuned_alone(self):
        if self.tuned is not None:
            if self.level == "NONE":
                raise ValueError("tuned: level NONE tunes nothing (all multipliers 1); drop `tuned` or pick LR, "
                                 "LRWD or FULL")
            given = [k for k in ("lr_mult", "wd_mult", "fwd_mult") if getattr(self, k)]
            if given:
                raise ValueError(f"tuned: give the multipliers either inline or by file, not both ({given[0]})")
        return self

    @field_validator("lr_mult", "wd_mult")
    @classmethod
    def _roles(cls, v: dict[str, float]) -> dict[str, float]:
        for role, k in v.items():
            if role not in ROLES:
                raise ValueError(f"unknown role '{role}' (roles: {', '.join(sorted(ROLES))})")
            if not k > 0:
                raise ValueError(f"{role}: multiplier must be > 0, got {k}")
        return v


def resolve_path(path: str) -> Path:
    """A tuned file as given (relative to the working directory, the repository root under Snakemake), else
    relative to the repository (an lm-eval load from elsewhere)."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else Path(__file__).resolve().parents[1] / p


def load_tuned(opts: MupOptions) -> MupOptions:
    """`opts` with its level's multipliers read from `opts.tuned`; ConfigError naming the file otherwise."""
    if opts.tuned is None:
        return opts
    path = resolve_path(opts.tuned)
    if not path.is_file():
        raise ConfigError(f"mup option tuned: {opts.tuned} not found (the base-width sweep writes it: "
                          "snakemake --config 'papers=[lrm]' <that path>)")
    try:
        level = json.loads(path.read_text())["levels"][opts.level]
        values = {k: level.get(k) or {} for k in ("lr_mult", "wd_mult", "fwd_mult")}
        return MupOptions.model_validate({**opts.model_dump(exclude={"tuned"}), **values})
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"mup option tuned: {opts.tuned}: no usable levels.{opts.level} ({e!r})") from None
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"mup option tuned: {opts.tuned}: levels.{opts.level}."
                          f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


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
def apply_mup(model: nn.Module, roles: dict[str, str], opts: MupOptions, multipliers: dict[str, Multiplier]) -> float:
    """Rescale init and set the forward multipliers in place; returns the width multiplier m. `multipliers`:
    the workload's forward multipliers by role (forward_multipliers); an attention scale only where the
    workload has one ("attn_scale": GPT; timm's attention is left as is)."""
    width = model_width(model, roles)
    m = width / opts.base_width
    fwd = opts.fwd_mult if opts.level == "FULL" else {}
    for name, p in model.named_parameters():
        if roles[name] in HIDDEN or roles[name] == "readout":
            if p.ndim >= 2 and m != 1.0:
                p.mul_(m ** -0.5)
    emb_mult, logit_mult = fwd.get("embedding", 1.0), fwd.get("readout", 1.0) / m
    multipliers["embedding"].mul(emb_mult)
    multipliers["logit"].mul(logit_mult)
    if "attn_scale" in multipliers:
        attn = multipliers["attn_scale"]
        attn.mul(1.0 / m)  # head_dim grows with m at fixed heads
        attn.mul(fwd.get("attn", 1.0))
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
    needs = frozenset({"multipliers"})

    def __init__(self, options: MupOptions, ctx):
        super().__init__(load_tuned(options), ctx)

    @classmethod
    def check(cls, options: MupOptions, workload: Workload) -> None:
        """A `tuned` file must exist and hold the level's multipliers (read before anything is written)."""
        load_tuned(options)

    def transform_model(self, model: nn.Module) -> nn.Module:
        if not any(r in MATRIX_ROLES for r in self.ctx.roles.values()):
            return model
        mults = self.ctx.workload.forward_multipliers(model, self.ctx.roles)
        self.m = apply_mup(model, self.ctx.roles, self.options, mults)
        return model

    def param_groups(self, model: nn.Module, groups: list[dict]) -> list[dict]:
        return split_by_factor(groups, self.ctx.roles, role_factors(self.options, self.m))
