"""Multi-Power Law (Luo et al. 2025, arXiv 2503.12811), exact form:

    L(t) = L0 + A (S1(t) + S_W)^(-alpha) - LD(t),
    LD(t) = B sum_k (eta_{k-1} - eta_k) G(eta_k^(-gamma) S_k(t)),  G(x) = 1 - (C x + 1)^(-beta),

with S1 including the warmup area (so S_W is not a separate parameter) and the sum LD running over
every step, so the warmup's LR rises enter it as negative drops. Two fitting procedures, by name
(`MultiPower.fit(curves, fit=...)`):

- "converged" (default): Huber (delta 1e-3) on log loss over every logged point of the fitting curves,
  scipy L-BFGS-B to convergence from a grid of (alpha, C, beta, gamma) whose linear parameters (L0, A, B)
  are first solved by least squares, in normalised units.
- "release": the authors' released fitter: a 4-parameter warm start (L0, A, alpha, B of a simplified
  law, L-BFGS-B from a 5x3x3x3 grid), then torch AdamW in raw units (LR 5e-2 for L0, A, B, C and 5e-3
  for alpha, beta, gamma, torch's default weight decay 0.01) from C = 1, beta = gamma = 0.5, on the
  summed Huber loss, stopped after at most 200 steps or 20 steps without improvement. It stops well
  short of the optimum; on the published curves that predicts held-out schedules better (see
  docs/papers/optlaws.md).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.stats import linregress

from methods.optlaws.base import FitError, Law, Units, huber, register_law
from methods.optlaws.curves import Curve
from methods.optlaws.fitting import HUBER_DELTA, adamw_early_stop, jitter, log_huber, multistart
from methods.optlaws.sums import Sums, prepare, stack

FIT_BLOCKS = 64  # drop (and rise) blocks per fitting curve (prediction uses PREDICT_BLOCKS)
PREDICT_BLOCKS = 512
NAMES = ("L0", "A", "alpha", "B", "C", "beta", "gamma")

# The released fitter's settings (its config module), in raw units: LR as logged, steps as counted.
RELEASE = {
    "warm_grid": {"L0": (-0.2, 0.2, 5), "A": (-0.1, 0.1, 3), "alpha": (-0.1, 0.1, 3), "B": (100.0, 1000.0, 3)},
    "start": {"C": 1.0, "beta": 0.5, "gamma": 0.5},
    "lr": {"L0": 5e-2, "A": 5e-2, "B": 5e-2, "C": 5e-2, "alpha": 5e-3, "beta": 5e-3, "gamma": 5e-3},
    "max_steps": 200, "patience": 20, "grad_norm_thr": 1e-5, "loss_thr": 0.0, "clamp": 1e-10,
}


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
    FITS = {"converged": "_fit", "release": "_fit_release"}

    @classmethod
    def _fit(cls, curves: list[Curve], units: Units, seed: int) -> MultiPower:
        sums = [prepare(c, units, max_blocks=FIT_BLOCKS, rises=True) for c in curves]
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

    @classmethod
    def _fit_release(cls, curves: list[Curve], units: Units, seed: int) -> MultiPower:
        """The released fitter's procedure (module docstring); deterministic, so `seed` is unused."""
        raw_s1, raw_lr = units.lr * units.steps, units.lr  # normalised sums -> raw units
        sums = [prepare(c, units, max_blocks=FIT_BLOCKS, rises=True) for c in curves]
        st = stack(sums)
        s1, drop, eta, area = (torch.from_numpy(x) for x in (st.s1 * raw_s1, st.drop * raw_lr, st.eta * raw_lr,
                                                             st.area * raw_s1))
        y = np.concatenate([c.loss for c in curves])
        # the release holds losses as float32 and takes their log in float32
        ylog = torch.log(torch.from_numpy(y.astype(np.float32))).double()
        x0 = _release_warm_start(curves, [s.s1 * raw_s1 for s in sums], y)
        clamp = RELEASE["clamp"]

        def objective(p):
            L0, A, alpha, B, C, beta, gamma = p
            g = 1 - (1 + C * eta ** (-gamma) * area) ** (-beta)
            pred = L0 + A * s1 ** (-alpha) - B * (g * drop).sum(-1)
            return huber(ylog - torch.log(pred.clamp(min=clamp)), HUBER_DELTA).sum()

        start = [*x0, RELEASE["start"]["C"], RELEASE["start"]["beta"], RELEASE["start"]["gamma"]]
        x, info = adamw_early_stop(objective, start, [RELEASE["lr"][k] for k in NAMES], RELEASE["max_steps"],
                                   RELEASE["patience"], RELEASE["grad_norm_thr"], RELEASE["loss_thr"])
        info["raw_params"] = dict(zip(NAMES, map(float, x), strict=True))
        info["warm_start"] = dict(zip(NAMES[:4], map(float, x0), strict=True))
        return cls.from_raw(x, units, info)

    @classmethod
    def from_raw(cls, raw: dict[str, float] | list[float], units: Units, info: dict | None = None) -> MultiPower:
        """The law with parameters in raw units (LR as logged, steps as counted; the release's and the
        paper's tables), e.g. [L0, A, alpha, B, C, beta, gamma], held in the normalised `units`."""
        r = dict(zip(NAMES, raw, strict=True)) if not isinstance(raw, dict) else raw
        L0, A, alpha, B, C, beta, gamma = (float(r[k]) for k in NAMES)
        s1u = units.lr * units.steps
        p = {"L0": L0, "A": A * s1u ** (-alpha), "alpha": alpha, "B": B * units.lr,
             "C": C * units.lr ** (1 - gamma) * units.steps, "beta": beta, "gamma": gamma}
        return cls(p, units, dict(info or {}))

    def _predict(self, schedule: Curve) -> np.ndarray:
        p = self.params
        s = prepare(schedule, self.units, max_blocks=PREDICT_BLOCKS, rises=True)
        return p["L0"] + p["A"] * s.s1 ** (-p["alpha"]) - p["B"] * _ld(s, p["C"], p["beta"], p["gamma"])


def _release_warm_start(curves: list[Curve], s1: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """(L0, A, alpha, B) of L0 + A S1^-alpha - B (peak - eta_t), the release's warm start, in raw units.

    A power law through log(loss - min + 0.01) against log S1 centres a grid; each grid point runs scipy
    L-BFGS-B (finite-difference gradient, parameters >= 0) on the summed Huber loss; the best one wins.
    """
    peak = max(c.peak_lr for c in curves)
    lmin = float(y.min())
    x = np.concatenate(s1)
    eta_t = np.concatenate([c.lrs[np.minimum(c.steps, len(c.lrs) - 1)] for c in curves])
    slope, intercept, *_ = linregress(np.log(x), np.log(y - lmin + 0.01))
    logy = np.log(y)

    def f(q):
        L0, A, alpha, B = q
        with np.errstate(all="ignore"):
            r = logy - np.log(L0 + A * x ** (-alpha) - B * (peak - eta_t))
        return float(huber(r, HUBER_DELTA).sum())

    g = RELEASE["warm_grid"]
    centre = {"L0": lmin, "A": math.exp(intercept), "alpha": -slope, "B": 0.0}
    axes = [np.linspace(centre[k] + g[k][0], centre[k] + g[k][1], g[k][2]) for k in ("L0", "A", "alpha", "B")]
    best, best_q = float("inf"), None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for q0 in itertools.product(*axes):
            r = minimize(f, np.array(q0), method="L-BFGS-B", bounds=[(0, np.inf)] * 4,
                         options={"maxiter": 100000, "ftol": 1e-9, "gtol": 1e-6, "eps": 1e-8})
            if r.fun < best:
                best, best_q = r.fun, r.x
    if best_q is None:
        raise FitError("multipower (release fit): the warm start is not finite at any grid point")
    return np.asarray(best_q, dtype=float)
