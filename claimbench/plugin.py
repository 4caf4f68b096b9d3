"""The three plugin kinds: workloads (what is trained), recipes (how), methods (the papers).

A method overrides only the hooks it needs; the trainer calls only overridden hooks, so an
unused hook costs nothing. Models hand out hidden states / attention probabilities only when
some method lists them in `needs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from claimbench.config import ConfigError, RunConfig, TrainConfig, describe_error

PARTS = frozenset({"optimizer"})  # parts of a run a method may take over (Method.replaces)
ROLES = frozenset({"embedding", "hidden_matrix", "attn_q", "attn_k", "attn_v", "attn_out",
                   "readout", "norm", "bias", "multiplier"})
MATRIX_ROLES = frozenset({"embedding", "hidden_matrix", "attn_q", "attn_k", "attn_v", "attn_out", "readout"})
NEEDS = frozenset({"hidden_states", "attn_probs"})


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def validate_options(schema: type[BaseModel], options: dict, where: str) -> BaseModel:
    try:
        return schema.model_validate(options)
    except ValidationError as e:
        raise ConfigError(f"{where}: {describe_error(e, schema)}") from None


@dataclass
class Outputs:
    """What one forward pass hands to the loss, the methods and the metrics."""

    loss: torch.Tensor
    logits: torch.Tensor
    hidden_states: list[torch.Tensor] | None = None  # embeddings, then each block's output (pre final norm)
    attn_probs: list[torch.Tensor] | None = None  # per layer (batch, heads, q, k)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything a plugin may look at; `roles` is the side table name -> role."""

    cfg: RunConfig
    workload: Workload
    roles: dict[str, str]
    device: torch.device
    total_steps: int
    grad_norm: torch.Tensor | None = None  # set by the trainer each step: pre-clip global norm (clipped params)


class Workload:
    """A model family + data + metric at named sizes. Subclasses fill the class attributes."""

    name: ClassVar[str]
    sizes: ClassVar[dict[str, dict[str, Any]]] = {}
    Options: ClassVar[type[BaseModel]] = NoOptions  # model options; size presets are defaults
    DataOptions: ClassVar[type[BaseModel]] = NoOptions
    unit: ClassVar[str] = "tokens"  # tokens or samples (throughput unit)
    chance_acc: ClassVar[float | None] = None  # classifiers: a final val_acc below chance + 5 points is `collapsed`

    def __init__(self, cfg: RunConfig):
        if cfg.size not in self.sizes:
            from claimbench.config import closest

            hint = closest(cfg.size, self.sizes)
            raise ConfigError(f"unknown size 'size: {cfg.size}' for workload {self.name}"
                              + (f" (did you mean '{hint}'?)" if hint else "") + f"; sizes: {', '.join(self.sizes)}")
        self.cfg = cfg
        self.opts = validate_options(self.Options, {**self.sizes[cfg.size], **cfg.model}, "model")
        self.data_opts = validate_options(self.DataOptions, cfg.data, "data")

    def check_data(self) -> None:
        """Raise ConfigError naming the missing path (and what to download) before training."""

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def param_roles(self, model: torch.nn.Module) -> dict[str, str]:
        raise NotImplementedError

    def train_batch(self, step: int, micro: int, batch_size: int) -> Any:
        """Micro-batch `micro` (of size `batch_size`) of step `step`: a pure function of (seed, step, micro),
        so resume is exact; use `claimbench.seeding.batch_indices` so accumulation never changes the data."""
        raise NotImplementedError

    def forward(self, model: torch.nn.Module, batch: Any, needs: frozenset[str]) -> Outputs:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, device: torch.device, batches: int,
                 batch_size: int) -> dict[str, float]:
        """Validation metrics (`val_loss`, and `val_acc` for classifiers) on fixed, seed-independent batches."""
        raise NotImplementedError

    def batch_units(self, batch: Any) -> int:
        raise NotImplementedError

    def val_examples(self) -> int | None:
        """Distinct validation examples (after check_data): bounds eval.batches. None: unknown, unbounded."""
        return None

    def example_bytes(self) -> int | None:
        """A lower bound of the memory one training example takes (inputs, logits), for the check that a run fits
        in memory before it starts. None: unknown (only the parameters are counted)."""
        return None

    def no_weight_decay(self, model: torch.nn.Module) -> set[str]:
        return set()


class Recipe:
    """How a run is optimised: optimizer + LR schedule (+ train settings it forces)."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    forced: ClassVar[dict[str, Any]] = {}  # train.* values this recipe fixes, e.g. warmup_steps=0
    optimizer: ClassVar[str] = "adamw"  # the optimizer it builds (a method replacing the optimizer stands in for some)
    roles: dict[str, str] | None = None  # the run's role table, set by the trainer before build_optimizer

    def __init__(self, options: BaseModel):
        self.options = options

    def build_optimizer(self, groups: list[dict], train: TrainConfig) -> torch.optim.Optimizer:
        raise NotImplementedError

    def lr_lambda(self, train: TrainConfig) -> Callable[[int], float]:
        raise NotImplementedError


class Method:
    """A paper's method. Override only what you need; see docs/design.md for the hook list."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    needs: ClassVar[frozenset[str]] = frozenset()  # subset of NEEDS
    workloads: ClassVar[frozenset[str] | None] = None  # None: every workload
    # Composition (checked by prepare() for every pair of a run's methods, and each method with the recipe; a
    # refusal is a one-line ConfigError naming both): the run parts this method takes over (PARTS; overriding
    # make_optimizer counts as "optimizer"): two methods replacing one part cannot share a run;
    replaces: ClassVar[frozenset[str]] = frozenset()
    # with "optimizer" replaced, the recipe optimizers (Recipe.optimizer) this method stands in for: any other
    # recipe's optimizer would be silently dropped, so that recipe is refused;
    stands_in_for: ClassVar[frozenset[str]] = frozenset({"adamw"})
    # method name -> one-line reason the two cannot share a run (either order; declare it on either side);
    conflicts: ClassVar[dict[str, str]] = {}
    # method name -> one-line reason this method, when both run, must be listed after it
    after: ClassVar[dict[str, str]] = {}

    def __init__(self, options: BaseModel, ctx: RunContext):
        self.options = options
        self.ctx = ctx

    # -- hooks (defaults do nothing; the trainer skips hooks a method does not override) --
    def transform_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Change the model (add parameters: register their roles in ctx.roles)."""
        return model

    def param_groups(self, model: torch.nn.Module, groups: list[dict]) -> list[dict]:
        """Edit the optimizer's parameter groups (per-group lr_scale, weight_decay)."""
        return groups

    def make_optimizer(self, groups: list[dict], train: TrainConfig) -> torch.optim.Optimizer | None:
        """Replace the recipe's optimizer (e.g. a method that needs the update before it is applied)."""
        return None

    def extra_loss(self, outputs: Outputs) -> torch.Tensor | None:
        return None

    def before_step(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def after_step(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def metrics(self, step: int, model: torch.nn.Module, outputs: Outputs) -> dict[str, float]:
        """Logged into metrics.jsonl at log steps; prefix keys with '<method name>/'."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors/numbers the method needs to resume exactly (saved in ckpt.pt)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def check(cls, options: BaseModel, workload: Workload) -> None:
        """Raise ConfigError for options that do not fit this workload (a layer index past the model's
        depth, a model without hidden states); called by prepare(), before any file is written."""

    @classmethod
    def overrides(cls, hook: str) -> bool:
        return getattr(cls, hook).__code__ is not getattr(Method, hook).__code__

    @classmethod
    def replaced_parts(cls) -> frozenset[str]:
        """The run parts this method takes over: its declared `replaces`, plus the optimizer if it overrides
        make_optimizer (a replacement is never silent)."""
        return frozenset(cls.replaces) | (frozenset({"optimizer"}) if cls.overrides("make_optimizer") else frozenset())


def composition_error(methods: list[type[Method]], recipe: type[Recipe] | None = None) -> str | None:
    """The one-line reason a run's methods (in their listed order) and recipe cannot run together, from what the
    plugins declare (Method.replaces / stands_in_for / conflicts / after, Recipe.optimizer); None if they can."""
    for i, a in enumerate(methods):
        for j in range(i + 1, len(methods)):
            b = methods[j]
            both = f"methods[{i}] '{a.name}' and methods[{j}] '{b.name}'"
            shared = sorted(a.replaced_parts() & b.replaced_parts())
            if shared:
                return f"{both} cannot run together: both replace the {shared[0]} (only one can)"
            reason = a.conflicts.get(b.name) or b.conflicts.get(a.name)
            if reason:
                return f"{both} cannot run together: {reason}"
            if b.name in a.after:  # a must follow b, but is listed first
                return f"{both}: list `{b.name}` before `{a.name}` ({a.after[b.name]})"
    if recipe is not None:
        for i, m in enumerate(methods):
            if "optimizer" in m.replaced_parts() and recipe.optimizer not in m.stands_in_for:
                return (f"methods[{i}] '{m.name}' and recipe '{recipe.name}' cannot run together: '{m.name}' replaces "
                        f"the recipe's optimizer ({', '.join(sorted(m.stands_in_for))} only) and recipe "
                        f"'{recipe.name}' builds {recipe.optimizer}, which would be silently dropped")
    return None
