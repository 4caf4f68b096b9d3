"""Loss curves and LR schedules as the laws see them, read from CSVs or from our run directories.

A curve is a per-step LR array (the LR of update 0, 1, ..., T-1) plus the loss at logged step counts.
The laws need the LR at every step (their sums run over steps), while logs hold it only every few
steps: a CSV's LR is interpolated linearly between logged steps and, before the first one, ramps
linearly from 0 (the warmup the published curves leave out); a run's LR is rebuilt exactly from its
config with baselines.schedules, the module the trainer itself uses.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CurveError(ValueError):
    """Bad curve input: the message names the file and row."""


@dataclass
class Curve:
    """`lrs[i]` is the LR of update i; `loss[j]` the loss after `steps[j]` updates (None: a schedule to predict)."""

    name: str
    lrs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(self.steps[-1])

    @property
    def peak_lr(self) -> float:
        return float(self.lrs.max())

    def truncated(self, upto: int) -> Curve:
        """The same schedule observed only up to `upto` updates (its schedule beyond is not seen)."""
        keep = self.steps <= upto
        return Curve(self.name, self.lrs[:upto], self.steps[keep], None if self.loss is None else self.loss[keep],
                     self.source, dict(self.meta))


def schedule(name: str, lrs: np.ndarray | list[float], steps: np.ndarray | list[int] | None = None) -> Curve:
    """A schedule to predict: per-step LRs, evaluated at `steps` (default: every step 1..T)."""
    lrs = np.asarray(lrs, dtype=float)
    st = np.arange(1, len(lrs) + 1) if steps is None else np.asarray(steps, dtype=int)
    return Curve(name, lrs, st)


def lrs_from_logged(steps: np.ndarray, lrs: np.ndarray) -> np.ndarray:
    """Per-step LRs from LRs logged at `steps`: linear in between, a linear ramp from 0 before the first."""
    grid = np.arange(int(steps[-1]))
    xs = np.concatenate([[0.0], steps.astype(float)]) if steps[0] > 0 else steps.astype(float)
    ys = np.concatenate([[0.0], lrs]) if steps[0] > 0 else lrs
    return np.interp(grid, xs, ys)


def read_csv(path: str | Path) -> Curve:
    """One `step,lr,loss` CSV; the file name (without .csv) is the schedule's id."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CurveError(f"{path}: not a text CSV (byte {e.start} is not UTF-8)") from None
    except OSError as e:
        raise CurveError(f"{path}: unreadable ({e.strerror or type(e).__name__})") from None
    if "\0" in text:
        raise CurveError(f"{path}: not a text CSV (it holds NUL bytes)")
    with io.StringIO(text, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise CurveError(f"{path}: row 1: empty file (expected header step,lr,loss)")
        cols = [h.strip().lower() for h in header]
        missing = [c for c in ("step", "lr", "loss") if c not in cols]
        if missing:
            raise CurveError(f"{path}: row 1: missing column(s) {', '.join(missing)} (header: {','.join(header)})")
        idx = [cols.index(c) for c in ("step", "lr", "loss")]
        rows: list[tuple[float, float, float]] = []
        linenos: list[int] = []
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not x.strip() for x in row):
                continue
            try:
                step, lr, loss = (float(row[i]) for i in idx)
            except (ValueError, IndexError):
                raise CurveError(f"{path}: row {lineno}: not three numbers step,lr,loss: {','.join(row)}") from None
            if not math.isfinite(loss):
                raise CurveError(f"{path}: row {lineno}: loss is {row[idx[2]].strip()} (NaN or infinite)")
            if not math.isfinite(lr) or lr < 0:
                raise CurveError(f"{path}: row {lineno}: lr must be finite and >= 0, got {row[idx[1]].strip()}")
            if loss <= 0:
                raise CurveError(f"{path}: row {lineno}: loss must be > 0 (laws fit its log), got {loss}")
            if not math.isfinite(step) or step != int(step) or step < 1:
                raise CurveError(f"{path}: row {lineno}: step must be a positive integer, got {row[idx[0]].strip()}")
            if rows and step <= rows[-1][0]:
                raise CurveError(f"{path}: row {lineno}: steps not increasing ({int(step)} after {int(rows[-1][0])})")
            rows.append((step, lr, loss))
            linenos.append(lineno)
    if len(rows) < 2:
        raise CurveError(f"{path}: row {len(rows) + 1}: only {len(rows)} data row(s); a curve needs at least 2")
    a = np.array(rows)
    steps = a[:, 0].astype(int)
    return Curve(path.stem, lrs_from_logged(steps, a[:, 1]), steps, a[:, 2], source=str(path),
                 meta={"rows": [linenos[0], linenos[-1]]})


def read_csv_dir(directory: str | Path) -> dict[str, Curve]:
    d = Path(directory)
    if not d.is_dir():
        raise CurveError(f"{d}: not a directory of step,lr,loss CSVs")
    curves = {p.stem: read_csv(p) for p in sorted(d.glob("*.csv"))}
    if not curves:
        raise CurveError(f"{d}: no *.csv files")
    return curves


def read_run(run_dir: str | Path) -> Curve:
    """A run directory: metrics.jsonl (step, train_loss, lr) and, for exact per-step LRs, config.yaml."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise CurveError(f"{path}: row 0: file not found")
    steps, lrs, losses = [], [], []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CurveError(f"{path}: row 0: not text (byte {e.start} is not UTF-8)") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise CurveError(f"{path}: row {lineno}: not JSON") from None
        if not isinstance(row, dict):
            raise CurveError(f"{path}: row {lineno}: not a JSON object")
        missing = [k for k in ("step", "lr", "train_loss") if k not in row]
        if missing:
            raise CurveError(f"{path}: row {lineno}: missing key(s) {', '.join(missing)}")
        bad = [k for k in ("step", "lr", "train_loss") if not _number(row[k], none_ok=k == "train_loss")]
        if bad:
            raise CurveError(f"{path}: row {lineno}: '{bad[0]}' is not a number ({row[bad[0]]!r})")
        loss = row["train_loss"]
        if loss is None or not math.isfinite(float(loss)):
            break  # a diverged run: its curve ends where the loss stopped being finite
        if not float(row["step"]).is_integer() or (steps and row["step"] <= steps[-1]):
            raise CurveError(f"{path}: row {lineno}: steps not increasing integers ({row['step']} after "
                             f"{steps[-1] if steps else 0})")
        steps.append(int(row["step"]))
        lrs.append(float(row["lr"]))
        losses.append(float(loss))
    if len(steps) < 2:
        raise CurveError(f"{path}: row {len(steps) + 1}: only {len(steps)} finite row(s); a curve needs at least 2")
    st = np.array(steps)
    per_step = _lrs_from_config(run_dir)  # the whole planned schedule, also for a run that stopped early
    if per_step is None:
        per_step = lrs_from_logged(st, np.array(lrs))
    result = run_dir / "result.json"
    try:
        meta = json.loads(result.read_bytes()) if result.is_file() else {}
    except ValueError:
        raise CurveError(f"{result}: row 0: not JSON") from None
    if not isinstance(meta, dict):
        raise CurveError(f"{result}: row 0: not a JSON object")
    return Curve(run_dir.name, per_step, st, np.array(losses), source=str(path), meta=meta)


def _number(v, none_ok: bool = False) -> bool:
    """A JSON number (not a bool, not a string); None where the trainer logs a non-finite loss."""
    return (v is None and none_ok) or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _lrs_from_config(run_dir: Path) -> np.ndarray | None:
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return None
    from baselines.schedules import from_train_config
    from claimbench.config import load_config

    train = load_config(cfg_path).train
    f = from_train_config(train)
    return np.array([train.lr * f(i) for i in range(train.steps)])


def read_runs(paths: list[Path]) -> dict[str, Curve]:
    return {c.name: c for c in (read_run(p) for p in paths)}
