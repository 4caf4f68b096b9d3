"""FLeRM: the FSLR estimator against exact output changes, records and name mapping, the method.

The estimator tests compare the average over many random projections with the exact output change of applying
one tensor's update alone (central finite differences in float64, and forward-mode JVP), on a small MLP and
on our micro GPT, for updates taken by a real Adam step.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from claimbench.config import ConfigError, load_config
from claimbench.testing import micro_data_dir, micro_overrides, run_micro
from methods.flerm import function_space_lr, reference_function_space_lr
from methods.flerm.estimator import Moments, projection_products
from methods.flerm.records import map_record, record_from_runs, record_path

PROBES = 4000  # relative s.d. of the full_cov FSLR average: sqrt(2 / 4000) / 2 = 1.1%


def adam_step(model: torch.nn.Module, loss_fn, lr: float = 1e-2) -> dict[str, torch.Tensor]:
    """One real Adam step; returns each tensor's update (W_new - W_old), undone again."""
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn(model).backward()
    opt.step()
    ups = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            ups[n] = p - old[n]
            p.copy_(old[n])
            p.grad = None
    return ups


@pytest.fixture(scope="module")
def mlp_case():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 48), torch.nn.ReLU(), torch.nn.Linear(48, 48), torch.nn.ReLU(),
                                torch.nn.Linear(48, 10)).double()
    x, y = torch.randn(32, 20, dtype=torch.double), torch.randint(0, 10, (32,))
    ups = adam_step(model, lambda m: F.cross_entropy(m(x), y))
    return model, x, ups


def rel_err(est: dict, ref: dict) -> dict:
    return {n: est[n] / ref[n] - 1 for n in ref}


def test_finite_difference_equals_jvp(mlp_case):
    model, x, ups = mlp_case
    jv = reference_function_space_lr(model, x, ups, lr=1e-2)
    fd = reference_function_space_lr(model, x, ups, lr=1e-2, method="fd")
    assert all(abs(e) < 1e-5 for e in rel_err(fd, jv).values()), rel_err(fd, jv)
    assert all(v > 0 for v in jv.values())


def test_unbiased_estimator_matches_exact_output_change_mlp(mlp_case):
    model, x, ups = mlp_case
    truth = reference_function_space_lr(model, x, ups, lr=1e-2, method="fd")
    full = function_space_lr(model, x, ups, n_probes=PROBES, estimator="full_cov", lr=1e-2,
                             generator=torch.Generator().manual_seed(1), chunk=500)
    err = rel_err(full, truth)
    assert max(abs(e) for e in err.values()) < 0.05, err
    kron = function_space_lr(model, x, ups, n_probes=PROBES, estimator="kronecker", lr=1e-2,
                             generator=torch.Generator().manual_seed(1), chunk=500)
    bias = rel_err(kron, truth)
    print("kronecker bias (MLP):", {n: round(b, 3) for n, b in bias.items()})
    assert all(kron[n] == pytest.approx(full[n], rel=1e-9) for n in bias if n.endswith("bias"))  # 1-D: = full_cov
    assert max(abs(b) for b in bias.values()) < 0.25, bias  # ours: small bias (reported, not the paper's)


def test_kronecker_has_lower_variance_than_full_cov(mlp_case):
    model, x, ups = mlp_case
    draws = {"kronecker": [], "full_cov": []}
    for est in draws:
        g = torch.Generator().manual_seed(2)
        for _ in range(150):
            draws[est].append(function_space_lr(model, x, ups, n_probes=1, estimator=est, lr=1e-2, generator=g))
    for n in ("0.weight", "2.weight", "4.weight"):
        var = {e: torch.tensor([d[n] ** 2 for d in draws[e]]).var().item() for e in draws}
        assert var["kronecker"] < var["full_cov"], (n, var)


@pytest.mark.slow
def test_unbiased_estimator_matches_exact_output_change_transformer():
    from benchmarks.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=16, norm_position="post",
                    norm_affine=False, qk_norm=True)
    model = GPT(cfg).double()
    idx = torch.randint(0, 32, (2, 8))
    ups = adam_step(model, lambda m: F.cross_entropy(m(idx[:, :-1]).logits.flatten(0, 1), idx[:, 1:].flatten()))
    lp = lambda o: F.log_softmax(o, dim=-1)  # noqa: E731  (the paper's transformer outputs: log-probs)
    truth = reference_function_space_lr(model, idx, ups, lr=1e-2, output_fn=lp, method="fd")
    full = function_space_lr(model, idx, ups, n_probes=PROBES, estimator="full_cov", lr=1e-2, output_fn=lp,
                             generator=torch.Generator().manual_seed(3), chunk=250)
    err = rel_err(full, truth)
    assert max(abs(e) for e in err.values()) < 0.05, err
    kron = function_space_lr(model, idx, ups, n_probes=PROBES // 4, lr=1e-2, output_fn=lp,
                             generator=torch.Generator().manual_seed(3), chunk=250)
    print("kronecker bias (GPT):", {n: round(b, 3) for n, b in rel_err(kron, truth).items()})


def test_function_space_lr_api(mlp_case):
    model, x, ups = mlp_case
    with pytest.raises(KeyError, match="nope"):
        function_space_lr(model, x, {"nope": torch.zeros(1)})
    with pytest.raises(ValueError, match="estimator"):
        function_space_lr(model, x, ups, estimator="diag")
    one = function_space_lr(model, x, {"4.weight": ups["4.weight"]}, n_probes=8, lr=1e-2)
    assert set(one) == {"4.weight"} and math.isfinite(one["4.weight"])
    assert all(p.grad is None for p in model.parameters())  # nothing written into .grad
    twice = function_space_lr(model, x, {"4.weight": 2 * ups["4.weight"]}, n_probes=8, lr=2e-2,
                              generator=torch.Generator().manual_seed(0))
    once = function_space_lr(model, x, {"4.weight": ups["4.weight"]}, n_probes=8, lr=1e-2,
                             generator=torch.Generator().manual_seed(0))
    assert twice["4.weight"] == pytest.approx(once["4.weight"], rel=1e-9)  # per unit LR


def test_ema_bias_correction_and_batched_draws():
    u = {"w": torch.randn(5, 7, generator=torch.Generator().manual_seed(0))}
    ema = Moments("kronecker", beta=0.9)
    ema.update(u)
    plain = Moments("kronecker")
    plain.update(u)
    assert ema.values()["w"] == pytest.approx(plain.values()["w"], rel=1e-12)  # one draw: bias-corrected EMA = it
    stacked = torch.stack([u["w"], 2 * u["w"]])
    batched, seq = Moments("full_cov"), Moments("full_cov")
    batched.update({"w": stacked}, draws=2)
    seq.update({"w": stacked[0]})
    seq.update({"w": stacked[1]})
    assert batched.values()["w"] == pytest.approx(seq.values()["w"], rel=1e-12)


def test_estimators_on_1d_and_0d_tensors():
    """iid is the paper's (and the official code's) sum u^2 for every tensor, biases and norm gains included;
    full_cov and kronecker keep (sum u)^2 on 1-D tensors; a 0-d tensor (a scalar multiplier) is a 1-entry 1-D
    tensor for all three, single draws and batched draws alike."""
    u = torch.tensor([1.0, 2.0, -0.5, 3.0])
    sum_sq, sq_sum = float((u ** 2).sum()), float(u.sum() ** 2)  # 14.25, 30.25
    for est, want in (("iid", sum_sq), ("full_cov", sq_sum), ("kronecker", sq_sum)):
        m = Moments(est)
        m.update({"b": u})
        assert m.values()["b"] == pytest.approx(math.sqrt(want), rel=1e-12), est
        batched = Moments(est)
        batched.update({"b": torch.stack([u, -u])}, draws=2)
        assert batched.values()["b"] == pytest.approx(math.sqrt(want), rel=1e-12), est
    s = torch.tensor(-1.5)
    for est in ("iid", "full_cov", "kronecker"):
        m = Moments(est, beta=0.9)
        m.update({"s": s})
        assert m.values()["s"] == pytest.approx(1.5, rel=1e-12), est
        batched = Moments(est)
        batched.update({"s": torch.tensor([1.5, -2.0])}, draws=2)
        assert batched.values()["s"] == pytest.approx(math.sqrt((1.5 ** 2 + 2.0 ** 2) / 2), rel=1e-12), est
    # matrices are unchanged: iid = sum u^2, full_cov = (sum u)^2
    w = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    for est, want in (("iid", 15.0), ("full_cov", 25.0)):
        m = Moments(est)
        m.update({"w": w})
        assert m.values()["w"] == pytest.approx(math.sqrt(want), rel=1e-12), est


def test_iid_is_low_on_a_bias_with_correlated_entries():
    """The paper's estimator comparison: iid underestimates a bias whose entries move the outputs together. A bias
    of 16 units read by one output through equal weights: every u_i = 0.1 w z shares the projection's z, so per
    draw sum u^2 = (sum u)^2 / 16 and iid is exactly a quarter of full_cov, which matches the exact change."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 1)).double()
    with torch.no_grad():
        model[1].weight.fill_(1 / 16)
    x = torch.randn(64, 8, dtype=torch.float64)
    ups = {"0.bias": torch.full((16,), 0.1, dtype=torch.float64)}
    exact = reference_function_space_lr(model, x, ups)["0.bias"]
    est = {e: function_space_lr(model, x, ups, n_probes=2000, estimator=e, generator=torch.Generator().manual_seed(1))
           ["0.bias"] for e in ("full_cov", "kronecker", "iid")}
    assert est["full_cov"] == pytest.approx(exact, rel=0.05)
    assert est["kronecker"] == pytest.approx(est["full_cov"], rel=1e-12)
    assert est["iid"] == pytest.approx(est["full_cov"] / 4, rel=1e-9)


def test_projection_touches_no_grad():
    lin = torch.nn.Linear(3, 2)
    out = lin(torch.randn(4, 3))
    us = projection_products(out, dict(lin.named_parameters()), {"weight": torch.ones(2, 3)})
    assert us["weight"].shape == (2, 3) and lin.weight.grad is None


# ---------------------------------------------------------------------------------------------- records

BASE = {"emb.weight": [4.0, 2.0], "blocks.0.a.weight": [2.0, 1.0], "blocks.1.a.weight": [6.0, 3.0],
        "head.weight": [1.0, 1.0]}


def test_map_record_width_is_one_to_one_and_depth_splits():
    assert map_record(BASE, list(BASE)) == BASE
    deep = ["emb.weight", *(f"blocks.{k}.a.weight" for k in range(6)), "head.weight"]
    m = map_record(BASE, deep)
    assert m["blocks.0.a.weight"] == m["blocks.2.a.weight"] == [2 / 3, 1 / 3]
    assert m["blocks.3.a.weight"] == m["blocks.5.a.weight"] == [2.0, 1.0]
    assert m["emb.weight"] == [4.0, 2.0] and m["head.weight"] == [1.0, 1.0]
    assert map_record(BASE, deep, depth_split=False)["blocks.4.a.weight"] == [6.0, 3.0]


def test_map_record_errors_name_the_tensors():
    with pytest.raises(ConfigError, match="not an integer"):
        map_record(BASE, ["emb.weight", *(f"blocks.{k}.a.weight" for k in range(3)), "head.weight"])
    with pytest.raises(ConfigError, match="blocks.0.b.weight"):
        map_record(BASE, ["emb.weight", "blocks.0.b.weight", "blocks.1.a.weight", "head.weight"])
    assert record_path("r/lr{lr}.json", 0.00031622) == "r/lr0.0003162.json"


# ---------------------------------------------------------------------------------------------- the method

def test_record_mode_logs_fslrs_and_leaves_training_unchanged(tmp_path):
    opts = {"name": "flerm", "every": 4, "warmup_passes": 3}
    _, rows = run_micro(tmp_path / "rec", steps=8, methods=[opts], **{"train.lr": 3e-3, "log.every": 2})
    _, plain = run_micro(tmp_path / "plain", steps=8, **{"train.lr": 3e-3, "log.every": 2})
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in plain]
    measured = [r for r in rows if "flerm/at_step" in r]
    assert [r["flerm/at_step"] for r in measured] == [0, 4]
    vals = {k: v for k, v in measured[0].items() if k.startswith("flerm/fslr/")}
    assert "flerm/fslr/blocks.1.mlp.proj.weight" in vals and all(v > 0 for v in vals.values())
    rec = record_from_runs([tmp_path / "rec"])
    assert rec["steps"] == [0, 4] and rec["lr"] == 3e-3 and rec["output"] == "auto"


def test_transfer_onto_the_base_itself_is_the_identity(tmp_path):
    """Same model, seed and batches: the target's estimate equals the base record, every factor is 1, and the
    undone-and-redone step gives the base run's losses (the update bookkeeping is exact)."""
    base_opts = {"name": "flerm", "every": 4, "warmup_passes": 3}
    _, base_rows = run_micro(tmp_path / "base", steps=8, methods=[base_opts], **{"train.lr": 3e-3, "log.every": 4})
    rec = record_from_runs([tmp_path / "base"])
    (tmp_path / "rec_lr0.003.json").write_text(json.dumps(rec))
    tr = {"name": "flerm", "base": str(tmp_path / "rec_lr{lr}.json"), "warmup_passes": 3}
    _, rows = run_micro(tmp_path / "tr", steps=8, methods=[tr], **{"train.lr": 3e-3, "log.every": 4})
    factors = {k: v for k, v in rows[0].items() if k.startswith("flerm/factor/")}
    assert factors and all(v == pytest.approx(1.0, rel=1e-9) for v in factors.values())
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in base_rows], rel=1e-5)


def test_transfer_to_wider_and_deeper_models(tmp_path):
    run_micro(tmp_path / "base", steps=4, methods=[{"name": "flerm", "every": 4, "warmup_passes": 2}],
              **{"train.lr": 1e-2, "log.every": 4})
    (tmp_path / "r_lr0.01.json").write_text(json.dumps(record_from_runs([tmp_path / "base"])))
    tr = {"name": "flerm", "base": str(tmp_path / "r_lr{lr}.json"), "warmup_passes": 2}
    _, wide = run_micro(tmp_path / "wide", steps=4, methods=[tr], **{"train.lr": 1e-2, "log.every": 4,
                                                                     "model.n_embd": 64})
    f_wide = wide[0]["flerm/factor/blocks.0.mlp.fc.weight"]
    assert 0 < f_wide < 1  # a wider model moves its outputs more per unit LR: FLeRM lowers the LR
    _, deep = run_micro(tmp_path / "deep", steps=4, methods=[tr], **{"train.lr": 1e-2, "log.every": 4,
                                                                     "model.n_layer": 4})
    assert "flerm/factor/blocks.3.attn.v.weight" in deep[0]


def _prepare(tmp_path, *sets):
    from claimbench.train import prepare

    cfg = load_config(None, micro_overrides(4, None, **{"train.lr": 1e-2}) + list(sets), base={})
    return prepare(cfg, tmp_path / "bad")


def test_bad_input_is_a_config_error_before_training(tmp_path):
    micro_data_dir()
    tmpl = str(tmp_path / "r_lr{lr}.json")
    with pytest.raises(ConfigError, match="base record not found"):
        _prepare(tmp_path, f'methods=[{{"name": "flerm", "base": "{tmpl}"}}]')
    rec = {"format": "flerm-record/1", "lr": 0.01, "every": 4, "steps": [0], "estimator": "kronecker",
           "output": "auto", "workload": "gpt", "tensors": {}}
    run_micro(tmp_path / "base", steps=2, methods=[{"name": "flerm", "every": 2, "warmup_passes": 1}],
              **{"train.lr": 1e-2, "log.every": 2})
    rec = record_from_runs([tmp_path / "base"])
    (tmp_path / "r_lr0.01.json").write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match="depth multiplier 1.5 is not an integer"):
        _prepare(tmp_path, f'methods=[{{"name": "flerm", "base": "{tmpl}"}}]', "model.n_layer=3")
    renamed = dict(rec, tensors={k.replace("mlp.fc", "mlp.up"): v for k, v in rec["tensors"].items()})
    (tmp_path / "r_lr0.01.json").write_text(json.dumps(renamed))
    with pytest.raises(ConfigError, match=r"blocks\.0\.mlp\.fc\.weight"):
        _prepare(tmp_path, f'methods=[{{"name": "flerm", "base": "{tmpl}"}}]')
    with pytest.raises(ConfigError, match="every"):
        _prepare(tmp_path, 'methods=[{"name": "flerm", "every": 1}]', "log.every=5")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------- DAG and study

def _grid(tmp_path):
    lrs = [2.0 ** k for k in range(-12, -5)]
    x1, w2, w8 = ({"width": w, "n_blocks": 2} for w in (16, 32, 128))
    rec = str(tmp_path / "rec" / "lr{lr}.json")
    common = {"config": "benchmarks/configs/mlp.yaml", "data": "fashion_mnist", "workload": "mlp", "size": "micro",
              "seeds": [0, 1]}
    grid = [{**common, "name": "flerm:m:base", "methods": [[{"name": "flerm", "record": rec, "every": 100}]],
             "set": {"model": x1}, "sweep": {"train.lr": lrs}},
            {**common, "name": "flerm:m_width:sp", "sweep": {"model": [w2, w8], "train.lr": lrs}},
            {**common, "name": "flerm:m_width:fl", "methods": [[{"name": "flerm", "base": rec}]],
             "sweep": {"model": [w2, w8], "train.lr": lrs}}]
    studies = {"m_width": {"kind": "width", "base": "m", "across": "model", "scales": [1, 2, 8],
                           "values": [x1, w2, w8]}}
    return grid, studies, lrs


def test_dag_plan_wires_records_to_scaled_runs(tmp_path):
    from claimbench.grid import expand
    from methods.flerm.dag import plan

    grid, _, lrs = _grid(tmp_path)
    p = plan(expand(grid))
    assert len(p.records) == len(lrs) and all(len(r) == 2 for r in p.records.values())  # 2 seeds per record
    assert len(p.inputs) == 2 * len(lrs) * 2 and set(p.inputs.values()) == set(p.records)
    with pytest.raises(ValueError, match="no base runs record"):
        plan(expand(grid[1:]))


def test_study_recovers_known_shifts(tmp_path):
    """Synthetic losses with a known optimum per scale: SP's optimum moves -1 log2 per doubling, FLeRM's stays (the
    intervals, per-arm edges and misses: tests/test_flerm_verdicts.py)."""
    import yaml

    from claimbench.grid import expand
    from methods.flerm.analysis import run

    grid, studies, _ = _grid(tmp_path)
    opt = {("sp", 16): -9, ("sp", 32): -10, ("sp", 128): -12, ("fl", 32): -9, ("fl", 128): -9}
    for entry in grid:
        arm = entry["name"].split(":")[2]
        for rid, spec in expand([entry]).items():
            sets = dict(s.split("=", 1) for s in spec.sets)
            width = json.loads(sets["model"])["width"]
            centre = opt[("sp" if arm == "base" else arm, width)]
            loss = 1.0 + 0.1 * (math.log2(float(sets["train.lr"])) - centre) ** 2
            (tmp_path / "runs" / rid).mkdir(parents=True)
            (tmp_path / "runs" / rid / "result.json").write_text(json.dumps({"status": "ok",
                                                                             "final_train_loss": loss}))
    gfile = tmp_path / "grid.yaml"
    gfile.write_text(yaml.safe_dump({"grid": grid, "studies": studies}))
    res = run(gfile, tmp_path / "runs", draws=50)["studies"]["m_width"]
    sp, fl = res["arms"]["sp"], res["arms"]["fl"]
    assert [s["estimate"] for s in sp["shift"]] == pytest.approx([0, -1, -3], abs=1e-6)
    assert [s["estimate"] for s in fl["shift"]] == pytest.approx([0, 0, 0], abs=1e-6)
    assert res["status"] == "ok" and res["n"] == 2
    assert sp["at_edge"] == [False, False, True] and fl["at_edge"] == [False] * 3 and res["at_edge_any"]
    # a tier's grid file that includes the profile's and adds the FLeRM arm: the same study
    first, extra = tmp_path / "first.yaml", tmp_path / "extra.yaml"
    first.write_text(yaml.safe_dump({"grid": grid[:2], "studies": studies}))
    extra.write_text(yaml.safe_dump({"include": ["first.yaml"], "grid": grid[2:]}))
    split = run(extra, tmp_path / "runs", draws=50)["studies"]["m_width"]
    assert [s["estimate"] for s in split["arms"]["fl"]["shift"]] == pytest.approx([0, 0, 0], abs=1e-6)
    assert run(first, tmp_path / "runs", draws=50)["studies"]["m_width"]["status"] == "not_run"  # no FLeRM arm
    (tmp_path / "runs" / next(iter(expand([grid[2]]))) / "result.json").unlink()
    assert run(gfile, tmp_path / "runs", draws=50)["studies"]["m_width"]["status"] == "not_run"


# ---------------------------------------------------------------------------------------------- LoRA rank transfer

def test_lora_rank_transfer(tmp_path):
    """Fine-tune a trained micro GPT through PEFT LoRA: the base weights stay as loaded, only the adapters train;
    FLeRM records the rank-2 adapters at step `start` and transfers onto rank 8 (1:1 names, factors set once)."""
    base, _ = run_micro(tmp_path / "pre", steps=3, **{"train.lr": 1e-2})
    ckpt = tmp_path / "pre" / "ckpt.pt"
    lr = {"train.lr": 1e-2, "log.every": 4}
    rec_opts = {"name": "flerm", "every": 4, "warmup_passes": 2, "start": 2}
    lora2 = {"name": "lora", "checkpoint": str(ckpt), "rank": 2}
    _, rows = run_micro(tmp_path / "r2", steps=4, methods=[lora2, rec_opts], **lr)
    state = torch.load(tmp_path / "r2" / "ckpt.pt", weights_only=True)["model"]
    pre = torch.load(ckpt, weights_only=True)["model"]
    assert torch.equal(state["blocks.0.attn.q.base_layer.weight"], pre["blocks.0.attn.q.weight"])  # frozen
    assert torch.equal(state["blocks.0.mlp.fc.weight"], pre["blocks.0.mlp.fc.weight"])
    assert state["blocks.0.attn.q.lora_B.default.weight"].abs().sum() > 0  # B starts at 0 and trains
    measured = [r for r in rows if "flerm/at_step" in r]
    assert measured[0]["flerm/at_step"] == 2
    fslr = {k[len("flerm/fslr/"):]: v for k, v in measured[0].items() if k.startswith("flerm/fslr/")}
    assert set(fslr) == {f"blocks.{b}.attn.{m}.lora_{ab}.default.weight" for b in (0, 1) for m in "qkvo"
                         for ab in "AB"}
    assert all(v > 0 for v in fslr.values())  # at step 2 B != 0, so A's update moves the outputs too
    (tmp_path / "r_lr0.01.json").write_text(json.dumps(record_from_runs([tmp_path / "r2"])))
    tr = {"name": "flerm", "base": str(tmp_path / "r_lr{lr}.json"), "warmup_passes": 2, "start": 2}
    _, rows8 = run_micro(tmp_path / "r8", steps=4, methods=[{**lora2, "rank": 8}, tr], **lr)
    factors = {k: v for k, v in rows8[0].items() if k.startswith("flerm/factor/")}
    assert len(factors) == 16 and all(math.isfinite(v) and v > 0 for v in factors.values())
    assert any(abs(v - 1) > 0.05 for v in factors.values())  # another rank moves its outputs differently
    assert base["status"] == "ok"


def test_lora_bad_input_is_a_config_error(tmp_path):
    micro_data_dir()
    with pytest.raises(ConfigError, match="checkpoint not found"):
        _prepare(tmp_path, 'methods=[{"name": "lora", "checkpoint": "nowhere/ckpt.pt"}]')
    with pytest.raises(ConfigError, match="before `flerm`"):
        _prepare(tmp_path, 'methods=[{"name": "flerm"}, {"name": "lora"}]')
    with pytest.raises(ConfigError, match="rank"):
        _prepare(tmp_path, 'methods=[{"name": "lora", "rank": 0}]')


def test_cpu_grid_lora_checkpoint_is_a_run_of_the_grid():
    """The LoRA runs (the cpu tier's entries, config/papers/flerm.cpu.yaml, on top of the smoke grid) name their
    checkpoint by run id (runs/smoke/<id>/ckpt.pt): it must be a run of the same tier's grid, which the DAG then
    trains first; a checkpoint no run makes and no file holds is an error."""
    import yaml

    from claimbench.grid import expand
    from methods.flerm.analysis import scale_value
    from methods.flerm.dag import plan

    smoke = yaml.safe_load(open("config/papers/flerm.smoke.yaml"))["grid"]
    assert not plan(expand(smoke)).checkpoints  # the smoke tier has no LoRA runs
    runs = expand(smoke + yaml.safe_load(open("config/papers/flerm.cpu.yaml"))["grid"])
    p = plan(runs)
    ckpts = set(p.checkpoints.values())
    assert len(p.checkpoints) == 105 and len(ckpts) == 1  # 7 LRs x 3 seeds x (base + 2 ranks x 2 arms)
    src = next(iter(ckpts)).split("/")[-2]
    assert src in runs and src not in p.checkpoints
    rid = next(r for r in p.checkpoints if r in p.inputs)
    assert p.needs(rid) == [p.inputs[rid], p.checkpoints[rid]]
    assert scale_value({"methods": [{"name": "lora", "rank": 8}, {"name": "flerm"}]}, "lora.rank") == 8
    with pytest.raises(ValueError, match="lora.rank"):
        scale_value({"methods": []}, "lora.rank")
    import dataclasses

    spec = runs[rid]
    lost = dataclasses.replace(spec, sets=tuple(s.replace(src, "no-such-run-s0") for s in spec.sets))
    with pytest.raises(ValueError, match="no run of this DAG makes"):
        plan({rid: lost})


def test_fslr_analysis_ratios_from_runs(tmp_path):
    """Claim 13's numbers: per base run (seed) at the LR closest to the SP base optimum, the first FSLR row of its
    metrics, read through claimbench.evidence; mean over seeds with a Student-t interval over seeds and n."""
    from methods.flerm.analysis import fslr_analysis

    mlp = {"inp.weight": 900.0, "blocks.0.layers.0.weight": 20.0, "blocks.1.layers.0.weight": 30.0,
           "blocks.2.layers.0.weight": 40.0, "head.weight": 50.0}
    gpt = {f"blocks.0.attn.{m}.weight": v for m, v in (("q", 1.0), ("k", 3.0), ("v", 10.0), ("o", 30.0))}
    grid = [{"name": f"flerm:{g}:base", "config": "benchmarks/configs/mlp.yaml", "workload": "mlp", "size": "micro",
             "seeds": [0, 1, 2], "methods": [[{"name": "flerm", "record": str(tmp_path / g / "lr{lr}.json")}]],
             "set": {"model": {"width": 8 if g == "mlp" else 9}}, "sweep": {"train.lr": [0.001, 0.002, 0.004]}}
            for g in ("mlp", "gpt")]
    from claimbench.grid import expand

    for entry, t in zip(grid, (mlp, gpt), strict=True):
        for rid, spec in expand([entry]).items():
            seed = int(dict(s.split("=", 1) for s in spec.sets)["seed"])
            d = tmp_path / "runs" / rid
            d.mkdir(parents=True)
            (d / "result.json").write_text(json.dumps({"status": "ok", "final_train_loss": 1.0}))
            rows = [{"step": 0, "flerm/at_step": 0, **{f"flerm/fslr/{n}": v * (1 + 0.01 * seed) if "inp" in n or
                                                        ".v." in n else v for n, v in t.items()}},
                    {"step": 50, "flerm/at_step": 50, **{f"flerm/fslr/{n}": 1.0 for n in t}}]
            (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = {"studies": {"w": {"base_group": "mlp", "arms": {"sp": {"log2_opt": [math.log2(0.0035)]}}}}}
    out = fslr_analysis(grid, res, tmp_path / "runs")
    assert out["groups"]["mlp"]["lr"] == 0.004  # closest to the optimum; gpt: no study, the grid middle
    assert out["groups"]["mlp"]["step"] == 0 and len(out["groups"]["mlp"]["runs"]) == 3
    ioh = out["input_over_hidden"]
    per_seed = [900 * (1 + 0.01 * s) / 30 for s in range(3)]
    assert ioh["estimate"] == pytest.approx(np.mean(per_seed))
    assert ioh["n"] == 3 and ioh["ci_lo"] < ioh["estimate"] < ioh["ci_hi"]
    # the t interval over the 3 per-seed values (t(2, 0.95) = 2.92 standard errors), wider than the seeds' range
    half = 2.919986 * np.std(per_seed, ddof=1) / np.sqrt(3)
    assert [ioh["ci_lo"], ioh["ci_hi"]] == pytest.approx([np.mean(per_seed) - half, np.mean(per_seed) + half])
    assert ioh["ci_lo"] < min(per_seed) and ioh["ci_hi"] > max(per_seed)
    # min_ratio: the smaller mean, its bounds the smaller of the two models' bounds
    vo = out["vo_over_qk"]
    assert out["min_ratio"]["ci_lo"] == pytest.approx(min(ioh["ci_lo"], vo["ci_lo"]))
    assert out["min_ratio"]["ci_hi"] == pytest.approx(min(ioh["ci_hi"], vo["ci_hi"]))
    assert out["vo_over_qk"]["estimate"] == pytest.approx(np.mean([(10 * (1 + 0.01 * s) + 30) / 2 / 2
                                                                    for s in range(3)]))
    assert out["min_ratio"]["estimate"] == pytest.approx(out["vo_over_qk"]["estimate"])
    assert out["placebo_ratio"]["estimate"] == pytest.approx(3.0)  # K over Q (hidden: 40/20 = 2)
    assert "input_over_hidden" not in out["groups"]["gpt"]


def test_estimator_stage_waits_for_the_prepared_data():
    """The flerm_estimator stage trains no run, so the data set it reads is its input: on a fresh clone the DAG
    prepares it first (without it the stage ran before the data existed)."""
    from claimbench import papers

    paper = papers.discover()["flerm"]
    dag = papers.Dag({"profile": "smoke", "runs_dir": "runs/smoke", "results_dir": "results", "papers": ["flerm"]},
                     paper.root, {}, {})
    paper.add_runs(dag)
    stage = next(s for s in paper.plan(dag).stages if s.name == "flerm_estimator")
    assert stage.input["data"] == [f"data/fashion-mnist/{f}" for f in papers.DATA_FILES]
    assert stage.output["js"] == "results/analysis/flerm/estimator.json"


def test_claims_cpu_arms_are_runs_of_the_cpu_tier():
    """A claim's `cpu:` arms (c12) are runs of the cpu tier (config/papers/flerm.smoke.yaml + flerm.cpu.yaml, the
    anchors copied), its smoke arms runs of the smoke grid alone; the cpu file adds no run smoke already has."""
    import yaml

    from claimbench.claims import load_all
    from claimbench.grid import expand

    smoke = set(expand(yaml.safe_load(open("config/papers/flerm.smoke.yaml"))["grid"]))
    cpu = set(expand(yaml.safe_load(open("config/papers/flerm.cpu.yaml"))["grid"]))
    assert len(smoke) == 162 and len(cpu) == 295 and not smoke & cpu
    claims = {c.id: c for c in load_all() if c.paper["id"] == "flerm"}
    for c in claims.values():
        assert {r for arm in c.arms("smoke").values() for r in arm} <= smoke, c.id
        assert {r for arm in c.arms("cpu").values() for r in arm} <= smoke | cpu, c.id
    assert sum(len(a) for a in claims["flerm.c12_lora_rank"].arms("cpu").values()) == 105
    # every interior-optimum premise names the arms of the claim's grids and their LR sweep
    for c in claims.values():
        for prem in (p for p in c.premises if "interior" in p):
            arms = {a for profile in c.grid.values() for a in profile} or {"base", "sp", "fl"}  # no grid yet
            assert prem["interior"]["over"] == "train.lr" and set(prem["interior"]["arms"]) == arms, c.id


# ---------------------------------------------------------------------------------------------- LRM models

def test_transfer_of_an_lrm_record_with_0d_and_1d_multipliers(tmp_path):
    """An LRM base's record holds its multipliers' FSLRs (1-d row and column vectors, the final norm's 0-d scalar)
    beside the wrapped weights (`...parametrizations.weight.original`); FLeRM listed after lrm maps it onto a wider
    LRM model name for name (the check before training builds the names through LRM's transform on the meta
    device) and sets one factor per tensor. Listed before lrm, which regroups the multipliers, it is refused."""
    lrm = {"name": "lrm", "final_norm": "scalar"}
    lr = {"train.lr": 1e-2, "log.every": 2}
    run_micro(tmp_path / "base", steps=2, methods=[lrm, {"name": "flerm", "every": 2, "warmup_passes": 2}], **lr)
    rec = record_from_runs([tmp_path / "base"])
    state = torch.load(tmp_path / "base" / "ckpt.pt", weights_only=True)["model"]
    dims = {state[n].ndim for n in rec["tensors"]}
    assert {0, 1, 2} <= dims  # the scalar, the row/column vectors, the matrices
    assert any(n.endswith("parametrizations.weight.original") for n in rec["tensors"])
    (tmp_path / "r_lr0.01.json").write_text(json.dumps(rec))
    tmpl = str(tmp_path / "r_lr{lr}.json")
    _, rows = run_micro(tmp_path / "wide", steps=2, methods=[lrm, {"name": "flerm", "base": tmpl, "warmup_passes": 2}],
                        **lr, **{"model.n_embd": 64})
    factors = {k[len("flerm/factor/"):]: v for k, v in rows[0].items() if k.startswith("flerm/factor/")}
    assert set(factors) == set(rec["tensors"]) and all(math.isfinite(v) and v > 0 for v in factors.values())
    with pytest.raises(ConfigError, match="list `lrm` before `flerm`"):
        _prepare(tmp_path, f'methods=[{{"name": "flerm", "base": "{tmpl}"}}, {{"name": "lrm"}}]')
    assert not (tmp_path / "bad").exists()


def test_study_of_lrm_models_beside_the_plain_study(tmp_path):
    """A study whose every run carries lrm (a plain name in the method lists) is read as any other; `against` sets
    its shifts beside the plain study's at the scales both have; claim 13's FSLR analysis leaves its base out."""
    import yaml

    from claimbench.grid import expand
    from methods.flerm.analysis import fslr_analysis, markdown, run

    grid, studies, lrs = _grid(tmp_path)
    x1, w8 = studies["m_width"]["values"][0], studies["m_width"]["values"][2]
    lrec = str(tmp_path / "lrec" / "lr{lr}.json")
    common = {k: grid[0][k] for k in ("config", "data", "workload", "size", "seeds")}
    grid += [{**common, "name": "flerm:l:base", "methods": [["lrm", {"name": "flerm", "record": lrec, "every": 100}]],
              "set": {"model": x1}, "sweep": {"train.lr": lrs}},
             {**common, "name": "flerm:l_width:sp", "methods": [["lrm"]], "sweep": {"model": [w8], "train.lr": lrs}},
             {**common, "name": "flerm:l_width:fl", "methods": [["lrm", {"name": "flerm", "base": lrec}]],
              "sweep": {"model": [w8], "train.lr": lrs}}]
    studies["l_width"] = {"kind": "width", "base": "l", "across": "model", "scales": [1, 8], "values": [x1, w8],
                          "against": "m_width"}
    opt = {("sp", 16): -9, ("sp", 32): -10, ("sp", 128): -12, ("fl", 32): -9, ("fl", 128): -9}
    for entry in grid:
        arm = entry["name"].split(":")[2]
        for rid, spec in expand([entry]).items():
            sets = dict(s.split("=", 1) for s in spec.sets)
            centre = opt[("sp" if arm == "base" else arm, json.loads(sets["model"])["width"])]
            centre += 0.5 if entry["name"].startswith("flerm:l") and arm == "fl" else 0  # LRM's FLeRM: +0.5
            (tmp_path / "runs" / rid).mkdir(parents=True)
            (tmp_path / "runs" / rid / "result.json").write_text(json.dumps(
                {"status": "ok", "final_train_loss": 1.0 + 0.1 * (math.log2(float(sets["train.lr"])) - centre) ** 2}))
    gfile = tmp_path / "grid.yaml"
    gfile.write_text(yaml.safe_dump({"grid": grid, "studies": studies}))
    res = run(gfile, tmp_path / "runs", draws=50)
    cmp = res["studies"]["l_width"]["against"]
    assert res["studies"]["l_width"]["status"] == "ok" and cmp["status"] == "ok" and cmp["study"] == "m_width"
    assert [r[:3] for r in cmp["rows"]] == [["m_width", "none", "x8"], ["l_width", "lrm", "x8"]]
    assert [r[3].split()[0] for r in cmp["rows"]] == ["-3.00", "-3.00"]  # SP: the planted shifts
    assert [r[4].split()[0] for r in cmp["rows"]] == ["+0.00", "+0.50"]  # FLeRM
    assert cmp["rows"][0][5] == 2
    assert "Beside study m_width" in markdown(res, "")
    assert set(fslr_analysis(grid, res, tmp_path / "runs")["groups"]) == {"m"}  # no FSLR rows: only the plain base


def test_cpu_grid_lrm_width_study_resolves():
    """The cpu tier's study lrm_width: its runs (lrm in every one, flerm after it) resolve to its two scales, its FLeRM
    runs read records that only its LRM base runs make, and it is read beside mlp_width."""
    from claimbench.grid import expand
    from claimbench.tiers import load_grid
    from methods.flerm.analysis import _sets, scale_value
    from methods.flerm.dag import plan

    cfg = load_grid("config/papers/flerm.cpu.yaml")
    st = cfg["studies"]["lrm_width"]
    assert st["base"] == "mlp_lrm" and st["against"] in cfg["studies"] and st["scales"] == [1, 8]
    assert st["values"][0] == cfg["studies"]["mlp_width"]["values"][0]
    assert st["values"][1] == cfg["studies"]["mlp_width"]["values"][2]  # x8 of both studies: the same model
    entries = {e["name"]: e for e in cfg["grid"] if e["name"].startswith(("flerm:mlp_lrm:", "flerm:lrm_width:"))}
    assert sorted(entries) == ["flerm:lrm_width:fl", "flerm:lrm_width:sp", "flerm:mlp_lrm:base"]
    runs = {n: expand([e]) for n, e in entries.items()}
    assert [len(r) for r in runs.values()] == [21, 21, 21]
    for name, rs in runs.items():
        for spec in rs.values():
            s = _sets(spec)
            assert [m if isinstance(m, str) else m["name"] for m in s["methods"]][0] == "lrm"
            if not name.endswith(":base"):
                assert st["values"].index(scale_value(s, "model")) == 1
    p = plan(expand(cfg["grid"]))
    base_ids = set(runs["flerm:mlp_lrm:base"])
    lrm_records = {rec for rec, ids in p.records.items() if set(ids) <= base_ids}
    assert len(lrm_records) == 7 and {p.inputs[r] for r in runs["flerm:lrm_width:fl"]} == lrm_records
    from claimbench.matrix import load

    shown = load("config/matrix.smoke.yaml").row("flerm+lrm").analysis  # results/interactions.md's section
    assert (shown.file, shown.table) == ("results/cpu/analysis/flerm/transfer.json", "studies.lrm_width.against")
