"""Schedule selection with a fitted law: candidate grids, ranking by predicted final loss, divergence flags.

Divergence is not something MPL or MTL can predict (their forms have no instability term), so every law
gets a one-dimensional threshold rule fitted on observed runs: on the law's `divergence_score` (the peak
LR for MPL/MTL, the escape feature for the reconstructed Opt-Laws). The threshold is the one that
maximises F1 on the observed runs, placed halfway (in log) between the neighbouring scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np

from baselines.schedules import family
from methods.optlaws.base import Law
from methods.optlaws.curves import Curve, schedule


@dataclass
class ThresholdRule:
    threshold: float | None  # None: never flags (no diverged run was observed)

    @classmethod
    def fit(cls, scores: list[float], diverged: list[bool]) -> ThresholdRule:
        s = np.asarray(scores, float)
        y = np.asarray(diverged, bool)
        if not y.any():
            return cls(None)
        cands = np.unique(s)
        best, best_t = -1.0, None
        for i, c in enumerate(cands):  # rule: score >= c diverges
            f = f1(y, s >= c)
            if f > best + 1e-12:
                lo = cands[i - 1] if i else c / 2
                best, best_t = f, math.sqrt(lo * c) if lo > 0 and c > 0 else (lo + c) / 2
        return cls(best_t)

    def predict(self, score: float) -> bool:
        return self.threshold is not None and score >= self.threshold


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = int(np.sum(y & pred))
    fp = int(np.sum(~y & pred))
    fn = int(np.sum(y & ~pred))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def candidate_grid(total: int, peak_lrs: list[float], warmups: list[int], wsd_decay: list[float],
                   cosine_min: list[float], two_stage_ratio: list[float]) -> list[Curve]:
    """Candidate schedules (evaluated at the last step) over the family grid of `claimbench law select`."""
    out: list[Curve] = []
    for lr, w in product(peak_lrs, warmups):
        fams: list[tuple[str, dict]] = [("constant", {})]
        fams += [("cosine", {"min_ratio": m}) for m in cosine_min]
        fams += [("wsd", {"decay_frac": d, "min_ratio": 0.0}) for d in wsd_decay]
        fams += [("wsd_exp", {"decay_frac": d, "min_ratio": 0.01}) for d in wsd_decay]
        fams += [("two_stage", {"second_ratio": r}) for r in two_stage_ratio]
        for name, kw in fams:
            f = family(name, total, w, **kw)
            tag = ",".join(f"{k}={v:g}" for k, v in kw.items())
            c = schedule(f"{name}({tag})@lr={lr:g},warmup={w}", [lr * f(i) for i in range(total)], [total])
            c.meta = {"family": name, "peak_lr": lr, "warmup": w, **kw}
            out.append(c)
    return out


def rank(law: Law, candidates: list[Curve], rule: ThresholdRule | None = None, top_k: int = 3) -> dict:
    """Candidates sorted by predicted final loss (non-finite last); divergence flags from `rule`."""
    rows = []
    for c in candidates:
        pred = law.final_loss(c)
        flag = rule.predict(law.divergence_score(c)) if rule is not None else None
        rows.append({"schedule": c.name, **c.meta, "final_pred": pred if math.isfinite(pred) else None,
                     "predicted_diverge": flag})
    ok = [r for r in rows if r["final_pred"] is not None and not r["predicted_diverge"]]
    rest = [r for r in rows if r not in ok]
    ok.sort(key=lambda r: r["final_pred"])
    ranked = ok + rest
    return {"law": law.name, "label": law.label, "top_k": [r["schedule"] for r in ok[:top_k]], "ranking": ranked,
            "divergence_threshold": None if rule is None else rule.threshold}
