"""The `muon` recipe: Newton-Schulz orthogonalised updates on hidden matrices, AdamW elsewhere (by role),
decoupled weight decay, the AdamW-RMS-matched scale, exact resume and a real micro run (also with lrm)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from baselines.muon import Muon, MuonOptions, MuonWithAdamW, split_groups
from claimbench.config import TrainConfig
from claimbench.testing import run_micro


def _optimizer(w: torch.Tensor, emb: torch.Tensor, adjust: str = "match_rms_adamw", wd: float = 0.0, **opts):
    groups = [{"params": [w, emb], "names": ["blocks.0.attn.q.weight", "wte.weight"], "weight_decay": wd,
               "lr": 0.01}]
    recipe = Muon(MuonOptions(adjust_lr=adjust, **opts))
    recipe.roles = {"blocks.0.attn.q.weight": "attn_q", "wte.weight": "embedding"}
    train = TrainConfig.model_validate({"lr": 0.01, "weight_decay": wd})
    return recipe.build_optimizer(groups, train)


def _update_singular_values(**opts) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(64, 32))
    emb = torch.nn.Parameter(torch.randn(100, 32))
    opt = _optimizer(w, emb, **opts)
    before = w.detach().clone()
    g = torch.randn(64, 32) * torch.logspace(-1, 0, 32)  # an ill-conditioned gradient
    w.grad, emb.grad = g, torch.randn(100, 32)
    opt.step()
    update = (before - w.detach()) / (0.01 * 0.2 * math.sqrt(64))  # undo Moonlight's scale
    return torch.linalg.svdvals(update), torch.linalg.svdvals(g)


def test_muon_update_on_a_matrix_is_orthogonalised():
    sv, sv_grad = _update_singular_values(ns_coefficients=(1.5, -0.5, 0.0), ns_steps=10)  # convergent cubic NS
    assert sv.max() - sv.min() < 0.3, sv
    assert sv_grad.max() - sv_grad.min() > 5  # the gradient itself was far from orthogonal
    # torch's default quintic (Jordan): every singular value in its documented band, ~[0.7, 1.2]
    sv, _ = _update_singular_values()
    assert 0.6 < sv.min() and sv.max() < 1.25, sv


def test_roles_split_and_adamw_on_the_embedding():
    w = torch.nn.Parameter(torch.randn(16, 8))
    emb = torch.nn.Parameter(torch.randn(10, 8))
    opt = _optimizer(w, emb)
    assert isinstance(opt, MuonWithAdamW)
    assert [p is w for p in opt.muon.param_groups[0]["params"]] == [True]
    assert [p is emb for p in opt.adamw.param_groups[0]["params"]] == [True]
    before = emb.detach().clone()
    w.grad, emb.grad = torch.randn(16, 8), torch.randn(10, 8)
    opt.step()
    torch.testing.assert_close((before - emb.detach()).abs(), torch.full((10, 8), 0.01), rtol=1e-3, atol=1e-6)


def test_decoupled_weight_decay_and_original_scale():
    w = torch.nn.Parameter(torch.ones(8, 4))
    emb = torch.nn.Parameter(torch.ones(3, 4))
    opt = _optimizer(w, emb, adjust="original", wd=0.5)
    w.grad, emb.grad = torch.zeros(8, 4), torch.zeros(3, 4)
    opt.step()  # zero gradient: only the decay p *= 1 - lr * wd acts
    torch.testing.assert_close(w.detach(), torch.full((8, 4), 1 - 0.01 * 0.5))
    torch.testing.assert_close(emb.detach(), torch.full((3, 4), 1 - 0.01 * 0.5))


def test_state_dict_round_trip_resumes_exactly():
    torch.manual_seed(1)
    w, emb = torch.nn.Parameter(torch.randn(8, 6)), torch.nn.Parameter(torch.randn(5, 6))
    opt = _optimizer(w, emb)
    grads = [(torch.randn(8, 6), torch.randn(5, 6)) for _ in range(4)]
    for gw, ge in grads[:2]:
        w.grad, emb.grad = gw, ge
        opt.step()
    state, snap = copy.deepcopy(opt.state_dict()), (w.detach().clone(), emb.detach().clone())
    for gw, ge in grads[2:]:
        w.grad, emb.grad = gw, ge
        opt.step()
    w2, e2 = torch.nn.Parameter(snap[0]), torch.nn.Parameter(snap[1])
    opt2 = _optimizer(w2, e2)
    opt2.load_state_dict(state)
    for gw, ge in grads[2:]:
        w2.grad, e2.grad = gw, ge
        opt2.step()
    assert torch.equal(w2, w) and torch.equal(e2, emb)


def test_split_groups_keeps_group_settings():
    a, b = torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4))
    muon, adamw = split_groups([{"params": [a, b], "names": ["m", "n"], "weight_decay": 0.1, "lr": 1.0}],
                               {"m": "hidden_matrix", "n": "norm"}, lr_scale=2.0)
    assert muon[0]["lr"] == 2.0 and muon[0]["weight_decay"] == 0.1 and adamw[0]["lr"] == 1.0


@pytest.mark.parametrize("methods", [[], [{"name": "lrm"}]])
def test_micro_run_with_muon_learns(tmp_path, methods):
    res, rows = run_micro(tmp_path / "run", steps=12, methods=methods, recipe="muon",
                          **{"model.arch": "llama", "train.lr": 1e-2})
    assert res["status"] == "ok" and rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.2
