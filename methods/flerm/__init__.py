"""Function-Space Learning Rates (Milsom, Anson, Aitchison; ICML 2025): the FSLR estimator and FLeRM.

`function_space_lr(model, inputs, updates, n_probes=64, estimator="kronecker")` works on any model outside
training; the `flerm` method records FSLRs during a run or transfers a base model's record to a scaled one;
the `lora` method fine-tunes a checkpoint through PEFT LoRA adapters (the paper's LoRA-rank transfer).
Documentation: docs/papers/flerm.md.
"""

from methods.flerm.estimator import ESTIMATORS, Moments, function_space_lr, reference_function_space_lr
from methods.flerm.lora import Lora, LoraOptions
from methods.flerm.method import Flerm, FlermOptions

__all__ = ["ESTIMATORS", "Flerm", "FlermOptions", "Lora", "LoraOptions", "Moments", "function_space_lr",
           "reference_function_space_lr"]
