"""`claimbench lm-eval ...` (lm-eval's own CLI with our model registered) and `claimbench lm-eval-run`
(one run -> runs/<id>/lm_eval.json, what the DAG calls); `claimbench lm-eval-data` (the offline tasks'
jsonl) belongs to the tasks and lives in benchmarks/cli.py.

lm-eval 0.4 has no entry point for outside models, so the launcher imports our model module (which
registers `claimbench`) and hands every argument to `lm_eval.__main__.cli_evaluate()` unchanged:
`--model hf` and every other lm-eval model keep working. Before that it checks the data of the tasks
it knows, so a missing data set fails at once, before any model loads, and it sets HF_HUB_OFFLINE=1 and
HF_DATASETS_OFFLINE=1 unless they are set (export them as 0 to let lm-eval download).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from claimbench.config import ConfigError

LM_EVAL_SUBCOMMANDS = ("run", "ls", "validate")


def _arg(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def cmd_lm_eval(ns) -> int:
    import os

    from claimbench.lm_eval_catalog import TASKS, check_data

    args = list(ns.args)
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # never reach for the network unless asked to
        os.environ.setdefault(flag, "1")
    tasks = _arg(args, "--tasks")
    if tasks:
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        for t in names:  # `cb_` is our namespace: an unknown cb_ name is a typo of ours, refused before lm-eval loads
            if t.startswith("cb_") and t not in _our_tasks():
                raise ConfigError(_unknown_task(t))
    from claimbench.lm_eval_model import resolve_run  # (importing it registers the model "claimbench")

    if _arg(args, "--model") == "claimbench":  # the checkpoint first (a ViT run is not news about task data)
        model_args = dict(kv.split("=", 1) for kv in (_arg(args, "--model_args") or "").split(",") if "=" in kv)
        if "checkpoint" in model_args:
            resolve_run(model_args["checkpoint"])
    if tasks:
        known = [t for t in names if t in TASKS]
        check_data(known, os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    from lm_eval.__main__ import cli_evaluate

    if args and args[0] not in LM_EVAL_SUBCOMMANDS and args[0] not in ("-h", "--help"):
        args = ["run", *args]  # lm-eval 0.4.13 wants its subcommand
    sys.argv = ["lm-eval", *args]
    try:
        cli_evaluate()
    except ValueError as e:  # lm-eval's own "Tasks not found: a, b" as one line, with our closest names
        if not str(e).startswith("Tasks not found:"):
            raise
        missing = [t.strip() for t in str(e).split(":", 1)[1].split(",") if t.strip()]
        raise ConfigError(_unknown_task(missing[0]) if missing else f"--tasks: {e}") from None
    return 0


def _our_tasks() -> set[str]:
    """Task names claimbench knows: its table and its offline task configs."""
    from claimbench.lm_eval_catalog import TASKS, TASKS_DIR

    return set(TASKS) | {p.stem for p in TASKS_DIR.glob("*.yaml")}


def _unknown_task(task: str) -> str:
    from claimbench.config import closest
    from claimbench.lm_eval_catalog import TASKS_DIR

    if (TASKS_DIR / f"{task}.yaml").is_file():
        return f"--tasks: '{task}' is one of claimbench's tasks: add --include_path {TASKS_DIR}"
    hint = closest(task, _our_tasks())
    return (f"--tasks: unknown task '{task}'" + (f" (did you mean '{hint}'?)" if hint else "")
            + "; lm-eval's own tasks: `claimbench lm-eval ls tasks`")


def cmd_lm_eval_run(ns) -> int:
    from claimbench.lm_eval_run import evaluate_run, parse_tasks

    doc = evaluate_run(ns.run_dir, parse_tasks(ns.tasks), out=ns.out, limit=ns.limit, batch_size=ns.batch_size,
                       device=ns.device, dtype=ns.dtype, hf_home=ns.hf_home, threads=ns.threads, data_dir=ns.data_dir)
    for task, res in doc["results"].items():
        scores = ", ".join(f"{k.split(',')[0]} {v:.4g}" for k, v in res.items()
                           if "," in k and "_stderr" not in k and isinstance(v, (int, float)))
        print(f"{doc['run_id']} {task}: {scores}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("lm-eval", add_help=False, prefix_chars="\x7f",  # every argument, -h too, goes to lm-eval
                       help="lm-eval's own CLI with the model 'claimbench' registered "
                            "(--model claimbench --model_args checkpoint=runs/<id>/ckpt.pt)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_lm_eval)

    r = sub.add_parser("lm-eval-run", help="evaluate one run with lm-eval; writes RUN_DIR/lm_eval.json")
    r.add_argument("run_dir")
    r.add_argument("--tasks", required=True, help="TASK[:SHOTS],... e.g. cb_quartz:0,hellaswag:10")
    r.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    r.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    r.add_argument("--hf-home", default=None, help="HF_HOME holding standard tasks' data (default: RUN_DIR/hf_home)")
    r.add_argument("--data-dir", default=None, help="offline tasks' jsonl (default: $CLAIMBENCH_LM_EVAL_DATA "
                   "or data/lm_eval)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    r.add_argument("--out", default=None, help="default: RUN_DIR/lm_eval.json")
    r.set_defaults(fn=cmd_lm_eval_run)
