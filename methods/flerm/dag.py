"""How FLeRM's two stages meet in the DAG (used by methods/flerm/paper.py; no training here).

Base runs carry `flerm` in record mode with `record: TEMPLATE`; scaled runs carry `flerm` with `base: TEMPLATE`
(the same template, `{lr}` filled with the run's train.lr). `plan` reads the runs' resolved configs and returns
which base runs make which record file and which record file each scaled run reads, so Snakemake makes the
record an input of the scaled runs: a changed base run re-makes its record and retrains only the runs that
read it. A `lora` run fine-tunes the `ckpt.pt` of another run of the grid: that run's result.json (written after
its final checkpoint) becomes an input too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from claimbench.config import load_config
from claimbench.grid import RunSpec
from methods.flerm.records import record_path


@dataclass
class Plan:
    records: dict[str, list[str]] = field(default_factory=dict)  # record file -> base run ids
    inputs: dict[str, str] = field(default_factory=dict)  # scaled run id -> record file
    checkpoints: dict[str, str] = field(default_factory=dict)  # lora run id -> result.json of the run it tunes

    def needs(self, run_id: str) -> list[str]:
        """The files a run reads besides its data: its base record and/or the checkpointed run."""
        return [p for p in (self.inputs.get(run_id), self.checkpoints.get(run_id)) if p]

    def run_regex(self) -> str:
        """A wildcard constraint matching exactly the scaled runs (never matches when there are none)."""
        import re

        return "|".join(re.escape(r) for r in sorted(set(self.inputs) | set(self.checkpoints))) or "(?!x)x"

    def record_regex(self) -> str:
        import re

        return "|".join(re.escape(r) for r in sorted(self.records)) or "(?!x)x"


def method_options(spec: RunSpec, repo: str = ".") -> tuple[float, dict[str, dict]] | None:
    """(train.lr, {method name: options}) of a run that uses flerm or lora, else None."""
    if not any(s.startswith("methods=") and ("flerm" in s or "lora" in s) for s in spec.sets):
        return None
    cfg = load_config(Path(repo) / spec.config, list(spec.sets))
    return cfg.train.lr, {m.name: m.options for m in cfg.methods}


def flerm_options(spec: RunSpec, repo: str = ".") -> tuple[float, dict] | None:
    """(train.lr, flerm options) of a run, or None when it does not use flerm."""
    got = method_options(spec, repo)
    return (got[0], got[1]["flerm"]) if got and "flerm" in got[1] else None


def plan(runs: dict[str, RunSpec], repo: str = ".") -> Plan:
    out = Plan()
    for rid, spec in sorted(runs.items()):
        got = method_options(spec, repo)
        if got is None:
            continue
        lr, methods = got
        ckpt = (methods.get("lora") or {}).get("checkpoint")
        if ckpt:
            src = Path(ckpt).parent
            if src.name in runs:
                out.checkpoints[rid] = str(src / "result.json")
            elif not Path(repo, ckpt).is_file():
                raise ValueError(f"flerm: run {rid} fine-tunes {ckpt}, which no run of this DAG makes (the lora "
                                 "checkpoint must be runs/<profile>/<run id>/ckpt.pt of a run in the grid)")
        opts = methods.get("flerm")
        if not opts:
            continue
        if opts.get("record"):
            out.records.setdefault(record_path(opts["record"], lr), []).append(rid)
        elif opts.get("base"):
            out.inputs[rid] = record_path(opts["base"], lr)
    missing = sorted({p for p in out.inputs.values() if p not in out.records})
    if missing:
        raise ValueError(f"flerm: no base runs record {', '.join(missing[:3])}; add the base grid entry "
                         "(method flerm with `record:` the same template) to the profile's flerm grid")
    return out
