"""The methods' hot paths made cheaper leave every training number as it was: micro runs trained with the CLI
under the previous implementation (patched back in) and the current one give bit-identical result.json numbers
and metrics rows (the z-loss: equal to float rounding). And the speed suite's interval on synthetic timings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from claimbench.cli import main as cli_main
from claimbench.testing import REPO, micro_overrides

TIMING = {"wall_s", "cpu_s", "tokens_per_s", "mfu", "peak_flops", "peak_source", "git_sha", "versions", "hardware"}


def _train(out, methods, **sets) -> tuple[dict, list[dict]]:
    """A micro run through `claimbench train`; result.json and metrics rows without the clocks."""
    sets = {"train.steps": 12, "log.every": 3, "eval.every": 6, **sets}
    argv = ["train", str(REPO / "benchmarks/configs/gpt.yaml"), "--out", str(out)]
    for s in micro_overrides(methods=methods, **sets):
        argv += ["--set", s]
    assert cli_main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    strip = lambda d: {k: v for k, v in d.items() if k not in TIMING}  # noqa: E731
    return strip(result), [strip(r) for r in rows]


# ---------------------------------------------------------------- the previous implementations
def _zloss_before(self, outputs):
    self.last = torch.logsumexp(outputs.logits.float(), dim=-1).pow(2).mean()
    return self.options.coef * self.last


def _rowcol_forward_before(ctx, w, r, c):
    ctx.save_for_backward(w, r, c)
    return w * torch.outer(r, c)


def _rowcol_backward_before(ctx, g):
    w, r, c = ctx.saved_tensors
    gw = g * torch.outer(r, c) if ctx.needs_input_grad[0] else None
    p = g * w
    return gw, p @ c, r @ p


def _close(a, b, rel: float) -> bool:
    """Equal structure; floats within `rel` of each other (relative), everything else equal."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def test_zloss_from_the_loss_pass_trains_as_before(tmp_path, data_dir, monkeypatch):
    """log Z from the cross-entropy's pass (the `logz` capability) vs a separate torch.logsumexp: the same run
    to float rounding (the fused cross-entropy is not bit-identical to torch's), and far from a run without the
    z-loss, so the comparison can tell them apart."""
    from methods.zloss import ZLoss

    methods = [{"name": "zloss", "coef": 0.1}]  # large enough that the z-loss moves the weights visibly
    after = _train(tmp_path / "after", methods)
    plain = _train(tmp_path / "plain", [])
    monkeypatch.setattr(ZLoss, "extra_loss", _zloss_before)
    monkeypatch.setattr(ZLoss, "needs", frozenset())
    before = _train(tmp_path / "before", methods)
    assert _close(after, before, 1e-4)
    assert not _close(after[0], plain[0], 1e-3)
    assert "zloss/logz_sq" in after[1][-1]


def test_lrm_numbers_unchanged(tmp_path, data_dir, monkeypatch):
    from methods.lrm.multipliers import _RowColScale

    sets = {"model.arch": "llama"}
    after = _train(tmp_path / "after", [{"name": "lrm"}], **sets)
    monkeypatch.setattr(_RowColScale, "forward", staticmethod(_rowcol_forward_before))
    monkeypatch.setattr(_RowColScale, "backward", staticmethod(_rowcol_backward_before))
    before = _train(tmp_path / "before", [{"name": "lrm"}], **sets)
    assert after == before


def test_jreg_early_exit_at_eval_steps_leaves_the_run_unchanged(tmp_path, data_dir, monkeypatch):
    """The early-exit CE moved from every log row to the eval steps (6, 12) and the last step: the training
    numbers and every other logged value are the same, and where it is logged its value is too."""
    from methods.jreg.method import JREG

    sets = {"model.arch": "llama"}
    methods = [{"name": "jreg", "lam": 0.1}]
    after = _train(tmp_path / "after", methods, **sets)
    monkeypatch.setattr(JREG, "_eval_due", lambda self, step: True)  # before: at every log row
    before = _train(tmp_path / "before", methods, **sets)
    assert after[0] == before[0]
    ee = lambda row: {k for k in row if k.startswith("jreg/early_exit_ce")}  # noqa: E731
    for a, b in zip(after[1], before[1], strict=True):
        assert ee(b)
        if a["step"] % 6 == 0:
            assert a == b
        else:
            assert not ee(a) and a == {k: v for k, v in b.items() if k not in ee(b)}


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("shape", [(300, 2048), (5, 1), (7, 33)])
def test_cross_entropy_logz_is_torchs_to_rounding(shape, soft):
    """Value, log Z and the gradient of loss + f(log Z) against F.cross_entropy + torch.logsumexp, for class
    ids (with a -inf logit: a masked class) and class probabilities (mixup)."""
    from claimbench.losses import cross_entropy_logz

    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 4
    if not soft and shape[1] > 1:
        x[0, -1] = -math.inf
    y = (torch.softmax(torch.randn(shape, generator=g), -1) if soft
         else torch.randint(0, max(1, shape[1] - 1), (shape[0],), generator=g))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, za = cross_entropy_logz(xa, y)
    lb, zb = F.cross_entropy(xb, y), torch.logsumexp(xb, -1)
    torch.testing.assert_close(za, zb)
    torch.testing.assert_close(la, lb)
    w = torch.randn(za.shape, generator=g)
    (3 * la + (za * w).sum()).backward()
    (3 * lb + (zb * w).sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    assert not torch.equal(xa.grad, torch.zeros_like(xa.grad))


# ---------------------------------------------------------------- the speed suite's interval (no timing)
@pytest.mark.parametrize("planted", [1.0, 1.05, 0.9])
def test_ratio_interval_recovers_a_planted_ratio(planted):
    """Synthetic paired timings: a reference drifting by tens of percent between repeats (a loaded machine),
    the method `planted` times it with 2% noise. The mean ratio lands near the planted one and both intervals
    cover it; over many seeds the 95% interval covers it in most of them."""
    from scripts.speed.speed import ratio_interval

    covered, n_sets = 0, 40
    for seed in range(n_sets):
        rng = np.random.default_rng(seed)
        ref = 0.2 * np.exp(rng.normal(0, 0.25, 12))  # drift between repeats, shared by the pair
        new = ref * planted * np.exp(rng.normal(0, 0.02, 12))
        iv = ratio_interval(list(ref), list(new))
        assert iv["n"] == 12 and iv["interval"] == "bootstrap BCa" and len(iv["ratios"]) == 12
        assert iv["ci_lo"] < iv["ratio"] < iv["ci_hi"] and iv["t_lo"] < iv["ratio"] < iv["t_hi"]
        assert abs(iv["ratio"] - planted) < 0.03
        covered += iv["ci_lo"] <= planted <= iv["ci_hi"]
    assert covered >= 0.8 * n_sets
    assert ratio_interval(list(ref), list(new)) == iv  # a fixed bootstrap seed: the same timings, the same interval


def test_ratio_interval_small_and_degenerate_samples():
    from scripts.speed.speed import overhead_summary, ratio_interval

    iv = ratio_interval([1.0, 1.1, 0.9], [1.05, 1.14, 0.96])  # under 4 pairs: the t interval
    assert iv["interval"] == "t" and iv["ci_lo"] < iv["ratio"] < iv["ci_hi"] and iv["n"] == 3
    same = ratio_interval([1.0, 2.0, 3.0, 4.0], [1.1, 2.2, 3.3, 4.4])  # no spread: a zero-width interval
    assert same["ratio"] == pytest.approx(1.1) and same["ci_hi"] - same["ci_lo"] == pytest.approx(0)
    s = overhead_summary(iv, "cpu")
    assert s["overhead"] == pytest.approx(iv["ratio"] - 1) and s["ci_lo"] == pytest.approx(iv["ci_lo"] - 1)
    assert s["n"] == 3 and s["clock"] == "cpu"


# ---------------------------------------------------------------- claims that read the speed suite's output
SPEED_CLAIMS = ("nowarmup.cost", "lrm.throughput", "flerm.overhead")


def test_overhead_claims_read_the_speed_suite_json(tmp_path):
    """Without results/speed/<profile>.json the claims are not_run (not an error); with it each reads its
    method's overhead, interval and n there (the runs from the committed evidence store) and its fixed band
    decides. The file here is synthetic: no timing."""
    import warnings

    from claimbench.claims import load_all
    from claimbench.study import run_study

    claims = {c.id: c for c in load_all()}
    store = REPO / "results" / "evidence" / "smoke"
    study = lambda cid: run_study(claims[cid], "smoke", tmp_path / "runs", tmp_path, store=store)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cid in SPEED_CLAIMS:
            out = study(cid)
            assert out["verdict"] == "not_run" and "speed/smoke.json" in out["why"], (cid, out["why"])
    (tmp_path / "speed").mkdir()
    inside = {"adamw2": (0.04, 0.02, 0.06), "lrm": (0.015, 0.01, 0.02), "flerm": (0.01, 0.005, 0.015)}
    for verdict, ov in (("reproduced", inside), ("not_reproduced", {m: (0.2, 0.15, 0.25) for m in inside})):
        doc = {"overheads": {m: {"overhead": e, "ci_lo": lo, "ci_hi": hi, "n": 12} for m, (e, lo, hi) in ov.items()}}
        (tmp_path / "speed" / "smoke.json").write_text(json.dumps(doc))
        for cid in SPEED_CLAIMS:
            out = study(cid)
            assert out["verdict"] == verdict and out["values"]["n"] == 12, (cid, out["why"])
    doc["overheads"] = {m: {"overhead": 0.01, "ci_lo": 0.01, "ci_hi": 0.01, "n": 1} for m in inside}  # no interval
    (tmp_path / "speed" / "smoke.json").write_text(json.dumps(doc))
    for cid in SPEED_CLAIMS:  # nowarmup.cost's premise names the speed suite's interval; the others decide nothing
        assert study(cid)["verdict"] == ("out_of_scope" if cid == "nowarmup.cost" else "inconclusive"), cid


def test_speed_suite_quick_writes_json_only_when_asked(tmp_path, capsys):
    """--quick over one method: without --out nothing is written; with it the JSON (overheads with interval and
    n, via a temporary file and a rename) and the markdown. Timings are not checked."""
    from claimbench.testing import micro_data_dir
    from scripts.speed import speed

    argv = ["--quick", "--only", "methods", "--methods", "zloss", "--methods-block", "1", "--methods-rounds", "4",
            "--gpt-data", str(micro_data_dir())]
    before = sorted(p.name for p in (REPO / "results").iterdir())
    assert speed.main(argv) == 0
    assert "| zloss |" in capsys.readouterr().out
    assert sorted(p.name for p in (REPO / "results").iterdir()) == before
    assert speed.main([*argv, "--out", str(tmp_path / "speed" / "smoke")]) == 0
    res = json.loads((tmp_path / "speed" / "smoke.json").read_text())
    z = res["overheads"]["zloss"]
    assert z["n"] == 4 and z["clock"] == "cpu" and z["ci_lo"] <= z["overhead"] <= z["ci_hi"]
    assert len(res["methods"][0]["interval_cpu"]["ratios"]) == 4
    assert "CPU: mean [95% CI]" in (tmp_path / "speed" / "smoke.md").read_text()
    assert sorted(p.name for p in (tmp_path / "speed").iterdir()) == ["smoke.json", "smoke.md"]  # no temp left
