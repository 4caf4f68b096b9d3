"""Warm-started power iteration for the largest singular value sigma1 of a matrix.

AdamW^2 needs sigma1(W) and sigma1(update) of every watched matrix at every step; a full SVD
would cost more than the step. Power iteration started from the previous step's right singular
vector (as sigma-Reparam does, apple/ml-sigma-reparam `get_sigma`) converges across steps
because W changes little per step, so 2-3 iterations per step suffice.
"""

from __future__ import annotations

import torch

TINY = 1e-30


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """A >=2-D weight as a matrix: rows = output features (a conv becomes out x (in*k*k))."""
    return t.reshape(t.shape[0], -1)


def init_vector(n: int, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A unit start vector from a private generator, so the global RNG (dropout, data) is never touched."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    return (v / v.norm()).to(device=device, dtype=dtype)


@torch.no_grad()
def power_iteration(mat: torch.Tensor, v: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`iters` steps of a = W v / |W v|, w = W^T a; returns (sigma1 estimate = |w|, next start vector w/|w|).

    The estimate |W^T a| >= |W v| is a lower bound of sigma1 that tightens geometrically. A zero matrix gives
    sigma 0 and keeps the old vector (no host sync: the choice is a torch.where)."""
    u = v
    for _ in range(iters):
        a = mat @ u
        a = a / torch.linalg.vector_norm(a).clamp_min(TINY)
        w = mat.mT @ a
        sigma = torch.linalg.vector_norm(w)
        u = w / sigma.clamp_min(TINY)
    return sigma, torch.where(sigma > 0, u, v)


def sigma1(mat: torch.Tensor, iters: int = 50, seed: int = 0) -> float:
    """A cold-start estimate (tests, diagnostics); the optimizer keeps warm vectors instead."""
    m = as_matrix(mat).float()
    s, _ = power_iteration(m, init_vector(m.shape[1], seed, m.device, m.dtype), iters)
    return float(s)
