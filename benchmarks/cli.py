"""Subcommands the benchmarks contribute to `claimbench` (found by claimbench.registry, imported when run)."""

from __future__ import annotations

COMMANDS = {"lm-eval-data": ("write the offline lm-eval tasks' jsonl (no network)", "register_lm_eval_data")}


def cmd_lm_eval_data(ns) -> int:
    from benchmarks.lm_eval_tasks.prepare import prepare

    for task, n in prepare(ns.out, ns.tasks.split(",") if ns.tasks else None).items():
        print(f"{task}: {n} documents")
    return 0


def register_lm_eval_data(sub) -> None:
    d = sub.add_parser("lm-eval-data", help=COMMANDS["lm-eval-data"][0])
    d.add_argument("--out", default=None, help="default: $CLAIMBENCH_LM_EVAL_DATA or data/lm_eval")
    d.add_argument("--tasks", default=None, help="comma-separated (default: all offline tasks)")
    d.set_defaults(fn=cmd_lm_eval_data)
