"""The muP tuning levels' base-width sweep (LRM paper §5.1, Fig. 7): trials -> one tuned file -> the comparison runs.

The paper compares LRM at four muP-tuning levels, NONE (every multiplier 1), LR (LR multipliers tuned), LRWD (LR and
WD) and FULL (LR, WD and the forward multipliers), with values tuned at base width (Zuo et al. 2025). Here the DAG
tunes them itself: the `mup_sweep` section of config/papers/lrm.<profile>.yaml names a search space (log2 ranges,
one sampled value per dimension shared by the roles it lists) and the trial count, the same for every level. Each
level's trials are its untuned default (all 1: at base width muP is the standard parametrization, so this is the
plain run) plus `trials - 1` Latin-hypercube points over the dimensions that level tunes (scipy.stats.qmc, seeded:
the same config gives the same trials and run ids). `pick` keeps, per level, the trial with the lowest final val
loss and writes the tuned file; comparison runs name it (`mup` option `tuned:`) and methods/lrm/paper.py makes it
their input, so a changed sweep re-makes the file and retrains only the runs that read it.

    python -m methods.lrm.mup_sweep --grid config/papers/lrm.smoke.yaml --runs-dir runs/smoke \\
        --out results/analysis/lrm/mup_tuned.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from claimbench.config import ConfigError, describe_error
from claimbench.grid import RunSpec, expand
from claimbench.io import atomic_write_json
from claimbench.plugin import ROLES

LEVELS = ("LR", "LRWD", "FULL")  # NONE tunes nothing
FWD_SLOTS = frozenset({"embedding", "readout", "attn"})  # baselines.mup's forward multipliers
TUNES = {"LR": ("lr_mult",), "LRWD": ("lr_mult", "wd_mult"), "FULL": ("lr_mult", "wd_mult", "fwd_mult")}


class Dim(BaseModel):
    """One searched multiplier: its kind, the roles (or forward-multiplier slots) sharing it, its log2 range."""

    model_config = ConfigDict(extra="forbid")
    mult: Literal["lr_mult", "wd_mult", "fwd_mult"]
    roles: list[str] = Field(min_length=1)
    log2: tuple[float, float]

    @model_validator(mode="after")
    def _range(self):
        if not self.log2[0] < self.log2[1]:
            raise ValueError(f"log2: expected [lo, hi] with lo < hi, got {list(self.log2)}")
        known = FWD_SLOTS if self.mult == "fwd_mult" else ROLES
        bad = [r for r in self.roles if r not in known]
        if bad:
            raise ValueError(f"roles: '{bad[0]}' is not a {self.mult} key ({', '.join(sorted(known))})")
        return self


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out: str  # the tuned file (the comparison runs' `tuned:` names the same path)
    trials: int = Field(ge=2)  # per level, the untuned default included
    seed: int = 0  # of the Latin-hypercube sampler
    base_width: int = Field(ge=1)  # the model width of `entry` (checked against model.n_embd when set)
    entry: dict[str, Any]  # the grid entry every trial shares (workload, size, recipes, seeds: [one], set)
    methods: list[Any] = Field(default_factory=list)  # methods after mup in every trial (e.g. the lrm probe)
    space: dict[str, Dim] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        width = self.entry.get("set", {}).get("model.n_embd")
        if width is not None and width != self.base_width:
            raise ValueError(f"base_width: {self.base_width} but entry.set.model.n_embd is {width}; the sweep runs "
                             "at base width")
        if len(self.entry.get("seeds", [0])) != 1:
            raise ValueError("entry.seeds: one seed per trial (the budget is the trial count)")
        if len(self.entry.get("recipes", ["adamw"])) != 1:
            raise ValueError("entry.recipes: one recipe (the levels are tuned for it)")
        for level in LEVELS:
            if not self.dims(level):
                raise ValueError(f"space: level {level} tunes {', '.join(TUNES[level])} but no dimension has one")
        return self

    def dims(self, level: str) -> list[str]:
        return [name for name, d in self.space.items() if d.mult in TUNES[level]]


def load_sweep(grid_cfg: dict, where: str) -> Sweep | None:
    """The `mup_sweep` section of a paper grid file (None when absent); ConfigError naming the key."""
    raw = grid_cfg.get("mup_sweep")
    if raw is None:
        return None
    try:
        return Sweep.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{where}: mup_sweep: {describe_error(e, Sweep)}") from None


def trials(sweep: Sweep) -> dict[str, list[dict[str, dict[str, float]]]]:
    """level -> its trials' multipliers ({mult: {role: value}}); trial 0 is the untuned default ({})."""
    from scipy.stats import qmc

    out = {}
    for i, level in enumerate(LEVELS):
        names = sweep.dims(level)
        pts = qmc.LatinHypercube(d=len(names), seed=sweep.seed + i).random(sweep.trials - 1)
        level_trials: list[dict[str, dict[str, float]]] = [{}]
        for row in pts:
            t: dict[str, dict[str, float]] = {}
            for name, u in zip(names, row, strict=True):
                d = sweep.space[name]
                value = float(f"{2 ** (d.log2[0] + u * (d.log2[1] - d.log2[0])):.3g}")  # 3 digits: readable ids
                for role in d.roles:
                    t.setdefault(d.mult, {})[role] = value
            level_trials.append(t)
        out[level] = level_trials
    return out


def trial_methods(sweep: Sweep, level: str, values: dict) -> list:
    """A trial's method list: mup at the level with the trial's multipliers, then `sweep.methods`; the untuned
    default is `sweep.methods` alone (muP at base width is the standard parametrization), so it is the plain
    run another study may already train."""
    if not values:
        return list(sweep.methods)
    return [{"name": "mup", "base_width": sweep.base_width, "level": level, **values}, *sweep.methods]


def trial_grid(sweep: Sweep) -> list[dict]:
    """Grid entries of the trials, one per level (the shared default trial dedups to one run)."""
    name = sweep.entry.get("name", "lrm:mup_sweep")
    return [{**sweep.entry, "name": f"{name}:{level}", "methods": [trial_methods(sweep, level, v) for v in ts]}
            for level, ts in trials(sweep).items()]


def trial_runs(sweep: Sweep) -> dict[str, list[tuple[str, dict]]]:
    """level -> [(run id, multipliers)] of its trials."""
    out = {}
    for entry, (level, ts) in zip(trial_grid(sweep), trials(sweep).items(), strict=True):
        ids = []
        for methods, values in zip(entry["methods"], ts, strict=True):
            (rid,) = expand([{**entry, "methods": [methods]}])
            ids.append((rid, values))
        out[level] = ids
    return out


def pick(sweep: Sweep, runs_dir: Path) -> dict:
    """Per level, the trial with the lowest final val loss (diverged or failed trials never win); every trial's
    loss is kept beside the choice. ValueError when a level has no finished trial."""
    out: dict[str, Any] = {"metric": "final_val_loss", "base_width": sweep.base_width, "trials_per_level": sweep.trials,
                           "seed": sweep.seed, "levels": {"NONE": {"lr_mult": {}, "wd_mult": {}, "fwd_mult": {}}},
                           "trials": {}}
    for level, runs in trial_runs(sweep).items():
        rows = []
        for rid, values in runs:
            f = runs_dir / rid / "result.json"
            res = json.loads(f.read_text()) if f.is_file() else {}
            loss = res.get("final_val_loss") if res.get("status") == "ok" else None
            ok = isinstance(loss, (int, float)) and math.isfinite(loss)
            rows.append({"run_id": rid, "status": res.get("status", "missing"), "final_val_loss": loss if ok else None,
                         **values})
        scored = [r for r in rows if r["final_val_loss"] is not None]
        if not scored:
            raise ValueError(f"mup sweep: no finished trial for level {level} (runs: "
                             f"{', '.join(r['run_id'] + ' ' + r['status'] for r in rows)})")
        best = min(scored, key=lambda r: r["final_val_loss"])
        out["levels"][level] = {k: dict(best.get(k, {})) for k in ("lr_mult", "wd_mult", "fwd_mult")} | {
            "run_id": best["run_id"], "final_val_loss": best["final_val_loss"]}
        out["trials"][level] = rows
    return out


# ------------------------------------------------------------------------------------------ the DAG's wiring

@dataclass
class Plan:
    records: dict[str, list[str]] = field(default_factory=dict)  # tuned file -> the trial run ids that make it
    inputs: dict[str, str] = field(default_factory=dict)  # run id -> the tuned file it reads

    def run_regex(self) -> str:
        """A wildcard constraint matching exactly the runs that read a tuned file (never matches when none)."""
        return "|".join(re.escape(r) for r in sorted(self.inputs)) or "(?!x)x"

    def record_regex(self) -> str:
        return "|".join(re.escape(r) for r in sorted(self.records)) or "(?!x)x"


def tuned_path(spec: RunSpec) -> str | None:
    """The `tuned:` file of a run's mup method, if any (read off its --set methods=...)."""
    for s in spec.sets:
        if s.startswith("methods=") and '"tuned"' in s:
            for m in yaml.safe_load(s.split("=", 1)[1]) or []:
                if isinstance(m, dict) and m.get("name") == "mup" and m.get("tuned"):
                    return str(m["tuned"])
    return None


def plan(runs: dict[str, RunSpec], sweeps: list[Sweep]) -> Plan:
    """Which trials make which tuned file and which runs read it; ValueError for a run whose file no sweep of
    this DAG makes."""
    out = Plan()
    for sw in sweeps:
        out.records[sw.out] = sorted({rid for rs in trial_runs(sw).values() for rid, _ in rs})
    for rid, spec in sorted(runs.items()):
        path = tuned_path(spec)
        if path is not None:
            out.inputs[rid] = path
    missing = sorted({p for p in out.inputs.values() if p not in out.records})
    if missing:
        raise ValueError(f"mup: no sweep of this DAG writes {', '.join(missing[:3])}; add a `mup_sweep` with that "
                         "`out` to the profile's config/papers/lrm.<profile>.yaml (and select papers: [lrm])")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", required=True,
                   help="config/papers/lrm.<profile>.yaml (its mup_sweep section; a tier's file includes the grid it "
                        "extends)")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    from claimbench.tiers import load_grid

    sweep = load_sweep(load_grid(a.grid), a.grid)
    if sweep is None:
        raise SystemExit(f"{a.grid}: no mup_sweep section")
    atomic_write_json(Path(a.out), pick(sweep, Path(a.runs_dir)))


if __name__ == "__main__":
    main()
