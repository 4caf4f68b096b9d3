"""Paper manifests: everything the DAG needs to know about one paper, declared in one place.

A paper package (an in-repo `methods/<paper>/paper.py`, or a third-party module named by a `claimbench.papers`
entry point) registers a `Paper`:

    PAPER = register_paper(Paper(
        id="toy",                                   # = the claims file's paper.id
        root=Path(__file__).parent,                 # relative paths below resolve here
        claims="toy.yaml",                          # its claims (benchmarks/claims/<id>.yaml in the repo)
        grids={"smoke": "grid.smoke.yaml"},         # profile -> grid file (`grid:` entries, optional `data:`)
        methods=("toy_pkg.method",),                # modules that register its methods (imported by discovery)
        data=("toy_pkg.data",),                     # modules that register its data sources (@register_data)
        dag=dag,                                    # (paper, Dag) -> Plan: its stages, run inputs, targets
    ))

The Snakefile builds one `Dag` (the profile's config, grid and data), adds every selected paper's runs
(`Paper.runs`: its grid at the profile, plus runs it derives from them), then, with the run list complete, asks
every registered paper for its `Plan`: analysis stages (one Snakemake rule each, made by rules/papers.smk),
files a run reads before it trains (made inputs of the one `train` rule), and final targets. Nothing in the
Snakefile or rules/ names a paper.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from claimbench.grid import RunSpec, expand

ENTRY_POINT_GROUP = "claimbench.papers"
_PACKAGES = ("methods",)  # in-repo paper packages: every methods/<pkg>/paper.py
PAPERS: dict[str, Paper] = {}
_discovered = False


@dataclass
class Stage:
    """One analysis job: a Snakemake rule. Inputs are file lists or functions of the wildcards; the shell
    command sees {input.*}, {output.*}, {params.*} (and {params.py}, the DAG's Python), {log}, {wildcards.*}."""

    name: str  # the rule name (unique in the DAG)
    output: dict[str, str]
    shell: str
    input: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    threads: int = 1
    wildcard_constraints: dict[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    """What one paper adds to one DAG once the run list is complete."""

    stages: list[Stage] = field(default_factory=list)
    run_inputs: dict[str, list[str]] = field(default_factory=dict)  # run id -> files it reads before training
    targets: list[str] = field(default_factory=list)  # final targets (rule `all`)
    aliases: dict[str, list[str]] = field(default_factory=dict)  # target rule name -> its files (`snakemake NAME`)


DATA_FILES = ("train.bin", "val.bin", "meta.json")  # a prepared data set (meta.json last: the set is complete)


@dataclass
class Dag:
    """The DAG being built: the profile's config, the run list and data sets (mutable while runs are added),
    where runs, results and the evidence store live."""

    config: dict
    repo: Path
    runs: dict[str, RunSpec]
    data: dict[str, dict]
    cache: dict[str, Any] = field(default_factory=dict)  # what a paper computed while adding its runs, for its plan

    @property
    def profile(self) -> str:
        return self.config["profile"]

    @property
    def selected(self) -> list[str]:
        return list(self.config.get("papers") or [])

    @property
    def runs_dir(self) -> str:
        return self.config["runs_dir"]

    @property
    def results(self) -> str:
        return self.config["results_dir"]

    @property
    def evidence(self) -> str:
        return self.config.get("evidence_dir") or f"results/evidence/{self.profile}"

    def data_files(self, name: str) -> list[str]:
        """The files of prepared data set `name`: the input of a stage that reads the data without a run."""
        return [f"{self.data[name]['dir']}/{f}" for f in DATA_FILES]


@dataclass
class Paper:
    id: str
    root: Path  # the package directory; relative `claims` and `grids` paths resolve against it
    claims: str | None = None
    # profile -> grid file, or one path with {profile} in it
    grids: dict[str, str] | str = field(default_factory=dict)
    methods: tuple[str, ...] = ()  # modules registering the paper's methods (claimbench.registry)
    data: tuple[str, ...] = ()  # modules registering its data sources: `claimbench prepare-data NAME` finds them
    # (paper, dag) -> runs the paper adds when selected: default its grid at the profile; may derive more
    runs: Callable[[Paper, Dag], dict[str, RunSpec]] | None = None
    # (paper, dag) -> Plan; called for every registered paper (selected or not) once the run list is complete
    dag: Callable[[Paper, Dag], Plan] | None = None
    # (paper, profile, runs_dir, evidence store) -> one line per claim its grid cannot decide, found before training
    # from the runs already recorded (e.g. an optimum on the edge of an LR grid); `claimbench plan` reports them
    check: Callable[[Paper, str, Path, Path | None], list[str]] | None = None

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    @property
    def claims_file(self) -> Path | None:
        return self.path(self.claims) if self.claims else None

    def grid_path(self, profile: str) -> Path | None:
        """Where the paper's grid file at this profile is (it may not exist); None when it names none."""
        from claimbench.tiers import chain

        rels = [self.grids.format(profile=t) if isinstance(self.grids, str) else self.grids.get(t)
                for t in reversed(chain(profile))]
        rels = [r for r in rels if r]
        if not rels:
            return None
        # a tier without its own grid file trains the grid of the profile it extends
        p = next((self.path(r) for r in rels if self.path(r).is_file()), self.path(rels[0]))
        # relative to the working directory where it lies below it (the DAG's), so the analysis outputs that
        # record their grid do not depend on where the repository was cloned
        return p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p

    def grid_file(self, profile: str) -> Path | None:
        """The paper's grid file at this profile, None when it has none (or the file is missing)."""
        p = self.grid_path(profile)
        return p if p is not None and p.is_file() else None

    def grid_config(self, profile: str) -> dict:
        from claimbench.tiers import load_grid

        p = self.grid_file(profile)
        return load_grid(p) if p else {}

    def add_runs(self, dag: Dag) -> None:
        """Called for a selected paper: its grid's data sets and runs. A run it lists replaces one already listed
        under the same id (a claim's arm), so the paper's grid entry name and a derived run's settings win."""
        cfg = self.grid_config(dag.profile)
        dag.data.update(cfg.get("data", {}))
        dag.runs.update(self.runs(self, dag) if self.runs else expand(cfg.get("grid", [])))

    def plan(self, dag: Dag) -> Plan:
        return self.dag(self, dag) if self.dag else Plan()


def register_paper(paper: Paper) -> Paper:
    if paper.id in PAPERS and PAPERS[paper.id] is not paper:
        raise ValueError(f"paper {paper.id!r} registered twice ({PAPERS[paper.id].root} and {paper.root})")
    PAPERS[paper.id] = paper
    return paper


def discover() -> dict[str, Paper]:
    """Import every in-repo `methods/<pkg>/paper.py` and every `claimbench.papers` entry point, once."""
    global _discovered
    if not _discovered:
        _discovered = True
        for pkg_name in _PACKAGES:
            pkg = importlib.import_module(pkg_name)
            for d in sorted(Path(p) for p in pkg.__path__):
                for f in sorted(d.glob("*/paper.py")):
                    importlib.import_module(f"{pkg_name}.{f.parent.name}.paper")
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            if isinstance(obj, Paper):
                register_paper(obj)
    return PAPERS


def external_claims_files(claims_dir: Path) -> list[Path]:
    """Claims files of registered papers that live outside `claims_dir` (third-party papers)."""
    out = []
    for p in discover().values():
        f = p.claims_file
        if f is not None and f.is_file() and f.resolve().parent != Path(claims_dir).resolve():
            out.append(f)
    return sorted(out)


def method_modules() -> list[str]:
    """Modules registering the methods and data sources of third-party papers (in-repo ones are found by package
    scan)."""
    return [m for p in discover().values() for m in (*p.methods, *p.data)]


def in_repo(paper_id: str, **kw) -> Paper:
    """The manifest of a paper kept in this repository: claims in benchmarks/claims/<id>.yaml, grids in
    config/papers/<id>.<profile>.yaml."""
    return Paper(id=paper_id, root=Path(__file__).resolve().parents[1], claims=f"benchmarks/claims/{paper_id}.yaml",
                 grids=f"config/papers/{paper_id}.{{profile}}.yaml", **kw)


def result_files(dag: Dag, run_ids) -> list[str]:
    return [f"{dag.runs_dir}/{rid}/result.json" for rid in sorted(run_ids)]
