"""AdamW^2 (`adamw2`): exact AdamW at tau = inf, the cap, power-iteration accuracy, resume, diagnostics, bad input."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from claimbench.config import ConfigError, load_config
from claimbench.testing import micro_overrides, run_micro
from claimbench.train import prepare
from methods.nowarmup.diagnostics import attention_maps, effective_rank, qk_spectrum
from methods.nowarmup.optimizer import AdamW2, Watch
from methods.nowarmup.power import as_matrix, init_vector, power_iteration


def _toy(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8),
                               torch.nn.LayerNorm(8))


def _groups(model):
    mats = [p for p in model.parameters() if p.dim() >= 2]
    vecs = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": mats, "weight_decay": 0.1}, {"params": vecs, "weight_decay": 0.0}]


def _train(model, opt, steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(8, 16, generator=g), torch.randn(8, 8, generator=g)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _adamw2(model, tau: float, iters: int = 2) -> AdamW2:
    watch = {id(p): Watch(n, ((0, p.shape[0], True),)) for n, p in model.named_parameters() if p.dim() >= 2}
    return AdamW2(_groups(model), watch, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, tau=tau,
                  iters=iters, init_iters=10)


def test_tau_inf_is_torch_adamw_bit_for_bit():
    a, b = _toy(), _toy()
    ref = torch.optim.AdamW(_groups(a), lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    _train(a, ref, 100)
    _train(b, _adamw2(b, math.inf), 100)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), n


def test_cap_bounds_spectral_growth():
    model = _toy()
    opt = _adamw2(model, tau=0.01, iters=3)
    g = torch.Generator().manual_seed(3)
    fired = []
    for _ in range(20):
        before = {n: torch.linalg.matrix_norm(p.detach().clone(), ord=2) for n, p in model.named_parameters()
                  if p.dim() >= 2}
        x, y = torch.randn(8, 16, generator=g), torch.randn(8, 8, generator=g)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        for n, p in model.named_parameters():
            if p.dim() >= 2:  # Weyl: sigma1 grows at most (1 + tau) per step, up to the estimate's error
                assert torch.linalg.matrix_norm(p.detach(), ord=2) <= before[n] * (1 + 0.01) * 1.02, n
        assert all(0 < r <= 1 for r in opt.last["lr_ratio"])
        fired.append(min(opt.last["lr_ratio"]) < 1)
    assert fired[0]  # the cap fires on the first steps (a warmup it computes) ...
    assert not all(fired)  # ... and lets go once sigma1(W) has grown


@pytest.mark.parametrize("kind", ["random", "trained"])
def test_power_iteration_within_one_percent_of_svdvals(kind):
    if kind == "random":
        torch.manual_seed(0)
        mats = [torch.randn(64, 48) * 0.02, torch.randn(128, 128), torch.randn(32, 96) + 0.1]
    else:  # the optimizer's own warm-started estimates on a model it trained
        model = _toy()
        opt = _adamw2(model, tau=0.05, iters=2)
        _train(model, opt, 60)
        mats = [p.detach() for p in model.parameters() if p.dim() >= 2]
        for p in (p for p in model.parameters() if p.dim() >= 2):
            s, _ = power_iteration(as_matrix(p.detach()), opt.state[p]["pi_w"][0], 2)
            exact = torch.linalg.svdvals(as_matrix(p.detach()))[0]
            assert abs(s - exact) / exact < 0.01
    for m in mats:  # a cold start gets there after the optimizer's schedule: init_iters, then 2 per step
        v = init_vector(m.shape[1], 0, m.device, m.dtype)
        s, v = power_iteration(m, v, 10)
        for _ in range(30):
            s, v = power_iteration(m, v, 2)
        exact = torch.linalg.svdvals(m)[0]
        assert abs(s - exact) / exact < 0.01, (kind, m.shape)


def test_state_dict_resumes_exactly():
    a = _toy()
    opt_a = _adamw2(a, tau=0.01)
    _train(a, opt_a, 10)
    b = copy.deepcopy(a)
    opt_b = _adamw2(b, tau=0.01)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert torch.equal(opt_b.state[list(b.parameters())[0]]["pi_w"], opt_a.state[list(a.parameters())[0]]["pi_w"])
    _train(a, opt_a, 10, seed=5)
    _train(b, opt_b, 10, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_split_qkv_caps_each_projection():
    """A fused (3d x d) weight split in three: only the block with a large update is capped."""
    w = torch.nn.Parameter(torch.randn(12, 4) * 0.1)
    opt = AdamW2([{"params": [w], "weight_decay": 0.0}], {id(w): Watch("qkv", ((0, 4, True), (4, 8, True),
                                                                                (8, 12, True)))},
                 lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, tau=0.05, iters=3, init_iters=10)
    with torch.no_grad():
        w[8:] *= 100  # the v block is large: its relative update is small, so it is not capped
    w.grad = torch.ones_like(w)
    opt.step()
    lr_ratio = opt.last["lr_ratio"]
    assert len(lr_ratio) == 3 and lr_ratio[0] < 1 and lr_ratio[1] < 1 and lr_ratio[2] == 1


def test_diagnostics_on_known_maps():
    eye = torch.eye(8).expand(1, 2, 8, 8)  # identity attention: zero entropy, full rank (benign)
    first = torch.zeros(1, 2, 8, 8)
    first[..., 0] = 1  # everyone attends to token 0: zero entropy, rank one (malignant)
    uniform = torch.full((1, 2, 8, 8), 1 / 8)
    d = attention_maps([eye, first, uniform])
    assert d["attn/entropy_mean/L0"] == pytest.approx(0, abs=1e-6)
    assert d["attn/map_erank/L0"] == pytest.approx(8, rel=1e-4)
    assert d["attn/map_erank/L1"] == pytest.approx(1, rel=1e-4)
    assert d["attn/entropy_min/L2"] == pytest.approx(math.log(8), rel=1e-5)
    assert effective_rank(torch.eye(5)).item() == pytest.approx(5, rel=1e-4)


def test_qk_spectrum_matches_definition():
    from benchmarks.models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=16, block_size=8))
    d = qk_spectrum([(a.q.weight, a.k.weight, a.n_head) for a in (model.blocks[0].attn,)])
    q, k = model.blocks[0].attn.q.weight, model.blocks[0].attn.k.weight
    s = [torch.linalg.svdvals(q[h * 8:(h + 1) * 8].T @ k[h * 8:(h + 1) * 8]) for h in range(2)]
    assert d["attn/qk_sigma1/L0"] == pytest.approx(max(x[0].item() for x in s), rel=1e-5)
    sec10 = max((x[:10].square().sum() / x.square().sum()).item() for x in s)
    assert d["attn/sec_s10/L0"] == pytest.approx(sec10, rel=1e-5) and d["attn/sec_s10/L0"] == pytest.approx(1.0)
    assert d["attn/sec_s1/L0"] < 1


@pytest.mark.parametrize("options,message", [
    ({"tau": 0}, "tau"), ({"tau": -1}, "tau"), ({"iters": 0}, "iters"), ({"scope": "mlp"}, "scope"),
    ({"probe_every": 3}, "probe_every"),
])
def test_bad_options_fail_before_training(tmp_path, options, message):
    cfg = load_config(None, micro_overrides(methods=[{"name": "adamw2", **options}], **{"log.every": 2}), base={})
    with pytest.raises(ConfigError, match=message) as e:
        prepare(cfg, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_scope_selecting_nothing_is_refused(tmp_path):
    from claimbench import registry

    registry.discover()
    if "mlp" not in registry.WORKLOADS:
        pytest.skip("the mlp workload is not there")
    from methods.nowarmup.method import AdamW2Options, AdamWSquared

    cfg = load_config(None, micro_overrides(methods=[]) + ["workload=mlp", "data.dir=data/fashion-mnist"], base={})
    try:
        wl = registry.get("workload", "mlp")(cfg)
        AdamWSquared.check(AdamW2Options(scope="attn"), wl)
    except ConfigError as e:
        assert "selects no weight" in str(e) or "data" in str(e)
        return
    pytest.fail("scope 'attn' on a model without attention was accepted")


def test_whole_run_tau_inf_equals_plain_adamw(tmp_path):
    sets = {"recipe": "adamw_nowarmup", "train.lr": 3e-3}
    base, _ = run_micro(tmp_path / "a", steps=30, methods=[], **sets)
    ours, rows = run_micro(tmp_path / "b", steps=30, methods=[{"name": "adamw2", "tau": math.inf}], **sets)
    assert ours["final_train_loss"] == base["final_train_loss"]
    assert ours["final_val_loss"] == base["final_val_loss"]
    assert rows[-1]["spectral/lr_ratio_min"] == 1.0 and rows[-1]["spectral/capped_frac"] == 0.0


def test_micro_run_logs_cap_and_probe(tmp_path):
    res, rows = run_micro(tmp_path / "r", steps=12, methods=[{"name": "adamw2", "tau": 0.01, "probe_every": 6}],
                          **{"recipe": "adamw_nowarmup", "train.lr": 1e-2, "log.every": 3})
    assert res["status"] == "ok"
    assert all(0 < r["spectral/lr_ratio_min"] <= 1 for r in rows)
    assert rows[0]["spectral/capped_frac"] > 0  # at 1e-2 without warmup the first steps are capped
    probe = [r for r in rows if "attn/entropy_min" in r]
    assert [r["step"] for r in probe] == [6, 12]
    for key in ("attn/qk_sigma1_max", "attn/sec_s10_max", "attn/max_logit", "attn/map_erank/L0",
                "spectral/sigma1/wte.weight"):
        assert math.isfinite(probe[-1][key]), key


def test_attn_probe_leaves_training_unchanged(tmp_path):
    sets = {"recipe": "adamw", "train.lr": 3e-3, "log.every": 5}
    base, _ = run_micro(tmp_path / "a", steps=10, methods=[], **sets)
    probed, rows = run_micro(tmp_path / "b", steps=10, methods=[{"name": "attn_probe", "probe_every": 5}], **sets)
    assert probed["final_train_loss"] == base["final_train_loss"]
    assert "attn/entropy_mean/L1" in rows[-1] and "spectral/sigma1/blocks.0.attn.q.weight" in rows[-1]


def test_lr_crash_rule_and_tau_band():
    from methods.nowarmup.analysis import RunInfo, lr_crash, tau_band

    def run(arm, lr, seed, status, val=None, tau=None):
        return RunInfo(None, arm, lr, seed, tau, status, 50 if status == "diverged" else None, val, 128)

    runs = [run("warmup", lr, s, "ok") for lr in (1e-2, 3e-2, 1e-1) for s in range(3)]
    runs += [run("nowarmup", 1e-2, s, "ok") for s in range(3)]
    runs += [run("nowarmup", 3e-2, s, "diverged" if s else "ok") for s in range(3)]  # 2 of 3
    runs += [run("nowarmup", 1e-1, s, "diverged") for s in range(3)]
    assert lr_crash(runs)["lr_crash"] == 3e-2
    runs[3] = run("warmup", 3e-2, 0, "diverged")  # the control crashes too: not LR_crash
    assert lr_crash(runs)["lr_crash"] == 1e-1
    ref = [run("warmup", 3e-2, s, "ok", 3.0 + 0.001 * s) for s in range(3)]  # 3 seeds: the tau tests need them
    taus = [run("adamw2", 3e-2, s, "ok", v + 0.002 * (s == 2), tau)
            for tau, v in ((0.01, 3.5), (0.03, 3.01), (0.1, 3.0), (0.3, 2.99)) for s in range(3)]
    band = tau_band(taus, ref)
    assert band["log2_band_width"] == pytest.approx(math.log2(0.3 / 0.03))
    taus[-1] = run("adamw2", 3e-2, 2, "diverged", None, 0.3)  # a miss: tau 0.3 is no longer good
    assert tau_band(taus, ref)["log2_band_width"] == pytest.approx(math.log2(0.1 / 0.03))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit", "swin"])
def test_timm_fused_qkv_is_split_and_probed(tmp_path, name):
    from benchmarks.data.images import micro_image_dir
    from claimbench.train import Trainer

    cfg = load_config(None, [f"workload={name}", "size=micro", f"data.dir={micro_image_dir()}", "train.steps=3",
                             "train.batch_size=8", "log.every=1", "eval.every=0", "ckpt.every=0",
                             "recipe=adamw_nowarmup", "methods=[{name: adamw2, probe_every: 3}]"], base={})
    trainer = Trainer(prepare(cfg, tmp_path / "r"))
    watch = trainer.optimizer.watch
    qkv = [w for w in watch.values() if w.name.endswith("qkv.weight")]
    assert qkv and all(len(w.capped) == 3 for w in qkv)
    trainer.fit(tmp_path / "m.jsonl", tmp_path / "c.pt")
    rows = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert any(n.endswith("qkv.weight[1]") for n in trainer.optimizer.last["names"])
    assert math.isfinite(rows[-1]["attn/qk_sigma1_max"]) and math.isfinite(rows[-1]["attn/entropy_min"])
    if name == "vit":
        assert math.isfinite(rows[-1]["attn/max_logit"])
