"""Before training: which LR-transfer claims a grid cannot decide because an optimum sits on its LR range's edge.

The transfer claims need every optimum interior to the LR grid (the edge premise). A run already recorded (runs
directory or evidence store) keeps its id when a grid only adds LRs, so the runs of an earlier reproduction show,
before the new grid trains, whether a cell's optimum still lies on the grid's lowest or highest LR. One line per
claim, arm and scale; cells without at least three recorded LRs are not judged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from claimbench.claims import load_file
from claimbench.grid import expand
from methods.flerm.analysis import _sets, collect, scale_value


def _grid_lrs(grid: list[dict], studies: dict) -> dict:
    """study -> arm -> scale index -> the LRs the grid sweeps there (index 0: the base group's)."""
    base: dict = {}
    cells: dict = {}
    for entry in grid:
        parts = str(entry.get("name", "")).split(":")
        if len(parts) != 3 or parts[0] != "flerm":
            continue
        for spec in expand([entry]).values():
            s = _sets(spec)
            if parts[2] == "base":
                base.setdefault(parts[1], set()).add(float(s["train.lr"]))
            elif parts[1] in studies:
                st = studies[parts[1]]
                idx = st["values"].index(scale_value(s, st["across"]))
                cells.setdefault(parts[1], {}).setdefault(parts[2], {}).setdefault(idx, set()).add(float(s["train.lr"]))
    return {name: {arm: {0: base.get(st["base"], set()), **per} for arm, per in cells.get(name, {}).items()}
            for name, st in studies.items()}


def study_claims(claims_file: Path) -> dict[str, list[str]]:
    """study -> the claims whose statistic reads it (`studies.<study>.*` keys)."""
    out: dict[str, list[str]] = {}
    for c in load_file(claims_file):
        for key in (c.statistic.get("values") or {}).values():
            parts = str(key).split(".")
            if parts[0] == "studies" and len(parts) > 1:
                out.setdefault(parts[1], []).append(c.id)
    return out


def narrow_grids(grid_cfg: dict, claims: dict[str, list[str]], runs_dir: Path, store: Path | None) -> list[str]:
    studies = grid_cfg.get("studies", {})
    data, _, _ = collect(grid_cfg.get("grid", []), studies, runs_dir, store)
    lrs = _grid_lrs(grid_cfg.get("grid", []), studies)
    out = []
    for name, arms in data.items():
        for arm, per_scale in sorted(arms.items()):
            for idx, per_seed in sorted(per_scale.items()):
                grid_lrs = sorted(lrs.get(name, {}).get(arm, {}).get(idx, set()))
                seeds = [c for c in per_seed.values() if c]
                common = sorted(set.intersection(*(set(c) for c in seeds))) if seeds else []
                if len(common) < 3 or not grid_lrs:
                    continue
                mean = np.mean([[c[lr] for lr in common] for c in seeds], axis=0)
                best = common[int(np.argmin(mean))]
                edge = "lowest" if best == grid_lrs[0] else "highest" if best == grid_lrs[-1] else None
                if edge is None:
                    continue
                scale = studies[name]["scales"][idx]
                for cid in dict.fromkeys(claims.get(name, [f"flerm:{name}"])):
                    out.append(f"{cid}: arm {'base' if idx == 0 else arm}, scale x{scale}: the optimum is at the "
                               f"{edge} LR of the grid ({best:.3g}) over {len(seeds)} recorded seed(s): extend "
                               f"train.lr {'down' if edge == 'lowest' else 'up'}")
    return list(dict.fromkeys(out))


def check(paper, profile: str, runs_dir: Path, store: Path | None) -> list[str]:
    grid = paper.grid_config(profile)
    return narrow_grids(grid, study_claims(paper.claims_file), Path(runs_dir), store) if grid else []
