"""The nowarmup crash study's reconstructed crash statistic (methods/nowarmup/analysis.py), on synthetic runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from methods.nowarmup.analysis import (
    STALL_MARGIN,
    RunInfo,
    crash_kind,
    load_run,
    lr_crash,
    main,
    malignant,
    unigram_loss,
    vision_table,
)

UNIGRAM = 6.0


def _run(arm: str, lr: float, seed: int, val: float | None, status: str = "ok", **kw) -> RunInfo:
    return RunInfo(None, arm, lr, seed, None, status, 40 if status == "diverged" else None, val, 16,
                   unigram=kw.pop("unigram", UNIGRAM), **kw)


def test_crash_kind_covers_divergence_collapse_and_stall():
    assert crash_kind(_run("nowarmup", 0.1, 0, None, "diverged")) == "diverged"
    assert crash_kind(_run("vit_nowarmup", 0.1, 0, None, collapsed=True, unigram=None)) == "collapsed"
    assert crash_kind(_run("nowarmup", 0.1, 0, UNIGRAM - STALL_MARGIN / 2)) == "stalled"
    assert crash_kind(_run("nowarmup", 0.1, 0, UNIGRAM + 1.0)) == "stalled"
    assert crash_kind(_run("nowarmup", 0.1, 0, UNIGRAM - 2 * STALL_MARGIN)) is None
    assert crash_kind(_run("vit_warmup", 0.1, 0, None, unigram=None, val_acc=0.8)) is None  # no LM reference


def test_lr_crash_reads_stalls_and_keeps_the_harness_rule_apart():
    learn, stall = UNIGRAM - 1.0, UNIGRAM - 0.01
    runs = [_run("warmup", lr, s, learn) for lr in (0.01, 0.03, 0.1) for s in range(3)]
    runs += [_run("nowarmup", 0.01, s, learn) for s in range(3)]
    runs += [_run("nowarmup", 0.03, s, stall if s else learn) for s in range(3)]  # 2 of 3 stall
    runs += [_run("nowarmup", 0.1, s, None, "diverged") for s in range(3)]
    out = lr_crash(runs, arm_lrs=[0.03, 0.09])
    assert out["lr_crash"] == 0.03 and out["lr_crash_diverged"] == 0.1
    assert out["crash_frac"] == 1.0 and out["crash_frac_diverged"] == 1.0
    assert out["by_lr"]["0.03"]["kinds"]["nowarmup"] == ["stalled", "stalled"]
    assert out["arms_at_crash"] is True and out["unigram_loss"] == UNIGRAM
    assert lr_crash(runs, arm_lrs=[0.03, 0.3])["arms_at_crash"] is False
    # the warmup control stalls too at 0.03: no LR_crash there; 1 of 3 no-warmup stalls is below 2/3
    runs[3] = _run("warmup", 0.03, 0, stall)
    runs[-3:] = [_run("nowarmup", 0.1, s, stall if s == 0 else learn) for s in range(3)]
    out = lr_crash(runs, arm_lrs=[0.03, 0.1])
    assert out["lr_crash"] is None and out["lr_crash_diverged"] is None and math.isnan(out["lr_crash_num"])
    assert out["highest_lr"] == 0.1
    assert out["crash_frac"] == pytest.approx(1 / 3) and out["crash_frac_diverged"] == 0.0
    assert out["arms_at_crash"] is False


def test_malignant_uses_stalled_runs_as_crashed():
    def probed(val: float, erank: float) -> RunInfo:
        row = {"step": 100, "attn/entropy_min": 0.1, "attn/head_entropy/L0H0": 0.1, "attn/head_erank/L0H0": erank,
               "attn/head_entropy/L0H1": 2.0, "attn/head_erank/L0H1": 10.0}
        return RunInfo(None, "nowarmup", 0.1, 0, None, "ok", None, val, 16, [row], unigram=UNIGRAM)

    runs = [probed(UNIGRAM, 1.0) for _ in range(3)] + [probed(UNIGRAM - 1, 8.0) for _ in range(3)]
    out = malignant(runs, n_boot=200)
    assert out["crashed_runs"] == 3 and out["stable_runs"] == 3
    assert out["value"] == 1.0 and out["ci_lo"] == 1.0  # every crashed low-entropy head is low-rank, no stable one


def test_unigram_loss_from_token_files(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 4, 20000).astype(np.uint16)
    train.tofile(tmp_path / "train.bin")
    train[:5000].tofile(tmp_path / "val.bin")
    (tmp_path / "meta.json").write_text(json.dumps({"vocab_size": 8}))
    # uniform over 4 of 8 tokens: log 4 up to the add-one smoothing
    assert unigram_loss(str(tmp_path)) == pytest.approx(math.log(4), abs=0.01)
    assert unigram_loss(str(tmp_path / "missing")) is None


def _write_run(d, workload: str, recipe: str, lr: float, seed: int, res: dict, data_dir: str) -> None:
    d.mkdir(parents=True)
    cfg = {"workload": workload, "recipe": {"name": recipe}, "methods": [], "seed": seed, "train": {"lr": lr},
           "model": {"block_size": 16}, "data": {"dir": data_dir}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "result.json").write_text(json.dumps(res))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "train_loss": 7.0}) + "\n")


def _token_data(tmp_path, seed: int):
    """A 16-token data dir (uniform random tokens) and its unigram loss."""
    data = tmp_path / "data"
    data.mkdir()
    tokens = np.random.default_rng(seed).integers(0, 16, 40000).astype(np.uint16)
    tokens.tofile(data / "train.bin")
    tokens[:8000].tofile(data / "val.bin")
    (data / "meta.json").write_text(json.dumps({"vocab_size": 16}))
    return data, unigram_loss(str(data))


def test_study_end_to_end_on_written_runs(tmp_path):
    data, uni = _token_data(tmp_path, 1)
    sweep = []
    for lr in (0.01, 0.03):
        for s in range(3):
            for recipe, val in (("adamw", uni - 0.5), ("adamw_nowarmup", uni if lr == 0.03 else uni - 0.5)):
                d = tmp_path / "runs" / f"{recipe}-{lr}-{s}"
                _write_run(d, "gpt", recipe, lr, s, {"status": "ok", "final_val_loss": val, "wall_s": 10.0},
                           str(data))
                sweep.append(str(d / "result.json"))
    vit = tmp_path / "runs" / "vit"
    _write_run(vit, "vit", "adamw_nowarmup", 0.002, 0, {"status": "ok", "final_val_acc": 0.11, "collapsed": True},
               str(data))
    assert load_run(vit).collapsed and vision_table([load_run(vit)])["vit_nowarmup"]["crashed"] == 1
    out = tmp_path / "out"
    main(["--sweep", *sweep, "--arms", *sweep, "--vision", str(vit / "result.json"), "--out", str(out)])
    crash = json.loads((out / "lr_crash.json").read_text())
    assert crash["lr_crash"] == 0.03 and crash["lr_crash_diverged"] is None and crash["crash_frac"] == 1.0
    assert crash["unigram_loss"] == pytest.approx(uni)
    assert json.loads((out / "vision.json").read_text())["vit_nowarmup"]["collapsed"] == 1
    summary = (out / "summary.md").read_text()
    assert "LR_crash: **0.03**" in summary and "summed wall_s 120 s" in summary  # 12 timed runs, vit untimed
    # the pre-registered LR_crash is the arms' lowest LR (0.01 here): no-warmup trains there, 3 seeds
    assert crash["prereg"]["lr"] == 0.01 and crash["prereg"]["n"] == 3 and crash["prereg"]["ci_hi"] < 0
    assert json.loads((out / "sigma_growth.json").read_text())["n"] == 0  # unprobed runs: no ratio
    assert math.isnan(json.loads((out / "cost.json").read_text())["estimate"])  # no --speed


def test_every_smoke_claim_trains_inside_the_papers_grid():
    """The DAG's `nowarmup` target trains what every smoke claim of the paper reads; the cpu tier's claims read
    the smoke grid plus nowarmup.cpu.yaml (vision parity and tau_band there only)."""
    from pathlib import Path

    from claimbench.claims import load_file
    from claimbench.grid import expand

    repo = Path(__file__).resolve().parents[1]
    grid = yaml.safe_load((repo / "config" / "papers" / "nowarmup.smoke.yaml").read_text())["grid"]
    extra = yaml.safe_load((repo / "config" / "papers" / "nowarmup.cpu.yaml").read_text())["grid"]
    paper_runs, cpu_runs = set(expand(grid)), set(expand(extra))
    assert len(paper_runs) == 18 and len(cpu_runs) == 42 and not paper_runs & cpu_runs
    claims = load_file(repo / "benchmarks" / "claims" / "nowarmup.yaml")
    smoke = [c for c in claims if c.arms("smoke")]
    assert {"nowarmup.crash", "nowarmup.parity_gpt", "nowarmup.sigma_growth", "nowarmup.sec_concentration",
            "nowarmup.malignant_collapse", "nowarmup.adamw2_sigma", "nowarmup.adamw2_sec",
            "nowarmup.adamw2_collapse"} <= {c.id for c in smoke}
    for c in smoke:
        claim_runs = {rid for specs in c.arms("smoke").values() for rid in specs}
        assert claim_runs <= paper_runs, c.id
    cpu = {c.id: c for c in claims if c.arms("cpu")}
    assert {"nowarmup.parity_vit", "nowarmup.parity_swin", "nowarmup.tau_band", "nowarmup.parity_gpt"} <= set(cpu)
    assert {"nowarmup.parity_vit", "nowarmup.parity_swin", "nowarmup.tau_band"}.isdisjoint(c.id for c in smoke)
    for c in cpu.values():
        claim_runs = {rid for specs in c.arms("cpu").values() for rid in specs}
        assert claim_runs <= paper_runs | cpu_runs, c.id
    assert all(len(specs) == 13 for specs in cpu["nowarmup.parity_gpt"].arms("cpu").values())


def test_one_lr_grid_decides_nothing_from_the_sweep_and_leaves_the_lr_placebo_unchecked(tmp_path):
    """The smoke grid has LR_crash (0.1) only: the analysis still writes every output, the claims read the
    pre-registered LR, there are no arms at 3x LR_crash, and the malignant LR placebo has nothing below LR_crash
    (n = 0), which the judge reads as unchecked, never as passed."""
    from claimbench.claims import load_file
    from claimbench.judge import judge

    data, uni = _token_data(tmp_path, 2)
    runs = []
    for s in range(6):
        for recipe, val in (("adamw", uni - 0.5 - 0.01 * s), ("adamw_nowarmup", uni - 0.05 + 0.004 * s)):
            d = tmp_path / "runs" / f"{recipe}-{s}"
            _write_run(d, "gpt", recipe, 0.1, s, {"status": "ok", "final_val_loss": val, "wall_s": 10.0}, str(data))
            runs.append(str(d / "result.json"))
    out = tmp_path / "out"
    main(["--sweep", *runs, "--arms", *runs, "--tau", "--vision", "--out", str(out)])
    crash = json.loads((out / "lr_crash.json").read_text())
    assert crash["lr_crash"] == 0.1 and crash["arms_at_crash"] is False and crash["prereg"]["n"] == 6
    assert crash["prereg"]["ci_lo"] > 0 and crash["prereg"]["warmup_ci_hi"] < 0
    assert json.loads((out / "tau_band.json").read_text())["log2_band_width"] is None
    mal = json.loads((out / "malignant.json").read_text())
    assert mal["placebo"]["n"] == 0 and "below" in mal["placebo"]["reason"]
    c = {x.id: x for x in load_file(Path(__file__).resolve().parents[1] / "benchmarks" / "claims" / "nowarmup.yaml")}
    vals = {"estimate": 0.4, "ci_lo": 0.2, "ci_hi": 0.6, "n": 18, "placebo_estimate": math.nan,
            "placebo_ci_lo": math.nan, "placebo_ci_hi": math.nan, "placebo_n": 0}
    j = judge(c["nowarmup.malignant_collapse"], {}, vals, None)
    assert j["verdict"] == "reproduced" and j["placebo"].startswith("unchecked"), j


def test_adamw2_blocks_compare_against_plain_no_warmup():
    """sigma_growth.json and malignant.json carry the AdamW^2-vs-no-warmup comparison (block `adamw2`) with its
    placebo, warmup against AdamW^2 (two arms that train)."""
    from methods.nowarmup.analysis import sigma_growth

    def probed(arm, seed, sig, erank):
        row = {"step": 50, "attn/qk_sigma1_max": sig, "attn/entropy_min": 0.1, "attn/head_entropy/L0H0": 0.1,
               "attn/head_erank/L0H0": erank}
        return RunInfo(Path(f"{arm}-{seed}"), arm, 0.1, seed, None, "ok", None, UNIGRAM - 1, 16,
                       [{"step": 0, "attn/qk_sigma1_max": 1.0}, row], unigram=UNIGRAM)

    runs = [probed("nowarmup", s, 50.0 * (1 + 0.1 * s), 1.0) for s in range(4)]
    runs += [probed("adamw2", s, 2.0 + 0.1 * s, 8.0) for s in range(4)]
    runs += [probed("warmup", s, 2.5 + 0.1 * s, 8.0) for s in range(4)]
    g = sigma_growth(runs, 0.1)
    assert g["ratio"] == "nowarmup / warmup" and g["adamw2"]["ratio"] == "nowarmup / adamw2"
    assert g["adamw2"]["n"] == 4 and g["adamw2"]["ci_lo"] > 10
    assert g["adamw2"]["placebo"]["ratio"] == "warmup / adamw2" and g["adamw2"]["placebo"]["ci_hi"] < 10
    m = malignant(runs, n_boot=200, lr_crash=0.1)["adamw2"]
    assert m["value"] == 1.0 and m["n"] == 8 and m["placebo"]["estimate"] == 0.0 and m["placebo"]["n"] == 8


def test_tau_band_uses_a_fixed_margin_and_counts_a_miss():
    """Each tau is good when the one-sided bound of its paired difference to warmup is below the fixed 0.05 nats
    (never a margin from the seeds' SD); a better tau is good; a diverged tau run is a miss, never dropped."""
    from methods.nowarmup.analysis import MARGIN, tau_band

    assert MARGIN == 0.05
    ref = [_run("warmup", 0.1, s, 5.0 + 0.01 * s, unigram=None) for s in range(3)]
    taus = [RunInfo(None, "adamw2", 0.1, s, tau, "ok", None, v + 0.01 * s + 0.002 * (s == 1), 16)
            for tau, v in ((0.01, 4.5), (0.1, 5.0), (1.0, 5.5)) for s in range(3)]
    band = tau_band(taus, ref)
    assert band["per_tau"]["0.01"]["good"] and band["per_tau"]["0.1"]["good"] and not band["per_tau"]["1.0"]["good"]
    assert band["per_tau"]["1.0"]["shown_worse"]
    assert band["log2_band_width"] == pytest.approx(math.log2(0.1 / 0.01))
    taus[0] = RunInfo(None, "adamw2", 0.1, 0, 0.01, "diverged", 40, None, 16)
    band = tau_band(taus, ref)
    assert not band["per_tau"]["0.01"]["good"] and band["per_tau"]["0.01"]["missed"] == 1
    assert band["log2_band_width"] == 0.0  # 0.1 alone
    assert not tau_band(taus[3:6], ref[:2])["per_tau"]["0.1"]["good"]  # 2 seeds: no interval, nothing shown


def test_prereg_crash_interval_counts_divergence_and_survives_a_near_miss():
    from methods.nowarmup.analysis import height, prereg_crash

    line = UNIGRAM - STALL_MARGIN
    warm = [_run("warmup", 0.1, s, line - 0.2 - 0.03 * s) for s in range(3)]
    clear = [_run("nowarmup", 0.1, s, line + 0.05 + 0.01 * s) for s in range(3)]
    other_lr = [_run("nowarmup", 0.3, s, line - 1.0) for s in range(3)]
    out = prereg_crash(warm + clear + other_lr, 0.1)
    assert out["n"] == 3 and out["crashed_nowarmup"] == 3 and out["crashed_warmup"] == 0
    assert out["ci_lo"] > 0 and out["warmup_ci_hi"] < 0 and out["estimate"] == pytest.approx(0.06)
    # the smoke numbers: one seed 0.002 nats over the line -> the interval reaches below it
    near = [_run("nowarmup", 0.1, s, line + h) for s, h in enumerate((0.035, 0.002, 0.02))]
    out = prereg_crash(warm + near, 0.1)
    assert out["ci_lo"] < 0 < out["ci_hi"]
    # a diverged run is a crash at the plateau's height, not dropped
    div = _run("nowarmup", 0.1, 3, None, "diverged")
    assert height(div) == STALL_MARGIN
    assert prereg_crash(warm + clear + [div], 0.1)["n"] == 4
    # two seeds: no interval
    out = prereg_crash(warm + clear[:2], 0.1)
    assert out["n"] == 2 and math.isnan(out["ci_lo"]) and math.isnan(out["ci_hi"])


def test_sigma_growth_pairs_by_seed_and_keeps_diverged_values():
    from methods.nowarmup.analysis import sigma_growth

    def probed(arm, seed, sig, status="ok"):
        r = _run(arm, 0.1, seed, 5.0, status)
        r.rows = [{"step": 0, "attn/qk_sigma1_max": 1.0}, {"step": 20, "attn/qk_sigma1_max": sig},
                  {"step": 50, "attn/qk_sigma1_max": 1e9 if status == "diverged" else sig}]  # after diverged_at
        return r

    runs = [probed("warmup", s, 2.0) for s in range(3)]
    runs += [probed("nowarmup", s, 40.0 * (1 + 0.1 * s), "diverged") for s in range(3)]
    out = sigma_growth(runs, 0.1)
    assert out["n"] == 3 and 10 < out["ci_lo"] < out["estimate"] < out["ci_hi"] < 100
    assert sigma_growth(runs[:2] + runs[3:5], 0.1)["n"] == 2 and math.isnan(sigma_growth(runs[:2] + runs[3:5],
                                                                                       0.1)["ci_lo"])


def test_cost_reads_the_speed_suite_only(tmp_path):
    from methods.nowarmup.analysis import cost_from_speed

    assert math.isnan(cost_from_speed(None)["estimate"])
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"methods": [{"method": "lrm", "overhead_wall": 0.06},
                                             {"method": "adamw2", "overhead_wall": 0.039, "overhead_cpu": 0.04}]}))
    out = cost_from_speed(str(speed))
    assert out["estimate"] == 0.039 and math.isnan(out["ci_lo"]) and math.isnan(out["ci_hi"])


def test_malignant_writes_n():
    runs = [_run("nowarmup", 0.1, s, UNIGRAM) for s in range(3)] + [_run("warmup", 0.1, s, 1.0) for s in range(3)]
    assert malignant(runs, n_boot=10)["n"] == 6


def test_malignant_placebo_splits_stable_runs_at_lr_crash():
    def probed(lr: float, erank: float) -> RunInfo:
        row = {"step": 100, "attn/entropy_min": 0.1, "attn/head_entropy/L0H0": 0.1, "attn/head_erank/L0H0": erank}
        return RunInfo(Path(f"r{lr}-{erank}"), "warmup", lr, 0, None, "ok", None, UNIGRAM - 1, 16, [row],
                       unigram=UNIGRAM)

    runs = [probed(0.3, 1.0), probed(0.3, 1.1), probed(0.1, 1.2), probed(0.03, 8.0), probed(0.03, 9.0)]
    out = malignant(runs, n_boot=200, lr_crash=0.1)
    assert out["crashed_runs"] == 0 and out["placebo"]["n"] == 5 and out["placebo"]["estimate"] == 1.0
    assert len(out["placebo"]["runs"]) == 5 and "placebo" not in malignant(runs, n_boot=10)
