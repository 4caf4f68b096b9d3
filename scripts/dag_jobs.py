"""The jobs a dry run of the DAG lists, per paper selection: a JSON snapshot to compare two checkouts by.

  python scripts/dag_jobs.py --out before.json          # in one checkout
  python scripts/dag_jobs.py --out after.json           # in another
  python scripts/dag_jobs.py --compare before.json after.json

A job is its rule and its output files; the comparison is on the set of output files (a rule renamed
or merged into another with the same outputs is the same job) and prints what differs.
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


def selections() -> dict[str, list[str]]:
    """label -> extra snakemake arguments"""
    out = {"smoke": ["--profile", "config/smoke"]}
    for p in PAPERS:
        out[p] = ["--profile", "config/smoke", "--config", f"papers=[{p}]"]
    out["all"] = ["--profile", "config/smoke", "--config", f"papers=[{','.join(PAPERS)}]"]
    out["jreg-smoke"] = ["--configfile", "config/jreg-smoke.yaml", "--cores", "2"]
    return out


def jobs(args: list[str], forceall: bool) -> dict:
    cmd = [sys.executable, "-m", "snakemake", "-n", *args, *(["--forceall"] if forceall else [])]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    found: list[tuple[str, list[str]]] = []
    rule = None
    for line in (r.stdout + r.stderr).splitlines():
        m = _RULE.match(line)
        if m:
            rule = m.group(1)
            found.append((rule, []))
            continue
        m = _OUT.match(line)
        if m and found:
            found[-1][1].extend(s.strip() for s in m.group(1).split(", "))
    return {"jobs": sorted([r, sorted(o)] for r, o in found), "wall_s": round(wall, 1)}


def snapshot() -> dict:
    sel = selections()
    todo = [(label, force) for label in sel for force in (False, True)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        res = list(pool.map(lambda t: jobs(sel[t[0]], t[1]), todo))
    return {f"{label}{' --forceall' if force else ''}": r for (label, force), r in zip(todo, res, strict=True)}


def outputs(entry: dict) -> set[str]:
    return {o for _, outs in entry["jobs"] for o in outs} | {f"<{r} without output>" for r, o in entry["jobs"] if not o}


def compare(before: dict, after: dict) -> bool:
    same = True
    for label in before:
        b, a = outputs(before[label]), outputs(after.get(label, {"jobs": []}))
        nb, na = len(before[label]["jobs"]), len(after.get(label, {"jobs": []})["jobs"])
        status = "same" if a == b and nb == na else "DIFFERS"
        print(f"{label}: {nb} jobs / {len(b)} outputs before, {na} jobs / {len(a)} outputs after: {status}")
        for o in sorted(b - a):
            print(f"   only before: {o}")
        for o in sorted(a - b):
            print(f"   only after:  {o}")
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
