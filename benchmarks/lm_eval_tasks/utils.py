"""Loaders for the offline tasks' `custom_dataset: !function utils.load_...` (lm-eval imports this file
by path). They read the jsonl `claimbench lm-eval-data` wrote: `custom_dataset` is used instead of
`data_files` because lm-eval resolves data_files against the working directory, not this folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "lm_eval"


def _load(task: str, split: str = "test"):
    import datasets

    path = Path(os.environ.get("CLAIMBENCH_LM_EVAL_DATA") or DEFAULT_DIR) / f"{task}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"lm_eval task '{task}': {path} not found; write it with `claimbench lm-eval-data` "
                                "(cb_quartz first needs benchmarks/lm_eval_tasks/fetch_data.sh)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})


def load_cloze(**kwargs):
    return _load("cb_shakespeare_cloze")


def load_ppl(**kwargs):
    return _load("cb_shakespeare_ppl")


def load_quartz(**kwargs):
    return _load("cb_quartz")
