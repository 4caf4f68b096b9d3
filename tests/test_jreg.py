"""JREG: the jump metric, the regularizer, its errors, micro training and `claimbench jump`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from claimbench.config import ConfigError, load_config
from claimbench.testing import micro_data_dir, micro_overrides, run_micro
from claimbench.train import prepare
from methods.jreg import JREGOptions, jreg_penalty, jump_profile, jump_strength, layer_weights


def rotated(angles: list[float], batch: int = 2, tokens: int = 3, dim: int = 6) -> list[torch.Tensor]:
    """h_0 = e_1 scaled randomly per token; h_l rotates h_{l-1} by angles[l-1] in a token-specific plane."""
    g = torch.Generator().manual_seed(0)
    hs = [torch.zeros(batch, tokens, dim)]
    hs[0][..., 0] = 1.0
    basis = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]
    total = 0.0
    for a in angles:
        total += a  # rotations in one plane add up, so each step's angle is exactly a
        h = torch.zeros(batch, tokens, dim)
        h[..., 0], h[..., 1] = math.cos(total), math.sin(total)
        hs.append(h)
    scale = torch.rand(batch, tokens, 1, generator=g) * 5 + 0.1  # norms must not matter
    return [(h @ basis.T) * scale * (i + 1) for i, h in enumerate(hs)]


def test_jump_profile_known_angles():
    angles = [0.6, 0.1, 0.2, 0.1, 0.9]
    prof = jump_profile(rotated(angles))
    assert prof["distances"] == pytest.approx([a / math.pi for a in angles], abs=1e-5)
    # ratio, k=1: d_5 / mean(d_2..d_4) = 0.9 / (0.4 / 3)
    assert prof["jump"] == pytest.approx(0.9 / (0.4 / 3), rel=1e-4)
    assert jump_strength(prof["distances"], "diff") == pytest.approx((0.9 - 0.2) / math.pi, abs=1e-5)
    assert jump_strength(prof["distances"], "share") == pytest.approx(0.9 / 1.3, rel=1e-4)


def test_jump_profile_mask_and_opposite_vectors():
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[-2.0, 0.0], [0.0, 3.0]]])  # token 0: pi apart (d=1), token 1: pi/2 (d=0.5)
    assert jump_profile([a, b])["distances"] == pytest.approx([0.75])
    assert jump_profile([a, b], mask=torch.tensor([[True, False]]))["distances"] == pytest.approx([1.0])
    assert math.isnan(jump_profile([a, b])["jump"])  # one layer: no middle layers to compare with


def test_jump_forms_reproduce_spec_pilot():
    """The pilot (docs/papers/jreg.md) lists d_1..d_12 and J_ratio; our default form must give its numbers."""
    base = [.269, .230, .096, .082, .128, .131, .124, .120, .115, .119, .114, .139]
    final_only = [.267, .231, .098, .084, .127, .141, .129, .123, .121, .125, .146, .044]
    base_s1 = [.258, .211, .106, .077, .095, .129, .138, .134, .121, .123, .126, .156]
    assert jump_strength(base) == pytest.approx(1.10, abs=0.01)
    assert jump_strength(final_only) == pytest.approx(0.34, abs=0.01)
    assert jump_strength(base_s1) == pytest.approx(1.24, abs=0.01)


def test_penalty_value_and_gradient():
    theta = 0.7
    h0 = torch.tensor([[[2.0, 0.0]]], requires_grad=True)
    h1 = torch.tensor([[[math.cos(theta), math.sin(theta)]]], requires_grad=True)
    p = jreg_penalty([h0, h1], {1: 0.5})
    assert p.item() == pytest.approx(0.5 * (1 - math.cos(theta)), abs=1e-6)
    p.backward()
    # d(1 - cos)/d h1 = -(h0/|h0| - cos * h1/|h1|) / |h1|, times the weight 0.5
    u0, u1 = h0.detach() / 2.0, h1.detach()
    assert h1.grad == pytest.approx(-0.5 * (u0 - math.cos(theta) * u1), abs=1e-6)
    assert h0.grad == pytest.approx(-0.5 * (u1 - math.cos(theta) * u0) / 2.0, abs=1e-6)
    h0.grad = h1.grad = None
    jreg_penalty([h0, h1], {1: 1.0}, stop_grad="input").backward()
    assert h0.grad is None and h1.grad is not None


def test_layer_weights():
    assert layer_weights(JREGOptions(), 6) == {6: 1.0}
    assert layer_weights(JREGOptions(weighting="last_k", k=3), 6) == {4: 1 / 3, 5: 1 / 3, 6: 1 / 3}
    assert layer_weights(JREGOptions(weighting="uniform"), 4) == {1: .25, 2: .25, 3: .25, 4: .25}
    assert layer_weights(JREGOptions(weighting="custom", weights={2: 0.5, 3: 0.0}), 4) == {2: 0.5}


@pytest.mark.parametrize("options, message", [
    ({"weighting": "custom", "weights": {2: -1.0}}, "weights"),
    ({"weighting": "custom", "weights": {5: 1.0}}, "layer index 5 out of range 1..4"),
    ({"weighting": "custom", "weights": {0: 1.0}}, "layer index 0 out of range 1..4"),
    ({"weighting": "last_k", "k": 9}, "k=9 out of range 1..4"),
    ({"jump_k": 5}, "jump_k=5 out of range"),
    ({"lam": -0.1}, "lam"),
    ({"weighting": "final_only"}, "weighting"),
    ({"weighting": "custom"}, "needs `weights"),
])
def test_bad_options_fail_before_training(tmp_path, options, message):
    cfg = load_config(None, micro_overrides(methods=[{"name": "jreg", **options}], **{"model.n_layer": 4}), base={})
    with pytest.raises(ConfigError, match=message) as e:
        prepare(cfg, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_workload_without_hidden_states_is_refused(tmp_path):
    from claimbench import registry
    from methods.jreg.method import check_options

    registry.discover()
    if "mlp" in registry.WORKLOADS:  # a real workload that hands out no hidden states
        cfg = load_config(None, micro_overrides(methods=["jreg"]) + ["workload=mlp"], base={})
        with pytest.raises(ConfigError, match="jreg"):
            prepare(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="does not expose per-layer hidden states"):
        check_options(JREGOptions(), None, "toy")


def _final(rows: list[dict], key: str) -> float:
    return [r[key] for r in rows if key in r][-1]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_jreg_lowers_final_layer_distance(tmp_path, arch):
    """Measured on these micro runs (60 steps, 4 layers, lam=1): d_4 0.029 -> 0.001 (gpt2), 0.055 -> 0.007
    (llama). lam=0 is a pure probe: same training numbers as no method at all."""
    sets = {"model.n_layer": 4, "model.arch": arch, "log.every": 20, "train.lr": 3e-3}
    plain, _ = run_micro(tmp_path / "plain", 60, [], **sets)
    probe, rows0 = run_micro(tmp_path / "probe", 60, [{"name": "jreg", "lam": 0.0}], **sets)
    reg, rows1 = run_micro(tmp_path / "jreg", 60, [{"name": "jreg", "lam": 1.0}], **sets)
    assert probe["final_val_loss"] == plain["final_val_loss"]
    d0, d1 = _final(rows0, "jreg/dist/4"), _final(rows1, "jreg/dist/4")
    assert d1 < 0.5 * d0, (d0, d1)
    assert _final(rows1, "jreg/jump") < _final(rows0, "jreg/jump")
    assert "jreg/penalty" in rows1[-1] and "jreg/penalty" not in rows0[-1]
    # early exit (C8) reads out layers ceil(4/2)=2..3 with the model's own final norm and head, on held-out text
    ee = {k for k in rows0[-1] if k.startswith("jreg/early_exit_ce")}
    assert ee == {"jreg/early_exit_ce", "jreg/early_exit_ce/2", "jreg/early_exit_ce/3"}
    assert rows0[-1]["jreg/early_exit_ce"] > probe["final_val_loss"] - 0.5  # early layers predict no better
    assert abs(reg["final_val_loss"] - plain["final_val_loss"]) < 0.1  # the penalty does not wreck the LM


def test_jump_command_on_micro_checkpoint(tmp_path, capsys):
    from claimbench.cli import main

    run_micro(tmp_path / "run", 10, [], **{"model.n_layer": 3, "model.arch": "llama"})
    text = tmp_path / "t.txt"
    text.write_text("Now is the winter of our discontent made glorious summer by this sun of York. " * 40)
    code = main(["jump", str(tmp_path / "run" / "ckpt.pt"), "--text", str(text), "--png", str(tmp_path / "p.png"),
                 "--json", str(tmp_path / "p.json")])
    assert code == 0
    rec = json.loads((tmp_path / "p.json").read_text())
    assert len(rec["distances"]) == 3 and all(0 <= d <= 1 for d in rec["distances"])
    assert rec["jump_form_status"] == "reconstructed" and rec["kind"] == "checkpoint" and rec["step"] == 10
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "layer   3" in capsys.readouterr().out
    assert main(["jump", str(tmp_path / "nothing"), "--text", str(text)]) == 2
    assert "neither a checkpoint" in capsys.readouterr().err


def test_jump_on_hf_directory_takes_last_state_before_norm(tmp_path):
    """A tiny random GPT-2 (LayerNorm rotates vectors) saved as a HF directory, loaded offline."""
    transformers = pytest.importorskip("transformers")
    from methods.jreg.measure import from_hf

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=512, n_embd=32, n_layer=3, n_head=2,
                                                                 n_positions=64, bos_token_id=0, eos_token_id=0))
    model.eval().save_pretrained(tmp_path / "hf")
    transformers.PreTrainedTokenizerFast(tokenizer_file=str(micro_data_dir() / "tokenizer.json")).save_pretrained(
        tmp_path / "hf")
    text = tmp_path / "t.txt"
    text.write_text("Now is the winter of our discontent made glorious summer by this sun of York. " * 30)
    m = from_hf(tmp_path / "hf", text, max_windows=4, block=32)
    assert len(m.hidden_states) == 4
    assert m.info["hf_last_hidden_state_is_normed"] is True
    with torch.no_grad():  # ours is the last block's raw output: the final norm of it gives HF's last entry
        ids = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")(text.read_text())["input_ids"]
        hf = model(input_ids=torch.tensor([ids[:32]]), output_hidden_states=True).hidden_states
    assert torch.allclose(model.transformer.ln_f(m.hidden_states[-1][:1]), hf[-1], atol=1e-5)
    assert not torch.allclose(m.hidden_states[-1][:1], hf[-1], atol=1e-3)
    assert jump_profile(m.hidden_states)["distances"][-1] != pytest.approx(m.info["d_last_hf_normed"], abs=1e-4)


def test_task_regressions_counts_only_beyond_noise():
    from methods.jreg.tasks import compare

    def doc(a: float, b: float) -> dict:
        # chance as lm_eval.json stores it: {task: {metric: value}}
        return {"results": {"t_a": {"acc,none": a}, "t_b": {"acc,none": b}},
                "chance": {"t_a": {"acc": 0.5, "acc_norm": 0.5}, "t_b": {"acc": 0.25}}}

    base = {0: doc(0.70, 0.40), 1: doc(0.72, 0.41), 2: doc(0.71, 0.39)}
    jreg = {0: doc(0.60, 0.45), 1: doc(0.63, 0.36), 2: doc(0.61, 0.44)}  # t_a drops 0.10 every seed; t_b noise
    r = compare(jreg, base)
    assert r["tasks"]["t_a"]["regressed"] and not r["tasks"]["t_b"]["regressed"]
    assert r["tasks"]["t_a"]["p_regressed"] < 0.05 < r["tasks"]["t_b"]["p_regressed"]
    assert r["n_regressed"] == 1 and r["n_improved"] == 0 and r["seeds"] == [0, 1, 2]
    assert r["tasks"]["t_a"]["chance"] == 0.5 and r["chance"] == [0.05, 0.05] and r["n_seeds"] == 3
    assert r["n_regressed_ci_lo"] <= 1 <= r["n_regressed_ci_hi"]


def test_summary_pairs_arms_by_seed(tmp_path):
    from methods.jreg.analysis import main
    from methods.jreg.measure import from_checkpoint, profile_record

    sets = {"model.n_layer": 4, "model.arch": "llama", "log.every": 10}
    for name, lam in (("base", 0.0), ("reg", 1.0)):
        run_micro(tmp_path / name, 30, [{"name": "jreg", "lam": lam}], **sets)
        rec = profile_record(from_checkpoint(tmp_path / name / "ckpt.pt", None, max_windows=4), "ratio", 1)
        (tmp_path / f"{name}.json").write_text(json.dumps(rec))
    assert main(["--runs-dir", str(tmp_path), "--runs", "base", "reg", "--profiles", str(tmp_path / "base.json"),
                 str(tmp_path / "reg.json"), "--out", str(tmp_path / "out")]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    (setting,) = s["settings"].values()
    assert set(s_arm.split()[0] for s_arm in setting["arms"]) == {"baseline", "jreg"}
    (paired,) = setting["paired"].values()
    base_d = json.loads((tmp_path / "base.json").read_text())["distances"][-1]
    reg_d = json.loads((tmp_path / "reg.json").read_text())["distances"][-1]
    assert paired["d_last"]["values"] == pytest.approx([reg_d - base_d]) and paired["d_last"]["n"] == 1
    assert (tmp_path / "out" / "jump_over_training.png").is_file() and (tmp_path / "out" / "jump.md").is_file()


def test_jreg_on_vit_lowers_final_block_distance(tmp_path):
    """Measured on ViT micro (2 blocks, 60 steps, Fashion-MNIST): d_2 0.109 (lam=0) -> 0.032 (lam=1)."""
    from benchmarks.data.images import micro_image_dir
    from claimbench.io import read_jsonl
    from claimbench.train import execute

    d2 = {}
    for lam in (0.0, 1.0):
        cfg = load_config(None, ["workload=vit", "size=micro", f"data.dir={micro_image_dir()}", "train.steps=60",
                                 "train.batch_size=32", "train.lr=4e-3", "train.warmup_steps=5", "eval.every=0",
                                 "eval.batches=2", "log.every=20", "ckpt.every=0",
                                 "methods=" + json.dumps([{"name": "jreg", "lam": lam}])], base={})
        assert execute(prepare(cfg, tmp_path / str(lam))) == 0
        d2[lam] = read_jsonl(tmp_path / str(lam) / "metrics.jsonl")[-1]["jreg/dist/2"]
    assert d2[1.0] < 0.5 * d2[0.0], d2
    bad = load_config(None, ["workload=vit", "size=micro", f"data.dir={micro_image_dir()}",
                             'methods=[{"name": "jreg", "weighting": "custom", "weights": {"3": 1.0}}]'], base={})
    with pytest.raises(ConfigError, match="layer index 3 out of range 1..2"):
        prepare(bad, tmp_path / "bad")
