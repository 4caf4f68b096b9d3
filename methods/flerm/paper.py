"""The FLeRM paper: base runs record per-tensor function-space LRs -> `flerm_record` averages them over seeds into
one record per base LR -> scaled runs (method flerm, `base:` that record) train with the record as an input ->
`flerm_analysis` writes the optimal-LR shift tables, figures and verdicts; `flerm_estimator` compares the
estimators on the base model (no training):
  snakemake flerm --profile config/smoke --config 'papers=[flerm]'
The grid is config/papers/flerm.<profile>.yaml (the cpu tier's, flerm.cpu.yaml, includes the smoke grid and adds
the LoRA rank study). A changed base run re-makes its
record and retrains only the scaled runs that read it (the record file is their run input; methods/flerm/dag.py).
"""

from __future__ import annotations

from pathlib import Path

from claimbench.grid import expand
from claimbench.papers import Dag, Paper, Plan, Stage, in_repo, register_paper, result_files

ESTIMATOR_ENTRY = "flerm:mlp:base"  # the grid entry whose model and data the estimator comparison (claim 14) uses


def dag(paper: Paper, d: Dag) -> Plan:
    from methods.flerm.dag import plan

    grid = paper.grid_file(d.profile)  # the profile's (a tier's file includes the smoke grid it extends)
    on = "flerm" in d.selected and grid is not None
    fplan = plan(d.runs, str(paper.root))  # every run of the DAG: another paper's grid may use flerm too
    entries = paper.grid_config(d.profile).get("grid", []) if on else []
    runs = expand(entries)
    # the tables own results/<paper>.md once the claims file exists (and link to the stage's summary.md)
    md = f"{d.results}/analysis/flerm/summary.md" if paper.claims_file.is_file() else f"{d.results}/flerm.md"
    record = Stage(
        name="flerm_record",
        input={"runs": lambda w: [f"{d.runs_dir}/{rid}/result.json" for rid in fplan.records[w.record]]},
        output={"record": "{record}"},
        wildcard_constraints={"record": fplan.record_regex()},
        params={"dirs": lambda w, input: " ".join(str(Path(p).parent) for p in input)},
        log=f"{d.results}/logs/flerm_record/{{record}}.log",
        shell="{params.py} -m methods.flerm.records {params.dirs} --out {output} > {log} 2>&1",
    )
    study = Stage(
        name="flerm_analysis",
        input={"grid": str(grid) if on else [], "runs": result_files(d, runs),
               "records": sorted(fplan.records)},
        output={"md": md, "js": f"{d.results}/analysis/flerm/transfer.json",
                "fslr": f"{d.results}/analysis/flerm/fslr.json"},
        params={"runs_dir": lambda w, input: str(Path(input.runs[0]).parent.parent) if input.runs else d.runs_dir,
                "figures": f"{d.results}/figures/flerm"},
        log=f"{d.results}/logs/flerm_analysis.log",
        shell="{params.py} -m methods.flerm.analysis --grid {input.grid} --runs-dir {params.runs_dir} "
              "--out {output.js} --md {output.md} --figures {params.figures} --fslr {output.fslr} > {log} 2>&1",
    )
    # claim 14's estimator comparison: no training, the base entry's model and first update (methods/flerm/variance.py)
    base = next((e for e in entries if e.get("name") == ESTIMATOR_ENTRY), None)
    variance = Stage(
        name="flerm_estimator",
        # the grid and the data it reads (which the DAG prepares on a fresh clone)
        input={"grid": str(grid) if on else [], "data": d.data_files(base["data"]) if base else []},
        output={"js": f"{d.results}/analysis/flerm/estimator.json"},
        log=f"{d.results}/logs/flerm_estimator.log",
        shell="{params.py} -m methods.flerm.variance --grid {input.grid} --out {output.js} > {log} 2>&1",
    )
    return Plan(stages=[record, study, variance], aliases={"flerm": [md, variance.output["js"]]},
                run_inputs={rid: fplan.needs(rid) for rid in set(fplan.inputs) | set(fplan.checkpoints)})


def check(paper: Paper, profile: str, runs_dir: Path, store: Path | None) -> list[str]:
    from methods.flerm.checks import check as narrow

    return narrow(paper, profile, runs_dir, store)


PAPER = register_paper(in_repo("flerm", methods=("methods.flerm",), dag=dag, check=check))
