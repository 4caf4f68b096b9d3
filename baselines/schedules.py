"""LR schedules as pure functions step -> multiplier of the peak LR.

One module for every recipe, so a schedule means the same thing in a training run and in a
loss-law fit. Warmup is linear from 1/warmup to 1 (step 0 takes a non-zero LR).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

Schedule = Callable[[int], float]


def warmup_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _decay_progress(step: int, warmup: int, total: int) -> float:
    span = max(1, total - warmup)
    return min(1.0, max(0.0, (step - warmup) / span))


def cosine(total: int, warmup: int = 0, min_ratio: float = 0.1) -> Schedule:
    def f(step: int) -> float:
        if step < warmup:
            return warmup_factor(step, warmup)
        p = _decay_progress(step, warmup, total)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return f


def constant(total: int, warmup: int = 0, min_ratio: float = 1.0) -> Schedule:
    return lambda step: warmup_factor(step, warmup)


def linear(total: int, warmup: int = 0, min_ratio: float = 0.0) -> Schedule:
    def f(step: int) -> float:
        if step < warmup:
            return warmup_factor(step, warmup)
        return 1 - (1 - min_ratio) * _decay_progress(step, warmup, total)
    return f


def wsd(total: int, warmup: int = 0, min_ratio: float = 0.0, decay_frac: float = 0.2,
        decay: str = "linear") -> Schedule:
    """Warmup-stable-decay: constant until the last `decay_frac` of steps, then linear or exponential decay."""
    decay_start = total - int(round(decay_frac * total))
    floor = max(min_ratio, 1e-3) if decay == "exp" else min_ratio

    def f(step: int) -> float:
        if step < warmup:
            return warmup_factor(step, warmup)
        if step < decay_start:
            return 1.0
        p = min(1.0, (step - decay_start) / max(1, total - 1 - decay_start))
        return (1 - (1 - floor) * p) if decay == "linear" else floor ** p
    return f


def piecewise(points: Sequence[tuple[int, float]], warmup: int = 0) -> Schedule:
    """Linear interpolation between (step, factor) points; flat after the last one."""
    steps = [int(s) for s, _ in points]
    vals = [float(v) for _, v in points]

    def f(step: int) -> float:
        i = bisect.bisect_right(steps, step) - 1
        if i >= len(steps) - 1:
            v = vals[-1]
        else:
            t = (step - steps[i]) / (steps[i + 1] - steps[i])
            v = vals[i] + t * (vals[i + 1] - vals[i])
        return v * warmup_factor(step, warmup)
    return f


def from_train_config(train) -> Schedule:
    """The schedule a `train:` section asks for."""
    s = train.schedule
    if isinstance(s, list):
        return piecewise(s, train.warmup_steps)
    if s == "wsd":
        return wsd(train.steps, train.warmup_steps, train.min_lr_ratio, train.decay_frac)
    return {"cosine": cosine, "constant": constant, "linear": linear}[s](
        train.steps, train.warmup_steps, train.min_lr_ratio)
