"""The residual MLP of the function-space learning-rate paper (FLeRM), on flattened images.

Input Linear(in, width); `n_blocks` residual blocks x <- x + s * branch(x) with
branch(x) = Linear(act(norm(x))) (one layer, the paper's block_size 1) or Linear(act(Linear(norm(x))))
(`block_layers: 2`); a final norm when `norm: pre`; then Linear(width, classes). `norm: none` is the
paper's network. s is the branch scale: 1 or 1/sqrt(n_blocks). Init as the paper's code: Kaiming-normal
input layer with linear gain, Kaiming-normal hidden layers with ReLU gain times `init_scale` (the paper's
depth-aware 1/sqrt(d) goes here, set per run), zero biases, PyTorch's default init for the output layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ResMLPConfig:
    in_features: int
    num_classes: int
    width: int = 128
    n_blocks: int = 4
    block_layers: int = 1
    norm: str = "none"  # none | pre
    act: str = "relu"  # relu | gelu
    branch_scale: str = "one"  # one | inv_sqrt_depth
    init_scale: float = 1.0
    bias: bool = True


class Block(nn.Module):
    def __init__(self, cfg: ResMLPConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.width) if cfg.norm == "pre" else nn.Identity()
        self.layers = nn.ModuleList(nn.Linear(cfg.width, cfg.width, bias=cfg.bias) for _ in range(cfg.block_layers))
        self.act = F.relu if cfg.act == "relu" else F.gelu
        self.scale = 1.0 / math.sqrt(cfg.n_blocks) if cfg.branch_scale == "inv_sqrt_depth" else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        for lin in self.layers:
            h = lin(self.act(h))
        return x + self.scale * h if self.scale != 1.0 else x + h


class ResMLP(nn.Module):
    def __init__(self, cfg: ResMLPConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Linear(cfg.in_features, cfg.width, bias=cfg.bias)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.width) if cfg.norm == "pre" else nn.Identity()
        self.head = nn.Linear(cfg.width, cfg.num_classes, bias=cfg.bias)  # PyTorch default init, as the paper
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.inp.weight, nonlinearity="linear")
        for blk in self.blocks:
            for lin in blk.layers:
                nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
                with torch.no_grad():
                    lin.weight.mul_(self.cfg.init_scale)
        for lin in (self.inp, *(lin for blk in self.blocks for lin in blk.layers)):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, want_hidden: bool = False) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Logits, and (when asked) the hidden states: the input layer's output, then each block's."""
        x = self.inp(x.flatten(1))
        hidden = [x] if want_hidden else None
        for blk in self.blocks:
            x = blk(x)
            if want_hidden:
                hidden.append(x)
        return self.head(self.norm(x)), hidden


def param_roles(model: ResMLP) -> dict[str, str]:
    roles = {}
    for name, _ in model.named_parameters():
        if name.endswith(".bias") or name == "bias":
            roles[name] = "bias"
        elif name.startswith("inp."):
            roles[name] = "embedding"  # the input layer plays the embedding's part (muP: input weights)
        elif name.startswith("head."):
            roles[name] = "readout"
        elif ".norm." in name or name.startswith("norm."):
            roles[name] = "norm"
        else:
            roles[name] = "hidden_matrix"
    return roles
