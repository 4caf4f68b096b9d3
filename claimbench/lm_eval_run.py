"""Evaluate one run with lm-eval's `simple_evaluate` and write `runs/<id>/lm_eval.json` atomically.

What the DAG calls (the CLI's output file names carry a timestamp, so the DAG writes its own). The
file is lm-eval's own results JSON (results with their `_stderr` entries, n-shot, n-samples,
versions, configs, ...) plus `run_id`, `checkpoint`, the task list asked for and each task's chance
levels. Tasks are grouped by shot count, one `simple_evaluate` per group, since lm-eval takes one
`num_fewshot` per call. Every call is offline: HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1, and an
HF_HOME of the run's own unless one holding the standard tasks' data sets is given.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from claimbench.config import ConfigError
from claimbench.io import atomic_write_text
from claimbench.lm_eval_catalog import TASKS, TASKS_DIR, check_data

MERGED = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


def parse_tasks(spec: str) -> list[tuple[str, int | None]]:
    """'a:0,b:10,c' -> [(a, 0), (b, 10), (c, None)] (None: the task's own default)."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, shots = item.partition(":")
        try:
            out.append((name, int(shots) if shots else None))
        except ValueError:
            raise ConfigError(f"--tasks: '{item}': shots must be an integer (TASK:SHOTS)") from None
    if not out:
        raise ConfigError("--tasks: no task given")
    return out


@contextmanager
def offline_env(hf_home: str | Path, data_dir: str | Path | None = None):
    """No network for the hub or datasets, an HF_HOME of our choosing and (if given) the offline tasks' data
    directory; the caller's environment comes back after."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "CLAIMBENCH_LM_EVAL_DATA")
    saved = {k: os.environ.get(k) for k in keys}
    Path(hf_home).mkdir(parents=True, exist_ok=True)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(Path(hf_home).resolve()))
    if data_dir is not None:
        os.environ["CLAIMBENCH_LM_EVAL_DATA"] = str(Path(data_dir).resolve())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def evaluate_run(run_dir: str | Path, tasks: list[tuple[str, int | None]], out: str | Path | None = None,
                 limit: int | None = None, batch_size: int = 16, device: str | None = None,
                 dtype: str = "float32", hf_home: str | Path | None = None, seed: int = 1234,
                 threads: int | None = None, data_dir: str | Path | None = None) -> dict:
    """Check every task's data (before loading the model), evaluate, write and return the lm_eval.json dict.
    `data_dir`: the offline tasks' jsonl (default: $CLAIMBENCH_LM_EVAL_DATA or data/lm_eval)."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "lm_eval.json"
    ckpt = run_dir / "ckpt.pt"
    with offline_env(hf_home or run_dir / "hf_home", data_dir):
        check_data([t for t, _ in tasks], hf_home)
        if not ckpt.is_file():
            raise ConfigError(f"checkpoint not found: {ckpt}")
        doc = _evaluate(ckpt, run_dir.name, tasks, limit, batch_size, device, dtype, seed, threads)
    text = json.dumps(doc, indent=2, default=_jsonable, allow_nan=True) + "\n"
    atomic_write_text(out, text)
    return json.loads(text)


def _jsonable(obj):
    from lm_eval.utils import handle_non_serializable

    return handle_non_serializable(obj)


def _evaluate(ckpt: Path, run_id: str, tasks: list[tuple[str, int | None]], limit: int | None, batch_size: int,
              device: str | None, dtype: str, seed: int, threads: int | None) -> dict:
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    from claimbench.lm_eval_model import ClaimbenchLM

    names = [t for t, _ in tasks]
    if threads:
        torch.set_num_threads(threads)
    lm = ClaimbenchLM(str(ckpt), device=device, dtype=dtype, batch_size=batch_size)
    standard = any(n in TASKS and not TASKS[n].offline for n in names)
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=standard)  # defaults cost ~10 s to index
    merged: dict = {k: {} for k in MERGED}
    calls = []
    t0 = time.perf_counter()
    for shots in dict.fromkeys(s for _, s in tasks):
        group = [t for t, s in tasks if s == shots]
        res = lm_eval.simple_evaluate(model=lm, tasks=group, num_fewshot=shots, limit=limit, task_manager=tm,
                                      random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                      fewshot_random_seed=seed, log_samples=False)
        for k in MERGED:
            merged[k].update(res.get(k) or {})
        calls.append({"tasks": group, "num_fewshot": shots, "config": res.get("config"),
                      "lm_eval_version": res.get("lm_eval_version"), "date": res.get("date")})
    return {"run_id": run_id, "checkpoint": str(ckpt),
            "tasks": [{"task": t, "shots": s} for t, s in tasks],
            "chance": {t: TASKS[t].chance for t in names if t in TASKS},
            **merged, "calls": calls, "limit": limit, "wall_s": time.perf_counter() - t0}
