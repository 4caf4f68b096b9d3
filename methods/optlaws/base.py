"""The common interface of the loss laws: `fit(curves) -> law`, `law.predict(schedule)`, `law.final_loss(schedule)`.

Every law maps a per-step LR schedule to a loss curve. Laws are fitted in normalised units (LR divided
by the largest LR of the fitting curves, steps divided by their median length) so that one set of
starting points serves 400-step smoke runs and 72k-step published curves alike; the forms are
scale-covariant, so this only reparametrises them. A fit that does not converge raises FitError and is
reported as a failed fit, never turned into a prediction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from methods.optlaws.curves import Curve

LAWS: dict[str, type[Law]] = {}
LAW_ORDER = ("optlaws", "multipower", "annealing")  # the order the study and its report list the laws in


class FitError(RuntimeError):
    """The law could not be fitted (too few points, no convergence): a failed fit, not a prediction."""


def register_law(cls: type[Law]) -> type[Law]:
    LAWS[cls.name] = cls
    return cls


def get_law(name: str) -> type[Law]:
    if name not in LAWS:
        raise KeyError(f"unknown law {name!r}; known: {', '.join(sorted(LAWS))}")
    return LAWS[name]


@dataclass
class Units:
    """LR and step scales of the fitting set (stored with the parameters)."""

    lr: float
    steps: float

    @classmethod
    def of(cls, curves: list[Curve]) -> Units:
        return cls(lr=max(c.peak_lr for c in curves), steps=float(np.median([c.total for c in curves])))


@dataclass
class Law(ABC):
    """A fitted law. Subclasses implement `_fit` (classmethod) and `_predict`."""

    name: ClassVar[str]
    label: ClassVar[str]
    n_params: ClassVar[int]
    exact: ClassVar[bool] = True  # the published functional form (False: the suite's reconstruction)
    # fitting procedures by name -> the classmethod that runs it; the first is the default
    FITS: ClassVar[dict[str, str]] = {"converged": "_fit"}
    params: dict[str, float]
    units: Units
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, curves: list[Curve], seed: int = 0, fit: str | None = None) -> Law:
        """Fit on curves with losses by the procedure named `fit` (default: the first of FITS).

        Raises FitError (with the reason) when it cannot, ValueError for a fit name the law does not know.
        """
        fit = check_fit(cls, fit)
        if not curves:
            raise FitError(f"{cls.name}: no curves to fit")
        for c in curves:
            if c.loss is None:
                raise FitError(f"{cls.name}: curve {c.name} has no losses")
        n = sum(len(c.steps) for c in curves)
        if n < cls.n_params + 1:
            src = ", ".join((c.source or c.name) + (f": rows {c.meta['rows'][0]}-{c.meta['rows'][1]}"
                                                     if "rows" in c.meta else "") for c in curves)
            raise FitError(f"{cls.name}: {n} points in {src}: fewer than the law's {cls.n_params} parameters + 1")
        law = getattr(cls, cls.FITS[fit])(curves, Units.of(curves), seed)
        law.info = {"fit": fit, **law.info}
        guessed = {c.name: c.meta["lr_source"] for c in curves
                   if not c.meta.get("lr_source", "exact").startswith("exact")}
        if guessed:  # say where the per-step LR was interpolated rather than rebuilt
            law.info["lr_interpolated"] = guessed
        if not np.all(np.isfinite(law.predict(curves[0]))):  # checked here once, for every law
            raise FitError(f"{cls.name}: fitted parameters give non-finite predictions")
        return law

    @classmethod
    @abstractmethod
    def _fit(cls, curves: list[Curve], units: Units, seed: int) -> Law: ...

    @abstractmethod
    def _predict(self, schedule: Curve) -> np.ndarray: ...

    def predict(self, schedule: Curve) -> np.ndarray:
        """Predicted loss at each of `schedule.steps`."""
        return np.asarray(self._predict(schedule), dtype=float)

    def final_loss(self, schedule: Curve) -> float:
        return float(self.predict(schedule)[-1])

    def divergence_score(self, schedule: Curve) -> float:
        """Larger = more likely to diverge. Default: the peak LR (a threshold is fitted on observed runs)."""
        return schedule.peak_lr

    def to_json(self) -> dict[str, Any]:
        return {"law": self.name, "label": self.label, "params": self.params,
                "units": {"lr": self.units.lr, "steps": self.units.steps}, "info": self.info}


def check_fit(law: type[Law], fit: str | None) -> str:
    """The fit procedure's name (the law's default for None); ValueError naming it if the law has no such fit."""
    if fit is None:
        return next(iter(law.FITS))
    if fit not in law.FITS:
        raise ValueError(f"{law.name}: unknown fit option {fit!r}; known: {', '.join(law.FITS)}")
    return fit


def huber(r: Any, delta: float) -> Any:
    """Huber loss (torch or numpy) of residuals r."""
    a = abs(r)
    return ((a <= delta) * 0.5 * r ** 2 + (a > delta) * delta * (a - 0.5 * delta))


def scores(pred: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """final_pred, final_actual, rel_error (last point), r2 and mae over the whole curve."""
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    ss_tot = float(np.sum((actual - actual.mean()) ** 2))
    r2 = 1 - float(np.sum((actual - pred) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    return {"final_pred": float(pred[-1]), "final_actual": float(actual[-1]),
            "rel_error": abs(float(pred[-1] - actual[-1])) / abs(float(actual[-1])),
            "r2": r2, "mae": float(np.mean(np.abs(pred - actual)))}
