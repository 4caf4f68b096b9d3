"""results/methods.md (+ figures/methods_matrix.png) and results/interactions.md from the matrix's runs.

A cell is the method's final validation metric minus the baseline's, both at their own LR chosen by the same
sweep, seed by seed (paired when both arms have every seed), with the verdict engine's interval
(`hypotheses.directional`, two-sided `level`); a diverged seed is a miss (infinite loss, chance accuracy), so a
cell with misses has no interval and says how many. Coloured only where the interval excludes zero.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from claimbench import hypotheses, registry
from claimbench.matrix import BASELINE, REPO, EntryState, Matrix, Row, baseline_row, refusal, state
from claimbench.study import block_at

NA, NOT_RUN, PENDING, ALL_DIVERGED, FAILED, OK = "n/a", "not run", "pending", "diverged", "failed", "ok"
FIGURE = "figures/methods_matrix.png"  # under the results directory; methods.md links it by this path


@dataclass
class Cell:
    kind: str  # n/a | not run | pending | diverged | failed | ok
    note: str = ""  # n/a: the reason; ok: misses, e.g. "1/3 diverged"
    estimate: float = math.nan  # method - baseline, in the metric's units
    lo: float = math.nan
    hi: float = math.nan
    p: float | None = None
    misses: int = 0
    n: int = 0
    lr: float | None = None
    cpu_ratio: float | None = None  # median cpu_s of the entry's seed runs / the baseline's

    @property
    def significant(self) -> bool:
        return self.kind == OK and math.isfinite(self.lo) and (self.lo > 0 or self.hi < 0)

    def better(self, direction: str) -> bool:
        return (self.estimate < 0) == (direction == "lower")

    def text(self, digits: int = 3) -> str:
        if self.kind == NA:
            return f"n/a: {self.note}"
        if self.kind == FAILED:
            return f"failed: {self.note}"
        if self.kind != OK:
            return {NOT_RUN: "not run", PENDING: "pending (LR sweep)",
                    ALL_DIVERGED: "diverged at every LR of the sweep"}[self.kind]
        if not math.isfinite(self.lo):
            est = f"{self.estimate:+.{digits}f}" if math.isfinite(self.estimate) else "-"
            return f"{est} (no interval; {self.note})" if self.note else f"{est} (no interval)"
        s = f"{self.estimate:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"
        return s + (f" ({self.note})" if self.note else "")


def arm_values(m: Matrix, st: EntryState) -> tuple[dict, int]:
    """seed -> value at the chosen LR (misses included), and the number of misses; unfinished seeds left out."""
    from claimbench.matrix import _chance, value

    w = m.workloads[st.workload]
    vals, misses = {}, 0
    for seed, ev in st.seeds.items():
        v = value(ev, w.metric, w.direction, _chance(st.workload))
        if v is None:
            continue
        vals[seed] = v
        misses += ev.status == "diverged" or not math.isfinite(v) and w.direction == "lower"
    return vals, misses


def _cpu(st: EntryState) -> float | None:
    xs = [ev.result.get("cpu_s") for ev in st.seeds.values() if ev.status == "ok"]
    xs = [x for x in xs if isinstance(x, (int, float)) and x > 0]
    return statistics.median(xs) if xs else None


def compare(m: Matrix, a: EntryState, b: EntryState) -> Cell:
    """Entry a against entry b (the baseline, or one part of an interaction) on one workload."""
    if a.status == "pending" or b.status == "pending":
        return Cell(PENDING)
    if a.status == "diverged":
        return Cell(ALL_DIVERGED)
    if b.status == "diverged":
        return Cell(OK, note="the reference diverged at every LR", lr=a.lr)
    va, miss_a = arm_values(m, a)
    vb, _ = arm_values(m, b)
    if len(va) < len(m.seeds) or len(vb) < len(m.seeds):
        failed = [ev.run_id for st in (a, b) for ev in st.seeds.values() if ev.status == "failed"]
        if failed:  # a failed run (an error, not a divergence) has no value: say which, never guess one
            return Cell(FAILED, note=f"{len(failed)} failed run(s), e.g. {failed[0]}", lr=a.lr)
        return Cell(PENDING, lr=a.lr)
    w = m.workloads[a.workload]
    alpha = (1 - m.level) / 2
    out = hypotheses.directional({"paper_effect": 0.0, "direction": w.direction, "alpha": alpha,
                                  "min_seeds": min(3, len(m.seeds))}, va, vb)
    sign = -1.0 if w.direction == "lower" else 1.0  # the engine reports the gain (positive = better)
    est = sign * out.estimate if math.isfinite(out.estimate) else _plain_diff(va, vb)
    lo, hi = sorted((sign * out.ci_lo, sign * out.ci_hi)) if math.isfinite(out.ci_lo) else (math.nan, math.nan)
    ca, cb = _cpu(a), _cpu(b)
    note = f"{miss_a}/{len(va)} diverged" if miss_a else ""
    return Cell(OK, note, est, lo, hi, out.p, miss_a, len(va), a.lr, ca / cb if ca and cb else None)


def _plain_diff(a: dict, b: dict) -> float:
    fa = [v for v in a.values() if math.isfinite(v)]
    fb = [v for v in b.values() if math.isfinite(v)]
    return statistics.mean(fa) - statistics.mean(fb) if fa and fb and len(fa) == len(a) else math.nan


def speed_overhead(names: list[str], speed: dict | None, recipe: str | None = None) -> str:
    """The speed suite's per-step overhead of this method (or combination) with its interval, else 'not measured'
    (the suite's `overheads` block: scripts/speed/speed.py --out results/speed/<profile>)."""
    if recipe:  # the speed suite times methods over AdamW, not another optimizer
        return "not measured"
    rec = ((speed or {}).get("overheads") or {}).get("+".join(names))
    if not isinstance(rec, dict) or not isinstance(rec.get("overhead"), (int, float)):
        return "not measured"
    once = " one-off warm-up," if names == ["flerm"] else ""
    return (f"{rec['overhead']:+.1%} [{rec['ci_lo']:+.1%}, {rec['ci_hi']:+.1%}] ({rec.get('clock', '')},{once} "
            f"n={rec.get('n')})")


def build(m: Matrix, rows: list[Row], runs_dir: Path, store: Path | None) -> dict:
    """Every cell of the matrix and of the interaction table."""
    states: dict[tuple[str, str], EntryState] = {}

    def st(row: Row, wl: str) -> EntryState:
        if (row.name, wl) not in states:
            states[(row.name, wl)] = state(m, row, wl, runs_dir, store)
        return states[(row.name, wl)]

    def cell(row: Row, wl: str, ref: Row) -> Cell:
        why = refusal(row, wl)
        if why:
            return Cell(NA, why)
        a = st(row, wl)
        if a.status == "pending" and not any(ev.status != "missing" for ev in a.sweep.values()):
            return Cell(NOT_RUN)
        return compare(m, a, st(ref, wl))

    base = baseline_row()
    matrix = {r.name: {wl: cell(r, wl, base) for wl in m.workloads} for r in rows}
    baseline = {wl: st(base, wl) for wl in m.workloads}
    inter = {}
    for r in m.interactions:
        inter[r.name] = {}
        for wl in m.interaction_workloads:
            refs = {BASELINE: base, **{p: m.row(p) or Row(p, (p,)) for p in r.parts}}
            inter[r.name][wl] = {name: cell(r, wl, ref) for name, ref in refs.items()}
    return {"matrix": matrix, "baseline": baseline, "interactions": inter, "code": _code(states.values())}


def _code(states) -> str:
    """The code versions of the runs behind the tables (one line, as the claims tables say theirs)."""
    runs = {ev.run_id: ev for st in states for ev in [*st.sweep.values(), *st.seeds.values()]
            if ev.usable or ev.status == "failed"}  # seed 0 is a sweep run too: counted once
    shas = Counter(ev.result.get("git_sha") or "unknown" for ev in runs.values())
    if not shas:
        return "Runs: none yet."
    n = sum(shas.values())
    if len(shas) == 1:
        return f"Runs: {n}, all from code version `{next(iter(shas))[:12]}`."
    return f"Runs: {n}, **mixed code versions**: " + ", ".join(f"`{k[:12]}` ({v})" for k, v in shas.most_common()) + "."


def _read_speed(results_dir: Path, profile: str) -> dict | None:
    path = results_dir / "speed" / f"{profile}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _link(row: Row, results_dir: Path) -> str:
    if row.paper and (results_dir / f"{row.paper}.md").is_file():
        return f"[{row.name}]({row.paper}.md)"
    return row.name


def _shown(path: Path) -> str:
    from claimbench.matrix import REPO

    try:
        return Path(path).resolve().relative_to(REPO).as_posix()
    except ValueError:
        return Path(path).name


def _fmt_lr(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def methods_md(m: Matrix, rows: list[Row], built: dict, results_dir: Path, speed: dict | None,
               figure: str | None) -> str:
    wls = list(m.workloads)
    mults = ", x".join(f"{k:g}" for k in m.lr_mults)
    lines = ["# The method matrix", "",
             f"Every method alone against the baseline, at the matrix sizes of `{_shown(m.path)}`. Each entry (the "
             f"baseline's too) gets the same tuning budget: the LR swept over x{mults}"
             f" the workload's base LR at seed {m.sweep_seed}, the best by the validation metric, then seeds "
             f"{', '.join(map(str, m.seeds))} at that LR. A cell is method minus baseline in the final validation "
             f"metric, with the verdict engine's {m.level:.0%} interval (paired by seed); a diverged seed is a miss "
             "(infinite loss, chance accuracy) and leaves the cell without an interval. Built by `claimbench "
             "tables` from runs/ else the evidence store.", "", built["code"], ""]
    metric = {wl: f"{w.metric} ({'lower' if w.direction == 'lower' else 'higher'} is better)"
              for wl, w in m.workloads.items()}
    lines += ["| | " + " | ".join(f"{wl} ({m.workloads[wl].size}, {m.workloads[wl].steps} steps)" for wl in wls) + " |",
              "|---|" + "---|" * len(wls),
              "| metric | " + " | ".join(metric[wl] for wl in wls) + " |",
              "| baseline (chosen LR) | " + " | ".join(_baseline_text(m, built["baseline"][wl]) for wl in wls) + " |"]
    for r in rows:
        cells = built["matrix"][r.name]
        lines.append(f"| {_link(r, results_dir)} | " + " | ".join(_mark(c, m.workloads[wl].direction)
                                                                 for wl, c in cells.items()) + " |")
    lines += ["", "**bold**: the interval excludes zero (better or worse, by the sign and the metric's direction).", ""]
    if figure:
        lines += [f"![method matrix]({figure})", ""]
    lines += ["## Chosen LRs, misses and cost", "",
              "| method | " + " | ".join(f"{wl}: LR, CPU vs baseline" for wl in wls) + " | overhead (speed suite) |",
              "|---|" + "---|" * (len(wls) + 1)]
    for r in rows:
        cells = built["matrix"][r.name]
        parts = []
        for c in cells.values():
            if c.kind == OK:
                parts.append(f"{_fmt_lr(c.lr)}, " + (f"x{c.cpu_ratio:.2f}" if c.cpu_ratio else "-"))
            else:
                parts.append(c.kind)
        lines.append(f"| {r.name} | " + " | ".join(parts) + f" | {speed_overhead(r.method_names, speed, r.recipe)} |")
    notes = [f"- `{r.name}`: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "What a row does and does not test:", "", *notes]
    skipped = {n: why for n, why in m.skip.items() if n in registry.names("method")}
    if skipped:
        lines += ["", "Registered methods without a row: " + "; ".join(f"`{n}`: {why}" for n, why in skipped.items())
                  + "."]
    lines += ["", "Add a row: `make compare METHOD=<name>` (or `claimbench compare <name>`).", ""]
    return "\n".join(lines)


def _baseline_text(m: Matrix, st: EntryState) -> str:
    from claimbench.matrix import _chance, value

    if st.status != "chosen":
        return {"pending": "not run", "diverged": "diverged at every LR"}[st.status]
    w = m.workloads[st.workload]
    vals = [value(ev, w.metric, w.direction, _chance(st.workload)) for ev in st.seeds.values()]
    vals = [v for v in vals if v is not None]
    if not vals:
        return f"LR {_fmt_lr(st.lr)}, not run"
    return f"{statistics.mean(vals):.3f} at LR {_fmt_lr(st.lr)} (n={len(vals)})"


def _mark(c: Cell, direction: str) -> str:
    t = c.text()
    return f"**{t}**" if c.significant else t


def interactions_md(m: Matrix, built: dict, speed: dict | None) -> str:
    lines = ["# Interactions: two methods in one run", "",
             "Each combination against the baseline and against each of its methods alone, at the matrix's sizes, "
             "seeds and LR rule (each arm's LR chosen by its own sweep). Cells as in methods.md: combination minus "
             "reference in the final validation metric, with its interval; **bold** where it excludes zero.", "",
             built["code"], ""]
    for wl in m.interaction_workloads:
        w = m.workloads[wl]
        lines += [f"## {wl} ({w.size}, {w.steps} steps; {w.metric}, {w.direction} is better)", "",
                  "| combination | vs baseline | vs first alone | vs second alone | combined overhead (speed suite) |",
                  "|---|---|---|---|---|"]
        for r in m.interactions:
            cells = built["interactions"][r.name][wl]
            parts = list(r.parts) + [""] * (2 - len(r.parts))
            txt = [_mark(cells[BASELINE], w.direction)]
            for p in parts[:2]:
                txt.append(f"{p}: {_mark(cells[p], w.direction)}" if p else "-")
            lines.append(f"| {r.name} | " + " | ".join(txt) + f" | {speed_overhead(r.method_names, speed, r.recipe)} |")
        lines.append("")
    notes = [f"- `{r.name}`: {r.note}" for r in m.interactions if r.note]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    for r in m.interactions:
        if r.analysis:
            lines += analysis_md(r)
    return "\n".join(lines)


def analysis_md(row: Row) -> list[str]:
    """An interaction row's own section: the table its `analysis` names, as the stage that wrote it laid it out
    (a missing file or block, or a study not run, is one line saying so)."""
    a = row.analysis
    src = f"`{a.file}` (`{a.table}`)"
    lines = [f"## {row.name}: {a.title}", ""] + ([a.about, ""] if a.about else [])
    try:
        block = block_at(json.loads((REPO / a.file).read_text()), a.table)
        cols, rows = block["columns"], block["rows"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        return [*lines, f"Not run: no table at {src} ({type(e).__name__}).", ""]
    if block.get("status") != "ok":
        return [*lines, f"Not run: {block.get('why') or block.get('status')} ({src}).", ""]
    return [*lines, f"From {src}:", "", "| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols),
            *("| " + " | ".join(map(str, r)) + " |" for r in rows), ""]


def heatmap(m: Matrix, rows: list[Row], built: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    wls = list(m.workloads)
    rgb = np.ones((len(rows), len(wls), 3))
    fig, ax = plt.subplots(figsize=(2.6 * len(wls) + 1.5, 0.55 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        for j, wl in enumerate(wls):
            c = built["matrix"][r.name][wl]
            if c.kind == NA:
                rgb[i, j] = (0.85, 0.85, 0.85)
            elif c.significant:
                rgb[i, j] = (0.55, 0.82, 0.55) if c.better(m.workloads[wl].direction) else (0.93, 0.55, 0.55)
            label = c.text(3) if c.kind == OK else c.kind
            if c.kind == OK and math.isfinite(c.lo):
                label = f"{c.estimate:+.3f}\n[{c.lo:+.3f}, {c.hi:+.3f}]"
            ax.text(j, i, label, ha="center", va="center", fontsize=7)
    ax.imshow(rgb, aspect="auto")
    ax.set_xticks(range(len(wls)), [f"{wl}\n{m.workloads[wl].metric}" for wl in wls], fontsize=8)
    ax.set_yticks(range(len(rows)), [r.name for r in rows], fontsize=8)
    ax.set_title("method - baseline (coloured where the interval excludes 0; green better, red worse)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(m: Matrix, rows: list[Row], runs_dir: Path, store: Path | None, results_dir: Path,
          figures: bool = True, tables: bool = True) -> list[Path]:
    """The heatmap (figures) and methods.md + interactions.md (tables): the DAG's figures and tables jobs each ask
    for one of them, `claimbench tables` for both."""
    built = build(m, rows, Path(runs_dir), Path(store) if store else None)
    results_dir.mkdir(parents=True, exist_ok=True)
    out = []
    if figures:
        out.append(heatmap(m, rows, built, results_dir / FIGURE))
    if not tables:
        return out
    speed = _read_speed(results_dir, m.profile)
    # linked whether or not this call draws it, so methods.md reads the same from the DAG and from `claimbench tables`
    (results_dir / "methods.md").write_text(methods_md(m, rows, built, results_dir, speed, FIGURE))
    out.append(results_dir / "methods.md")
    if m.interactions:
        (results_dir / "interactions.md").write_text(interactions_md(m, built, speed))
        out.append(results_dir / "interactions.md")
    return out


def matrix_tables(path: str | Path, runs_dir: Path, results_dir: Path, store: Path, figures: bool = True,
                  tables: bool = True):
    """The matrix's outputs from its config file (what `claimbench tables`, `figures` and `matrix-table` call)."""
    from claimbench.matrix import load, table_rows

    m = load(path)
    return write(m, table_rows(m), runs_dir, store, results_dir, figures, tables)
