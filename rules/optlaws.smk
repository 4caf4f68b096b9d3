# Opt-Laws: schedule-family grid -> three loss laws fitted and compared -> results/optlaws.json
# (read by the claims of benchmarks/claims/optlaws.yaml) + results/analysis/optlaws/summary.md (linked from the
# paper page results/optlaws.md) + figures.
# Behind the papers switch so the default profile stays fast:
#   snakemake --profile config/smoke --config 'papers=[optlaws]' optlaws
# The grid is config/papers/optlaws.<profile>.yaml (the Snakefile adds it to RUNS when optlaws is selected);
# entries are named 'optlaws:<family>' / 'optlaws-probe:<family>'.

OPTLAWS_GRID = REPO / "config" / "papers" / f"optlaws.{config['profile']}.yaml"
OPTLAWS_ON = "optlaws" in (config.get("papers") or []) and OPTLAWS_GRID.is_file()
OPTLAWS_RUNS = expand(yaml.safe_load(OPTLAWS_GRID.read_text())["grid"]) if OPTLAWS_ON else {}


rule optlaws:
    input:
        f"{RESULTS}/analysis/optlaws/summary.md",


rule optlaws_runs:
    input:
        [f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(OPTLAWS_RUNS)],


rule optlaws_study:
    conda:
        "../environment.yml"
    input:
        grid=str(OPTLAWS_GRID),
        runs=[f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(OPTLAWS_RUNS)],
    output:
        md=f"{RESULTS}/analysis/optlaws/summary.md",
        js=f"{RESULTS}/optlaws.json",
    params:
        py=PY,
        runs_dir=lambda w, input: Path(input.runs[0]).parent.parent,
        figures=f"{RESULTS}/figures/optlaws",
    log:
        f"{RESULTS}/logs/optlaws_study.log",
    threads: 1
    shell:
        "{params.py} -m claimbench law study --grid {input.grid} --runs-dir {params.runs_dir} --out {output.js} "
        "--md {output.md} --figures {params.figures} > {log} 2>&1"
