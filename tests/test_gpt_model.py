"""GPT variants the papers need: norm placements, non-affine norms, QK-norm, branch/init/muP scales."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.models.gpt import GPT, GPTConfig, param_roles

VARIANTS = [
    {},
    {"norm_position": "post"},
    {"norm_position": "prenorm_postmod", "norm_affine": False},
    {"qk_norm": True},
    {"arch": "llama", "qk_norm": True, "norm_affine": False},
    {"branch_scale": 1 / math.sqrt(2), "init_scale": 4.0},
    {"attn_scale": 1 / 8, "embed_mult": 2.0, "logit_mult": 0.5},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "plain")
def test_variant_forward_backward_and_roles(variant):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16, **variant))
    idx = torch.randint(0, 64, (2, 8))
    out = model(idx, want_hidden=True, want_probs=True)
    plain = model(idx)
    assert torch.allclose(out.logits, plain.logits, atol=1e-5)  # explicit attention (with its scale) == SDPA
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    roles = param_roles(model)
    assert set(roles) == {n for n, _ in model.named_parameters()}
    if variant.get("qk_norm") and variant.get("norm_affine", True):
        assert roles["blocks.0.attn.q_norm.weight"] == "norm"
    if variant.get("norm_affine") is False:
        assert not any(r == "norm" for r in roles.values())


def test_init_scale_multiplies_block_matrices_only():
    a = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=64))
    b = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=64, init_scale=4.0))
    ratio = b.blocks[0].attn.q.weight.std() / a.blocks[0].attn.q.weight.std()
    assert 3.5 < ratio < 4.5
    assert 0.8 < b.wte.weight.std() / a.wte.weight.std() < 1.2


def test_bad_norm_position():
    with pytest.raises(ValueError, match="norm_position"):
        GPTConfig(norm_position="sandwich")
