# Claims: one `study` job per claim whose runs this DAG trains -> results/studies/<claim>.json;
# `tables` -> results/claims.{md,csv} and results/<paper>.md for every claim of every paper (claims without
# runs show as not_run); `figures` -> results/figures/claims/*.png. All marked for `snakemake --report`.
#   snakemake --profile config/smoke tables figures && snakemake --profile config/smoke --report report.html tables figures
# A claim's runs come from its YAML grid at this profile; the grid section of the Snakefile adds the grids of the
# papers selected with `papers: [...]`, so the claims this DAG can judge are those whose runs are all in RUNS.

from claimbench.claims import covered, load_all

CLAIMS = load_all()
CLAIM_PAPERS = sorted({c.paper["id"] for c in CLAIMS})
CLAIM_FILES = sorted({c.file for c in CLAIMS})
STUDIED = {c.id: c for c in CLAIMS if covered(c, config["profile"], set(RUNS))}
STUDY_INPUTS = {
    cid: [f"{RUNS_DIR}/{rid}/{name}" for specs in c.arms(config["profile"]).values() for rid in sorted(specs)
          for name in (["result.json", "lm_eval.json"] if str(c.statistic.get("metric", "")).startswith("lm_eval:")
                       else ["result.json"])]
    for cid, c in STUDIED.items()
}
# a `from_file` statistic reads a file that a paper's analysis rule writes: it is an input of the claim's study.
# The speed suite's output (config `speed:`, by default {results}/speed/<profile>.json; scripts/speed/speed.py
# --out) is run by hand on an idle machine, never by this DAG: an input only once it is there (then a new one reruns
# the study); without it the claims that read it are not_run.
PATHS = tiers.paths(config["profile"], RESULTS, RUNS_DIR)
STUDY_FILES = {cid: [p for p in ([c.statistic["path"].format(**PATHS)] if c.statistic["kind"] == "from_file" else [])
                     if p != PATHS["speed"] or Path(p).is_file()]
               for cid, c in STUDIED.items()}


wildcard_constraints:
    claim=r"[a-z][a-z0-9_]*\.[a-z0-9_]+",


rule study:
    conda:
        "../environment.yml"
    input:
        runs=lambda w: STUDY_INPUTS[w.claim],
        analysis=lambda w: STUDY_FILES[w.claim],
        claims=lambda w: STUDIED[w.claim].file,
    output:
        report(f"{RESULTS}/studies/{{claim}}.json", category="Studies", labels={"claim": "{claim}"}),
    params:
        py=PY,
        profile=config["profile"],
        runs_dir=RUNS_DIR,
        results=lambda w, output: Path(output[0]).parent.parent,
        out=lambda w, output: Path(output[0]).parent,
    log:
        f"{RESULTS}/logs/study/{{claim}}.log",
    shell:
        "{params.py} -m claimbench study {wildcards.claim} --profile {params.profile} --runs-dir {params.runs_dir} "
        "--results-dir {params.results} --out {params.out} > {log} 2>&1"


rule tables:
    conda:
        "../environment.yml"
    input:
        studies=[f"{RESULTS}/studies/{cid}.json" for cid in sorted(STUDIED)],
        evidence=f"{RESULTS}/logs/evidence.stamp",
        figures=f"{RESULTS}/figures/claims",  # the pages embed the figures that exist: draw them first
        claims=CLAIM_FILES,
    output:
        csv=report(f"{RESULTS}/claims.csv", category="Claims", labels={"table": "all claims (csv)"}),
        md=report(f"{RESULTS}/claims.md", category="Claims", labels={"table": "all claims"}),
        papers=[report(f"{RESULTS}/{p}.md", category="Papers", labels={"paper": p}) for p in CLAIM_PAPERS],
    params:
        py=PY,
        profile=config["profile"],
        runs_dir=RUNS_DIR,
        store=EVIDENCE,
        results=lambda w, output: Path(output.md).parent,
    log:
        f"{RESULTS}/logs/tables.log",
    shell:
        "{params.py} -m claimbench tables --no-figures --profile {params.profile} --runs-dir {params.runs_dir} "
        "--results-dir {params.results} --evidence-dir {params.store} > {log} 2>&1"


rule figures:
    conda:
        "../environment.yml"
    input:
        studies=[f"{RESULTS}/studies/{cid}.json" for cid in sorted(STUDIED)],
        evidence=f"{RESULTS}/logs/evidence.stamp",
        claims=CLAIM_FILES,
    output:
        report(directory(f"{RESULTS}/figures/claims"), patterns=["{name}.png"], category="Figures",
               labels={"figure": "{name}"}),
    params:
        py=PY,
        profile=config["profile"],
        runs_dir=RUNS_DIR,
        store=EVIDENCE,
        results=lambda w, output: Path(output[0]).parent.parent,
    log:
        f"{RESULTS}/logs/figures.log",
    shell:
        "{params.py} -m claimbench figures --profile {params.profile} --runs-dir {params.runs_dir} "
        "--results-dir {params.results} --evidence-dir {params.store} > {log} 2>&1"
