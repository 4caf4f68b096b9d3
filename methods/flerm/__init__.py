"""Function-Space Learning Rates (Milsom, Anson, Aitchison; ICML 2025): the FSLR estimator and FLeRM.

`function_space_lr(model, inputs, updates, n_probes=64, estimator="kronecker")` works on any model outside
training; the `flerm` method records FSLRs during a run or transfers a base model's record to a scaled one.
Spec: shared/papers/flerm.md.
"""

from methods.flerm.estimator import ESTIMATORS, Moments, function_space_lr, reference_function_space_lr
from methods.flerm.method import Flerm, FlermOptions

__all__ = ["ESTIMATORS", "Flerm", "FlermOptions", "Moments", "function_space_lr", "reference_function_space_lr"]
