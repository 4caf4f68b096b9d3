"""`claimbench compare METHOD`: one method's row of the method matrix (or one combination's, by its row name).

Prints the plan (runs, how many are already in runs/ or the evidence store, CPU-minutes from recorded cpu_s),
trains what is missing through the DAG (rules/matrix.smk; the baselines and every run already present are
reused), archives the runs into the evidence store and rebuilds results/methods.md (and interactions.md).
Bad input (an unknown method, one that declares no workload, a workload it refuses) is one line and exit 2,
before any training.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from claimbench.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MATRIX = "config/matrix.smoke.yaml"


def _paths(args, profile: str) -> tuple[Path, Path, Path]:
    from claimbench.commands.tables import evidence_dir, load_profile

    cfg = load_profile(profile, args.configfile)
    return (Path(args.runs_dir or cfg["runs_dir"]), Path(args.results_dir or cfg["results_dir"]),
            Path(args.evidence_dir) if args.evidence_dir else evidence_dir(cfg))


def check_input(m, name: str, workloads: list[str] | None):
    """The row to run and the workloads it runs on; ConfigError (one line naming method and workload) if none."""
    from claimbench import matrix, registry

    row = m.row(name)
    if row is None:
        registry.get("method", name)  # unknown -> the registry's one-line error with a suggestion
        row = matrix.method_row(m, name)
    for mname in row.method_names:
        cls = registry.get("method", mname)
        if cls.workloads is not None and not cls.workloads:
            raise ConfigError(f"method '{mname}' declares no workload (workloads = {{}}): nothing to compare on "
                              f"({', '.join(m.workloads)})")
    inter = any(r.name == row.name for r in m.interactions)
    wanted = workloads or (list(m.interaction_workloads) if inter else list(m.workloads))
    for wl in wanted:
        if wl not in m.workloads:
            raise ConfigError(f"workload '{wl}' is not in the matrix ({', '.join(m.workloads)}; {m.path})")
        why = matrix.refusal(row, wl)
        if why and workloads:
            raise ConfigError(f"method '{name}' cannot run on workload '{wl}': {why}")
    runnable = [wl for wl in wanted if matrix.refusal(row, wl) is None]
    if not runnable:
        reasons = "; ".join(f"{wl}: {matrix.refusal(row, wl)}" for wl in wanted)
        raise ConfigError(f"method '{name}' runs on no workload of the matrix ({reasons})")
    return row, runnable


def _snakemake(args, m, row, runs_dir: Path, store: Path, results_dir: Path) -> int:
    """Train what the plan lists through the DAG (rules/matrix.smk); row None: the whole matrix."""
    from claimbench.commands.reproduce import snakemake_args

    base = (["--configfile", args.configfile, "--cores", str(args.cores or 2)] if args.configfile
            else snakemake_args(m.profile))
    inter = row is None or any(r.name == row.name for r in m.interactions)
    only = [f"matrix_rows=[{row.name}]"] if row is not None else []
    cmd = [sys.executable, "-m", "snakemake", "matrix", *base, "--config", f"matrix={m.path}", *only,
           f"matrix_interactions={str(inter).lower()}", f"matrix_workloads=[{','.join(m.workloads)}]",
           f"runs_dir={runs_dir}",
           f"results_dir={results_dir}", f"evidence_dir={store}", *args.snakemake_args]
    print("$ " + " ".join(map(str, cmd[2:])), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


def cmd_compare(args) -> int:
    from claimbench import matrix, matrix_table
    from claimbench.evidence import archive

    m = matrix.load(args.matrix)
    workloads = [w.strip() for w in args.workloads.split(",")] if args.workloads else None
    if args.all == bool(args.method):
        raise ConfigError("compare: give a method (or a combination's row name) or --all, not both")
    runs_dir, results_dir, store = _paths(args, m.profile)
    if args.all:
        row, inter, only = None, True, None
        if workloads:
            matrix.restrict(m, workloads)
        rows = matrix.table_rows(m)
    else:
        row, runnable = check_input(m, args.method, workloads)
        matrix.restrict(m, runnable)  # the baselines of workloads the method cannot take are not needed
        inter = any(r.name == row.name for r in m.interactions)
        rows, only = matrix.all_rows(m, [] if inter else [row.name]), [row.name]
        skipped = {wl: matrix.refusal(row, wl) for wl in matrix.load(args.matrix).workloads}
        skipped = {wl: why for wl, why in skipped.items() if why}
        if skipped:
            print(f"{row.name}: not on {', '.join(f'{wl} ({why})' for wl, why in skipped.items())}")
    for attempt in range(3):
        p = matrix.plan(m, rows, runs_dir, store, interactions=inter, only=only)
        print(matrix.format_plan(m, p, runs_dir, store), flush=True)
        if args.dry_run or (not p.missing and not p.pending):
            break
        if attempt == 2:
            print("claimbench: error: runs still missing after training (see the train logs)", file=sys.stderr)
            return 1
        rc = _snakemake(args, m, row, runs_dir, store, results_dir)
        if rc != 0:
            return rc
    if args.dry_run:
        return 0
    done = [runs_dir / rid for rid in p.runs if (runs_dir / rid / "result.json").is_file()]
    if done and not args.no_evidence:
        archive(done, store)
    full = matrix.load(args.matrix)  # the table shows every workload, whatever this compare ran
    extra = [row.name] if row is not None and not inter else []
    written = matrix_table.write(full, matrix.table_rows(full, extra), runs_dir, store, results_dir)
    if row is not None and not inter:
        built = matrix_table.build(full, [row], runs_dir, store)
        cells = built["matrix"][row.name]
        print(f"{row.name}: " + "; ".join(f"{wl} {c.text()}" for wl, c in cells.items()))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def register(sub) -> None:
    p = sub.add_parser("compare", help="one method's row of the method matrix: plan, train (reusing baselines), "
                                       "results/methods.md")
    p.add_argument("method", nargs="?", help="a registered method (or a combination's row name from the matrix "
                                             "config)")
    p.add_argument("--all", action="store_true", help="the whole matrix and the interaction table")
    p.add_argument("--matrix", default=DEFAULT_MATRIX, help=f"matrix config (default {DEFAULT_MATRIX})")
    p.add_argument("--workloads", help="comma-separated workloads (default: every one the method declares)")
    p.add_argument("--configfile", help="a profile config instead of config/<profile>.yaml (runs, results, data)")
    p.add_argument("--runs-dir", help="override the profile's runs_dir")
    p.add_argument("--results-dir", help="override the profile's results_dir")
    p.add_argument("--evidence-dir", help="override the profile's evidence store")
    p.add_argument("--cores", type=int, help="with --configfile: snakemake --cores (default 2)")
    p.add_argument("--no-evidence", action="store_true", help="do not archive the runs into the evidence store")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    p.add_argument("snakemake_args", nargs="*", help="passed to snakemake (after --)")
    p.set_defaults(fn=cmd_compare)

    t = sub.add_parser("matrix-table", help="rebuild results/methods.md and interactions.md from existing runs")
    t.add_argument("--matrix", default=DEFAULT_MATRIX)
    t.add_argument("--profile", default="smoke")
    t.add_argument("--configfile")
    t.add_argument("--runs-dir")
    t.add_argument("--results-dir")
    t.add_argument("--evidence-dir")
    t.add_argument("--no-figures", action="store_true")
    t.set_defaults(fn=cmd_matrix_table)


def cmd_matrix_table(args) -> int:
    from claimbench.matrix_table import matrix_tables

    written = matrix_tables(args.matrix, *_paths(args, args.profile), figures=not args.no_figures)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
