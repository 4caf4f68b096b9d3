# The method matrix and the interaction table (claimbench/matrix.py; tables: claimbench/matrix_table.py).
# Off unless a matrix config is given: `snakemake --profile config/smoke matrix --config
# matrix=config/matrix.smoke.yaml` (what `claimbench compare` runs). Optional config: `matrix_rows=[name,...]`
# (those rows, the baseline and each combination's parts only), `matrix_workloads=[name,...]`,
# `matrix_interactions=false`.
# The seed runs of an entry are known once its LR sweep has finished, so a fresh matrix needs two invocations
# (`claimbench compare` repeats until nothing is pending); runs already in runs/ or the evidence store are reused.
if config.get("matrix"):
    from claimbench import matrix as _mx

    _MX = _mx.load(config["matrix"])
    if config.get("matrix_workloads"):
        _mx.restrict(_MX, list(config["matrix_workloads"]))
    for _name, _spec in (_MX.raw.get("data") or {}).items():
        DATA.setdefault(_name, _spec)
    _MX_ONLY = list(config.get("matrix_rows") or []) or None
    _MX_ROWS = _mx.all_rows(_MX, _MX_ONLY) if _MX_ONLY else _mx.table_rows(_MX)
    _MX_STORE = config.get("evidence_dir") or f"results/evidence/{config['profile']}"
    _MX_PLAN = _mx.plan(_MX, _MX_ROWS, RUNS_DIR, _MX_STORE,
                        interactions=bool(config.get("matrix_interactions", True)), only=_MX_ONLY)
    for _rid, _spec in _MX_PLAN.runs.items():
        if _spec.data not in DATA:
            raise ValueError(f"{config['matrix']}: data set '{_spec.data}' is not in the profile's `data` "
                             f"(known: {', '.join(DATA)})")
        RUNS.setdefault(_rid, _spec)

    rule matrix:
        input:
            [f"{RUNS_DIR}/{rid}/result.json" for rid in _MX_PLAN.missing],
