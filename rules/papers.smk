# The papers' analysis stages: one rule per Stage of every registered paper's plan (claimbench/papers.py; the
# Snakefile asked each paper for its plan once the run list was complete), plus a target rule per alias
# (e.g. `snakemake lrm`). Nothing here names a paper.

for _stage in [s for _plan in PLANS.values() for s in _plan.stages]:

    rule:
        name:
            _stage.name
        conda:
            "../environment.yml"
        input:
            **_stage.input,
        output:
            **_stage.output,
        wildcard_constraints:
            **_stage.wildcard_constraints,
        params:
            py=PY,
            **_stage.params,
        log:
            _stage.log,
        threads: _stage.threads
        shell:
            _stage.shell


for _alias, _files in sorted({k: v for _plan in PLANS.values() for k, v in _plan.aliases.items()}.items()):

    rule:
        name:
            _alias
        input:
            _files,
