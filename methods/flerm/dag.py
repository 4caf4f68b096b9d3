"""How FLeRM's two stages meet in the DAG (used by rules/flerm.smk; no training here).

Base runs carry `flerm` in record mode with `record: TEMPLATE`; scaled runs carry `flerm` with `base: TEMPLATE`
(the same template, `{lr}` filled with the run's train.lr). `plan` reads the runs' resolved configs and returns
which base runs make which record file and which record file each scaled run reads, so Snakemake makes the
record an input of the scaled runs: a changed base run re-makes its record and retrains only the runs that
read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from claimbench.config import load_config
from claimbench.grid import RunSpec
from methods.flerm.records import record_path


@dataclass
class Plan:
    records: dict[str, list[str]] = field(default_factory=dict)  # record file -> base run ids
    inputs: dict[str, str] = field(default_factory=dict)  # scaled run id -> record file

    def run_regex(self) -> str:
        """A wildcard constraint matching exactly the scaled runs (never matches when there are none)."""
        import re

        return "|".join(re.escape(r) for r in sorted(self.inputs)) or "(?!x)x"

    def record_regex(self) -> str:
        import re

        return "|".join(re.escape(r) for r in sorted(self.records)) or "(?!x)x"


def flerm_options(spec: RunSpec, repo: str = ".") -> tuple[float, dict] | None:
    """(train.lr, flerm options) of a run, or None when it does not use flerm."""
    if not any(s.startswith("methods=") and "flerm" in s for s in spec.sets):
        return None
    from pathlib import Path

    cfg = load_config(Path(repo) / spec.config, list(spec.sets))
    for m in cfg.methods:
        if m.name == "flerm":
            return cfg.train.lr, m.options
    return None


def plan(runs: dict[str, RunSpec], repo: str = ".") -> Plan:
    out = Plan()
    for rid, spec in sorted(runs.items()):
        got = flerm_options(spec, repo)
        if got is None:
            continue
        lr, opts = got
        if opts.get("record"):
            out.records.setdefault(record_path(opts["record"], lr), []).append(rid)
        elif opts.get("base"):
            out.inputs[rid] = record_path(opts["base"], lr)
    missing = sorted({p for p in out.inputs.values() if p not in out.records})
    if missing:
        raise ValueError(f"flerm: no base runs record {', '.join(missing[:3])}; add the base grid entry "
                         "(method flerm with `record:` the same template) to the profile's flerm grid")
    return out
