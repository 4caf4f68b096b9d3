"""The `lrm` plugin: Eq. 4 gradients, placements by role, optimizer groups and clip exclusion, merge() exactness,
muP-init function preservation, ABM equilibrium, diagnostics, vision/MLP workloads, and bad input."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from benchmarks.models.gpt import GPT
from claimbench import registry
from claimbench.config import ConfigError, load_config
from claimbench.plugin import Workload
from claimbench.testing import micro_overrides
from claimbench.train import Trainer, prepare
from methods.lrm import LRM, LRMOptions, merge
from methods.lrm.diagnostics import ABM
from methods.lrm.multipliers import Multipliers, attach


def trainer(tmp_path: Path, methods: list, **sets) -> Trainer:
    cfg = load_config(None, micro_overrides(4, methods, **sets), base={})
    tr = Trainer(prepare(cfg, tmp_path / "run"))
    tr.t_start = 0.0
    return tr


def wrapped(tr: Trainer) -> dict[str, str]:
    """module path -> multiplier kind, read off the trained model."""
    return {a.name: a.mult.kind for m in tr.methods if isinstance(m, LRM) for a in m.attached}


# ------------------------------------------------------------------------------------------ the math

def test_vector_multiplier_gradients_are_eq4():
    torch.manual_seed(0)
    lin = nn.Linear(6, 5, bias=False)
    w_hat = lin.weight.detach().clone()
    mult = attach(lin, "both")
    with torch.no_grad():
        mult.row.uniform_(0.5, 2)
        mult.col.uniform_(0.5, 2)
    x = torch.randn(7, 6)
    y = lin(x)
    y.pow(2).sum().backward()
    r, c = mult.row.detach(), mult.col.detach()
    w_eff = r[:, None] * w_hat * c[None, :]
    G = 2 * (x @ w_eff.T).T @ x  # dL/dW for L = sum (x W^T)^2
    torch.testing.assert_close(lin.parametrizations.weight.original.grad, r[:, None] * c[None, :] * G)
    torch.testing.assert_close(mult.row.grad, (w_hat * c[None, :] * G).sum(1))
    torch.testing.assert_close(mult.col.grad, (r[:, None] * w_hat * G).sum(0))


def test_scalar_multiplier_gradient_sums_the_matrix():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False)
    w_hat = lin.weight.detach().clone()
    mult = attach(lin, "scalar", init=0.7)
    x = torch.randn(5, 4)
    lin(x).sum().backward()
    G = torch.ones(5, 3).T @ x
    torch.testing.assert_close(mult.s.grad, (w_hat * G).sum())
    assert isinstance(lin.parametrizations.weight[0], Multipliers)


# ------------------------------------------------------------------------------------------ placement

def test_paper_placement_wraps_every_matrix_but_the_head(tmp_path):
    tr = trainer(tmp_path, [{"name": "lrm"}], **{"model.arch": "llama"})
    kinds = wrapped(tr)
    assert kinds["wte"] == "both" and "lm_head" not in kinds
    assert {kinds[f"blocks.0.{m}"] for m in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.fc", "mlp.gate",
                                             "mlp.proj")} == {"both"}
    roles = tr.ctx.roles
    assert {n for n, r in roles.items() if r == "multiplier"} == {
        n for n, _ in tr.model.named_parameters() if n.endswith((".0.row", ".0.col"))}
    assert roles["blocks.0.attn.q.parametrizations.weight.original"] == "attn_q"
    assert set(roles) == {n for n, _ in tr.model.named_parameters()}


def test_symmetry_free_placement(tmp_path):
    tr = trainer(tmp_path, [{"name": "lrm", "placement": "symmetry_free"}], **{"model.arch": "llama"})
    kinds = wrapped(tr)
    assert kinds["blocks.1.attn.q"] == "row" and kinds["blocks.1.attn.o"] == "both"
    assert "blocks.1.attn.k" not in kinds and "blocks.1.attn.v" not in kinds
    assert kinds["blocks.1.mlp.gate"] == "row" and kinds["blocks.1.mlp.proj"] == "both"
    assert "blocks.1.mlp.fc" not in kinds


def test_scalar_and_head_placements_and_tied_gpt2(tmp_path):
    kinds = wrapped(trainer(tmp_path / "a", [{"name": "lrm", "placement": "scalar", "head": "row"}],
                            **{"model.arch": "llama"}))
    assert kinds["lm_head"] == "row" and kinds["blocks.0.mlp.fc"] == "scalar" and kinds["wte"] == "scalar"
    kinds = wrapped(trainer(tmp_path / "b", [{"name": "lrm", "placement": "mlp_scalar"}], **{"model.arch": "llama"}))
    assert set(kinds.values()) == {"scalar"} and all(".mlp." in k for k in kinds) and len(kinds) == 6
    # gpt2 ties the head to the embedding: the shared matrix is left alone (the head stays unchanged)
    kinds = wrapped(trainer(tmp_path / "c", [{"name": "lrm"}], **{"model.arch": "gpt2"}))
    assert "wte" not in kinds and kinds["blocks.0.attn.q"] == "both"


# ------------------------------------------------------------------------------------------ optimizer

@pytest.mark.parametrize("clip", ["exclude", "include"])
def test_multiplier_group_and_clip_norm_membership(tmp_path, clip):
    tr = trainer(tmp_path, [{"name": "lrm", "weight_decay": 0.0, "lr_scale": 3.0, "clip": clip}],
                 **{"model.arch": "llama", "train.weight_decay": 0.1})
    roles = tr.ctx.roles
    mult = [g for g in tr.optimizer.param_groups if all(roles[n] == "multiplier" for n in g["names"])]
    assert len(mult) == 1 and mult[0]["weight_decay"] == 0.0 and mult[0]["lr"] == pytest.approx(3 * tr.train_cfg.lr)
    w_hat = next(g for g in tr.optimizer.param_groups if "wte.parametrizations.weight.original" in g["names"])
    assert w_hat["weight_decay"] == 0.1  # the matrices keep the run's weight decay
    ids = {id(p) for p in mult[0]["params"]}
    in_clip = {id(p) for p in tr.params} & ids
    assert (in_clip == ids) if clip == "include" else not in_clip


def test_s_factor_moves_lr_and_wd_at_fixed_product(tmp_path):
    tr = trainer(tmp_path, [{"name": "lrm", "placement": "none", "s_factor": {"readout": 8.0}}],
                 **{"model.arch": "llama", "train.weight_decay": 0.1})
    g = next(g for g in tr.optimizer.param_groups if g["names"] == ["lm_head.weight"])
    assert g["lr"] == pytest.approx(8 * tr.train_cfg.lr) and g["weight_decay"] == pytest.approx(0.1 / 8)


def test_clip_factors_are_smaller_when_multipliers_are_included(tmp_path):
    tr = trainer(tmp_path, [{"name": "lrm", "clip": "include"}], **{"model.arch": "llama", "train.grad_clip": 0.05,
                                                                    "train.lr": 1e-2})
    for _ in range(2):
        _, _, out, _ = tr.train_step()
    row = tr.methods[0].metrics(tr.step, tr.model, out)
    assert row["lrm/mult_grad_norm"] > 0
    assert row["lrm/clip_factor_incl"] < row["lrm/clip_factor_excl"] <= 1.0
    assert row["lrm/clip_factor_excl"] == pytest.approx(min(1.0, 0.05 / (row["lrm/rest_grad_norm"] + 1e-6)))


# ------------------------------------------------------------------------------------------ merge / init

@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_merged_model_equals_trained_model_and_loads_into_a_plain_gpt(tmp_path, arch):
    tr = trainer(tmp_path, [{"name": "lrm", "lr_scale": 30.0}], **{"model.arch": arch, "train.lr": 1e-2})
    for _ in range(4):
        tr.train_step()
    model = tr.model.eval()
    mults = [p for n, p in model.named_parameters() if tr.ctx.roles[n] == "multiplier"]
    assert max((p - 1).abs().max().item() for p in mults) > 1e-2  # the multipliers did move
    x = torch.randint(0, 512, (2, 32))
    with torch.no_grad():
        before = model(x).logits
        merged = merge(copy.deepcopy(model))
        after = merged(x).logits
        plain = GPT(model.cfg).eval()
        plain.load_state_dict(merged.state_dict())
        exported = plain(x).logits
    assert not any("parametrizations" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    torch.testing.assert_close(exported, before, atol=1e-6, rtol=0)


def test_mup_init_absorbs_forward_multipliers_without_changing_the_function(tmp_path):
    sets = {"model.arch": "llama", "model.embed_mult": 3.0, "model.attn_scale": 1 / 16}
    base = trainer(tmp_path / "a", [], **sets).model.eval()
    tr = trainer(tmp_path / "b", [{"name": "lrm", "init": "mup"}], **sets)
    model = tr.model.eval()
    assert model.embed_mult == 1.0 and model.blocks[0].attn.scale == pytest.approx(1 / 4)
    assert model.wte.parametrizations.weight[0].row[0].item() == pytest.approx(3.0)
    assert model.blocks[0].attn.k.parametrizations.weight[0].row[0].item() == pytest.approx(0.25)
    x = torch.randint(0, 512, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, base(x).logits, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ diagnostics

def test_abm_settles_at_sqrt_lr_over_wd_and_resumes_exactly():
    finals = []
    for lr, wd in ((0.01, 0.3), (0.01, 1.2)):  # S ratio 2 -> RMS ratio 2 under sqrt(lr/wd)
        abm = ABM(1024, 0.02, (0.9, 0.95), 1e-8, seed=0)
        for _ in range(1500):  # >= 4.5 relaxation times 1/(lr wd)
            abm.step(lr, wd)
        finals.append(abm.rms())
    assert finals[0] / finals[1] == pytest.approx(2.0, rel=0.1)
    a = ABM(1000, 0.02, (0.9, 0.95), 1e-8, seed=1)
    for _ in range(3):
        a.step(0.01, 0.1)
    state = copy.deepcopy(a.state_dict())
    a.step(0.01, 0.1)
    a.step(0.01, 0.1)
    b = ABM(1000, 0.02, (0.9, 0.95), 1e-8, seed=1)
    b.load_state_dict(state)
    b.step(0.01, 0.1)
    b.step(0.01, 0.1)
    assert torch.equal(a.param, b.param)


def test_diagnostics_in_metrics_jsonl(tmp_path):
    from claimbench.testing import run_micro

    res, rows = run_micro(tmp_path / "run", steps=4, methods=[{"name": "lrm"}], **{"model.arch": "llama"})
    last = rows[-1]
    for key in ("lrm/rms_w/blocks.0.attn.q", "lrm/rms_r/blocks.0.attn.q", "lrm/rms_c/wte", "lrm/abm_rms",
                "lrm/readout_rms_w", "lrm/row_spread/attn_q", "lrm/row_spread/mlp_gate", "lrm/qk_log10_ratio",
                "lrm/resid_rms", "lrm/clip_factor_excl", "lrm/clip_factor_incl", "lrm/final_norm_rms"):
        assert key in last and math.isfinite(last[key]), key
    assert res["status"] == "ok"


def test_final_norm_variants(tmp_path):
    tr = trainer(tmp_path / "s", [{"name": "lrm", "placement": "none", "final_norm": "scalar"}],
                 **{"model.arch": "llama"})
    trainable = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    assert "ln_f.parametrizations.weight.0.s" in trainable and "ln_f.parametrizations.weight.original" not in trainable
    tr = trainer(tmp_path / "f", [{"name": "lrm", "placement": "none", "final_norm": "frozen", "freeze_norms": True}],
                 **{"model.arch": "llama"})
    assert not any(p.requires_grad for n, p in tr.model.named_parameters() if tr.ctx.roles[n] == "norm")


# ------------------------------------------------------------------------------------------ other workloads

@pytest.mark.parametrize("name", ["mlp", "vit", "swin"])
def test_lrm_on_vision_and_mlp_workloads_trains_and_merges(tmp_path, name):
    from benchmarks.data.images import micro_image_dir

    sets = [f"workload={name}", "size=micro", f"data.dir={micro_image_dir()}", "train.steps=2",
            "train.batch_size=8", "train.warmup_steps=0", "log.every=1", "eval.every=0", "ckpt.every=0",
            f"methods={json.dumps([{'name': 'lrm', 'lr_scale': 30.0}])}", "train.lr=1e-2"]
    tr = Trainer(prepare(load_config(None, sets, base={}), tmp_path / "run"))
    assert wrapped(tr) and all(tr.ctx.roles[n] for n, _ in tr.model.named_parameters())
    for _ in range(2):
        _, _, out, _ = tr.train_step()
    assert math.isfinite(out.loss.item())
    x = tr.run.workload.train_batch(0, 0, 4)[0]
    model = tr.model.eval()
    with torch.no_grad():
        trained = model(x)
        torch.testing.assert_close(merge(copy.deepcopy(model))(x), trained, atol=1e-6, rtol=0)
        torch.testing.assert_close(model(x), trained, atol=0, rtol=0)  # merging a copy leaves the model intact


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("opts, needle", [({"placement": "everywhere"}, "placement"),
                                         ({"weight_decay": -1e-3}, "weight_decay"),
                                         ({"s_factor": {"norm": 2.0}}, "s_factor")])
def test_bad_options_are_one_line_errors_before_training(tmp_path, opts, needle):
    cfg = load_config(None, micro_overrides(4, [{"name": "lrm", **opts}]), base={})
    with pytest.raises(ConfigError) as e:
        prepare(cfg, tmp_path / "run")
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_workload_without_matrix_roles_is_rejected():
    class NormsOnly(Workload):
        name = "normsonly"
        sizes = {"micro": {}}

        def build_model(self):
            return nn.Sequential(nn.LayerNorm(4))

        def param_roles(self, model):
            return {n: "norm" if n.endswith("weight") else "bias" for n, _ in model.named_parameters()}

    cfg = load_config(None, [o for o in micro_overrides(4) if not o.startswith("data.")], base={})
    with pytest.raises(ConfigError, match="matrix"):
        LRM.check(LRMOptions(), NormsOnly(cfg))
    assert registry.get("method", "lrm") is LRM


# ------------------------------------------------------------------------------------------ analysis

def test_analysis_reduces_real_runs_to_claim_numbers(tmp_path):
    """A miniature of config/papers/lrm.smoke.yaml trained for real (micro GPT), then methods.lrm.analysis."""
    from claimbench.grid import expand
    from claimbench.testing import micro_data_dir
    from claimbench.train import execute
    from methods.lrm import analysis

    base = {"model.arch": "llama", "train.steps": 6, "train.batch_size": 4, "train.warmup_steps": 0,
            "train.lr": 4e-3, "train.grad_clip": 0.01, "log.every": 1, "eval.every": 0, "eval.batches": 2,
            "ckpt.every": 0, "data.dir": str(micro_data_dir())}
    grid = [{"name": "lrm:perf", "study": "perf", "config": "benchmarks/configs/gpt.yaml", "workload": "gpt",
             "size": "micro", "recipes": ["adamw"], "methods": [[{"name": "lrm", "placement": "none"}], ["lrm"]],
             "seeds": [0], "set": base},
            {"name": "lrm:clip", "study": "clip", "config": "benchmarks/configs/gpt.yaml", "workload": "gpt",
             "size": "micro", "recipes": ["adamw"], "methods": [[{"name": "lrm", "clip": "include"}]], "seeds": [0],
             "set": base}]
    for rid, spec in expand(grid).items():
        cfg = load_config(Path(analysis.__file__).parents[2] / spec.config, list(spec.sets))
        assert execute(prepare(cfg, tmp_path / rid)) == 0
    s = analysis.analyse(grid, tmp_path)
    assert {k: s["runs"][k] for k in ("total", "ok", "diverged")} == {"total": 3, "ok": 3, "diverged": 0}
    assert s["runs"]["wall_s_sum"] > 0
    assert set(s["C10"]["arms"]) == {"adamw", "adamw+lrm"}
    gain = s["C10"]["gain_adamw"]
    assert isinstance(gain["estimate"], float) and gain["n"] == 1 and math.isnan(gain["ci_lo"])  # 1 seed: no interval
    assert s["C10"]["row_spread_ratio_attn_q"] > 0
    c8 = s["C8"]
    assert c8["early_clip_factor_include"]["n"] == 1 and c8["early_clip_factor_exclude"]["n"] == 1
    assert c8["early_clip_factor_include"]["mean"] < 1 and isinstance(c8["loss_diff"], float)
    assert "| C8 |" in analysis.summary_md(s)
    files = analysis.claim_files(s)  # what benchmarks/claims/lrm.yaml reads; no projector/width runs here: NaN
    assert math.isnan(files["c2_projector.json"]["estimate"]) and math.isnan(files["c7_width.json"]["estimate"])
    assert analysis.pooled_slope([1, 2, 4, 8], [1.0, 2 ** 0.5, 2.0, 8 ** 0.5]) == pytest.approx(0.5)


@pytest.mark.parametrize("recipe", ["adamw", "muon"])
def test_exact_resume_with_multipliers_and_abm(tmp_path, recipe):
    """A run restarted from its checkpoint (saved and loaded as the trainer does) continues bit-identically."""
    sets = {"model.arch": "llama", "recipe": recipe, "train.lr": 1e-2}
    a = trainer(tmp_path / "a", [{"name": "lrm"}], **sets)
    for _ in range(2):
        a.train_step()
    torch.save(a.state_dict(), tmp_path / "ckpt.pt")
    b = trainer(tmp_path / "b", [{"name": "lrm"}], **sets)
    b.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    for _ in range(2):
        la, *_ = a.train_step()
        lb, *_ = b.train_step()
        assert la.item() == lb.item()
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    assert torch.equal(a.methods[0].abm.param, b.methods[0].abm.param)


# ------------------------------------------------------------------------------------------ muP levels' sweep

REPO = Path(__file__).resolve().parents[1]


def _smoke_grid() -> dict:

    # the cpu tier's grid: lrm.cpu.yaml includes lrm.smoke.yaml and adds the muP sweep, levels, downstream
    from claimbench.tiers import load_grid

    return load_grid(REPO / "config" / "papers" / "lrm.cpu.yaml")


def _write_result(d: Path, status: str = "ok", loss: float | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps({"status": status, "final_val_loss": loss}))
    (d / "metrics.jsonl").write_text("")


def test_sweep_picks_the_lowest_finished_trial_per_level(tmp_path):
    """Same trial count for every level, the untuned default shared; diverged/missing trials never win."""
    from methods.lrm import mup_sweep

    sweep = mup_sweep.load_sweep(_smoke_grid(), "lrm.smoke.yaml")
    runs = mup_sweep.trial_runs(sweep)
    assert {lv: len(r) for lv, r in runs.items()} == {"LR": 3, "LRWD": 3, "FULL": 3}
    assert len({r[0][0] for r in runs.values()}) == 1 and all(r[0][1] == {} for r in runs.values())
    tuned = {lv: {m for _, v in r for m in v} for lv, r in runs.items()}
    assert tuned == {"LR": {"lr_mult"}, "LRWD": {"lr_mult", "wd_mult"}, "FULL": {"lr_mult", "wd_mult", "fwd_mult"}}
    default = runs["LR"][0][0]
    _write_result(tmp_path / default, loss=5.0)
    _write_result(tmp_path / runs["LR"][1][0], loss=4.5)
    _write_result(tmp_path / runs["LR"][2][0], loss=4.8)
    _write_result(tmp_path / runs["LRWD"][1][0], status="diverged", loss=1.0)  # lower, but diverged
    _write_result(tmp_path / runs["LRWD"][2][0], loss=5.2)
    _write_result(tmp_path / runs["FULL"][2][0], loss=4.0)  # FULL's trial 1 missing
    out = mup_sweep.pick(sweep, tmp_path)
    assert out["levels"]["LR"]["run_id"] == runs["LR"][1][0]
    assert out["levels"]["LR"]["lr_mult"] == runs["LR"][1][1]["lr_mult"]
    assert out["levels"]["LRWD"]["run_id"] == default and out["levels"]["LRWD"]["lr_mult"] == {}
    assert out["levels"]["FULL"]["fwd_mult"] == runs["FULL"][2][1]["fwd_mult"]
    assert [t["status"] for t in out["trials"]["FULL"]] == ["ok", "missing", "ok"]
    for rid, _ in runs["FULL"]:
        _write_result(tmp_path / rid, status="diverged")
    with pytest.raises(ValueError, match="FULL"):
        mup_sweep.pick(sweep, tmp_path)


def test_tuned_file_is_an_input_of_the_level_runs_and_sets_their_multipliers(tmp_path, monkeypatch):
    """The DAG plan makes the sweep's file an input of exactly the tuned-level runs, and such a run's config,
    prepared as the trainer does, trains with the file's values (written where the run's `tuned:` points)."""
    from claimbench.grid import expand
    from claimbench.testing import micro_data_dir
    from methods.lrm import mup_sweep

    grid = _smoke_grid()
    sweep = mup_sweep.load_sweep(grid, "lrm.smoke.yaml")
    runs = expand(grid["grid"] + mup_sweep.trial_grid(sweep))
    plan = mup_sweep.plan(runs, [sweep])
    levels = expand([e for e in grid["grid"] if e.get("study") == "levels"])
    assert set(plan.inputs) == {r for r in levels if "mup" in r} and len(plan.inputs) == 42  # 6 arms x 7 seeds
    assert set(plan.inputs.values()) == {sweep.out} and set(plan.records) == {sweep.out}
    assert not set(plan.records[sweep.out]) & set(plan.inputs)  # trials do not read what they make
    with pytest.raises(ValueError, match="no sweep"):
        mup_sweep.plan(runs, [])
    monkeypatch.chdir(tmp_path)
    (tmp_path / sweep.out).parent.mkdir(parents=True)
    tuned = {"levels": {"LR": {"lr_mult": {"hidden_matrix": 0.37}}, "LRWD": {}, "FULL": {}}}
    (tmp_path / sweep.out).write_text(json.dumps(tuned))
    rid = next(r for r in sorted(plan.inputs) if '"LR"' in " ".join(runs[r].sets) and "init" not in
               " ".join(runs[r].sets))
    cfg = load_config(REPO / runs[rid].config, [*runs[rid].sets, f"data.dir={micro_data_dir()}"])
    tr = Trainer(prepare(cfg, tmp_path / "run"))
    mup = next(m for m in tr.methods if m.name == "mup")
    assert mup.options.lr_mult == {"hidden_matrix": 0.37}
    lr = {r: next(g["lr"] for g in tr.optimizer.param_groups if n in g["names"])
          for n, r in tr.ctx.roles.items() if r in ("hidden_matrix", "embedding")}
    assert lr["hidden_matrix"] == pytest.approx(lr["embedding"] * 0.37)  # during warmup both carry its factor


def test_levels_analysis_reports_each_levels_gain_and_the_worst(tmp_path):
    from claimbench.grid import expand
    from methods.lrm import analysis

    entry = next(e for e in _smoke_grid()["grid"] if e.get("study") == "levels")
    specs = expand([entry])
    gain = {"NONE": -0.02, "LR": -0.01, "LRWD": -0.03, "FULL": 0.005}
    for rid, spec in specs.items():
        sets = analysis._sets(spec)
        level = analysis._mup_opts(sets).get("level", "NONE")
        is_lrm = any(m == "lrm" or (isinstance(m, dict) and m.get("placement") != "none") for m in sets["methods"]
                     if m == "lrm" or (isinstance(m, dict) and m.get("name") == "lrm"))
        _write_result(tmp_path / rid, loss=5.0 + 0.001 * sets["seed"] + (gain[level] if is_lrm else 0.0))
    out = analysis.levels([analysis.Run(s, tmp_path) for s in specs.values()])
    for level, g in gain.items():
        assert out["levels"][level]["gain"] == pytest.approx(g)
    assert out["worst_gain"] == pytest.approx(0.005)
    # the worst level's paired per-seed gains (the claim's planner reads them) and C14's NONE+LRM vs FULL baseline
    n = len({analysis._sets(spec)["seed"] for spec in specs.values()})
    assert out["worst_level"] == "FULL" and out["per_seed"] == pytest.approx([0.005] * n)
    ov = out["overhead"]
    assert ov["per_seed"] == pytest.approx([-0.02] * n) and ov["n"] == n == 7
    assert ov["tuning_gain"] == pytest.approx(0.0)
    assert out["tuned_file"] == ["results/analysis/lrm/mup_tuned.json"]
    grouped = analysis._grouped({"attn_q": 0.5, "hidden_matrix": 0.5, "norm": 2.0})
    assert grouped == "0.5 (attn_q, hidden_matrix); 2 (norm)"


# ------------------------------------------------------------------------------------------ C11/C12 proxy

def _lm_eval(quartz: float, cloze: float) -> dict:
    return {"chance": {"cb_quartz": {"acc": 0.5, "acc_norm": 0.5}, "cb_shakespeare_cloze": {"acc": 0.0},
                       "cb_shakespeare_ppl": {}},
            "results": {"cb_quartz": {"acc,none": quartz, "acc_stderr,none": 0.02, "acc_norm,none": quartz,
                                      "acc_norm_stderr,none": 0.02, "sample_len": 600},
                        "cb_shakespeare_cloze": {"acc,none": cloze, "acc_stderr,none": 0.0, "sample_len": 40},
                        "cb_shakespeare_ppl": {"bits_per_byte,none": 2.6, "bits_per_byte_stderr,none": "N/A"}}}


@pytest.mark.parametrize("case,expect", [("chance", "out_of_scope"), ("better", "reproduced"),
                                         ("worse", "not_reproduced")])
def test_downstream_proxy_verdicts_and_no_verdict_at_chance(tmp_path, case, expect):
    """At chance on every task there is no estimate and the claims' premise (a task above chance by 2 SE) fails:
    out_of_scope, whatever the arms' difference in noise; above chance the bootstrap interval decides."""
    from claimbench.claims import load_file
    from claimbench.judge import judge
    from claimbench.study import compute
    from methods.lrm import downstream

    grid = _smoke_grid()
    pairs = downstream.pairs(grid, "lrm.cpu.yaml")
    for arms in pairs.values():
        for arm, specs in arms.items():
            for i, rid in enumerate(sorted(specs)):
                q = {"chance": 0.5 + (0.03 if arm == "vec" else -0.03),  # noise: a 'gain' a verdict must not read
                     "better": 0.70 + (0.10 + 0.004 * i if arm == "vec" else 0.0) + 0.01 * i,
                     "worse": 0.70 - (0.10 + 0.004 * i if arm == "vec" else 0.0) + 0.01 * i}[case]
                (tmp_path / rid).mkdir()
                (tmp_path / rid / "lm_eval.json").write_text(json.dumps(_lm_eval(q, 0.0)))
    out = downstream.analyse(grid, tmp_path)
    (tmp_path / "analysis" / "lrm").mkdir(parents=True)
    (tmp_path / "analysis" / "lrm" / "c11_downstream.json").write_text(json.dumps(out))
    assert out["adamw"]["n_above_chance"] == (0 if case == "chance" else 1)
    assert out["adamw"]["tasks_used"] == ([] if case == "chance" else ["cb_quartz"])
    assert out["adamw"]["bits_per_byte"]["diff"] == pytest.approx(0.0)  # context: equal held-out bits here
    claims = {c.id: c for c in load_file(REPO / "benchmarks" / "claims" / "lrm.yaml")}
    for cid in ("lrm.c11_downstream_adam", "lrm.c11_downstream_muon", "lrm.c12_tiny"):
        c = claims[cid]
        paths = {"results": str(tmp_path), "runs_dir": "", "profile": "cpu"}
        values = compute(c.statistic, {}, c.grid["cpu"], paths)
        assert judge(c, {}, values, None)["verdict"] == expect, (cid, values)
    # C13: AdamW+LRM - Muon per seed (0.1 apart here, in either direction): far outside the +-0.0054 'matching' band
    c = claims["lrm.c13_muon_parity"]
    values = compute(c.statistic, {}, c.grid["cpu"], {"results": str(tmp_path), "runs_dir": "", "profile": "cpu"})
    assert len(values["per_seed"]) == (0 if case == "chance" else 3)
    assert judge(c, {}, values, None)["verdict"] == ("out_of_scope" if case == "chance" else "not_reproduced")
