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


def qk_layers(workload, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """(W_q, W_k, n_head) per attention layer, from the workload's attention views (a fused qkv's row
    segments included); [] for a workload without attention layers."""
    if "attention" not in workload.capabilities():
        return []
    return [(v.W_q, v.W_k, v.n_head) for v in workload.attention_layers(model)]


@torch.no_grad()
def qk_spectrum(layers: list[tuple[torch.Tensor, torch.Tensor, int]]) -> dict[str, float]:
    """sigma1 and SEC_s of W_q,h^T W_k,h for each head (d x d, rank <= head_dim), max over heads per layer;
    `layers`: (W_q, W_k, n_head) per attention layer (qk_layers)."""
    out: dict[str, float] = {}
    for i, (wq, wk, h) in enumerate(layers):
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
        out["attn/qk_sigma1_max"] = max(out[f"attn/qk_sigma1/L{i}"] for i in range(len(layers)))
        out["attn/sec_s10_max"] = max(out[f"attn/sec_s10/L{i}"] for i in range(len(layers)))
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
def max_logit(workload, model: nn.Module, run_forward) -> float | None:
    """Largest pre-softmax attention logit over all layers, heads and allowed pairs of one forward, as the
    model computes it (the workload's `attn_logits`: masks and Swin's relative-position bias included); None
    for a workload that does not serve attention logits."""
    if "attn_logits" not in workload.capabilities():
        run_forward()
        return None
    best = [-math.inf]

    def take(logits: torch.Tensor) -> None:
        best[0] = max(best[0], logits.max().item())

    with workload.attn_logits(model, take):
        run_forward()
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

            logit = max_logit(workload, model, fwd)
            res = {**attention_maps(outs["o"].attn_probs or []), **qk_spectrum(qk_layers(workload, model))}
            if logit is not None:
                res["attn/max_logit"] = logit
            if names:
                res.update(weight_sigmas(model, names))
            return res
    finally:
        model.train(was_training)
