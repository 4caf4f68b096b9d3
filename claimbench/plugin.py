"""The three plugin kinds: workloads (what is trained), recipes (how), methods (the papers).

A method overrides only the hooks it needs; the trainer calls only overridden hooks, so an
unused hook costs nothing. Models hand out hidden states / attention probabilities only when
some method lists them in `needs`. Everything else a method may ask of a model (attention layers,
attention logits, forward multipliers, depth, readout, a held-out batch, the tokenizer) is a workload
capability (claimbench/capabilities.py): declared by the workload, needed by the method, checked by prepare().
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from claimbench.capabilities import CAPABILITIES, AttentionView, Multiplier, Readout
from claimbench.config import ConfigError, RunConfig, TrainConfig, describe_error

PARTS = frozenset({"optimizer"})  # parts of a run a method may take over (Method.replaces)
ROLES = frozenset({"embedding", "hidden_matrix", "attn_q", "attn_k", "attn_v", "attn_out",
                   "readout", "norm", "bias", "multiplier"})
MATRIX_ROLES = frozenset({"embedding", "hidden_matrix", "attn_q", "attn_k", "attn_v", "attn_out", "readout"})
NEEDS = frozenset({"hidden_states", "attn_probs", "logz"})  # the capabilities a forward pass serves on request


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
    logz: torch.Tensor | None = None  # logsumexp(logits) per row of the loss, when a method needs "logz"
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
    provides: ClassVar[frozenset[str]] = frozenset()  # capabilities (claimbench/capabilities.py CAPABILITIES)

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

    # -- capabilities: each served only by a workload that lists it in `provides` --
    def capabilities(self) -> frozenset[str]:
        """What this workload (with its options) provides; `provides` unless a subclass narrows it."""
        return frozenset(self.provides)

    def attention_layers(self, model: torch.nn.Module) -> list[AttentionView]:
        """`attention`: one view per attention layer, in forward order."""
        raise NotImplementedError

    def role_segments(self, model: torch.nn.Module) -> dict[str, tuple[tuple[int, int, str], ...]]:
        """`attention`: parameter name -> ((start, end, role), ...) for tensors holding several roles by rows
        (a fused qkv: attn_q, attn_k, attn_v); tensors of one role are absent (their role is the role table's)."""
        if "attention" not in self.capabilities():
            return {}
        names = {id(p): n for n, p in model.named_parameters()}
        out = {}
        for view in self.attention_layers(model):
            # a weight another method reparametrised (LRM's multipliers) is no parameter any more: it has no
            # row segments to give, and its parameter keeps the role table's role
            if view.fused and id(view.q.module.weight) in names:
                w = view.q.module.weight
                out[names[id(w)]] = tuple((s.start, s.end, r) for s, r in
                                          ((view.q, "attn_q"), (view.k, "attn_k"), (view.v, "attn_v")))
        return out

    def attn_logits(self, model: torch.nn.Module,
                    fn: Callable[[torch.Tensor], None]) -> AbstractContextManager[None]:
        """`attn_logits`: inside the block, every attention layer of every forward hands fn its pre-softmax
        logits (batch, heads, q, k), biases and masks applied as the model applies them."""
        raise NotImplementedError

    def forward_multipliers(self, model: torch.nn.Module, roles: dict[str, str] | None = None) -> dict[str, Multiplier]:
        """`multipliers`: role ("embedding", "logit", "attn_scale") -> the model's forward multiplier; `roles`: the
        run's role table (default: param_roles(model)), for a workload that finds the multipliers by role."""
        raise NotImplementedError

    def depth(self) -> int:
        """`depth`: the number of blocks (hidden states: the embeddings, then that many outputs, one width)."""
        raise NotImplementedError

    def readout(self, model: torch.nn.Module) -> Readout:
        """`readout`: the final norm and head."""
        raise NotImplementedError

    def heldout_batch(self, n: int) -> Any:
        """`heldout_batch`: n fixed held-out examples, as a batch `forward` takes (after check_data)."""
        raise NotImplementedError

    def tokenizer(self) -> Any:
        """`tokenizer`: the run's text tokenizer (a `tokenizers.Tokenizer`)."""
        raise NotImplementedError

    def context_length(self) -> int:
        """`tokenizer`: the longest sequence the model takes."""
        raise NotImplementedError

    @classmethod
    def heldout_text(cls) -> tuple[str, str]:
        """`heldout_text`: (text, source) of real text this workload's models never train on."""
        raise NotImplementedError

    def mlp_slots(self, model: torch.nn.Module) -> dict[int, str]:
        """`mlp_slots`: id(Linear) -> its slot in a known MLP (mlp_up, mlp_gate, mlp_down, mlp_in)."""
        return {}


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
    needs: ClassVar[frozenset[str]] = frozenset()  # workload capabilities (CAPABILITIES); see requires()
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
    def reads(cls, options: BaseModel, cfg: Any) -> list[str]:
        """Files a run with these options reads besides its data (a checkpoint or a record that another run or
        stage makes), as the run's config names them: the evidence store keeps neither, so `claimbench verify`
        makes the missing ones with `remake` before it retrains the run."""
        return []

    @classmethod
    def remake(cls, path: str, options: BaseModel, cfg: Any, store: Any) -> list[list[str]] | None:
        """Commands that make `path`, one of this run's `reads`, from the evidence store `store` alone (retrain
        the run that wrote it, or rerun the stage over stored runs), run in order in a scratch tree where the
        run's relative paths resolve; None where the store cannot give it."""
        return None

    @classmethod
    def requires(cls, options: BaseModel) -> frozenset[str]:
        """The capabilities a run of this method with these options needs from its workload (default: `needs`);
        prepare() refuses a workload lacking one."""
        return frozenset(cls.needs)

    @classmethod
    def overrides(cls, hook: str) -> bool:
        return getattr(cls, hook).__code__ is not getattr(Method, hook).__code__

    @classmethod
    def replaced_parts(cls) -> frozenset[str]:
        """The run parts this method takes over: its declared `replaces`, plus the optimizer if it overrides
        make_optimizer (a replacement is never silent)."""
        return frozenset(cls.replaces) | (frozenset({"optimizer"}) if cls.overrides("make_optimizer") else frozenset())


def lacking(method: type[Method], options: BaseModel, have: frozenset[str]) -> list[str]:
    """The capabilities a run of `method` with `options` needs that `have` lacks, sorted."""
    return sorted(method.requires(options) - have)


def capability_error(i: int, method: type[Method], options: BaseModel, workload: Workload) -> str | None:
    """The one-line reason workload cannot serve methods[i] (a capability it needs and the workload lacks)."""
    need = method.requires(options)
    unknown = sorted(need - CAPABILITIES)
    if unknown:
        return (f"methods[{i}] '{method.name}' needs unknown capability '{unknown[0]}' "
                f"(capabilities: {', '.join(sorted(CAPABILITIES))})")
    have = workload.capabilities()
    missing = lacking(method, options, have)
    if missing:
        return (f"methods[{i}] '{method.name}' needs capability '{missing[0]}', which workload '{workload.name}' "
                f"does not provide (it provides: {', '.join(sorted(have)) or 'none'})")
    return None


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
