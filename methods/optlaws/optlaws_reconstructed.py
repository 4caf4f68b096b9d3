"""Opt-Laws (reconstructed): the SDE-feature law of docs/papers/optlaws.md, NOT the paper's form.

The paper (Xie et al., arXiv 2409.04777) predicts final loss from a ~16-dimensional vector of
"convergence and escape features" of the LR schedule, but its functional form, features and fitting
procedure were not available. This file is the suite's stand-in, kept whole in ONE file so the true form
can replace it. It follows the SGD-SDE bound on a mu-PL basin,

    E f(theta_T) - f* <= exp(-2 mu S(0,T)) (f(theta_0) - f*) + c int eta(t)^2 exp(-2 mu S(t,T)) dt,

with S the intrinsic time (area under the LR). Features at step t (LR u normalised by the fitting set's
peak, steps by its median length):
  convergence  bias_mu  = exp(-mu S1(t))                                 mu in MUS
  noise        noise_mu = sum_{tau<t} u_tau^2 exp(-mu S(tau+1, t)) dt     mu in MUS
  escape       esc_c    = mean_{tau<t} exp(-c / u_tau)    (Kramers rate)  c in CS
  scale / LR   D^-1/2, D^-1 (D = t, the data seen), u_t (current LR), max_{tau<t} u_tau (peak so far)
16 features; loss(t) = b + w . phi(t) by bounded linear least squares (scipy lsq_linear; convergence,
noise, escape and data weights >= 0; LR terms free) with a small ridge, over every logged point of the
fitting curves. Divergence: the escape feature of the whole schedule, thresholded on observed runs.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear

from methods.optlaws.base import FitError, Law, Units, register_law
from methods.optlaws.curves import Curve

MUS = (0.5, 1.0, 2.0, 4.0)
CS = (0.5, 1.0, 2.0, 4.0)
RIDGE = 1e-4
FEATURES = ([f"bias_mu{m:g}" for m in MUS] + [f"noise_mu{m:g}" for m in MUS] + [f"escape_c{c:g}" for c in CS]
            + ["data_pow0.5", "data_pow1", "lr_now", "lr_peak_so_far"])
NONNEG = 4 + 4 + 4 + 2  # the first 14 weights are >= 0


def features(schedule: Curve, units: Units) -> np.ndarray:
    """(n_steps, 16) feature matrix at the schedule's evaluated steps."""
    u = schedule.lrs / units.lr
    dt = 1.0 / units.steps
    steps = schedule.steps.astype(int)
    cum = np.concatenate([[0.0], np.cumsum(u)]) * dt
    cols = [np.exp(-m * cum[steps]) for m in MUS]
    for m in MUS:  # noise: N_t = N_{t-1} exp(-mu u_{t-1} dt) + u_{t-1}^2 dt (stable for any LR)
        decay = np.exp(-m * u * dt)
        acc = np.empty(len(u) + 1)
        acc[0] = 0.0
        n = 0.0
        for i in range(len(u)):
            n = n * decay[i] + u[i] ** 2 * dt
            acc[i + 1] = n
        cols.append(acc[steps])
    with np.errstate(divide="ignore", over="ignore"):
        for c in CS:
            e = np.where(u > 0, np.exp(-c / np.maximum(u, 1e-300)), 0.0)
            cols.append(np.concatenate([[0.0], np.cumsum(e)])[steps] / steps)
    d = steps * dt
    cols += [d ** -0.5, 1.0 / d, u[steps - 1], np.maximum.accumulate(u)[steps - 1]]
    return np.column_stack(cols)


@register_law
class OptLawsReconstructed(Law):
    """Opt-Laws (reconstructed): SDE convergence/escape features, linear in 16 features."""

    name = "optlaws"
    label = "Opt-Laws (reconstructed)"
    exact = False  # the paper's form is not public: claims about its analytic form cannot be checked on this one
    n_params = len(FEATURES) + 1

    @classmethod
    def _fit(cls, curves: list[Curve], units: Units, seed: int) -> OptLawsReconstructed:
        X = np.vstack([features(c, units) for c in curves])
        y = np.concatenate([c.loss for c in curves])
        scale = X.std(0)
        scale[scale == 0] = 1.0
        Z = X / scale
        Za = np.vstack([np.column_stack([np.ones(len(y)), Z]),
                        np.column_stack([np.zeros(len(FEATURES)), np.sqrt(RIDGE * len(y)) * np.eye(len(FEATURES))])])
        ya = np.concatenate([y, np.zeros(len(FEATURES))])
        lo = np.full(len(FEATURES) + 1, -np.inf)
        lo[1:1 + NONNEG] = 0.0
        res = lsq_linear(Za, ya, bounds=(lo, np.full_like(lo, np.inf)), method="bvls")
        if res.status <= 0 or not np.all(np.isfinite(res.x)):
            raise FitError(f"{cls.name}: bounded least squares did not converge ({res.message})")
        w = res.x[1:] / scale
        params = {"intercept": float(res.x[0]), **{f: float(v) for f, v in zip(FEATURES, w, strict=True)}}
        return cls(params, units, {"cost": float(res.cost), "message": str(res.message), "ridge": RIDGE})

    def _predict(self, schedule: Curve) -> np.ndarray:
        w = np.array([self.params[f] for f in FEATURES])
        return self.params["intercept"] + features(schedule, self.units) @ w

    def divergence_score(self, schedule: Curve) -> float:
        """Escape feature (c = 1) of the whole schedule: the law's divergence criterion, thresholded on runs."""
        u = schedule.lrs / self.units.lr
        with np.errstate(divide="ignore", over="ignore"):
            return float(np.mean(np.where(u > 0, np.exp(-1.0 / np.maximum(u, 1e-300)), 0.0)))
