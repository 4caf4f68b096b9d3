"""Where learnable multipliers go: a placement maps (role, structural slot) to a multiplier kind.

Kinds: "both" (row r and column c, W = r_i * What_ij * c_j), "row", "col", "scalar" (W = s * What), None.
Placements are read from the role side table; the only structure looked at beyond roles is which
matrix of an MLP is the gate / up / down projection (the symmetry-free placement needs it), from the
workload's `mlp_slots` capability.
"""

from __future__ import annotations

from collections.abc import Callable

Kind = str | None

# slots of a hidden matrix inside a known MLP; None where the structure is unknown (vision, ResMLP)
MLP_SLOTS = ("mlp_up", "mlp_gate", "mlp_down", "mlp_in")


def _both(role: str, slot: str | None) -> Kind:
    """The paper's placement for all its experiments (App. C): row and column on every matrix, embedding
    included; the LM head is left alone (its column multiplier is the final norm weight, §4.4)."""
    return None if role == "readout" else "both"


def _symmetry_free(role: str, slot: str | None) -> Kind:
    """App. C's symmetry-free placement (RMSNorm weights act as the columns of the first matrices):
    W_out row+col, W_Q row, W_K/W_V none; gated MLP: W_down row+col, W_gate row, W_up none.
    Reconstructed where the paper is silent: a non-gated MLP's input matrix gets a row (like W_gate), a hidden
    matrix of unknown structure (fused qkv, ResMLP) gets a row, the embedding keeps row+col (the paper
    recommends both on the embedding)."""
    if role == "readout":
        return None
    if role in ("embedding", "attn_out"):
        return "both"
    if role == "attn_q":
        return "row"
    if role in ("attn_k", "attn_v"):
        return None
    return {"mlp_down": "both", "mlp_gate": "row", "mlp_up": None, "mlp_in": "row"}.get(slot or "", "row")


def _scalar(role: str, slot: str | None) -> Kind:
    """Scalar LRM (Eq. 2) on every matrix but the head (the §4.2 width experiment / Fig. 2 use scalars)."""
    return None if role == "readout" else "scalar"


def _mlp_scalar(role: str, slot: str | None) -> Kind:
    """Three scalar multipliers on the MLP matrices only (the §3 MLP experiment, claim C3)."""
    return "scalar" if slot in MLP_SLOTS else None


def _none(role: str, slot: str | None) -> Kind:
    """No multipliers: the diagnostics alone, so a baseline arm logs the same lrm/ metrics."""
    return None


PLACEMENTS: dict[str, Callable[[str, str | None], Kind]] = {
    "both": _both, "symmetry_free": _symmetry_free, "scalar": _scalar, "mlp_scalar": _mlp_scalar, "none": _none,
}
