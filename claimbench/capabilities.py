"""What a workload provides beyond a forward pass, so methods never reach into model classes.

A workload lists its capabilities in `Workload.provides` (names from CAPABILITIES) and serves each through
one `Workload` method; a method lists the ones it needs in `Method.needs` (or, when they depend on its
options, `Method.requires(options)`), and prepare() refuses a run whose workload lacks one, in one line,
before anything is built or written.

  hidden_states   forward(..., needs) returns embeddings + each block's output (Outputs.hidden_states)
  attn_probs      forward(..., needs) returns each attention layer's probabilities (Outputs.attn_probs)
  logz            forward(..., needs) returns each row's logsumexp(logits) from the loss's own pass
                  (Outputs.logz; claimbench.losses.cross_entropy_logz)
  attention       attention_layers(model): an AttentionView per layer (W_q, W_k, W_v as row segments of
                  their tensors, heads, scale); role_segments(model): fused qkv tensors as row segments by role
  attn_logits     attn_logits(model, fn): the model hands each layer's pre-softmax logits (masked entries
                  -inf or masked as the model masks them) to fn during the forwards run inside the block
  multipliers     forward_multipliers(model): role -> Multiplier ("embedding", "logit", "attn_scale")
  depth           depth(): the number of blocks; hidden states are embeddings + that many outputs, one width
  readout         readout(model): the final norm and head that turn a hidden state into logits
  heldout_batch   heldout_batch(n): n fixed held-out examples (the same for every run and seed)
  tokenizer       tokenizer(), context_length(): the run's text tokenizer and the model's context length
  mlp_slots       mlp_slots(model): id(Linear) -> "mlp_up" / "mlp_gate" / "mlp_down" / "mlp_in"
  heldout_text    heldout_text() (a classmethod): (text, source) of real text the workload never trains on
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

CAPABILITIES = frozenset({"hidden_states", "attn_probs", "logz", "attention", "attn_logits", "multipliers",
                          "depth", "readout", "heldout_batch", "tokenizer", "mlp_slots", "heldout_text"})
MULTIPLIER_ROLES = frozenset({"embedding", "logit", "attn_scale"})


@dataclass(frozen=True)
class Segment:
    """Rows [start, end) of `module.weight`: one projection, alone in its Linear or a third of a fused qkv."""

    module: nn.Module
    start: int
    end: int

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight[self.start:self.end]

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end == self.module.weight.shape[0]


@dataclass(eq=False)
class AttentionView:
    """One attention layer as methods see it: W_q, W_k, W_v as row segments, heads, and its softmax scale
    (read and set through the view; the model keeps it as a Python float, so its forward is unchanged)."""

    module: nn.Module
    q: Segment
    k: Segment
    v: Segment
    n_head: int
    scale_attr: str = "scale"

    @property
    def W_q(self) -> torch.Tensor:  # noqa: N802 - the paper's name
        return self.q.weight

    @property
    def W_k(self) -> torch.Tensor:  # noqa: N802
        return self.k.weight

    @property
    def head_dim(self) -> int:
        return (self.q.end - self.q.start) // self.n_head

    @property
    def fused(self) -> bool:
        return self.q.module is self.k.module

    @property
    def scale(self) -> float:
        return getattr(self.module, self.scale_attr)

    @scale.setter
    def scale(self, value: float) -> None:
        setattr(self.module, self.scale_attr, value)


@dataclass
class Multiplier:
    """A forward multiplier of one role: a Python float the model applies in its forward, set in place.

    `owner`: the bias-free module whose output alone it scales, so a learnable multiplier placed on that module
    can absorb its value; None where that is not so."""

    get: Callable[[], float]
    set: Callable[[float], None]
    owner: nn.Module | None = None

    @property
    def value(self) -> float:
        return self.get()

    @value.setter
    def value(self, v: float) -> None:
        self.set(v)

    def mul(self, k: float) -> None:
        """value *= k (the same float operation a direct `attr *= k` does)."""
        self.set(self.get() * k)


def attr_multiplier(obj: object, attr: str, owner: nn.Module | None = None) -> Multiplier:
    return Multiplier(lambda: getattr(obj, attr), lambda v: setattr(obj, attr, v), owner)


class GroupMultiplier(Multiplier):
    """One role held by several modules (every layer's attention scale): `mul` scales each in place (their
    values may differ), `get` is the first's value, `set` sets all."""

    def __init__(self, parts: list[Multiplier]):
        self.parts = parts
        super().__init__(lambda: parts[0].get() if parts else 1.0, self._set)

    def _set(self, v: float) -> None:
        for p in self.parts:
            p.set(v)

    def mul(self, k: float) -> None:
        for p in self.parts:
            p.mul(k)


class OutputScale:
    """A forward multiplier held by the model for a module that cannot apply one itself: a forward hook
    multiplying the module's output, registered the first time the value leaves 1 (none costs nothing)."""

    def __init__(self, module: nn.Module):
        self.module, self.k, self.handle = module, 1.0, None

    def get(self) -> float:
        return self.k

    def set(self, v: float) -> None:
        self.k = v
        if v != 1.0 and self.handle is None:
            self.handle = self.module.register_forward_hook(lambda _m, _i, out: out * self.k)

    def multiplier(self) -> Multiplier:
        return Multiplier(self.get, self.set)


@dataclass(frozen=True)
class Readout:
    """The final norm and the head: logits of a hidden state are head(norm(h)) (forward multipliers not
    applied)."""

    norm: nn.Module
    head: nn.Module

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(h))
