"""AdamW^2: AdamW whose per-matrix step size is capped by a spectral-norm growth bound.

For a watched matrix W with Adam direction u (bias-corrected m / (sqrt(v_hat) + eps), the update
without the LR), the step is alpha_eff = min(alpha, tau * sigma1(W) / sigma1(u)), so by Weyl's
inequality sigma1 grows by at most a factor (1 + tau) per step. It is an
optimizer, not a before/after-step hook, because the cap needs u before it is applied.

Arithmetic is torch's single-tensor AdamW (torch/optim/adam.py `_single_tensor_adam`,
decoupled weight decay) operation for operation, so an uncapped tensor (tau = inf, or a
tensor outside the scope) gets exactly the update torch.optim.AdamW(foreach=False) gives it:
bit for bit in fp32 (tests/test_adamw2.py). Reconstructed choices (docs/papers/nowarmup.md), kept here:
- the cap is per tensor (per q/k/v block of a fused qkv when split), not one global alpha;
- the weight decay of a capped tensor uses alpha_eff too (PyTorch AdamW couples them);
- sigma1(W) is taken before the step's decay; a zero W (sigma 0) is never capped;
- start vectors get `init_iters` iterations at the first step, then `iters` warm-started ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.nowarmup.power import as_matrix, init_vector, power_iteration


@dataclass(frozen=True)
class Watch:
    """A watched tensor: its name and its row segments (start, end, capped) of the 2-D view."""

    name: str
    segments: tuple[tuple[int, int, bool], ...]

    @property
    def capped(self) -> list[tuple[int, int]]:
        return [(s, e) for s, e, c in self.segments if c]


class AdamW2(torch.optim.AdamW):
    """torch.optim.AdamW with the AdamW^2 spectral cap on the tensors in `watch` (id(param) -> Watch).

    The optimizer state is AdamW's (`step`, `exp_avg`, `exp_avg_sq`) plus `pi_w` and `pi_u`, the warm
    power-iteration vectors (one row per capped segment), so state_dict()/load_state_dict() resume exactly."""

    def __init__(self, params, watch: dict[int, Watch], *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, tau: float, iters: int, init_iters: int):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
        self.watch, self.tau, self.iters, self.init_iters = watch, tau, iters, init_iters
        self.order = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        self.last: dict[str, list] = {}  # per capped segment of the last step: name, ratio, lr_ratio, sigma_w

    def _sigmas(self, p: torch.Tensor, r: torch.Tensor, state: dict, w: Watch) -> tuple[torch.Tensor, torch.Tensor]:
        """sigma1 of each capped segment of W (before the step) and of r = m / denom (u up to 1/bc1)."""
        pm, rm = as_matrix(p), as_matrix(r)
        first = "pi_w" not in state
        if first:
            n, seed = pm.shape[1], 7919 * self.order[id(p)]
            state["pi_w"] = torch.stack([init_vector(n, seed + i, p.device, p.dtype) for i in range(len(w.capped))])
            state["pi_u"] = state["pi_w"].clone()
        iters = self.init_iters if first else self.iters
        sw, su = [], []
        for i, (s, e) in enumerate(w.capped):
            a, state["pi_w"][i] = power_iteration(pm[s:e], state["pi_w"][i], iters)
            b, state["pi_u"][i] = power_iteration(rm[s:e], state["pi_u"][i], iters)
            sw.append(a)
            su.append(b)
        return torch.stack(sw), torch.stack(su)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending = []  # watched tensors wait for one host sync of all their sigmas
        for group in self.param_groups:
            if group["amsgrad"] or group["maximize"]:
                raise ValueError("AdamW2 supports neither amsgrad nor maximize")
            params, grads, exp_avgs, exp_avg_sqs, state_steps = [], [], [], [], []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, [], state_steps)
            beta1, beta2 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for p, grad, exp_avg, exp_avg_sq, step_t in zip(params, grads, exp_avgs, exp_avg_sqs, state_steps,
                                                            strict=True):
                step_t += 1
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = step_t.item()
                bc1 = 1 - beta1**step
                bc2_sqrt = (1 - beta2**step) ** 0.5
                denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
                w = self.watch.get(id(p))
                if w is None:
                    _apply(p, exp_avg, denom, lr, wd, bc1)
                    continue
                sw, sr = self._sigmas(p, exp_avg / denom, self.state[p], w)
                pending.append((p, exp_avg, denom, lr, wd, bc1, w, sw, sr / bc1))
        if pending:
            self._apply_capped(pending)
        return loss

    def _apply_capped(self, pending: list) -> None:
        sig = torch.stack([torch.cat((x[7], x[8])) for x in pending]) if _same_len(pending) else None
        values = sig.tolist() if sig is not None else [torch.cat((x[7], x[8])).tolist() for x in pending]
        names, ratios, lr_ratios, sigma_w = [], [], [], []
        for (p, exp_avg, denom, lr, wd, bc1, w, _, _), vals in zip(pending, values, strict=True):
            k = len(vals) // 2
            lrs = []
            for s_w, s_u in zip(vals[:k], vals[k:], strict=True):
                ratio = s_u / s_w if s_w > 0 else 0.0
                capped = s_w > 0 and s_u > 0 and lr * s_u > self.tau * s_w
                lrs.append(self.tau * s_w / s_u if capped else lr)
                ratios.append(ratio)
                sigma_w.append(s_w)
            if all(x == lr for x in lrs):
                _apply(p, exp_avg, denom, lr, wd, bc1)
            else:
                pm, em, dm = as_matrix(p), as_matrix(exp_avg), as_matrix(denom)
                it = iter(lrs)
                for s, e, c in w.segments:
                    _apply(pm[s:e], em[s:e], dm[s:e], next(it) if c else lr, wd, bc1)
            names += [w.name if len(lrs) == 1 else f"{w.name}[{i}]" for i in range(len(lrs))]
            lr_ratios += [x / lr for x in lrs]
        self.last = {"names": names, "ratio": ratios, "lr_ratio": lr_ratios, "sigma_w": sigma_w}


def _same_len(pending: list) -> bool:
    return len({len(x[7]) for x in pending}) == 1


def _apply(p: torch.Tensor, exp_avg: torch.Tensor, denom: torch.Tensor, lr: float, wd: float, bc1: float) -> None:
    """torch's decoupled decay and Adam update, in its order (decay commutes: it touches only p)."""
    if wd != 0:
        p.mul_(1 - lr * wd)
    p.addcdiv_(exp_avg, denom, value=-(lr / bc1))
