"""The one run-config schema, validated before anything runs.

A config is YAML; every key can be overridden with ``--set a.b=value``. Errors are turned
into one line that names the bad key and, for a typo, the closest valid name.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A bad config: its message is the one line shown to the user (exit code 2)."""


class Strict(BaseModel):
    """No unknown keys, no inf/NaN floats: a typo or an overflowed number is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _no_bool(v: Any) -> Any:
    """`lr: true` would read as 1.0: a bool is never a number here."""
    if isinstance(v, bool):
        raise ValueError("a number is expected, not a boolean")
    return v


Int = StrictInt  # `steps: true` or `steps: 2.5` is an error, not 1 or 2
Float = Annotated[float, BeforeValidator(_no_bool)]
Piecewise = list[tuple[Int, Float]]
SEED_RANGE = (-2**63, 2**63 - 1)  # the data-order keys pack the seed into 8 signed bytes
DEVICE_RE = r"cpu|mps|cuda(:\d+)?"


class TrainConfig(Strict):
    steps: Int = Field(200, ge=1, le=10**9)
    batch_size: Int = Field(16, ge=1)
    grad_accum: Int = Field(1, ge=1)
    lr: Float = Field(1e-3, gt=0)
    min_lr_ratio: Float = Field(0.1, ge=0, le=1)
    warmup_steps: Int = Field(0, ge=0)
    schedule: Literal["cosine", "constant", "linear", "wsd"] | Piecewise = "cosine"
    decay_frac: Float = Field(0.2, gt=0, le=1, description="wsd: share of steps spent decaying")
    weight_decay: Float = Field(0.1, ge=0)
    beta1: Float = Field(0.9, ge=0, lt=1)
    beta2: Float = Field(0.95, ge=0, lt=1)
    eps: Float = Field(1e-8, gt=0)
    grad_clip: Float = Field(1.0, ge=0, description="0 disables clipping")
    threads: Int = Field(1, ge=1, description="torch intra-op threads on CPU")
    device: str = Field("cpu", description="cpu, cuda, cuda:N or mps")
    dtype: Literal["float32", "bfloat16"] = "float32"
    compile: bool = False
    parallel: Literal["ddp", "fsdp"] = Field("ddp", description="under torchrun: replicate (ddp) or shard (fsdp, "
                                             "FSDP2 per block) the model")

    @field_validator("device")
    @classmethod
    def _known_device(cls, v):
        if not re.fullmatch(DEVICE_RE, v):
            raise ValueError("use cpu, cuda, cuda:N or mps")
        return v

    @field_validator("schedule")
    @classmethod
    def _piecewise_sorted(cls, v):
        if isinstance(v, list):
            steps = [s for s, _ in v]
            if not v or steps != sorted(steps) or steps[0] != 0:
                raise ValueError("a piecewise schedule is a list of [step, lr_factor] from step 0, steps ascending")
            bad = [f for _, f in v if not (math.isfinite(f) and f >= 0)]
            if bad:
                raise ValueError(f"a piecewise schedule's lr_factor must be finite and >= 0, got {bad[0]}")
        return v

    @model_validator(mode="after")
    def _accum_divides(self):
        if self.batch_size % self.grad_accum:
            raise ValueError(f"grad_accum={self.grad_accum} does not divide batch_size={self.batch_size}")
        return self


class EvalConfig(Strict):
    every: Int = Field(100, ge=0, description="0: only at the end")
    batches: Int = Field(8, ge=1)


class CkptConfig(Strict):
    every: Int = Field(100, ge=0, description="0: only at the end")


class LogConfig(Strict):
    every: Int = Field(10, ge=1)


class DivergeConfig(Strict):
    factor: Float = Field(1.5, gt=1, description="loss above factor x step-0 loss counts as a bad step")
    patience: Int = Field(50, ge=1, description="consecutive bad steps before the run is called diverged")


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
    seed: Int = Field(0, ge=SEED_RANGE[0], le=SEED_RANGE[1])
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
        refs = [_plugin_ref(m) for m in v]
        names = [r.get("name") if isinstance(r, dict) else None for r in refs]
        for i, name in enumerate(names):
            if name is not None and name in names[:i]:
                raise ValueError(f"method '{name}' is listed twice (methods[{names.index(name)}] and methods[{i}])")
        return refs

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
    value = yaml.load(text, Loader=UniqueKeyLoader)
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
    try:
        node[parts[-1]] = parse_value(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({_yaml_problem(e)})") from None


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (plain YAML lets the last one win silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{e.__class__.__name__}: {problem}{where}"


def load_yaml_text(path: Path) -> Any:
    """A YAML file's content; ConfigError (one line naming the file) for bytes that are not UTF-8 YAML."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"{path}: unreadable ({e.strerror or type(e).__name__})") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None


def load_raw(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = load_yaml_text(path) or {}
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
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:  # a check across keys (a model validator): its message names them
        return msg
    hint = ""
    if err["type"] == "literal_error" and isinstance(err.get("input"), str):
        hint = closest(err["input"], re.findall(r"'([^']+)'", str(err.get("ctx", {}).get("expected", ""))))
        hint = f" (did you mean '{hint}'?)" if hint else ""
    return f"bad value for '{key}': {msg} (got {_short(err.get('input'))}){hint}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
