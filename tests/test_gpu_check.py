"""The GPU check (scripts/speed/gpu_check.sh) on this GPU-less machine: the script parses, every Python command it
would run on the GPU accepts its flags, its helpers work on tiny inputs, the real (non-dry) run stops at once
without CUDA, and the short GPU grid's profile stops before training with the no-GPU line. The full dry run
(1-2.5 min on 2 cores) is a slow test."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from claimbench.config import load_config
from claimbench.testing import REPO
from claimbench.train import prepare
from scripts.speed import bench_flerm, gpu_deps, speed, synth_data

SCRIPT = REPO / "scripts" / "speed" / "gpu_check.sh"
NO_GPU = pytest.mark.skipif(os.environ.get("CUDA_VISIBLE_DEVICES", "") != "" or Path("/dev/nvidia0").exists(),
                            reason="checks the behaviour on a machine without a GPU")


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PY": sys.executable,
            "PYTHONPATH": str(REPO)}


def _printed(tmp_path: Path, *args: str) -> dict[str, list[str]]:
    r = subprocess.run(["bash", SCRIPT, "--print", *args, str(tmp_path / "out")], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    cmds = {}
    for line in r.stdout.splitlines():
        name, _, cmd = line.partition(": ")
        if name in {"install", "grid"}:  # bash -c with a function body ($'...' quoting): kept as text
            cmds[name] = [cmd]
        elif name in {"env", "data", "speed", "methods", "flerm"}:
            cmds[name] = shlex.split(cmd)
    return cmds


@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_wheels.sh"])
def test_scripts_parse(script):
    r = subprocess.run(["bash", "-n", REPO / "scripts" / "speed" / script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("dry", [False, True])
def test_python_entry_points_accept_the_flags(tmp_path, dry):
    """--print lists each stage's command; the speed suite, FLeRM bench, data and env commands parse."""
    cmds = _printed(tmp_path, *(["--dry-run"] if dry else []))
    assert set(cmds) == {"env", "install", "data", "speed", "grid", "methods", "flerm"}, cmds
    assert "--resources gpu=1" in cmds["grid"][0]
    assert ('GRID_HOOKS=([0]="--no-hooks")' in cmds["grid"][0]) is dry  # the onstart GPU check is skipped only dry
    for name in ("speed", "methods", "flerm"):
        argv = cmds[name][cmds[name].index("scripts/speed/speed.py") + 1:]
        a = speed.build_parser().parse_args(argv)
        assert a.device == ("cpu" if dry else "cuda") and a.compile is (not dry)
    a = speed.build_parser().parse_args(cmds["speed"][cmds["speed"].index("scripts/speed/speed.py") + 1:])
    if not dry:  # GPT-2 124M's shape at nanoGPT's micro-batch, bf16, on the 50,304-token set
        assert a.dtype == "bfloat16" and "gpt:gpu:12" in a.cases and a.gpt_data.endswith("gpt-50304")
    m = speed.build_parser().parse_args(cmds["methods"][cmds["methods"].index("scripts/speed/speed.py") + 1:])
    assert m.methods == ["lrm", "adamw2", "jreg"] and m.methods_size == ("micro" if dry else "gpu")
    synth = cmds["data"][cmds["data"].index("scripts/speed/synth_data.py") + 1:]
    assert synth[synth.index("--vocab") + 1] == ("512" if dry else "50304")
    assert synth_data.build_parser().parse_args(synth).gpt.name.startswith("gpt-")
    assert ("--require-cuda" in cmds["env"]) is (not dry)
    flerm = speed.build_parser().parse_args(cmds["flerm"][cmds["flerm"].index("scripts/speed/speed.py") + 1:])
    bench_flerm.build_parser().parse_args(["--size", flerm.flerm_size, "--data-dir", "x", "--set", "train.device=cpu"])


def test_bad_arguments_are_one_line(tmp_path):
    for args, msg in ((["--bogus"], "unknown option '--bogus'"), (["--stages", "env,nope"], "unknown stage 'nope'"),
                      (["a", "b"], "one output directory")):
        r = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=_env(), timeout=30,
                           cwd=tmp_path)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_select_cases():
    suite = speed.cases(False, "cuda", None)
    data = {w: f"/d/{w}" for w in speed.DATA}
    got = speed.select_cases(suite, ["gpt:gpu:12", "vit:gpu"], 50, 2, data)
    assert [(c.workload, c.size, c.steps, c.repeats, c.data) for c in got] == [
        ("gpt", "gpu", 50, 2, "/d/gpt"), ("vit", "gpu", 50, 2, "/d/vit")]
    assert got[0].sets == ("train.batch_size=12",) and got[1].sets == ()
    assert [c.label for c in speed.select_cases(suite, None, None, None, data)] == [c.label for c in suite]
    assert dict(s.split("=") for s in suite[1].sets)["train.batch_size"] == str(speed.GPU_MICRO_BATCH)
    with pytest.raises(Exception, match="workload:size"):
        speed.select_cases(suite, ["gpt"], None, None, data)


def test_synthetic_data_loads(tmp_path):
    """The random sets are in the prepared formats: the GPT-2 124M config builds on a 50,304-token set."""
    assert synth_data.main(["--gpt", str(tmp_path / "gpt"), "--tokens", "5000", "--images", str(tmp_path / "img"),
                            "--n", "100", "--classes", "100"]) == 0
    cfg = load_config(REPO / "benchmarks/configs/gpt.yaml",
                      ["size=gpu", f"data.dir={tmp_path / 'gpt'}", "eval.batches=1"])
    wl = prepare(cfg, tmp_path / "run").workload
    assert wl.model_config().vocab_size == 50304 and wl.opts.block_size == 1024
    with torch.device("meta"):
        n = sum(p.numel() for p in wl.build_model().parameters())
    assert 123e6 < n < 126e6, n  # GPT-2 small: 124M with the tied 50,304-token embedding
    vit_cfg = load_config(REPO / "benchmarks/configs/vit.yaml",
                          ["size=micro", f"data.dir={tmp_path / 'img'}", "eval.batches=1"])
    vit = prepare(vit_cfg, tmp_path / "run2").workload
    x, y = vit.train_batch(0, 0, 4)
    assert x.shape[0] == 4 and int(y.max()) < 100


def test_dependency_closure_leaves_torch_out():
    found = gpu_deps.closure(["snakemake==9.27.1", "timm==1.0.31"], {"numpy"})
    assert "snakemake" in found and "timm" in found and "pyyaml" in found
    assert not {"torch", "torchvision", "numpy"} & set(found) and not any(n.startswith("nvidia-") for n in found)


@NO_GPU
def test_real_run_without_cuda_stops_at_once(tmp_path):
    r = subprocess.run(["bash", SCRIPT, "--stages", "env,speed", str(tmp_path / "out")], capture_output=True,
                       text=True, env=_env(), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "torch sees no CUDA device" in r.stdout + r.stderr
    assert json.loads((tmp_path / "out" / "env.json").read_text())["torch"]["cuda_available"] is False
    assert not (tmp_path / "out" / "speed.json").exists()


@NO_GPU
def test_gpu_check_grid_without_a_gpu_stops_before_training(tmp_path):
    """config/gpu-check.yaml's grid with `--resources gpu=1` here: the onstart check's one line, no train.log."""
    synth_data.write_tokens(tmp_path / "gpt", 50304, 5000)
    cfg = yaml.safe_load((REPO / "config" / "gpu-check.yaml").read_text())
    cfg["runs_dir"], cfg["results_dir"] = str(tmp_path / "runs"), str(tmp_path / "results")
    cfg["data"] = {"synthetic50k": {"dir": str(tmp_path / "gpt")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = _env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    r = subprocess.run([sys.executable, "-m", "snakemake", str(tmp_path / "results" / "runs.csv"), "--snakefile",
                        REPO / "Snakefile", "--directory", tmp_path, "--configfile", tmp_path / "c.yaml",
                        "--cores", "1", "--resources", "gpu=1"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode != 0
    line = ("gpus_per_run: 1 but this machine has no CUDA device (torch.cuda.device_count() is 0): set "
            "gpus_per_run: 0 (and train.device: cpu) or run on a GPU machine")
    assert line in r.stderr.splitlines(), r.stderr[-3000:]  # the whole message on one line of its own
    assert not list(tmp_path.glob("runs/*/train.log")), "training started before the check"


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    """The whole script on this CPU (~2.5 min): every stage passes and writes its files."""
    out = tmp_path / "out"
    r = subprocess.run(["bash", SCRIPT, "--dry-run", "--pack", str(tmp_path / "pack"), str(out)],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["ok"] and s["dry_run"] and {t["workload"] for t in s["throughput"]} == {"gpt", "vit"}
    assert [m["method"] for m in s["methods"]] == ["lrm", "adamw2", "jreg"] and s["flerm"]
    assert s["grid"]["ok"] and all(r["pinning"] for r in s["grid"]["runs"])
    packed = {p.name for p in (tmp_path / "pack").iterdir()}
    assert {"summary.json", "gpu_check.log", "gpu-check.tgz", "speed.md"} <= packed and len(packed) <= 8
