"""Multi-start L-BFGS-B on a Huber loss of log residuals, the fitting recipe of MTL and MPL.

The objective is written in torch (float64) for exact gradients and handed to scipy's L-BFGS-B. Every
start runs a short budget first; the best few continue to convergence. The starts are a fixed grid
plus seeded jitter, so a fit is a pure function of (curves, seed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from methods.optlaws.base import FitError, huber

HUBER_DELTA = 1e-3  # on log(loss), as in the MPL repository and the MTL/CPT fitting appendix


def log_huber(pred: torch.Tensor, target_log: torch.Tensor, delta: float = HUBER_DELTA) -> torch.Tensor:
    """Sum of Huber(log pred - log target), divided by delta so the quadratic zone is O(residual^2/delta)."""
    r = torch.log(torch.clamp(pred, min=1e-8)) - target_log
    return huber(r, delta).sum() / delta


def multistart(objective: Callable[[torch.Tensor], torch.Tensor], starts: Sequence[np.ndarray],
               bounds: Sequence[tuple[float | None, float | None]], name: str, short_iter: int = 40,
               long_iter: int = 1000, keep: int = 1) -> tuple[np.ndarray, dict]:
    """Minimise `objective` from each start; returns (best theta, info). Raises FitError if none is finite."""

    nfev = 0

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal nfev
        nfev += 1
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        val = objective(t)
        if not torch.isfinite(val):
            return 1e30, np.zeros_like(x)
        (g,) = torch.autograd.grad(val, t)
        g = g.numpy()
        return float(val.detach()), np.where(np.isfinite(g), g, 0.0)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of ~1e5 elements: threads only add contention
    try:
        return _multistart(fun, starts, bounds, name, short_iter, long_iter, keep, lambda: nfev)
    finally:
        torch.set_num_threads(threads)


def _multistart(fun, starts, bounds, name, short_iter, long_iter, keep, count) -> tuple[np.ndarray, dict]:
    opts = {"ftol": 1e-10, "gtol": 1e-8}
    first = []
    for x0 in starts:
        x0 = np.clip(np.asarray(x0, float), [b[0] if b[0] is not None else -np.inf for b in bounds],
                     [b[1] if b[1] is not None else np.inf for b in bounds])
        r = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={**opts, "maxiter": short_iter})
        if np.isfinite(r.fun) and r.fun < 1e29:
            first.append(r)
    if not first:
        raise FitError(f"{name}: the objective is not finite at any of {len(starts)} starting points")
    first.sort(key=lambda r: r.fun)
    final = [minimize(fun, r.x, jac=True, method="L-BFGS-B", bounds=bounds, options={**opts, "maxiter": long_iter})
             for r in first[:keep]]
    best = min(final, key=lambda r: r.fun)
    if not np.isfinite(best.fun) or best.fun >= 1e29:
        raise FitError(f"{name}: the fit diverged (non-finite objective)")
    if best.status == 1:  # iteration limit: not converged
        raise FitError(f"{name}: L-BFGS-B did not converge in {long_iter} iterations (objective {best.fun:.4g})")
    info = {"objective": float(best.fun), "iterations": int(best.nit), "message": str(best.message),
            "starts": len(starts), "evaluations": count()}
    return best.x, info


def jitter(rng: np.random.Generator, base: np.ndarray, scale: np.ndarray, n: int) -> list[np.ndarray]:
    return [base + scale * rng.standard_normal(len(base)) for _ in range(n)]


def adamw_early_stop(objective: Callable[[list[torch.Tensor]], torch.Tensor], x0: Sequence[float],
                     lrs: Sequence[float], max_steps: int, patience: int, grad_norm_thr: float,
                     loss_thr: float = 0.0) -> tuple[np.ndarray, dict]:
    """torch AdamW (its defaults otherwise, weight decay 0.01 included) stopped early, as the MPL release fits.

    Parameter i starts at x0[i] and moves with learning rate lrs[i]. Each step evaluates the objective,
    steps, then stops when the objective has not improved by more than `loss_thr` for `patience` steps
    (after step `patience`) or when the gradient norm falls below `grad_norm_thr`. The result is the
    parameters recorded after the step whose objective was the lowest (recorded after the optimiser step,
    as the release records them).
    """
    params = [torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in x0]
    groups: dict[float, list[torch.Tensor]] = {}
    for p, lr in zip(params, lrs, strict=True):
        groups.setdefault(float(lr), []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "lr": lr} for lr, ps in groups.items()])
    best, best_x = float("inf"), np.asarray(x0, dtype=float)
    lowest, stale, stop = float("inf"), 0, "step limit"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(max_steps):
            opt.zero_grad()
            val = objective(params)
            val.backward()
            opt.step()
            v = float(val.detach())
            if v < lowest - loss_thr:
                lowest, stale = v, 0
            else:
                stale += 1
            if step > patience and stale >= patience:
                stop = f"no improvement for {patience} steps"
                break
            gnorm = float(torch.stack([p.grad for p in params]).norm())
            if gnorm < grad_norm_thr:
                stop = f"gradient norm {gnorm:.2e} < {grad_norm_thr:.0e}"
                break
            if v < best:
                best, best_x = v, np.array([float(p.detach()) for p in params])
    finally:
        torch.set_num_threads(threads)
    return best_x, {"objective": best, "steps": step + 1, "stopped": stop}
