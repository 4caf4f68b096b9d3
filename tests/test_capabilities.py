"""Workload capabilities: what each workload declares, what it serves, and the refusal of a method whose
needs a workload lacks (one line, before training, exit 2)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from benchmarks.data.images import micro_image_dir
from claimbench import registry
from claimbench.capabilities import CAPABILITIES
from claimbench.config import ConfigError, load_config
from claimbench.plugin import Method, NoOptions, capability_error
from claimbench.testing import micro_data_dir
from claimbench.train import EXIT_BAD_INPUT, prepare

REPO = Path(__file__).resolve().parents[1]


def _cfg(workload: str, methods: list, **sets):
    data = micro_data_dir() if workload == "gpt" else micro_image_dir()
    base = {"workload": workload, "size": "micro", "data.dir": str(data), "train.steps": 1, "train.batch_size": 4,
            "log.every": 1, "eval.every": 0, "eval.batches": 1, "ckpt.every": 0, "methods": json.dumps(methods)}
    base.update(sets)
    return load_config(None, [f"{k}={v}" for k, v in base.items()], base={})


def _workload(name: str, **sets):
    cfg = _cfg(name, [], **sets)
    wl = registry.get("workload", name)(cfg)
    wl.check_data()
    torch.manual_seed(0)
    return wl, wl.build_model()


def test_every_declared_capability_is_known():
    for name in registry.names("workload"):
        cls = registry.get("workload", name)
        assert cls.provides <= CAPABILITIES, (name, cls.provides - CAPABILITIES)
    for name in registry.names("method"):
        cls = registry.get("method", name)
        assert cls.needs <= CAPABILITIES, (name, cls.needs - CAPABILITIES)


def test_jreg_on_swin_is_refused_before_training_in_one_line(tmp_path):
    """swin hands out hidden states but declares no depth (its width changes between stages)."""
    with pytest.raises(ConfigError) as e:
        prepare(_cfg("swin", ["jreg"]), tmp_path / "run")
    msg = str(e.value)
    assert "\n" not in msg and "'jreg'" in msg and "'swin'" in msg and "'depth'" in msg, msg
    assert not (tmp_path / "run").exists()


def test_cli_exits_2_naming_method_workload_and_capability(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"workload: mlp\nsize: micro\ndata: {{dir: {micro_image_dir()}}}\nmethods: [{{name: lrm, "
                   "final_norm: scalar}]\ntrain: {steps: 1, batch_size: 4}\n")
    r = subprocess.run([str(Path(__import__("sys").executable)), "-m", "claimbench", "train", str(cfg), "--out",
                        str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_BAD_INPUT == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "'lrm'" in lines[0] and "'mlp'" in lines[0] and "'readout'" in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


def test_a_plugin_needing_an_unserved_capability_is_refused():
    class NeedsTokenizer(Method):
        name = "needs_tok"
        needs = frozenset({"tokenizer"})

    class NeedsNothingKnown(Method):
        name = "needs_bogus"
        needs = frozenset({"telepathy"})

    wl = registry.get("workload", "vit")(_cfg("vit", []))
    opts = NoOptions()
    assert "'tokenizer'" in capability_error(0, NeedsTokenizer, opts, wl)
    assert "unknown capability 'telepathy'" in capability_error(0, NeedsNothingKnown, opts, wl)
    gpt = registry.get("workload", "gpt")(_cfg("gpt", []))
    assert capability_error(0, NeedsTokenizer, opts, gpt) is None


@pytest.mark.parametrize("name,sets", [("gpt", {}), ("gpt", {"model.arch": "llama", "model.qk_norm": True}),
                                       ("vit", {}), ("vit", {"model.split_qkv": True}), ("swin", {})])
def test_attention_views_and_served_logits_match_the_probabilities(name, sets):
    """softmax of the logits the model serves is the probabilities it hands out (for Swin: its relative-position
    bias is in the logits); W_q / W_k views are the rows the model multiplies by."""
    wl, model = _workload(name, **sets)
    model.eval()
    views = wl.attention_layers(model)
    assert views and all(v.W_q.shape == v.W_k.shape and v.W_q.shape[0] == v.n_head * v.head_dim for v in views)
    if name != "gpt" and not sets:
        segs = wl.role_segments(model)
        assert len(segs) == len(views) and all([r for *_, r in s] == ["attn_q", "attn_k", "attn_v"]
                                               for s in segs.values())
    batch = wl.train_batch(0, 0, 2)
    logits: list[torch.Tensor] = []
    with torch.no_grad(), wl.attn_logits(model, logits.append):
        out = wl.forward(model, batch, frozenset({"attn_probs"}))
    assert len(logits) == len(out.attn_probs) == len(views)
    for lg, p in zip(logits, out.attn_probs, strict=True):
        if name == "vit":  # timm ViT scales q before the product; the served logits scale the product
            torch.testing.assert_close(lg.softmax(-1), p, atol=1e-5, rtol=0)
        else:
            torch.testing.assert_close(lg.reshape(p.shape).softmax(-1), p, atol=0, rtol=0)
    with torch.no_grad():  # the hooks are gone after the block
        wl.forward(model, batch, frozenset())
    assert len(logits) == len(views)


def test_swin_logits_include_the_relative_position_bias():
    wl, model = _workload("swin")
    model.eval()
    for m in model.modules():
        if hasattr(m, "relative_position_bias_table"):
            torch.nn.init.constant_(m.relative_position_bias_table, 0.0)
    batch = wl.train_batch(0, 0, 2)
    seen: list[float] = []
    with torch.no_grad(), wl.attn_logits(model, lambda lg: seen.append(lg.max().item())):
        wl.forward(model, batch, frozenset())
    for m in model.modules():
        if hasattr(m, "relative_position_bias_table"):
            torch.nn.init.constant_(m.relative_position_bias_table, 7.0)
    shifted: list[float] = []
    with torch.no_grad(), wl.attn_logits(model, lambda lg: shifted.append(lg.max().item())):
        wl.forward(model, batch, frozenset())
    assert seen and all(math.isclose(b - a, 7.0, abs_tol=1e-4) for a, b in zip(seen[:1], shifted[:1], strict=True))


def test_multipliers_readout_depth_and_text_capabilities():
    wl, model = _workload("gpt", **{"model.embed_mult": 2.0})
    mults = wl.forward_multipliers(model)
    assert mults["embedding"].value == 2.0 and mults["embedding"].owner is model.wte
    mults["attn_scale"].mul(0.5)
    assert all(v.scale == pytest.approx(0.5 / math.sqrt(v.head_dim)) for v in wl.attention_layers(model))
    assert wl.depth() == 2 and wl.context_length() == 32
    x, y = wl.heldout_batch(3)
    assert x.shape == (3, 32)
    h = wl.forward(model, (x, y), frozenset({"hidden_states"}))
    torch.testing.assert_close(wl.readout(model)(h.hidden_states[-1]), h.logits, atol=0, rtol=0)
    assert wl.tokenizer().encode("To be").ids
    vit, vmodel = _workload("vit")
    vm = vit.forward_multipliers(vmodel)
    assert set(vm) == {"embedding", "logit"} and vit.depth() == 2  # no attention scale: timm's is left alone
    assert "depth" not in registry.get("workload", "swin").provides
