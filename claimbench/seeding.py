"""Seeds for data order: a batch is a pure function of (seed, step), so resume is exact."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_key(*parts: int) -> int:
    """Mix integers into one 63-bit seed (not Python's hash(), which is salted per process)."""
    h = hashlib.blake2b(b"".join(int(p).to_bytes(8, "little", signed=True) for p in parts), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


def batch_indices(seed: int, step: int, global_batch: int, n_items: int, micro: int, micro_batch: int) -> np.ndarray:
    """The micro-batch's share of the step's global batch of item indices.

    The global batch is drawn once from (seed, step) and sliced, so gradient accumulation (and
    data-parallel ranks) change how a batch is computed, never which examples it holds.
    """
    ix = np.random.default_rng(stable_key(seed, step)).integers(0, n_items, size=global_batch)
    return ix[micro * micro_batch:(micro + 1) * micro_batch]
