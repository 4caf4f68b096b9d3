"""The catalogue of lm-eval tasks claimbench knows: their chance levels and where their data must be,
checked before any model loads. (Our own offline tasks' definitions are YAML in benchmarks/lm_eval_tasks/.)

Chance levels let every table print a score beside what guessing gives, so a score at chance is
read as such. Data checks run before a model is built: an evaluation that would die on a missing
data set after minutes of loading fails at once, naming the task and how to fetch its data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from claimbench.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "benchmarks" / "lm_eval_tasks"
FETCH = "benchmarks/lm_eval_tasks/fetch_data.sh"


@dataclass(frozen=True)
class TaskInfo:
    """chance: metric -> accuracy of uniform guessing (0.0 for open-ended answers; none for perplexities).
    hub: the Hugging Face data sets (path, name) a standard lm-eval task loads; empty for our offline tasks."""

    chance: dict[str, float]
    hub: tuple[tuple[str, str | None], ...] = ()
    note: str = ""
    offline: bool = field(default=False)


def _mc(k: float, note: str = "", *hub: tuple[str, str | None]) -> TaskInfo:
    return TaskInfo({"acc": k, "acc_norm": k}, tuple(hub), note)


TASKS: dict[str, TaskInfo] = {
    # ours, offline (benchmarks/lm_eval_tasks/*.yaml)
    "cb_shakespeare_cloze": TaskInfo({"acc": 0.0}, note="open-vocabulary last word: chance is about 0",
                                     offline=True),
    "cb_quartz": TaskInfo({"acc": 0.5, "acc_norm": 0.5}, note="2 choices, labels balanced", offline=True),
    "cb_shakespeare_ppl": TaskInfo({}, note="perplexity only", offline=True),
    # learnable multipliers (Table 2); the leaderboard variants as the paper's BBH/MATH levels suggest
    "hellaswag": _mc(0.25, "4 endings", ("Rowan/hellaswag", None)),
    "arc_challenge": _mc(0.25, "mostly 4 choices (a few 3 or 5)", ("allenai/ai2_arc", "ARC-Challenge")),
    "mmlu": _mc(0.25, "4 choices", ("cais/mmlu", None)),
    "leaderboard_mmlu_pro": _mc(0.1, "up to 10 choices", ("TIGER-Lab/MMLU-Pro", None)),
    "leaderboard_bbh": _mc(0.2917, "mean of 1/#choices over the 24 subtasks (unweighted)", ("SaylorTwift/bbh", None)),
    "gsm8k": TaskInfo({"exact_match": 0.0}, (("openai/gsm8k", "main"),), "open answer"),
    "leaderboard_math_hard": TaskInfo({"exact_match": 0.0}, (("DigitalLearningGmbH/MATH-lighteval", None),),
                                      "MATH level 5, open answer"),
    # JREG suite default (the paper's list is not public; see docs/papers/jreg.md)
    "arc_easy": _mc(0.25, "mostly 4 choices", ("allenai/ai2_arc", "ARC-Easy")),
    "piqa": _mc(0.5, "2 solutions", ("baber/piqa", None)),
    "winogrande": _mc(0.5, "2 options", ("allenai/winogrande", "winogrande_xl")),
    "openbookqa": _mc(0.25, "4 choices", ("allenai/openbookqa", "main")),
    "boolq": TaskInfo({"acc": 0.5}, (("aps/super_glue", "boolq"),), "yes/no (majority class is 62%)"),
    "lambada_openai": TaskInfo({"acc": 0.0}, (("EleutherAI/lambada_openai", "default"),), "open-vocabulary word"),
    "sciq": _mc(0.25, "4 choices", ("allenai/sciq", None)),
}


def chance(task: str, metric: str) -> float | None:
    """Chance level of `metric` ('acc', 'acc,none' or 'acc_norm') on `task`; None where it has none."""
    info = TASKS.get(task)
    return None if info is None else info.chance.get(metric.split(",")[0])


def offline_data_dir() -> Path:
    return Path(os.environ.get("CLAIMBENCH_LM_EVAL_DATA") or REPO / "data" / "lm_eval")


def hub_cached(path: str, hf_home: Path) -> bool:
    """A data set is on this machine if the hub cache or the datasets cache under HF_HOME has it."""
    hub = hf_home / "hub" / f"datasets--{path.replace('/', '--')}"
    ds = hf_home / "datasets"
    return hub.is_dir() or (ds.is_dir() and any(ds.glob(f"{path.replace('/', '___')}*")))


def check_data(tasks: list[str], hf_home: str | Path | None) -> None:
    """Raise ConfigError for the first task whose data is not on this machine, saying how to get it."""
    home = Path(hf_home) if hf_home else None
    for task in tasks:
        info = TASKS.get(task)
        if info is None:
            if not (TASKS_DIR / f"{task}.yaml").is_file():
                raise ConfigError(f"lm_eval task '{task}': not in claimbench's task catalogue "
                                  f"(claimbench/lm_eval_catalog.py); add its chance level and data set there")
            continue
        if info.offline:
            f = offline_data_dir() / f"{task}.jsonl"
            if not f.is_file():
                how = f"`{FETCH}` then " if task == "cb_quartz" else ""
                raise ConfigError(f"lm_eval task '{task}': {f} not found; make it with {how}`claimbench lm-eval-data`")
            continue
        for path, name in info.hub:
            if home is None or not hub_cached(path, home):
                where = home if home is not None else "(no HF_HOME given: set lm_eval.hf_home)"
                load = f"datasets.load_dataset('{path}'" + (f", '{name}'" if name else "") + ")"
                raise ConfigError(f"lm_eval task '{task}': data set {path} is not on this machine (HF_HOME {where}); "
                                  f"on a machine with network run `HF_HOME={where} python -c \"import datasets; "
                                  f"{load}\"` and copy that HF_HOME here")
