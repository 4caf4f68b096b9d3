# FLeRM: base runs record per-tensor function-space LRs -> `flerm_record` averages them over seeds into
# one record per base LR -> scaled runs (method flerm, `base:` that record) train with the record as an input ->
# `flerm_study` writes the optimal-LR shift tables, figures and verdicts. Behind a switch so other profiles stay fast:
#   snakemake flerm --profile config/smoke --config 'papers=[flerm]'
# (or `--config flerm=true`: this DAG alone, without the paper's claims grid)
# The grid is config/papers/flerm.<profile>.yaml. A changed base run re-makes its record and retrains only the
# scaled runs that read it (the record file is their input; `flerm_train` is `train` plus that input).

from methods.flerm.dag import plan as flerm_plan

FLERM_GRID = REPO / "config" / "papers" / f"flerm.{config['profile']}.yaml"
FLERM_ON = ("flerm" in (config.get("papers") or []) or bool(config.get("flerm", False))) and FLERM_GRID.is_file()
FLERM_CFG = yaml.safe_load(FLERM_GRID.read_text()) if FLERM_ON else {}
FLERM_RUNS = expand(FLERM_CFG.get("grid", []))
RUNS.update(FLERM_RUNS)
DATA.update(FLERM_CFG.get("data", {}))
FLERM_PLAN = flerm_plan(RUNS, str(REPO))
# the tables of rules/claims.smk own results/<paper>.md once benchmarks/claims/flerm.yaml exists
# (and link to the stage's summary.md, which this rule then writes)
FLERM_MD = (f"{RESULTS}/analysis/flerm/summary.md" if "flerm" in CLAIM_PAPERS else f"{RESULTS}/flerm.md")


ruleorder: flerm_train > train


use rule train as flerm_train with:
    conda:
        "../environment.yml"
    input:
        config=lambda w: str(REPO / RUNS[w.run_id].config),
        data=lambda w: [f"{DATA[RUNS[w.run_id].data]['dir']}/{f}" for f in DATA_FILES],
        extra=lambda w: FLERM_PLAN.needs(w.run_id),
    wildcard_constraints:
        run_id=FLERM_PLAN.run_regex(),


rule flerm_record:
    conda:
        "../environment.yml"
    input:
        lambda w: [f"{RUNS_DIR}/{rid}/result.json" for rid in FLERM_PLAN.records[w.record]],
    output:
        "{record}",
    wildcard_constraints:
        record=FLERM_PLAN.record_regex(),
    params:
        py=PY,
        dirs=lambda w, input: " ".join(str(Path(p).parent) for p in input),
    log:
        f"{RESULTS}/logs/flerm_record/{{record}}.log",
    threads: 1
    shell:
        "{params.py} -m methods.flerm.records {params.dirs} --out {output} > {log} 2>&1"


rule flerm:
    input:
        FLERM_MD,


rule flerm_study:
    conda:
        "../environment.yml"
    input:
        grid=str(FLERM_GRID) if FLERM_ON else [],
        runs=[f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(FLERM_RUNS)],
        records=sorted(FLERM_PLAN.records),
    output:
        md=FLERM_MD,
        js=f"{RESULTS}/analysis/flerm/transfer.json",
        fslr=f"{RESULTS}/analysis/flerm/fslr.json",
    params:
        py=PY,
        runs_dir=lambda w, input: str(Path(input.runs[0]).parent.parent) if input.runs else RUNS_DIR,
        figures=f"{RESULTS}/figures/flerm",
    log:
        f"{RESULTS}/logs/flerm_study.log",
    threads: 1
    shell:
        "{params.py} -m methods.flerm.study --grid {input.grid} --runs-dir {params.runs_dir} --out {output.js} "
        "--md {output.md} --figures {params.figures} --fslr {output.fslr} > {log} 2>&1"
