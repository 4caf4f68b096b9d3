"""The `mup` baseline: muP at base width is the standard parametrization, a coordinate check (activations flat
in width under muP, growing under SP), the tuning levels, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.mup import MupOptions, apply_mup, role_factors, split_by_factor
from benchmarks.models.gpt import GPT, GPTConfig, param_roles
from benchmarks.workloads.gpt import forward_multipliers
from claimbench.config import ConfigError, load_config
from claimbench.testing import micro_overrides, run_micro
from claimbench.train import default_param_groups, prepare

WIDTHS = (64, 128, 256, 512)


def test_mup_at_base_width_is_the_standard_parametrization(tmp_path):
    sets = {"model.arch": "llama", "train.lr": 3e-3}
    _, sp = run_micro(tmp_path / "sp", steps=6, **sets)
    _, mup = run_micro(tmp_path / "mup", steps=6, methods=[{"name": "mup", "base_width": 32, "level": "LRWD"}],
                       **sets)
    assert [r["train_loss"] for r in mup] == [r["train_loss"] for r in sp]
    _, wide = run_micro(tmp_path / "wide", steps=6, methods=[{"name": "mup", "base_width": 16}], **sets)
    assert [r["train_loss"] for r in wide] != [r["train_loss"] for r in sp]  # m = 2 changes the run


def _coord_check(mup: bool, steps: int = 8, lr: float = 1e-2) -> list[float]:
    """RMS of the last block's output (the residual stream before the final norm) after a few Adam steps on
    fixed random tokens, at each width; muP keeps every coordinate Theta(1) as width grows."""
    out = []
    for width in WIDTHS:
        torch.manual_seed(0)
        model = GPT(GPTConfig(arch="llama", vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=width))
        roles = param_roles(model)
        factors = {r: (1.0, 1.0) for r in roles.values()}
        if mup:
            opts = MupOptions(base_width=WIDTHS[0])
            m = apply_mup(model, roles, opts, forward_multipliers(model))
            factors = role_factors(opts, m)
        groups = split_by_factor(default_param_groups(model, roles, 0.0, set()), roles, factors)
        opt = torch.optim.Adam([{"params": g["params"], "lr": lr * g["lr_scale"]} for g in groups])
        gen = torch.Generator().manual_seed(1)
        x = torch.randint(0, 256, (8, 32), generator=gen)
        y = torch.randint(0, 256, (8, 32), generator=gen)
        for _ in range(steps):
            out_ = model(x)
            F.cross_entropy(out_.logits.flatten(0, 1), y.flatten()).backward()
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            h = model(x, want_hidden=True).hidden_states[-1]
        out.append(h.pow(2).mean().sqrt().item())
    return out


def _slope(values: list[float]) -> float:
    return float(np.polyfit(np.log(WIDTHS), np.log(values), 1)[0])


def test_coordinate_check_activations_flat_in_width_under_mup():
    mup, sp = _slope(_coord_check(True)), _slope(_coord_check(False))
    assert abs(mup) <= 0.1, mup
    assert sp > mup + 0.2, (sp, mup)  # the check can fail: SP's activations do grow with width


def test_levels_enable_the_tuned_multipliers():
    opts = dict(lr_mult={"embedding": 2.0, "attn_q": 3.0}, wd_mult={"readout": 5.0}, fwd_mult={"readout": 0.5})
    none = role_factors(MupOptions(level="NONE", **opts), m=4.0)
    assert none["attn_q"] == (0.25, 1.0) and none["embedding"] == (1.0, 1.0) and none["readout"] == (1.0, 1.0)
    lr = role_factors(MupOptions(level="LR", **opts), m=4.0)
    assert lr["attn_q"] == (0.75, 1.0) and lr["embedding"] == (2.0, 1.0) and lr["readout"] == (1.0, 1.0)
    lrwd = role_factors(MupOptions(level="LRWD", **opts), m=4.0)
    assert lrwd["readout"] == (1.0, 5.0)
    for level, expect in (("LRWD", 1 / 2), ("FULL", 0.5 / 2)):
        model = GPT(GPTConfig(arch="llama", vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=32))
        apply_mup(model, param_roles(model), MupOptions(level=level, base_width=16, **opts), forward_multipliers(model))
        assert model.logit_mult == pytest.approx(expect)
        assert model.blocks[0].attn.scale == pytest.approx(1 / math.sqrt(16) / 2)


def test_unknown_role_is_a_one_line_error(tmp_path):
    cfg = load_config(None, micro_overrides(3, [{"name": "mup", "lr_mult": {"hidden": 2.0}}]), base={})
    with pytest.raises(ConfigError) as e:
        prepare(cfg, tmp_path / "run")
    assert "lr_mult" in str(e.value) and "\n" not in str(e.value)


def test_mup_on_the_mlp_workload_scales_the_readout_by_hook(tmp_path):
    """Roles, not model classes: on the residual MLP the readout multiplier 1/m is a forward hook on its head."""
    import json

    from benchmarks.data.images import micro_image_dir
    from claimbench.train import Trainer

    def build(methods):
        sets = ["workload=mlp", "size=micro", f"data.dir={micro_image_dir()}", "train.steps=2", "train.batch_size=8",
                "eval.every=0", "ckpt.every=0", f"methods={json.dumps(methods)}"]
        torch.manual_seed(0)
        return Trainer(prepare(load_config(None, sets, base={}), tmp_path / f"r{len(methods)}"))

    sp, mup = build([]), build([{"name": "mup", "base_width": 1}])
    width = mup.model.head.weight.shape[1]
    x = sp.run.workload.train_batch(0, 0, 4)[0]
    head_in = {}
    sp.model.head.register_forward_hook(lambda m, i, o: head_in.setdefault("sp", (i[0], o)))
    mup.model.head.register_forward_hook(lambda m, i, o: head_in.setdefault("mup", (i[0], o)))
    with torch.no_grad():
        mup.model(x)
    h, out = head_in["mup"]
    w, b = mup.model.head.weight, mup.model.head.bias
    torch.testing.assert_close(out, F.linear(h, w, b) / width)
    lrs = {n: g["lr"] for g in mup.optimizer.param_groups for n in g["names"]}
    hidden = next(n for n, r in mup.ctx.roles.items() if r == "hidden_matrix")
    assert lrs[hidden] == pytest.approx(mup.train_cfg.lr / width) and lrs["head.weight"] == mup.train_cfg.lr


# ------------------------------------------------------------------------------------------ tuned file (the sweep's)

TUNED = {"levels": {"NONE": {"lr_mult": {}, "wd_mult": {}, "fwd_mult": {}},
                    "LR": {"lr_mult": {"hidden_matrix": 0.5, "attn_q": 0.5}, "wd_mult": {}, "fwd_mult": {}},
                    "LRWD": {"lr_mult": {"embedding": 2.0}, "wd_mult": {"hidden_matrix": 3.0}, "fwd_mult": {}},
                    "FULL": {"lr_mult": {"embedding": 2.0}, "wd_mult": {"hidden_matrix": 3.0},
                             "fwd_mult": {"readout": 0.25, "embedding": 4.0}}}}


def _trainer(tmp_path, mup: dict):
    from claimbench.train import Trainer

    sets = micro_overrides(2, [mup], **{"model.arch": "llama", "train.lr": 1e-3, "train.weight_decay": 0.1})
    return Trainer(prepare(load_config(None, sets, base={}), tmp_path / "run"))


def test_tuned_file_supplies_the_levels_multipliers(tmp_path):
    """A run naming the sweep's file trains with that level's values: LR factors in the optimizer, WD, forward."""
    import json

    f = tmp_path / "mup_tuned.json"
    f.write_text(json.dumps(TUNED))
    lr = _trainer(tmp_path / "lr", {"name": "mup", "base_width": 32, "level": "LR", "tuned": str(f)})
    assert lr.methods[0].options.lr_mult == {"hidden_matrix": 0.5, "attn_q": 0.5}
    groups = {n: g for g in lr.optimizer.param_groups for n in g["names"]}
    hidden = next(n for n, r in lr.ctx.roles.items() if r == "hidden_matrix")
    emb = next(n for n, r in lr.ctx.roles.items() if r == "embedding")
    assert groups[hidden]["lr"] == pytest.approx(1e-3 * 0.5) and groups[emb]["lr"] == pytest.approx(1e-3)
    full = _trainer(tmp_path / "full", {"name": "mup", "base_width": 32, "level": "FULL", "tuned": str(f)})
    groups = {n: g for g in full.optimizer.param_groups for n in g["names"]}
    assert groups[emb]["lr"] == pytest.approx(2e-3)
    assert groups[hidden]["weight_decay"] == pytest.approx(0.3)
    assert full.model.logit_mult == pytest.approx(0.25) and full.model.embed_mult == pytest.approx(4.0)
    f.write_text(json.dumps({"levels": {**TUNED["levels"], "LR": {"lr_mult": {"hidden_matrix": 2.0}}}}))
    again = _trainer(tmp_path / "again", {"name": "mup", "base_width": 32, "level": "LR", "tuned": str(f)})
    assert again.methods[0].options.lr_mult == {"hidden_matrix": 2.0}  # a changed sweep changes the run


@pytest.mark.parametrize("opts,needle", [
    ({"level": "LR", "tuned": "nowhere/mup_tuned.json"}, "nowhere/mup_tuned.json"),
    ({"level": "NONE", "tuned": "x.json"}, "tuned"),
    ({"level": "LR", "tuned": "x.json", "lr_mult": {"embedding": 2.0}}, "tuned"),
    ({"level": "FULL", "tuned": "BAD"}, "levels.FULL"),
])
def test_bad_tuned_file_is_a_one_line_error_before_training(tmp_path, opts, needle):
    import json

    if opts["tuned"] == "BAD":
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"levels": {"FULL": {"fwd_mult": {"head": 2.0}}}}))
        opts = {**opts, "tuned": str(bad)}
    cfg = load_config(None, micro_overrides(2, [{"name": "mup", **opts}]), base={})
    with pytest.raises(ConfigError) as e:
        prepare(cfg, tmp_path / "run")
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()
