"""Helpers for tests (ours and generated plugins'): real data, micro runs, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

from claimbench.config import load_config
from claimbench.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]
MICRO_VOCAB = 512


def micro_data_dir() -> Path:
    """The real Shakespeare corpus with a 512-token BPE, prepared once under data/_test/."""
    out = REPO / "data" / "_test" / f"shakespeare-{MICRO_VOCAB}"
    if not (out / "meta.json").is_file():  # meta.json is written last, so its presence means complete
        from claimbench import registry

        registry.get("data", "shakespeare")("shakespeare", out, vocab_size=MICRO_VOCAB)
    return out


def micro_overrides(steps: int = 5, methods: list | None = None, **sets) -> list[str]:
    base = {"workload": "gpt", "size": "micro", "data.dir": str(micro_data_dir()), "train.steps": steps,
            "train.batch_size": 4, "train.warmup_steps": 0, "log.every": 1, "eval.every": 0, "eval.batches": 2,
            "ckpt.every": 0, "methods": json.dumps(methods or [])}
    base.update(sets)
    return [f"{k}={v}" for k, v in base.items()]


def run_micro(out: Path, steps: int = 5, methods: list | None = None, **sets) -> tuple[dict, list[dict]]:
    """Train a micro GPT in-process; returns (result.json, metrics.jsonl rows)."""
    from claimbench.train import execute, prepare

    cfg = load_config(None, micro_overrides(steps, methods, **sets), base={})
    code = execute(prepare(cfg, out))
    result = json.loads((Path(out) / "result.json").read_text())
    assert code == 0, result
    return result, read_jsonl(Path(out) / "metrics.jsonl")
