"""`mlp`: the function-space learning-rate paper's residual MLP on flattened real images.

Sizes: `micro` (seconds), `smoke` (the paper's base model, width 128 and 4 blocks, on Fashion-MNIST),
`gpu` (width 1024, 8 blocks, CIFAR-10), `paper` (the base model on CIFAR-10; width and depth are swept
by a grid's `model.width` / `model.n_blocks`). No augmentation at micro and smoke; the paper trains without any,
so pass `data.augment: false` to match it at the larger sizes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from benchmarks.models.resmlp import ResMLP, ResMLPConfig, param_roles
from benchmarks.workloads._classifier import ImageClassifier
from claimbench.registry import register_workload


class MLPOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(128, ge=1)
    n_blocks: int = Field(4, ge=0)
    block_layers: Literal[1, 2] = 1
    norm: Literal["none", "pre"] = "none"
    act: Literal["relu", "gelu"] = "relu"
    branch_scale: Literal["one", "inv_sqrt_depth"] = "one"
    init_scale: float = Field(1.0, gt=0)
    bias: bool = True
    img_size: int | None = Field(None, ge=4, description="resize/pad images to this side first; None: as stored")


@register_workload("mlp")
class MLPWorkload(ImageClassifier):
    """Residual MLP (pre-norm or no-norm blocks, branch scale 1 or 1/sqrt(depth)) on flattened images."""

    sizes = {
        "micro": dict(width=64, n_blocks=2),
        "smoke": dict(width=128, n_blocks=4),
        "gpu": dict(width=1024, n_blocks=8),
        "paper": dict(width=128, n_blocks=4),
    }
    Options = MLPOptions

    def build_model(self) -> ResMLP:
        in_chans, classes = self.data_shape()
        side = self.opts.img_size or (self.pipe.out_size if hasattr(self, "pipe") else 32)
        cfg = ResMLPConfig(in_features=in_chans * side * side, num_classes=classes,
                           **self.opts.model_dump(exclude={"img_size"}))
        return ResMLP(cfg)

    def param_roles(self, model) -> dict[str, str]:
        return param_roles(model)

    def logits(self, model, x, needs: frozenset[str]):
        out, hidden = model(x, want_hidden="hidden_states" in needs)
        return out, hidden, ([] if "attn_probs" in needs else None)  # no attention layers
