"""The AdamW^2 no-warmup crash paper (`nowarmup`): LR sweep -> LR_crash; all arms at LR_crash and 3x LR_crash; a tau
sweep; a replayed-warmup run per AdamW^2 run (its schedule read from that run's metrics, which is its run input);
then `nowarmup_analysis` -> results/analysis/nowarmup/{lr_crash,arms,malignant,sigma_growth,tau_band,cost,vision}.json
+ summary.md and results/figures/nowarmup/{sigma1,entropy}.png:
  snakemake nowarmup --profile config/smoke --config 'papers=[nowarmup]'
The grid is config/papers/nowarmup.<profile>.yaml; each entry's `study` (sweep | arms | tau | vision) says where the
analysis reads it, and `replay: true` adds the replayed-warmup twin of each of its runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from claimbench import tiers
from claimbench.grid import RunSpec, expand
from claimbench.papers import Dag, Paper, Plan, Stage, in_repo, register_paper, result_files

STUDIES = ("sweep", "arms", "tau", "vision")
OUTPUTS = ("lr_crash", "arms", "malignant", "tau_band", "vision", "sigma_growth", "cost")


def _grid(paper: Paper, d: Dag):
    """(runs by study, replay run id -> its source run id), computed once per DAG."""
    if "nowarmup" not in d.cache:
        on = "nowarmup" in d.selected and paper.grid_file(d.profile) is not None
        entries = paper.grid_config(d.profile)["grid"] if on else []
        by_study = {s: expand([e for e in entries if e.get("study") == s]) for s in STUDIES}
        # replayed warmup: same sets as the AdamW^2 run but recipe replayed_warmup (source: that run) and no method;
        # expand() orders runs the same way for an entry and its twin, so zip pairs them
        pairs = [(src, rep) for e in entries if e.get("replay")
                 for src, rep in zip(expand([e]).values(),
                                     expand([{**e, "recipes": ["replayed_warmup"], "methods": [[]]}]).values(),
                                     strict=True)]
        replay = {rep.run_id: RunSpec(rep.run_id, rep.config, tuple(
            f"recipe={json.dumps({'name': 'replayed_warmup', 'source': f'{d.runs_dir}/{src.run_id}'})}"
            if s == "recipe=replayed_warmup" else s for s in rep.sets), rep.data, rep.meta) for src, rep in pairs}
        by_study["arms"].update(replay)
        d.cache["nowarmup"] = on, entries, by_study, {rep.run_id: src.run_id for src, rep in pairs}
    return d.cache["nowarmup"]


def runs(paper: Paper, d: Dag) -> dict[str, RunSpec]:
    _, entries, by_study, _ = _grid(paper, d)
    out = expand(entries)  # entries without a `study` too
    for s in STUDIES:
        out.update(by_study[s])
    return out


def dag(paper: Paper, d: Dag) -> Plan:
    on, _, by_study, source = _grid(paper, d)
    out = f"{d.results}/analysis/nowarmup"
    study = Stage(
        name="nowarmup_analysis",
        input={s: result_files(d, by_study[s]) for s in STUDIES},
        output={"summary": f"{out}/summary.md", **{k: f"{out}/{k}.json" for k in OUTPUTS}},
        params={
            # read if there (not an input: the speed suite is run by hand, scripts/speed/speed.py --out); cost.json
            # carries a copy of its AdamW^2 overhead (nowarmup.cost reads the suite's file itself), never a run's clock
            "speed": tiers.speed_file(d.profile, d.results),
            "out": lambda w, output: str(Path(output.summary).parent),
            "figures": f"{d.results}/figures/nowarmup"},
        log=f"{d.results}/logs/nowarmup_analysis.log",
        shell="{params.py} -m methods.nowarmup.analysis --sweep {input.sweep} --arms {input.arms} --tau {input.tau} "
              "--vision {input.vision} --speed {params.speed} --out {params.out} --figures {params.figures} "
              "> {log} 2>&1",
    )
    return Plan(stages=[study], run_inputs={rep: [f"{d.runs_dir}/{src}/result.json"] for rep, src in source.items()},
                targets=[f"{out}/summary.md"] if on else [], aliases={"nowarmup": [f"{out}/summary.md"]})


PAPER = register_paper(in_repo("nowarmup", methods=("methods.nowarmup",), runs=runs, dag=dag))
