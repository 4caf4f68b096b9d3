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


def wsd_exp(total: int, warmup: int = 0, min_ratio: float = 0.0, decay_frac: float = 0.2) -> Schedule:
    """WSD with exponential decay (MiniCPM): `wsd(..., decay="exp")` under its own name."""
    return wsd(total, warmup, min_ratio, decay_frac, decay="exp")


def two_stage(total: int, warmup: int = 0, second_ratio: float = 0.3, switch_frac: float = 0.6) -> Schedule:
    """Two-stage constant: the peak LR until `switch_frac` of the steps, then `second_ratio` x peak.

    The Multi-Power Law paper's `wsdcon` curves are this shape; a jump is the sharpest test of a law's
    annealing term.
    """
    switch = int(round(switch_frac * total))

    def f(step: int) -> float:
        if step < warmup:
            return warmup_factor(step, warmup)
        return 1.0 if step < switch else second_ratio
    return f


def multi_step(total: int, warmup: int = 0, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1) -> Schedule:
    """Multi-step decay (torch MultiStepLR): x `gamma` at each milestone, milestones as fractions of `total`."""
    marks = sorted(int(round(m * total)) for m in milestones)

    def f(step: int) -> float:
        if step < warmup:
            return warmup_factor(step, warmup)
        return gamma ** bisect.bisect_right(marks, step)
    return f


def inverse_sqrt(total: int, warmup: int = 0, min_ratio: float = 0.0) -> Schedule:
    """Inverse square root after warmup (Transformer / T5 style): sqrt(warmup / step), never below `min_ratio`."""
    w = max(1, warmup)

    def f(step: int) -> float:
        if step < warmup:
            return warmup_factor(step, warmup)
        return max(min_ratio, math.sqrt(w / max(step, w)))
    return f


def to_piecewise(schedule: Schedule, total: int, knots: int = 8, warmup: int = 0,
                 tol: float = 0.005) -> list[list[float]]:
    """Sample a schedule after warmup as a config `piecewise` list ([step, factor] pairs from step 0).

    Lets a run config express any family here (the config schema only names cosine/constant/linear/wsd):
    `piecewise(to_piecewise(s, T, warmup=W), W)` is within `tol` of `s` at every step (knots are added
    where the linear interpolation is worst; jumps keep both sides). Warmup is not sampled: pass it as
    `train.warmup_steps`.
    """
    vals = [1.0 if s < warmup else schedule(s) for s in range(total)]
    steps = {0, total - 1} | {warmup + int(round(i * (total - 1 - warmup) / max(1, knots - 1))) for i in range(knots)}
    for s in range(warmup + 1, total):
        if abs(vals[s] - vals[s - 1]) > 0.2 * abs(vals[s - 1]):  # a jump stays a jump
            steps |= {s - 1, s}
    for _ in range(total):
        pts = sorted(steps)
        approx = piecewise([(s, vals[s]) for s in pts])
        err, worst = max((abs(approx(s) - vals[s]), s) for s in range(total))
        if err <= tol:
            break
        steps.add(worst)
    return [[s, round(vals[s], 6)] for s in sorted(steps)]


FAMILIES: dict[str, Callable[..., Schedule]] = {
    "constant": constant, "cosine": cosine, "linear": linear, "wsd": wsd, "wsd_exp": wsd_exp,
    "two_stage": two_stage, "multi_step": multi_step, "inverse_sqrt": inverse_sqrt,
}


def family(name: str, total: int, warmup: int = 0, **kwargs) -> Schedule:
    """A named family with its keyword options, e.g. family("two_stage", 600, 30, second_ratio=0.3)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown schedule family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name](total, warmup, **kwargs)


def from_train_config(train) -> Schedule:
    """The schedule a `train:` section asks for."""
    s = train.schedule
    if isinstance(s, list):
        return piecewise(s, train.warmup_steps)
    if s == "wsd":
        return wsd(train.steps, train.warmup_steps, train.min_lr_ratio, train.decay_frac)
    return {"cosine": cosine, "constant": constant, "linear": linear}[s](
        train.steps, train.warmup_steps, train.min_lr_ratio)


# Named schedules of published loss curves. The Multi-Power Law release (Luo et al. 2025) names each
# curve after its schedule and logs the LR of step s (the LR the next update uses) beside the loss after
# s updates; these functions give that LR as a multiple of the peak, for every step from 0, so that a
# curve's per-step LR can be rebuilt exactly instead of interpolated from the rows it logged. Their
# conventions differ from the trainer's above and are kept separate on purpose: the warmup is a linear
# ramp from 0 at step 0 to the peak at step warmup-1, and decays reach the end LR at step `total`.
NAMED_WARMUP = 2160  # the release's warmup steps (its logs start after it)
NAMED_END_RATIO = 0.1  # cosine and WSD end at 3e-5 from a 3e-4 peak
NAMED_SECOND_UNIT = 1e-5  # wsdcon_X: the second stage's LR is X x 1e-5 (absolute, not a ratio)
NAMED_TWO_STAGE = (8000, 16000)  # wsdcon: switch step and length
NAMED_FORMS = ("cosine_T", "constant_T", "wsd_D_T (exponential decay from D to T)", "wsdld_D_T (linear decay)",
               "wsdcon_X (peak until 8000, then X x 1e-5 until 16000)")


def ramp_from_zero(step: int, warmup: int) -> float:
    """The published curves' warmup: 0 at step 0, 1 at step warmup-1 (numpy's linspace(0, 1, warmup))."""
    return min(1.0, step / (warmup - 1)) if warmup > 1 else 1.0


def parse_named(name: str) -> tuple[str, tuple[int, ...]] | None:
    """('cosine', (24000,)) for 'cosine_24000'; None when the name is not one of NAMED_FORMS."""
    kind, _, rest = name.partition("_")
    parts = rest.split("_") if rest else []
    if not parts or not all(p.isdigit() for p in parts):
        return None
    nums = tuple(int(p) for p in parts)
    arity = {"cosine": 1, "constant": 1, "wsdcon": 1, "wsd": 2, "wsdld": 2}.get(kind)
    if arity != len(nums) or (arity == 2 and not nums[0] < nums[1]) or nums[-1] <= 0:
        return None
    return kind, nums


def named(name: str, peak_lr: float, warmup: int = NAMED_WARMUP,
          end_ratio: float = NAMED_END_RATIO) -> tuple[Schedule, int]:
    """(schedule, total steps) of a published curve's name, e.g. named('wsdcon_9', 3e-4)[0](8000) == 0.3."""
    parsed = parse_named(name)
    if parsed is None:
        raise ValueError(f"unknown schedule name {name!r}; known forms: {', '.join(NAMED_FORMS)}")
    kind, nums = parsed
    if kind == "wsdcon":
        switch, total = NAMED_TWO_STAGE
        second = nums[0] * NAMED_SECOND_UNIT / peak_lr
        decay_start = switch
    elif kind == "cosine" or kind == "constant":
        total, decay_start = nums[0], warmup
    else:
        decay_start, total = nums
    if not 0 <= warmup <= decay_start < total:
        raise ValueError(f"schedule {name!r}: warmup {warmup} does not end before its decay starts "
                         f"(step {decay_start} of {total})")

    def f(step: int) -> float:
        if step < warmup:
            return ramp_from_zero(step, warmup)
        p = (step - decay_start) / (total - decay_start)  # < 0 before the decay starts
        if kind == "constant" or p < 0:
            return 1.0
        if kind == "cosine":
            return end_ratio + (1 - end_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        if kind == "wsdcon":
            return second
        if kind == "wsd":
            return end_ratio ** p
        return 1 - (1 - end_ratio) * p  # wsdld
    return f, total
