"""The jump metric: per-layer angular distance between a block's input and output hidden states.

d_l = arccos(cos(h_{l-1}, h_l)) / pi per token, averaged over every token (Gromov et al. 2024 use the
last token only; the JREG paper's token aggregation is not public, so all tokens it is). Layers are
numbered 1..L: d_1 compares the embeddings with block 1's output.

The jump strength has no public formula (docs/papers/jreg.md). Its form lives in ONE place, `JUMP_FORMS` with
`DEFAULT_JUMP_FORM`, so the paper's form can replace the reconstruction without touching callers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

# The paper's jump-strength formula is not public: "ratio" is OUR RECONSTRUCTION (J_ratio, k=1),
# chosen because it reproduces the pilot's numbers (J_ratio 1.10 baseline, 0.34 final-only JREG).
DEFAULT_JUMP_FORM = "ratio"
DEFAULT_JUMP_K = 1
JUMP_FORM_STATUS = "reconstructed"  # becomes "paper" once the PDF's formula replaces DEFAULT_JUMP_FORM
# A jump is "disproportionately large" (abstract) when J_ratio >= 1.5: the final step at least half again the
# mean middle step. A fixed reading of the words, shared with the bands of benchmarks/claims/jreg.yaml.
JUMP_CLEAR = 1.5


def _split(d: Sequence[float], k: int) -> tuple[list[float], list[float]]:
    """(last k layers, middle layers 2..L-k). Layer 1 is never 'middle': d_1 is the largest in every
    pilot model, so any normalisation that includes it measures the embedding step, not the jump."""
    return list(d[len(d) - k:]), list(d[1:len(d) - k])


def _ratio(d: Sequence[float], k: int) -> float:
    last, mid = _split(d, k)
    return max(last) / (sum(mid) / len(mid)) if mid and sum(mid) > 0 else math.nan


def _diff(d: Sequence[float], k: int) -> float:
    last, mid = _split(d, k)
    return max(last) - max(mid) if mid else math.nan


def _share(d: Sequence[float], k: int) -> float:
    last, mid = _split(d, k)
    total = sum(last) + sum(mid)
    return sum(last) / total if mid and total > 0 else math.nan


# name -> (function of (distances, k), one-line definition). Every form is NaN when there is no middle
# layer (L < k + 2): a 2-layer model has no "middle" to compare the jump with.
JUMP_FORMS: dict[str, tuple[Callable[[Sequence[float], int], float], str]] = {
    "ratio": (_ratio, "max_{last k} d_l / mean_{l=2..L-k} d_l"),
    "diff": (_diff, "max_{last k} d_l - max_{l=2..L-k} d_l"),
    "share": (_share, "sum_{last k} d_l / sum_{l=2..L} d_l"),
}


def jump_strength(distances: Sequence[float], form: str = DEFAULT_JUMP_FORM, k: int = DEFAULT_JUMP_K) -> float:
    """Jump strength around the final layer from per-layer distances d_1..d_L (see JUMP_FORMS)."""
    if form not in JUMP_FORMS:
        raise ValueError(f"unknown jump form {form!r}; forms: {', '.join(JUMP_FORMS)}")
    if not 1 <= k <= len(distances):
        raise ValueError(f"jump k={k} out of range 1..{len(distances)} (number of layers)")
    return float(JUMP_FORMS[form][0](distances, k))


def token_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_t, b_t) per token in float32 (bf16 hidden states would make arccos near 1 meaningless)."""
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-8)


@torch.no_grad()
def angular_distances(hidden_states: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> list[float]:
    """d_l for l = 1..L from L+1 tensors (batch, tokens, dim); `mask` (batch, tokens) keeps real tokens."""
    if len(hidden_states) < 2:
        raise ValueError(f"need the embeddings and at least one layer's output, got {len(hidden_states)} tensors")
    out = []
    for a, b in zip(hidden_states[:-1], hidden_states[1:], strict=True):
        d = torch.arccos(token_cosines(a, b).clamp(-1.0, 1.0)) / math.pi
        out.append((d[mask].mean() if mask is not None else d.mean()).item())
    return out


def jump_profile(hidden_states: Sequence[torch.Tensor], form: str = DEFAULT_JUMP_FORM, k: int = DEFAULT_JUMP_K,
                 mask: torch.Tensor | None = None) -> dict:
    """{"distances": [d_1..d_L], "jump": J} for any model's per-layer hidden states (pre final norm)."""
    distances = angular_distances(hidden_states, mask)
    return {"distances": distances, "jump": jump_strength(distances, form, k)}


def all_forms(distances: Sequence[float], k: int = DEFAULT_JUMP_K) -> dict[str, float]:
    """Every candidate form, for reports that must show all of them (all candidate forms are reported)."""
    return {name: jump_strength(distances, name, k) for name in JUMP_FORMS}
