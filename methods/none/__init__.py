"""`none`: the baseline, no change to the run."""

from claimbench.plugin import Method
from claimbench.registry import register_method


@register_method("none")
class NoMethod(Method):
    """The baseline: changes nothing."""
