"""The one run-config schema, validated before anything runs.

A config is YAML; every key can be overridden with ``--set a.b=value``. Errors are turned
into one line that names the bad key and, for a typo, the closest valid name.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A bad config: its message is the one line shown to the user (exit code 2)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Piecewise = list[tuple[int, float]]


class TrainConfig(Strict):
    steps: int = Field(200, ge=1)
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "constant", "linear", "wsd"] | Piecewise = "cosine"
    decay_frac: float = Field(0.2, gt=0, le=1, description="wsd: share of steps spent decaying")
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    threads: int = Field(1, ge=1, description="torch intra-op threads on CPU")
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16"] = "float32"
    compile: bool = False
    parallel: Literal["ddp", "fsdp"] = Field("ddp", description="under torchrun: replicate (ddp) or shard (fsdp, "
                                             "FSDP2 per block) the model")

    @field_validator("schedule")
    @classmethod
    def _piecewise_sorted(cls, v):
        if isinstance(v, list):
            steps = [s for s, _ in v]
            if not v or steps != sorted(steps) or steps[0] != 0:
                raise ValueError("a piecewise schedule is a list of [step, lr_factor] from step 0, steps ascending")
        return v

    @model_validator(mode="after")
    def _accum_divides(self):
        if self.batch_size % self.grad_accum:
            raise ValueError(f"grad_accum={self.grad_accum} does not divide batch_size={self.batch_size}")
        return self


class EvalConfig(Strict):
    every: int = Field(100, ge=0, description="0: only at the end")
    batches: int = Field(8, ge=1)


class CkptConfig(Strict):
    every: int = Field(100, ge=0, description="0: only at the end")


class LogConfig(Strict):
    every: int = Field(10, ge=1)


class DivergeConfig(Strict):
    factor: float = Field(1.5, gt=1, description="loss above factor x step-0 loss counts as a bad step")
    patience: int = Field(50, ge=1, description="consecutive bad steps before the run is called diverged")


class PluginRef(Strict):
    """A recipe or method entry: a name and that plugin's own options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class RunConfig(Strict):
    workload: str
    size: str = "micro"
    model: dict[str, Any] = Field(default_factory=dict, description="workload options (its own schema)")
    data: dict[str, Any] = Field(default_factory=dict, description="workload data options (its own schema)")
    recipe: PluginRef = Field(default_factory=lambda: PluginRef(name="adamw"))
    methods: list[PluginRef] = Field(default_factory=list)
    seed: int = 0
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    ckpt: CkptConfig = Field(default_factory=CkptConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    diverge: DivergeConfig = Field(default_factory=DivergeConfig)

    @field_validator("recipe", mode="before")
    @classmethod
    def _recipe_ref(cls, v):
        return _plugin_ref(v)

    @field_validator("methods", mode="before")
    @classmethod
    def _method_refs(cls, v):
        if v is None:
            return []
        if not isinstance(v, list):
            raise ValueError("methods must be a list of names or {name: ..., option: value} mappings")
        return [_plugin_ref(m) for m in v]

    def hash(self) -> str:
        """Hash of everything that changes the numbers (not threads/device bookkeeping)."""
        d = self.model_dump(mode="json")
        d["train"].pop("threads", None)
        if d["train"].get("parallel") == "ddp":  # the default: left out, so configs older than the key keep their hash
            d["train"].pop("parallel")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _plugin_ref(v: Any) -> Any:
    """Accept `name` or `{name: x, opt: val}` (options inline) as in the issue's config format."""
    if isinstance(v, str):
        return {"name": v, "options": {}}
    if isinstance(v, dict) and "name" in v and "options" not in v:
        return {"name": v["name"], "options": {k: x for k, x in v.items() if k != "name"}}
    return v


# ---------------------------------------------------------------------------------------------
# loading, overrides and one-line errors


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars/flow values: 50, 1e-3, true, [a, b], {name: z}, .inf."""
    value = yaml.safe_load(text)
    if isinstance(value, str):  # YAML reads 1e-3 as a string
        try:
            return float(value) if any(c in value for c in ".eE") or value.lower() in ("inf", "nan") else value
        except ValueError:
            return value
    return value


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `a.b.c=value` in place; unknown keys are caught later by the schema."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE")
    key, text = assignment.split("=", 1)
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a mapping")
        node = nxt
    node[parts[-1]] = parse_value(text)


def load_raw(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level")
    return raw


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    raw = copy.deepcopy(base) if base is not None else load_raw(path)
    for o in overrides:
        apply_override(raw, o)
    return validate(raw, source=str(path) if path else "config")


def validate(raw: dict, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {describe_error(e, RunConfig)}") from None


def describe_error(e: ValidationError, schema: type[BaseModel]) -> str:
    """The first pydantic error as 'key: what is wrong (did you mean ...)'."""
    errs = e.errors()
    err = next((x for x in errs if x["type"] == "literal_error"), errs[0])  # a union lists each member's error
    loc = [str(p) for p in err["loc"] if isinstance(p, int) or re.fullmatch(r"[A-Za-z_]\w*", str(p))]
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        hint = closest(loc[-1], _fields_at(schema, loc[:-1]))
        return f"unknown key '{key}'" + (f" (did you mean '{'.'.join(loc[:-1] + [hint])}'?)" if hint else "")
    if err["type"] == "missing":
        return f"missing required key '{key}'"
    hint = ""
    if err["type"] == "literal_error" and isinstance(err.get("input"), str):
        hint = closest(err["input"], re.findall(r"'([^']+)'", str(err.get("ctx", {}).get("expected", ""))))
        hint = f" (did you mean '{hint}'?)" if hint else ""
    return f"bad value for '{key}': {err['msg']} (got {err.get('input')!r}){hint}"


def _fields_at(schema: type[BaseModel], path: list[str]) -> list[str]:
    model: Any = schema
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def closest(name: str, choices: list[str] | set[str]) -> str | None:
    hits = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return hits[0] if hits else None


def to_yaml(cfg: RunConfig) -> str:
    d = cfg.model_dump(mode="json")
    return yaml.safe_dump(d, sort_keys=False)
