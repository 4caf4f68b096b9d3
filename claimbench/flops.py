"""Training FLOPs per unit, accelerator peak FLOPs and model FLOPs utilisation (MFU).

FLOPs are counted from the model itself with PyTorch's `FlopCounterMode` (no per-architecture formula to keep in
sync with the code): one forward, times 3 for forward + backward, the convention of the PaLM paper's MFU (appendix B)
and nanoGPT's `estimate_mfu`, so MFU numbers are comparable with theirs. Only matmuls, convolutions and attention
are counted (norms, activations and the optimizer are left out, as in those papers). The peak is the vendor's
dense number for known GPUs and a measured matmul rate elsewhere (CPUs have no comparable public table).
"""

from __future__ import annotations

import math
import time
from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from claimbench.config import ConfigError

DTYPES = ("float32", "tf32", "bfloat16", "float16")


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # PyTorch's flop registry covers the CUDA attention kernels but not the CPU flash kernel that
    # F.scaled_dot_product_attention dispatches to here; count it with PyTorch's own SDPA formula
    # (4*b*h*s_q*s_k*d: QK^T and PV, causal masking not discounted, as in PaLM's 12*L*H*Q*T).
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def forward_flops(fn, *args, **kwargs) -> int:
    """FLOPs of `fn(*args, **kwargs)` as counted by FlopCounterMode (plus the CPU attention kernel)."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def train_flops_per_unit(workload, model: torch.nn.Module, batch) -> float:
    """FLOPs of one training step per unit (token for GPT, image for vision/MLP): 3 x the counted forward.

    The factor 3 (backward = 2 x forward: one matmul for the input gradient, one for the weight gradient) is the
    PaLM/nanoGPT convention; it ignores activation recomputation and the attention backward's extra matmul, so
    MFU stays comparable with published numbers rather than with hardware FLOPs utilisation.
    """
    units = workload.batch_units(batch)
    if units <= 0:
        raise ValueError(f"batch has {units} units; cannot count FLOPs per unit")
    return 3.0 * forward_flops(workload.forward, model, batch, frozenset()) / units


# Dense (no 2:4 sparsity) tensor-core peaks in FLOP/s. tf32 = fp32 matmuls on tensor cores (torch's
# float32_matmul_precision "high"/"medium"); float32 = the CUDA-core fp32 rate (precision "highest").
# (match in torch.cuda.get_device_name, checked in order) -> (label, {dtype: FLOP/s})
GPU_PEAKS: list[tuple[tuple[str, ...], str, dict[str, float]]] = [
    # NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200): H200 NVL 835.5 TF bf16/fp16, 417.5 TF tf32, 60 TF
    # fp32 (the sheet's 1,671 / 835 are with sparsity)
    (("H200", "NVL"), "H200-NVL", {"bfloat16": 835.5e12, "float16": 835.5e12, "tf32": 417.5e12, "float32": 60e12}),
    # same datasheet, H200 SXM: 989.5 TF bf16/fp16, 494.5 TF tf32, 67 TF fp32 (same GH100 compute as H100 SXM)
    (("H200",), "H200", {"bfloat16": 989.5e12, "float16": 989.5e12, "tf32": 494.5e12, "float32": 67e12}),
    # NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100): H100 NVL 835 TF bf16/fp16, 417.5 TF tf32, 60 TF fp32
    (("H100", "NVL"), "H100-NVL", {"bfloat16": 835e12, "float16": 835e12, "tf32": 417.5e12, "float32": 60e12}),
    # same datasheet, H100 PCIe: 756 TF bf16/fp16, 378 TF tf32, 51 TF fp32 (sheet: 1,513 / 756 with sparsity)
    (("H100", "PCIE"), "H100-PCIe", {"bfloat16": 756e12, "float16": 756e12, "tf32": 378e12, "float32": 51e12}),
    # same datasheet, H100 SXM5 ("NVIDIA H100 80GB HBM3"): 989.4 TF bf16/fp16, 494.7 TF tf32, 67 TF fp32
    (("H100",), "H100-SXM", {"bfloat16": 989.4e12, "float16": 989.4e12, "tf32": 494.7e12, "float32": 67e12}),
    # NVIDIA A100 datasheet (nvidia.com/en-us/data-center/a100), SXM4 and PCIe alike: 312 TF bf16/fp16,
    # 156 TF tf32, 19.5 TF fp32
    (("A100",), "A100", {"bfloat16": 312e12, "float16": 312e12, "tf32": 156e12, "float32": 19.5e12}),
]


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: '{dtype}' is not one of {', '.join(DTYPES)}")


def table_peak(device_name: str, dtype: str) -> tuple[float, str] | None:
    """(FLOP/s, 'table:<GPU>') for a known GPU name, else None."""
    _check_dtype(dtype)
    name = device_name.upper()
    for keys, label, peaks in GPU_PEAKS:
        if all(k in name for k in keys):
            return peaks[dtype], f"table:{label}"
    return None


def _cuda_dtype(dtype: str) -> str:
    """float32 matmuls run on tensor cores (tf32) unless torch's fp32 matmul precision is 'highest'."""
    if dtype == "float32" and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return dtype


def peak_flops(device: torch.device, dtype: str, seconds: float = 0.3) -> tuple[float, str]:
    """Peak FLOP/s of `device` for matmuls in `dtype`, and where it comes from ('table:H100-SXM', 'measured:cpu');
    `seconds` is the matmul timing's length where there is no table entry."""
    _check_dtype(dtype)
    device = torch.device(device)
    if device.type == "cuda":
        dtype = _cuda_dtype(dtype)
        found = table_peak(torch.cuda.get_device_name(device), dtype)
        if found is not None:
            return found
    return measured_peak(str(device), dtype, torch.get_num_threads(), seconds), f"measured:{device.type}"


@cache
def measured_peak(device: str, dtype: str, threads: int, seconds: float = 0.3) -> float:
    """FLOP/s of a large square matmul timed for ~`seconds` (best of its repeats), cached per process and thread
    count. An achieved rate, so MFU against it reads 'share of what this machine's BLAS does on one big matmul'.
    On a CPU each repeat is also timed on the process CPU clock (divided by the threads) and the shorter time
    kept: other users' load on a shared CPU stretches the wall time but not the CPU time the matmul needs."""
    dev = torch.device(device)
    torch_dtype = torch.float32 if dtype == "tf32" else getattr(torch, dtype)
    n = 1024 if dev.type == "cpu" else 8192
    a = torch.randn(n, n, device=dev, dtype=torch_dtype)
    b = torch.randn(n, n, device=dev, dtype=torch_dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    torch.matmul(a, b)  # warm-up: BLAS thread pool, kernel selection
    sync()
    best, start = math.inf, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        torch.matmul(a, b)
        sync()
        wall = time.perf_counter() - t0
        cpu = (time.process_time() - c0) / threads if dev.type == "cpu" else math.inf
        best = min(best, wall, cpu if cpu > 0 else math.inf)
    return 2 * n**3 / best


def mfu(flops_per_unit: float, units_per_s: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak."""
    if peak <= 0:
        raise ValueError(f"peak FLOP/s must be positive, got {peak}")
    return flops_per_unit * units_per_s / peak
