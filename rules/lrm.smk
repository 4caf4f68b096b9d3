# Learnable Multipliers (paper `lrm`): the runs of config/papers/lrm.<profile>.yaml (each grid entry names
# its `study`), then `lrm_study` -> results/analysis/lrm/summary.{json,md}, one number per claim
# (methods/lrm/analysis.py), which benchmarks/claims/lrm.yaml reads with `from_file`. Behind a switch so other
# profiles stay fast: on when `papers` lists lrm, or with `--config lrm_studies=true` (before the claims exist):
#   snakemake --profile config/smoke --config 'papers=[lrm]' lrm
# The muP tuning levels (C10 levels): the `mup_sweep` trials at base width -> `lrm_mup_pick` writes the tuned file
# (methods/lrm/mup_sweep.py) -> the runs whose `mup` names it (`tuned:`) train with it as an input
# (`lrm_mup_train` is `train` plus that input), so a changed sweep retrains them and nothing else.
# C11/C12: `lrm_downstream` reads lm-eval's scores (rules/lm_eval.smk) of the `downstream` pairs
# (methods/lrm/downstream.py).

from methods.lrm import mup_sweep as lrm_mup_sweep
from methods.lrm.downstream import pairs as lrm_downstream_pairs

LRM_GRID = REPO / "config" / "papers" / f"lrm.{config['profile']}.yaml"
LRM_ON = ("lrm" in (config.get("papers") or []) or bool(config.get("lrm_studies"))) and LRM_GRID.is_file()
LRM_CFG = (yaml.safe_load(LRM_GRID.read_text()) or {}) if LRM_ON else {}
LRM_SWEEP = lrm_mup_sweep.load_sweep(LRM_CFG, str(LRM_GRID)) if LRM_ON else None
LRM_RUNS = expand(LRM_CFG.get("grid", []) + (lrm_mup_sweep.trial_grid(LRM_SWEEP) if LRM_SWEEP else []))
RUNS.update(LRM_RUNS)
LRM_MUP = lrm_mup_sweep.plan(RUNS, [LRM_SWEEP] if LRM_SWEEP else [])
LRM_OUT = f"{RESULTS}/analysis/lrm"
LRM_DOWNSTREAM = f"{LRM_OUT}/c11_downstream.json" if "downstream" in LRM_CFG else None
LRM_DOWNSTREAM_RUNS = sorted({rid for arms in (lrm_downstream_pairs(LRM_CFG, str(LRM_GRID)).values()
                                               if LRM_DOWNSTREAM else []) for specs in arms.values() for rid in specs})
if LRM_ON:
    TARGETS += [f"{LRM_OUT}/summary.json"] + ([LRM_DOWNSTREAM] if LRM_DOWNSTREAM else [])


rule lrm:
    input:
        f"{LRM_OUT}/summary.json",
        [LRM_DOWNSTREAM] if LRM_DOWNSTREAM else [],


ruleorder: lrm_mup_train > train


use rule train as lrm_mup_train with:
    conda:
        "../environment.yml"
    input:
        config=lambda w: str(REPO / RUNS[w.run_id].config),
        data=lambda w: [f"{DATA[RUNS[w.run_id].data]['dir']}/{f}" for f in DATA_FILES],
        tuned=lambda w: LRM_MUP.inputs[w.run_id],
    wildcard_constraints:
        run_id=LRM_MUP.run_regex(),


rule lrm_mup_pick:
    conda:
        "../environment.yml"
    input:
        lambda w: [f"{RUNS_DIR}/{rid}/result.json" for rid in LRM_MUP.records[w.tuned]],
    output:
        "{tuned}",
    wildcard_constraints:
        tuned=LRM_MUP.record_regex(),
    params:
        py=PY,
        grid=str(LRM_GRID),
        runs_dir=RUNS_DIR,
    log:
        f"{RESULTS}/logs/lrm_mup_pick/{{tuned}}.log",
    threads: 1
    shell:
        "{params.py} -m methods.lrm.mup_sweep --grid {params.grid} --runs-dir {params.runs_dir} --out {output} "
        "> {log} 2>&1"


rule lrm_study:
    conda:
        "../environment.yml"
    input:
        runs=[f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(LRM_RUNS)],
        tuned=sorted(LRM_MUP.records),
    output:
        json=f"{LRM_OUT}/summary.json",
        md=f"{LRM_OUT}/summary.md",
        claims=[f"{LRM_OUT}/{f}" for f in ("c1_norm_slope.json", "c2_projector.json", "c3_mlp_scale.json",
                                           "c4_residual_norms.json", "c6_symmetry.json", "c7_width.json",
                                           "c10_perf.json", "c10_levels.json")],
    params:
        py=PY,
        grid=str(LRM_GRID),
        runs_dir=lambda w, input: str(Path(input.runs[0]).parent.parent),
        store=EVIDENCE,
    log:
        f"{RESULTS}/logs/lrm_study.log",
    threads: 1
    shell:
        "{params.py} -m methods.lrm.analysis --grid {params.grid} --runs-dir {params.runs_dir} "
        "--store {params.store} --out {output.json} > {log} 2>&1"


rule lrm_downstream:
    conda:
        "../environment.yml"
    input:
        [f"{RUNS_DIR}/{rid}/lm_eval.json" for rid in LRM_DOWNSTREAM_RUNS],
    output:
        f"{LRM_OUT}/c11_downstream.json",
    params:
        py=PY,
        grid=str(LRM_GRID),
        runs_dir=RUNS_DIR,
        store=EVIDENCE,
    log:
        f"{RESULTS}/logs/lrm_downstream.log",
    threads: 1
    shell:
        "{params.py} -m methods.lrm.downstream --grid {params.grid} --runs-dir {params.runs_dir} "
        "--store {params.store} --out {output} > {log} 2>&1"
