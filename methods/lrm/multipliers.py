"""Learnable multipliers as torch parametrizations, and merge() that folds them back into plain weights.

W = r_i * What_ij * c_j is computed in the forward pass and autograd gives Eq. 4's gradients (the paper's
"explicit reparametrisation"). `torch.nn.utils.parametrize` keeps What as `<module>.parametrizations.weight.original`
(the same Parameter object, so its role and weight decay carry over) and the multipliers as
`<module>.parametrizations.weight.0.{row,col,s}`; `remove_parametrizations(leave_parametrized=True)` is the merge.
Rows are dim 0 of the weight (a Linear's outputs, an Embedding's tokens, a Conv's output channels), columns dim 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import parametrize


class _RowColScale(torch.autograd.Function):
    """W = r_i * What_ij * c_j for a 2-D What with Eq. 4's gradients written out: 3 full-size products and two
    mat-vecs per step instead of autograd's 6 products, 2 reductions and a saved intermediate (the step-time
    overhead of vector LRM is mostly these elementwise passes). The forward's outer product r c^T is kept for
    the backward (one matrix of memory per wrapped layer, the same values): rebuilding it there was a third of
    this function's CPU time."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        rc = torch.outer(r, c)
        ctx.save_for_backward(w, r, c, rc)
        return w * rc

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        w, r, c, rc = ctx.saved_tensors
        gw = g * rc if ctx.needs_input_grad[0] else None
        p = g * w
        return gw, p @ c, r @ p


class Multipliers(nn.Module):
    """The multipliers of one matrix; `forward(W_hat)` returns the effective weight."""

    def __init__(self, shape: torch.Size, kind: str, init: float = 1.0, device=None, dtype=None):
        super().__init__()
        self.kind = kind
        kw = {"device": device, "dtype": dtype}
        self.s = nn.Parameter(torch.full((), init, **kw)) if kind == "scalar" else None
        # a mup init value goes on the row multiplier only (the column starts at 1)
        self.row = nn.Parameter(torch.full((shape[0],), init, **kw)) if kind in ("row", "both") else None
        self.col = (nn.Parameter(torch.full((shape[1],), 1.0 if kind == "both" else init, **kw))
                    if kind in ("col", "both") else None)
        self._row_view = (shape[0],) + (1,) * (len(shape) - 1)
        self._col_view = (1, shape[1]) + (1,) * (len(shape) - 2)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.row is not None and self.col is not None and w.ndim == 2:
            return _RowColScale.apply(w, self.row, self.col)
        if self.s is not None:
            w = w * self.s
        if self.row is not None:
            w = w * self.row.view(self._row_view)
        if self.col is not None:
            w = w * self.col.view(self._col_view)
        return w

    def scale(self) -> torch.Tensor:
        """The overall multiplier scale M = s, or RMS(r) * RMS(c) (claim C6's |M_q|, |M_k|)."""
        m = torch.ones((), device=self._any().device)
        for p in (self.s, self.row, self.col):
            if p is not None:
                m = m * p.detach().float().pow(2).mean().sqrt()
        return m

    def _any(self) -> torch.Tensor:
        return next(p for p in (self.s, self.row, self.col) if p is not None)


class FrozenVectorAsScalar(nn.Module):
    """Replaces a norm's gain vector by one learnable scalar (the projector experiment's SPN arm)."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        self.s = nn.Parameter(torch.ones((), device=device, dtype=dtype))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.s.expand_as(w)


@dataclass
class Attached:
    """One wrapped matrix: its module, multiplier module, role and display name (the module path)."""

    name: str
    module: nn.Module
    mult: Multipliers
    role: str


def shared_weights(model: nn.Module) -> set[int]:
    """ids of weight tensors used by more than one module (a tied embedding/head): left alone, because a
    multiplier on the embedding would silently change the head the paper leaves unchanged."""
    seen: dict[int, int] = {}
    for mod in model.modules():
        w = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if w is not None:
            seen[id(w)] = seen.get(id(w), 0) + 1
    return {i for i, n in seen.items() if n > 1}


def attach(module: nn.Module, kind: str, init: float = 1.0) -> Multipliers:
    w = module.weight
    mult = Multipliers(w.shape, kind, init, device=w.device, dtype=w.dtype)
    parametrize.register_parametrization(module, "weight", mult)
    return mult


def merge(model: nn.Module) -> nn.Module:
    """Fold every multiplier (and scalar-norm parametrization) into a plain weight, in place: the result has
    the workload's original parameter names, so its state_dict loads into a model built without LRM.

    Done by hand rather than with `parametrize.remove_parametrizations`: that deletes the `weight` property from
    the module's generated class, which a deepcopy shares, so merging a copy would break the trained model."""
    for mod in list(model.modules()):
        if not parametrize.is_parametrized(mod):
            continue
        with torch.no_grad():
            merged = {name: getattr(mod, name).detach().clone() for name in mod.parametrizations.keys()}
        originals = {name: mod.parametrizations[name].original for name in merged}
        del mod._modules["parametrizations"]
        mod.__class__ = type(mod).__bases__[0]  # the plain class the parametrization subclassed
        for name, value in merged.items():
            mod.register_parameter(name, nn.Parameter(value, requires_grad=originals[name].requires_grad))
    return model


def weight_hat(module: nn.Module) -> torch.Tensor:
    """What: the raw matrix under the multipliers (the plain weight when the module is not wrapped)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight
