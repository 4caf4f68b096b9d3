"""The `lm_eval:` section of a profile (config/<profile>.yaml): which runs get `lm_eval.json`, with which tasks.

    lm_eval:
      suites: {offline: [cb_quartz, {task: hellaswag, shots: 10}]}   # named task lists (TASK or {task, shots})
      runs: {gpt_warmup_vs_nowarmup: offline}   # grid entry name -> suite: these runs are DAG targets
      default_suite: offline                    # for any other GPT run whose lm_eval.json is asked for (claims)
      limit: 40                                  # documents per task (null: all)
      batch_size: 16
      device: null                               # cuda if available
      dtype: float32
      hf_home: null                              # an HF_HOME holding the standard tasks' data sets

Read by rules/lm_eval.smk (no logic in .smk files) and checked here, so a typo stops the DAG at parse time.
"""

from __future__ import annotations

import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from claimbench.config import ConfigError, describe_error
from claimbench.lm_eval_catalog import TASKS


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str
    shots: int | None = Field(None, ge=0)


class LmEvalSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suites: dict[str, list[TaskSpec | str]] = {}
    runs: dict[str, str] = {}
    default_suite: str | None = None
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    device: str | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    hf_home: str | None = None

    @model_validator(mode="after")
    def _suites_exist(self):
        for name in [*self.runs.values(), *([self.default_suite] if self.default_suite else [])]:
            if name not in self.suites:
                raise ValueError(f"suite '{name}' is not defined under lm_eval.suites ({', '.join(self.suites)})")
        return self

    def tasks(self, suite: str) -> list[TaskSpec]:
        return [TaskSpec(task=t) if isinstance(t, str) else t for t in self.suites[suite]]


def section(config: dict) -> LmEvalSection:
    try:
        return LmEvalSection.model_validate(config.get("lm_eval") or {})
    except ValidationError as e:
        raise ConfigError(f"lm_eval: {describe_error(e, LmEvalSection)}") from None


class Plan:
    """Per run id: the suite it is evaluated with, as command-line arguments for `claimbench lm-eval-run`."""

    def __init__(self, config: dict, runs: dict):
        self.sec = section(config)
        self.runs = runs
        self.targets = sorted(rid for rid, spec in runs.items() if spec.meta.get("group") in self.sec.runs)

    def suite(self, run_id: str) -> str:
        group = self.runs[run_id].meta.get("group") if run_id in self.runs else None
        name = self.sec.runs.get(group) or self.sec.default_suite
        if name is None:
            raise ConfigError(f"run {run_id}: its lm_eval.json is asked for but lm_eval.runs does not name its "
                              f"grid entry '{group}' and there is no lm_eval.default_suite")
        return name

    def tasks_arg(self, run_id: str) -> str:
        specs = self.sec.tasks(self.suite(run_id))
        return ",".join(t.task if t.shots is None else f"{t.task}:{t.shots}" for t in specs)

    def offline_tasks(self, run_id: str) -> list[str]:
        return [t.task for t in self.sec.tasks(self.suite(run_id)) if t.task in TASKS and TASKS[t.task].offline]

    def options(self) -> str:
        s = self.sec
        opts = [f"--batch-size {s.batch_size}", f"--dtype {s.dtype}"]
        opts += [f"--limit {s.limit}"] if s.limit else []
        opts += [f"--device {shlex.quote(s.device)}"] if s.device else []
        opts += [f"--hf-home {shlex.quote(s.hf_home)}"] if s.hf_home else []
        return " ".join(opts)
