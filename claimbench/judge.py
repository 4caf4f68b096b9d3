"""From a study's runs to its verdict under the claim's pre-registered test: premises first (a failed
one makes the claim `out_of_scope`), then the test, then its placebo (a test that passes on runs where
the claim cannot hold decides nothing), then the verdict's stability over bootstrap resamples of the
seeds, and for an undecided claim the seeds that would decide it (the power planner).

Holm's correction across a paper's tested claims is applied afterwards, over all studies (`holm`).
"""

from __future__ import annotations

import math

from claimbench import hypotheses as H
from claimbench.verdicts import evaluate

OUT_OF_SCOPE, UNINFORMATIVE = "out_of_scope", "uninformative"
STABLE = 0.9  # a decided verdict must survive this share of bootstrap resamples of its seeds
SPLIT_SEEDS = 4  # a split placebo compares two halves of >= 2 seeds each


def premises(claim, values: dict) -> str | None:
    """The name of the first premise that does not hold, else None."""
    for prem in claim.premises:
        if not evaluate(prem["holds_if"], values):
            return prem["name"]
    return None


def test_arms(claim) -> list[str]:
    return list(claim.test.get("arms") or claim.statistic.get("arms", [])[:2])


def run_test(claim, arm_values: dict[str, dict], values: dict, arms: list[str] | None = None,
             relax: bool = False) -> H.Outcome:
    t = {**claim.test, "min_seeds": 2} if relax else claim.test
    kind = t["kind"]
    if kind in H.ARM_TESTS:
        a, b = arms or test_arms(claim)
        return H.TESTS[kind](t, arm_values[a], arm_values[b])
    if kind == "hit_rate":
        chance, null = values.get("chance"), values.get("null_hits")
        return H.hit_rate(t, int(values.get("hits", 0)), list(chance) if isinstance(chance, list) else [],
                          list(null) if isinstance(null, list) else None)
    n = values.get("n")
    return H.interval(t, _f(values.get("estimate")), _f(values.get("ci_lo")), _f(values.get("ci_hi")),
                      int(n) if isinstance(n, (int, float)) and math.isfinite(n) else None)


PLACEBO_PREFIX = "placebo_"  # a from_file statistic's placebo block, as values (placebo_estimate, placebo_n, ...)


def placebo_values(values: dict) -> dict:
    """The placebo block an analysis stage computed on the claim's placebo runs, under the statistic's names."""
    return {k[len(PLACEBO_PREFIX):]: v for k, v in values.items() if k.startswith(PLACEBO_PREFIX)}


def placebo(claim, arm_values: dict[str, dict], values: dict) -> H.Outcome | None:
    """The test on the placebo's runs (another arm against the reference, one arm's seeds split in two, the
    block an analysis stage computed on the placebo's runs, or the statistic on the same runs read off another
    metric)."""
    pl = claim.placebo
    if not pl:
        return None
    if "from_file" in pl or "metric" in pl:
        pv = placebo_values(values)
        if pv.get("n") == 0:  # the analysis had no placebo runs (e.g. one LR only): unchecked, never "passed"
            return H.Outcome("unchecked", pv.get("reason") or "no placebo runs at this tier", values={"have": 0})
        return run_test(claim, {}, pv, relax=True)
    if claim.test["kind"] not in H.ARM_TESTS:
        return None
    if "arms" in pl:
        return run_test(claim, arm_values, values, list(pl["arms"]), relax=True)
    vals = arm_values[pl["split"]]
    keys = sorted(vals, key=str)
    half = len(keys) // 2
    if half < 2:  # two halves of one seed each test nothing: say so rather than "passed"
        return H.Outcome("unchecked", f"a split placebo needs >= {SPLIT_SEEDS} seeds of {pl['split']} "
                                      f"(has {len(keys)})", values={"have": len(keys)})
    first = {("x", i): vals[k] for i, k in enumerate(keys[:half])}
    second = {("y", i): vals[k] for i, k in enumerate(keys[half:2 * half])}
    return run_test(claim, {"x": first, "y": second}, values, ["x", "y"], relax=True)


def seed_plan(n: int, arms: dict[str, tuple[int, int]], cost_s: float | None) -> dict:
    """n seeds in each of these arms (arm -> (seeds, runs) it has; a seed of an arm with a sweep is one run per
    point): the runs that makes in all, the runs still to train, and their CPU-min at `cost_s` a run."""
    per_seed = {a: runs / seeds if seeds else 1 for a, (seeds, runs) in arms.items()}
    todo = round(sum(max(0, n - seeds) * per_seed[a] for a, (seeds, _) in arms.items()))
    return {"seeds": n, "runs": round(n * sum(per_seed.values())), "to_train": todo,
            "cpu_min": round(todo * cost_s / 60, 1) if cost_s else None}


def judge(claim, arm_values: dict[str, dict], values: dict, cost_s: float | None,
          arm_runs: dict[str, tuple[int, int]] | None = None) -> dict:
    """verdict, why, test outcome values, placebo, stability and plan for one claim. `arm_runs`: the seeds and
    runs each of the claim's arms has (what the planner counts as trained); without it, `arm_values`' seeds."""
    if arm_runs is None:
        arm_runs = {a: (len(v), len(v)) for a, v in arm_values.items()}
    out: dict = {"test": claim.test["kind"] if claim.test else None, "p": None, "placebo": None,
                 "stability": None, "plan": None}
    failed = premises(claim, values)
    if failed:
        return {**out, "verdict": OUT_OF_SCOPE, "why": f"premise fails: {failed}"}
    if not claim.test:
        return out
    o = run_test(claim, arm_values, values)
    out.update(verdict=o.verdict, why=o.why, p=o.p, estimate=o.estimate, ci=[o.ci_lo, o.ci_hi], outcome=o.values)
    pl = placebo(claim, arm_values, values)
    if pl is not None and pl.verdict == "unchecked" and "split" not in claim.placebo:
        out["placebo"] = f"unchecked ({pl.why})"
    elif pl is not None and pl.verdict == "unchecked":
        out["placebo"] = f"unchecked ({pl.values['have']} seeds; the split needs >= {SPLIT_SEEDS})"
        out["placebo_plan"] = {"arm": claim.placebo["split"], "seeds": SPLIT_SEEDS, "have": pl.values["have"]}
    elif pl is not None:
        out["placebo"] = "passed" if pl.verdict != H.REPRODUCED else "FAILED"
        if pl.verdict == H.REPRODUCED:
            if (claim.placebo or {}).get("if_passes") == OUT_OF_SCOPE:
                why = claim.placebo.get("why", "the placebo passes too: nothing for the method to fix at this scale")
                return {**out, "verdict": OUT_OF_SCOPE, "why": why}
            out["placebo"] = UNINFORMATIVE
            if o.verdict == H.REPRODUCED:
                out.update(verdict=H.INCONCLUSIVE, why=f"uninformative: the placebo passes too ({pl.why})")
    if claim.test["kind"] in H.ARM_TESTS:
        a, b = test_arms(claim)
        if out["verdict"] in (H.REPRODUCED, H.NOT_REPRODUCED):
            st = H.stability(claim.test, arm_values[a], arm_values[b], out["verdict"])
            out["stability"] = st
            if st < STABLE:
                out.update(verdict=H.INCONCLUSIVE, why=f"unstable: {out['verdict']} in only {st:.0%} of seed "
                                                       f"resamples ({o.why})")
        if out["verdict"] == H.INCONCLUSIVE:
            n = H.seeds_needed(claim.test, arm_values[a], arm_values[b])
            if n is not None:  # the two tested arms
                out["plan"] = seed_plan(n, {x: arm_runs.get(x, (0, 0)) for x in (a, b)}, cost_s)
    elif claim.test["kind"] == "interval" and isinstance(values.get("per_seed"), list):
        # a seed of such a statistic is a run in every arm (e.g. each level's base and +LRM)
        _seed_checks(claim, values["per_seed"], out, o, cost_s,
                     arm_runs or {"all": (len(values["per_seed"]),) * 2})
    elif claim.test["kind"] == "hit_rate" and out["verdict"] == H.INCONCLUSIVE and o.values.get("cases"):
        # the planner of a hit-rate test: the hits its cases need for p < alpha (None: more cases are needed)
        out["plan"] = {"cases": o.values["cases"], "hits_needed": o.values.get("hits_needed"),
                       "p_all_hit": o.values.get("p_all_hit")}
    if out["verdict"] == H.INCONCLUSIVE and not out["plan"]:
        out["plan"] = {"why": _no_plan(claim, values)}
    return out


def _no_plan(claim, values: dict) -> str:
    """Why an undecided claim has no seed count: the line its page shows in the plan's place."""
    kind = claim.test["kind"]
    if kind == "hit_rate":
        chance = values.get("chance")
        if isinstance(chance, list) and chance:
            alpha, p0, k = float(claim.test.get("alpha", 0.05)), sum(chance) / len(chance), 1
            while p0 ** k >= alpha and k < 100:
                k += 1
            return (f"more cases, not seeds (seeds only steady each case's best): at the mean chance of a hit "
                    f"({p0:.2f}) a hit-rate test needs at least {k} cases, all hit, for p < {alpha:g}; it has "
                    f"{len(chance)}")
        return "more cases, not seeds: the analysis reported no cases"
    if kind == "interval":
        return ("the statistic carries no per-seed values (its analysis reports one number with its interval), so "
                "no seed count can be planned; more seeds narrow the interval")
    return "the observed spread gives no estimate (a zero or undefined spread, or fewer than 2 seeds an arm)"


def _seed_checks(claim, per_seed: list, out: dict, o: H.Outcome, cost_s: float | None,
                 arm_runs: dict[str, tuple[int, int]]) -> None:
    """Stability and the seed plan of an interval test whose statistic carries its per-seed values."""
    level = float(claim.statistic.get("level", 0.95))
    if out["verdict"] in (H.REPRODUCED, H.NOT_REPRODUCED):
        st = H.interval_stability(claim.test, per_seed, out["verdict"], level)
        out["stability"] = st
        if st is not None and st < STABLE:
            out.update(verdict=H.INCONCLUSIVE, why=f"unstable: {out['verdict']} in only {st:.0%} of seed "
                                                   f"resamples ({o.why})")
    if out["verdict"] == H.INCONCLUSIVE:
        n = H.interval_seeds_needed(claim.test, per_seed, level)
        if n is not None:
            out["plan"] = seed_plan(n, arm_runs, cost_s)


def holm(studies: list[dict], alpha_default: float = 0.05) -> None:
    """Holm-adjust the p-values of each paper's tested claims; a `reproduced` whose adjusted p is not
    below its alpha becomes `inconclusive`."""
    from statsmodels.stats.multitest import multipletests

    by_paper: dict[str, list[dict]] = {}
    for s in studies:
        if s.get("p") is not None and math.isfinite(s["p"]) and s["verdict"] != "not_run":
            by_paper.setdefault(s["paper"], []).append(s)
    for group in by_paper.values():
        adj = multipletests([s["p"] for s in group], method="holm")[1]
        for s, p in zip(group, adj, strict=True):
            s["p_holm"] = float(p)
            alpha = s.get("alpha", alpha_default)
            if s["verdict"] == H.REPRODUCED and p >= alpha:
                s["verdict"], s["why"] = H.INCONCLUSIVE, f"Holm-adjusted p={p:.3g} >= {alpha} ({s['why']})"


def _f(x) -> float:
    return float(x) if isinstance(x, (int, float)) else math.nan
