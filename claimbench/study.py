"""One claim at one profile: read its runs, compute its statistic, apply its rule.

The study is the unit the `study` rule writes to `results/studies/<claim>.json` and the tables
read. Statistics are looked up by name (`claimbench.statistics`); every kind names its outputs
(`output_names`), so a rule that reads a name the statistic does not produce is an error when the claims are
loaded, not a silent `inconclusive`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from claimbench import stats
from claimbench.config import parse_value
from claimbench.evidence import RunEvidence, locate, metric_value, provenance, read_run
from claimbench.statistics import register_statistic, statistic
from claimbench.tiers import paths
from claimbench.verdicts import decide

if TYPE_CHECKING:
    from claimbench.grid import RunSpec

Claim = Any  # a claimbench.claims.Claim, not imported: the claims loader imports this module (output_names)

COMMON = {"estimate", "ci_lo", "ci_hi"}
PER_ARM = ("mean", "sd", "n", "min", "max")  # what the statistic reports of each arm's values


def output_names(stat: dict) -> set[str]:
    """Names a rule may read for this statistic (with the claim's arm names filled in)."""
    arms = stat.get("arms") or ([stat["arm"]] if stat.get("arm") else [])
    per_arm = {f"{p}_{a}" for a in arms for p in (*PER_ARM, "diverged_frac", "diverged")}
    return statistic(stat["kind"]).outputs(stat, per_arm)


def _sets(spec: RunSpec) -> dict:
    return {k: parse_value(v) for k, v in (s.split("=", 1) for s in spec.sets)}


def _value(ev: RunEvidence, stat: dict) -> float | None:
    if ev.status == "diverged" and stat.get("diverged", "miss") == "miss":
        return stats.miss_value(stat.get("direction", "lower"), stat.get("chance"))
    return metric_value(ev, stat["metric"])


def run_study(claim: Claim, profile: str, runs_dir: str | Path, results_dir: str | Path,
              unknown: list[str] | None = None, store: str | Path | None = None) -> dict:
    """The study dict: verdict, the numbers behind it, the runs it used and their provenance.

    Runs are read from `runs_dir`, or from the evidence `store` where `runs_dir` lacks them; each run's
    `link` names its place in the store (when there is one), so a table does not depend on where it was read.
    """
    stat, rule = claim.statistic, claim.rule
    if (claim.placebo or {}).get("from_file"):  # the statistic's file carries the placebo's block too
        stat = {**stat, "placebo_key": claim.placebo["from_file"]}
    arms = claim.arms(profile)
    base = {"claim": claim.id, "paper": claim.paper["id"], "profile": profile, "statistic": stat["kind"],
            "metric": stat.get("metric"), "values": {}, "estimate": None, "ci": None, "runs": {}, "missing": [],
            "provenance": {"git_shas": [], "mixed_code": False, "config_hashes": {}, "versions": []},
            "scale": describe_scale(claim, profile)}
    if unknown:
        return {**base, "verdict": "not_run", "why": f"not implemented yet: {', '.join(unknown)}"}
    if not arms:
        return {**base, "verdict": "not_run", "why": f"no grid at profile '{profile}'"}
    evidence: dict[str, list[RunEvidence]] = {}
    missing = []
    for arm, specs in arms.items():
        entry = claim.grid_at(profile)[arm]
        rows = []
        for rid, spec in specs.items():
            ev = read_run(locate(rid, runs_dir, store))
            ev.sets = _sets(spec)
            ev.key = tuple(json.dumps(ev.sets.get(k)) for k in sorted(entry.get("sweep", {}))) + (ev.sets.get("seed"),)
            if ev.usable and stat.get("metric") and statistic(stat["kind"]).needs_metric \
                    and _value(ev, stat) is None:
                ev.status, ev.problem = "missing", f"no value for {stat['metric']}"
            if not ev.usable:
                missing.append(f"{rid} ({ev.problem})")
            rows.append(ev)
        evidence[arm] = rows
    base["runs"] = {arm: [{"run_id": ev.run_id, "run_dir": str(ev.run_dir), "status": ev.status, "sets": ev.sets,
                           "link": str(Path(store) / ev.run_id) if store is not None else str(ev.run_dir)}
                          for ev in rows] for arm, rows in evidence.items()}
    base["provenance"] = provenance([ev for rows in evidence.values() for ev in rows])
    if missing:
        n = sum(len(r) for r in evidence.values())
        return {**base, "missing": missing, "verdict": "not_run",
                "why": f"{n - len(missing)}/{n} runs present; missing: {', '.join(missing[:3])}"
                       + (" ..." if len(missing) > 3 else "")}
    # each run's metric value, read once: the statistic and the claim's test both use it
    per_arm = arm_values(stat, evidence) if claim.test or claim.premises or statistic(stat["kind"]).arm_values \
        else {}
    where = paths(profile, results_dir, runs_dir)
    try:
        values = compute(stat, evidence, claim.grid_at(profile), where, per_arm)
        if (claim.placebo or {}).get("metric"):  # the same statistic on the same runs, read off the placebo's metric
            pv = compute({**stat, "metric": claim.placebo["metric"]}, evidence, claim.grid_at(profile), where)
            values.update({f"placebo_{k}": pv[k] for k in ("estimate", "ci_lo", "ci_hi", "n") if k in pv})
    except FileNotFoundError as e:
        return {**base, "verdict": "not_run", "why": f"analysis output missing: {e.filename}"}
    except (KeyError, TypeError, ValueError) as e:  # an analysis file without the key the claim reads
        if stat["kind"] != "from_file":
            raise
        warnings.warn(f"{claim.id}: {stat.get('path', '')}: no usable value at '{stat.get('key')}' ({e!r})",
                      stacklevel=2)
        return {**base, "verdict": "not_run", "why": f"analysis output lacks '{stat.get('key')}'"}
    verdict, why = decide(rule, values, profile) if rule else ("inconclusive", "no rule")
    lo, hi = values.get("ci_lo"), values.get("ci_hi")
    if verdict in ("reproduced", "not_reproduced") and not claim.test and not _interval_ok(lo, hi):
        verdict, why = "inconclusive", f"no interval behind the number (would be {verdict}: {why})"
    out = {**base, "values": _clean(values), "estimate": _num(values.get("estimate")),
           "ci": [_num(values.get("ci_lo")), _num(values.get("ci_hi"))], "verdict": verdict, "why": why,
           "test": None, "p": None, "placebo": None, "stability": None, "plan": None}
    if claim.test or claim.premises:
        from claimbench.judge import judge

        costs = [ev.result.get("cpu_s") for rows in evidence.values() for ev in rows]
        costs = [c for c in costs if isinstance(c, (int, float))]
        have = {arm: (len({ev.sets.get("seed") for ev in rows}), len(rows)) for arm, rows in evidence.items()}
        j = judge(claim, per_arm, values, float(np.median(costs)) if costs else None, have)
        if "outcome" in j:
            out["values"].update(_clean(j.pop("outcome")))
        if "ci" in j:
            j["ci"] = [_num(x) for x in j["ci"]]
            j["estimate"] = _num(j["estimate"])
        out.update(j)
        out["alpha"] = float((claim.test or {}).get("alpha", 0.05))
    return out


def arm_values(stat: dict, evidence: dict[str, list[RunEvidence]]) -> dict[str, dict]:
    """Per arm, each run's metric value keyed by its pairing key (a diverged run as its miss value)."""
    if not stat.get("metric"):
        return {}
    return {arm: {ev.key: _value(ev, stat) for ev in rows} for arm, rows in evidence.items()}


def compute(stat: dict, evidence: dict[str, list[RunEvidence]], grid: dict, paths: dict,
            arm_vals: dict[str, dict] | None = None) -> dict:
    """The statistic's named values from the runs (all present); `arm_vals` as `arm_values` gives them."""
    st, level = statistic(stat["kind"]), stat.get("level", 0.95)
    out: dict = {}
    if arm_vals is None:
        arm_vals = arm_values(stat, evidence) if st.arm_values else {}
    for arm, rows in evidence.items():
        div = [ev.status == "diverged" for ev in rows]
        out[f"diverged_{arm}"] = int(sum(div))
        out[f"diverged_frac_{arm}"] = sum(div) / len(div) if div else math.nan
        if arm in arm_vals and st.arm_values:
            s = stats.summarize(list(arm_vals[arm].values()), level)
            vals = [v for v in arm_vals[arm].values() if v is not None]
            out.update({f"mean_{arm}": s["mean"], f"sd_{arm}": s["sd"], f"n_{arm}": s["n"],
                        f"min_{arm}": min(vals, default=math.nan), f"max_{arm}": max(vals, default=math.nan)})
    out.update(st.compute(stat, evidence, grid, paths, arm_vals, out))
    return out


# ---- the suite's statistics (a paper's own register from its package) ---------------------------------------

@register_statistic("mean", outputs=lambda stat, per_arm: COMMON | per_arm | {"sd", "n", "diverged_frac"})
def _mean(stat, evidence, grid, paths, arm_vals, out) -> dict:
    arm = stat["arm"]
    s = stats.summarize(list(arm_vals[arm].values()), stat.get("level", 0.95))
    return dict(estimate=s["mean"], ci_lo=s["ci_lo"], ci_hi=s["ci_hi"], sd=s["sd"], n=s["n"],
                diverged_frac=out[f"diverged_frac_{arm}"])


def _two_arm(kind: str):
    def fn(stat, evidence, grid, paths, arm_vals, out) -> dict:
        a, b = stat["arms"]
        level = stat.get("level", 0.95)
        d = stats.difference(arm_vals[a], arm_vals[b], level, method=stat.get("method", "t")) \
            if kind == "difference" else stats.ratio(arm_vals[a], arm_vals[b], level)
        return dict(estimate=d["estimate"], ci_lo=d["ci_lo"], ci_hi=d["ci_hi"], sd=d["sd"], n_a=d["n_a"],
                    n_b=d["n_b"], paired=d["paired"])
    return fn


for _kind in ("difference", "ratio"):
    register_statistic(_kind, outputs=lambda stat, per_arm: COMMON | per_arm | {"sd", "n_a", "n_b", "paired"})(
        _two_arm(_kind))


@register_statistic("diverged_fraction", outputs=lambda stat, per_arm: COMMON | per_arm | {"n", "k"},
                    arm_values=False, needs_metric=False)
def _diverged_fraction(stat, evidence, grid, paths, arm_vals, out) -> dict:
    first = stat["arms"][0]
    d = stats.diverged_fraction([ev.status == "diverged" for ev in evidence[first]], stat.get("level", 0.95))
    return dict(estimate=d["estimate"], ci_lo=d["ci_lo"], ci_hi=d["ci_hi"], n=d["n"], k=d["k"])


@register_statistic("best_of_sweep", outputs=lambda stat, per_arm: COMMON | per_arm | {
    "best", "argbest", "log2_argbest", "at_edge", "resolution"})
def _best_of_sweep(stat, evidence, grid, paths, arm_vals, out) -> dict:
    xs, ys = _curve(evidence[stat["arm"]], stat, stat["over"])
    b = stats.optimum_log2(xs, ys, stat.get("direction", "lower"), stat.get("refine", False))
    return dict(estimate=b["best"], best=b["best"], argbest=b["opt"], log2_argbest=b["log2_opt"],
                at_edge=b["at_edge"], resolution=b["resolution"], ci_lo=b["best"], ci_hi=b["best"])


@register_statistic("optimum_shift", outputs=lambda stat, per_arm: COMMON | {"resolution", "at_edge"} | {
    f"{p}_{a}" for a in stat.get("arms", []) for p in ("shift", "max_abs_shift", "best", "best_base")})
def _optimum_shift_stat(stat, evidence, grid, paths, arm_vals, out) -> dict:
    return _optimum_shift(stat, evidence, grid, stat.get("direction", "lower"))


@register_statistic("from_file", arm_values=False, needs_metric=False,
                    outputs=lambda stat, per_arm: COMMON | set(stat.get("values", {}))
                    | ({"per_seed"} if "per_seed" in stat else set()))
def _from_file(stat, evidence, grid, paths, arm_vals, out) -> dict:
    data = json.loads(Path(stat["path"].format(**paths)).read_text())
    res = {"estimate": _dig(data, stat["key"])}
    lo_k, hi_k = stat.get("ci_keys", [None, None])
    res["ci_lo"] = _dig(data, lo_k) if lo_k else math.nan  # no interval given: none is invented
    res["ci_hi"] = _dig(data, hi_k) if hi_k else math.nan
    res.update({name: _dig(data, key) for name, key in stat.get("values", {}).items()})
    if "per_seed" in stat:
        res["per_seed"] = _dig(data, stat["per_seed"])
    if "placebo_key" in stat:  # the same numbers, computed by the analysis stage on the claim's placebo runs
        block = block_at(data, stat["placebo_key"])
        res.update({f"placebo_{k}": _dig(block, k) for k in ("estimate", "ci_lo", "ci_hi", "n", "hits", "chance")
                    if k in block})
        if "null" in block:  # a hit count's exact null distribution, as the statistic's own `null_hits`
            res["placebo_null_hits"] = _dig(block, "null")
    return res


def _curve(rows: list[RunEvidence], stat: dict, over: str,
           where: tuple[str, object] | None = None) -> tuple[list[float], list[float]]:
    """Mean over seeds of the metric at each value of the `over` sweep key (diverged = miss)."""
    by_x: dict[float, list[float]] = {}
    for ev in rows:
        if where and ev.sets.get(where[0]) != where[1]:
            continue
        by_x.setdefault(float(ev.sets[over]), []).append(_value(ev, stat))
    xs = sorted(by_x)
    return xs, [float(np.mean(by_x[x])) for x in xs]


def _optimum_shift(stat: dict, evidence: dict, grid: dict, direction: str) -> dict:
    over, across = stat["over"], stat["across"]
    out: dict = {"at_edge": False, "resolution": 0.0}
    for arm in stat["arms"]:
        scales = grid[arm]["sweep"][across]
        curves = [_curve(evidence[arm], stat, over, (across, sc)) for sc in scales]
        shifts = []
        for xs_ys in curves[1:]:
            s = stats.optimum_shift(curves[0], xs_ys, direction, stat.get("refine", True))
            shifts.append(s)
            out["resolution"] = max(out["resolution"], s["resolution"])
            out["at_edge"] = out["at_edge"] or s["at_edge"]
        out[f"shift_{arm}"] = shifts[-1]["shift"] if shifts else math.nan
        out[f"max_abs_shift_{arm}"] = max((abs(s["shift"]) for s in shifts), default=math.nan)
        out[f"best_{arm}"] = shifts[-1]["target"]["best"] if shifts else math.nan
        out[f"best_base_{arm}"] = shifts[0]["base"]["best"] if shifts else math.nan
        out[f"shifts_{arm}"] = [s["shift"] for s in shifts]
    first = stat["arms"][0]
    out.update(estimate=out[f"shift_{first}"], ci_lo=out[f"shift_{first}"] - out["resolution"],
               ci_hi=out[f"shift_{first}"] + out["resolution"])
    return out


def _dig(data, key: str):
    """The number (or list of numbers) at a dotted key; a part that indexes a list is an integer
    (`shifts.-1`: the last one)."""
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return [float(x) for x in data] if isinstance(data, list) else float(data)


def block_at(data, key: str) -> dict:
    """The mapping at a dotted key (a KeyError when the analysis output lacks it)."""
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    if not isinstance(data, dict):
        raise TypeError(f"'{key}' is not a block of numbers")
    return data


def _interval_ok(lo, hi) -> bool:
    """A real interval: two defined, distinct bounds (a point printed as [x, x] decides nothing; an infinite
    bound, a miss, does)."""
    return isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and not math.isnan(lo) \
        and not math.isnan(hi) and (lo != hi or math.isinf(lo))


def _num(x):
    if x is None or isinstance(x, bool):
        return x
    return x if math.isfinite(x) else str(x)


def _clean(values: dict) -> dict:
    return {k: ([_num(v) for v in val] if isinstance(val, list) else _num(val)) for k, val in values.items()}


def describe_scale(claim: Claim, profile: str) -> str:
    """'gpt/smoke: 4 runs, 2 seeds' style summary of what a claim runs at a profile."""
    grid = claim.grid.get(profile) or {}
    if not grid:
        return f"{profile}: no grid"
    parts = sorted({f"{e['workload']}/{e['size']}" for e in grid.values()})
    n = sum(len(s) for s in claim.arms(profile).values())
    seeds = max(len(e.get("seeds", [0])) for e in grid.values())
    note = f"; {claim.ours['scale']}" if claim.ours.get("scale") else ""  # e.g. proxy tasks, not the paper's
    return f"{profile}: {', '.join(parts)}; {n} runs, {seeds} seed{'s' if seeds > 1 else ''}{note}"
