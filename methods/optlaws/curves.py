"""Loss curves and LR schedules as the laws see them, read from CSVs or from our run directories.

A curve is a per-step LR array (the LR of update 0, 1, ..., T-1) plus the loss at logged step counts.
The laws need the LR at every step (their sums run over steps), while logs hold it only every few
steps. `per_step_lrs` is the one place that decides how they are rebuilt, always from the formulas in
baselines.schedules: a run's LR exactly from its config (the module the trainer itself uses); a CSV's
exactly from its schedule's name (the file name, e.g. cosine_24000 or wsdcon_9, or one the caller
passes), including the warmup the published curves do not log, once the rebuilt LR agrees with every
logged row. Otherwise the logged LR is interpolated linearly between logged steps and ramps linearly from
0 before the first one; `Curve.meta["lr_source"]` says which was done and why.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from baselines.schedules import NAMED_WARMUP, named, parse_named

LOGGED = "logged"  # read_csv(schedule=LOGGED): interpolate the logged LR column even if the name is known
LR_RTOL = 1e-6  # a rebuilt LR must equal every logged LR to this relative tolerance


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
    return Curve(name, lrs, st, meta={"lr_source": "given per step"})


def named_lrs(name: str, peak_lr: float, warmup: int = NAMED_WARMUP) -> np.ndarray:
    """The per-step LRs of a published curve's schedule name (baselines.schedules.named), warmup included.

    Raises ValueError (one line, naming it) for a name that is not a known form.
    """
    f, total = named(name, peak_lr, warmup)
    return np.array([peak_lr * f(i) for i in range(total)])


def named_schedule(name: str, peak_lr: float, warmup: int = NAMED_WARMUP,
                   steps: np.ndarray | list[int] | None = None) -> Curve:
    """A named schedule to predict, e.g. named_schedule('wsd_20000_24000', 3e-4)."""
    c = schedule(name, named_lrs(name, peak_lr, warmup), steps)
    c.meta["lr_source"] = f"exact: schedule {name}"
    return c


def lrs_from_logged(steps: np.ndarray, lrs: np.ndarray) -> np.ndarray:
    """Per-step LRs from LRs logged at `steps`: linear in between, a linear ramp from 0 before the first."""
    grid = np.arange(int(steps[-1]))
    xs = np.concatenate([[0.0], steps.astype(float)]) if steps[0] > 0 else steps.astype(float)
    ys = np.concatenate([[0.0], lrs]) if steps[0] > 0 else lrs
    return np.interp(grid, xs, ys)


def per_step_lrs(name: str, steps: np.ndarray, logged: np.ndarray, schedule: str | np.ndarray | None = None,
                 warmup: int = NAMED_WARMUP, where: str = "") -> tuple[np.ndarray, str]:
    """(per-step LRs, how they were obtained) for a curve that logged `logged` LRs at `steps`.

    `schedule`: None -- rebuild exactly from `name` when it is a known schedule name and the rebuilt LR
    matches every logged row, else interpolate and say why; a name -- rebuild from it, and raise
    CurveError if it is unknown or disagrees with the log; LOGGED -- interpolate; an array -- the LRs of
    every step, checked against the log the same way. The peak LR of a named schedule is the largest
    logged LR; the warmup is `warmup` steps (the published curves log none of it).
    """
    where = where or name
    if isinstance(schedule, str) and schedule == LOGGED:
        return lrs_from_logged(steps, logged), "interpolated from the logged lr column (asked for)"
    if schedule is None and parse_named(name) is None:
        return lrs_from_logged(steps, logged), \
            f"interpolated from the logged lr column ('{name}' names no known schedule)"
    label = "the LRs given" if schedule is not None and not isinstance(schedule, str) else \
        f"schedule {schedule if schedule is not None else name}"
    try:
        if schedule is None or isinstance(schedule, str):
            lrs = named_lrs(schedule or name, float(logged.max()), warmup)
        else:
            lrs = np.asarray(schedule, dtype=float)
    except ValueError as e:
        raise CurveError(f"{where}: {e}") from None
    bad = _disagreement(lrs, steps, logged)
    if bad is None:
        return lrs, f"exact: {label}"
    if schedule is None:
        return lrs_from_logged(steps, logged), f"interpolated from the logged lr column ({label} {bad})"
    raise CurveError(f"{where}: {label} {bad}")


def _disagreement(lrs: np.ndarray, steps: np.ndarray, logged: np.ndarray) -> str | None:
    """None if `lrs` covers every logged step and equals the logged LR there; else what is wrong."""
    if len(lrs) < int(steps[-1]):
        return f"has {len(lrs)} steps but the curve is logged up to step {int(steps[-1])}"
    at = lrs[np.minimum(steps, len(lrs) - 1)]
    off = np.abs(at - logged) > LR_RTOL * np.maximum(np.abs(logged), 1e-300)
    if off.any():
        i = int(np.argmax(off))
        return f"disagrees with the logged lr at step {int(steps[i])} ({at[i]:.6g} vs {logged[i]:.6g})"
    return None


def read_csv(path: str | Path, schedule: str | np.ndarray | None = None, warmup: int = NAMED_WARMUP) -> Curve:
    """One `step,lr,loss` CSV; the file name (without .csv) is the schedule's id (see `per_step_lrs`)."""
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
    lrs, how = per_step_lrs(path.stem, steps, a[:, 1], schedule, warmup, where=str(path))
    return Curve(path.stem, lrs, steps, a[:, 2], source=str(path),
                 meta={"rows": [linenos[0], linenos[-1]], "lr_source": how})


def read_csv_dir(directory: str | Path, schedules: str | None = None, warmup: int = NAMED_WARMUP) -> dict[str, Curve]:
    """Every *.csv of a directory; `schedules=LOGGED` interpolates every logged LR column (see `per_step_lrs`)."""
    if schedules not in (None, LOGGED):
        raise CurveError(f"schedules={schedules!r}: expected None (exact where the file name is a schedule) or "
                         f"{LOGGED!r}")
    d = Path(directory)
    if not d.is_dir():
        raise CurveError(f"{d}: not a directory of step,lr,loss CSVs")
    curves = {p.stem: read_csv(p, schedules, warmup) for p in sorted(d.glob("*.csv"))}
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
    how = "exact: the run's config.yaml"
    if per_step is None:
        per_step, how = lrs_from_logged(st, np.array(lrs)), "interpolated from the logged lr (no config.yaml)"
    result = run_dir / "result.json"
    try:
        meta = json.loads(result.read_bytes()) if result.is_file() else {}
    except ValueError:
        raise CurveError(f"{result}: row 0: not JSON") from None
    if not isinstance(meta, dict):
        raise CurveError(f"{result}: row 0: not a JSON object")
    return Curve(run_dir.name, per_step, st, np.array(losses), source=str(path), meta={**meta, "lr_source": how})


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
