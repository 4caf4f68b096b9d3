"""No-warmup stabiliser recipes for the AdamW^2 paper's baselines (docs/papers/nowarmup.md).

- `radam`: torch.optim.RAdam (Liu et al. 2020, variance rectification = an implicit warmup), decoupled weight
  decay, the configured schedule with warmup forced off.
- `replayed_warmup`: AdamW whose global LR schedule is the median effective LR of an AdamW^2 run (reviewer 3's
  question: is AdamW^2 only an automatic warmup?). The schedule is read from that run's metrics.jsonl
  (`lr` x `spectral/lr_ratio_median` at each log step) and replayed as a piecewise-linear schedule.
AdamW with warmup (`adamw`) and without (`adamw_nowarmup`) are in baselines/adamw.py; QK-norm is a model option
(`model.qk_norm: true` for gpt and vit); sigma-Reparam is the method in baselines/sigma_reparam.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, field_validator

from baselines.adamw import AdamW
from baselines.schedules import from_train_config, piecewise
from claimbench.plugin import Recipe
from claimbench.registry import register_recipe

RATIO_KEY = "spectral/lr_ratio_median"


@register_recipe("radam")
class RAdam(Recipe):
    """RAdam without warmup (its rectifier is the warmup), decoupled weight decay like AdamW."""

    forced = {"warmup_steps": 0}
    optimizer = "radam"

    def build_optimizer(self, groups, train):
        return torch.optim.RAdam(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps,
                                 weight_decay=train.weight_decay, decoupled_weight_decay=True)

    def lr_lambda(self, train):
        return from_train_config(train)


def replay_points(metrics_path: Path) -> list[tuple[int, float]]:
    """(step, absolute effective LR) from an AdamW^2 run: the LR used at logged step s is row `lr`, and the median
    tensor took `lr_ratio_median` of it. The first point is moved to step 0 (steps before the first log use it)."""
    pts = []
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get(RATIO_KEY) is not None and row.get("lr") is not None:
            pts.append((int(row["step"]) - 1, float(row["lr"]) * float(row[RATIO_KEY])))
    if not pts:
        raise ValueError(f"{metrics_path} has no '{RATIO_KEY}' rows: is it an adamw2 run?")
    return [(0, pts[0][1]), *[p for p in pts if p[0] > 0]]


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str  # an AdamW^2 run directory (or its metrics.jsonl)

    @field_validator("source")
    @classmethod
    def _readable(cls, v: str) -> str:
        path = Path(v) / "metrics.jsonl" if Path(v).is_dir() else Path(v)
        if not path.is_file():
            raise ValueError(f"{path} not found: train the AdamW^2 run first")
        replay_points(path)
        return v


@register_recipe("replayed_warmup")
class ReplayedWarmup(AdamW):
    """AdamW under the median effective LR of an AdamW^2 run, replayed as one global piecewise schedule."""

    Options = ReplayOptions
    forced = {"warmup_steps": 0}

    def lr_lambda(self, train):
        src = Path(self.options.source)
        pts = replay_points(src / "metrics.jsonl" if src.is_dir() else src)
        return piecewise([(s, lr / train.lr) for s, lr in pts])
