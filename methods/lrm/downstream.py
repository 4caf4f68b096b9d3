"""C11/C12 downstream numbers: LRM vs its baseline on lm-eval tasks, paired by seed (and by LR where swept).

The paper averages seven Hugging Face benchmarks (Table 2). Offline, the smoke profile has only the suite's own
tasks (benchmarks/lm_eval_tasks: a Shakespeare last-word cloze and QuaRTz), so at smoke this is a *proxy*: the
same statistic on other tasks. The `downstream` section of config/papers/lrm.<profile>.yaml names pairs of arms
(grid entries, the same runs as lrm:perf's); rules/lm_eval.smk scores each run (runs/<id>/lm_eval.json).

Per pair: a task counts only when the runs are above chance on it (pooled over both arms: mean accuracy - chance >
2 x lm-eval's mean per-run standard error), so a task at chance adds no noise and a pair with no such task has no
estimate (NaN; the claims' premise reads
`n_above_chance`, so a verdict is never read from noise). Each run's score is its mean accuracy over the
counted tasks; the estimate is mean(LRM) - mean(baseline) and their ratio (C12), each with a bootstrap interval over
seeds (pairs resampled together). Runs are read through claimbench.evidence; a diverged run is a miss: chance
accuracy on every task. The held-out perplexity task (cb_shakespeare_ppl, bits per byte) is context; no rule reads it.

    python -m methods.lrm.downstream --grid config/papers/lrm.smoke.yaml --runs-dir runs/smoke \\
        --store results/evidence/smoke --out results/analysis/lrm/c11_downstream.json
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from claimbench import stats
from claimbench.config import ConfigError
from claimbench.evidence import locate, read_run
from claimbench.grid import RunSpec, expand
from claimbench.io import atomic_write_json
from methods.lrm.analysis import bootstrap, grid_cli, seed_mean

METRICS = ("acc_norm", "acc")  # the first an lm-eval task reports (lm-eval's leaderboard convention: acc_norm)
NAN = float("nan")


def pairs(grid_cfg: dict, where: str) -> dict[str, dict[str, dict[str, RunSpec]]]:
    """pair name -> {"vec": runs, "base": runs} from the `downstream.pairs` section (entries as in `grid`)."""
    sec = (grid_cfg.get("downstream") or {}).get("pairs")
    if not isinstance(sec, dict) or not sec:
        raise ConfigError(f"{where}: downstream.pairs: expected a mapping name -> {{vec: entry, base: entry}}")
    out = {}
    for name, arms in sec.items():
        if not isinstance(arms, dict) or set(arms) != {"vec", "base"}:
            raise ConfigError(f"{where}: downstream.pairs.{name}: expected exactly the arms vec and base")
        out[name] = {arm: expand([{**e, "name": f"lrm:downstream:{name}:{arm}"}]) for arm, e in arms.items()}
    return out


def task_scores(lm_eval: dict) -> dict[str, dict[str, Any]]:
    """task -> {metric, acc, stderr, chance, n} for every task with an accuracy and a known chance level."""
    out = {}
    for task, res in (lm_eval.get("results") or {}).items():
        chance = (lm_eval.get("chance") or {}).get(task) or {}
        metric = next((m for m in METRICS if f"{m},none" in res and m in chance), None)
        if metric is None:
            continue
        se = res.get(f"{metric}_stderr,none")
        n = res.get("sample_len")
        acc = float(res[f"{metric},none"])
        if not isinstance(se, (int, float)) or not math.isfinite(se):  # lm-eval writes "N/A" when it has none
            se = math.sqrt(max(acc * (1 - acc), 1e-12) / n) if n else NAN
        out[task] = {"metric": metric, "acc": acc, "stderr": float(se), "chance": float(chance[metric]), "n": n}
    return out


def pair_key(spec: RunSpec) -> str:
    """What pairs a run with its counterpart: every --set but the method list (seed, and LR where swept)."""
    return ",".join(sorted(x for x in spec.sets if not x.startswith("methods=")))


def _read(rid: str, runs_dir: Path, store: Path | None) -> tuple[str, dict | None]:
    """(status, lm-eval scores) of a run; FileNotFoundError names a finished run without its lm_eval.json."""
    ev = read_run(locate(rid, runs_dir, store))
    if ev.status == "diverged":
        return "diverged", ev.lm_eval()
    scores = ev.lm_eval()
    if scores is None:
        raise FileNotFoundError(2, "no lm-eval scores", str(ev.run_dir / "lm_eval.json"))
    return ev.status, scores


def pair_stats(arms: dict[str, dict[str, RunSpec]], runs_dir: Path, store: Path | None = None) -> dict:
    """One pair's numbers (see the module docstring); FileNotFoundError names a missing lm_eval.json."""
    scores: dict[str, dict[str, dict]] = {}
    read = {arm: {rid: _read(rid, runs_dir, store) for rid in specs} for arm, specs in arms.items()}
    chances: dict[str, dict] = {}
    for arm, specs in arms.items():
        for rid in specs:
            status, ev = read[arm][rid]
            if status != "diverged":
                for t, v in task_scores(ev).items():
                    chances.setdefault(t, v)
    for arm, specs in arms.items():
        scores[arm] = {}
        for rid, spec in specs.items():
            status, ev = read[arm][rid]
            if status == "diverged":  # a miss: chance accuracy on every task the others were scored on
                tasks = {t: {**v, "acc": v["chance"], "stderr": 0.0} for t, v in chances.items()}
                bpb = None
            else:
                tasks = task_scores(ev)
                bpb = ((ev.get("results") or {}).get("cb_shakespeare_ppl") or {}).get("bits_per_byte,none")
            scores[arm][pair_key(spec)] = {"run_id": rid, "tasks": tasks, "status": status,
                                           "bpb": float(bpb) if isinstance(bpb, (int, float)) else None}
    every = [r for rs in scores.values() for r in rs.values()]
    names = sorted(set.intersection(*(set(r["tasks"]) for r in every))) if every else []
    tasks = {}
    for t in names:
        rows = [r["tasks"][t] for r in every]
        mean_acc = statistics.fmean(x["acc"] for x in rows)
        mean_se = statistics.fmean(x["stderr"] for x in rows)
        tasks[t] = {"metric": rows[0]["metric"], "chance": rows[0]["chance"], "mean_acc": mean_acc,
                    "mean_stderr": mean_se, "above_chance": bool(mean_acc - rows[0]["chance"] > 2 * mean_se)}
    used = [t for t in names if tasks[t]["above_chance"]]
    per_run = {arm: {seed: (statistics.fmean(r["tasks"][t]["acc"] for t in used) if used else NAN)
                     for seed, r in rs.items()} for arm, rs in scores.items()}
    keys = sorted(set(per_run.get("vec", {})) & set(per_run.get("base", {})))
    out: dict[str, Any] = {"tasks": tasks, "tasks_used": used, "n_above_chance": len(used),
                           "score": {arm: {scores[arm][k]["run_id"]: v for k, v in sorted(vals.items())}
                                     for arm, vals in per_run.items()},
                           "estimate": NAN, "ci_lo": NAN, "ci_hi": NAN, "ratio": NAN, "ratio_ci_lo": NAN,
                           "ratio_ci_hi": NAN, "n": len(keys),
                           "misses": sum(r["status"] == "diverged" for r in every),
                           "runs": sorted(r["run_id"] for r in every)}
    bpb = {arm: {k: r["bpb"] for k, r in rs.items() if r.get("bpb") is not None} for arm, rs in scores.items()}
    if all(len(v) == len(scores[arm]) and v for arm, v in bpb.items()):  # context, not in any rule: held-out bits
        d = stats.difference(bpb["vec"], bpb["base"])
        out["bits_per_byte"] = {"vec": statistics.fmean(bpb["vec"].values()),
                                "base": statistics.fmean(bpb["base"].values()),
                                "diff": d["estimate"], "ci_lo": d["ci_lo"], "ci_hi": d["ci_hi"]}
    if used and keys:
        vec, base = per_run["vec"], per_run["base"]
        d = bootstrap(keys, lambda ks: statistics.fmean(vec[k] - base[k] for k in ks))
        out.update(estimate=d["estimate"], ci_lo=d["ci_lo"], ci_hi=d["ci_hi"], paired=True)
        if all(v > 0 for vals in per_run.values() for v in vals.values()):
            r = bootstrap(keys, lambda ks: statistics.fmean(vec[k] for k in ks) / statistics.fmean(base[k]
                                                                                                 for k in ks))
            out.update(ratio=r["estimate"], ratio_ci_lo=r["ci_lo"], ratio_ci_hi=r["ci_hi"])
    return out


def _by_seed(scores: dict[str, float]) -> dict[str, float]:
    """{run id: score} -> {seed: score} (a run id ends in -s<seed>)."""
    return {rid.rsplit("-s", 1)[1]: v for rid, v in scores.items()}


def parity(adamw: dict, muon: dict) -> dict:
    """C13: LRM's downstream gain with AdamW minus the gain of switching AdamW to Muon, per seed: (AdamW+LRM - AdamW)
    - (Muon - AdamW) = AdamW+LRM - Muon, paired by seed, t interval over seeds. Only where both pairs score on the
    same tasks above chance (their mean accuracies are then over the same tasks); else NaN, n_above_chance 0."""
    same = bool(adamw.get("tasks_used")) and adamw.get("tasks_used") == muon.get("tasks_used")
    out: dict[str, Any] = {"estimate": NAN, "ci_lo": NAN, "ci_hi": NAN, "per_seed": [],
                           "n_above_chance": len(adamw["tasks_used"]) if same else 0,
                           "tasks_used": adamw.get("tasks_used") if same else []}
    vec, mu = _by_seed(adamw["score"].get("vec", {})), _by_seed(muon["score"].get("base", {}))
    seeds = sorted(set(vec) & set(mu))
    out["n"] = len(seeds)
    if not same or not seeds:
        return out
    per_seed = [vec[k] - mu[k] for k in seeds]
    b = bootstrap(seeds, lambda ks: statistics.fmean(vec[k] - mu[k] for k in ks))
    out.update({k: v for k, v in seed_mean(per_seed, b).items() if k in ("estimate", "ci_lo", "ci_hi", "n")},
               per_seed=per_seed)
    return out


def analyse(grid_cfg: dict, runs_dir: Path, where: str = "grid", store: Path | None = None) -> dict:
    out = {name: pair_stats(arms, runs_dir, store) for name, arms in pairs(grid_cfg, where).items()}
    if "adamw" in out and "muon" in out:
        out["parity"] = parity(out["adamw"], out["muon"])
    out["note"] = ("mean accuracy over the lm-eval tasks the runs are above chance on (mean acc - chance > 2 x mean "
                   "stderr, pooled over both arms); LRM - baseline, paired t interval over seeds; NaN: no task above "
                   "chance")
    return out


def main(argv: list[str] | None = None) -> None:
    cfg, grid, runs_dir, out, store = grid_cli(__doc__.splitlines()[0], argv)
    atomic_write_json(out, analyse(cfg, runs_dir, grid, store))


if __name__ == "__main__":
    main()
