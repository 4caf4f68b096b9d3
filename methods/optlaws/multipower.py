"""Multi-Power Law (Luo et al. 2025, arXiv 2503.12811), exact form:

    L(t) = L0 + A (S1(t) + S_W)^(-alpha) - LD(t),
    LD(t) = B sum_k (eta_{k-1} - eta_k) G(eta_k^(-gamma) S_k(t)),  G(x) = 1 - (C x + 1)^(-beta),

with S1 including the warmup area (so S_W is not a separate parameter). Fitted as its repository does
up to the optimiser: Huber (delta 1e-3) on log loss over every logged point of the fitting curves;
scipy L-BFGS-B from a grid of (alpha, C, beta, gamma) whose linear parameters (L0, A, B) are first solved
by least squares, instead of the repository's AdamW.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from methods.optlaws.base import Law, Units, register_law
from methods.optlaws.curves import Curve
from methods.optlaws.fitting import jitter, log_huber, multistart
from methods.optlaws.sums import Sums, prepare, stack

FIT_BLOCKS = 64  # drop blocks per fitting curve (prediction uses 512)
NAMES = ("L0", "A", "alpha", "B", "C", "beta", "gamma")


def _ld(s: Sums, C: float, beta: float, gamma: float) -> np.ndarray:
    """The loss-drop sum LD(t) / B at each evaluated step."""
    g = 1 - (C * s.eta ** (-gamma) * s.area + 1) ** (-beta)
    return (g * s.drop).sum(-1)


@register_law
class MultiPower(Law):
    """Multi-Power Law (Luo et al. 2025)."""

    name = "multipower"
    label = "Multi-Power Law (Luo et al. 2025)"
    n_params = 7

    @classmethod
    def _fit(cls, curves: list[Curve], units: Units, seed: int) -> MultiPower:
        sums = [prepare(c, units, max_blocks=FIT_BLOCKS) for c in curves]
        st = stack(sums)
        y = np.concatenate([c.loss for c in curves])
        ylog = torch.from_numpy(np.log(y))
        lmin = float(y.min())
        t_s1, t_drop, t_eta, t_area = (torch.from_numpy(x) for x in (st.s1, st.drop, st.eta, st.area))

        def pred(theta):
            L0, la, alpha, lb, lc, beta, gamma = theta
            g = 1 - (torch.exp(lc) * t_eta ** (-gamma) * t_area + 1) ** (-beta)
            return L0 + torch.exp(la) * t_s1 ** (-alpha) - torch.exp(lb) * (g * t_drop).sum(-1)

        starts = []
        for alpha, lc, beta, gamma in itertools.product((0.3, 0.6), (0.0, 3.0), (0.5,), (0.5,)):
            f1 = np.concatenate([s.s1 ** (-alpha) for s in sums])
            f2 = -np.concatenate([_ld(s, math.exp(lc), beta, gamma) for s in sums])
            X = np.column_stack([np.ones_like(f1), f1, f2])
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            L0 = float(np.clip(coef[0], 0.05 * lmin, 0.95 * lmin))
            starts.append(np.array([L0, math.log(max(coef[1], 1e-3)), alpha, math.log(max(coef[2], 1e-3)), lc,
                                    beta, gamma]))
        rng = np.random.default_rng(seed)
        starts += jitter(rng, starts[0], np.array([0.05 * lmin, 0.3, 0.1, 0.3, 0.5, 0.2, 0.1]), 1)
        bounds = [(1e-3, lmin), (-10, 10), (0.01, 3.0), (-12, 12), (-8, 12), (0.01, 5.0), (0.0, 3.0)]
        n = len(y)
        theta, info = multistart(lambda t: log_huber(pred(t), ylog) / n, starts, bounds, cls.name)
        p = dict(zip(NAMES, [theta[0], math.exp(theta[1]), theta[2], math.exp(theta[3]), math.exp(theta[4]),
                             theta[5], theta[6]], strict=True))
        return cls({k: float(v) for k, v in p.items()}, units, info)

    def _predict(self, schedule: Curve) -> np.ndarray:
        p = self.params
        s = prepare(schedule, self.units, max_blocks=512)
        return p["L0"] + p["A"] * s.s1 ** (-p["alpha"]) - p["B"] * _ld(s, p["C"], p["beta"], p["gamma"])
