"""claimbench DAG: prepare_data -> train (one job per run) -> aggregate.

`snakemake --profile config/smoke` runs the smoke grid; `--configfile config/gpu.yaml` the GPU one.
"""

import re
import shlex
import sys
from pathlib import Path

import yaml

from claimbench import launch, papers, tiers
from claimbench.claims import select_grid
from claimbench.grid import expand

configfile: "config/smoke.yaml"

REPO = Path(workflow.basedir)
PY = sys.executable
RUNS_DIR = config["runs_dir"]
RESULTS = config["results_dir"]
# a profile's grid is config/<profile>.yaml's `grid` plus the `grid` of every config/<profile>.d/*.yaml
# (a .d file may also add the `data` sets its grid reads)
GRID = list(config.get("grid", []))
DATA = dict(config["data"])
# (a tier, config/<tier>.yaml with `extends: BASE`, reads BASE's .d files first: claimbench/tiers.py)
for extra in [f for t in tiers.chain(config["profile"], REPO / "config")
              for f in sorted((REPO / "config" / f"{t}.d").glob("*.yaml"))]:
    extra_cfg = yaml.safe_load(extra.read_text()) or {}
    GRID += extra_cfg.get("grid", [])
    DATA.update(extra_cfg.get("data", {}))
# ... plus the data sets the selected papers' own grids declare (a paper may bring its corpus), which their claims'
# arms may name ...
PAPERS = papers.discover()
SELECTED = [PAPERS[p] for p in sorted(PAPERS) if p in (config.get("papers") or [])]
for _paper in SELECTED:
    DATA.update(_paper.grid_config(config["profile"]).get("data", {}))
# ... plus the grids of every claim of the papers selected with `papers: [...]` (benchmarks/claims/<paper>.yaml);
# an unknown paper, workload, recipe, method or data set stops here, before any training. Runs several claims
# share have one run id and are trained once.
GRID += select_grid(config.get("papers") or [], config["profile"], list(DATA))
RUNS = expand(GRID)
# ... plus each selected paper's own runs: its grid at this profile (Paper.grids, with the data sets it reads) and
# the runs it derives from them (claimbench/papers.py: every methods/<pkg>/paper.py and `claimbench.papers` entry
# point). Then, with the run list complete, every registered paper's plan: its analysis stages (rules/papers.smk
# makes one rule each), the files some runs read before they train (inputs of `train`), and its final targets.
PAPER_DAG = papers.Dag(config, REPO, RUNS, DATA)
for _paper in SELECTED:
    _paper.add_runs(PAPER_DAG)
PLANS = {paper_id: PAPERS[paper_id].plan(PAPER_DAG) for paper_id in sorted(PAPERS)}
RUN_INPUTS = {}
for _plan in PLANS.values():
    for _rid, _files in _plan.run_inputs.items():
        RUN_INPUTS.setdefault(_rid, []).extend(_files)
DATA_FILES = papers.DATA_FILES

for name, spec in DATA.items():
    if "corpus" not in spec and not (Path(spec["dir"]) / "meta.json").is_file():
        raise ValueError(f"data set '{name}': {spec['dir']}/meta.json not found. Put nanoGPT-style train.bin/val.bin "
                         f"and a meta.json with vocab_size there (README: 'Your own data') or prepare a local text "
                         f"corpus with `claimbench prepare-data text:PATH --out {spec['dir']}`")


wildcard_constraints:
    run_id=r"[A-Za-z0-9_.+\-]+",


# final targets: the papers' (above) and those rules/*.smk add (e.g. runs/<id>/lm_eval.json); read when the DAG is
# built, after the includes
TARGETS = [t for _plan in PLANS.values() for t in _plan.targets]


rule all:
    input:
        f"{RESULTS}/runs.csv",
        f"{RESULTS}/claims.md",
        f"{RESULTS}/figures/claims",
        lambda w: TARGETS,


rule prepare_data:
    conda:
        "environment.yml"
    wildcard_constraints:
        dir="|".join(re.escape(s["dir"]) for s in DATA.values() if "corpus" in s) or "(?!)",
    output:
        [f"{{dir}}/{f}" for f in DATA_FILES],
    params:
        py=PY,
        corpus=lambda w: next(s["corpus"] for s in DATA.values() if s["dir"] == w.dir),
        vocab=lambda w: next(s.get("vocab_size", 2048) for s in DATA.values() if s["dir"] == w.dir),
    log:
        "{dir}/prepare.log",
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "{params.py} -m claimbench prepare-data {params.corpus} --out {wildcards.dir} --vocab-size {params.vocab} > {log} 2>&1"


# how a train job is launched (claimbench/launch.py; README: 'SLURM' and 'local multi-GPU'): per-run resources
# from the config, torchrun inside the job when nproc_per_run > 1, and on a local run with GPUs each job pinned
# to its own devices out of `--resources gpu=N` (claimbench/gpu_slots.py: Snakemake only counts GPUs)
GPUS, NPROC = launch.gpus_nproc(config)


onstart:
    launch.check_before_start(workflow, GPUS)
    if config.get("warm"):
        launch.start_warm(workflow, PY)


onsuccess:
    launch.stop_warm()


onerror:
    launch.stop_warm()


rule train:
    conda:
        "environment.yml"
    input:
        config=lambda w: str(REPO / RUNS[w.run_id].config),
        data=lambda w: [f"{DATA[RUNS[w.run_id].data]['dir']}/{f}" for f in DATA_FILES],
        # what the run reads from another stage (a FLeRM record, a muP tuned file, the run a replay copies)
        run_inputs=lambda w: RUN_INPUTS.get(w.run_id, []),
    output:
        f"{RUNS_DIR}/{{run_id}}/result.json",
    params:
        py=PY,
        sets=lambda w: " ".join(f"--set {shlex.quote(s)}" for s in RUNS[w.run_id].sets),
        data_dir=lambda w: DATA[RUNS[w.run_id].data]["dir"],
        out=lambda w: f"{RUNS_DIR}/{w.run_id}",
        pin=lambda w: launch.gpu_pin(workflow, PY, GPUS),
        proc_threads=lambda w, threads: max(1, threads // NPROC),
    log:
        f"{RUNS_DIR}/{{run_id}}/train.log",
    threads: config.get("threads_per_run", 1)
    resources:
        **launch.train_resources(config, GPUS),
    shell:
        launch.train_shell(NPROC, bool(config.get("warm")))


# every run of the DAG (the run list is complete here)
all_results = lambda wildcards: [f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(RUNS)]


rule aggregate:
    conda:
        "environment.yml"
    input:
        all_results,
    output:
        f"{RESULTS}/runs.csv",
    params:
        py=PY,
        dirs=lambda w, input: " ".join(str(Path(p).parent) for p in input),
    log:
        f"{RESULTS}/logs/aggregate.log",
    shell:
        "{params.py} -m claimbench aggregate {params.dirs} --out {output} > {log} 2>&1"


# the evidence store: a verbatim copy of every finished run's small files (claimbench/evidence.py), which a
# fresh clone's `claimbench tables` reads; the stamp (not tracked) marks the copy as up to date
EVIDENCE = config.get("evidence_dir") or f"results/evidence/{config['profile']}"


rule evidence:
    conda:
        "environment.yml"
    input:
        runs=all_results,
        lm_eval=lambda w: [t for t in TARGETS if Path(t).name == "lm_eval.json"],
    output:
        touch(f"{RESULTS}/logs/evidence.stamp"),
    params:
        py=PY,
        store=EVIDENCE,
        dirs=lambda w, input: " ".join(str(Path(p).parent) for p in input.runs),
    log:
        f"{RESULTS}/logs/evidence.log",
    shell:
        "{params.py} -m claimbench evidence --store {params.store} {params.dirs} > {log} 2>&1"


# extra stages (claims' studies and tables, lm-eval, the papers' analysis stages) live in rules/*.smk
for smk in sorted((REPO / "rules").glob("*.smk")):

    include: smk
