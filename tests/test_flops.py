"""FLOPs counting, the peak table and the measured CPU peak (claimbench/flops.py)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.data.images import micro_image_dir
from benchmarks.models.gpt import flops_per_token
from claimbench.config import ConfigError, load_config
from claimbench.flops import forward_flops, measured_peak, mfu, peak_flops, table_peak, train_flops_per_unit
from claimbench.testing import REPO, micro_data_dir
from claimbench.train import prepare


def workload(name: str, tmp_path, *sets: str):
    data = micro_data_dir() if name == "gpt" else micro_image_dir()
    cfg = load_config(REPO / f"benchmarks/configs/{name}.yaml", [f"data.dir={data}", *sets])
    return prepare(cfg, tmp_path / "run").workload


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_gpt_count_matches_palm_estimate(arch, tmp_path):
    """Counted 3 x forward vs 6N + 12*L*H*Q*T per token (PaLM app. B; nanoGPT's estimate_mfu), N = non-embedding
    parameters. The one systematic difference is the LM head: with gpt2's tied head its matrix is the token
    embedding, so N leaves it out while its matmul (6*V*d per token) is real and counted; llama's untied head is in
    N. Norm gains are in N but are not matmuls (a 0.1% gap here)."""
    torch.manual_seed(0)
    wl = workload("gpt", tmp_path, "size=smoke", f"model.arch={arch}")
    model = wl.build_model()
    batch = wl.train_batch(0, 0, 2)
    counted = train_flops_per_unit(wl, model, batch)
    c = model.cfg
    embeddings = {id(model.wte.weight)} | ({id(model.wpe.weight)} if model.wpe is not None else set())
    n_nonembed = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    palm = flops_per_token(c, n_nonembed)  # 6N + 12 * n_layer * n_embd * block_size (n_embd = H * Q)
    head = 6 * c.vocab_size * c.n_embd
    if c.tie_weights:
        assert counted == pytest.approx(palm + head, rel=0.01)
        assert counted / palm - 1 == pytest.approx(head / palm, rel=0.05)  # the whole gap is the head
    else:
        assert counted == pytest.approx(palm, rel=0.01)


def test_cpu_attention_is_counted():
    """F.scaled_dot_product_attention on CPU runs a kernel PyTorch's registry misses; ours adds it."""
    q = torch.randn(2, 4, 64, 16)
    n = forward_flops(torch.nn.functional.scaled_dot_product_attention, q, q, q, is_causal=True)
    assert n == 4 * 2 * 4 * 64 * 64 * 16


@pytest.mark.parametrize("name,width_key,sizes", [("vit", "model.embed_dim", (32, 64)),
                                                  ("mlp", "model.width", (64, 128))])
def test_vision_counts_scale(name, width_key, sizes, tmp_path):
    """Per-image FLOPs are positive, do not depend on the batch, and grow ~quadratically with the width."""
    per_unit = {}
    for w in sizes:
        torch.manual_seed(0)
        wl = workload(name, tmp_path, "size=micro", f"{width_key}={w}")
        model = wl.build_model()
        for bs in (2, 4):
            per_unit[w, bs] = train_flops_per_unit(wl, model, wl.train_batch(0, 0, bs))
    small, big = sizes
    assert per_unit[small, 2] > 0
    assert per_unit[small, 2] == pytest.approx(per_unit[small, 4], rel=1e-9)
    assert per_unit[big, 2] == pytest.approx(per_unit[big, 4], rel=1e-9)
    ratio = per_unit[big, 2] / per_unit[small, 2]
    assert 2.0 < ratio <= 4.0  # width x2: hidden matmuls x4, the input/output layers and attention x2


def test_peak_table_by_device_name():
    assert table_peak("NVIDIA H100 80GB HBM3", "bfloat16") == (989.4e12, "table:H100-SXM")
    assert table_peak("NVIDIA H100 PCIe", "bfloat16") == (756e12, "table:H100-PCIe")
    assert table_peak("NVIDIA H100 NVL", "tf32")[1] == "table:H100-NVL"
    assert table_peak("NVIDIA H200", "tf32") == (494.5e12, "table:H200")
    assert table_peak("NVIDIA A100-SXM4-80GB", "float32") == (19.5e12, "table:A100")
    assert table_peak("NVIDIA A100 80GB PCIe", "bfloat16") == (312e12, "table:A100")
    assert table_peak("NVIDIA GeForce RTX 4090", "bfloat16") is None
    with pytest.raises(ConfigError, match="dtype: 'fp8'"):
        table_peak("NVIDIA H100 PCIe", "fp8")


def test_cpu_peak_measured_and_cached():
    measured_peak.cache_clear()
    peak, source = peak_flops(torch.device("cpu"), "float32")
    assert source == "measured:cpu"
    assert peak > 1e8  # any CPU of this century does > 0.1 GFLOP/s on a 1024^2 matmul
    assert peak_flops(torch.device("cpu"), "float32") == (peak, source)
    assert measured_peak.cache_info().hits == 1 and measured_peak.cache_info().misses == 1
    assert mfu(1e6, 100.0, peak) == pytest.approx(1e8 / peak)
    with pytest.raises(ValueError):
        mfu(1e6, 100.0, 0.0)
