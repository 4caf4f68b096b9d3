"""Claim C7 ("gains are not uniform: some tasks regress"): per-task JREG - baseline from lm_eval.json.

Runs are read through `claimbench.evidence` (the runs directory, else the evidence store). A task
regresses when a one-sided paired t-test over seeds (scipy) finds JREG's accuracy lower at ALPHA; so each
task is a hit by chance with probability ALPHA, which is the chance list the claim's exact hit-rate test
reads. A diverged run scores chance on every task (a miss, never dropped). Only accuracy-type scores count
(a perplexity is better when lower: it would flip the direction); a task whose both arms sit within
AT_CHANCE of chance in every seed is not a case (a regression there is noise). The hit count carries a
bootstrap-over-seeds interval and its n.

    python -m methods.jreg.tasks --runs-dir runs/smoke --store results/evidence/smoke \
        --jreg <run_id> ... --base <run_id> ... --out FILE
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np
from scipy import stats as sps

from claimbench.config import ConfigError
from claimbench.evidence import RunEvidence
from claimbench.io import atomic_write_json
from claimbench.stats import miss_value
from methods.jreg.runs import LEVEL, N_BOOT, load_runs, run_config

ALPHA = 0.05  # each task's one-sided test level: its chance of a false hit
AT_CHANCE = 0.02  # both arms this close to chance in every seed: the task measures nothing at this scale
ACC_KEYS = ("acc", "acc_norm", "exact_match")  # higher is better


def accuracy(doc: dict, task: str) -> float | None:
    """The task's accuracy-type score in lm-eval's `results` (`acc`, else `acc_norm`, else `exact_match`)."""
    res = doc.get("results", {}).get(task, {})
    for key in ACC_KEYS:
        for k in (f"{key},none", key):
            if isinstance(res.get(k), (int, float)) and not isinstance(res.get(k), bool):
                return float(res[k])
    return None


def _acc_chance(doc: dict, task: str) -> float | None:
    """Chance accuracy of a task as lm_eval.json stores it ({task: {metric: value}})."""
    c = doc.get("chance", {}).get(task)
    c = c.get("acc") if isinstance(c, dict) else c
    return float(c) if isinstance(c, (int, float)) else None


def arm_docs(runs: list[RunEvidence]) -> dict[int, dict | None]:
    """seed -> lm_eval.json, or None for a diverged run (a miss)."""
    out: dict[int, dict | None] = {}
    for ev in runs:
        seed = run_config(ev)["seed"]
        out[seed] = None if ev.status == "diverged" else (ev.lm_eval() or {})
    return out


def _one_sided(a: np.ndarray, b: np.ndarray, alternative: str) -> float:
    """p of a paired t-test; 1 when it is undefined (fewer than 2 seeds, or no difference at all)."""
    if len(a) < 2 or np.all(a == b):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical differences: scipy warns, p is still right
        p = float(sps.ttest_rel(a, b, alternative=alternative).pvalue)
    return p if math.isfinite(p) else 1.0


def _cases(jreg: dict[int, dict | None], base: dict[int, dict | None]) -> tuple[list[int], dict, dict]:
    """(paired seeds, task -> (jreg scores, base scores, chance) for the cases, task -> why it is not a case)."""
    seeds = sorted(set(jreg) & set(base))
    docs = [d for d in [*jreg.values(), *base.values()] if d]
    tasks = sorted(set().union(*(d.get("results", {}) for d in docs))) if docs else []
    cases, skipped = {}, {}
    for task in tasks:
        chance = next((c for d in docs if (c := _acc_chance(d, task)) is not None), None)
        miss = miss_value("higher", chance)
        a = [miss if jreg[s] is None else accuracy(jreg[s], task) for s in seeds]
        b = [miss if base[s] is None else accuracy(base[s], task) for s in seeds]
        if any(x is None for x in a + b):
            skipped[task] = "no accuracy-type score in every run (e.g. a perplexity)"
            continue
        if chance is not None and all(abs(x - chance) <= AT_CHANCE for x in a + b):
            skipped[task] = f"both arms within {AT_CHANCE} of chance ({chance}) in every seed"
            continue
        cases[task] = (np.array(a), np.array(b), chance)
    return seeds, cases, skipped


def _hits(cases: dict, idx: np.ndarray | None = None) -> int:
    return sum(_one_sided(a if idx is None else a[idx], b if idx is None else b[idx], "less") < ALPHA
               for a, b, _ in cases.values())


def compare(jreg: dict[int, dict | None], base: dict[int, dict | None], seed: int = 0) -> dict:
    """The C7 record: hits (n_regressed) with a bootstrap-over-seeds interval, n (paired seeds), the chance list."""
    seeds, cases, skipped = _cases(jreg, base)
    rows = {}
    for task, (a, b, chance) in cases.items():
        d = a - b
        rows[task] = {"diff_mean": float(d.mean()), "n": len(d), "chance": chance,
                      "p_regressed": _one_sided(a, b, "less"), "p_improved": _one_sided(a, b, "greater")}
        rows[task]["regressed"] = rows[task]["p_regressed"] < ALPHA
        rows[task]["improved"] = rows[task]["p_improved"] < ALPHA
    hits = sum(r["regressed"] for r in rows.values())
    lo = hi = math.nan
    if len(seeds) >= 2 and cases:
        rng = np.random.default_rng(seed)
        draws = [_hits(cases, rng.integers(0, len(seeds), len(seeds))) for _ in range(N_BOOT)]
        lo, hi = (float(q) for q in np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    return {"seeds": seeds, "n_seeds": len(seeds), "n_tasks": len(rows) + len(skipped), "n_cases": len(rows),
            "n_regressed": hits, "n_regressed_ci_lo": lo, "n_regressed_ci_hi": hi, "level": LEVEL,
            "chance": [ALPHA] * len(rows), "n_improved": sum(r["improved"] for r in rows.values()),
            "n_diverged_jreg": sum(d is None for d in jreg.values()),
            "n_diverged_base": sum(d is None for d in base.values()),
            "average_diff": float(np.mean([r["diff_mean"] for r in rows.values()])) if rows else None,
            "tasks": rows, "skipped": skipped,
            "rule": f"regressed: one-sided paired t-test over seeds, p < {ALPHA} (each case's chance of a hit); "
                    "a diverged run scores chance; interval: percentile bootstrap over seeds"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs-dir", required=True, help="where runs are trained")
    p.add_argument("--store", default=None, help="the evidence store, read where the runs directory lacks a run")
    p.add_argument("--jreg", nargs="+", required=True, help="run ids of the JREG arm")
    p.add_argument("--base", nargs="+", required=True, help="run ids of the baseline arm")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        jreg = load_runs(args.jreg, args.runs_dir, args.store)
        base = load_runs(args.base, args.runs_dir, args.store)
        result = compare(arm_docs(jreg), arm_docs(base))
    except ConfigError as e:
        print(f"methods.jreg.tasks: error: {e}", file=sys.stderr)
        return 2
    result["runs"] = {"jreg": [ev.run_id for ev in jreg], "base": [ev.run_id for ev in base]}
    atomic_write_json(args.out, result)
    print(f"{args.out}: {result['n_regressed']} of {result['n_cases']} tasks regressed, {result['n_improved']} "
          f"improved ({result['n_tasks'] - result['n_cases']} not cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
