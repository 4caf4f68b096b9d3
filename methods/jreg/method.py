"""`jreg`: the jump-suppressing regularizer, lam * sum_l w_l * mean_tokens(1 - cos(h_{l-1}, h_l)).

Computed from the hidden states the forward pass already returns (`needs = {"hidden_states"}`): no
second forward, and the cosines reuse activations autograd keeps anyway. The paper's lam, weights,
layers and stop-gradient are not public (docs/papers/jreg.md): every choice is an option, and the
defaults are the pilot's (final layer only, lam 0.1, gradient through both sides), labelled as ours.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from claimbench.config import ConfigError
from claimbench.plugin import Method, Outputs, Workload
from claimbench.registry import register_method
from methods.jreg.metric import DEFAULT_JUMP_FORM, DEFAULT_JUMP_K, JUMP_FORMS, jump_profile

# What a workload must provide: hidden states (embeddings + every block's output, pre final norm) and its
# depth, the number of blocks, all of one width (swin's patch merging changes the width between stages, so it
# declares no depth: no cosine across a merge). The early-exit CE also uses `readout` and `heldout_batch`
# where the workload has them (GPT), and is skipped elsewhere.
CAPABILITIES = frozenset({"hidden_states", "depth"})


class JREGOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lam: float = Field(0.1, ge=0, description="penalty coefficient (paper: not public; 0.1 = pilot)")
    weighting: Literal["final", "last_k", "uniform", "custom"] = Field(
        "final", description="final: w_L=1; last_k: 1/k on the last k layers; uniform: 1/L on every layer; "
                             "custom: the `weights` mapping")
    k: int = Field(2, ge=1, description="layers covered by weighting=last_k")
    weights: dict[int, float] | None = Field(None, description="weighting=custom: layer (1..L) -> weight >= 0")
    stop_grad: Literal["none", "input"] = Field(
        "none", description="none: gradient through h_{l-1} and h_l (reconstructed default); input: h_{l-1} detached")
    jump_form: Literal[tuple(JUMP_FORMS)] = Field(DEFAULT_JUMP_FORM, description="form of the logged jreg/jump")
    jump_k: int = Field(DEFAULT_JUMP_K, ge=1, description="'last k layers' of the logged jump strength")
    early_exit: bool = Field(True, description="log jreg/early_exit_ce: CE of final norm + head applied to "
                                               "h_l, l = ceil(L/2)..L-1, on fixed held-out windows (eval steps "
                                               "and the last step only)")
    early_exit_batch: int = Field(8, ge=1, description="held-out windows for the early-exit CE")

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, v):
        if v is not None:
            bad = {layer: w for layer, w in v.items() if not (w >= 0 and math.isfinite(w))}
            if bad:
                raise ValueError(f"layer weights must be finite and >= 0, got {bad}")
        return v


def n_layers(workload: Workload) -> int | None:
    """Number of blocks of a workload's model (its `depth` capability); None if it declares none."""
    return workload.depth() if "depth" in workload.capabilities() else None


def layer_weights(opts: JREGOptions, n: int) -> dict[int, float]:
    """The weighting as {layer l (1..n): w_l}, zero weights dropped (they cost nothing)."""
    if opts.weighting == "final":
        w = {n: 1.0}
    elif opts.weighting == "last_k":
        w = {layer: 1.0 / opts.k for layer in range(n - opts.k + 1, n + 1)}
    elif opts.weighting == "uniform":
        w = {layer: 1.0 / n for layer in range(1, n + 1)}
    else:
        w = dict(opts.weights or {})
    return {layer: x for layer, x in w.items() if x > 0}


def check_options(opts: JREGOptions, n: int | None, workload_name: str) -> None:
    """Every option that depends on the model's depth, as one-line ConfigErrors."""
    if n is None:
        raise ConfigError(f"jreg: workload '{workload_name}' does not expose per-layer hidden states")
    if opts.weighting == "custom" and not opts.weights:
        raise ConfigError("jreg: weighting=custom needs `weights: {layer: weight}`")
    if opts.weighting != "custom" and opts.weights:
        raise ConfigError(f"jreg: `weights` is only read with weighting=custom (weighting is {opts.weighting})")
    for layer in opts.weights or {}:
        if not 1 <= layer <= n:
            raise ConfigError(f"jreg: weights: layer index {layer} out of range 1..{n} (the model has {n} layers)")
    if opts.weighting == "last_k" and opts.k > n:
        raise ConfigError(f"jreg: k={opts.k} out of range 1..{n} (the model has {n} layers)")
    if opts.jump_k > n:
        raise ConfigError(f"jreg: jump_k={opts.jump_k} out of range 1..{n} (the model has {n} layers)")


def jreg_penalty(hidden_states: list[torch.Tensor], weights: dict[int, float],
                 stop_grad: str = "none") -> torch.Tensor:
    """sum_l w_l * mean over tokens of (1 - cos(h_{l-1}, h_l)), without lam; float32.

    Each needed h gets its norm computed once (a layer is both the output of one pair and the input of the
    next): 2.6x cheaper than F.cosine_similarity per pair on the CPU, which matters for weighting=uniform."""
    need = sorted(set(weights) | {layer - 1 for layer in weights})
    h = {i: hidden_states[i].float() for i in need}
    norm = {i: torch.linalg.vector_norm(h[i], dim=-1) for i in need}
    total = hidden_states[0].new_zeros((), dtype=torch.float32)
    for layer, w in weights.items():
        prev, prev_norm = h[layer - 1], norm[layer - 1]
        if stop_grad == "input":
            prev, prev_norm = prev.detach(), prev_norm.detach()
        cos = (prev * h[layer]).sum(-1) / (prev_norm * norm[layer]).clamp_min(1e-8)
        total = total + w * (1.0 - cos).mean()
    return total


@register_method("jreg")
class JREG(Method):
    """Jump-suppressing regularizer (Shibata et al. 2026, JREG): penalise 1-cos between block input and output."""

    Options = JREGOptions
    needs = CAPABILITIES

    @classmethod
    def check(cls, options: JREGOptions, workload: Workload) -> None:
        check_options(options, n_layers(workload), workload.name)

    def __init__(self, options: JREGOptions, ctx):
        super().__init__(options, ctx)
        self.n = n_layers(ctx.workload)
        check_options(options, self.n, ctx.workload.name)  # also when a caller skipped prepare()
        self.weights = layer_weights(options, self.n)
        self.last_penalty: torch.Tensor | None = None

    def _hidden(self, outputs: Outputs) -> list[torch.Tensor]:
        hs = outputs.hidden_states
        if hs is None or len(hs) != self.n + 1:
            got = "none" if hs is None else f"{len(hs)} tensors"
            raise ConfigError(f"jreg: workload '{self.ctx.workload.name}' returned {got} as hidden states, "
                              f"expected {self.n + 1} (embeddings + {self.n} layers)")
        return hs

    def extra_loss(self, outputs: Outputs) -> torch.Tensor | None:
        hs = self._hidden(outputs)
        if self.options.lam == 0 or not self.weights:  # lam=0: a pure probe, logs the profile, no penalty
            self.last_penalty = None
            return None
        self.last_penalty = jreg_penalty(hs, self.weights, self.options.stop_grad)
        return self.options.lam * self.last_penalty

    def metrics(self, step: int, model: torch.nn.Module, outputs: Outputs) -> dict[str, float]:
        prof = jump_profile(self._hidden(outputs), self.options.jump_form, self.options.jump_k)
        row: dict[str, float | None] = {"jreg/jump": prof["jump"] if math.isfinite(prof["jump"]) else None}
        row.update({f"jreg/dist/{i}": d for i, d in enumerate(prof["distances"], start=1)})
        if self.last_penalty is not None:
            row["jreg/penalty"] = self.last_penalty.item()
        if self.options.early_exit and self._eval_due(step):
            row.update(self.early_exit_ce(model))
        return row

    def _eval_due(self, step: int) -> bool:
        """Whether logged step `step` (1-based) is one the trainer evaluates at, or the last: the early-exit CE is
        a held-out evaluation (a forward of its own), so it runs at the eval cadence, not at every log row. It
        draws no randomness, so the training numbers do not depend on when it runs; the claims read its value at
        the last step."""
        cfg = self.ctx.cfg
        return step >= cfg.train.steps or (cfg.eval.every > 0 and step % cfg.eval.every == 0)

    @torch.no_grad()
    def early_exit_ce(self, model: torch.nn.Module) -> dict[str, float]:
        """Claim C8 (balanced middle layers): the model's own final norm and head read out h_l early.

        Workloads with a `readout` and a `heldout_batch` (GPT); {} elsewhere. One extra forward of
        `early_exit_batch` windows per eval step (and at the last step), never per training step."""
        wl, layers = self.ctx.workload, range(math.ceil(self.n / 2), self.n)
        if not {"readout", "heldout_batch"} <= wl.capabilities() or not layers:
            return {}
        if getattr(self, "_val_batch", None) is None:
            self._val_batch = tuple(t.to(self.ctx.device) for t in wl.heldout_batch(self.options.early_exit_batch))
        was_training = model.training
        model.eval()
        try:
            x, y = self._val_batch
            hs = wl.forward(model, (x, y), frozenset({"hidden_states"})).hidden_states
            readout = wl.readout(model)
            ce = {layer: torch.nn.functional.cross_entropy(readout(hs[layer]).flatten(0, 1).float(),
                                                           y.flatten()).item() for layer in layers}
        finally:
            model.train(was_training)
        return {"jreg/early_exit_ce": sum(ce.values()) / len(ce),
                **{f"jreg/early_exit_ce/{layer}": v for layer, v in ce.items()}}
