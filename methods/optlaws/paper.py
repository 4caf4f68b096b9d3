"""The Opt-Laws paper: schedule-family grid -> three loss laws fitted and compared -> results/optlaws.json (read
by the claims of benchmarks/claims/optlaws.yaml) + results/analysis/optlaws/summary.md (linked from the paper page
results/optlaws.md) + figures. Grid entries are named 'optlaws:<family>' / 'optlaws-probe:<family>':
  snakemake optlaws --profile config/smoke --config 'papers=[optlaws]'
The cpu tier's grid, config/papers/optlaws.cpu.yaml, includes the smoke grid and adds more peak LRs, seeds 1-2 of
every schedule and a divergence probe band; its study writes under that tier's results directory ({results}),
never over the smoke tier's outputs.
"""

from __future__ import annotations

from pathlib import Path

from claimbench.grid import expand
from claimbench.papers import Dag, Paper, Plan, Stage, in_repo, register_paper, result_files


def dag(paper: Paper, d: Dag) -> Plan:
    # the profile's grid file (the cpu tier's includes the smoke grid, whose `study:` block holds the constants)
    grid = paper.grid_file(d.profile) if "optlaws" in d.selected else None
    runs = result_files(d, expand(paper.grid_config(d.profile).get("grid") or []) if grid else {})
    study = Stage(
        name="optlaws_analysis",
        input={"grid": str(grid or paper.grid_path(d.profile)), "runs": runs},
        output={"md": f"{d.results}/analysis/optlaws/summary.md", "js": f"{d.results}/optlaws.json"},
        params={"runs_dir": lambda w, input: Path(input.runs[0]).parent.parent,
                "figures": f"{d.results}/figures/optlaws"},
        log=f"{d.results}/logs/optlaws_analysis.log",
        shell="{params.py} -m claimbench law study --grid {input.grid} --runs-dir {params.runs_dir} "
              "--out {output.js} --md {output.md} --figures {params.figures} > {log} 2>&1",
    )
    return Plan(stages=[study], aliases={"optlaws": [study.output["md"]], "optlaws_runs": runs})


PAPER = register_paper(in_repo("optlaws", methods=("methods.optlaws",), dag=dag))
