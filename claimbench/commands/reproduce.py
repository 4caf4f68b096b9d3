"""`claimbench plan` and `claimbench reproduce`: what a reproduction of some papers trains and costs, then
(reproduce) the Snakemake DAG that trains it and rebuilds every table.

The plan asks Snakemake itself (a dry run per paper) which jobs are due, so it can never disagree with
the DAG; each train job is costed from the CPU seconds its run recorded in the evidence store
(`result.json`'s `cpu_s`: the whole process, start-up included), or from the median of recorded
runs of the same workload and size when this run has none.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from claimbench.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
_RULE = re.compile(r"^(?:local)?rule (\w+):")
_RUN = re.compile(r"^\s+wildcards: .*run_id=([^,\s]+)")


def known_papers() -> list[str]:
    from claimbench.claims import claims_files

    return sorted(p.stem for p in claims_files())


def parse_papers(text: str | None) -> list[str]:
    """`lrm,flerm` -> ['lrm', 'flerm']; empty -> every paper; an unknown id is a one-line error."""
    valid = known_papers()
    if not text:
        return valid
    papers = [p.strip() for p in text.split(",") if p.strip()]
    for p in papers:
        if p not in valid:
            raise ConfigError(f"PAPERS: unknown paper '{p}' (papers: {', '.join(valid)})")
    return list(dict.fromkeys(papers))


def snakemake_args(profile: str) -> list[str]:
    """The Snakemake profile directory when the profile has one (config/<profile>/), else its config file."""
    if (REPO / "config" / profile / "config.yaml").is_file():
        return ["--profile", f"config/{profile}"]
    cfg = REPO / "config" / f"{profile}.yaml"
    if not cfg.is_file():
        raise ConfigError(f"--profile: unknown profile '{profile}' (no config/{profile}.yaml)")
    return ["--configfile", f"config/{profile}.yaml", "--cores", str(os.cpu_count() or 1)]


def dry_run(profile: str, papers: list[str]) -> dict[str, list[str]]:
    """Jobs a DAG over these papers would run now: rule -> run ids (or '' for jobs without one)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", *snakemake_args(profile),
           "--config", f"papers=[{','.join(papers)}]"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        tail = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()][-3:]
        raise ConfigError(f"snakemake dry run for {papers or 'the default grid'} failed: {' | '.join(tail)}")
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in (r.stdout + r.stderr).splitlines():
        m = _RULE.match(line)
        if m:
            rule = m.group(1)
            jobs.setdefault(rule, []).append("")
            continue
        m = _RUN.match(line)
        if m and rule:
            jobs[rule][-1] = m.group(1)
    return jobs


def recorded_costs(store: Path, runs_dir: Path) -> dict[str, float]:
    """CPU seconds per run id, from the runs directory or the evidence store (train jobs)."""
    out: dict[str, float] = {}
    for base in (store, runs_dir):
        for path in base.glob("*/result.json"):
            try:
                cpu = json.loads(path.read_text()).get("cpu_s")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(cpu, (int, float)) and cpu > 0:
                out[path.parent.name] = float(cpu)
    return out


def _family(run_id: str) -> str:
    return "-".join(run_id.split("-")[:2])  # workload-size


def cost(run_ids: list[str], known: dict[str, float]) -> tuple[float, int]:
    """(CPU seconds, runs with no estimate at all) for these train jobs."""
    by_family: dict[str, list[float]] = {}
    for rid, c in known.items():
        by_family.setdefault(_family(rid), []).append(c)
    total, unknown = 0.0, 0
    for rid in run_ids:
        if rid in known:
            total += known[rid]
        elif _family(rid) in by_family:
            total += statistics.median(by_family[_family(rid)])
        else:
            unknown += 1
    return total, unknown


def plan(profile: str, papers: list[str]) -> dict:
    from claimbench.commands.tables import evidence_dir, load_profile

    cfg = load_profile(profile)
    known = recorded_costs(evidence_dir(cfg), Path(cfg["runs_dir"]))
    cores = _cores(profile)
    with ThreadPoolExecutor(max_workers=cores) as pool:
        dags = dict(zip(papers, pool.map(lambda p: dry_run(profile, [p]), papers), strict=True))
    rows, all_train = [], set()
    for p, jobs in dags.items():
        train = sorted({rid for rule, ids in jobs.items() if rule.endswith("train") for rid in ids if rid})
        all_train |= set(train)
        cpu, unknown = cost(train, known)
        rows.append({"paper": p, "train": len(train), "other": sum(len(v) for k, v in jobs.items()
                                                                   if not k.endswith("train") and k != "all"),
                     "cpu_s": cpu, "uncosted": unknown})
    cpu, unknown = cost(sorted(all_train), known)
    return {"profile": profile, "cores": cores, "papers": rows,
            "total": {"train": len(all_train), "cpu_s": cpu, "uncosted": unknown}}


def _cores(profile: str) -> int:
    prof = REPO / "config" / profile / "config.yaml"
    if prof.is_file():
        return int((yaml.safe_load(prof.read_text()) or {}).get("cores", os.cpu_count() or 1))
    return os.cpu_count() or 1


def format_plan(p: dict) -> str:
    from tabulate import tabulate

    def mins(s: float) -> str:
        return f"{s / 60:.1f}"

    rows = [[r["paper"], r["train"], r["other"], mins(r["cpu_s"]), mins(r["cpu_s"] / p["cores"]),
             r["uncosted"] or ""] for r in p["papers"]]
    t = p["total"]
    rows.append(["all (shared runs once)", t["train"], "", mins(t["cpu_s"]), mins(t["cpu_s"] / p["cores"]),
                 t["uncosted"] or ""])
    text = tabulate(rows, headers=["paper", "runs to train", "other jobs", "CPU-min", f"wall-min ({p['cores']} cores)",
                                   "runs without a recorded cost"])
    note = ("\nCosts: each run's recorded CPU time (start-up included), or the median of its workload and size; "
            "wall time assumes the cores stay busy (a lower bound); lm-eval and analysis jobs are not costed.")
    return f"plan for profile '{p['profile']}' (runs already trained are not counted):\n{text}{note}"


def claim_plans(profile: str, papers: list[str]) -> str:
    """The undecided claims of these papers with the seeds the power planner says would decide them."""
    import warnings

    from claimbench.claims import load_all
    from claimbench.commands.tables import evidence_dir, load_profile
    from claimbench.hypotheses import MOST_SEEDS
    from claimbench.tables import build_studies

    cfg = load_profile(profile)
    claims = [c for c in load_all() if c.paper["id"] in papers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        studies = build_studies(claims, profile, cfg["runs_dir"], cfg["results_dir"], evidence_dir(cfg))
    lines = []
    for s in studies:
        if s["verdict"] == "inconclusive" and s.get("plan"):
            pl = s["plan"]
            if "hits_needed" in pl:  # a hit-rate test: the hits its cases need, or more cases
                n, need = pl["cases"], pl["hits_needed"]
                lines.append(f"  {s['claim']}: {n} cases cannot reach alpha even if all hit: more cases needed"
                             if need is None else f"  {s['claim']}: needs >= {need}/{n} hits with these {n} cases"
                             + (" (all of them)" if need == n else ""))
                continue
            todo = (f", {pl['to_train']} to train" if pl.get("to_train") else
                    ", all trained: what it observed needs more" if "to_train" in pl else "")
            cost = f"{todo}, ~{pl['cpu_min']} CPU-min" if pl.get("cpu_min") else todo
            seeds = f"{pl.get('seeds')}{'+' if pl.get('seeds', 0) >= MOST_SEEDS else ''}"  # a count at the cap: a floor
            lines.append(f"  {s['claim']}: " + (f"no seed count: {pl['why']}" if "why" in pl else
                                                 f"{seeds} seeds per arm ({pl['runs']} runs in all{cost})"))
    head = ("undecided claims and the seeds that would decide them (80% power at the paper's effect; hit-rate "
            "claims: the hits their cases need):")
    return head + ("\n" + "\n".join(lines) if lines else " none with a plan (no runs yet, or nothing to plan)")


def narrow_grids(profile: str, papers: list[str]) -> list[str]:
    """Each selected paper's `check` (claimbench/papers.py) over the runs already recorded: one line per claim whose
    grid cannot decide it (e.g. an optimum on the edge of its LR grid), before anything trains."""
    from claimbench.commands.tables import evidence_dir, load_profile
    from claimbench.papers import discover

    cfg = load_profile(profile)
    found = discover()
    return [line for p in papers if p in found and found[p].check
            for line in found[p].check(found[p], profile, Path(cfg["runs_dir"]), evidence_dir(cfg))]


def _report_narrow(profile: str, papers: list[str]) -> bool:
    lines = narrow_grids(profile, papers)
    for line in lines:
        print(f"grid too narrow: {line}", file=sys.stderr)
    return bool(lines)


def cmd_plan(args) -> int:
    papers = parse_papers(args.papers)
    print(format_plan(plan(args.profile, papers)), flush=True)
    print(claim_plans(args.profile, papers), flush=True)
    return 2 if _report_narrow(args.profile, papers) else 0


def cmd_reproduce(args) -> int:
    papers = parse_papers(args.papers)
    print(format_plan(plan(args.profile, papers)), flush=True)
    if _report_narrow(args.profile, papers) and not args.allow_narrow:
        print("claimbench reproduce: widen the grids above (or pass --allow-narrow to train them anyway: those "
              "claims then read out_of_scope on their edge premise)", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    cmd = [sys.executable, "-m", "snakemake", *snakemake_args(args.profile), "--config",
           f"papers=[{','.join(papers)}]", *args.snakemake_args]
    print("$ " + " ".join(cmd[2:]), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


def _common(p) -> None:
    p.add_argument("--papers", "--paper", help="comma-separated paper ids (default: every paper)")
    p.add_argument("--profile", default="smoke", help="smoke (default), gpu or paper")


def register(sub) -> None:
    p = sub.add_parser("plan", help="runs and CPU/wall minutes a reproduction of some papers would take")
    _common(p)
    p.set_defaults(fn=cmd_plan)
    r = sub.add_parser("reproduce", help="print the plan, then train every selected paper's grid and build the tables")
    _common(r)
    r.add_argument("--dry-run", action="store_true", help="print the plan only")
    r.add_argument("--allow-narrow", action="store_true",
                   help="train even where `plan` finds an optimum on the edge of a claim's LR grid")
    r.add_argument("snakemake_args", nargs="*", help="passed to snakemake (after --)")
    r.set_defaults(fn=cmd_reproduce)
