# The papers' analysis stages: one rule per Stage of every registered paper's plan (claimbench/papers.py; the
# Snakefile asked each paper for its plan once the run list was complete), plus a target rule per alias
# (e.g. `snakemake lrm`). Nothing here names a paper.

# Snakemake evaluates a `shell:` expression twice: when the rule is defined (the command it prints) and again
# inside the job's function, after this loop has ended, where `_stage` is the last stage. The job's function has
# its rule's name as the local `rule`, so the command is looked up by name there.
STAGE_SHELL = {s.name: s.shell for _plan in PLANS.values() for s in _plan.stages}

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
            STAGE_SHELL[locals()["rule"]] if "rule" in locals() else _stage.shell


for _alias, _files in sorted({k: v for _plan in PLANS.values() for k, v in _plan.aliases.items()}.items()):

    rule:
        name:
            _alias
        input:
            _files,
