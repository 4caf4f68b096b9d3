"""Synthetic run directories in the stable run-file format, for the tables' tests and speed benchmark.

They exercise the reading, statistics, verdict and table code without training; their numbers are
whatever the caller asks for, so they never stand in for a measured result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from claimbench.io import atomic_write_json, atomic_write_text

VERSIONS = {"python": "3.11.7", "torch": "2.14.1"}


def write_run(run_dir: str | Path, *, status: str = "ok", final_val_loss: float | None = None,
              final_val_acc: float | None = None, steps: int = 100, curve: list[float] | None = None,
              extra_metrics: dict[str, list[float]] | None = None, lm_eval: dict | None = None,
              git_sha: str = "abc123", config_hash: str = "cafe") -> Path:
    """Write result.json (+ metrics.jsonl, lm_eval.json) as a finished (or diverged) run would."""
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    curve = curve if curve is not None else [final_val_loss or 1.0] * 10
    every = max(1, steps // len(curve))
    lines = []
    for i, v in enumerate(curve):
        row = {"step": (i + 1) * every, "train_loss": v if math.isfinite(v) else None, "lr": 1e-3}
        for key, vals in (extra_metrics or {}).items():
            if i < len(vals):
                row[key] = vals[i]
        lines.append(json.dumps(row) + "\n")
    atomic_write_text(d / "metrics.jsonl", "".join(lines))
    res: dict = {"status": status, "steps": steps, "config_hash": config_hash, "git_sha": git_sha,
                 "versions": VERSIONS, "wall_s": 1.0}
    if status == "diverged":
        res["diverged_at"] = steps // 2
    else:
        res.update({k: v for k, v in (("final_val_loss", final_val_loss), ("final_val_acc", final_val_acc),
                                      ("final_train_loss", final_val_loss)) if v is not None})
    atomic_write_json(d / "result.json", res)
    if lm_eval is not None:
        atomic_write_json(d / "lm_eval.json", {"results": lm_eval})
    return d
