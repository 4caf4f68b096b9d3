"""The `lrm` plugin: learnable multipliers on matrix layers (Velikanov et al. 2026, arXiv 2601.04890).

Each selected matrix becomes W = r_i * What_ij * c_j (vector) or s * What (scalar). What keeps the run's weight
decay and sits at its noise-WD equilibrium; the multipliers get their own weight decay (2e-3), LR scale and
are left out of the global gradient-clip norm (switchable, C8). `merge()` (methods.lrm.merge) folds them into
plain weights for export. Options for the paper's diagnostic setups: a per-role S factor (LR*k, WD/k at fixed
LR*WD; C1-C3), frozen norms (C3, C7), the final norm as vector/scalar/frozen (C1-C2's VPN/SPN/FPN).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, field_validator

from claimbench.config import ConfigError
from claimbench.plugin import MATRIX_ROLES, Method, Outputs, Workload
from claimbench.registry import register_method
from methods.lrm.diagnostics import ABM, clip_factors, rms, row_spread
from methods.lrm.multipliers import Attached, FrozenVectorAsScalar, Multipliers, attach, shared_weights, weight_hat
from methods.lrm.placement import PLACEMENTS

Placement = Literal["both", "symmetry_free", "scalar", "mlp_scalar", "none"]


class LRMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    placement: Placement = "both"
    head: Literal["none", "row", "col", "both", "scalar"] = "none"  # C9: per-logit rows on the head hurt
    init: Literal["one", "mup"] = "one"  # mup: start at the model's muP forward multipliers (GPT), which become 1
    weight_decay: float = Field(2e-3, ge=0)  # on the multipliers (decoupled, x lr as torch's AdamW); 0 for C6
    lr_scale: float = Field(1.0, gt=0)  # multipliers' LR / train.lr (not given by the paper: reconstructed 1)
    clip: Literal["exclude", "include"] = "exclude"  # multipliers in the global clip norm or not (C8)
    mult_clip: float = Field(0.0, ge=0)  # excluded multipliers clipped on their own at this norm; 0: unclipped
    freeze_norms: bool = False  # every norm gain frozen at 1 (C3, C7)
    final_norm: Literal["vector", "scalar", "frozen"] = "vector"  # GPT ln_f gain: VPN / SPN / FPN (C1, C2)
    s_factor: dict[str, float] = Field(default_factory=dict)  # role -> k: that role's matrices get LR*k, WD/k
    abm_role: str = "readout"  # the matrix whose ABM reference is simulated (C1), first of that role; "none": off
    track_residual: bool = True  # lrm/resid_rms from the last hidden state (asks the model for hidden states)

    @field_validator("s_factor")
    @classmethod
    def _roles(cls, v: dict[str, float]) -> dict[str, float]:
        for role, k in v.items():
            if role not in MATRIX_ROLES:
                raise ValueError(f"s_factor: '{role}' is not a matrix role ({', '.join(sorted(MATRIX_ROLES))})")
            if not k > 0:
                raise ValueError(f"s_factor.{role}: must be > 0, got {k}")
        return v


def _matrix_modules(model: nn.Module, roles_by_id: dict[int, str]) -> list[tuple[str, nn.Module, str]]:
    """(module path, module, role) of every module whose own `weight` is a matrix-role tensor of >= 2 dims,
    tied (shared) weights excepted."""
    shared = shared_weights(model)
    out = []
    for name, mod in model.named_modules():
        w = mod._parameters.get("weight")
        if w is None or w.ndim < 2 or id(w) in shared:
            continue
        role = roles_by_id.get(id(w))
        if role in MATRIX_ROLES:
            out.append((name, mod, role))
    return out


@register_method("lrm")
class LRM(Method):
    """Learnable multipliers (vector/scalar) on matrix layers, placed by parameter role."""

    Options = LRMOptions

    @classmethod
    def requires(cls, options: LRMOptions) -> frozenset[str]:
        """Hidden states for the residual diagnostics; the final norm (readout) for final_norm != vector; the
        forward multipliers for init=mup."""
        return (frozenset({"hidden_states"} if options.track_residual else ())
                | frozenset({"readout"} if options.final_norm != "vector" else ())
                | frozenset({"multipliers"} if options.init == "mup" else ()))

    def __init__(self, options: LRMOptions, ctx):
        super().__init__(options, ctx)
        self.needs = frozenset({"hidden_states"}) if options.track_residual else frozenset()
        self.attached: list[Attached] = []
        self.matrices: list[tuple[str, nn.Module, str, str | None]] = []  # name, module, role, slot
        self.mult_ids: set[int] = set()
        self.abm: ABM | None = None
        self.abm_param: torch.Tensor | None = None
        self.clip_diag: dict[str, float] = {}
        self.ln_f: nn.Module | None = None

    # ------------------------------------------------------------------ model
    def transform_model(self, model: nn.Module) -> nn.Module:
        o, roles = self.options, self.ctx.roles
        roles_by_id = {id(p): roles[n] for n, p in model.named_parameters()}
        slots = self.ctx.workload.mlp_slots(model)
        inits = self._mup_inits(model) if o.init == "mup" else {}
        for name, mod, role in _matrix_modules(model, roles_by_id):
            slot = slots.get(id(mod))
            self.matrices.append((name, mod, role, slot))
            kind = (None if o.head == "none" else o.head) if role == "readout" else PLACEMENTS[o.placement](role, slot)
            if kind is not None:
                mult = attach(mod, kind, inits.get(id(mod), 1.0))
                self.attached.append(Attached(name, mod, mult, role))
                self.mult_ids.update(id(p) for p in mult.parameters())
        for _n, p in model.named_parameters():
            if o.freeze_norms and roles_by_id.get(id(p)) == "norm":
                p.requires_grad_(False)
        extra_norm_ids = self._final_norm(model)
        new = {}
        for n, p in model.named_parameters():
            new[n] = roles_by_id.get(id(p)) or ("multiplier" if id(p) in self.mult_ids else
                                                 "norm" if id(p) in extra_norm_ids else None)
        roles.clear()
        roles.update(new)
        tracked = next((m for _, m, r, _ in self.matrices if r == o.abm_role), None)
        # a meta-device model (a pre-flight check that reads parameter names, FLeRM's) has no values to start
        # the ABM reference from
        if tracked is not None and not weight_hat(tracked).is_meta:
            w = weight_hat(tracked)
            tc = self.ctx.cfg.train
            self.abm_param = w
            self.abm = ABM(w.numel(), rms(w), (tc.beta1, tc.beta2), tc.eps, self.ctx.cfg.seed)
        return model

    def _mup_inits(self, model: nn.Module) -> dict[int, float]:
        """The workload's non-learnable muP forward multipliers become the multipliers' init (then set to 1):
        the embedding multiplier on the (untied, bias-free) module it scales, the attention scale's muP factor
        (scale * sqrt(head_dim)) on W_K (W_Q where W_K has none) of each layer whose q and k are tensors of
        their own. The readout multiplier stays fixed: the head is left alone. A workload without an
        absorbable multiplier (timm's, by output hooks on biased modules): 1."""
        wl, o, inits = self.ctx.workload, self.options, {}
        mults = wl.forward_multipliers(model, self.ctx.roles)
        placed = lambda role: PLACEMENTS[o.placement](role, None) is not None  # noqa: E731
        emb = mults.get("embedding")
        if placed("embedding") and emb is not None and emb.owner is not None \
                and id(emb.owner.weight) not in shared_weights(model):
            inits[id(emb.owner)] = emb.value
            emb.value = 1.0
        if "attn_scale" in mults and "attention" in wl.capabilities():
            for view in wl.attention_layers(model):
                target = view.k if placed("attn_k") else view.q if placed("attn_q") else None
                if target is not None and target.whole:
                    inits[id(target.module)] = view.scale * math.sqrt(view.head_dim)
                    view.scale = 1 / math.sqrt(view.head_dim)
        return inits

    def _final_norm(self, model: nn.Module) -> set[int]:
        """VPN (the norm gain vector, unchanged), SPN (one learnable scalar) or FPN (frozen at 1) for GPT's ln_f."""
        from torch.nn.utils import parametrize

        wl = self.ctx.workload
        self.ln_f = wl.readout(model).norm if "readout" in wl.capabilities() else None
        if self.options.final_norm == "vector" or self.ln_f is None:
            return set()
        self.ln_f.weight.requires_grad_(False)
        if self.options.final_norm == "frozen":
            return set()
        w = self.ln_f.weight
        sc = FrozenVectorAsScalar(w.shape[0], device=w.device, dtype=w.dtype)
        parametrize.register_parametrization(self.ln_f, "weight", sc)
        return {id(sc.s)}

    # ------------------------------------------------------------------ optimizer
    def param_groups(self, model: nn.Module, groups: list[dict]) -> list[dict]:
        o = self.options
        mult = {"params": [], "names": [], "weight_decay": o.weight_decay, "lr_scale": o.lr_scale,
                "clip": o.clip == "include"}
        out, by_role = [], {}
        for g in groups:
            keep = {**g, "params": [], "names": []}
            for p, n in zip(g["params"], g["names"], strict=True):
                role = self.ctx.roles.get(n)
                if id(p) in self.mult_ids:
                    dst = mult
                elif role in o.s_factor:
                    k = o.s_factor[role]
                    key = (role, id(g))
                    dst = by_role.setdefault(key, {**g, "params": [], "names": [],
                                                   "weight_decay": g.get("weight_decay", 0.0) / k,
                                                   "lr_scale": g.get("lr_scale", 1.0) * k})
                else:
                    dst = keep
                dst["params"].append(p)
                dst["names"].append(n)
            out.append(keep)
        out += list(by_role.values()) + [mult]
        return [g for g in out if g["params"]]

    # ------------------------------------------------------------------ step hooks
    def _log_due(self, step: int) -> bool:
        """Whether the trainer logs after this step (its own rule), so diagnostics cost only there."""
        cfg, s = self.ctx.cfg, step + 1
        return (s % cfg.log.every == 0 or s == cfg.train.steps or (cfg.eval.every > 0 and s % cfg.eval.every == 0)
                or (cfg.ckpt.every > 0 and s % cfg.ckpt.every == 0))

    def before_step(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        o, clip = self.options, self.ctx.cfg.train.grad_clip
        mults = [p for a in self.attached for p in a.mult.parameters() if p.grad is not None]
        if self._log_due(step) and self.ctx.grad_norm is not None:
            m = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in mults])).item() if mults else 0.0
            total = float(self.ctx.grad_norm)
            if o.clip == "include":  # the trainer scaled the multiplier grads too: undo it to get their norm
                f = min(1.0, clip / (total + 1e-6)) if clip > 0 else 1.0
                m = m / f
                rest = math.sqrt(max(total ** 2 - m ** 2, 0.0))
            else:
                rest = total
            excl, incl = clip_factors(rest, m, clip)
            self.clip_diag = {"lrm/clip_factor_excl": excl, "lrm/clip_factor_incl": incl,
                              "lrm/mult_grad_norm": m, "lrm/rest_grad_norm": rest}
        if o.clip == "exclude" and o.mult_clip > 0 and mults:
            torch.nn.utils.clip_grad_norm_(mults, o.mult_clip)
        if self.abm is not None:
            g = next(g for g in optimizer.param_groups if any(p is self.abm_param for p in g["params"]))
            self.abm.step(g["lr"], g.get("weight_decay", 0.0))

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def metrics(self, step: int, model: nn.Module, outputs: Outputs) -> dict[str, float]:
        row: dict[str, float] = {}
        wrapped = {id(a.module): a for a in self.attached}
        spread: dict[str, list[float]] = {}
        for name, mod, role, slot in self.matrices:
            row[f"lrm/rms_w/{name}"] = rms(weight_hat(mod))
            a = wrapped.get(id(mod))
            if a is not None:
                for key, p in (("s", a.mult.s), ("rms_r", a.mult.row), ("rms_c", a.mult.col)):
                    if p is not None:
                        row[f"lrm/{key}/{name}"] = rms(p) if key != "s" else p.item()
            if role != "embedding":
                spread.setdefault(slot or role, []).append(row_spread(mod.weight))
        row.update({f"lrm/row_spread/{k}": sum(v) / len(v) for k, v in spread.items()})
        row.update(self._qk(model))
        if self.abm is not None:
            row["lrm/abm_rms"] = self.abm.rms()
            row[f"lrm/{self.options.abm_role}_rms_w"] = rms(self.abm_param)
        if self.ln_f is not None and getattr(self.ln_f, "weight", None) is not None:
            row["lrm/final_norm_rms"] = rms(self.ln_f.weight)
        row["lrm/logit_rms"] = rms(outputs.logits)
        if outputs.hidden_states:  # C6: the last residual stream; C4: every block's output, by depth
            row["lrm/resid_rms"] = rms(outputs.hidden_states[-1])
            row.update({f"lrm/resid_rms/{i}": rms(h) for i, h in enumerate(outputs.hidden_states[1:])})
        row.update(self.clip_diag)
        return row

    def _qk(self, model: nn.Module) -> dict[str, float]:
        """C6: mean over attention layers of |log10(M_q/M_k)| and log10(M_q*M_k), M = a matrix's multiplier
        scale (1 where it has none); pairs are the q and k matrices of one attention module."""
        by_parent: dict[str, dict[str, Multipliers | None]] = {}
        wrapped = {id(a.module): a.mult for a in self.attached}
        for name, mod, role, _ in self.matrices:
            if role in ("attn_q", "attn_k"):
                by_parent.setdefault(name.rsplit(".", 1)[0], {})[role] = wrapped.get(id(mod))
        ratios, prods = [], []
        for pair in by_parent.values():
            if len(pair) == 2 and any(pair.values()):
                mq, mk = (float(pair[r].scale()) if pair[r] is not None else 1.0 for r in ("attn_q", "attn_k"))
                ratios.append(abs(math.log10(max(mq, 1e-30) / max(mk, 1e-30))))
                prods.append(math.log10(max(mq * mk, 1e-30)))
        if not ratios:
            return {}
        return {"lrm/qk_log10_ratio": sum(ratios) / len(ratios), "lrm/qk_log10_prod": sum(prods) / len(prods)}

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        return {"abm": self.abm.state_dict()} if self.abm is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.abm is not None and "abm" in state:
            self.abm.load_state_dict(state["abm"])

    # ------------------------------------------------------------------ checks
    @classmethod
    def check(cls, options: LRMOptions, workload: Workload) -> None:
        """The workload must have matrix roles the placement selects (final_norm needs a readout: requires())."""
        names = [m.name for m in workload.cfg.methods]
        if options.init == "mup" and "mup" in names and names.index("mup") > names.index("lrm"):
            raise ConfigError("methods (lrm): init=mup absorbs the forward multipliers mup sets: list `mup` before "
                              "`lrm`")
        model = _meta_model(workload)
        roles = workload.param_roles(model)
        roles_by_id = {id(p): roles[n] for n, p in model.named_parameters()}
        mats = _matrix_modules(model, roles_by_id)
        if not mats:
            raise ConfigError(f"methods: lrm needs matrix parameters (roles {', '.join(sorted(MATRIX_ROLES))}); "
                              f"workload '{workload.name}' has none")
        slots = workload.mlp_slots(model)
        if options.placement != "none" and not any(PLACEMENTS[options.placement](r, slots.get(id(m)))
                                                   for _, m, r in mats) and options.head == "none":
            raise ConfigError(f"methods: lrm option placement={options.placement!r} selects no matrix of workload "
                              f"'{workload.name}'")


def _meta_model(workload: Workload) -> nn.Module:
    """The workload's model without allocating it (meta device), for checks before training; a builder that
    needs its data's metadata (the GPT vocabulary) gets check_data() first."""
    try:
        with torch.device("meta"):
            return workload.build_model()
    except Exception:
        workload.check_data()
        with torch.device("meta"):
            return workload.build_model()
