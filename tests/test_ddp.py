"""Data parallel under torchrun: 2 gloo ranks with global batch B train exactly as 1 process with batch B.

Each test launches `python -m torch.distributed.run --standalone --nproc_per_node 2 -m claimbench train`
(the command a user runs) and compares its run files with an in-process 1-process run of the same config.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from claimbench.config import ConfigError, load_config
from claimbench.io import read_jsonl
from claimbench.testing import REPO, micro_overrides
from claimbench.train import execute, prepare

ATOL = 1e-5  # fp32: the ranks' averaged gradients differ from the full batch's only in summation order


def _gpt_sets(steps: int = 20, methods: list | None = None, **sets) -> list[str]:
    return micro_overrides(steps, methods, **{"train.threads": 1, "eval.batches": 2, **sets})


def _vit_sets(steps: int = 20, methods: list | None = None, **sets) -> list[str]:
    from benchmarks.data.images import micro_image_dir

    base = {"workload": "vit", "size": "micro", "data.dir": str(micro_image_dir()), "train.steps": steps,
            "train.batch_size": 8, "train.warmup_steps": 2, "train.threads": 1, "log.every": 1, "eval.every": 0,
            "eval.batches": 2, "ckpt.every": 0, "methods": json.dumps(methods or [])}
    base.update(sets)
    return [f"{k}={v}" for k, v in base.items()]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


GPT, VIT = REPO / "benchmarks/configs/gpt.yaml", REPO / "benchmarks/configs/vit.yaml"


def torchrun(out: Path, config: Path, sets: list[str], nproc: int = 2, script: list[str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """`claimbench train` (or `script`) under torchrun with `nproc` gloo ranks."""
    target = script or ["-m", "claimbench", "train", str(config),
                        *[a for s in sets for a in ("--set", s)], "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), *target], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def one_process(out: Path, config: Path, sets: list[str]) -> None:
    assert execute(prepare(load_config(config, sets), out)) == 0


THROUGHPUT = ("tokens_per_s", "samples_per_s", "mfu")  # timings, not numbers of the run
OF_OUTPUTS = ("lrm/logit_rms", "lrm/resid_rms")  # statistics of the forward's outputs, not of the tensors


def assert_same_run(one: Path, two: Path, metric_rtol: float = 1e-4) -> int:
    """Per-step train losses and the final losses within ATOL; every other logged number of the methods (sigma1,
    function-space LRs, multipliers) within `metric_rtol`. Metrics of the forward's outputs (logit/residual RMS)
    are over the logging rank's last micro-batch, as under accumulation, so they are not compared."""
    res = [json.loads((d / "result.json").read_text()) for d in (one, two)]
    assert res[0]["status"] == res[1]["status"] == "ok"
    assert abs(res[0]["final_train_loss"] - res[1]["final_train_loss"]) <= ATOL
    assert abs(res[0]["final_val_loss"] - res[1]["final_val_loss"]) <= ATOL
    rows = [read_jsonl(d / "metrics.jsonl") for d in (one, two)]
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]]
    compared = 0  # method statistics compared
    for a, b in zip(*rows, strict=True):
        assert set(a) == set(b)
        assert abs(a["train_loss"] - b["train_loss"]) <= ATOL, (a["step"], a["train_loss"], b["train_loss"])
        for key, x in a.items():
            if key in THROUGHPUT or key.startswith(OF_OUTPUTS) or x is None:
                continue
            assert math.isclose(x, b[key], rel_tol=metric_rtol, abs_tol=ATOL), (a["step"], key, x, b[key])
            compared += "/" in key
    ckpts = [torch.load(d / "ckpt.pt", weights_only=True) for d in (one, two)]
    assert ckpts[0]["model"].keys() == ckpts[1]["model"].keys()  # the unwrapped module's names (no 'module.')
    for name, w in ckpts[0]["model"].items():
        # 1e-4, not ATOL: a key bias has an exactly zero gradient (softmax ignores a shift), so Adam turns fp
        # summation noise into +-lr steps there (ViT micro, 20 steps: 2.2e-5; every other tensor < 1e-6)
        assert torch.allclose(w, ckpts[1]["model"][name], atol=1e-4, rtol=0), name
    return compared


def test_gpt_two_ranks_equal_one_process_and_only_rank0_writes(tmp_path, data_dir):
    sets = _gpt_sets(**{"train.grad_clip": 1.0})
    one_process(tmp_path / "one", GPT, sets)
    torchrun(tmp_path / "two", GPT, sets)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["ckpt.pt", "config.yaml", "metrics.jsonl",
                                                                     "result.json"]
    rows = read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 21))  # one writer: no row twice
    assert json.loads((tmp_path / "two" / "result.json").read_text())["world_size"] == 2
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_batch_not_divisible_by_ranks_is_one_line_before_training(tmp_path, data_dir):
    proc = torchrun(tmp_path / "bad", GPT, _gpt_sets(**{"train.batch_size": 5}), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("claimbench: error:")]
    assert errors == ["claimbench: error: train.batch_size 5 is not divisible by nproc_per_node 2 x "
                      "train.grad_accum 1"]  # said once (rank 0), naming the setting
    assert not (tmp_path / "bad").exists()


def test_launch_checks_without_launching(monkeypatch, data_dir, tmp_path):
    """The checks prepare() makes from torchrun's environment: divisibility, GPUs per LOCAL_RANK, FSDP refusal."""
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    cfg = load_config(GPT, _gpt_sets(**{"train.batch_size": 30}))
    with pytest.raises(ConfigError, match=r"^train.batch_size 30 is not divisible by nproc_per_node 4 x "
                                          r"train.grad_accum 1$"):
        prepare(cfg, tmp_path / "x")
    with pytest.raises(ConfigError, match="nproc_per_node 4 x train.grad_accum 2"):
        prepare(load_config(GPT, _gpt_sets(**{"train.batch_size": 12, "train.grad_accum": 2})), tmp_path)
    prepare(load_config(GPT, _gpt_sets(**{"train.batch_size": 16, "train.grad_accum": 2})), tmp_path)
    from claimbench import distributed

    if torch.cuda.device_count() < 4:
        with pytest.raises(ConfigError, match="train.device: 'cuda' with LOCAL_RANK 3 needs 4 visible GPUs"):
            distributed.check("cuda", 16, 1)
    sets = _gpt_sets(methods=["adamw2"], **{"train.batch_size": 16, "train.parallel": "fsdp"})
    with pytest.raises(ConfigError, match=r"^train.parallel: 'fsdp' .* methods\[0\] 'adamw2' is not declared FSDP"):
        prepare(load_config(GPT, sets), tmp_path)


def test_parallel_key_keeps_existing_config_hashes():
    """`train.parallel` at its default is left out of the hash: every config older than the key keeps its hash."""
    cfg = load_config(REPO / "benchmarks/configs/gpt.yaml")
    assert cfg.hash() == load_config(REPO / "benchmarks/configs/gpt.yaml", ["train.parallel=ddp"]).hash()
    assert cfg.hash() != load_config(REPO / "benchmarks/configs/gpt.yaml", ["train.parallel=fsdp"]).hash()
    assert cfg.hash() == "5ade2a6d2d64ac2b"  # benchmarks/configs/gpt.yaml's hash before the key existed


@pytest.mark.slow
def test_gpt_method_statistics_equal_one_process(tmp_path, data_dir):
    """lrm's per-tensor statistics (multipliers, their gradient norm) come out of 2 ranks x 2 accumulated
    micro-batches as of 1 process (adamw2's sigma1: test_resume_at_another_world_size)."""
    sets = _gpt_sets(methods=[{"name": "lrm"}], **{"train.grad_accum": 2})
    one_process(tmp_path / "one", GPT, sets)
    torchrun(tmp_path / "two", GPT, sets)
    assert assert_same_run(tmp_path / "one", tmp_path / "two") > 20


@pytest.mark.slow
@pytest.mark.parametrize("methods", [[], [{"name": "adamw2", "probe_every": 5}]], ids=["plain", "adamw2"])
def test_vit_two_ranks_equal_one_process(methods, tmp_path):
    sets = _vit_sets(methods=methods)
    one_process(tmp_path / "one", VIT, sets)
    torchrun(tmp_path / "two", VIT, sets)
    compared = assert_same_run(tmp_path / "one", tmp_path / "two")
    assert compared > 100 if methods else compared == 0


STOP_SCRIPT = '''
"""Train under torchrun and stop every rank right after the step-{stop} checkpoint, as a kill would."""
import os, sys
from claimbench import distributed, train
from claimbench.config import load_config
from claimbench.io import atomic_torch_save

full = train.Trainer.state_dict

def state_dict(self):
    state = full(self)
    if self.step == {stop}:
        if distributed.is_main():
            atomic_torch_save(self.run.out / "ckpt.pt", state)
        distributed.barrier()
        os._exit(0)
    return state

train.Trainer.state_dict = state_dict
train.execute(train.prepare(load_config(sys.argv[1], sys.argv[3:]), sys.argv[2]))
'''


@pytest.mark.slow
def test_resume_at_another_world_size(tmp_path, data_dir):
    """10 steps on 2 ranks, checkpoint, resume to 20 on 1 process: the numbers of a 20-step 1-process run
    (adamw2's per-matrix sigma1 and caps of steps 1-10 come from the 2 ranks)."""
    sets = _gpt_sets(methods=[{"name": "adamw2", "probe_every": 5}], **{"ckpt.every": 10})
    one_process(tmp_path / "one", GPT, sets)
    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT.format(stop=10))
    torchrun(tmp_path / "resumed", GPT, sets, script=[str(script), str(GPT), str(tmp_path / "resumed"), *sets])
    assert torch.load(tmp_path / "resumed" / "ckpt.pt", weights_only=True)["step"] == 10
    assert not (tmp_path / "resumed" / "result.json").exists()
    assert any("spectral/sigma1/" in k for r in read_jsonl(tmp_path / "resumed" / "metrics.jsonl") for k in r)
    one_process(tmp_path / "resumed", GPT, sets)
    assert assert_same_run(tmp_path / "one", tmp_path / "resumed") > 100


@pytest.mark.slow
def test_fsdp2_on_gloo_equals_one_process_and_resumes_on_one(tmp_path, data_dir):
    """FSDP2 (fully_shard per block, then the root) on 2 CPU ranks: the losses of 1 process, a full unsharded
    checkpoint, and 10 sharded steps resumed on 1 process give the 20-step 1-process run."""
    sets = _gpt_sets(**{"train.parallel": "fsdp", "train.grad_accum": 2, "ckpt.every": 10})
    one_process(tmp_path / "one", GPT, sets)  # one process: nothing to shard, the plain module trains
    torchrun(tmp_path / "two", GPT, sets)
    assert_same_run(tmp_path / "one", tmp_path / "two")
    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT.format(stop=10))
    torchrun(tmp_path / "resumed", GPT, sets, script=[str(script), str(GPT), str(tmp_path / "resumed"), *sets])
    assert torch.load(tmp_path / "resumed" / "ckpt.pt", weights_only=True)["step"] == 10
    one_process(tmp_path / "resumed", GPT, sets)
    assert_same_run(tmp_path / "one", tmp_path / "resumed")


MASK_SCRIPT = '''
"""One ViT step with drop path on each rank: the samples each rank's block 1 kept, and whether the shared RNG
stream (the one methods draw from) is where it was before the step."""
import sys, torch, torch.distributed as dist
from claimbench.config import load_config
from claimbench.train import Trainer, prepare

trainer = Trainer(prepare(load_config(sys.argv[1], sys.argv[3:]), sys.argv[2]))
kept = []
trainer.model.blocks[1].drop_path1.register_forward_hook(
    lambda mod, inp, out: kept.append((out.flatten(1).abs().sum(1) != 0).int().tolist()))
before = torch.get_rng_state()
trainer.train_step()
every = [None] * dist.get_world_size()
dist.all_gather_object(every, (kept, torch.equal(before, torch.get_rng_state())))
if dist.get_rank() == 0:
    print("RESULT", every)
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_drop_path_masks_differ_between_ranks(tmp_path):
    """Stochastic layers draw per rank (one shared stream would repeat rank 0's masks on rank 1), and the
    shared stream that keeps the methods in lock-step is left where it was."""
    import ast

    script = tmp_path / "masks.py"
    script.write_text(MASK_SCRIPT)
    sets = _vit_sets(steps=2, **{"model.drop_path_rate": 0.5, "train.batch_size": 32})
    proc = torchrun(tmp_path / "run", VIT, sets, script=[str(script), str(VIT), str(tmp_path / "run"), *sets])
    (rank0, same0), (rank1, same1) = ast.literal_eval(proc.stdout.split("RESULT", 1)[1].strip())
    assert same0 and same1
    assert rank0 != rank1 and 0 < sum(rank0[0]) < 16  # 16 samples per rank, about half kept
