# Downstream evaluation: `lm_eval` scores a trained GPT run with lm-evaluation-harness ->
# runs/<id>/lm_eval.json. Targets: the runs of the grid entries named in the profile's `lm_eval.runs`;
# any other run whose lm_eval.json a later stage asks for (claims with an lm_eval: statistic) gets
# `lm_eval.default_suite`. `lm_eval_data` writes the offline tasks' jsonl (cb_quartz needs
# benchmarks/lm_eval_tasks/fetch_data.sh, run by `make setup`). Schema: claimbench/lm_eval_plan.py.

from claimbench.lm_eval_plan import Plan

LM_EVAL = Plan(config, RUNS)
LM_EVAL_DATA = "data/lm_eval"
TARGETS += [f"{RUNS_DIR}/{rid}/lm_eval.json" for rid in LM_EVAL.targets]


rule lm_eval_data:
    conda:
        "../environment.yml"
    output:
        f"{LM_EVAL_DATA}/{{task}}.jsonl",
    wildcard_constraints:
        task=r"cb_[a-z0-9_]+",
    params:
        py=PY,
        out=lambda w, output: str(Path(output[0]).parent),
    log:
        f"{LM_EVAL_DATA}/logs/{{task}}.log",
    shell:
        "{params.py} -m claimbench lm-eval-data --out {params.out} --tasks {wildcards.task} > {log} 2>&1"


rule lm_eval:
    conda:
        "../environment.yml"
    input:
        result=f"{RUNS_DIR}/{{run_id}}/result.json",
        data=lambda w: [f"{LM_EVAL_DATA}/{t}.jsonl" for t in LM_EVAL.offline_tasks(w.run_id)],
    output:
        f"{RUNS_DIR}/{{run_id}}/lm_eval.json",
    params:
        py=PY,
        run_dir=lambda w, output: str(Path(output[0]).parent),
        tasks=lambda w: LM_EVAL.tasks_arg(w.run_id),
        opts=LM_EVAL.options(),
        data_dir=lambda w, input: str(Path(input.data[0]).parent) if input.data else LM_EVAL_DATA,
    log:
        f"{RUNS_DIR}/{{run_id}}/lm_eval.log",
    threads: 1
    resources:
        mem_mb=4000,
        gpu=config.get("gpus_per_run", 0),
    shell:
        "{params.py} -m claimbench lm-eval-run {params.run_dir} --tasks {params.tasks} {params.opts} "
        "--data-dir {params.data_dir} --threads {threads} > {log} 2>&1"
