"""Divergence is a result: detect it from the per-step training loss."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class DivergenceDetector:
    """Non-finite loss, or loss above `factor` x the step-0 loss for `patience` consecutive steps."""

    factor: float = 1.5
    patience: int = 50
    first_loss: float | None = None
    bad_run: int = 0
    diverged_at: int | None = None
    reason: str | None = None

    def update(self, step: int, loss: float) -> bool:
        """Feed the loss of `step` (1-based count of completed steps); True once diverged."""
        if self.diverged_at is not None:
            return True
        if not math.isfinite(loss):
            self.diverged_at, self.reason = step, f"non-finite loss ({loss})"
            return True
        if self.first_loss is None:
            self.first_loss = loss
            return False
        self.bad_run = self.bad_run + 1 if loss > self.factor * self.first_loss else 0
        if self.bad_run >= self.patience:
            self.diverged_at = step
            self.reason = (f"loss above {self.factor}x its step-1 value ({self.first_loss:.4g}) "
                           f"for {self.patience} steps")
            return True
        return False

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
