"""Tiers: a profile that `extends` another trains everything the other does, plus its own entries.

`config/cpu.yaml` says `extends: smoke`: the cpu tier shares the smoke tier's runs directory (a run both ask
for is trained once), its data sets and `config/smoke.d/` entries, and adds `config/cpu.d/`, each paper's
`config/papers/<paper>.cpu.yaml` (whose `include:` names the smoke grid file it builds on) and the claims'
`grid: cpu:` arms. A claim without `cpu:` arms reads its `smoke:` arms in the cpu tier. Its tables are its
own (`results_dir`), so a tier's verdicts never overwrite another's.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from claimbench.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


def chain(profile: str, config_dir: Path | None = None) -> tuple[str, ...]:
    """`cpu` -> ('smoke', 'cpu'): the profile and those it extends, base first."""
    out: list[str] = []
    p: str | None = profile
    while p:
        if p in out:
            raise ConfigError(f"config/{p}.yaml: `extends` loops ({' -> '.join([*out, p])})")
        out.append(p)
        f = (config_dir or REPO / "config") / f"{p}.yaml"
        p = (yaml.safe_load(f.read_text()) or {}).get("extends") if f.is_file() else None
    return tuple(reversed(out))


def load_grid(path: str | Path) -> dict:
    """A grid file (`grid:` entries, optional `data:` and paper sections such as `studies:`) with the files its
    `include:` names (relative to it) read first: lists are concatenated in that order, mappings merged (its own
    keys win), other values its own."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: grid file not found") from None
    out: dict = {"grid": [], "data": {}}
    for part in [*(load_grid(path.parent / rel) for rel in cfg.get("include") or []), cfg]:
        for key, value in part.items():
            if key == "include":
                continue
            if isinstance(value, list) and isinstance(out.get(key), list):
                out[key] = out[key] + value
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


def speed_file(profile: str, results_dir: str | Path, config_dir: Path | None = None) -> str:
    """The speed suite's output a profile's claims read: its `speed:` key (a tier shares its base's), by default
    <results>/speed/<profile>.json. It is measured by hand on an idle machine, never by the DAG."""
    f = (config_dir or REPO / "config") / f"{profile}.yaml"
    cfg = (yaml.safe_load(f.read_text()) or {}) if f.is_file() else {}
    return str(cfg.get("speed") or f"{results_dir}/speed/{profile}.json")


def paths(profile: str, results_dir: str | Path, runs_dir: str | Path) -> dict[str, str]:
    """What a `from_file` statistic's path may name: {results}, {runs_dir}, {profile}, {speed}."""
    return {"results": str(results_dir), "runs_dir": str(runs_dir), "profile": profile,
            "speed": speed_file(profile, results_dir)}
