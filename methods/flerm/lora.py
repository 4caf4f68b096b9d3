"""The `lora` method: fine-tune a trained checkpoint through PEFT's LoRA adapters (FLeRM's LoRA-rank transfer).

The paper fine-tunes GPT-2 / Llama with PEFT LoRA on the attention projections (q, k, v, o),
`init_lora_weights='gaussian'` (A ~ N(0, 1/r), B = 0), base rank 2, and transfers the LR across rank with FLeRM
applied once at iteration 6 (at step 0 B = 0, so A's update moves no output and its FSLR is 0).
Here: `transform_model` loads the base run's `ckpt.pt` (our GPT, strict: the model config must match), then
`peft.inject_adapter_in_model` wraps the target Linear layers; PEFT freezes every other tensor. Combine with
`flerm` (listed after `lora`): record mode on the base rank, `base:` the record (`start: 6`) on other ranks; the
tensor names (`blocks.K.attn.q.lora_A.default.weight`, ...) are the same at every rank, so the record maps 1:1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from claimbench.config import ConfigError
from claimbench.plugin import Method, Workload
from claimbench.registry import register_method


class LoraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: str | None = Field(None, description="ckpt.pt of the run to fine-tune (None: LoRA on a fresh model)")
    rank: int = Field(8, ge=1, description="LoRA rank r")
    alpha: float = Field(8.0, gt=0, description="lora_alpha: the adapter output is scaled by alpha / r (PEFT)")
    targets: list[str] = Field(["q", "k", "v", "o"], min_length=1, description="module names to adapt")
    init: str = Field("gaussian", description="PEFT init_lora_weights ('gaussian' as the paper, or 'true')")


def inject(model: torch.nn.Module, options: LoraOptions) -> torch.nn.Module:
    """PEFT LoRA adapters on `options.targets`, everything else frozen (PEFT's own injection, no PeftModel
    wrapper: our GPT is not a transformers model, and the trainer only needs the adapted nn.Module)."""
    from peft import LoraConfig, inject_adapter_in_model

    init: bool | str = {"true": True, "false": False}.get(options.init.lower(), options.init)
    cfg = LoraConfig(r=options.rank, lora_alpha=options.alpha, target_modules=list(options.targets),
                     init_lora_weights=init, lora_dropout=0.0, bias="none")
    try:
        return inject_adapter_in_model(cfg, model)
    except ValueError as e:  # PEFT: "Target modules {...} not found in the base model"
        raise ConfigError(f"methods (lora): targets {options.targets}: {e}") from None


def load_checkpoint(model: torch.nn.Module, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"methods (lora): checkpoint not found: {p} (train the base run first)")
    state = torch.load(p, map_location="cpu", weights_only=True)
    weights = state.get("model", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:2]
        raise ConfigError(f"methods (lora): checkpoint {p} does not fit this run's model ({' '.join(first)})") from None


@register_method("lora")
class Lora(Method):
    """LoRA fine-tuning of a trained checkpoint through PEFT (the base weights frozen)."""

    Options = LoraOptions
    # the default targets are our GPT's q/k/v/o projections (the paper's LoRA setup is a language model); timm's
    # fused `qkv` would need a target list and a FLeRM record of its own
    workloads = frozenset({"gpt"})
    # sigma_reparam then lora fine-tunes a sigma-Reparam model (its reparametrised weights frozen, as PEFT freezes
    # every non-adapter tensor); the other order would reparametrise the adapters themselves
    after = {"sigma_reparam": "sigma_reparam after lora would reparametrise the LoRA adapters, whose B starts at 0: "
                              "sigma(B) = 0 makes gamma / sigma NaN at the first step"}

    @classmethod
    def reads(cls, options: LoraOptions, cfg) -> list[str]:
        return [options.checkpoint] if options.checkpoint else []

    @classmethod
    def remake(cls, path: str, options: LoraOptions, cfg, store) -> list[list[str]] | None:
        """The checkpoint is another run's final ckpt.pt (runs/<profile>/<run id>/ckpt.pt): retrain that run."""
        src = Path(store) / Path(path).parent.name / "config.yaml"
        if Path(path).name != "ckpt.pt" or not src.is_file():
            return None
        return [[sys.executable, "-m", "claimbench", "train", str(src.resolve()), "--out", str(Path(path).parent)]]

    @classmethod
    def check(cls, options: LoraOptions, workload: Workload) -> None:
        if options.checkpoint and not Path(options.checkpoint).is_file():
            raise ConfigError(f"methods (lora): checkpoint not found: {options.checkpoint} (train the base run "
                              "first)")

    def transform_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.options.checkpoint:
            load_checkpoint(model, self.options.checkpoint)
        device = next(model.parameters()).device
        before = dict(self.ctx.roles)
        model = inject(model, self.options).to(device)
        for name, _ in model.named_parameters():  # register the renamed base tensors and the adapters
            if name not in before:
                plain = name.replace(".base_layer.", ".")
                self.ctx.roles[name] = "hidden_matrix" if ".lora_" in name else before.get(plain, "hidden_matrix")
        return model
