"""The lrm/ diagnostics: matrix and multiplier norms (C1, C7), the Adam Brownian Motion reference (C1),
row-norm diversity (C5), Q/K multiplier drift (C6) and clip factors (C8).

Norm convention of the paper: RMS, ||W|| = sqrt(mean W_ij^2).
"""

from __future__ import annotations

import math

import torch


def rms(t: torch.Tensor) -> float:
    return t.detach().float().pow(2).mean().sqrt().item()


def row_spread(w: torch.Tensor) -> float:
    """Std of log row norms of an effective matrix (C5); invariant to the layer's mean norm, so it is the
    spread of row norms normalised by the layer mean, on a log scale."""
    norms = w.detach().float().flatten(1).norm(dim=1).clamp_min(1e-30)
    return norms.log().std().item()


def clip_factors(norm_rest: float, norm_mult: float, clip: float) -> tuple[float, float]:
    """min(1, clip / norm) of the global clip with the multipliers excluded and included (C8)."""
    if clip <= 0:
        return 1.0, 1.0
    excl = min(1.0, clip / (norm_rest + 1e-6))
    incl = min(1.0, clip / (math.hypot(norm_rest, norm_mult) + 1e-6))
    return excl, incl


class ABM:
    """Adam Brownian Motion (C1): torch's AdamW run on i.i.d. N(0,1) gradients, stepped with the tracked
    matrix's own LR, weight decay and schedule each step, so its RMS is the noise-WD equilibrium
    trajectory the matrix would follow with no signal (||W|| ~ sqrt(lr/wd)). A proxy of at most `size`
    entries: with i.i.d. gradients the RMS does not depend on the shape."""

    def __init__(self, numel: int, init_rms: float, betas: tuple[float, float], eps: float, seed: int,
                 size: int = 65536):
        self.gen = torch.Generator().manual_seed(seed ^ 0xAB3)
        n = min(numel, size)
        self.param = torch.nn.Parameter(torch.randn(n, generator=self.gen) * init_rms)
        self.opt = torch.optim.AdamW([self.param], lr=0.0, betas=betas, eps=eps, weight_decay=0.0)

    def step(self, lr: float, weight_decay: float) -> None:
        g = self.opt.param_groups[0]
        g["lr"], g["weight_decay"] = lr, weight_decay
        self.param.grad = torch.randn(self.param.shape, generator=self.gen)
        self.opt.step()
        self.param.grad = None

    def rms(self) -> float:
        return rms(self.param)

    def state_dict(self) -> dict:
        return {"param": self.param.detach().clone(), "opt": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.param.copy_(state["param"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
