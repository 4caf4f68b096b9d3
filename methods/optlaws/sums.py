"""Schedule sums shared by the curve laws: forward area S1 and the LR drops that annealing terms weigh.

Both the Multi-Power Law and the annealing law sum, over every earlier step k with an LR drop
(eta_{k-1} - eta_k > 0), a kernel of the area S_k(t) = sum_{tau=k}^{t-1} eta_tau (MPL) or of the lag t - k
(MTL). Summing over all steps is O(T) per evaluated point; drops are binned into at most `max_blocks`
blocks (each at its drop-weighted step), which keeps a 72k-step curve to a few hundred terms and keeps
a jump (two-stage schedule) exact. With `rises=True` an LR increase (warmup) counts as a negative drop,
as in the Multi-Power Law's sum over every step; rises and drops are binned separately. Otherwise rises
are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from methods.optlaws.base import Units
from methods.optlaws.curves import Curve

ETA_FLOOR = 1e-6  # normalised LR floor: a schedule ending at exactly 0 still has a finite eta^-gamma


@dataclass
class Sums:
    s1: np.ndarray  # (n,) forward area at the evaluated steps (normalised LR x normalised steps)
    drop: np.ndarray  # (m,) LR drop of each block (normalised LR)
    eta: np.ndarray  # (m,) normalised LR just after each block's drop
    area: np.ndarray  # (n, m) S_k(t): area from the block to the evaluated step; 0 where the block is later
    lag: np.ndarray  # (n, m) t - k in steps; 0 where the block is later
    after: np.ndarray  # (n, m) 1.0 where the block is before the evaluated step


def prepare(curve: Curve, units: Units, max_blocks: int = 256, rises: bool = False) -> Sums:
    u = curve.lrs / units.lr
    steps = curve.steps.astype(int)
    if steps[-1] > len(u):
        raise ValueError(f"{curve.name}: evaluated at step {steps[-1]} but its schedule has {len(u)} steps")
    cum = np.concatenate([[0.0], np.cumsum(u)]) / units.steps
    s1 = np.maximum(cum[steps], 1e-12)
    d = u[:-1] - u[1:]  # d[k-1]: drop entering step k (negative: a rise)
    drop, kstar = _blocks(np.clip(d, 0.0, None), max_blocks)
    if rises:
        up, kup = _blocks(np.clip(-d, 0.0, None), max_blocks)
        drop, kstar = np.concatenate([drop, -up]), np.concatenate([kstar, kup])
    eta = np.maximum(u[np.minimum(kstar, len(u) - 1)], ETA_FLOOR) if len(kstar) else np.zeros(0)
    after = (kstar[None, :] < steps[:, None]).astype(float)
    area = np.maximum(cum[steps][:, None] - cum[kstar][None, :], 0.0) * after
    lag = np.maximum(steps[:, None] - kstar[None, :], 0) * after
    return Sums(s1, drop, eta, area, lag, after)


def _blocks(d: np.ndarray, max_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, step) of the non-zero entries of d (d[k-1] enters step k), binned into at most max_blocks."""
    ks = np.nonzero(d > 0)[0] + 1
    if len(ks) <= max_blocks:
        return d[ks - 1], ks
    bins = np.minimum((ks - 1) * max_blocks // max(1, len(d)), max_blocks - 1)
    w = d[ks - 1]
    tot = np.bincount(bins, weights=w, minlength=max_blocks)
    pos = np.bincount(bins, weights=w * ks, minlength=max_blocks)
    keep = tot > 0
    return tot[keep], np.rint(pos[keep] / tot[keep]).astype(int)


def stack(sums: list[Sums]) -> Sums:
    """All curves' sums as one padded block (rows = every evaluated point), for vectorised fitting.

    `drop` and `eta` become (n, m) matrices (a row takes its own curve's blocks; padding has drop 0).
    """
    m = max(1, max(len(s.drop) for s in sums))
    n = sum(len(s.s1) for s in sums)
    drop, eta = np.zeros((n, m)), np.ones((n, m))
    area, lag, after = np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m))
    i = 0
    for s in sums:
        k, j = len(s.s1), len(s.drop)
        drop[i:i + k, :j], eta[i:i + k, :j] = s.drop, s.eta
        area[i:i + k, :j], lag[i:i + k, :j], after[i:i + k, :j] = s.area, s.lag, s.after
        i += k
    return Sums(np.concatenate([s.s1 for s in sums]), drop, eta, area, lag, after)
