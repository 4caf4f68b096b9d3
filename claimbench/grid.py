"""Expand a profile's grid (config/<profile>.yaml) into named runs for the Snakefile.

A run is (base config, overrides); its id is readable and carries a hash of the overrides,
so two grids asking for the same run share one directory and one training.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    config: str  # base config, relative to the repository
    sets: tuple[str, ...]  # --set KEY=VALUE, in order
    data: str  # name of the prepared data set it reads
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def _fmt(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def method_name(spec: str | dict) -> str:
    """The name of a method as a method list gives it: `lrm` or `{name: lrm, ...options}`."""
    return spec if isinstance(spec, str) else spec["name"]


def run_id(sets: dict, seed: int) -> str:
    methods = sets.get("methods") or []
    mnames = "+".join(map(method_name, methods)) or "none"
    digest = hashlib.sha256(json.dumps(sets, sort_keys=True).encode()).hexdigest()[:8]
    return f"{sets.get('workload', 'x')}-{sets.get('size', 'x')}-{sets.get('recipe', 'x')}-{mnames}-{digest}-s{seed}"


def expand(grid: list[dict]) -> dict[str, RunSpec]:
    """Each entry: config, data, workload, size, recipes, methods (list of lists), seeds, set, sweep."""
    runs: dict[str, RunSpec] = {}
    for entry in grid:
        sweep = entry.get("sweep", {})  # key -> list of values (cartesian product)
        keys = list(sweep)
        for recipe, methods, values in itertools.product(entry.get("recipes", ["adamw"]),
                                                         entry.get("methods", [[]]),
                                                         itertools.product(*(sweep[k] for k in keys))):
            sets = {"workload": entry["workload"], "size": entry["size"], "recipe": recipe, "methods": methods,
                    **entry.get("set", {}), **dict(zip(keys, values, strict=True))}
            for seed in entry.get("seeds", [0]):
                rid = run_id(sets, seed)
                spec = RunSpec(rid, entry["config"], tuple(f"{k}={_fmt(v)}" for k, v in {**sets, "seed": seed}.items()),
                               entry.get("data", "shakespeare"), {"group": entry.get("name", "")})
                runs.setdefault(rid, spec)
    return runs
