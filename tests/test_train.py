"""The harness: run files, falling loss, determinism, kill-and-resume, divergence, failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from claimbench.config import load_config
from claimbench.plugin import Method
from claimbench.registry import register_method
from claimbench.testing import REPO, micro_overrides, run_micro
from claimbench.train import EXIT_FAILED, execute, prepare

NUMBERS = ("status", "steps", "final_train_loss", "final_val_loss", "config_hash")


def test_micro_run_writes_files_and_learns(tmp_path, data_dir):
    result, rows = run_micro(tmp_path / "run", steps=50, **{"log.every": 10, "train.lr": 3e-3})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["ckpt.pt", "config.yaml", "metrics.jsonl",
                                                                     "result.json"]
    assert result["status"] == "ok" and result["steps"] == 50
    assert {"final_train_loss", "final_val_loss", "wall_s", "config_hash", "git_sha", "versions"} <= set(result)
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50]
    assert {"train_loss", "lr", "grad_norm", "tokens_per_s"} <= set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.5
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "step"} <= set(ckpt) and ckpt["step"] == 50


def test_same_seed_same_numbers_other_seed_differs(tmp_path, data_dir):
    a, rows_a = run_micro(tmp_path / "a", steps=20)
    b, rows_b = run_micro(tmp_path / "b", steps=20)
    c, _ = run_micro(tmp_path / "c", steps=20, seed=1)
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]
    assert {k: a[k] for k in NUMBERS} == {k: b[k] for k in NUMBERS}
    assert a["final_train_loss"] != c["final_train_loss"]


def test_mfu_is_logged_and_counting_it_leaves_the_numbers_alone(tmp_path, data_dir, monkeypatch):
    from claimbench import flops, registry
    from claimbench.train import Trainer

    result, rows = run_micro(tmp_path / "a", steps=10, **{"log.every": 5})
    assert all(0 < r["mfu"] < 1 for r in rows)
    assert result["peak_source"] == "measured:cpu" and result["peak_flops"] > 0
    cfg = load_config(None, micro_overrides(10, None), base={})
    wl = registry.get("workload", cfg.workload)(cfg)
    wl.check_data()
    torch.manual_seed(0)
    batch = wl.train_batch(0, 0, cfg.train.batch_size)
    assert result["flops_per_unit"] == flops.train_flops_per_unit(wl, wl.build_model(), batch)
    # the meta-device count draws nothing from the run's RNG (and the peak timing runs under a forked RNG)
    monkeypatch.setattr(Trainer, "_count_flops", lambda self, batch: float("nan"))
    b, rows_b = run_micro(tmp_path / "b", steps=10, **{"log.every": 5})
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in rows_b] and "mfu" not in rows_b[0]
    assert {k: result[k] for k in NUMBERS} == {k: b[k] for k in NUMBERS}


def test_grad_accumulation_matches_full_batch(tmp_path, data_dir):
    """Accumulating 2 micro-batches of 2 is the same step as one batch of 4 (same examples, fp32 tolerance)."""
    sets = {"train.grad_clip": 0, "train.batch_size": 4}
    full, _ = run_micro(tmp_path / "full", steps=5, **sets)
    accum, _ = run_micro(tmp_path / "accum", steps=5, **sets, **{"train.grad_accum": 2})
    ckpts = [torch.load(tmp_path / d / "ckpt.pt", weights_only=True) for d in ("full", "accum")]
    assert torch.allclose(ckpts[0]["losses"], ckpts[1]["losses"], atol=1e-5, rtol=0)
    for name, w in ckpts[0]["model"].items():
        assert torch.allclose(w, ckpts[1]["model"][name], atol=1e-5), name


def _train_cmd(out, steps):
    sets = micro_overrides(steps=steps, **{"ckpt.every": 10, "log.every": 5})
    return [sys.executable, "-m", "claimbench", "train", str(REPO / "benchmarks/configs/gpt.yaml"),
            *[a for s in sets for a in ("--set", s)], "--out", str(out)]


def test_sigkill_and_resume_gives_identical_numbers(tmp_path, data_dir):
    steps = 400
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(ref, steps), check=True, capture_output=True, timeout=300)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(out, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "ckpt.pt", weights_only=True)["step"]
    assert not (out / "result.json").exists() and 0 < killed_at < steps, "the kill must land mid-run"
    subprocess.run(_train_cmd(out, steps), check=True, capture_output=True, timeout=300)
    got, want = (json.loads((d / "result.json").read_text()) for d in (out, ref))
    assert {k: got[k] for k in NUMBERS} == {k: want[k] for k in NUMBERS}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["train_loss"]) for r in rows] == [(r["step"], r["train_loss"]) for r in ref_rows]


def test_huge_lr_diverges_as_a_result(tmp_path, data_dir, cli):
    sets = micro_overrides(steps=200, **{"train.lr": 30.0, "train.grad_clip": 0, "diverge.patience": 10})
    r = cli("train", str(REPO / "benchmarks/configs/gpt.yaml"), *[a for s in sets for a in ("--set", s)],
            "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "diverged"
    assert 1 <= result["diverged_at"] < 200 and result["steps"] == result["diverged_at"]


@register_method("_test_crash")
class _Crash(Method):
    def after_step(self, step, model, optimizer):
        if step == 2:
            raise RuntimeError("boom at step 2")


def test_crash_is_failed_with_nonzero_exit(tmp_path, data_dir):
    cfg = load_config(None, micro_overrides(steps=5, methods=["_test_crash"]), base={})
    code = execute(prepare(cfg, tmp_path / "run"))
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert code == EXIT_FAILED and result["status"] == "failed"
    assert result["error"] == "RuntimeError: boom at step 2"


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_both_architectures_train(tmp_path, data_dir, arch):
    result, rows = run_micro(tmp_path / arch, steps=30, **{"model.arch": arch, "train.lr": 3e-3, "log.every": 10})
    assert result["status"] == "ok" and rows[-1]["train_loss"] < rows[0]["train_loss"]
