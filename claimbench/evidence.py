"""Read what one run left on disk, tolerating the broken: a missing or corrupt file is a warning
naming it and the run counts as missing, so tables are always built.

The evidence store (`results/evidence/<profile>/<run_id>/`) keeps a verbatim copy of each finished
run's small files (`RUN_FILES`, never the checkpoint), so a fresh clone rebuilds the tables from
what the repository holds. A run is read from the runs directory when it is there, from the store
otherwise (`locate`).

Metric names a claim may use:
- `final_val_loss`, `final_train_loss`, `final_val_acc`, ... : a key of `result.json`;
- `metrics:<key>[:last|first|min|max|mean]`: a key of `metrics.jsonl` (default: its last value);
- `lm_eval:<task>:<metric>`: lm-eval's score in `lm_eval.json` (`results[task][metric]`, `,none` filter implied).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from claimbench.config import ConfigError
from claimbench.io import atomic_write_bytes

RUN_FILES = ("config.yaml", "result.json", "metrics.jsonl", "lm_eval.json")

METRIC_REDUCERS = ("last", "first", "min", "max", "mean")


@dataclass
class RunEvidence:
    """A run's status and provenance; metrics and lm-eval scores are read on first use."""

    run_id: str
    run_dir: Path
    status: str  # ok | diverged | failed | missing
    result: dict = field(default_factory=dict)
    problem: str = ""
    sets: dict = field(default_factory=dict)  # the grid's overrides of this run (sweep values, seed)
    key: tuple = ()  # what pairs it with runs of other arms: sweep values and seed
    _metrics: list[dict] | None = None
    _lm_eval: dict | None = None

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "diverged")

    def metrics(self) -> list[dict]:
        if self._metrics is None:
            self._metrics = read_metrics(self.run_dir / "metrics.jsonl")
        return self._metrics

    def lm_eval(self) -> dict | None:
        if self._lm_eval is None:
            path = self.run_dir / "lm_eval.json"
            try:
                self._lm_eval = json.loads(path.read_text())
            except FileNotFoundError:
                return None
            except (OSError, json.JSONDecodeError) as e:
                warnings.warn(f"{path}: unreadable ({type(e).__name__}); its scores count as missing", stacklevel=2)
                return None
        return self._lm_eval


def read_metrics(path: Path) -> list[dict]:
    """All complete lines; a malformed line (other than a killed run's last one) is a warning."""
    rows: list[dict] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return rows
    except OSError as e:
        warnings.warn(f"{path}: unreadable ({type(e).__name__}); metrics count as missing", stacklevel=2)
        return rows
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError
            rows.append(row)
        except ValueError:
            warnings.warn(f"{path}: line {i + 1} is corrupt; metrics from there on are ignored", stacklevel=2)
            break
    return rows


def read_run(run_dir: Path) -> RunEvidence:
    """Status from `result.json`; anything unreadable -> `missing` with a warning naming the file."""
    run_dir = Path(run_dir)
    path = run_dir / "result.json"
    ev = RunEvidence(run_dir.name, run_dir, "missing")
    if not path.is_file():
        ev.problem = "not run"
        return ev
    try:
        res = json.loads(path.read_text())
        if not isinstance(res, dict) or res.get("status") not in ("ok", "diverged", "failed"):
            raise ValueError("no valid 'status'")
        for key, kind in (("git_sha", str), ("config_hash", str), ("versions", dict), ("error", str)):
            if key in res and not isinstance(res[key], kind):  # provenance is compared and printed as such
                raise ValueError(f"'{key}' is a {type(res[key]).__name__}, not a {kind.__name__}")
    except (OSError, ValueError) as e:
        why = str(e) if type(e) is ValueError else type(e).__name__  # our own checks' messages; else the type
        warnings.warn(f"{path}: corrupt ({why}); run counted as missing", stacklevel=2)
        ev.problem = f"corrupt {path.name}"
        return ev
    ev.result, ev.status = res, res["status"]
    if ev.status == "failed":
        ev.problem = f"failed: {res.get('error', '?')}"
    return ev


def check_metric_name(name: str) -> None:
    """A one-line error for a malformed metric name (the claims loader calls it)."""
    if name.startswith("metrics:"):
        parts = name.split(":")
        if len(parts) not in (2, 3) or not parts[1] or (len(parts) == 3 and parts[2] not in METRIC_REDUCERS):
            raise ConfigError(f"metric '{name}': expected metrics:<key>[:{'|'.join(METRIC_REDUCERS)}]")
    elif name.startswith("lm_eval:"):
        parts = name.split(":")
        if len(parts) != 3 or not all(parts[1:]):
            raise ConfigError(f"metric '{name}': expected lm_eval:<task>:<metric>")
    elif ":" in name:
        raise ConfigError(f"metric '{name}': unknown source (use a result.json key, metrics:<key> or "
                          "lm_eval:<task>:<metric>)")


def metric_value(ev: RunEvidence, name: str) -> float | None:
    """The run's value of a metric; None when the run has no such value (counted as missing)."""
    if name.startswith("metrics:"):
        parts = name.split(":")
        key, how = parts[1], parts[2] if len(parts) == 3 else "last"
        vals = [float(r[key]) for r in ev.metrics() if r.get(key) is not None]
        if not vals:
            return None
        return {"last": vals[-1], "first": vals[0], "min": min(vals), "max": max(vals),
                "mean": sum(vals) / len(vals)}[how]
    if name.startswith("lm_eval:"):
        _, task, metric = name.split(":")
        res = (ev.lm_eval() or {}).get("results", {}).get(task, {})
        val = res.get(metric, res.get(f"{metric},none"))
        return float(val) if isinstance(val, (int, float)) else None
    val = ev.result.get(name)
    return float(val) if isinstance(val, (int, float)) and val is not None else None


def metric_series(ev: RunEvidence, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metrics.jsonl key, finite values only."""
    steps, vals = [], []
    for r in ev.metrics():
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            steps.append(float(r.get("step", len(steps))))
            vals.append(float(v))
    return steps, vals


def provenance(runs: list[RunEvidence]) -> dict:
    """Commits, config hashes and package versions of the runs behind a number; flags mixed code."""
    used = [r for r in runs if r.usable]
    shas = sorted({r.result.get("git_sha", "unknown") for r in used})
    vers = sorted({json.dumps(r.result.get("versions", {}), sort_keys=True) for r in used})
    return {"git_shas": shas, "mixed_code": len(shas) > 1 or len(vers) > 1,
            "config_hashes": {r.run_id: r.result.get("config_hash") for r in used},
            "versions": [json.loads(v) for v in vers]}


def locate(run_id: str, runs_dir: str | Path, store: str | Path | None) -> Path:
    """Where to read a run: the runs directory when it holds the run's result, else the evidence store."""
    live = Path(runs_dir) / run_id
    if store is None or (live / "result.json").is_file():
        return live
    kept = Path(store) / run_id
    return kept if (kept / "result.json").is_file() else live


def archive(run_dirs: list[str | Path], store: str | Path) -> list[str]:
    """Copy each run's `RUN_FILES` into the store (only what changed; atomically); the run ids kept.

    Runs already in the store and not named here stay: a DAG over one paper keeps the others' evidence.
    A run without a result.json is skipped (nothing finished to keep).
    """
    kept = []
    for d in map(Path, run_dirs):
        if not (d / "result.json").is_file():
            continue
        for name in RUN_FILES:
            src, dst = d / name, Path(store) / d.name / name
            if not src.is_file():
                dst.unlink(missing_ok=True)
                continue
            data = src.read_bytes()
            if not dst.is_file() or dst.read_bytes() != data:
                atomic_write_bytes(dst, data)
        kept.append(d.name)
    return kept
