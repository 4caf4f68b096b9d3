"""One training step of every registered method on every workload at size micro, on the real offline data.

Parametrized from the registry, so a new method or workload is covered without editing this file. A
method whose `workloads` leaves a workload out, or that needs a capability the workload does not provide,
is skipped for it; so is one that cannot run on its default options (it says which options it needs).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.data.images import micro_image_dir
from claimbench import registry
from claimbench.config import ConfigError, load_config
from claimbench.plugin import validate_options
from claimbench.testing import micro_data_dir
from claimbench.train import execute, prepare

WORKLOADS = registry.names("workload")
METHODS = registry.names("method")


def data_dir(workload: str) -> Path:
    return micro_data_dir() if workload == "gpt" else micro_image_dir()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_one_step(workload: str, method: str, tmp_path: Path) -> None:
    cls = registry.get("method", method)
    if cls.workloads is not None and workload not in cls.workloads:
        pytest.skip(f"method {method} does not support workload {workload}")
    try:
        opts = validate_options(cls.Options, {}, method)
    except ConfigError as e:
        pytest.skip(f"method {method} needs options: {e}")
    missing = cls.requires(opts) - registry.get("workload", workload).provides
    if missing:
        pytest.skip(f"workload {workload} lacks {', '.join(sorted(missing))} that method {method} needs")
    cfg = load_config(None, [
        f"workload={workload}", "size=micro", f"data.dir={data_dir(workload)}", f"methods=[{method}]",
        "train.steps=1", "train.batch_size=4", "train.warmup_steps=0", "log.every=1", "eval.every=0",
        "eval.batches=1", "ckpt.every=0"], base={})
    assert execute(prepare(cfg, tmp_path)) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 1
    assert math.isfinite(result["final_train_loss"]) and math.isfinite(result["final_val_loss"])
    if workload != "gpt":
        assert 0.0 <= result["final_val_acc"] <= 1.0
