"""No-warmup baselines of the AdamW^2 paper: sigma-Reparam, RAdam, replayed warmup (QK-norm is a model option)."""

from __future__ import annotations

import pytest
import torch

from baselines.sigma_reparam import SigmaReparam
from baselines.stabilizers import ReplayedWarmup, ReplayOptions, replay_points
from claimbench.config import ConfigError, load_config
from claimbench.testing import micro_overrides, run_micro
from claimbench.train import Trainer, prepare


def test_sigma_reparam_is_identity_at_init_and_normalises():
    torch.manual_seed(0)
    lin = torch.nn.Linear(24, 16, bias=False)
    w0 = lin.weight.detach().clone()
    torch.nn.utils.parametrize.register_parametrization(lin, "weight", SigmaReparam(lin.weight))
    assert torch.allclose(lin.weight, w0, atol=1e-6)  # gamma = sigma(W_init)
    with torch.no_grad():
        lin.parametrizations.weight.original.mul_(7.0)  # scaling W does not change W_hat
        for _ in range(3):
            w = lin.weight
    assert torch.allclose(w, w0, atol=1e-5)
    lin.parametrizations.weight[0].gamma.data.fill_(2.0)
    assert torch.linalg.matrix_norm(lin.weight.detach(), ord=2).item() == pytest.approx(2.0, rel=1e-4)


def test_sigma_reparam_run_registers_roles_and_trains(tmp_path):
    cfg = load_config(None, micro_overrides(methods=["sigma_reparam"]), base={})
    trainer = Trainer(prepare(cfg, tmp_path / "t"))
    roles = trainer.ctx.roles
    assert roles["blocks.0.attn.q.parametrizations.weight.original"] == "attn_q"
    assert roles["blocks.0.attn.q.parametrizations.weight.0.gamma"] == "multiplier"
    assert roles["wte.weight"] == "embedding"
    res, rows = run_micro(tmp_path / "r", steps=20, methods=["sigma_reparam"],
                          **{"recipe": "adamw_nowarmup", "train.lr": 1e-2})
    assert res["status"] == "ok" and rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_radam_recipe(tmp_path):
    cfg = load_config(None, micro_overrides(recipe="radam", **{"train.warmup_steps": 5}), base={})
    trainer = Trainer(prepare(cfg, tmp_path / "t"))
    assert isinstance(trainer.optimizer, torch.optim.RAdam)
    assert trainer.lr_lambda(0) == 1.0  # warmup forced off
    res, rows = run_micro(tmp_path / "r", steps=20, recipe="radam")
    assert res["status"] == "ok" and rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_replayed_warmup_replays_the_median_effective_lr(tmp_path):
    src = tmp_path / "adamw2"
    _, rows = run_micro(src, steps=20, methods=[{"name": "adamw2", "tau": 0.01}],
                        **{"recipe": "adamw_nowarmup", "train.lr": 1e-2, "log.every": 2})
    pts = replay_points(src / "metrics.jsonl")
    assert pts[0][0] == 0 and len(pts) == 11  # step 0, then one point per log step
    recipe = ReplayedWarmup(ReplayOptions(source=str(src)))
    cfg = load_config(None, micro_overrides(**{"train.lr": 1e-2}), base={})
    f = recipe.lr_lambda(cfg.train)
    for r in rows:  # at each logged step the factor is lr x median lr ratio / peak
        assert f(r["step"] - 1) * 1e-2 == pytest.approx(r["lr"] * r["spectral/lr_ratio_median"], rel=1e-9)
    assert f(0) < 1  # the cap fired early: the replayed schedule starts below the peak
    res, _ = run_micro(tmp_path / "replay", steps=20, recipe=f'{{name: replayed_warmup, source: "{src}"}}',
                       **{"train.lr": 1e-2})
    assert res["status"] == "ok"


def test_replayed_warmup_without_source_run_is_refused(tmp_path):
    cfg = load_config(None, micro_overrides(recipe=f'{{name: replayed_warmup, source: "{tmp_path}/none"}}'), base={})
    with pytest.raises(ConfigError, match="train the AdamW\\^2 run first") as e:
        prepare(cfg, tmp_path / "run")
    assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["smoke"])
def test_paper_grid_runs_all_validate(tmp_path, profile):
    """Every run of config/papers/nowarmup.<profile>.yaml is a valid config (plugins and their options included)."""
    import yaml

    from benchmarks.data.images import micro_image_dir
    from claimbench.grid import expand
    from claimbench.testing import REPO, micro_data_dir

    grid = yaml.safe_load((REPO / "config" / "papers" / f"nowarmup.{profile}.yaml").read_text())["grid"]
    runs = expand(grid)
    # the smoke grid runs LR_crash's arms only; tau and vision are the cpu tier's (nowarmup.cpu.yaml)
    assert {"sweep", "arms"} <= {e["study"] for e in grid} <= {"sweep", "arms", "tau", "vision"}
    assert any(e.get("replay") for e in grid)
    for spec in runs.values():
        data = micro_data_dir() if spec.run_id.startswith("gpt-") else micro_image_dir()
        cfg = load_config(REPO / spec.config, [*spec.sets, f"data.dir={data}"])
        prepare(cfg, tmp_path / spec.run_id)
