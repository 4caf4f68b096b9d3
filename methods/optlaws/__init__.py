"""Opt-Laws: loss laws over LR schedules, fitted on many runs -- an analysis-kind method.

It changes nothing in a training run; its work is the `optlaws` DAG stage (rules/optlaws.smk) that fits
three laws on a grid of runs and compares their held-out predictions. The laws (one module each) share
the interface of methods.optlaws.base: `Law.fit(curves) -> law`, `law.predict(schedule)`,
`law.final_loss(schedule)`:
  optlaws     Opt-Laws (reconstructed): methods/optlaws/optlaws_reconstructed.py (a stand-in, see there)
  multipower  Multi-Power Law (Luo et al. 2025)
  annealing   LR-annealing law (Tissue et al. 2024)
"""

from __future__ import annotations

from typing import Any

from claimbench.plugin import Method
from claimbench.registry import register_method
from methods.optlaws import annealing, multipower, optlaws_reconstructed  # noqa: F401  (register the laws)
from methods.optlaws.base import LAWS, FitError, Law, get_law  # noqa: F401


@register_method("optlaws")
class OptLaws(Method):
    """Opt-Laws (reconstructed) + MPL + MTL loss laws over LR schedules (analysis stage; training unchanged)."""

    @classmethod
    def stages(cls) -> list[dict[str, Any]]:
        return [{
            "name": "optlaws_study",
            "consumes": "runs/<profile>/<run>/{metrics.jsonl,config.yaml,result.json} "
                        "of the runs of config/papers/optlaws.<profile>.yaml",
            "produces": ["results/optlaws.json", "results/analysis/optlaws/summary.md",
                         "results/figures/optlaws/*.png"],
            "command": "claimbench law study --grid config/papers/optlaws.<profile>.yaml --runs-dir runs/<profile> "
                       "--out results/optlaws.json --md results/analysis/optlaws/summary.md "
                       "--figures results/figures/optlaws",
        }]
