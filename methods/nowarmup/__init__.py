"""AdamW^2 (paper `nowarmup`, arXiv 2505.21910): the spectral-cap optimizer and attention diagnostics."""

from methods.nowarmup import method  # noqa: F401  (registers `adamw2` and `attn_probe`)
