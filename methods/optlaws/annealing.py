"""Scaling law with LR annealing (Tissue, Wang, Wang 2024, arXiv 2408.11029), exact form:

    L(s) = L0 + A S1^(-alpha) - C S2,   S1 = sum_{i<=s} eta_i,   S2 = sum_{i<=s} m_i,
    m_i = lambda m_{i-1} + (eta_{i-1} - eta_i),   lambda = 0.999 (fixed, "related to the momentum term").

Unrolled, S2(s) = sum_k (eta_{k-1} - eta_k) (1 - lambda^(s-k+1)) / (1 - lambda), so it shares the drop
blocks of the Multi-Power Law (only LR decreases count; warmup is left out). Fitted as the same group's
CPT paper (arXiv 2505.07796, App. C) describes: Huber loss on log loss, L-BFGS(-B) from several starts,
keep the best; (L0, A, C) are solved by least squares at each start's alpha first.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from methods.optlaws.base import Law, Units, register_law
from methods.optlaws.curves import Curve
from methods.optlaws.fitting import jitter, log_huber, multistart
from methods.optlaws.sums import Sums, prepare, stack

LAMBDA = 0.999
FIT_BLOCKS = 128


def _s2(s: Sums, lam: float, units: Units) -> np.ndarray:
    """Annealing area S2 at each evaluated step, in normalised LR x normalised steps."""
    kern = (1 - lam ** (s.lag + 1)) / (1 - lam) * s.after
    drop = s.drop if s.drop.ndim == 2 else s.drop[None, :]
    return (kern * drop).sum(-1) / units.steps


@register_law
class Annealing(Law):
    """Scaling law with LR annealing (Tissue et al. 2024)."""

    name = "annealing"
    label = "LR-annealing law (Tissue et al. 2024)"
    n_params = 4

    @classmethod
    def _fit(cls, curves: list[Curve], units: Units, seed: int) -> Annealing:
        st = stack([prepare(c, units, max_blocks=FIT_BLOCKS) for c in curves])
        y = np.concatenate([c.loss for c in curves])
        lmin = float(y.min())
        s2 = _s2(st, LAMBDA, units)
        t_s1, t_s2, ylog = torch.from_numpy(st.s1), torch.from_numpy(s2), torch.from_numpy(np.log(y))

        def pred(theta):
            L0, la, alpha, lc = theta
            return L0 + torch.exp(la) * t_s1 ** (-alpha) - torch.exp(lc) * t_s2

        starts = []
        for alpha in (0.2, 0.4, 0.6, 0.9):
            X = np.column_stack([np.ones_like(st.s1), st.s1 ** (-alpha), -s2])
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            starts.append(np.array([float(np.clip(coef[0], 0.05 * lmin, 0.95 * lmin)), math.log(max(coef[1], 1e-3)),
                                    alpha, math.log(max(coef[2], 1e-6))]))
        starts += jitter(np.random.default_rng(seed), starts[1], np.array([0.05 * lmin, 0.3, 0.1, 0.5]), 1)
        bounds = [(1e-3, lmin), (-10, 10), (0.01, 3.0), (-20, 10)]
        n = len(y)
        theta, info = multistart(lambda t: log_huber(pred(t), ylog) / n, starts, bounds, cls.name)
        info["lambda"] = LAMBDA
        return cls({"L0": float(theta[0]), "A": math.exp(theta[1]), "alpha": float(theta[2]),
                   "C": math.exp(theta[3])}, units, info)

    def _predict(self, schedule: Curve) -> np.ndarray:
        p = self.params
        s = prepare(schedule, self.units, max_blocks=512)
        return p["L0"] + p["A"] * s.s1 ** (-p["alpha"]) - p["C"] * _s2(s, LAMBDA, self.units)
