"""A decoder-only transformer in two flavours, nanoGPT-direct.

Written by hand (not Hugging Face) because the workloads need what those classes hide: separate
q/k/v tensors so methods can treat each projection (AdamW^2, multipliers on W_q/W_k), the
pre-final-norm hidden states and attention probabilities on request at zero cost otherwise,
and a parameter-role side table. `gpt2`: LayerNorm, GELU MLP, learned positions, tied head.
`llama`: RMSNorm, SwiGLU MLP, RoPE, untied head.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    arch: str = "gpt2"
    vocab_size: int = 2048
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp_hidden: int | None = None  # default: 4d (gpt2), 8d/3 rounded up to a multiple of 32 (llama)
    bias: bool = False
    dropout: float = 0.0
    init_std: float = 0.02
    rope_theta: float = 10000.0
    tie_weights: bool | None = None  # default: True for gpt2, False for llama
    # variants the papers need (defaults give the plain architecture)
    norm_position: str = "pre"  # pre: x+b(LN x); post: LN(x+b(x)); prenorm_postmod: x+LN(b(x)) ("PreNormPostMod")
    norm_affine: bool = True  # False: LayerNorm/RMSNorm without gain (and bias)
    qk_norm: bool = False  # a norm over head_dim on q and k before the dot product
    branch_scale: float = 1.0  # forward multiplier on each residual branch (e.g. 1/sqrt(n_layer))
    attn_scale: float | None = None  # softmax scale; None: 1/sqrt(head_dim) (muP uses 1/head_dim)
    init_scale: float = 1.0  # multiplies the init std of the attention and MLP matrices
    embed_mult: float = 1.0  # forward multiplier on the embeddings (muP)
    logit_mult: float = 1.0  # forward multiplier on the logits (muP)

    def __post_init__(self):
        if self.arch not in ("gpt2", "llama"):
            raise ValueError(f"arch must be gpt2 or llama, got {self.arch!r}")
        if self.norm_position not in ("pre", "post", "prenorm_postmod"):
            raise ValueError(f"norm_position must be pre, post or prenorm_postmod, got {self.norm_position!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head={self.n_head} does not divide n_embd={self.n_embd}")
        if self.tie_weights is None:
            self.tie_weights = self.arch == "gpt2"
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd if self.arch == "gpt2" else 32 * math.ceil(8 * self.n_embd / 3 / 32)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class RMSNorm0(nn.Module):
    """RMSNorm without a gain (non-affine)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), None, self.eps)


def make_norm(cfg: GPTConfig, dim: int | None = None) -> nn.Module:
    dim = dim or cfg.n_embd
    if cfg.arch == "gpt2":
        return nn.LayerNorm(dim, elementwise_affine=cfg.norm_affine, bias=cfg.bias and cfg.norm_affine)
    return RMSNorm(dim) if cfg.norm_affine else RMSNorm0(dim)


def rope_cache(cfg: GPTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    hd = cfg.n_embd // cfg.n_head
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(cfg.block_size, dtype=torch.float32), inv)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    t = x.shape[-2]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:t].to(x.dtype), sin[:t].to(x.dtype)
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.k = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.v = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.o = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        hd = cfg.n_embd // cfg.n_head
        self.scale = cfg.attn_scale if cfg.attn_scale is not None else 1 / math.sqrt(hd)
        self.q_norm, self.k_norm = (make_norm(cfg, hd), make_norm(cfg, hd)) if cfg.qk_norm else (None, None)
        self.on_logits = None  # set by GPT.serve_logits: receives the masked pre-softmax logits (explicit path)

    def forward(self, x, rope=None, want_probs: bool = False):
        b, t, c = x.shape
        q, k, v = (lin(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        probs = None
        if want_probs or self.on_logits is not None:  # the explicit path, only when a method asked for it
            att = (q @ k.transpose(-2, -1)) * self.scale
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf"))
            if self.on_logits is not None:
                self.on_logits(att)
            probs = att.softmax(dim=-1)
            y = F.dropout(probs, self.dropout, self.training) @ v
            if not want_probs:
                probs = None
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale,
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(b, t, c)), probs


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.gated = cfg.arch == "llama"
        self.fc = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=cfg.bias)
        if self.gated:
            self.gate = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=cfg.bias)
        self.proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=cfg.bias)

    def forward(self, x):
        h = F.silu(self.gate(x)) * self.fc(x) if self.gated else F.gelu(self.fc(x))
        return self.proj(h)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = make_norm(cfg), make_norm(cfg)
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.position, self.branch_scale = cfg.norm_position, cfg.branch_scale

    def forward(self, x, rope=None, want_probs: bool = False):
        s = self.branch_scale
        if self.position == "pre":
            a, probs = self.attn(self.ln1(x), rope, want_probs)
            x = x + s * self.drop(a)
            return x + s * self.drop(self.mlp(self.ln2(x))), probs
        a, probs = self.attn(x, rope, want_probs)
        if self.position == "post":
            x = self.ln1(x + s * self.drop(a))
            return self.ln2(x + s * self.drop(self.mlp(x))), probs
        x = x + s * self.ln1(self.drop(a))  # prenorm_postmod
        return x + s * self.ln2(self.drop(self.mlp(x))), probs


@dataclass
class GPTOutput:
    logits: torch.Tensor
    hidden_states: list[torch.Tensor] | None
    attn_probs: list[torch.Tensor] | None


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.arch == "gpt2" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        if cfg.arch == "llama":
            cos, sin = rope_cache(cfg)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        # forward multipliers (muP): Python floats, read by the workload's role table (forward_multipliers)
        self.embed_mult, self.logit_mult = cfg.embed_mult, cfg.logit_mult
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, std) weights, residual projections scaled by 1/sqrt(2 * n_layer)."""
        std = self.cfg.init_std
        for name, mod in self.named_modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                residual = name.endswith(("attn.o", "mlp.proj"))
                scale = self.cfg.init_scale if ".attn." in f".{name}" or ".mlp." in f".{name}" else 1.0
                std_here = std * scale / (math.sqrt(2 * self.cfg.n_layer) if residual else 1)
                nn.init.normal_(mod.weight, 0.0, std_here)
                if getattr(mod, "bias", None) is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, (nn.LayerNorm, RMSNorm)) and mod.weight is not None:
                nn.init.ones_(mod.weight)
                if getattr(mod, "bias", None) is not None:
                    nn.init.zeros_(mod.bias)

    def forward(self, idx, want_hidden: bool = False, want_probs: bool = False) -> GPTOutput:
        b, t = idx.shape
        if t > self.cfg.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block_size={self.cfg.block_size}")
        x = self.wte(idx)
        if self.embed_mult != 1.0:
            x = x * self.embed_mult
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(t, device=idx.device))
        x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if self.cfg.arch == "llama" else None
        hidden = [x] if want_hidden else None
        probs = [] if want_probs else None
        for block in self.blocks:
            x, p = block(x, rope, want_probs)
            if want_hidden:
                hidden.append(x)
            if want_probs:
                probs.append(p)
        logits = self.lm_head(self.ln_f(x))
        if self.logit_mult != 1.0:
            logits = logits * self.logit_mult
        return GPTOutput(logits, hidden, probs)


def attention_modules(model: GPT) -> list[Attention]:
    return [m for m in getattr(model, "_orig_mod", model).modules() if isinstance(m, Attention)]


@contextmanager
def serve_logits(model: GPT, fn) -> Iterator[None]:
    """Every attention layer hands fn its masked pre-softmax logits (batch, heads, t, t) in the forwards run
    inside the block (they take the explicit attention path)."""
    mods = attention_modules(model)
    try:
        for m in mods:
            m.on_logits = fn
        yield
    finally:
        for m in mods:
            m.on_logits = None


def mlp_slots(model: GPT) -> dict[int, str]:
    """id(Linear) -> slot of the MLP matrices (fc/gate/proj)."""
    slots: dict[int, str] = {}
    for mod in model.modules():
        if isinstance(mod, MLP):
            slots[id(mod.proj)] = "mlp_down"
            if mod.gated:
                slots[id(mod.gate)] = "mlp_gate"
                slots[id(mod.fc)] = "mlp_up"
            else:
                slots[id(mod.fc)] = "mlp_in"
    return slots


def param_roles(model: GPT) -> dict[str, str]:
    """The role of every parameter, by module type and position, so methods never parse names."""
    attn_roles = {}
    for mod in model.modules():
        if isinstance(mod, Attention):
            attn_roles.update({id(mod.q): "attn_q", id(mod.k): "attn_k", id(mod.v): "attn_v", id(mod.o): "attn_out"})
    roles: dict[str, str] = {}
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if p_name == "bias":
                roles[full] = "bias"
            elif isinstance(mod, (nn.LayerNorm, RMSNorm)):
                roles[full] = "norm"
            elif isinstance(mod, nn.Embedding):
                roles[full] = "embedding"
            elif mod is model.lm_head:
                roles[full] = "readout"
            else:
                roles[full] = attn_roles.get(id(mod), "hidden_matrix")
    # the tied head shares wte's tensor: named_parameters() lists it once, as an embedding
    return {n: roles[n] for n, _ in model.named_parameters()}


def flops_per_token(cfg: GPTConfig, n_params_nonembed: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus 12 L d T for attention (PaLM appendix B)."""
    return 6 * n_params_nonembed + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
