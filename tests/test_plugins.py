"""The method plugin API: hooks are called, options validated, `needs` honoured, scaffold passes."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from claimbench import registry
from claimbench.plugin import Method
from claimbench.registry import register_method
from claimbench.testing import REPO, run_micro

CALLS: list[tuple[str, int]] = []


@register_method("_test_recorder")
class Recorder(Method):
    needs = frozenset({"hidden_states"})

    def transform_model(self, model):
        CALLS.append(("transform_model", -1))
        return model

    def param_groups(self, model, groups):
        CALLS.append(("param_groups", -1))
        for g in groups:
            g["lr_scale"] = 0.5
        return groups

    def extra_loss(self, outputs):
        self.n_hidden = len(outputs.hidden_states)
        return None

    def before_step(self, step, model, optimizer):
        CALLS.append(("before_step", step))
        self.lrs = [g["lr"] for g in optimizer.param_groups]

    def after_step(self, step, model, optimizer):
        CALLS.append(("after_step", step))

    def metrics(self, step, model, outputs):
        return {"_test_recorder/n_hidden": self.n_hidden, "_test_recorder/lr0": self.lrs[0]}


def test_hooks_are_called_in_order(tmp_path, data_dir):
    CALLS.clear()
    result, rows = run_micro(tmp_path / "run", steps=3, methods=["_test_recorder"],
                             **{"train.lr": 1e-3, "train.schedule": "constant"})
    assert result["status"] == "ok"
    assert CALLS == [("transform_model", -1), ("param_groups", -1), ("before_step", 0), ("after_step", 0),
                     ("before_step", 1), ("after_step", 1), ("before_step", 2), ("after_step", 2)]
    assert [r["_test_recorder/n_hidden"] for r in rows] == [3, 3, 3]  # embeddings + 2 micro blocks
    assert rows[0]["_test_recorder/lr0"] == 5e-4  # lr_scale 0.5 applied to the group


def test_extra_loss_changes_training(tmp_path, data_dir):
    base, _ = run_micro(tmp_path / "base", steps=5)
    z, rows = run_micro(tmp_path / "z", steps=5, methods=[{"name": "zloss", "coef": 0.1}])
    assert "zloss/logz_sq" in rows[-1]
    assert z["final_train_loss"] != base["final_train_loss"]


def test_hidden_states_only_when_asked(data_dir):
    from benchmarks.models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16))
    idx = torch.randint(0, 64, (2, 8))
    plain = model(idx)
    assert plain.hidden_states is None and plain.attn_probs is None
    full = model(idx, want_hidden=True, want_probs=True)
    assert len(full.hidden_states) == 3 and len(full.attn_probs) == 2
    assert torch.allclose(plain.logits, full.logits, atol=1e-5)  # explicit attention == SDPA
    assert torch.allclose(full.attn_probs[0].sum(-1), torch.ones(2, 2, 8))


def test_every_parameter_has_a_role():
    from benchmarks.models.gpt import GPT, GPTConfig, param_roles

    for arch in ("gpt2", "llama"):
        model = GPT(GPTConfig(arch=arch, vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=True))
        roles = param_roles(model)
        assert set(roles) == {n for n, _ in model.named_parameters()}
        assert roles["blocks.0.attn.q.weight"] == "attn_q" and roles["blocks.1.attn.o.weight"] == "attn_out"
        assert roles["blocks.0.attn.q.bias"] == "bias" and roles["wte.weight"] == "embedding"
        assert roles.get("lm_head.weight", "readout") == "readout"  # tied in gpt2: listed once, as wte


def test_registry_lists_plugins_and_cli_list(cli):
    assert {"none", "zloss"} <= set(registry.names("method"))
    assert {"adamw", "adamw_nowarmup"} <= set(registry.names("recipe"))
    r = cli("list")
    assert r.returncode == 0 and "gpt" in r.stdout and "zloss" in r.stdout and "claims:" in r.stdout


def test_scaffold_writes_a_plugin_whose_test_passes(tmp_path, cli, data_dir):
    r = cli("new-method", "demo_scaffold", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "methods" / "demo_scaffold" / "__init__.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(tmp_path / "tests" / "test_method_demo_scaffold.py")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert t.returncode == 0, t.stdout + t.stderr
    assert "1 passed" in t.stdout
    again = cli("new-method", "demo_scaffold", "--root", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert not (REPO / "methods" / "demo_scaffold").exists()


def test_third_party_method_via_entry_point(tmp_path):
    """A package that declares `claimbench.methods` entry point is listed and usable, with no in-repo file."""
    (tmp_path / "thirdparty_mod.py").write_text("from claimbench.plugin import Method\n\n\n"
                                                "class Thirdparty(Method):\n    '''A method from another package.'''\n")
    dist = tmp_path / "thirdparty_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[claimbench.methods]\nthirdparty = thirdparty_mod:Thirdparty\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "claimbench", "list"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "thirdparty" in r.stdout and "A method from another package." in r.stdout
