"""Opt-Laws: loss laws over LR schedules, fitted on many runs -- an analysis-kind method.

It changes nothing in a training run; its work is the `optlaws_analysis` DAG stage (methods/optlaws/paper.py) that fits
three laws on a grid of runs and compares their held-out predictions. The laws (one module each) share
the interface of methods.optlaws.base: `Law.fit(curves) -> law`, `law.predict(schedule)`,
`law.final_loss(schedule)`:
  optlaws     Opt-Laws (reconstructed): methods/optlaws/optlaws_reconstructed.py (a stand-in, see there)
  multipower  Multi-Power Law (Luo et al. 2025)
  annealing   LR-annealing law (Tissue et al. 2024)
"""

from __future__ import annotations

from claimbench.plugin import Method
from claimbench.registry import register_method
from methods.optlaws import annealing, multipower, optlaws_reconstructed  # noqa: F401  (register the laws)
from methods.optlaws.base import LAWS, FitError, Law, get_law  # noqa: F401


@register_method("optlaws")
class OptLaws(Method):
    """Opt-Laws (reconstructed) + MPL + MTL loss laws over LR schedules (analysis stage; training unchanged)."""
