"""The jobs a dry run of the DAG lists, per paper selection: a JSON snapshot to compare two checkouts by.

  python scripts/dag_jobs.py --out before.json          # in one checkout
  python scripts/dag_jobs.py --out after.json           # in another
  python scripts/dag_jobs.py --compare before.json after.json

A job is its rule, its output files and its input files; the comparison is on the set of output files (a rule
renamed or merged into another with the same outputs is the same job) and, job by job, on the input files (the
edges of the DAG); it prints what differs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPERS = ["flerm", "jreg", "lrm", "nowarmup", "optlaws"]
_RULE = re.compile(r"^(?:local)?rule (\w+):")
_OUT = re.compile(r"^\s+output: (.*)$")
_IN = re.compile(r"^\s+input: (.*)$")


def selections() -> dict[str, list[str]]:
    """label -> extra snakemake arguments"""
    out = {"smoke": ["--profile", "config/smoke"]}
    for p in PAPERS:
        out[p] = ["--profile", "config/smoke", "--config", f"papers=[{p}]"]
    out["all"] = ["--profile", "config/smoke", "--config", f"papers=[{','.join(PAPERS)}]"]
    return out


def jobs(args: list[str], forceall: bool) -> dict:
    cmd = [sys.executable, "-m", "snakemake", "-n", *args, *(["--forceall"] if forceall else [])]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    found: list[tuple[str, list[str], list[str]]] = []
    for line in (r.stdout + r.stderr).splitlines():
        m = _RULE.match(line)
        if m:
            found.append((m.group(1), [], []))
            continue
        for pattern, i in ((_OUT, 1), (_IN, 2)):
            m = pattern.match(line)
            if m and found:  # files of the checkout relative to it, so two checkouts compare
                found[-1][i].extend(s.strip().removeprefix(f"{REPO}/") for s in m.group(1).split(", "))
    return {"jobs": sorted([r, sorted(o), sorted(i)] for r, o, i in found), "wall_s": round(wall, 1)}


def snapshot() -> dict:
    sel = selections()
    todo = [(label, force) for label in sel for force in (False, True)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        res = list(pool.map(lambda t: jobs(sel[t[0]], t[1]), todo))
    return {f"{label}{' --forceall' if force else ''}": r for (label, force), r in zip(todo, res, strict=True)}


def outputs(entry: dict) -> set[str]:
    return {o for _, outs, *_ in entry["jobs"] for o in outs} | {f"<{j[0]} without output>" for j in entry["jobs"]
                                                                  if not j[1]}


def inputs(entry: dict) -> dict[tuple[str, ...], set[str]]:
    """A job's outputs -> its inputs (files only: Snakemake prints a directory input like any other)."""
    return {tuple(j[1]) or (j[0],): set(j[2]) for j in entry["jobs"] if len(j) > 2}


def compare(before: dict, after: dict) -> bool:
    same = True
    for label in before:
        aft = after.get(label, {"jobs": []})
        b, a = outputs(before[label]), outputs(aft)
        ib, ia = inputs(before[label]), inputs(aft)
        lines = [f"   only before: {o}" for o in sorted(b - a)] + [f"   only after:  {o}" for o in sorted(a - b)]
        lines += [f"   inputs of {job[0]}: only before {sorted(ib[job] - ia[job])}, only after "
                  f"{sorted(ia[job] - ib[job])}" for job in sorted(set(ib) & set(ia)) if ib[job] != ia[job]]
        nb, na = len(before[label]["jobs"]), len(aft["jobs"])
        status = "same" if not lines and nb == na else "DIFFERS"
        print(f"{label}: {nb} jobs / {len(b)} outputs before, {na} jobs / {len(a)} outputs after: {status}"
              + (" (inputs compared)" if ib and ia else ""))
        print("\n".join(lines[:40]) + ("\n   ..." if len(lines) > 40 else "") if lines else "", end="")
        same &= status == "same"
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2)
    args = ap.parse_args()
    if args.compare:
        b, a = (json.loads(Path(p).read_text()) for p in args.compare)
        return 0 if compare(b, a) else 1
    snap = snapshot()
    Path(args.out).write_text(json.dumps(snap, indent=1))
    for label, r in snap.items():
        print(f"{label}: {len(r['jobs'])} jobs, {r['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
