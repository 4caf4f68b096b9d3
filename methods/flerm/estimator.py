"""Function-space learning rates (FSLRs): the RMS output change that one tensor's update causes.

For a parameter tensor W_l with update dW_l and outputs F (flattened, N numbers) on a batch, the FSLR is
||J_l dW_l||_RMS = sqrt(|J_l dW_l|^2 / N), the first-order output change of updating W_l alone. It is
estimated for *all* tensors at once from one backward pass of a random projection of the outputs,
Phi = sum_i xi_i F_i / sqrt(N) with xi ~ N(0, 1): with g_l = dPhi/dW_l and u = dW_l * g_l (elementwise),
E_xi[(sum u)^2] = FSLR_l^2 exactly. Three estimators of that expectation (Milsom et al. 2025, official code):

- ``full_cov``: (sum u)^2, unbiased, high variance;
- ``iid``: sum u^2 for every tensor (biases, norm gains and 0-d scalars included), assumes independent entries
  of u: biased, low where the entries of u are correlated (as the official code, and the paper's estimator
  comparison);
- ``kronecker`` (the paper's default): prod_d a_d / b^(D-1) with a_d = sum_rest (sum over axis d of u)^2 and
  b = sum u^2, exact when Cov(u) is a Kronecker product over the tensor's axes; equals full_cov for 1-D tensors.

A 0-d tensor (a learnable scalar multiplier, sigma-Reparam's gamma) is treated as a 1-D tensor of one entry,
as the official code does.

Each statistic is averaged over draws (``function_space_lr``) or smoothed by an EMA with Adam's bias
correction (``Moments(beta=...)``, the paper's training-time estimator); for kronecker the averages of a_d
and b are combined after averaging, as the official code does. ``reference_function_space_lr`` gives the
exact value (forward-mode JVP or finite differences) for tests and the estimator-bias report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch.func import functional_call, jvp

Estimator = Literal["kronecker", "iid", "full_cov"]
ESTIMATORS: tuple[str, ...] = ("kronecker", "iid", "full_cov")


def model_outputs(result) -> torch.Tensor:
    """The output tensor of a forward: a tensor itself, an object with `.logits`, or a (logits, ...) tuple."""
    if isinstance(result, torch.Tensor):
        return result
    if hasattr(result, "logits"):
        return result.logits
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0]
    raise TypeError(f"cannot find the outputs in a {type(result).__name__} (expected a tensor or .logits)")


def statistics(u: torch.Tensor, estimator: str, batched: bool = False) -> torch.Tensor:
    """The statistics of u = dW * g whose (averaged) values the estimator combines (float64): one row per
    draw, averaged over the leading draw axis when `batched`."""
    u = u.double() if batched else u.double().unsqueeze(0)
    ndim = u.dim() - 1
    if ndim == 0:  # a scalar: one entry (flatten(1) needs a second axis)
        u = u.unsqueeze(1)
    if estimator == "iid":
        s = u.square().flatten(1).sum(1).unsqueeze(1)
    elif estimator == "full_cov" or ndim <= 1:
        s = u.flatten(1).sum(1).square().unsqueeze(1)
    else:
        a = [u.sum(dim=d).square().flatten(1).sum(1) for d in range(1, ndim + 1)]
        s = torch.stack([*a, u.square().flatten(1).sum(1)], dim=1)
    return s.mean(0)


def combine(stats: torch.Tensor, estimator: str, ndim: int) -> float:
    """FSLR^2 from averaged statistics (kronecker: prod a_d / b^(D-1), in log space against overflow)."""
    if estimator != "kronecker" or ndim <= 1:
        return max(float(stats[0]), 0.0)
    a, b = stats[:-1], stats[-1]
    if b <= 0 or bool((a <= 0).any()):
        return 0.0
    return math.exp(float(a.log().sum() - (ndim - 1) * b.log()))


class Moments:
    """Running estimator statistics per tensor: a plain mean (beta=None) or an EMA with bias correction."""

    def __init__(self, estimator: str = "kronecker", beta: float | None = None):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
        self.estimator, self.beta = estimator, beta
        self.acc: dict[str, torch.Tensor] = {}
        self.ndim: dict[str, int] = {}
        self.t = 0

    def update(self, us: Mapping[str, torch.Tensor], draws: int = 1) -> None:
        """Add one draw (u = dW * g for every tensor), or `draws` draws stacked on a leading axis (plain
        mean only: an EMA step is one draw)."""
        if draws > 1 and self.beta is not None:
            raise ValueError("an EMA takes one draw per update")
        self.t += draws
        for name, u in us.items():
            s = statistics(u, self.estimator, batched=draws > 1)
            self.ndim[name] = u.dim() - (draws > 1)
            if name not in self.acc:
                self.acc[name] = torch.zeros_like(s)
            if self.beta is None:
                self.acc[name] += (s - self.acc[name]) * (draws / self.t)
            else:
                self.acc[name].mul_(self.beta).add_(s, alpha=1 - self.beta)

    def values(self) -> dict[str, float]:
        """FSLR estimates (not squared) for every tensor seen."""
        corr = 1.0 if self.beta is None else 1 - self.beta ** self.t
        return {n: math.sqrt(combine(s / corr, self.estimator, self.ndim[n])) for n, s in self.acc.items()}

    def state_dict(self) -> dict:
        return {"t": self.t, "acc": {n: s.cpu() for n, s in self.acc.items()}, "ndim": dict(self.ndim)}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        self.acc = {n: s.clone() for n, s in state["acc"].items()}
        self.ndim = {n: int(d) for n, d in state["ndim"].items()}


def projection_products(outputs: torch.Tensor, params: Mapping[str, torch.Tensor],
                        updates: Mapping[str, torch.Tensor], generator: torch.Generator | None = None,
                        retain_graph: bool = False, draws: int = 1) -> dict[str, torch.Tensor]:
    """u_l = dW_l * dPhi/dW_l for the random projection Phi = xi . F / sqrt(N): one backward per draw, or
    `draws` > 1 draws in one vectorised backward (stacked on a leading axis)."""
    shape = (draws, *outputs.shape) if draws > 1 else outputs.shape
    xi = torch.randn(shape, generator=generator, device=outputs.device, dtype=outputs.dtype)
    xi /= math.sqrt(outputs.numel())
    names = list(updates)
    grads = torch.autograd.grad(outputs, [params[n] for n in names], grad_outputs=xi, retain_graph=retain_graph,
                                allow_unused=True, is_grads_batched=draws > 1)
    return {n: (updates[n] * g if g is not None else torch.zeros(shape[:1] * (draws > 1) + updates[n].shape,
                                                                  device=updates[n].device))
            for n, g in zip(names, grads, strict=True)}


def _check_updates(model: torch.nn.Module, updates: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    unknown = sorted(set(updates) - set(params))
    if unknown:
        raise KeyError(f"updates for tensors the model does not have: {', '.join(unknown[:5])}"
                       + (f" (+{len(unknown) - 5})" if len(unknown) > 5 else ""))
    for n, u in updates.items():
        if u.shape != params[n].shape:
            raise ValueError(f"update of {n} has shape {tuple(u.shape)}, the tensor {tuple(params[n].shape)}")
    return params


def function_space_lr(model: torch.nn.Module, inputs, updates: Mapping[str, torch.Tensor], n_probes: int = 64,
                      estimator: Estimator = "kronecker", lr: float = 1.0,
                      output_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      generator: torch.Generator | None = None, chunk: int = 1) -> dict[str, float]:
    """Per-tensor RMS output change per unit LR, ||J_l (dW_l / lr)||_RMS, from `n_probes` random projections.

    `model(inputs)` gives the outputs (a tensor, or an object with `.logits` such as our GPT's); `updates`
    maps `model.named_parameters()` names to update tensors, divided by `lr` (pass the step's LR when the
    updates are whole optimiser steps, leave 1 when they already are per-unit-LR updates). `output_fn`
    maps the outputs first (e.g. `log_softmax` for the transformer, as in the paper). One forward, then
    one backward per probe (or per `chunk` probes, vectorised with `is_grads_batched`, which needs every op
    of the model to support vmap); nothing is written into `.grad`.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    params = _check_updates(model, updates)
    scaled = {n: u.detach().to(params[n].dtype) / lr for n, u in updates.items()}
    moments = Moments(estimator)
    with torch.enable_grad():
        out = model_outputs(model(inputs))
        if output_fn is not None:
            out = output_fn(out)
        done = 0
        while done < n_probes:
            c = min(max(chunk, 1), n_probes - done)
            done += c
            moments.update(projection_products(out, params, scaled, generator, retain_graph=done < n_probes,
                                               draws=c), draws=c)
    return moments.values()


def reference_function_space_lr(model: torch.nn.Module, inputs, updates: Mapping[str, torch.Tensor],
                                lr: float = 1.0, output_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                                method: Literal["jvp", "fd"] = "jvp", fd_eps: float = 1e-6) -> dict[str, float]:
    """The exact per-tensor FSLR: forward-mode JVP, or central finite differences of applying fd_eps * dW_l
    to that tensor alone (run the model in float64 for fd). The ground truth the estimators are tested on."""
    params = _check_updates(model, updates)
    base = {n: p.detach() for n, p in params.items()}
    out_fn = output_fn or (lambda x: x)

    def f(name: str, w: torch.Tensor) -> torch.Tensor:
        return out_fn(model_outputs(functional_call(model, {**base, name: w}, (inputs,))))

    res = {}
    for n, u in updates.items():
        du = u.detach().to(base[n].dtype) / lr
        if method == "jvp":
            _, tangent = jvp(lambda w, n=n: f(n, w), (base[n],), (du,))
        else:
            with torch.no_grad():
                tangent = (f(n, base[n] + fd_eps * du) - f(n, base[n] - fd_eps * du)) / (2 * fd_eps)
        res[n] = tangent.double().square().mean().sqrt().item()
    return res
