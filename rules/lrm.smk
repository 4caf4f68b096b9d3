# Learnable Multipliers (issue 6, paper `lrm`): the runs of config/papers/lrm.<profile>.yaml (each grid entry names
# its `study`), then `lrm_study` -> results/analysis/lrm/summary.{json,md}, one number per claim
# (methods/lrm/analysis.py), which benchmarks/claims/lrm.yaml reads with `from_file`. Behind a switch so other
# profiles stay fast: on when `papers` lists lrm, or with `--config lrm_studies=true` (before the claims exist):
#   snakemake --profile config/smoke --config 'papers=[lrm]' lrm

LRM_GRID = REPO / "config" / "papers" / f"lrm.{config['profile']}.yaml"
LRM_ON = ("lrm" in (config.get("papers") or []) or bool(config.get("lrm_studies"))) and LRM_GRID.is_file()
LRM_RUNS = expand(yaml.safe_load(LRM_GRID.read_text())["grid"]) if LRM_ON else {}
RUNS.update(LRM_RUNS)
LRM_OUT = f"{RESULTS}/analysis/lrm"
if LRM_ON:
    TARGETS += [f"{LRM_OUT}/summary.json"]


rule lrm:
    input:
        f"{LRM_OUT}/summary.json",


rule lrm_study:
    conda:
        "../environment.yml"
    input:
        [f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(LRM_RUNS)],
    output:
        json=f"{LRM_OUT}/summary.json",
        md=f"{LRM_OUT}/summary.md",
        claims=[f"{LRM_OUT}/{f}" for f in ("c1_norm_slope.json", "c2_projector.json", "c4_residual_norms.json",
                                           "c7_width.json")],
    params:
        py=PY,
        grid=str(LRM_GRID),
        runs_dir=lambda w, input: str(Path(input[0]).parent.parent),
    log:
        f"{RESULTS}/logs/lrm_study.log",
    threads: 1
    shell:
        "{params.py} -m methods.lrm.analysis --grid {params.grid} --runs-dir {params.runs_dir} "
        "--out {output.json} > {log} 2>&1"
