# JREG (issue 10): the held-out jump profile of every run of a `jreg*` grid entry, then one summary
# (summary.json with the statistic each JREG claim reads, jump.md, jump_over_training.png, profiles.png).
#   snakemake jreg_summary --cores 2 --configfile config/jreg-smoke.yaml   (target first: --configfile takes a list)
# With no jreg grid in the profile, JREG_RUNS is empty and these rules are never scheduled.

JREG_RUNS = sorted(rid for rid, spec in RUNS.items() if spec.meta.get("group", "").startswith("jreg"))


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
        runs=lambda w, input: " ".join(str(Path(p).parent) for p in input.results),
        out=lambda w, output: str(Path(output.summary).parent),
    log:
        f"{RESULTS}/logs/jreg_summary.log",
    shell:
        "{params.py} -m methods.jreg.summary --runs {params.runs} --profiles {input.profiles} "
        "--out {params.out} > {log} 2>&1"
