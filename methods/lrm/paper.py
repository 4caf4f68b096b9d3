"""The Learnable Multipliers paper (`lrm`): the runs of config/papers/lrm.<profile>.yaml (each grid entry names its
`study`), then `lrm_analysis` -> results/analysis/lrm/summary.{json,md}, one number per claim (methods/lrm/analysis.py),
which benchmarks/claims/lrm.yaml reads with `from_file`:
  snakemake lrm --profile config/smoke --config 'papers=[lrm]'
The muP tuning levels (C10 levels): the `mup_sweep` trials at base width -> `lrm_mup_pick` writes the tuned file
(methods/lrm/mup_sweep.py) -> the runs whose `mup` names it (`tuned:`) read it as a run input, so a changed sweep
retrains them and nothing else. C11/C12: `lrm_downstream` reads lm-eval's scores of the `downstream` pairs
(methods/lrm/downstream.py).
"""

from __future__ import annotations

from pathlib import Path

from claimbench.grid import expand
from claimbench.papers import Dag, Paper, Plan, Stage, in_repo, register_paper, result_files

CLAIM_FILES = ("c1_norm_slope.json", "c2_projector.json", "c3_mlp_scale.json", "c4_residual_norms.json",
               "c6_symmetry.json", "c7_width.json", "c10_perf.json", "c10_levels.json")


def _grid(paper: Paper, d: Dag):
    """(on, grid config, muP sweep, the paper's runs, grid file), computed once per DAG. The profile's grid file
    (the cpu tier's includes the smoke grid) is read only when the paper is selected."""
    from claimbench.tiers import load_grid
    from methods.lrm import mup_sweep

    if "lrm" not in d.cache:
        f = paper.grid_file(d.profile) if "lrm" in d.selected else None
        on = f is not None
        cfg = load_grid(f) if on else {}
        sweep = mup_sweep.load_sweep(cfg, str(f)) if on else None
        d.cache["lrm"] = (on, cfg, sweep, expand(cfg.get("grid", []) + (mup_sweep.trial_grid(sweep) if sweep else [])),
                          str(f) if on else "")
    return d.cache["lrm"]


def runs(paper: Paper, d: Dag):
    return _grid(paper, d)[3]


def dag(paper: Paper, d: Dag) -> Plan:
    from methods.lrm import mup_sweep
    from methods.lrm.downstream import pairs

    on, cfg, sweep, own, grid = _grid(paper, d)
    mup = mup_sweep.plan(d.runs, [sweep] if sweep else [])  # every run of the DAG may read a tuned file
    out = f"{d.results}/analysis/lrm"
    downstream = f"{out}/c11_downstream.json" if "downstream" in cfg else None
    down_runs = sorted({rid for arms in (pairs(cfg, grid).values() if downstream else []) for specs in arms.values()
                        for rid in specs})
    stages = [
        Stage(name="lrm_mup_pick",
              input={"trials": lambda w: [f"{d.runs_dir}/{rid}/result.json" for rid in mup.records[w.tuned]]},
              output={"tuned": "{tuned}"},
              wildcard_constraints={"tuned": mup.record_regex()},
              params={"grid": grid, "runs_dir": d.runs_dir},
              log=f"{d.results}/logs/lrm_mup_pick/{{tuned}}.log",
              shell="{params.py} -m methods.lrm.mup_sweep --grid {params.grid} --runs-dir {params.runs_dir} "
                    "--out {output} > {log} 2>&1"),
        Stage(name="lrm_analysis",
              input={"runs": result_files(d, own), "tuned": sorted(mup.records)},
              output={"json": f"{out}/summary.json", "md": f"{out}/summary.md",
                      "claims": [f"{out}/{f}" for f in CLAIM_FILES]},
              params={"grid": grid, "runs_dir": lambda w, input: str(Path(input.runs[0]).parent.parent),
                      "store": d.evidence},
              log=f"{d.results}/logs/lrm_analysis.log",
              shell="{params.py} -m methods.lrm.analysis --grid {params.grid} --runs-dir {params.runs_dir} "
                    "--store {params.store} --out {output.json} > {log} 2>&1"),
        Stage(name="lrm_downstream",
              input={"lm_eval": [f"{d.runs_dir}/{rid}/lm_eval.json" for rid in down_runs]},
              output={"out": f"{out}/c11_downstream.json"},
              params={"grid": grid, "runs_dir": d.runs_dir, "store": d.evidence},
              log=f"{d.results}/logs/lrm_downstream.log",
              shell="{params.py} -m methods.lrm.downstream --grid {params.grid} --runs-dir {params.runs_dir} "
                    "--store {params.store} --out {output} > {log} 2>&1"),
    ]
    mine = [f"{out}/summary.json"] + ([downstream] if downstream else [])
    return Plan(stages=stages, run_inputs={rid: [p] for rid, p in mup.inputs.items()},
                targets=mine if on else [], aliases={"lrm": mine})


PAPER = register_paper(in_repo("lrm", methods=("methods.lrm",), runs=runs, dag=dag))
