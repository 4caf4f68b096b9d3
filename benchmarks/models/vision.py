"""timm ViT and Swin, built from explicit configs, with parameter roles and on-request captures.

The models are timm's own classes (no re-implementation): `timm.models.VisionTransformer` and
`timm.models.SwinTransformer`, randomly initialised by timm. What this module adds:
- `param_roles`: the role of every tensor (claimbench/plugin.py ROLES). timm fuses W_q, W_k, W_v into one
  `attn.qkv` Linear (rows: q, then k, then v; heads contiguous inside each). A fused tensor is none of
  attn_q/attn_k/attn_v, so it gets the role `hidden_matrix` (right for rules that treat every hidden matrix
  alike: muP, per-tensor FSLRs, weight decay). A method that needs W_q and W_k as tensors of their own
  asks for `model.split_qkv: true`: each `qkv` is replaced by `SplitQKV` (three Linears holding the same
  initial values, outputs concatenated), whose tensors carry attn_q/attn_k/attn_v. The attention code
  stays timm's.
- `capture`: hidden states (embeddings, then each block's output) and attention probabilities through
  forward hooks registered only for a forward that asks, so an ordinary step pays nothing. Probabilities
  need timm's explicit attention path (`fused_attn=False`, which hands the softmax to `attn_drop`; its input,
  before dropout, is taken); it is switched on for that forward only. Swin's are per window:
  (batch * windows, heads, window^2, window^2); its hidden states are flattened to (batch, tokens,
  channels), so their shapes change between stages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from timm.layers import LayerScale
from timm.models import SwinTransformer, VisionTransformer


class SplitQKV(nn.Module):
    """Drop-in for a fused qkv Linear: separate q, k, v Linears, outputs concatenated as timm expects."""

    def __init__(self, fused: nn.Linear):
        super().__init__()
        d_out = fused.out_features // 3
        bias = fused.bias is not None
        factory = {"device": fused.weight.device, "dtype": fused.weight.dtype}
        self.q, self.k, self.v = (nn.Linear(fused.in_features, d_out, bias=bias, **factory) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.q, self.k, self.v)):
                lin.weight.copy_(fused.weight[i * d_out:(i + 1) * d_out])
                if bias:
                    lin.bias.copy_(fused.bias[i * d_out:(i + 1) * d_out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.q(x), self.k(x), self.v(x)), dim=-1)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm attention modules (ViT `Attention`, Swin `WindowAttention`): those with a qkv and attn_drop."""
    return [m for m in model.modules() if hasattr(m, "qkv") and hasattr(m, "attn_drop") and hasattr(m, "fused_attn")]


def split_qkv(model: nn.Module) -> nn.Module:
    for attn in attention_modules(model):
        attn.qkv = SplitQKV(attn.qkv)
    return model


def build_vit(opts, in_chans: int, num_classes: int) -> VisionTransformer:
    model = VisionTransformer(
        img_size=opts.img_size, patch_size=opts.patch_size, in_chans=in_chans, num_classes=num_classes,
        embed_dim=opts.embed_dim, depth=opts.depth, num_heads=opts.num_heads, mlp_ratio=opts.mlp_ratio,
        qkv_bias=opts.qkv_bias, qk_norm=opts.qk_norm, pre_norm=opts.pre_norm, class_token=opts.class_token,
        global_pool=opts.global_pool, init_values=opts.init_values, drop_path_rate=opts.drop_path_rate)
    return split_qkv(model) if opts.split_qkv else model


def build_swin(opts, in_chans: int, num_classes: int) -> SwinTransformer:
    model = SwinTransformer(
        img_size=opts.img_size, patch_size=opts.patch_size, in_chans=in_chans, num_classes=num_classes,
        embed_dim=opts.embed_dim, depths=tuple(opts.depths), num_heads=tuple(opts.num_heads),
        window_size=opts.window_size, mlp_ratio=opts.mlp_ratio, qkv_bias=opts.qkv_bias,
        drop_path_rate=opts.drop_path_rate)
    return split_qkv(model) if opts.split_qkv else model


_EMBEDDING_PARAMS = ("cls_token", "pos_embed", "reg_token", "dist_token", "absolute_pos_embed")


def param_roles(model: nn.Module) -> dict[str, str]:
    """Role of every parameter of a timm ViT/Swin, by module type (see the module docstring for qkv)."""
    head = model.get_classifier()
    by_module: dict[int, str] = {}
    for attn in attention_modules(model):
        if isinstance(attn.qkv, SplitQKV):
            by_module.update({id(attn.qkv.q): "attn_q", id(attn.qkv.k): "attn_k", id(attn.qkv.v): "attn_v"})
        by_module[id(attn.proj)] = "attn_out"
    roles: dict[str, str] = {}
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if p_name in _EMBEDDING_PARAMS:
                roles[full] = "embedding"
            elif p_name == "relative_position_bias_table":
                roles[full] = "bias"  # an additive bias on the attention logits
            elif p_name == "bias":
                roles[full] = "bias"
            elif isinstance(mod, nn.LayerNorm):
                roles[full] = "norm"
            elif isinstance(mod, LayerScale):
                roles[full] = "multiplier"
            elif isinstance(mod, nn.Conv2d):
                roles[full] = "embedding"  # the patch embedding
            elif mod is head:
                roles[full] = "readout"
            elif isinstance(mod, nn.Linear):
                roles[full] = by_module.get(id(mod), "hidden_matrix")
            else:
                raise ValueError(f"no role rule for parameter '{full}' ({type(mod).__name__})")
    return roles


# ------------------------------------------------------------------------------------- captures

@dataclass
class Captured:
    hidden_states: list[torch.Tensor] | None = None
    attn_probs: list[torch.Tensor] | None = None
    handles: list = field(default_factory=list)


def _hidden_points(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """(module whose output is the embedding sequence, the blocks in order)."""
    if isinstance(model, VisionTransformer):
        return model.norm_pre, list(model.blocks)
    if isinstance(model, SwinTransformer):
        return model.patch_embed, [blk for stage in model.layers for blk in stage.blocks]
    raise TypeError(f"capture: unsupported model {type(model).__name__}")


def _tokens(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1, 2) if t.dim() == 4 else t  # Swin's (B, H, W, C) -> (B, H*W, C)


@contextmanager
def capture(model: nn.Module, want_hidden: bool, want_probs: bool) -> Iterator[Captured]:
    """Collect hidden states / attention probabilities of the forwards run inside the block."""
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper
    cap = Captured([] if want_hidden else None, [] if want_probs else None)
    attns = attention_modules(model) if want_probs else []
    fused = [a.fused_attn for a in attns]
    try:
        if want_hidden:
            embed, blocks = _hidden_points(model)
            for mod in (embed, *blocks):
                cap.handles.append(mod.register_forward_hook(lambda m, i, o: cap.hidden_states.append(_tokens(o))))
        for a in attns:
            a.fused_attn = False
            cap.handles.append(a.attn_drop.register_forward_hook(lambda m, i, o: cap.attn_probs.append(i[0])))
        yield cap
    finally:
        for h in cap.handles:
            h.remove()
        for a, f in zip(attns, fused, strict=True):
            a.fused_attn = f


# ------------------------------------------------------------------------------------- attention logits

@contextmanager
def serve_logits(model: nn.Module, fn) -> Iterator[None]:
    """Every attention layer hands fn its pre-softmax logits in the forwards run inside the block.

    Swin's WindowAttention applies its softmax as a module: fn gets that module's input, the logits the model
    itself computed (relative-position bias and shifted-window mask included), on timm's explicit path
    (`fused_attn=False` for these forwards). ViT's Attention calls `softmax` as a function, so a pre-hook on the
    attention module recomputes q and k from its own qkv and q/k norms: (q k^T) * scale per head."""
    model = getattr(model, "_orig_mod", model)
    attns = attention_modules(model)
    fused = [a.fused_attn for a in attns]
    handles = []

    def vit_hook(m, args, kwargs):
        x = args[0]
        b, n, _ = x.shape
        qkv = m.qkv(x).reshape(b, n, 3, m.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = getattr(m, "q_norm", nn.Identity())(qkv[0]), getattr(m, "k_norm", nn.Identity())(qkv[1])
        fn((q @ k.transpose(-2, -1)) * m.scale)

    try:
        for a in attns:
            if isinstance(getattr(a, "softmax", None), nn.Softmax):
                a.fused_attn = False
                handles.append(a.softmax.register_forward_pre_hook(lambda _m, args: fn(args[0])))
            else:
                handles.append(a.register_forward_pre_hook(vit_hook, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
        for a, f in zip(attns, fused, strict=True):
            a.fused_attn = f
