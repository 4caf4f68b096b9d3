"""The environment a GPU check ran in, as JSON: GPU (nvidia-smi and torch), driver, torch / CUDA / cuDNN versions,
Python, the project's dependencies' versions (and where each was imported from), CPU and load.

    python scripts/speed/gpu_env.py --out env.json [--require-cuda]

`--require-cuda` exits 2 with one line when torch sees no CUDA device (gpu_check.sh stops there on a real run).
Works without a GPU and without nvidia-smi (those fields are then null / the error).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMI_FIELDS = ("name", "driver_version", "memory.total", "memory.used", "pci.bus_id", "compute_cap", "clocks.max.sm",
              "power.limit", "temperature.gpu", "utilization.gpu")


def nvidia_smi() -> dict:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"error": "nvidia-smi not found"}
    out: dict = {"path": exe}
    try:
        q = subprocess.run([exe, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=30)
        out["gpus"] = [dict(zip(SMI_FIELDS, (v.strip() for v in line.split(",")), strict=False))
                       for line in q.stdout.strip().splitlines() if line.strip()]
        if q.returncode:
            out["error"] = q.stderr.strip()[-500:]
        head = subprocess.run([exe], capture_output=True, text=True, timeout=30).stdout
        out["cuda_version_driver"] = next((p.split(":")[1].strip().split()[0] for p in head.split("|")
                                           if "CUDA Version" in p), None)
    except (OSError, subprocess.TimeoutExpired) as e:
        out["error"] = str(e)
    return out


def torch_info() -> dict:
    try:
        import torch
    except Exception as e:  # report, never fail: the report is what tells why the rest failed
        return {"error": f"{type(e).__name__}: {e}"}
    info: dict = {"version": torch.__version__, "file": torch.__file__, "cuda_build": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                  "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count(),
                  "num_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["devices"] = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["devices"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                    "memory_gib": round(p.total_memory / 2**30, 1),
                                    "multiprocessors": p.multi_processor_count})
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        try:
            from claimbench.flops import peak_flops

            info["peak_bf16"] = dict(zip(("flops", "source"), peak_flops(torch.device("cuda"), "bfloat16"),
                                         strict=True))
        except Exception as e:
            info["peak_bf16"] = {"error": f"{type(e).__name__}: {e}"}
    return info


def packages() -> dict:
    """Every dependency pyproject.toml names (plus pip/setuptools/triton), version and where it lives."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [d.split("==")[0].split(">")[0].split("<")[0].strip() for d in deps]
    pins = {d.split("==")[0].strip(): d.split("==")[1].strip() for d in deps if "==" in d}
    out = {}
    for name in [*names, "claimbench", "triton", "pip", "setuptools", "packaging"]:
        try:
            dist = metadata.distribution(name)
            out[name] = {"version": dist.version, "pinned": pins.get(name),
                         "location": str(dist.locate_file(""))}
        except metadata.PackageNotFoundError:
            out[name] = {"version": None, "pinned": pins.get(name)}
    return out


def cpu() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"model": model, "logical_cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def report() -> dict:
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "host": platform.node(),
            "platform": platform.platform(), "python": sys.version.split()[0], "executable": sys.executable,
            "cpu": cpu(), "nvidia_smi": nvidia_smi(), "torch": torch_info(), "packages": packages(),
            "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "PYTHONPATH", "VIRTUAL_ENV")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the JSON here (always printed too)")
    p.add_argument("--require-cuda", action="store_true", help="exit 2 when torch sees no CUDA device")
    a = p.parse_args(argv)
    rep = report()
    text = json.dumps(rep, indent=2)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    t = rep["torch"]
    gpus = [d["name"] for d in t.get("devices", [])]
    driver = next((g.get("driver_version") for g in rep["nvidia_smi"].get("gpus", [])), None)
    print(f"gpu_env: python {rep['python']}, torch {t.get('version')} (CUDA build {t.get('cuda_build')}), "
          f"GPUs {gpus or 'none'}, driver {driver}")
    if a.require_cuda and not t.get("cuda_available"):
        print("gpu_env: error: torch sees no CUDA device (torch.cuda.is_available() is False); "
              "run on the GPU machine or pass --dry-run", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
