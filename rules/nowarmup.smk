# AdamW^2 no-warmup crash study (paper `nowarmup`): LR sweep -> LR_crash; all arms at LR_crash and
# 3x LR_crash; a tau sweep; a replayed-warmup run per AdamW^2 run (its schedule read from that run's metrics);
# then `nowarmup_study` -> results/analysis/nowarmup/{lr_crash,arms,malignant,sigma_growth,tau_band,cost,vision}.json
# + summary.md and
# results/figures/nowarmup/{sigma1,entropy}.png. Behind a switch so other profiles stay fast:
#   snakemake --profile config/smoke --config 'papers=[nowarmup]' nowarmup
# The grid is config/papers/nowarmup.<profile>.yaml; each entry's `study` (sweep | arms | tau | vision) says where the
# analysis reads it, and `replay: true` adds the replayed-warmup twin of each of its runs.

import json
import re

from claimbench.grid import RunSpec

NOWARMUP_GRID = REPO / "config" / "papers" / f"nowarmup.{config['profile']}.yaml"
NOWARMUP_ON = "nowarmup" in (config.get("papers") or []) and NOWARMUP_GRID.is_file()
NOWARMUP_ENTRIES = yaml.safe_load(NOWARMUP_GRID.read_text())["grid"] if NOWARMUP_ON else []
NOWARMUP_BY_STUDY = {
    study: expand([e for e in NOWARMUP_ENTRIES if e.get("study") == study])
    for study in ("sweep", "arms", "tau", "vision")
}
# replayed warmup: same sets as the AdamW^2 run but recipe replayed_warmup (source: that run) and no method;
# expand() orders runs the same way for an entry and its twin, so zip pairs them
NOWARMUP_PAIRS = [
    (src, rep)
    for e in NOWARMUP_ENTRIES
    if e.get("replay")
    for src, rep in zip(
        expand([e]).values(),
        expand([{**e, "recipes": ["replayed_warmup"], "methods": [[]]}]).values(),
        strict=True,
    )
]
NOWARMUP_REPLAY = {
    rep.run_id: RunSpec(
        rep.run_id,
        rep.config,
        tuple(
            f"recipe={json.dumps({'name': 'replayed_warmup', 'source': f'{RUNS_DIR}/{src.run_id}'})}"
            if s == "recipe=replayed_warmup"
            else s
            for s in rep.sets
        ),
        rep.data,
        rep.meta,
    )
    for src, rep in NOWARMUP_PAIRS
}
NOWARMUP_SOURCE = {rep.run_id: src.run_id for src, rep in NOWARMUP_PAIRS}
NOWARMUP_BY_STUDY["arms"].update(NOWARMUP_REPLAY)
for _runs in NOWARMUP_BY_STUDY.values():
    RUNS.update(_runs)
NOWARMUP_OUT = f"{RESULTS}/analysis/nowarmup"
if NOWARMUP_ON:
    TARGETS += [f"{NOWARMUP_OUT}/summary.md"]


rule nowarmup:
    input:
        f"{NOWARMUP_OUT}/summary.md",


ruleorder: nowarmup_replay_train > train


use rule train as nowarmup_replay_train with:
    conda:
        "../environment.yml"
    input:
        config=lambda w: str(REPO / RUNS[w.run_id].config),
        data=lambda w: [f"{DATA[RUNS[w.run_id].data]['dir']}/{f}" for f in DATA_FILES],
        source=lambda w: f"{RUNS_DIR}/{NOWARMUP_SOURCE[w.run_id]}/result.json",
    wildcard_constraints:
        run_id="|".join(re.escape(r) for r in sorted(NOWARMUP_REPLAY)) or r"(?!x)x",


rule nowarmup_study:
    conda:
        "../environment.yml"
    input:
        sweep=[f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(NOWARMUP_BY_STUDY["sweep"])],
        arms=[f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(NOWARMUP_BY_STUDY["arms"])],
        tau=[f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(NOWARMUP_BY_STUDY["tau"])],
        vision=[f"{RUNS_DIR}/{rid}/result.json" for rid in sorted(NOWARMUP_BY_STUDY["vision"])],
    output:
        summary=f"{NOWARMUP_OUT}/summary.md",
        lr_crash=f"{NOWARMUP_OUT}/lr_crash.json",
        arms=f"{NOWARMUP_OUT}/arms.json",
        malignant=f"{NOWARMUP_OUT}/malignant.json",
        tau_band=f"{NOWARMUP_OUT}/tau_band.json",
        vision=f"{NOWARMUP_OUT}/vision.json",
        sigma_growth=f"{NOWARMUP_OUT}/sigma_growth.json",
        cost=f"{NOWARMUP_OUT}/cost.json",
    params:
        py=PY,
        # read if there (not an input: the speed suite is run by hand, benchmarks/speed/speed.py --out); cost.json
        # carries a copy of its AdamW^2 overhead (nowarmup.cost reads the suite's file itself), never a run's clock
        speed=f"{RESULTS}/speed/{config['profile']}.json",
        out=lambda w, output: str(Path(output.summary).parent),
        figures=f"{RESULTS}/figures/nowarmup",
    log:
        f"{RESULTS}/logs/nowarmup_study.log",
    threads: 1
    shell:
        "{params.py} -m methods.adamw2.analysis --sweep {input.sweep} --arms {input.arms} --tau {input.tau} "
        "--vision {input.vision} --speed {params.speed} --out {params.out} --figures {params.figures} > {log} 2>&1"
