"""JREG (arXiv 2601.18302): the final-layer jump metric and the jump-suppressing regularizer.

`jump_profile(hidden_states)` works on any model's per-layer hidden states; the `jreg` method is
registered on import (the registry imports every package under `methods/`), and so is the `trend` statistic of
jreg.c3_amplification.
"""

from methods.jreg import trend as _trend  # noqa: F401  (registers the `trend` statistic)
from methods.jreg.method import JREG, JREGOptions, jreg_penalty, layer_weights
from methods.jreg.metric import (
    DEFAULT_JUMP_FORM,
    JUMP_FORM_STATUS,
    JUMP_FORMS,
    all_forms,
    angular_distances,
    jump_profile,
    jump_strength,
)

__all__ = ["DEFAULT_JUMP_FORM", "JREG", "JREGOptions", "JUMP_FORMS", "JUMP_FORM_STATUS", "all_forms",
           "angular_distances", "jreg_penalty", "jump_profile", "jump_strength", "layer_weights"]
