"""The Opt-Laws study over a grid of runs: the three laws side by side on the claims' statistics.

Operational definitions (the suite's, since the paper's are not public; see docs/papers/optlaws.md). Every
threshold the verdicts lean on is a constant of the grid file's `study:` block (tie band, fixed picks,
bootstrap draws), never computed from the runs:
- runs are read through claimbench.evidence (`locate` in the runs directory, else the evidence store); a
  diverged run is kept as a miss: its final loss is +inf (never the best, never near it), a law that picks it
  misses, a held-out prediction of it has infinite error; failed or missing runs are listed, not scored;
- fitting window: logged points after the first 10% of steps; only runs that finished (status ok) are fitted;
- final loss: mean logged train loss over the last 5% of steps (actual), mean prediction over those steps
  (predicted, from the planned schedule, so a diverged run has one too);
- tie band: schedules whose actual final losses are within `study.tie_nats` of the best are all "best";
  a case's chance is the exact probability that a uniformly random pick of k of its candidates hits that set,
  1 - C(n - m, k) / C(n, k) (n candidates, m tied-best); hits over independent cases (one per peak LR) are scored
  against the exact Poisson-binomial chance distribution (claimbench.hypotheses), hits over cases that share a
  peak LR's ranking against the exact permutation null over those rankings (`shared_ranking_null`);
- a case's actual final loss per schedule: the mean over the seeds that every schedule of its peak LR was run
  with (`case_finals`; one seed, seed 0, where only some schedules were repeated, so the schedules of a case stay
  paired by seed); a diverged seed makes the mean +inf. The laws are fitted and predict on the seed-0 runs;
- Top-2 (C1): a case is a peak LR; fit on the other peak LRs, hit if a tied-best schedule is among the two
  predicted best; a failed fit is a miss;
- out-of-family (C2): leave one family out of the fit (5 settings) and, at every peak LR, hit if the
  predicted best family is tied-best (15 cases; they share the actual ranking of their peak LR);
- fixed-pick placebo (C1/C2): the schedules named in `study.fixed_pick_*`, picked in every case whatever the
  runs, scored the same way; the best fixed pick over all choices is reported beside it (chosen after the fact);
- divergence (C3): leave-one-run-out threshold rule on each law's divergence score over all seed-0 runs
  (probes included), F1 against status == diverged, its interval by a seeded bootstrap over the runs; the
  same rule on the peak LR alone is the placebo (`peak_lr_f1`);
- held-out accuracy (C6): fit on constant, cosine and two-stage runs at every peak LR, predict every other
  family; median relative error of the final loss, interval by a seeded bootstrap over the held-out runs;
- seed noise: pooled seed SD of the final loss over the (family, peak LR) groups run with several seeds,
  and relative to their mean loss (C6's premise: a single run repeats to the paper's precision);
- scaling limit (C8): each law's prediction on the constant-LR schedules fitted by L_inf + A t^-alpha; a
  diagnostic only, since any smooth monotone curve fits it (the claim is analytic: docs/papers/optlaws.md).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claimbench import evidence
from claimbench.config import ConfigError
from claimbench.grid import expand
from claimbench.hypotheses import poisson_binomial_sf
from claimbench.io import atomic_save_png, atomic_write_text
from claimbench.tiers import load_grid
from methods.optlaws.base import LAW_ORDER, LAWS, FitError, Law
from methods.optlaws.curves import Curve, CurveError, _lrs_from_config, read_run, schedule
from methods.optlaws.selection import ThresholdRule, f1

FIT_FAMILIES = ("constant", "cosine", "two_stage")
OUT_OF_FAMILY = ("wsd_exp", "wsd", "linear", "two_stage", "inverse_sqrt")
SKIP_FRAC = 0.1
SETTINGS = ("tie_nats", "tie_reason", "fixed_pick_top2", "fixed_pick_best", "bootstrap_draws")


def settings(doc: dict, where: str = "grid") -> dict:
    """The grid file's `study:` block: every constant the claims' tests lean on, fixed before any run is read."""
    s = doc.get("study") or {}
    for key in SETTINGS:
        if key not in s:
            raise ConfigError(f"{where}: study.{key}: required (a constant fixed in the grid file)")
    if not (isinstance(s["tie_nats"], (int, float)) and s["tie_nats"] >= 0):
        raise ConfigError(f"{where}: study.tie_nats: a number >= 0 (got {s['tie_nats']!r})")
    if len(s["fixed_pick_top2"]) != 2 or not isinstance(s["fixed_pick_best"], str):
        raise ConfigError(f"{where}: study.fixed_pick_top2: two schedule families; study.fixed_pick_best: one")
    return {**s, "tie_nats": float(s["tie_nats"]), "bootstrap_draws": int(s["bootstrap_draws"]),
            "bootstrap_seed": int(s.get("bootstrap_seed", 0))}


def window(curve: Curve, skip_frac: float = SKIP_FRAC) -> Curve:
    """The curve without its logged points in the first `skip_frac` of the planned steps (schedule kept whole)."""
    keep = curve.steps > skip_frac * len(curve.lrs)
    loss = None if curve.loss is None else curve.loss[keep]
    return Curve(curve.name, curve.lrs, curve.steps[keep], loss, curve.source, curve.meta)


@dataclass
class Run:
    curve: Curve
    family: str
    lr: float
    seed: int
    probe: bool
    status: str

    @property
    def final(self) -> float:
        """Actual final loss; +inf for a diverged run (a miss, never dropped)."""
        if self.status == "diverged":
            return math.inf
        return final_of(self.curve, self.curve.loss)


def final_of(curve: Curve, values: np.ndarray) -> float:
    keep = curve.steps > 0.95 * len(curve.lrs)
    return float(np.mean(values[keep])) if keep.any() else float(values[-1])


def pred_final(law: Law, r: Run) -> float:
    """The law's final loss for the run's planned schedule: mean prediction over the last 5% of its steps."""
    T = len(r.curve.lrs)
    p = law.predict(schedule(r.curve.name, r.curve.lrs, np.arange(int(0.95 * T) + 1, T + 1)))
    return float(np.mean(p))


def _curve(ev: evidence.RunEvidence) -> Curve:
    """A run's curve; a diverged run too short to have one keeps its planned schedule and no points."""
    try:
        return read_run(ev.run_dir)
    except CurveError:
        if ev.status != "diverged":
            raise
        lrs = _lrs_from_config(ev.run_dir)
        if lrs is None:
            raise
        return Curve(ev.run_id, lrs, np.array([], int), np.array([], float), str(ev.run_dir), dict(ev.result))


def load_runs(grid: Path, runs_dir: Path, store: Path | None = None) -> tuple[list[Run], list[str]]:
    """(usable runs: ok and diverged, the ids of runs that failed or are missing) of the grid file (a tier's file
    includes the smoke grid)."""
    runs, unusable = [], []
    for rid, spec in expand(load_grid(grid).get("grid") or []).items():
        kind, fam = spec.meta["group"].split(":", 1)
        sets = dict(s.split("=", 1) for s in spec.sets)
        ev = evidence.read_run(evidence.locate(rid, runs_dir, store))
        if not ev.usable:
            unusable.append(f"{rid} ({ev.problem})")
            continue
        runs.append(Run(window(_curve(ev)), fam, float(sets["train.lr"]), int(sets["seed"]),
                        kind == "optlaws-probe", ev.status))
    return runs, unusable


def _fit(name: str, curves: list[Curve], seed: int) -> tuple[Law | None, str | None]:
    try:
        return LAWS[name].fit(curves, seed=seed), None
    except FitError as e:
        return None, str(e)


def _r2(pred: np.ndarray, act: np.ndarray) -> float:
    ss = float(np.sum((act - act.mean()) ** 2))
    return 1 - float(np.sum((act - pred) ** 2)) / ss if ss > 0 else float("nan")


def _fitted(runs: list[Run]) -> list[Curve]:
    return [r.curve for r in runs if r.status == "ok"]


def seed_noise(runs: list[Run]) -> dict:
    """Pooled seed SD (sigma) of the final loss over (family, peak LR) groups run with several seeds.

    Pooled as sqrt(sum of squared deviations / sum of (n_i - 1)); a diverged seed makes sigma infinite (a miss).
    Reported, and read by C6's premise (rel_sd); it sets no tie band.
    """
    by: dict[tuple[str, float], dict[int, float]] = {}
    for r in runs:
        if not r.probe:
            by.setdefault((r.family, r.lr), {})[r.seed] = r.final
    groups = {f"{fam}@{lr:g}": list(v.values()) for (fam, lr), v in by.items() if len(v) >= 2}
    dof = sum(len(v) - 1 for v in groups.values())
    vals = [x for v in groups.values() for x in v]
    if not all(math.isfinite(x) for x in vals):
        sigma = math.inf
    else:
        ss = sum(float(np.sum((np.asarray(v) - np.mean(v)) ** 2)) for v in groups.values())
        sigma = math.sqrt(ss / dof) if dof else math.nan
    mean = float(np.mean(vals)) if vals else math.nan
    return {"pairs": len(groups), "groups": groups, "gaps": [float(max(v) - min(v)) for v in groups.values()],
            "dof": dof, "sigma": sigma, "seeds_min": min((len(v) for v in groups.values()), default=0),
            "rel_sd": sigma / mean if vals and math.isfinite(mean) else math.nan}


def chance_of_hit(candidates: int, tied: int, k: int) -> float:
    """Exact probability that k of `candidates` picked uniformly at random include one of the `tied` best."""
    k = min(k, candidates)
    return 1.0 - math.comb(candidates - tied, k) / math.comb(candidates, k)


def score_case(actual: dict[str, float], picked: list[str], tie: float, k: int) -> dict | None:
    """One case: tied-best set (within `tie` nats of the best finite final loss), hit, exact chance of a hit.

    None when every candidate diverged (no best to find)."""
    finite = [v for v in actual.values() if math.isfinite(v)]
    if not finite:
        return None
    best = min(finite)
    ties = sorted(s for s, v in actual.items() if v - best <= tie)
    return {"hit": any(s in ties for s in picked), "picked": list(picked), "tied_best": ties,
            "chance": chance_of_hit(len(actual), len(ties), k), "candidates": len(actual)}


def _ranked(pred: dict[str, float], k: int) -> list[str]:
    """The k best predicted (a non-finite prediction ranks last)."""
    return sorted(pred, key=lambda s: (not math.isfinite(pred[s]), pred[s], s))[:k]


def ranking_of(case_key: str) -> str:
    """The peak LR whose actual ranking a case reads (`fam@lr`, `i@lr` or `lr`): cases with one share it."""
    return case_key.rsplit("@", 1)[-1]


def shared_ranking_null(cases: dict[str, dict]) -> list[float]:
    """Exact null distribution of the hit count, P(hits = h) for h = 0..n, when the cases of one peak LR share its
    actual ranking: under the null the picks say nothing about which schedules are best, so the tied-best set of a
    peak LR is a uniformly random set of its size among the candidates, one set for all of that LR's cases.

    Exact enumeration with ties: only which picked schedules fall in that set matters, so each subset A of the
    schedules picked at that LR is weighted by the C(n - |picked|, m - |A|) ways to fill the rest of the set."""
    groups: dict[str, list[dict]] = {}
    for key, c in cases.items():
        if c is not None:
            groups.setdefault(ranking_of(key), []).append(c)
    dist = np.array([1.0])
    for cs in groups.values():
        n, m = cs[0]["candidates"], len(cs[0]["tied_best"])
        if any((c["candidates"], len(c["tied_best"])) != (n, m) for c in cs):
            raise ValueError("cases of one peak LR must share its ranking")
        picked = sorted({s for c in cs for s in c["picked"]})
        local = np.zeros(len(cs) + 1)
        for size in range(min(m, len(picked)) + 1):
            ways = math.comb(n - len(picked), m - size)
            for inside in itertools.combinations(picked, size):
                local[sum(any(s in inside for s in c["picked"]) for c in cs)] += ways
        dist = np.convolve(dist, local / math.comb(n, m))
    return [float(x) for x in dist]


def summarize_cases(cases: dict[str, dict]) -> dict:
    """hits, n, chance (one probability per case), expected chance hits and the exact one-sided p.

    Cases of one peak LR are not independent (they share its ranking): p and `null` then come from the exact
    permutation null over the shared rankings (`shared_ranking_null`), and the Poisson-binomial p, which assumes
    independent cases, is kept beside it as `p_independent`. With one case per peak LR the two nulls are the same
    and the Poisson-binomial is used."""
    scored = [c for c in cases.values() if c is not None]
    hits = int(sum(c["hit"] for c in scored))
    chance = [float(c["chance"]) for c in scored]
    out = {"cases": cases, "hits": hits, "n": len(scored), "chance": chance, "chance_hits": float(sum(chance)),
           "p": poisson_binomial_sf(hits, chance) if scored else None,
           "hit_rate": hits / len(scored) if scored else None,
           "failed_fits": sum(1 for c in scored if c.get("failed"))}
    if scored and len({ranking_of(k) for k, c in cases.items() if c is not None}) < len(scored):
        null = shared_ranking_null(cases)
        out.update(null=null, p_independent=out["p"], p=float(sum(null[hits:])))
    return out


def case_seeds(runs: list[Run]) -> dict[float, list[int]]:
    """Per peak LR, the seeds its cases average: those every schedule family at that LR was run with (probes
    excluded), so the schedules of a case stay paired by seed. Where only some families were repeated (the smoke
    grid's seed-noise repeats) that is seed 0 alone."""
    by: dict[float, dict[str, set[int]]] = {}
    for r in runs:
        if not r.probe:
            by.setdefault(r.lr, {}).setdefault(r.family, set()).add(r.seed)
    return {lr: sorted(set.intersection(*fams.values())) for lr, fams in sorted(by.items())}


def case_finals(runs: list[Run]) -> dict[float, dict[str, float]]:
    """Per peak LR, each family's actual final loss: the mean over the LR's common seeds (`case_seeds`); a diverged
    seed makes it +inf (never best). With one seed per run this is the run's final loss: the case and tie logic
    reads these numbers whatever the seeds."""
    seeds = case_seeds(runs)
    out: dict[float, dict[str, float]] = {}
    for lr, common in seeds.items():
        vals: dict[str, list[float]] = {}
        for r in runs:
            if not r.probe and r.lr == lr and r.seed in common:
                vals.setdefault(r.family, []).append(r.final)
        out[lr] = {fam: (math.inf if not all(math.isfinite(x) for x in v) else float(np.mean(v)))
                   for fam, v in sorted(vals.items())}
    return out


def _law_runs(runs: list[Run]) -> list[Run]:
    """The runs the laws are fitted on and predict: seed 0 of every schedule (probes excluded)."""
    return [r for r in runs if not r.probe and r.seed == 0]


def _case(law: Law | None, err: str | None, base: list[Run], lr: float, actual: dict, tie: float, k: int) -> dict:
    """One case: the law's top-k families at peak LR `lr` against the case's actual finals (a failed fit picks
    nothing and says why)."""
    if law is None:
        case = score_case(actual, [], tie, k)
        return case and {**case, "failed": err}
    pred = {r.family: pred_final(law, r) for r in base if r.lr == lr}
    case = score_case(actual, _ranked(pred, k), tie, k)
    return case and {**case, "actual_best": min(actual, key=actual.get)}


def top2(law_name: str, runs: list[Run], tie: float, seed: int) -> dict:
    """C1: one case per peak LR, the law fitted on the seed-0 runs of the other peak LRs; the case's actual final
    losses are its seed means (`case_finals`)."""
    cases = {}
    base = _law_runs(runs)
    for lr, actual in case_finals(runs).items():
        law, err = _fit(law_name, _fitted([r for r in base if r.lr != lr]), seed)
        cases[f"{lr:g}"] = _case(law, err, base, lr, actual, tie, 2)
    return summarize_cases(cases)


def out_of_family(law_name: str, runs: list[Run], tie: float, seed: int) -> dict:
    """C2: leave one family out of the fit (seed-0 runs); at every peak LR, is the predicted best family tied-best
    (actual final losses: the case's seed means, `case_finals`)?"""
    cases = {}
    base = _law_runs(runs)
    groups = case_finals(runs)
    for fam in OUT_OF_FAMILY:
        law, err = _fit(law_name, _fitted([r for r in base if r.family != fam]), seed)
        for lr, actual in groups.items():
            cases[f"{fam}@{lr:g}"] = _case(law, err, base, lr, actual, tie, 1)
    return summarize_cases(cases)


def fixed_pick(runs: list[Run], tie: float, pick: list[str], k: int, repeat: int = 1) -> dict:
    """The placebo: the same schedules picked in every case, whatever the runs. `repeat` copies each peak-LR case
    (C2 scores every peak LR once per left-out family). Also the best fixed pick over all choices (after the fact)."""
    groups = case_finals(runs)

    def score(names: list[str]) -> dict:
        cases = {f"{i}@{lr:g}": score_case(actual, [s for s in names if s in actual], tie, k)
                 for i in range(repeat) for lr, actual in groups.items()}
        return summarize_cases(cases)

    out = score(list(pick))
    families = sorted({r.family for r in runs if not r.probe})
    best = min((score(list(c)) | {"pick": list(c)} for c in itertools.combinations(families, k)),
               key=lambda s: (s["p"] if s["p"] is not None else 1.0, -s["hits"]), default=None)
    return {**out, "pick": list(pick),
            "best_fixed": None if best is None else {key: best[key] for key in ("pick", "hits", "n", "p")}}


def bootstrap_interval(data: np.ndarray, stat, draws: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `stat` over a seeded resample of the rows (no interpolation, so +inf stays +inf)."""
    rng = np.random.default_rng(seed)
    n = len(data)
    vals = np.array([stat(data[rng.integers(0, n, n)]) for _ in range(draws)], float)
    a = (1 - level) / 2
    return float(np.quantile(vals, a, method="lower")), float(np.quantile(vals, 1 - a, method="higher"))


def held_out(law_name: str, base: list[Run], seed: int, draws: int = 2000, boot_seed: int = 0) -> dict:
    """C6: fit on FIT_FAMILIES (finished runs), predict every other run's final loss (a diverged one: inf error)."""
    law, err = _fit(law_name, _fitted([r for r in base if r.family in FIT_FAMILIES]), seed)
    if law is None:
        return {"failed": err}
    rows = {}
    for r in base:
        if r.family in FIT_FAMILIES:
            continue
        fp, fa = pred_final(law, r), r.final
        row = {"family": r.family, "lr": r.lr, "status": r.status, "final_pred": fp, "final_actual": fa,
               "rel_error": abs(fp - fa) / fa if math.isfinite(fa) else math.inf}
        if r.status == "ok":
            p = law.predict(r.curve)
            row.update(r2=_r2(p, r.curve.loss), mae=float(np.mean(np.abs(p - r.curve.loss))), curve_pred=p.tolist())
        rows[f"{r.family}@{r.lr:g}"] = row
    errs = np.array([v["rel_error"] for v in rows.values()], float)
    lo, hi = bootstrap_interval(errs, np.median, draws, boot_seed)
    r2s = [v["r2"] for v in rows.values() if "r2" in v]
    return {"fit": sorted({f"{r.family}@{r.lr:g}" for r in base if r.family in FIT_FAMILIES and r.status == "ok"}),
            "predictions": rows, "n": len(rows), "runs": sorted(rows),
            "rel_error_mean": float(np.mean(errs)), "rel_error_worst": float(np.max(errs)),
            "rel_error_median": float(np.median(errs)), "rel_error_median_lo": lo, "rel_error_median_hi": hi,
            "r2_mean": float(np.mean(r2s)) if r2s else None, "params": law.params}


def _loo(score: list[float], y: np.ndarray) -> np.ndarray:
    """Leave-one-run-out predictions of a threshold rule fitted on the other runs."""
    return np.array([ThresholdRule.fit(score[:i] + score[i + 1:], list(y[:i]) + list(y[i + 1:])).predict(score[i])
                     for i in range(len(score))], bool)


def divergence(law: Law | None, runs: list[Run], draws: int = 2000, boot_seed: int = 0) -> dict:
    """C3: F1 of the law's leave-one-out divergence rule, its bootstrap interval over runs, and the peak-LR placebo."""
    if law is None:
        return {"failed": "no fitted law"}
    obs = [r for r in runs if r.seed == 0]
    y = np.array([r.status == "diverged" for r in obs], bool)
    pred = _loo([law.divergence_score(r.curve) for r in obs], y)
    by_lr = _loo([r.curve.peak_lr for r in obs], y)
    pairs = np.column_stack([y, pred]).astype(bool)
    lo, hi = bootstrap_interval(pairs, lambda d: f1(d[:, 0], d[:, 1]), draws, boot_seed)
    lrs = np.array([r.lr for r in obs])
    return {"f1": f1(y, pred), "f1_lo": lo, "f1_hi": hi, "n": len(obs),
            "runs": [f"{r.family}@{r.lr:g}/s{r.seed}{'/probe' if r.probe else ''}" for r in obs],
            "tp": int(np.sum(y & pred)), "fp": int(np.sum(~y & pred)), "fn": int(np.sum(y & ~pred)),
            "tn": int(np.sum(~y & ~pred)), "diverged": int(y.sum()), "stable": int((~y).sum()),
            "peak_lr_f1": f1(y, by_lr), "baseline_f1_peak_lr_above_median": f1(y, lrs > np.median(lrs)),
            "threshold_all_runs": ThresholdRule.fit([law.divergence_score(r.curve) for r in obs], list(y)).threshold}


def power_law_fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares fit of y = L_inf + A x^-alpha (scipy curve_fit, started from the best alpha of a grid on which
    (L_inf, A) are linear); returns the parameters and R^2."""
    from scipy.optimize import curve_fit

    def f(x, L, A, alpha):
        return L + A * x ** (-alpha)

    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 1e-18 * max(1.0, float(np.sum(y ** 2))):
        return {"failed": "the prediction is flat: no power law to fit", "r2": None}
    best = None
    for alpha in np.geomspace(0.01, 5.0, 60):
        X = np.column_stack([np.ones_like(x), x ** (-alpha)])
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        res = float(np.sum((X @ coef - y) ** 2))
        if best is None or res < best[0]:
            best = (res, np.array([coef[0], coef[1], alpha]))
    p = best[1]
    try:
        q, _ = curve_fit(f, x, y, p0=p, bounds=([-np.inf, -np.inf, 1e-4], [np.inf, np.inf, 10.0]), maxfev=5000)
        if float(np.sum((f(x, *q) - y) ** 2)) < best[0]:
            p = q
    except (RuntimeError, ValueError):  # keep the grid optimum: curve_fit only polishes it
        pass
    r2 = 1 - float(np.sum((f(x, *p) - y) ** 2)) / ss_tot
    return {"L_inf": float(p[0]), "A": float(p[1]), "alpha": float(p[2]), "r2": r2}


def scaling_limit(law: Law | None, runs: list[Run], extend: int = 10, points: int = 100) -> dict:
    """C8: the law's prediction on each constant-LR schedule of the grid, checked for monotonicity and a power law.

    r2 / monotone (the claim's numbers): worst case over the constant runs' peak LRs, over the fitted range
    (steps from SKIP_FRAC*T to T); r2_to_<extend>x / monotone_to_<extend>x: the same schedule held constant
    to extend*T steps (extrapolation, reported beside it).
    """
    if law is None:
        return {"failed": "no fitted law"}
    consts = sorted((r for r in runs if r.family == "constant" and not r.probe and r.status == "ok" and r.seed == 0),
                    key=lambda r: r.lr)
    if not consts:
        return {"failed": "no constant-LR run in the grid"}
    per = {}
    for r in consts:
        T = len(r.curve.lrs)
        row = {}
        for tag, upto in (("", T), (f"_to_{extend}x", extend * T)):
            lrs = np.concatenate([r.curve.lrs, np.full(upto - T, r.curve.lrs[-1])])
            steps = np.unique(np.geomspace(int(SKIP_FRAC * T) + 1, upto, points).astype(int))
            pred = law.predict(Curve(f"constant@{r.lr:g}", lrs, steps))
            fit = power_law_fit(steps / T, pred)
            row[f"monotone{tag}"] = bool(np.all(np.diff(pred) <= 1e-9 * float(np.max(np.abs(pred)))))
            row[f"r2{tag}"] = fit["r2"]
            row[f"power_law{tag}"] = fit
        per[f"{r.lr:g}"] = row
    out: dict = {"per_lr": per, "steps": [int(SKIP_FRAC * len(consts[0].curve.lrs)) + 1, len(consts[0].curve.lrs)]}
    for tag in ("", f"_to_{extend}x"):
        r2s = [v[f"r2{tag}"] for v in per.values()]
        out[f"r2{tag}"] = None if any(x is None for x in r2s) else float(min(r2s))
        out[f"monotone{tag}"] = all(v[f"monotone{tag}"] for v in per.values())
    return out


def run_analysis(grid: Path, runs_dir: Path, out: Path, md: Path, figures: Path, seed: int = 0,
                 store: Path | None = None) -> dict:
    """The three laws over the runs of one grid file (the cpu tier's includes the smoke grid, whose `study:` block
    holds the settings)."""
    import torch

    torch.set_num_threads(1)
    cfg = settings(load_grid(grid), str(grid))
    runs, unusable = load_runs(grid, runs_dir, store)
    base = _law_runs(runs)
    sched = [r for r in runs if not r.probe]
    tie, draws, bseed = cfg["tie_nats"], cfg["bootstrap_draws"], cfg["bootstrap_seed"]
    result: dict = {"grid": str(grid), "settings": cfg,
                    "tie_nats": tie, "runs": len(runs), "law_runs": len(base),
                    "diverged_law_runs": sum(r.status == "diverged" for r in base), "not_usable": unusable,
                    "case_seeds": {f"{lr:g}": s for lr, s in case_seeds(runs).items()},
                    "seed_noise": seed_noise(runs),
                    "placebo": {"top2": fixed_pick(sched, tie, cfg["fixed_pick_top2"], 2),
                                "out_of_family": fixed_pick(sched, tie, [cfg["fixed_pick_best"]], 1,
                                                            repeat=len(OUT_OF_FAMILY))},
                    "laws": {}}
    for name in LAW_ORDER:
        full, err = _fit(name, _fitted(base), seed)
        result["laws"][name] = {
            "label": LAWS[name].label,
            "exact": LAWS[name].exact,
            "held_out": held_out(name, base, seed, draws, bseed),
            "top2": top2(name, sched, tie, seed),
            "out_of_family": out_of_family(name, sched, tie, seed),
            "divergence": divergence(full, runs, draws, bseed),
            "scaling_limit": scaling_limit(full, runs),
            "full_fit": {"failed": err} if full is None else {"params": full.params, "info": full.info},
        }
    result["actual_final"] = {f"{r.family}@{r.lr:g}/s{r.seed}": r.final for r in runs if not r.probe}
    result["run_wall_s"] = {r.curve.name: float(r.curve.meta.get("wall_s") or 0.0) for r in runs}
    result["train_wall_s_sum"] = float(sum(result["run_wall_s"].values()))
    result["status"] = {f"{r.family}@{r.lr:g}/s{r.seed}{'/probe' if r.probe else ''}": r.status for r in runs}
    figs = plot(result, base, figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1, default=float) + "\n")
    from methods.optlaws.report import markdown

    md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md, markdown(result, figs, out, md))
    return result


def plot(result: dict, base: list[Run], figures: Path) -> list[Path]:
    """One figure per held-out schedule: actual curve and each law's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in base:
        key = f"{r.family}@{r.lr:g}"
        if r.family in FIT_FAMILIES or r.status != "ok":
            continue
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ax.plot(r.curve.steps, r.curve.loss, color="black", lw=1, label="actual")
        for name in LAW_ORDER:
            ho = result["laws"][name]["held_out"]
            if "predictions" in ho and key in ho["predictions"]:
                ax.plot(r.curve.steps, ho["predictions"][key]["curve_pred"], lw=1.2, label=LAWS[name].label)
        ax.set(title=f"held out: {key}", xlabel="step", ylabel="train loss")
        lo = float(np.min(r.curve.loss))
        ax.set_ylim(lo - 0.1, lo + 1.5)
        ax.legend(fontsize=6)
        fig.tight_layout()
        paths.append(atomic_save_png(fig, figures / f"heldout_{r.family}_lr{r.lr:g}.png", dpi=90))
        plt.close(fig)
    return paths
