"""Studies -> `results/claims.csv`, `results/claims.md` and `results/<paper>.md` (pandas + tabulate).

Every row names the paper's number beside ours, the scale we ran at, the verdict and why, links
to the run directories behind it, the code versions of those runs (flagged when mixed), and the
choices that are ours rather than the paper's.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pandas as pd

from claimbench.claims import Claim, unknown_plugins
from claimbench.figures import figures_dir
from claimbench.hypotheses import MOST_SEEDS
from claimbench.io import atomic_write_text
from claimbench.judge import holm
from claimbench.study import run_study
from claimbench.verdicts import VERDICTS

COLUMNS = ["paper", "claim", "statement", "source", "paper_value", "our_value", "scale", "verdict", "why", "test",
           "p", "p_holm", "placebo", "code", "ours", "runs"]


def build_studies(claims: list[Claim], profile: str, runs_dir: str | Path, results_dir: str | Path,
                  store: str | Path | None = None) -> list[dict]:
    """One study per claim, computed fresh from the run files (missing/corrupt runs -> not_run).

    Plugins are looked up (importing every plugin module, seconds) only to explain missing runs:
    a claim whose runs all exist needs no registry.
    """
    studies = []
    for c in claims:
        s = run_study(c, profile, runs_dir, results_dir, store=store)
        if s["missing"]:
            unknown = unknown_plugins(c, profile)
            if unknown:
                s = run_study(c, profile, runs_dir, results_dir, unknown, store=store)
        studies.append(s)
    holm(studies)
    return studies


def fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def our_value(study: dict) -> str:
    if study["verdict"] == "not_run" or study["estimate"] is None:
        return "-"
    lo, hi = study["ci"] or (None, None)
    return f"{fmt(study['estimate'])} [{fmt(lo)}, {fmt(hi)}]"


def code_versions(study: dict) -> str:
    prov = study["provenance"]
    shas = [s[:12] + ("-dirty" if s.endswith("-dirty") else "") for s in prov["git_shas"]]
    if not shas:
        return "-"
    return ("MIXED: " if prov["mixed_code"] else "") + ", ".join(shas)


def run_links(study: dict, base: Path, md: bool) -> str:
    """Per arm, links to its run directories (relative to the table's folder)."""
    parts = []
    for arm, runs in study["runs"].items():
        if md:
            links = " ".join(f"[{_label(r)}]({os.path.relpath(_link(r), base)})" for r in runs)
        else:
            links = " ".join(_link(r) for r in runs)
        parts.append(f"{arm}: {links}")
    return "; ".join(parts)


def _p(p) -> str:
    return "-" if p is None else f"{p:.3g}"


def _link(run: dict) -> str:
    return run.get("link", run["run_dir"])


def _label(run: dict) -> str:
    sets = run.get("sets", {})
    return f"s{sets.get('seed', '?')}" + ("" if run["status"] in ("ok",) else f"({run['status']})")


def frame(studies: list[dict], claims: list[Claim], base: Path, md: bool) -> pd.DataFrame:
    by_id = {c.id: c for c in claims}
    rows = []
    for s in studies:
        c = by_id[s["claim"]]
        pv = c.paper_value
        rows.append({"paper": c.paper["id"], "claim": c.id, "statement": c.statement, "source": c.source,
                     "paper_value": f"{pv['value']}" + (f" {pv['unit']}" if pv.get("unit") else ""),
                     "our_value": our_value(s), "scale": s["scale"], "verdict": s["verdict"], "why": s["why"],
                     "test": s.get("test") or "rule", "p": _p(s.get("p")), "p_holm": _p(s.get("p_holm")),
                     "placebo": s.get("placebo") or "-",
                     "code": code_versions(s), "ours": ", ".join(c.ours) or "-",
                     "runs": run_links(s, base, md) or "-"})
    return pd.DataFrame(rows, columns=COLUMNS)


def _provenance_line(studies: list[dict]) -> str:
    shas = sorted({sha for s in studies for sha in s["provenance"]["git_shas"]})
    vers = {json.dumps(v, sort_keys=True) for s in studies for v in s["provenance"]["versions"]}
    if not shas:
        return "No runs behind these tables yet."
    mixed = len(shas) > 1 or len(vers) > 1
    line = f"Runs behind these tables come from code {', '.join(shas)}"
    return ("**Mixed code versions**: " if mixed else "") + line + (
        f" and {len(vers)} distinct package sets." if mixed else ".")


def verdict_counts(studies: list[dict]) -> str:
    counts = pd.Series([s["verdict"] for s in studies]).value_counts()
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def verdicts_per_paper(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Claims per paper and verdict (columns `paper`, `verdict`, one row per claim), with a `total` row."""
    t = pd.crosstab(verdicts["paper"], verdicts["verdict"])
    t = t.reindex(columns=[*VERDICTS, *sorted(set(t.columns) - set(VERDICTS))], fill_value=0)
    t.loc["total"] = t.sum()
    return t.reset_index().rename_axis(columns=None)


def _tier(profile: str) -> str:
    """'smoke profile', or for a tier 'cpu tier: the smoke tier's runs plus its own; tables separate'."""
    from claimbench.tiers import chain

    bases = chain(profile)[:-1]
    if not bases:
        return f"{profile} profile"
    return f"{profile} tier: the {bases[-1]} tier's runs plus its own; its tables are separate from {bases[-1]}'s"


def write_tables(studies: list[dict], claims: list[Claim], results_dir: str | Path, profile: str) -> list[Path]:
    """Write claims.csv, claims.md and one <paper>.md per paper; returns the paths written."""
    results = Path(results_dir)
    written = []
    csv = frame(studies, claims, results, md=False)
    atomic_write_text(results / "claims.csv", csv.to_csv(index=False))
    written.append(results / "claims.csv")
    md = frame(studies, claims, results, md=True)
    summary = md[["paper", "claim", "paper_value", "our_value", "scale", "verdict", "code", "ours", "runs"]]
    text = (f"# All claims ({_tier(profile)})\n\n{len(studies)} claims; {verdict_counts(studies)}.\n\n"
            f"{markdown_table(verdicts_per_paper(csv))}\n\n"
            f"{_provenance_line(studies)}\n\n"
            "Our value is the claim's statistic with its 95% interval; `ours` lists the choices that are the "
            "suite's, not the paper's (details in each paper's page). Verdicts follow each claim's pre-registered "
            "test (its premises, placebo, Holm-adjusted p) or rule in `benchmarks/claims/<paper>.yaml`; "
            "`out_of_scope` names the premise that fails at this scale.\n\n"
            + markdown_table(summary) + "\n")
    atomic_write_text(results / "claims.md", text)
    written.append(results / "claims.md")
    by_paper: dict[str, list[dict]] = {}
    for s in studies:
        by_paper.setdefault(s["paper"], []).append(s)
    papers = {c.paper["id"]: c.paper for c in claims}
    for pid, pstudies in by_paper.items():
        path = results / f"{pid}.md"
        atomic_write_text(path, paper_page(papers[pid], pstudies, [c for c in claims if c.paper["id"] == pid],
                                           results, profile))
        written.append(path)
    return written


def markdown_table(df: pd.DataFrame) -> str:
    """`df` as a Markdown table; a `|` in a cell (|W|, a|b) is escaped, so it does not split the cell."""
    return df.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v).to_markdown(index=False)


def paper_page(paper: dict, studies: list[dict], claims: list[Claim], results: Path, profile: str) -> str:
    """One paper: a summary table, then each claim with its numbers, runs, provenance and our choices."""
    df = frame(studies, claims, results, md=True)
    out = [f"# {paper['title']}", "",
           f"arXiv [{paper['arxiv']}](https://arxiv.org/abs/{paper['arxiv']})"
           + (f" · {paper['authors']}" if paper.get("authors") else "")
           + (f" · our reading of the paper: `{paper['spec']}`" if paper.get("spec") else ""), "",
           f"{_tier(profile).capitalize()}. {verdict_counts(studies)}. {_provenance_line(studies)}", "",
           markdown_table(df[["claim", "paper_value", "our_value", "scale", "verdict"]]), ""]
    summary = results / "analysis" / paper["id"] / "summary.md"
    if summary.is_file():  # a paper's own analysis stage (LR_crash search, law fits, ...) writes its details here
        out += [f"The paper's analysis stage: [analysis/{paper['id']}/summary.md]({summary.relative_to(results)})", ""]
    by_id = {c.id: c for c in claims}
    for s in studies:
        c = by_id[s["claim"]]
        stat = c.statistic
        out += [f"## {c.id}: {s['verdict']}", "", c.statement, "",
                f"- Source: {c.source}",
                f"- Paper: {c.paper_value['value']} {c.paper_value.get('unit', '')} ({c.paper_value['setting']})",
                f"- Statistic: `{stat['kind']}`" + (f" of `{stat['metric']}`" if stat.get("metric") else "")
                + (f" over arms {', '.join(stat.get('arms', []))}" if stat.get("arms") else ""),
                _decision(c),
                f"- Ours: {our_value(s)} at {s['scale']}", f"- Verdict: **{s['verdict']}** ({s['why']})"]
        out += _judgement(c, s)
        if c.rule.get("note"):
            out.append(f"- Note: {c.rule['note']}")
        if c.ours:
            out += ["", "Choices that are ours, not the paper's:", ""]
            out += [f"- *{k}*: {v}" for k, v in c.ours.items()]
        if s["values"]:
            vals = pd.DataFrame([{"name": k, "value": fmt(v) if not isinstance(v, list) else
                                  ", ".join(fmt(x) for x in v)} for k, v in s["values"].items()])
            out += ["", markdown_table(vals)]
        runs = [{"arm": arm, "run": f"[{r['run_id']}]({os.path.relpath(_link(r), results)})",
                 "status": r["status"]} for arm, rs in s["runs"].items() for r in rs]
        if runs:
            prov = s["provenance"]
            out += ["", markdown_table(pd.DataFrame(runs)), "",
                    f"Code: {code_versions(s)}" + (" (runs from mixed code versions)" if prov["mixed_code"] else "")]
        fig = figures_dir(results) / f"{c.id}.png"
        if fig.is_file():
            out += ["", f"![{c.id}]({fig.relative_to(results)})"]
        out.append("")
    return "\n".join(out)


def _decision(c: Claim) -> str:
    """How the claim is decided, as its YAML fixes it."""
    if c.test:
        t = c.test
        keys = ", ".join(f"{k} {t[k]}" for k in ("alpha", "margin", "paper_effect", "effect_fraction", "band",
                                                  "min_seeds", "direction") if k in t)
        arms = f" of arms {', '.join(t['arms'])}" if t.get("arms") else ""
        reason = f"; margin: {t['margin_reason']}" if t.get("margin_reason") else ""
        return f"- Test (pre-registered): `{t['kind']}`{arms}" + (f"; {keys}" if keys else "") + reason
    return (f"- Rule: reproduced if `{c.rule['reproduced_if']}`; not reproduced if "
            f"`{c.rule['not_reproduced_if']}`; otherwise inconclusive"
            + (f" (paper effect {c.rule['paper_effect']})" if "paper_effect" in c.rule else ""))


def _about(seeds: int) -> str:
    """A planned seed count as words: the planner stops counting at MOST_SEEDS, so a count there is a floor."""
    return f"at least {seeds} (the planner's cap)" if seeds >= MOST_SEEDS else f"about {seeds}"


def _judgement(c: Claim, s: dict) -> list[str]:
    """Premises, placebo, multiplicity, stability and the seeds an undecided claim needs."""
    out = [f"- Premise: {p['name']} (`{p['holds_if']}`)" for p in c.premises]
    if c.placebo:
        what = f"arms {' vs '.join(c.placebo['arms'])}" if "arms" in c.placebo else \
            f"the seeds of {c.placebo['split']} split in two" if "split" in c.placebo else \
            c.placebo.get("what") or (f"'{c.placebo['from_file']}' of the analysis output" if "from_file" in c.placebo
                                      else f"`{c.placebo['metric']}` on the same runs")
        out.append(f"- Placebo ({what}): {s.get('placebo') or '-'}")
        pp = s.get("placebo_plan")
        if pp:
            out.append(f"- The placebo is not checked: splitting {pp['arm']}'s seeds in two halves of >= 2 needs "
                       f">= {pp['seeds']} seeds of {pp['arm']}; it has {pp['have']} ({pp['seeds'] - pp['have']} "
                       "more to run)")
    if s.get("p") is not None:
        out.append(f"- p = {s['p']:.3g}" + (f", Holm-adjusted within the paper {s['p_holm']:.3g}"
                                             if s.get("p_holm") is not None else ""))
    if s.get("stability") is not None:
        out.append(f"- Stability: the verdict holds in {s['stability']:.0%} of bootstrap resamples of the seeds")
    plan = s.get("plan")
    if not plan and s.get("verdict") == "inconclusive":
        plan = {"why": "its rule has no pre-registered test to plan seeds for" if not c.test else
                "decided alone, not after the Holm adjustment across the paper's claims: more seeds lower its p"}
    if plan and "why" in plan:
        out.append(f"- To decide: no seed count: {plan['why']}")
    elif plan:
        todo = f", {plan['to_train']} to train" if "to_train" in plan else ""
        cost = f"{todo}, about {plan['cpu_min']} CPU-min" if plan.get("cpu_min") else todo
        if "hits_needed" in plan:
            n, need, alpha = plan["cases"], plan["hits_needed"], (c.test or {}).get("alpha", 0.05)
            out.append(f"- To decide: these {n} cases cannot reach p < {alpha:g} even if every case hits "
                       f"(p = {plan['p_all_hit']:.3g} at {n}/{n}): more cases are needed" if need is None else
                       f"- To decide: p < {alpha:g} needs >= {need}/{n} hits with these {n} cases"
                       + (" (all of them)" if need == n else ""))
        elif c.test and c.test["kind"] == "interval":
            out.append(f"- To decide: {_about(plan['seeds'])} seeds for the interval to clear the band's nearest edge "
                       f"({plan['runs']} runs in all{cost}; 80% power, the observed mean and spread)")
        else:
            out.append(f"- To decide: {_about(plan['seeds'])} seeds per arm at the paper's effect "
                       f"({plan['runs']} runs in all{cost}; 80% power, the observed spread)")
        if plan.get("to_train") == 0:
            out.append("  It has those seeds already: they would decide at the effect planned for; what it observed "
                       "(a smaller effect, or a verdict unstable over seed resamples) needs more")
    return out


def write_studies(studies: list[dict], out_dir: str | Path) -> None:
    for s in studies:
        atomic_write_text(Path(out_dir) / f"{s['claim']}.json", json.dumps(s, indent=2, default=str) + "\n")


def quiet_warnings_summary(caught: list[warnings.WarningMessage]) -> list[str]:
    """Distinct warning texts (each corrupt file named once)."""
    return sorted({str(w.message) for w in caught})


def sources(studies: list[dict], runs_dir: str | Path) -> str:
    """Where the runs behind the tables were read: the runs directory, the evidence store, or nowhere."""
    live, kept, missing = set(), set(), set()
    runs_dir = Path(runs_dir)
    for s in studies:
        for rs in s["runs"].values():
            for r in rs:
                if r["status"] == "missing":
                    missing.add(r["run_id"])
                elif Path(r["run_dir"]).parent == runs_dir:
                    live.add(r["run_id"])
                else:
                    kept.add(r["run_id"])
    return f"runs read: {len(live)} from {runs_dir}, {len(kept)} from the evidence store, {len(missing)} missing"
