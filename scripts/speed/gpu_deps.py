"""The project's runtime dependency closure at the versions installed here, for `gpu_wheels.sh`.

Walks `importlib.metadata` from pyproject.toml's `dependencies` (markers evaluated for this interpreter, extras
followed where a requirement names them) and prints one `name==version` a line, sorted. Packages a GPU image
brings itself are left out: the torch stack always (`torch`, `torchvision`, `triton`, `nvidia-*`, `cuda-*`), and
with `--skip NAME ...` more (gpu_wheels.sh passes the heavy compiled packages the lent machines' image already
has). Offline: it reads the installed distributions, never a registry.

    python scripts/speed/gpu_deps.py [--skip numpy scipy ...]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
ALWAYS_SKIP = ("torch", "torchvision", "torchaudio", "triton")
ALWAYS_SKIP_PREFIXES = ("nvidia-", "cuda-")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def skipped(name: str, skip: set[str]) -> bool:
    n = norm(name)
    return n in skip or n in ALWAYS_SKIP or n.startswith(ALWAYS_SKIP_PREFIXES)


def closure(roots: list[str], skip: set[str]) -> dict[str, str]:
    """name -> installed version for every distribution the roots need (skipped ones and their needs left out)."""
    found: dict[str, str] = {}
    todo = [(Requirement(r), frozenset()) for r in roots]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        req, parent_extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in parent_extras or {""}):
            continue
        name = norm(req.name)
        if skipped(name, skip) or (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"gpu_deps: {req.name} is required but not installed in {sys.prefix}")
        found[name] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            todo.append((sub, frozenset(req.extras)))
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip", nargs="*", default=[], help="more distributions to leave out (with their own needs)")
    a = p.parse_args(argv)
    roots = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, version in sorted(closure(roots, {norm(s) for s in a.skip}).items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
