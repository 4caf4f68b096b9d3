"""Run directories -> one table row per run (`results/runs.csv`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import yaml

from claimbench.evidence import read_run as read_result
from claimbench.io import atomic_write_text

COLUMNS = ["run_id", "workload", "size", "arch", "recipe", "methods", "seed", "steps", "lr", "status",
           "final_train_loss", "final_val_loss", "final_val_acc", "diverged_at", "wall_s", "config_hash", "git_sha",
           "run_dir"]


def read_run(run_dir: Path) -> dict:
    """One run's row; a missing or corrupt file makes it `missing` (with a warning), never an error."""
    row: dict = {"run_id": run_dir.name, "run_dir": str(run_dir), "status": "missing"}
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        row.update(workload=cfg["workload"], size=cfg["size"], arch=cfg.get("model", {}).get("arch"),
                   recipe=cfg["recipe"]["name"], methods="+".join(m["name"] for m in cfg["methods"]) or "none",
                   seed=cfg["seed"], lr=cfg["train"]["lr"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        warnings.warn(f"{run_dir / 'config.yaml'}: unreadable ({type(e).__name__}); run counted as missing",
                      stacklevel=2)
        return row
    ev = read_result(run_dir)  # the one result.json reader: corrupt -> missing, with a warning naming it
    row.update({k: ev.result[k] for k in COLUMNS if k in ev.result}, status=ev.status)
    return row


def write_runs_csv(run_dirs: list[Path], out: Path) -> int:
    rows = [read_run(Path(d)) for d in run_dirs]
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    atomic_write_text(out, df.to_csv(index=False))
    return len(df)
