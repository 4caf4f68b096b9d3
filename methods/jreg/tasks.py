"""Claim C7 ("gains are not uniform: some tasks regress"): per-task JREG - baseline from lm_eval.json.

A task regresses (improves) when its seed-paired accuracy difference is below (above) zero by more than
two standard errors over seeds. Writes {n_regressed, n_improved, average_diff, tasks: {...}} for the claim
`jreg.c7_task_regressions` (statistic kind from_file, key n_regressed). Tasks whose both arms sit within
2 points of chance are flagged `at_chance`: a regression there is noise, not a finding.

    python -m methods.jreg.tasks --jreg runs/smoke/<id> ... --base runs/smoke/<id> ... --out FILE
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import yaml

from claimbench.io import atomic_write_json


def accuracy(doc: dict, task: str) -> float | None:
    """acc (or the first non-stderr number) of a task in lm-eval's `results`."""
    res = doc.get("results", {}).get(task, {})
    for key in ("acc,none", "acc"):
        if isinstance(res.get(key), (int, float)):
            return float(res[key])
    nums = [v for k, v in res.items() if isinstance(v, (int, float)) and "stderr" not in k and k != "alias"]
    return float(nums[0]) if nums else None


def _acc_chance(doc: dict, task: str) -> float | None:
    """Chance accuracy of a task as lm_eval.json stores it ({task: {metric: value}})."""
    c = doc.get("chance", {}).get(task)
    c = c.get("acc") if isinstance(c, dict) else c
    return float(c) if isinstance(c, (int, float)) else None


def by_seed(run_dirs: list[str]) -> dict[int, dict]:
    out = {}
    for d in map(Path, run_dirs):
        seed = yaml.safe_load((d / "config.yaml").read_text())["seed"]
        out[seed] = json.loads((d / "lm_eval.json").read_text())
    return out


def compare(jreg: dict[int, dict], base: dict[int, dict]) -> dict:
    seeds = sorted(set(jreg) & set(base))
    tasks = sorted(set().union(*(doc.get("results", {}) for doc in [*jreg.values(), *base.values()])))
    rows, diffs_all = {}, []
    for task in tasks:
        pairs = [(accuracy(jreg[s], task), accuracy(base[s], task)) for s in seeds]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        d = [a - b for a, b in pairs]
        mean = statistics.fmean(d)
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.inf
        chance = next((_acc_chance(doc, task) for doc in base.values() if _acc_chance(doc, task) is not None), None)
        at_chance = chance is not None and all(abs(x - chance) <= 0.02 for p in pairs for x in p)
        rows[task] = {"diff_mean": mean, "diff_se": se, "n": len(d), "chance": chance, "at_chance": at_chance,
                      "regressed": mean < 0 and -mean > 2 * se, "improved": mean > 0 and mean > 2 * se}
        diffs_all.append(mean)
    return {"seeds": seeds, "n_tasks": len(rows), "n_regressed": sum(r["regressed"] for r in rows.values()),
            "n_improved": sum(r["improved"] for r in rows.values()),
            "average_diff": statistics.fmean(diffs_all) if diffs_all else None,
            "all_at_chance": bool(rows) and all(r["at_chance"] for r in rows.values()), "tasks": rows,
            "rule": "regressed: seed-paired mean diff < 0 by more than 2 SE over seeds"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jreg", nargs="+", required=True, help="run directories of the JREG arm")
    p.add_argument("--base", nargs="+", required=True, help="run directories of the baseline arm")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    result = compare(by_seed(args.jreg), by_seed(args.base))
    atomic_write_json(args.out, result)
    print(f"{args.out}: {result['n_regressed']} of {result['n_tasks']} tasks regressed, {result['n_improved']} "
          f"improved (average diff {result['average_diff']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
