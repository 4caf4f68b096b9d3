"""`vit` and `swin`: timm's Vision Transformer and Swin Transformer on real images.

Sizes: `micro` (seconds, Fashion-MNIST), `smoke` (minutes on 2 cores, Fashion-MNIST padded to 32x32),
`gpu` (ViT-S/4 and a Swin-T-like net on CIFAR-100), `paper` / `paper_l` (ViT-B/16, ViT-L/16) and
`paper` / `paper_b` (Swin-S, Swin-B) on ImageNet-1k at 224, the warmup-free paper's models. Blocks are
timm's pre-LN blocks; `qk_norm` is timm's (ViT), `pre_norm` timm's extra norm after the embedding.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmarks.workloads._classifier import ImageClassifier
from claimbench.capabilities import AttentionView, Segment
from claimbench.registry import register_workload

# benchmarks.models.vision (and with it timm, ~1.5 s) is imported inside the methods: plugin discovery
# imports every workload module, and a GPT run should not pay for timm.


class ViTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    img_size: int = Field(32, ge=8)
    patch_size: int = Field(4, ge=1)
    embed_dim: int = Field(96, ge=8)
    depth: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    qkv_bias: bool = True
    qk_norm: bool = False
    pre_norm: bool = False
    class_token: bool = True
    global_pool: Literal["token", "avg"] = "token"
    init_values: float | None = Field(None, description="LayerScale init (role multiplier); None: off")
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    split_qkv: bool = Field(False, description="separate W_q/W_k/W_v tensors (roles attn_q/k/v)")

    @model_validator(mode="after")
    def _check(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} does not divide embed_dim={self.embed_dim}")
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} does not divide img_size={self.img_size}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool 'token' needs class_token: true (or use global_pool: avg)")
        return self


class SwinOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    img_size: int = Field(32, ge=8)
    patch_size: int = Field(4, ge=1)
    embed_dim: int = Field(64, ge=8)
    depths: list[int] = [2, 2]
    num_heads: list[int] = [2, 4]
    window_size: int = Field(4, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    qkv_bias: bool = True
    drop_path_rate: float = Field(0.0, ge=0, lt=1)
    split_qkv: bool = Field(False, description="separate W_q/W_k/W_v tensors (roles attn_q/k/v)")

    @model_validator(mode="after")
    def _check(self):
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths ({len(self.depths)} stages) and num_heads ({len(self.num_heads)}) differ")
        side = self.img_size // self.patch_size
        if self.img_size % self.patch_size or side % (2 ** (len(self.depths) - 1)):
            raise ValueError(f"img_size/patch_size={self.img_size}/{self.patch_size} must be an integer side "
                             f"divisible by 2^(stages-1)={2 ** (len(self.depths) - 1)}")
        if side % self.window_size:
            raise ValueError(f"window_size={self.window_size} does not divide the first feature map ({side}x{side})")
        for i, h in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** i) % h:
                raise ValueError(f"num_heads[{i}]={h} does not divide stage width {self.embed_dim * 2 ** i}")
        return self


class _TimmClassifier(ImageClassifier):
    provides = frozenset({"hidden_states", "attn_probs", "logz", "attention", "attn_logits", "multipliers"})

    def attention_layers(self, model) -> list[AttentionView]:
        """timm's attention modules; a fused qkv holds W_q, W_k, W_v as thirds of its rows (heads contiguous)."""
        from benchmarks.models.vision import SplitQKV, attention_modules

        views = []
        for m in attention_modules(getattr(model, "_orig_mod", model)):
            qkv = m.qkv
            if isinstance(qkv, SplitQKV):
                q, k, v = (Segment(lin, 0, lin.out_features) for lin in (qkv.q, qkv.k, qkv.v))
            else:
                d = qkv.weight.shape[0] // 3
                q, k, v = Segment(qkv, 0, d), Segment(qkv, d, 2 * d), Segment(qkv, 2 * d, 3 * d)
            views.append(AttentionView(m, q, k, v, m.num_heads))
        return views

    def attn_logits(self, model, fn):
        from benchmarks.models.vision import serve_logits

        return serve_logits(model, fn)

    def param_roles(self, model) -> dict[str, str]:
        from benchmarks.models.vision import param_roles

        return param_roles(model)

    def no_weight_decay(self, model) -> set[str]:
        """timm's own list (pos_embed, cls_token / relative_position_bias_table), as full parameter names."""
        keys = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
        return {n for n, _ in model.named_parameters() if n in keys or n.rsplit(".", 1)[-1] in keys}

    def logits(self, model, x, needs: frozenset[str]):
        want_hidden, want_probs = "hidden_states" in needs, "attn_probs" in needs
        if not (want_hidden or want_probs):
            return model(x), None, None
        from benchmarks.models.vision import capture

        with capture(model, want_hidden, want_probs) as cap:
            out = model(x)
        return out, cap.hidden_states, cap.attn_probs


@register_workload("vit")
class ViTWorkload(_TimmClassifier):
    """timm VisionTransformer (pre-LN, optional qk_norm) on real images."""

    sizes = {
        "micro": dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2),
        "smoke": dict(img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=4),
        "gpu": dict(img_size=32, patch_size=4, embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.1),  # ViT-S/4
        "paper": dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.1),
        "paper_l": dict(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16, drop_path_rate=0.1),
    }
    Options = ViTOptions
    provides = _TimmClassifier.provides | {"depth"}

    def depth(self) -> int:
        return self.opts.depth

    def build_model(self):
        from benchmarks.models.vision import build_vit

        return build_vit(self.opts, *self.data_shape())


@register_workload("swin")
class SwinWorkload(_TimmClassifier):
    """timm SwinTransformer (shifted windows, pre-LN) on real images."""

    sizes = {
        "micro": dict(img_size=32, patch_size=8, embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=2),
        "smoke": dict(img_size=32, patch_size=4, embed_dim=64, depths=[2, 2], num_heads=[2, 4], window_size=4),
        "gpu": dict(img_size=32, patch_size=2, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                    window_size=4, drop_path_rate=0.2),  # Swin-T-like for 32x32
        "paper": dict(img_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24],
                      window_size=7, drop_path_rate=0.3),  # Swin-S
        "paper_b": dict(img_size=224, patch_size=4, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                        window_size=7, drop_path_rate=0.5),  # Swin-B
    }
    Options = SwinOptions

    def build_model(self):
        from benchmarks.models.vision import build_swin

        return build_swin(self.opts, *self.data_shape())
