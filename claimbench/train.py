"""One training run: validate everything, then a nanoGPT-direct loop with method hooks.

`prepare()` resolves and checks the whole run (config, plugins, data, output directory) and
touches no file; `execute()` trains, checkpoints, resumes and writes the run files of docs/design.md.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from claimbench import distributed, flops, registry
from claimbench.allocator import retain_freed_memory
from claimbench.config import ConfigError, RunConfig, to_yaml, validate
from claimbench.divergence import DivergenceDetector
from claimbench.io import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    git_sha,
    hardware,
    read_jsonl,
    versions,
)
from claimbench.plugin import (
    MATRIX_ROLES,
    NEEDS,
    ROLES,
    Method,
    Recipe,
    RunContext,
    Workload,
    capability_error,
    composition_error,
    validate_options,
)
from claimbench.seeding import stable_key

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
MICRO_RNG_KEY = 0xD2EA  # the stochastic layers' seed of a data-parallel micro-batch: (seed, step, micro, key)


@dataclass
class Run:
    cfg: RunConfig
    out: Path
    workload: Workload
    recipe: Recipe
    method_specs: list[tuple[type[Method], object]]


def prepare(cfg: RunConfig, out: str | Path) -> Run:
    """Resolve plugins and check data and the output directory; raises ConfigError, writes nothing."""
    out = Path(out)
    _check_out_path(out)
    recipe_cls = registry.get("recipe", cfg.recipe.name)
    recipe = recipe_cls(validate_options(recipe_cls.Options, cfg.recipe.options, f"recipe ({cfg.recipe.name})"))
    if recipe_cls.forced:
        cfg = validate({**cfg.model_dump(mode="json"),
                        "train": {**cfg.train.model_dump(mode="json"), **recipe_cls.forced}})
    workload = registry.get("workload", cfg.workload)(cfg)
    specs = []
    for i, ref in enumerate(cfg.methods):
        cls = registry.get("method", ref.name)
        if cls.workloads is not None and cfg.workload not in cls.workloads:
            raise ConfigError(f"methods[{i}]: method '{ref.name}' does not support workload '{cfg.workload}' "
                              f"(supports: {', '.join(sorted(cls.workloads))})")
        specs.append((cls, validate_options(cls.Options, ref.options, f"methods[{i}] ({ref.name})")))
    conflict = composition_error([cls for cls, _ in specs], recipe_cls)
    if conflict:
        raise ConfigError(conflict)
    for i, (cls, opts) in enumerate(specs):
        missing = capability_error(i, cls, opts, workload)
        if missing:
            raise ConfigError(missing)
    for cls, opts in specs:
        cls.check(opts, workload)
    if cfg.train.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: '{cfg.train.device}' requested but no CUDA device is available")
    if cfg.train.device.startswith("cuda:") and int(cfg.train.device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"train.device: '{cfg.train.device}' but {torch.cuda.device_count()} CUDA device(s) visible")
    if cfg.train.device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device: 'mps' requested but no MPS device is available")
    distributed.check(cfg.train.device, cfg.train.batch_size, cfg.train.grad_accum)
    if cfg.train.parallel == "fsdp" and distributed.world_size() > 1:
        for i, (cls, _) in enumerate(specs):
            if not getattr(cls, "supports_fsdp", False):
                raise ConfigError(f"train.parallel: 'fsdp' shards every tensor across ranks and methods[{i}] "
                                  f"'{cls.name}' is not declared FSDP-safe (its hooks may need whole tensors: "
                                  "a method opts in with supports_fsdp = True); use train.parallel=ddp")
    workload.check_data()
    _check_memory(cfg, workload)
    _check_eval_batches(cfg, workload)
    existing = out / "config.yaml"
    if existing.is_file():
        try:
            old = validate(yaml.safe_load(existing.read_text()), str(existing)).hash()
        except (ConfigError, yaml.YAMLError, OSError, UnicodeDecodeError):
            old = "unreadable"
        if old != cfg.hash():
            status = _read_result(out).get("status")
            status = f"status {status}, " if status in ("ok", "diverged", "failed") else ""
            raise ConfigError(f"--out {out}: holds a run of a different config ({status}config_hash {old} != "
                              f"{cfg.hash()}); choose another directory, or remove {out} to reuse it")
    return Run(cfg, out, workload, recipe, specs)


def _check_out_path(out: Path) -> None:
    """--out must be a directory or creatable as one: not a file, not under a file."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {out}: {parent} is a file, not a directory")
            break


def _read_result(out: Path) -> dict:
    """result.json of a run directory ({} if absent or unreadable)."""
    try:
        res = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        return {}
    return res if isinstance(res, dict) else {}


def finished(run: Run) -> str | None:
    """The status of a finished (ok or diverged) run of this very config in run.out, else None."""
    res = _read_result(run.out)
    if res.get("status") in ("ok", "diverged") and res.get("config_hash") == run.cfg.hash():
        return res["status"]
    return None


def _check_eval_batches(cfg: RunConfig, workload: Workload) -> None:
    """More validation batches than the split holds only repeat it (and 1e12 of them never end)."""
    n = workload.val_examples()
    bs = max(1, cfg.train.batch_size // cfg.train.grad_accum)
    if n is not None and cfg.eval.batches > max(1, math.ceil(n / bs)):
        raise ConfigError(f"eval.batches: {cfg.eval.batches} batches of {bs} exceed the validation split "
                          f"({n} examples: at most {max(1, math.ceil(n / bs))} batches)")


def total_memory(device: str) -> int | None:
    """Bytes of memory of the device a run trains on (host RAM for the CPU); None if unknown."""
    try:
        if device.startswith("cuda"):
            index = int(device[5:]) if device.startswith("cuda:") else torch.cuda.current_device()
            return int(torch.cuda.get_device_properties(index).total_memory)
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, RuntimeError, AssertionError):
        return None


def _count_params(workload: Workload) -> int | None:
    """Parameters of the base model, built on the meta device (no memory); None if it cannot be built there."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = workload.build_model()
        return sum(p.numel() for p in model.parameters())
    except Exception as e:  # a model that cannot live on the meta device: not counted (the real build reports)
        if isinstance(e, RuntimeError) and "overflow" in str(e).lower():  # a tensor past any memory's size
            raise ConfigError(f"{_model_keys(workload)}: a tensor of the '{workload.cfg.workload}' model is too "
                              f"large to allocate ({str(e).strip().splitlines()[0][:120]})") from None
        return None


def _check_memory(cfg: RunConfig, workload: Workload) -> None:
    """Refuse a run whose lower-bound memory need (fp32 weights, gradients and two Adam moments, the micro-batch
    and its logits, the per-step loss record) exceeds the machine's total memory, before anything is written."""
    tc = cfg.train
    host = total_memory("cpu")
    if host is not None and 8 * tc.steps > host:
        raise ConfigError(f"train.steps: {tc.steps} steps need {_gib(8 * tc.steps)} for the loss record alone, "
                          f"more than this machine's {_gib(host)}")
    params = _count_params(workload)
    micro_bs = tc.batch_size // (tc.grad_accum * distributed.world_size())
    per_example = workload.example_bytes()
    need_params = 16 * params if params is not None else 0
    need_batch = micro_bs * per_example if per_example is not None else 0
    have = total_memory(distributed.device_for(tc.device))
    if have is None or need_params + need_batch <= have:
        return
    where = "GPU" if tc.device.startswith("cuda") else "machine"
    if need_params + (per_example or 0) > have:  # not even one example fits: the model's shape is the problem
        raise ConfigError(f"{_model_keys(workload)}: {params or 0:,} parameters need at least "
                          f"{_gib(need_params + (per_example or 0))} to train (weights, gradients, Adam moments, one "
                          f"example), more than this {where}'s {_gib(have)}")
    raise ConfigError(f"train.batch_size: a micro-batch of {micro_bs} needs at least {_gib(need_batch)} "
                      f"(+{_gib(need_params)} for the model), more than this {where}'s {_gib(have)}; "
                      "lower it or raise train.grad_accum")


def _model_keys(workload: Workload) -> str:
    """'model' and the model keys the config sets (size presets aside), to point at the likely culprit."""
    keys = ", ".join(f"{k}={v}" for k, v in workload.cfg.model.items())
    return f"model (size {workload.cfg.size}" + (f"; {keys})" if keys else ")")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def default_param_groups(model: torch.nn.Module, roles: dict[str, str], weight_decay: float,
                         no_decay: set[str]) -> list[dict]:
    """AdamW's usual split: decay on matrices, none on norms, biases (and anything in `no_decay`)."""
    groups = {True: {"params": [], "names": [], "weight_decay": weight_decay, "lr_scale": 1.0},
              False: {"params": [], "names": [], "weight_decay": 0.0, "lr_scale": 1.0}}
    for name, p in model.named_parameters():
        if p.requires_grad:
            g = groups[roles[name] in MATRIX_ROLES and name not in no_decay]
            g["params"].append(p)
            g["names"].append(name)
    return [g for g in groups.values() if g["params"]]


def _check_roles(model: torch.nn.Module, roles: dict[str, str]) -> None:
    for name, _ in model.named_parameters():
        if name not in roles:
            raise ConfigError(f"parameter '{name}' has no role: a method that adds parameters must "
                              "register them in ctx.roles")
        if roles[name] not in ROLES:
            raise ConfigError(f"parameter '{name}' has unknown role '{roles[name]}' "
                              f"(roles: {', '.join(sorted(ROLES))})")


class Trainer:
    """Builds the model, optimizer and methods of a prepared run and trains it."""

    def __init__(self, run: Run):
        self.run, cfg = run, run.cfg
        self.cfg, self.train_cfg = cfg, cfg.train
        if self.train_cfg.device == "cpu":
            torch.set_num_threads(self.train_cfg.threads)
        retain_freed_memory()  # no page faults per step (claimbench/allocator.py)
        self.dist = distributed.env()  # rank 0 of 1 without torchrun: every distributed step below is skipped
        self.device = torch.device(distributed.device_for(self.train_cfg.device))
        distributed.init(self.device)
        if self.device.type == "cuda":  # TF32 matmuls (float32 and bfloat16 runs alike); CPU numerics untouched
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.set_float32_matmul_precision("high")
        torch.manual_seed(cfg.seed)
        wl = run.workload
        model = wl.build_model().to(self.device)
        ctx = RunContext(cfg, wl, wl.param_roles(model), self.device, self.train_cfg.steps)
        self.methods = [cls(opts, ctx) for cls, opts in run.method_specs]
        for m in self.methods:
            model = m.transform_model(model)
        _check_roles(model, ctx.roles)
        self.fsdp = self.dist.enabled and self.train_cfg.parallel == "fsdp"
        if self.fsdp:  # FSDP2 swaps the parameters for sharded ones in place: before the optimizer sees them
            _fully_shard(model)
        self.model, self.ctx = model, ctx
        self.needs = frozenset().union(*(m.needs for m in self.methods)) & NEEDS
        groups = default_param_groups(model, ctx.roles, self.train_cfg.weight_decay, wl.no_weight_decay(model))
        for m in self.methods:
            groups = m.param_groups(model, groups)
        for g in groups:
            g["lr"] = self.train_cfg.lr * g.get("lr_scale", 1.0)
        opt = next((o for m in self.methods if (o := m.make_optimizer(groups, self.train_cfg)) is not None), None)
        run.recipe.roles = ctx.roles  # optimizers that treat matrices apart (Muon) read the role table
        self.optimizer = opt or run.recipe.build_optimizer(groups, self.train_cfg)
        self.lr_lambda = run.recipe.lr_lambda(self.train_cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_lambda)
        # a group marked `"clip": False` (e.g. learnable multipliers) is left out of the global clip norm
        unclipped = {id(p) for g in groups if not g.get("clip", True) for p in g["params"]}
        self.params = [p for p in model.parameters() if p.requires_grad and id(p) not in unclipped]
        # self.model stays the plain module (the methods' hooks, evaluation and checkpoints see it); the
        # forward model is its data-parallel wrapper (FSDP2 shards self.model in place), compiled after wrapping
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None
        fwd: torch.nn.Module = model
        if self.dist.enabled and not self.fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            fwd = self.ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.fwd_model = torch.compile(fwd) if self.train_cfg.compile else fwd
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                         if self.train_cfg.dtype == "bfloat16" else nullcontext())
        # MFU: the base model's training FLOPs per unit (counted here, outside the timed loop) over the device's
        # peak (its table entry on GPUs, a short matmul timing on a CPU), under a forked RNG: runs keep their numbers
        with torch.random.fork_rng(devices=[]):
            self.peak_flops, self.peak_source = flops.peak_flops(self.device, self.train_cfg.dtype, seconds=0.1)
            # a micro-batch's shape is all the count needs (batches are pure functions of the step)
            micro_bs = self.train_cfg.batch_size // (self.train_cfg.grad_accum * self.dist.world_size)
            self.flops_per_unit = self._count_flops(wl.train_batch(0, self.dist.rank * self.train_cfg.grad_accum,
                                                                   micro_bs))
        self.hooks = {h: [m for m in self.methods if m.overrides(h)]
                      for h in ("extra_loss", "before_step", "after_step", "metrics")}
        self.losses = torch.full((self.train_cfg.steps,), float("nan"), dtype=torch.float64)
        self.detector = DivergenceDetector(cfg.diverge.factor, cfg.diverge.patience)
        self.step, self.wall_before = 0, 0.0

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The checkpoint (every rank calls it: under FSDP gathering the full tensors is collective; rank 0
        saves it). The model is the unwrapped module's state dict, so any world size can resume it."""
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.train_cfg.parallel == "fsdp":  # at any world size, so that any world size can resume it
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            # full tensors on rank 0's CPU; the optimizer state keyed by parameter name, not by position
            model_sd, optim_sd = get_state_dict(self.model, self.optimizer,
                                                options=StateDictOptions(full_state_dict=True,
                                                                         cpu_offload=self.fsdp))
        else:  # DDP replicates the optimizer state: each rank's is the whole of it
            model_sd, optim_sd = self.model.state_dict(), self.optimizer.state_dict()
        return {"step": self.step, "config_hash": self.cfg.hash(), "model": model_sd,
                "optimizer": optim_sd, "scheduler": self.scheduler.state_dict(),
                "rng": rng, "losses": self.losses, "detector": self.detector.state_dict(),
                "methods": [m.state_dict() for m in self.methods], "wall_s": self.wall_before + self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        """Every rank loads the whole checkpoint (DDP: the same replica everywhere; FSDP: each keeps its shard)."""
        if self.train_cfg.parallel == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.losses = state["losses"]
        self.detector.load_state_dict(state["detector"])
        for m, s in zip(self.methods, state["methods"], strict=True):
            m.load_state_dict(s)
        self.step, self.wall_before = int(state["step"]), float(state["wall_s"])

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    # ------------------------------------------------------------------ the loop
    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, object, int]:
        """One optimizer step; returns the (task) loss and grad norm as tensors, no host sync."""
        tc, wl = self.train_cfg, self.run.workload
        accum, world = tc.grad_accum, self.dist.world_size
        # rank r computes micro-batches r*accum .. r*accum+accum-1 of the step's global batch: the same examples
        # as one process, split finer (the ranks' gradients are averaged, as accumulation averages micro-batches)
        micro_bs = tc.batch_size // (accum * world)
        loss_sum, units = torch.zeros((), device=self.device), 0
        for k in range(accum):
            batch = self._to_device(wl.train_batch(self.step, self.dist.rank * accum + k, micro_bs))
            last = k == accum - 1
            if self.fsdp:
                self.model.set_requires_gradient_sync(last)
            with self.ddp.no_sync() if self.ddp is not None and not last else nullcontext(), \
                    self._micro_rng(self.dist.rank * accum + k):
                with self.autocast:
                    out = wl.forward(self.fwd_model, batch, self.needs)
                    loss = out.loss
                    for m in self.hooks["extra_loss"]:
                        extra = m.extra_loss(out)
                        if extra is not None:
                            loss = loss + extra
                (loss / accum).backward()
            loss_sum += out.loss.detach()
            units += wl.batch_units(batch) * world  # throughput over all ranks (equal shards)
        # foreach on a CPU (torch's default elsewhere): the per-tensor loop's norm bit for bit, without its cost per
        # tensor
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, tc.grad_clip if tc.grad_clip > 0 else math.inf,
                                                   foreach=self.device.type == "cpu" or None)
        if self.fsdp and hasattr(grad_norm, "full_tensor"):  # a DTensor over the shards: the global norm
            grad_norm = grad_norm.full_tensor()
        self.ctx.grad_norm = grad_norm  # pre-clip norm over the clipped params, for before_step diagnostics
        for m in self.hooks["before_step"]:
            m.before_step(self.step, self.model, self.optimizer)
        self.optimizer.step()
        self.scheduler.step()
        for m in self.hooks["after_step"]:
            m.after_step(self.step, self.model, self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_sum / tc.grad_accum, grad_norm, out, units

    def _count_flops(self, batch: tuple[torch.Tensor, ...]) -> float:
        """Training FLOPs per unit of the workload's base model (methods' additions are overhead, not model FLOPs),
        counted on a meta-device copy: no compute, no memory, no draw from the run's RNG. NaN if it cannot be."""
        wl = self.run.workload
        try:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                model = wl.build_model()
            return flops.train_flops_per_unit(wl, model, tuple(t.to("meta") for t in batch))
        except Exception as e:  # a user workload whose model cannot live on the meta device: no MFU, training goes on
            print(f"claimbench: MFU not logged: FLOPs of '{self.cfg.workload}' not countable ({type(e).__name__}: {e})",
                  file=sys.stderr)
            return math.nan

    def _micro_rng(self, micro: int):
        """Under torchrun the forward's random draws (dropout, drop path) come from a seed of (seed, step, micro):
        one stream shared by the ranks would give every rank's shard the same masks. The shared stream, which
        the methods draw from in lock-step, is put back afterwards; a resume redraws the same masks."""
        if not self.dist.enabled:
            return nullcontext()
        return _seeded(stable_key(self.cfg.seed, self.step, micro, MICRO_RNG_KEY), self.device)

    def _to_device(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Host batch to the device: through pinned memory without blocking on CUDA; unchanged on CPU."""
        if self.device.type == "cuda":
            return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in batch)
        return tuple(t.to(self.device) for t in batch)

    def evaluate(self) -> dict[str, float]:
        # every rank evaluates the same fixed batches with the same weights (identical numbers, and FSDP's
        # forward is collective); only rank 0 writes them
        self.model.eval()
        with self.autocast:
            res = self.run.workload.evaluate(self.model, self.device, self.cfg.eval.batches,
                                             self.train_cfg.batch_size // self.train_cfg.grad_accum)
        self.model.train()
        return res

    def fit(self, metrics_path: Path, ckpt_path: Path) -> None:
        """Train to `train.steps` (or divergence), logging and checkpointing on the way."""
        cfg, tc = self.cfg, self.train_cfg
        steps, log_every = tc.steps, cfg.log.every
        self.t_start = time.perf_counter()
        unit = f"{self.run.workload.unit}_per_s"
        main = self.dist.rank == 0  # rank 0 logs and writes; every rank computes the same row
        bar = tqdm(total=steps, initial=self.step, disable=not (main and sys.stderr.isatty()),
                   desc=self.run.out.name, dynamic_ncols=True)
        pending: list[torch.Tensor] = []
        units, t_interval, last_log_step = 0, time.perf_counter(), self.step
        metrics_file = open(metrics_path, "a") if main else None
        try:
            self.model.train()
            while self.step < steps and self.detector.diverged_at is None:
                loss, grad_norm, out, n = self.train_step()
                pending.append(loss)
                units += n
                s = self.step
                due_eval = cfg.eval.every > 0 and s % cfg.eval.every == 0
                due_ckpt = cfg.ckpt.every > 0 and s % cfg.ckpt.every == 0
                if not (s % log_every == 0 or s == steps or due_eval or due_ckpt):
                    continue
                dt = time.perf_counter() - t_interval
                # the one host sync (and the one all-reduce) per log interval: every rank gets the global
                # mean losses, so all divergence detectors decide alike and all ranks stop together
                values = distributed.all_reduce_mean(torch.stack(pending)).tolist()
                pending.clear()
                first = s - len(values) + 1
                for i, v in enumerate(values):
                    self.losses[first + i - 1] = v
                    if self.detector.update(first + i, v):
                        break
                finite = [v for v in values if math.isfinite(v)]
                row = {"step": s, "train_loss": sum(finite) / len(finite) if finite else None,
                       "lr": tc.lr * self.lr_lambda(s - 1), "grad_norm": _finite(grad_norm.item()),
                       unit: units / dt if dt > 0 else None}
                if row[unit] is not None and math.isfinite(self.flops_per_unit):  # per device: units are all ranks'
                    row["mfu"] = flops.mfu(self.flops_per_unit, row[unit], self.peak_flops * self.dist.world_size)
                if self.detector.diverged_at is None:
                    for m in self.hooks["metrics"]:
                        row.update(m.metrics(s, self.model, out))
                    if due_eval:
                        row.update(self.evaluate())
                if main:
                    metrics_file.write(_json_line(row))
                    metrics_file.flush()
                    bar.update(s - last_log_step)
                    bar.set_postfix(loss=f"{row['train_loss'] or float('nan'):.4f}")
                    if bar.disable:
                        print(f"{self.run.out.name} step {s}/{steps} loss {row['train_loss'] or float('nan'):.4f} "
                              f"lr {row['lr']:.3g} {unit} {row[unit] or 0:.0f}", flush=True)
                last_log_step = s
                if due_ckpt and self.detector.diverged_at is None:
                    state = self.state_dict()
                    if main:
                        atomic_torch_save(ckpt_path, state)
                units, t_interval = 0, time.perf_counter()
        finally:
            if metrics_file is not None:
                metrics_file.close()
            bar.close()

    def result(self) -> dict:
        tc = self.train_cfg
        res: dict = {"status": "ok", "steps": self.step}
        if self.detector.diverged_at is not None:
            res.update(status="diverged", diverged_at=self.detector.diverged_at, diverge_reason=self.detector.reason)
            done = self.losses[: self.step]
            done = done[torch.isfinite(done)]
            res["final_train_loss"] = done[-1].item() if len(done) else None
        else:
            k = max(1, tc.steps // 20)
            res["final_train_loss"] = self.losses[tc.steps - k: tc.steps].mean().item()
            res["final_train_loss_window"] = k
            res.update({f"final_{key}": _finite(v) for key, v in self.evaluate().items()})
            chance = self.run.workload.chance_acc
            if chance is not None and res.get("final_val_acc") is not None:
                res["collapsed"] = res["final_val_acc"] < chance + 0.05
        return res


def execute(run: Run) -> int:
    """Train a prepared run (resuming from its checkpoint) and write its run files.

    Under torchrun every rank trains; rank 0 alone writes config.yaml, metrics.jsonl, ckpt.pt and result.json.
    """
    out, cfg = run.out, run.cfg
    main = distributed.is_main()
    result_path, ckpt_path, metrics_path = out / "result.json", out / "ckpt.pt", out / "metrics.jsonl"
    status = finished(run)
    if status is not None:  # a finished result is never replaced (nor put at risk by a broken checkpoint)
        if main:
            print(f"claimbench: {out}: already finished (status {status}); nothing to do (remove {out} to run it "
                  "again)", file=sys.stderr)
        distributed.destroy()
        return EXIT_OK
    provenance = {"config_hash": cfg.hash(), "git_sha": git_sha(), "versions": versions(), "hardware": hardware()}
    try:
        state = _load_checkpoint(ckpt_path, cfg) if ckpt_path.is_file() else None  # before anything is written
        if main:
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob(".*.tmp"):  # a killed atomic write's leftover (ckpt.pt's, mostly)
                stale.unlink(missing_ok=True)
            if not (out / "config.yaml").is_file():
                atomic_write_text(out / "config.yaml", to_yaml(cfg))
        trainer = Trainer(run)
        if state is not None:  # every rank loads it (the file predates this launch: no race with rank 0)
            trainer.load_state_dict(state)
            del state
        if main:
            # keep only the metrics the checkpoint covers: a killed run logs them again identically
            kept = [r for r in read_jsonl(metrics_path) if r.get("step", 0) <= trainer.step]
            atomic_write_text(metrics_path, "".join(_json_line(r) for r in kept))
            result_path.unlink(missing_ok=True)
        trainer.fit(metrics_path, ckpt_path)
        res = trainer.result()
        res["wall_s"] = trainer.wall_before + trainer.elapsed()
        # this process's CPU time, start-up included (`claimbench plan` costs a reproduction from it)
        res["cpu_s"] = round(time.process_time(), 3)
        if trainer.dist.enabled:
            res["world_size"] = trainer.dist.world_size
        if math.isfinite(trainer.flops_per_unit):
            res.update(flops_per_unit=trainer.flops_per_unit, peak_flops=trainer.peak_flops,
                       peak_source=trainer.peak_source)
        state = trainer.state_dict() if res["status"] == "ok" else None
        if main:
            if state is not None:
                atomic_torch_save(ckpt_path, state)
            atomic_write_json(result_path, {**res, **provenance})
        return EXIT_OK
    except ConfigError:
        raise
    except Exception as e:  # a crash is a result too, but a non-zero exit
        traceback.print_exc()
        if main:
            atomic_write_json(result_path, {"status": "failed", "error": f"{type(e).__name__}: {e}", **provenance})
        return EXIT_FAILED
    finally:
        distributed.destroy()


def _load_checkpoint(path: Path, cfg: RunConfig) -> dict:
    """The run's checkpoint on the run's device; ConfigError naming it if it is unreadable or of another config."""
    try:
        state = torch.load(path, map_location=distributed.device_for(cfg.train.device), weights_only=True)
        if not isinstance(state, dict) or "step" not in state:
            raise ValueError("no training state in it")
    except Exception as e:  # torch raises many types for a truncated or foreign file
        msg = str(e).strip().splitlines()[0].split(". ")[0][:100] if str(e).strip() else ""
        raise ConfigError(f"{path}: unreadable checkpoint ({type(e).__name__}: {msg}); the run cannot resume: "
                          f"remove {path.parent} to start it over") from None
    if state.get("config_hash") != cfg.hash():
        raise ConfigError(f"{path}: checkpoint of a different config; remove {path.parent} to start the run over")
    return state


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _fully_shard(model: torch.nn.Module) -> None:
    """FSDP2: shard each transformer/residual block (a module whose class name ends in 'Block': GPT, timm
    ViT/Swin, ResMLP), innermost first, then the root (embeddings, final norm, head) in place."""
    from torch.distributed.fsdp import fully_shard

    blocks = [m for m in model.modules() if m is not model and type(m).__name__.endswith("Block")]
    for block in reversed(blocks):
        fully_shard(block)
    fully_shard(model)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _json_line(row: dict) -> str:
    import json

    return json.dumps(row) + "\n"
