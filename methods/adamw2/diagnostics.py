"""Attention and spectral diagnostics of the AdamW^2 paper, on a fixed probe batch (docs/papers/nowarmup.md).

Everything here reads a model and returns numbers; nothing changes training. Names (docs/papers/nowarmup.md):
`attn/entropy_mean/L<i>`, `attn/entropy_min/L<i>` (over heads), `attn/map_erank/L<i>` (mean over heads),
per-head `attn/head_entropy/L<i>H<j>` and `attn/head_erank/L<i>H<j>` (the benign/malignant analysis needs
them together), `attn/qk_sigma1/L<i>` (max over heads of sigma1(W_q,h^T W_k,h)), `attn/sec_s{1,4,10}/L<i>`
(max over heads), the max over layers `attn/qk_sigma1_max`, `attn/sec_s10_max`, `attn/entropy_min`, and
`attn/max_logit`. SEC_s = sum_{i<=s} sigma_i^2 / sum_i sigma_i^2 per head (reconstructed);
effective rank = exp(entropy of the normalised singular values) (Roy & Vetterli 2007).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

SEC_S = (1, 4, 10)


def qk_layers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """(W_q, W_k, n_head) per attention layer: our GPT (separate q/k) or timm ViT/Swin (fused or split qkv)."""
    from benchmarks.models.gpt import Attention

    model = getattr(model, "_orig_mod", model)
    layers = [(m.q.weight, m.k.weight, m.n_head) for m in model.modules() if isinstance(m, Attention)]
    if layers:
        return layers
    from benchmarks.models.vision import attention_modules

    for m in attention_modules(model):
        qkv = m.qkv
        if hasattr(qkv, "q"):  # SplitQKV
            layers.append((qkv.q.weight, qkv.k.weight, m.num_heads))
        else:
            d = qkv.weight.shape[0] // 3
            layers.append((qkv.weight[:d], qkv.weight[d:2 * d], m.num_heads))
    return layers


@torch.no_grad()
def qk_spectrum(model: nn.Module) -> dict[str, float]:
    """sigma1 and SEC_s of W_q,h^T W_k,h for each head (d x d, rank <= head_dim), max over heads per layer."""
    out: dict[str, float] = {}
    for i, (wq, wk, h) in enumerate(qk_layers(model)):
        hd = wq.shape[0] // h
        q = wq.detach().float().reshape(h, hd, -1)
        k = wk.detach().float().reshape(h, hd, -1)
        # the nonzero singular values of Q^T K (d x d) are those of (Q Q^T)^(1/2)-weighted hd x hd cores; the
        # direct svdvals of the d x d product is simplest and cheap at probe frequency
        s = torch.linalg.svdvals(q.mT @ k)  # (h, d)
        energy = s.square()
        total = energy.sum(-1).clamp_min(1e-30)
        out[f"attn/qk_sigma1/L{i}"] = s[:, 0].max().item()
        for sv in SEC_S:
            out[f"attn/sec_s{sv}/L{i}"] = (energy[:, :sv].sum(-1) / total).max().item()
    if out:
        layers = range(len(qk_layers(model)))
        out["attn/qk_sigma1_max"] = max(out[f"attn/qk_sigma1/L{i}"] for i in layers)
        out["attn/sec_s10_max"] = max(out[f"attn/sec_s10/L{i}"] for i in layers)
    return out


def entropy_rows(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each attention row; probs (batch, heads, q, k) -> (batch, heads, q)."""
    p = probs.float()
    return -(p * p.clamp_min(1e-30).log()).sum(-1)


def effective_rank(mats: torch.Tensor) -> torch.Tensor:
    """exp(H(sigma / sum sigma)) of each matrix in a batch (..., q, k): 1 for rank one, q for an identity."""
    s = torch.linalg.svdvals(mats.float())
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-30)
    return torch.exp(-(p * p.clamp_min(1e-30).log()).sum(-1))


@torch.no_grad()
def attention_maps(probs: list[torch.Tensor]) -> dict[str, float]:
    """Entropy and effective rank per layer and head, averaged over the probe examples (and queries)."""
    out: dict[str, float] = {}
    mins = []
    for i, p in enumerate(probs):
        ent = entropy_rows(p).mean(dim=(0, 2))  # (heads,)
        erank = effective_rank(p).mean(dim=0)  # (heads,)
        out[f"attn/entropy_mean/L{i}"] = ent.mean().item()
        out[f"attn/entropy_min/L{i}"] = ent.min().item()
        out[f"attn/map_erank/L{i}"] = erank.mean().item()
        for j, (e, r) in enumerate(zip(ent.tolist(), erank.tolist(), strict=True)):
            out[f"attn/head_entropy/L{i}H{j}"] = e
            out[f"attn/head_erank/L{i}H{j}"] = r
        mins.append(ent.min().item())
    if mins:
        out["attn/entropy_min"] = min(mins)
    return out


@torch.no_grad()
def max_logit(model: nn.Module, run_forward) -> float | None:
    """Largest pre-softmax attention logit over all layers, heads and (causally allowed) pairs of one forward.

    Hooks the attention modules' inputs and recomputes q, k as they do (GPT: q/k norms, RoPE, causal mask;
    timm ViT: fused or split qkv, q/k norms). Swin's relative-position bias is not added (a lower bound there)."""
    from benchmarks.models.gpt import GPT, Attention, apply_rope

    model_ = getattr(model, "_orig_mod", model)
    best = [-math.inf]

    def gpt_hook(m, args, kwargs):
        x, rope = args[0], (args[1] if len(args) > 1 else kwargs.get("rope"))
        b, t, c = x.shape
        q, k = (lin(x).view(b, t, m.n_head, c // m.n_head).transpose(1, 2) for lin in (m.q, m.k))
        if m.q_norm is not None:
            q, k = m.q_norm(q), m.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        att = (q @ k.transpose(-2, -1)) * m.scale
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        best[0] = max(best[0], att.masked_fill(~mask, -math.inf).max().item())

    def timm_hook(m, args, kwargs):
        x = args[0]
        b, n, _ = x.shape
        qkv = m.qkv(x).reshape(b, n, 3, m.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = getattr(m, "q_norm", nn.Identity())(qkv[0]), getattr(m, "k_norm", nn.Identity())(qkv[1])
        best[0] = max(best[0], ((q @ k.transpose(-2, -1)) * m.scale).max().item())

    if isinstance(model_, GPT):
        mods, hook = [m for m in model_.modules() if isinstance(m, Attention)], gpt_hook
    else:
        from benchmarks.models.vision import attention_modules

        mods, hook = attention_modules(model_), timm_hook
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in mods]
    try:
        run_forward()
    finally:
        for h in handles:
            h.remove()
    return best[0] if math.isfinite(best[0]) else None


@torch.no_grad()
def weight_sigmas(model: nn.Module, names: list[str]) -> dict[str, float]:
    """Exact sigma1 (largest singular value) of the named >=2-D weights."""
    params = dict(model.named_parameters())
    return {f"spectral/sigma1/{n}": torch.linalg.matrix_norm(params[n].detach().float().reshape(
        params[n].shape[0], -1), ord=2).item() for n in names}


def probe(model: nn.Module, workload, batch, names: list[str] | None = None) -> dict[str, float]:
    """All diagnostics on one fixed batch, in eval mode and without gradients (no RNG is consumed)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = {}

            def fwd():
                outs["o"] = workload.forward(model, batch, frozenset({"attn_probs"}))

            logit = max_logit(model, fwd)
            res = {**attention_maps(outs["o"].attn_probs or []), **qk_spectrum(model)}
            if logit is not None:
                res["attn/max_logit"] = logit
            if names:
                res.update(weight_sigmas(model, names))
            return res
    finally:
        model.train(was_training)
