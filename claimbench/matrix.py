"""The method matrix: every registered method on every workload under one tuning budget (config/matrix.<profile>.yaml).

An entry is (row, workload); a row is a list of methods (and optionally a recipe, e.g. Muon), one method for the
matrix, two for the interaction table. Every entry, the baseline's included, gets the same budget: a sweep of
`lr_mults` around the workload's base LR at `sweep_seed`, the best LR by the workload's validation metric (a
diverged or failed sweep point is never chosen), then `seeds` at that LR (the sweep's run at that LR and seed is
the same run id, so it is trained once). Run ids come from `claimbench.grid.expand`, so a run any grid asks for
with the same overrides (a baseline shared by every row, a `claimbench compare` of a new method) is trained once
and read from runs/ or else the evidence store.

The seed runs depend on the sweep's outcome, so the DAG part (rules/matrix.smk) lists them only once the sweep's
results exist: `claimbench compare` runs Snakemake until nothing is pending (twice from scratch).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from claimbench import registry
from claimbench.config import ConfigError
from claimbench.evidence import locate, metric_value, read_run
from claimbench.grid import RunSpec, expand, method_name

BASELINE = "baseline"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Analysis:
    """A table another stage writes (a JSON block with `columns`, `rows`, `status` and `why`), shown under the
    interaction table: what tests a combination beyond this table's runs (FLeRM's transfer to a wider model)."""

    title: str
    file: str  # relative to the repository
    table: str  # dotted key of the block in the file
    about: str = ""


@dataclass(frozen=True)
class Row:
    name: str
    methods: tuple  # method refs as a run config takes them: names or {name: ..., option: value}
    recipe: str | None = None  # None: the workload config's recipe
    paper: str | None = None  # the paper whose claims page it links to (results/<paper>.md)
    parts: tuple = ()  # interaction rows: the rows each part is alone (compared against as well)
    note: str = ""  # shown under the interaction table (what the row does and does not test)
    analysis: Analysis | None = None  # interaction rows: a section of its own under the table

    @property
    def method_names(self) -> list[str]:
        return [method_name(m) for m in self.methods]


@dataclass
class Workload:
    name: str
    config: str
    data: str
    size: str
    steps: int
    lr: float
    metric: str  # a result.json key (final_val_loss, final_val_acc)
    direction: str  # lower | higher
    set: dict = field(default_factory=dict)
    cpu_s: float | None = None  # a pilot's CPU-s per baseline run, for plans before anything is recorded


@dataclass
class Matrix:
    path: Path
    profile: str
    workloads: dict[str, Workload]
    lr_mults: list[float]
    sweep_seed: int
    seeds: list[int]
    level: float
    rows: list[Row]
    skip: dict[str, str]  # registered method -> why it has no row (the baseline itself, analysis-only kinds)
    interactions: list[Row]
    interaction_workloads: list[str]
    raw: dict = field(default_factory=dict)

    def row(self, name: str) -> Row | None:
        return next((r for r in [*self.rows, *self.interactions] if r.name == name), None)


def _row(spec: dict, where: str) -> Row:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{where}: a row is a mapping with `name` (and `methods`, `recipe`, `paper`)")
    unknown = set(spec) - {"name", "methods", "recipe", "paper", "parts", "note", "analysis"}
    if unknown:
        raise ConfigError(f"{where}: unknown key '{sorted(unknown)[0]}' (keys: name, methods, recipe, paper, parts, "
                          "note, analysis)")
    methods = tuple(spec.get("methods") or ())
    if not methods and not spec.get("recipe"):
        raise ConfigError(f"{where} '{spec['name']}': give `methods` or a `recipe`")
    return Row(spec["name"], methods, spec.get("recipe"), spec.get("paper"), tuple(spec.get("parts") or ()),
               str(spec.get("note") or ""), _analysis(spec.get("analysis"), f"{where} '{spec['name']}'.analysis"))


def _analysis(spec, where: str) -> Analysis | None:
    if spec is None:
        return None
    keys = {"title", "file", "table", "about"}
    if not isinstance(spec, dict) or not {"title", "file", "table"} <= set(spec) or set(spec) - keys:
        raise ConfigError(f"{where}: a mapping with title, file, table (and about)")
    return Analysis(**{k: str(v) for k, v in spec.items()})


def load(path: str | Path) -> Matrix:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"matrix config {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    for key in ("profile", "workloads", "lr_mults", "seeds", "rows"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key '{key}'")
    wls = {}
    for name, w in raw["workloads"].items():
        try:
            wls[name] = Workload(name=name, **w)
        except TypeError as e:
            raise ConfigError(f"{path}: workloads.{name}: {e}") from None
        if wls[name].direction not in ("lower", "higher"):
            raise ConfigError(f"{path}: workloads.{name}.direction: lower or higher")
    seeds = [int(s) for s in raw["seeds"]]
    if len(seeds) < 3:
        raise ConfigError(f"{path}: seeds: at least 3 (the verdict engine's minimum)")
    inter = raw.get("interactions") or {}
    m = Matrix(path, raw["profile"], wls, [float(x) for x in raw["lr_mults"]], int(raw.get("sweep_seed", seeds[0])),
               seeds, float(raw.get("level", 0.95)),
               [_row(r, f"{path}: rows[{i}]") for i, r in enumerate(raw["rows"])], dict(raw.get("skip") or {}),
               [_row(r, f"{path}: interactions.rows[{i}]") for i, r in enumerate(inter.get("rows") or [])],
               list(inter.get("workloads") or []), raw)
    names = [r.name for r in [*m.rows, *m.interactions]]
    dup = {n for n in names if names.count(n) > 1} | ({BASELINE} & set(names))
    if dup:
        raise ConfigError(f"{path}: row name '{sorted(dup)[0]}' is used twice (or is the reserved '{BASELINE}')")
    for w in m.interaction_workloads:
        if w not in wls:
            raise ConfigError(f"{path}: interactions.workloads: unknown workload '{w}' (workloads: {', '.join(wls)})")
    return m


def restrict(m: Matrix, workloads: list[str]) -> Matrix:
    """The matrix on these workloads only (in place)."""
    for w in workloads:
        if w not in m.workloads:
            raise ConfigError(f"workload '{w}' is not in the matrix ({', '.join(m.workloads)}; {m.path})")
    m.workloads = {w: m.workloads[w] for w in workloads}
    m.interaction_workloads = [w for w in m.interaction_workloads if w in workloads]
    return m


def baseline_row() -> Row:
    return Row(BASELINE, ())


def method_row(m: Matrix, name: str) -> Row:
    """The matrix row of one registered method: the config's, else the method alone with its default options."""
    return next((r for r in m.rows if r.method_names == [name] and r.recipe is None), None) or Row(name, (name,))


def all_rows(m: Matrix, extra: list[str] = ()) -> list[Row]:
    """The config's rows, then a default row for each extra method name not already there."""
    rows = list(m.rows)
    for name in extra:
        if not any(r.name == name for r in [*rows, *m.interactions]):
            rows.append(method_row(m, name))
    return rows


def table_rows(m: Matrix, extra: list[str] = ()) -> list[Row]:
    """The config's rows (+ extra), then every registered method that has none and is not skipped: an installed
    plugin gets its row (shown `not run` until compared)."""
    covered = {n for r in m.rows for n in r.method_names} | set(m.skip)
    return all_rows(m, [*extra, *(n for n in registry.names("method") if n not in covered)])


def refusal(row: Row, workload: str) -> str | None:
    """Why this row cannot run on this workload (from what its methods declare), or None."""
    from claimbench.plugin import composition_error, lacking

    classes = [registry.get("method", n) for n in row.method_names]
    for cls in classes:
        if cls.workloads is not None and workload not in cls.workloads:
            declared = ", ".join(sorted(cls.workloads)) or "none"
            return f"'{cls.name}' declares workloads {declared}, not {workload}"
    have = frozenset(getattr(registry.get("workload", workload), "provides", frozenset()))
    for cls, ref in zip(classes, row.methods, strict=True):
        opts = {} if isinstance(ref, str) else dict(ref.get("options") or {k: v for k, v in ref.items() if k != "name"})
        try:
            missing = lacking(cls, cls.Options(**opts), have)
        except (TypeError, ValueError):  # options the run itself would refuse: its own error says which
            missing = sorted(frozenset(cls.needs) - have)
        if missing:
            return f"'{cls.name}' needs capability '{missing[0]}', which {workload} does not provide"
    recipe = registry.get("recipe", row.recipe) if row.recipe else None
    return composition_error(classes, recipe)


def entries(m: Matrix, rows: list[Row], interactions: bool = True) -> list[tuple[Row, str]]:
    """(row, workload) of every runnable entry, baseline first."""
    out = [(baseline_row(), w) for w in m.workloads]
    for r in rows:
        out += [(r, w) for w in m.workloads if refusal(r, w) is None]
    if interactions:
        for r in m.interactions:
            out += [(r, w) for w in m.interaction_workloads if refusal(r, w) is None]
    return out


def _grid_entry(m: Matrix, row: Row, wl: str, lr: float, seeds: list[int]) -> dict:
    w = m.workloads[wl]
    cfg_path = REPO / w.config
    base_recipe = (yaml.safe_load(cfg_path.read_text()) or {}).get("recipe", "adamw") if cfg_path.is_file() else "adamw"
    recipes = [row.recipe or base_recipe]
    return {"name": f"matrix:{row.name}", "config": w.config, "data": w.data, "workload": wl, "size": w.size,
            "recipes": recipes, "methods": [[_plain(x) for x in row.methods]], "seeds": seeds,
            "set": {"train.steps": w.steps, **w.set, "train.lr": _lr(lr)}}


def _plain(ref):
    return ref if isinstance(ref, str) else dict(ref)


def _lr(x: float) -> float:
    return float(f"{x:.6g}")  # 3e-3 * 0.5 is 0.0015, not 0.0015000000000000000x


def lrs(m: Matrix, wl: str) -> list[float]:
    return [_lr(m.workloads[wl].lr * k) for k in m.lr_mults]


def sweep_runs(m: Matrix, row: Row, wl: str) -> dict[float, RunSpec]:
    out = {}
    for lr in lrs(m, wl):
        (spec,) = expand([_grid_entry(m, row, wl, lr, [m.sweep_seed])]).values()
        out[lr] = spec
    return out


def seed_runs(m: Matrix, row: Row, wl: str, lr: float) -> dict[int, RunSpec]:
    specs = expand([_grid_entry(m, row, wl, lr, m.seeds)])
    return {int(s.sets[-1].split("=", 1)[1]): s for s in specs.values()}


def value(ev, metric: str, direction: str, chance: float | None) -> float | None:
    """A run's value; a diverged run is a miss (stats.miss_value); None for missing and failed runs."""
    from claimbench.stats import miss_value

    if ev.status == "diverged":
        return miss_value(direction, chance)
    if ev.status != "ok":
        return None
    v = metric_value(ev, metric)
    return v if v is not None and math.isfinite(v) else miss_value(direction, chance)


@dataclass
class EntryState:
    row: Row
    workload: str
    sweep: dict  # lr -> RunEvidence
    lr: float | None  # the chosen LR, None while pending or when every sweep point failed / diverged
    status: str  # pending | chosen | diverged (no sweep point usable)
    seeds: dict  # seed -> RunEvidence (at the chosen LR)


def _chance(wl: str) -> float | None:
    return getattr(registry.get("workload", wl), "chance_acc", None)


def state(m: Matrix, row: Row, wl: str, runs_dir: Path, store: Path | None) -> EntryState:
    w = m.workloads[wl]
    sweep = {lr: read_run(locate(s.run_id, runs_dir, store)) for lr, s in sweep_runs(m, row, wl).items()}
    if any(ev.status == "missing" for ev in sweep.values()):
        return EntryState(row, wl, sweep, None, "pending", {})
    scored = {lr: value(ev, w.metric, w.direction, _chance(wl)) for lr, ev in sweep.items()}
    usable = {lr: v for lr, v in scored.items() if v is not None and math.isfinite(v)
              and sweep[lr].status == "ok"}
    if not usable:
        return EntryState(row, wl, sweep, None, "diverged", {})
    pick = (min if w.direction == "lower" else max)(usable, key=lambda lr: (usable[lr], abs(math.log(lr / w.lr))))
    seeds = {s: read_run(locate(spec.run_id, runs_dir, store)) for s, spec in seed_runs(m, row, wl, pick).items()}
    return EntryState(row, wl, sweep, pick, "chosen", seeds)


@dataclass
class Plan:
    runs: dict[str, RunSpec]  # every run the entries need now (known run ids)
    missing: list[str]  # of those, the ones neither runs/ nor the store holds
    pending: int  # seed runs not yet known (their entry's sweep is not finished)
    states: list[EntryState]


def plan(m: Matrix, rows: list[Row], runs_dir: str | Path, store: str | Path | None,
         interactions: bool = True, only: list[str] | None = None) -> Plan:
    """The runs the entries need; `only`: those rows (and the baseline, and each interaction's parts)."""
    runs_dir, store = Path(runs_dir), Path(store) if store else None
    sel = entries(m, rows, interactions)
    if only is not None:
        keep = set(only) | {BASELINE}
        for r in m.interactions:
            if r.name in only:
                keep |= set(r.parts)
        sel = [(r, w) for r, w in sel if r.name in keep]
    runs: dict[str, RunSpec] = {}
    pending, states = 0, []
    for row, wl in sel:
        st = state(m, row, wl, runs_dir, store)
        states.append(st)
        for spec in sweep_runs(m, row, wl).values():
            runs.setdefault(spec.run_id, spec)
        if st.status == "chosen":
            for spec in seed_runs(m, row, wl, st.lr).values():
                runs.setdefault(spec.run_id, spec)
        elif st.status == "pending":
            pending += len([s for s in m.seeds if s != m.sweep_seed])
    missing = [rid for rid in runs if not (locate(rid, runs_dir, store) / "result.json").is_file()]
    return Plan(runs, missing, pending, states)


def recorded_cpu(states: list[EntryState]) -> dict[str, float]:
    """run id -> the cpu_s its result.json records, from the evidence the plan's states already read."""
    out = {}
    for st in states:
        for ev in [*st.sweep.values(), *st.seeds.values()]:
            cpu = ev.result.get("cpu_s")
            if isinstance(cpu, (int, float)) and cpu > 0:
                out[ev.run_id] = float(cpu)
    return out


def estimate_cpu(m: Matrix, p: Plan) -> tuple[float, float]:
    """(CPU-s of the missing runs, of the pending ones): a run's recorded cpu_s where another run of the same row
    and workload is recorded, else the workload's recorded baseline, else the config's pilot figure."""
    rec = recorded_cpu(p.states)
    by_key: dict[tuple, list[float]] = {}
    for st in p.states:
        ids = [s.run_id for s in sweep_runs(m, st.row, st.workload).values()]
        if st.lr is not None:
            ids += [s.run_id for s in seed_runs(m, st.row, st.workload, st.lr).values()]
        by_key.setdefault((st.row.name, st.workload), []).extend(rec[i] for i in ids if i in rec)

    def one(row: str, wl: str) -> float:
        for key in ((row, wl), (BASELINE, wl)):
            if by_key.get(key):
                return statistics.median(by_key[key])
        return float(m.workloads[wl].cpu_s or 0.0)

    owner = {}
    for st in p.states:
        for s in sweep_runs(m, st.row, st.workload).values():
            owner.setdefault(s.run_id, st)
        if st.lr is not None:
            for s in seed_runs(m, st.row, st.workload, st.lr).values():
                owner.setdefault(s.run_id, st)
    missing = sum(one(owner[r].row.name, owner[r].workload) for r in p.missing)
    pending = sum(one(st.row.name, st.workload) * len([s for s in m.seeds if s != m.sweep_seed])
                  for st in p.states if st.status == "pending")
    return missing, pending


def format_plan(m: Matrix, p: Plan, runs_dir: Path, store: Path | None) -> str:
    cpu_missing, cpu_pending = estimate_cpu(m, p)
    present = len(p.runs) - len(p.missing)
    return (f"plan: {len(p.states)} entries, {len(p.runs)} runs known ({present} present in runs/ or the evidence "
            f"store, {len(p.missing)} to train: ~{cpu_missing / 60:.1f} CPU-min) + {p.pending} seed runs once "
            f"their LR sweep is done (~{cpu_pending / 60:.1f} CPU-min); "
            f"total ~{(cpu_missing + cpu_pending) / 60:.1f} CPU-min")
