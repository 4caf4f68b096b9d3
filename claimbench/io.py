"""Atomic file writes and provenance: nothing is ever left half-written."""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import tempfile
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
_NOT_CODE = (":(exclude)results", ":(exclude)runs", ":(exclude)data")
_VERSIONED = ("claimbench", "torch", "numpy", "timm", "torchvision", "tokenizers", "lm_eval", "snakemake")


def atomic_save_png(fig, path: str | Path, dpi: int = 100) -> Path:
    """A matplotlib figure to PNG through atomic_write_bytes: a killed job leaves no half-written figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: str | Path) -> list[dict]:
    """Complete JSON lines only: a line cut by a kill is dropped, not an error."""
    rows = []
    p = Path(path)
    if not p.is_file():
        return rows
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The commit of the claimbench checkout, with '-dirty' if its code or configs have uncommitted changes
    (results, runs and data do not count: regenerating a table must not make the next run 'dirty')."""
    return checkout_sha(Path(__file__).resolve().parents[1])


def checkout_sha(root: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *_NOT_CODE],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if sha and dirty else "")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def hardware() -> dict:
    """What the numbers were computed on. Bit-identity holds only within one hardware class (CPU model, the SIMD
    level torch dispatches to and the reduced-precision matmul units, or GPU name): the same seed on another CPU
    gives slightly other losses."""
    import torch

    info = _cpuinfo()
    cpu = info.get("model name") or platform.processor() or platform.machine()
    out = {"cpu": cpu, "isa": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine(),
           "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
           "blas": _blas(torch), "bf16_units": _bf16_units(info)}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
    return out


CLASS_KEYS = ("gpu", "cpu", "isa", "bf16_units")  # the part of `hardware()` that decides bit-identity


def hardware_class(hw: dict) -> str:
    """The record's hardware class as text ("?" for a field a record predates)."""
    return " | ".join(str(hw.get(k, "?")) for k in CLASS_KEYS if k != "gpu" or hw.get("gpu"))


def same_hardware(a: dict, b: dict) -> bool:
    """Whether two records' hardware is of one class. The bfloat16 units count only where both records have
    them: a run stored before they were recorded is still held to bit-identity by its CPU name and SIMD level
    (right for float32 runs; a bfloat16 run from such a record may differ, and `verify` says so)."""
    return all(a.get(k) == b.get(k) for k in CLASS_KEYS if k != "bf16_units" or (k in a and k in b))


# CPU features that select other bfloat16/float16 matmul kernels under the same model name and SIMD level (a
# virtual machine's "Intel(R) Xeon(R) Processor" can be either): a run that computes in bfloat16, as torch's
# Muon does when it orthogonalises, gives other bits with them than without; float32 runs do not change.
BF16_UNITS = ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")


def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def _bf16_units(info: dict[str, str]) -> str:
    if not info:
        return "unknown"
    flags = set(info.get("flags", "").split())
    return ",".join(f for f in BF16_UNITS if f in flags) or "none"


def _blas(torch) -> str:
    cfg = torch.__config__.show()
    for key in ("BLAS_INFO=", "LAPACK_INFO="):
        if key in cfg:
            return cfg.split(key, 1)[1].split(",", 1)[0].strip()
    return "unknown"
