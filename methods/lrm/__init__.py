"""`lrm`: Learnable Multipliers (arXiv 2601.04890). See method.py; `merge` folds multipliers into weights."""

from methods.lrm.method import LRM, LRMOptions
from methods.lrm.multipliers import merge

__all__ = ["LRM", "LRMOptions", "merge"]
