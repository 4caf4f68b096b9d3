"""The `flerm` method: measure function-space LRs during training (record / analysis mode) or set per-tensor
LRs from a base model's record so the scaled model's FSLRs match the base's (FLeRM, Milsom et al. 2025).

Record / analysis mode (no `base`): at step 0 the step's update is measured with `warmup_passes` estimator
passes (the paper's 41-pass EMA warm-up: each pass a fresh batch and a fresh projection), then one pass every
`every` steps, EMA-smoothed (beta 0.9, bias-corrected). Per-unit-LR values go to metrics.jsonl as
`flerm/fslr/<tensor>` with `flerm/at_step` (the 0-based step measured). Training is unchanged: the step is
undone for the measurement (the paper measures at the pre-step weights) and redone exactly.

Transfer mode (`base: PATH`, `{lr}` in PATH replaced by the run's train.lr): every tensor gets its own param
group; after step 0's warm-up, eta_l = eta * (F_base_l + eps) / (F_new_l + eps), the step just taken is replaced
by the rescaled one, and the factors stay (applied once, the paper's main results). `reapply: true` re-estimates
and re-applies every `every` steps against the base record's matching index (the paper's periodic ablation).
Factors are logged as `flerm/factor/<tensor>`.

The outputs measured: log-probabilities for `gpt` (as the paper's transformer), logits otherwise
(`output` overrides; the record stores the choice and a transfer must use the same).
`start: K` moves the first measurement (and the one FLeRM application) to step K: the paper applies it at
iteration 6 for LoRA, where B = 0 at step 0 leaves A's FSLR at 0 (methods/flerm/lora.py).
`record: PATH` marks a base run for the DAG (where the `flerm_record` stage writes its record); training
ignores it.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field

from claimbench import registry
from claimbench.config import ConfigError
from claimbench.plugin import Method, RunContext, Workload, validate_options
from claimbench.registry import register_method
from claimbench.seeding import stable_key
from methods.flerm.estimator import Moments, projection_products
from methods.flerm.records import map_record, read_record, record_path

FRESH_KEY = 0xF1E7  # fresh estimator batches: train_batch(FRESH_STEP + call), never a training step's batch
FRESH_STEP = 1 << 20


class FlermOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str | None = Field(None, description="base record (path template with {lr}); None: record/analysis mode")
    record: str | None = Field(None, description="DAG only: where this base run's record goes (template with {lr})")
    every: int = Field(100, ge=1, description="record mode: measure every N steps; transfer: re-apply period")
    reapply: bool = Field(False, description="transfer: re-apply every `every` steps (the periodic ablation)")
    warmup_passes: int = Field(41, ge=1, description="estimator passes at the first measurement (EMA warm-up)")
    start: int = Field(0, ge=0, description="first step measured (transfer: where FLeRM is applied once); the "
                       "paper's LoRA runs use 6, as B = 0 at step 0 makes A's FSLR 0")
    estimator: Literal["kronecker", "iid", "full_cov"] = "kronecker"
    beta: float = Field(0.9, ge=0, lt=1)
    eps: float = Field(0.0, ge=0)
    output: Literal["auto", "logits", "log_probs"] = "auto"
    depth_split: bool = Field(True, description="depth transfer: split a base block's FSLR over its m new blocks")
    batch_size: int | None = Field(None, ge=1, description="estimator batch; default the training micro-batch")


def output_space(option: str, workload: str) -> str:
    """The outputs whose change is measured: log-probs for the transformer (as the paper), logits otherwise."""
    if option != "auto":
        return option
    return "log_probs" if workload == "gpt" else "logits"


def trainable_names(workload: Workload) -> list[str]:
    """Parameter names of the run's model as the trainer builds it, on the meta device (no memory, no init cost):
    the workload's model, the adapters of a `lora` method (FLeRM then sees only the adapters) and the model
    transforms of the run's other methods (LRM's multipliers rename a wrapped weight
    `<module>.parametrizations.weight.original`), so a base record made with the same methods maps name for name."""
    from methods.flerm.lora import LoraOptions, inject

    workload.check_data()
    cfg = workload.cfg
    with torch.device("meta"):
        model = workload.build_model()
        ctx = RunContext(cfg, workload, workload.param_roles(model), torch.device("meta"), cfg.train.steps)
        for i, m in enumerate(cfg.methods):
            if m.name == "lora":
                model = inject(model, LoraOptions(**m.options))
                continue
            cls = registry.get("method", m.name)
            if cls.transform_model is not Method.transform_model and m.name != "flerm":
                model = cls(validate_options(cls.Options, m.options, f"methods[{i}] ({m.name})"),
                            ctx).transform_model(model)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def regrouped_after(workload: Workload) -> list[str]:
    """The methods listed after flerm that regroup the parameters (override `param_groups`): in transfer mode each
    tensor's LR lives in a param group of its own, which a later regrouping would merge again (one factor for
    all of LRM's multipliers), so such a method must come first."""
    names = [m.name for m in workload.cfg.methods]
    later = names[names.index("flerm") + 1:] if "flerm" in names else []
    return [n for n in later if registry.get("method", n).param_groups is not Method.param_groups]


@functools.cache
def stored_records(store: str) -> dict[str, list[str]]:
    """record file -> the stored base runs (flerm in record mode) that write it, as the DAG's plan pairs them."""
    out: dict[str, list[str]] = {}
    for cfg_file in sorted(Path(store).resolve().glob("*/config.yaml")):  # absolute: the stage runs elsewhere
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
        for m in cfg.get("methods") or []:
            record = (m.get("options") or {}).get("record") if m.get("name") == "flerm" else None
            if record:
                out.setdefault(record_path(record, float(cfg["train"]["lr"])), []).append(str(cfg_file.parent))
    return out


@register_method("flerm")
class Flerm(Method):
    """Function-space learning rates: record them (base / analysis runs) or match them (FLeRM transfer)."""

    Options = FlermOptions
    after = {"lora": "FLeRM splits the LoRA tensors' groups"}

    @classmethod
    def reads(cls, options: FlermOptions, cfg) -> list[str]:
        return [record_path(options.base, cfg.train.lr)] if options.base else []

    @classmethod
    def remake(cls, path: str, options: FlermOptions, cfg, store) -> list[list[str]] | None:
        """The base record is the flerm_record stage's average over the base runs that write it; the stage reads
        their config.yaml and metrics.jsonl, which the store keeps."""
        bases = stored_records(str(store)).get(path)
        return [[sys.executable, "-m", "methods.flerm.records", *bases, "--out", path]] if bases else None

    @classmethod
    def check(cls, options: FlermOptions, workload: Workload) -> None:
        cfg = workload.cfg
        if options.base and options.record:
            raise ConfigError("methods (flerm): 'base' (transfer) and 'record' (base run) exclude each other")
        if (not options.base or options.reapply) and options.every < cfg.log.every:
            raise ConfigError(f"methods (flerm): 'every' ({options.every}) must be >= log.every ({cfg.log.every}) "
                              "so no measurement is lost between log rows")
        if options.base:
            later = regrouped_after(workload)
            if later:
                raise ConfigError(f"methods (flerm): list `{later[0]}` before `flerm`: in transfer mode FLeRM gives "
                                  f"every tensor a param group of its own, which `{later[0]}` would regroup")
            rec = read_record(record_path(options.base, cfg.train.lr))
            out = output_space(options.output, cfg.workload)
            if rec.get("estimator") != options.estimator or output_space(rec.get("output", "auto"),
                                                                          rec.get("workload", "")) != out:
                raise ConfigError(f"methods (flerm): base record measured ({rec.get('estimator')}, "
                                  f"{rec.get('output')}) but this run uses ({options.estimator}, {out})")
            map_record(rec["tensors"], trainable_names(workload), options.depth_split)

    def __init__(self, options: FlermOptions, ctx):
        super().__init__(options, ctx)
        cfg = ctx.cfg
        self.output = output_space(options.output, cfg.workload)
        self.moments = Moments(options.estimator, options.beta)
        self.calls = 0
        self.factors: dict[str, float] = {}
        self._prev_factors: dict[str, float] = {}
        self.pending: dict[str, float] = {}
        self.saved: list[tuple[torch.Tensor, torch.Tensor, float]] | None = None
        self.base: dict[str, list[float]] | None = None
        if options.base:
            rec = read_record(record_path(options.base, cfg.train.lr))
            self.record = rec
            self.base_steps = list(rec["steps"])

    # ------------------------------------------------------------------ groups: one tensor each in transfer mode
    def param_groups(self, model: torch.nn.Module, groups: list[dict]) -> list[dict]:
        if not self.options.base:
            return groups
        names = [n for g in groups for n in g["names"]]
        self.base = map_record(self.record["tensors"], names, self.options.depth_split)
        split = []
        for g in groups:
            for p, n in zip(g["params"], g["names"], strict=True):
                split.append({**{k: v for k, v in g.items() if k not in ("params", "names")},
                              "params": [p], "names": [n]})
        return split

    # ------------------------------------------------------------------ when to measure
    def _due(self, step: int) -> bool:
        start = self.options.start
        if step <= start:
            return step == start
        if self.options.base and not self.options.reapply:
            return False
        return step % self.options.every == 0

    def before_step(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self._due(step):
            with torch.no_grad():
                self.saved = [(p, p.detach().clone(), g["lr"]) for g in optimizer.param_groups for p in g["params"]]

    def after_step(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.saved is not None:
            self._measure(step, model, optimizer)
            self.saved = None
        if self.factors:  # the scheduler has just set each group's LR for the next step: apply the factors
            for g in optimizer.param_groups:
                g["lr"] *= self.factors[g["names"][0]]

    # ------------------------------------------------------------------ the measurement
    def _measure(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        names = {id(p): n for n, p in model.named_parameters()}
        unit, new_w = {}, {}
        with torch.no_grad():
            for p, old, lr in self.saved:
                n = names[id(p)]
                new_w[n] = p.detach().clone()
                # the per-unit-LR update (a zero LR, e.g. warmup from 0, moves nothing: zero update, factor 1)
                unit[n] = (p.detach() - old) / lr if lr > 0 else torch.zeros_like(old)
                p.copy_(old)  # measure at the pre-step weights, as the paper
        fslr = self._estimate(model, unit, self.options.warmup_passes if step == self.options.start else 1)
        row = {"flerm/at_step": step, **{f"flerm/fslr/{n}": v for n, v in fslr.items()}}
        if self.base is not None:
            row.update(self._set_factors(step, fslr))
        with torch.no_grad():
            for p, old, lr in self.saved:
                n = names[id(p)]
                if self.base is None:
                    p.copy_(new_w[n])
                else:  # redo the step at the new per-tensor LR (lr included the previous factor)
                    sched = lr / self._prev_factors.get(n, 1.0)
                    p.copy_(old + unit[n] * (sched * self.factors[n]))
        self.pending = row

    def _set_factors(self, step: int, fslr: dict[str, float]) -> dict[str, float]:
        eps = self.options.eps
        idx = min(range(len(self.base_steps)), key=lambda i: (abs(self.base_steps[i] - step), i))
        self._prev_factors = dict(self.factors)
        for n, f_new in fslr.items():
            f_base = self.base[n][idx]
            self.factors[n] = (f_base + eps) / (f_new + eps) if f_new + eps > 0 else 1.0
        return {"flerm/record_step": self.base_steps[idx], **{f"flerm/factor/{n}": v for n, v in self.factors.items()}}

    def _estimate(self, model: torch.nn.Module, unit: dict[str, torch.Tensor], passes: int) -> dict[str, float]:
        wl, cfg = self.ctx.workload, self.ctx.cfg
        bs = self.options.batch_size or cfg.train.batch_size // cfg.train.grad_accum
        params = dict(model.named_parameters())
        device = next(iter(params.values())).device
        for _ in range(passes):
            self.calls += 1
            batch = tuple(t.to(device) for t in wl.train_batch(FRESH_STEP + self.calls, 0, bs))
            gen = torch.Generator(device=device).manual_seed(stable_key(cfg.seed, FRESH_KEY, self.calls))
            with torch.enable_grad():
                out = wl.forward(model, batch, frozenset()).logits.float()
                if self.output == "log_probs":
                    out = F.log_softmax(out, dim=-1)
                self.moments.update(projection_products(out, params, unit, generator=gen))
        return self.moments.values()

    # ------------------------------------------------------------------ logging and resume
    def metrics(self, step: int, model: torch.nn.Module, outputs) -> dict[str, float]:
        row, self.pending = self.pending, {}
        return row

    def state_dict(self) -> dict:
        return {"moments": self.moments.state_dict(), "calls": self.calls, "factors": dict(self.factors),
                "pending": dict(self.pending)}

    def load_state_dict(self, state: dict) -> None:
        self.moments.load_state_dict(state["moments"])
        self.calls = int(state["calls"])
        self.factors = {k: float(v) for k, v in state["factors"].items()}
        self.pending = dict(state["pending"])
