"""Multi-Power Law: exact schedules of the published curves' names, the release's fitting procedure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from methods.optlaws import LAWS
from methods.optlaws.base import Units
from methods.optlaws.curves import CurveError, named_lrs, named_schedule, read_csv
from methods.optlaws.multipower import MultiPower
from methods.optlaws.report import MPL_FIT, mpl_comparison_markdown, mpl_release_comparison

CURVES = Path(__file__).resolve().parents[2] / "shared" / "data" / "multipower_curves"
needs_curves = pytest.mark.skipif(not CURVES.is_dir(), reason="published MPL curves not present")
PEAK, END, W = 3e-4, 3e-5, 2160
# the release's published 25M parameters [L0, A, alpha, B, C, beta, gamma], raw units (its README)
RAW_25M = [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257]


def _hand(name: str) -> np.ndarray:
    """The schedule as the release's loader spells it out."""
    warm = np.linspace(0, PEAK, W)
    if name == "cosine_24000":
        s = np.arange(W, 24000)
        return np.concatenate([warm, END + 0.5 * (PEAK - END) * (1 + np.cos(np.pi * (s - W) / (24000 - W)))])
    if name == "wsdcon_9":
        return np.concatenate([warm, np.full(8000 - W, PEAK), np.full(8000, 9e-5)])
    if name == "wsd_20000_24000":
        s = np.arange(20000, 24000)
        decay = PEAK ** ((24000 - s) / 4000) * END ** ((s - 20000) / 4000)
        return np.concatenate([warm, np.full(20000 - W, PEAK), decay])
    raise KeyError(name)


@pytest.mark.parametrize("name", ["cosine_24000", "wsdcon_9", "wsd_20000_24000"])
def test_named_schedule_equals_the_hand_built_one(name):
    lrs, hand = named_lrs(name, PEAK), _hand(name)
    assert len(lrs) == len(hand)
    np.testing.assert_allclose(lrs, hand, rtol=1e-12, atol=1e-18)
    assert lrs[0] == 0 and lrs[W - 1] == pytest.approx(PEAK) and lrs[1] == pytest.approx(PEAK / (W - 1))


def _write(tmp_path: Path, name: str, lrs: np.ndarray, every: int = 128, start: int = 2176) -> Path:
    steps = np.arange(start, len(lrs), every)
    p = tmp_path / f"{name}.csv"
    p.write_text("step,lr,loss\n" + "".join(f"{s},{float(lrs[s])!r},{4 - s / 1e5}\n" for s in steps))
    return p


def test_a_csv_named_after_its_schedule_gets_the_step_drop_and_the_warmup(tmp_path):
    hand = _hand("wsdcon_9")
    p = _write(tmp_path, "wsdcon_9", hand)
    exact, logged = read_csv(p), read_csv(p, schedule="logged")
    assert exact.meta["lr_source"] == "exact: schedule wsdcon_9"
    np.testing.assert_allclose(exact.lrs, hand, rtol=1e-12, atol=1e-18)
    assert exact.lrs[7999] == pytest.approx(PEAK) and exact.lrs[8000] == pytest.approx(9e-5)  # a jump
    assert logged.lrs[7999] < PEAK and logged.lrs[8000] > 9e-5  # interpolation makes it a ramp
    assert logged.meta["lr_source"].startswith("interpolated")
    # a name passed by the caller works on any file name
    other = _write(tmp_path, "run7", hand)
    assert read_csv(other).meta["lr_source"].startswith("interpolated from the logged lr column ('run7' names no")
    np.testing.assert_allclose(read_csv(other, schedule="wsdcon_9").lrs, hand, rtol=1e-12, atol=1e-18)


def test_a_name_that_disagrees_with_the_log_falls_back_and_says_so(tmp_path):
    p = _write(tmp_path, "cosine_24000", _hand("wsd_20000_24000"))
    c = read_csv(p)
    assert c.meta["lr_source"].startswith("interpolated from the logged lr column (schedule cosine_24000 "
                                          "disagrees with the logged lr at step 2")
    with pytest.raises(CurveError, match="schedule cosine_24000 disagrees with the logged lr at step 2"):
        read_csv(p, schedule="cosine_24000")  # a name the caller insists on must fit the log


@pytest.mark.parametrize("bad", ["cosine_fast", "warmup_100", "wsd_24000_20000", "cosine"])
def test_a_bad_schedule_name_is_a_one_line_error_naming_it(tmp_path, bad):
    p = _write(tmp_path, "x", _hand("cosine_24000"))
    with pytest.raises(CurveError) as e:
        read_csv(p, schedule=bad)
    assert f"unknown schedule name {bad!r}" in str(e.value) and "\n" not in str(e.value)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("law,bad", [("multipower", "fast"), ("annealing", "release")])
def test_a_bad_fit_option_is_a_one_line_error_naming_it(law, bad):
    c = named_schedule("constant_24000", PEAK, steps=[3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000])
    c.loss = np.linspace(3.6, 3.4, 8)
    with pytest.raises(ValueError) as e:
        LAWS[law].fit([c], fit=bad)
    assert f"unknown fit option {bad!r}" in str(e.value) and "\n" not in str(e.value)


def _synthetic(names, every: int = 1024) -> dict:
    """Curves that follow the Multi-Power Law exactly (the release's 25M parameters), logged every `every` steps."""
    out = {}
    for n in names:
        lrs = named_lrs(n, PEAK)
        c = named_schedule(n, PEAK, steps=np.arange(2176, len(lrs), every))
        law = MultiPower.from_raw(RAW_25M, Units(PEAK, 24000.0))
        c.loss = law.predict(c)
        out[n] = c
    return out


def test_release_fit_is_selectable_deterministic_and_stops_early():
    curves = _synthetic(MPL_FIT, every=2048)
    fit = [curves[n] for n in MPL_FIT]
    a, b = LAWS["multipower"].fit(fit, fit="release"), LAWS["multipower"].fit(fit, fit="release", seed=5)
    assert a.params == b.params and a.info["fit"] == "release"
    assert a.info["steps"] <= 200 and a.info["stopped"]
    conv = LAWS["multipower"].fit(fit)
    assert conv.info["fit"] == "converged" and conv.params != a.params
    # the raw parameters and the law's normalised ones describe the same curve
    again = MultiPower.from_raw(a.info["raw_params"], Units.of(fit))
    np.testing.assert_allclose(again.predict(fit[0]), a.predict(fit[0]), rtol=1e-12)


def test_comparison_on_curves_that_follow_the_law(tmp_path):
    """On noiseless curves of the law itself, the converged fit on exact schedules predicts them closely (its
    fit bins the LR changes into fewer blocks than the curves were made with, hence not exactly)."""
    d = tmp_path / "synthetic"
    d.mkdir()
    held = ("wsd_20000_24000", "wsdcon_3")  # a small case: two held-out curves, none of 72k steps
    for n, c in _synthetic(MPL_FIT + held, every=2048).items():
        (d / f"{n}.csv").write_text("step,lr,loss\n" + "".join(
            f"{s},{float(c.lrs[s])!r},{float(v)!r}\n" for s, v in zip(c.steps, c.loss, strict=True)))
    res = mpl_release_comparison({"synthetic": d}, held=held)
    rows = res["synthetic"]
    assert rows["ours, converged fit, exact schedules"]["max"] < 1e-3
    assert rows["ours, release procedure, exact schedules"]["info"]["fit"] == "release"
    assert set(rows["ours, converged fit, interpolated LR"]["rel"]) == set(held)
    assert "| ours, release procedure, exact schedules |" in mpl_comparison_markdown(res)


@needs_curves
def test_release_procedure_finds_the_release_parameters_on_the_published_curves():
    """fit='release' on the 25M curves lands near the parameters the release publishes for them."""
    from methods.optlaws.curves import read_csv_dir

    curves = read_csv_dir(CURVES / "25")
    law = LAWS["multipower"].fit([curves[n] for n in MPL_FIT], fit="release")
    raw = law.info["raw_params"]
    for k, ref, tol in zip(("L0", "A", "alpha", "B", "C", "beta", "gamma"), RAW_25M,
                           (0.005, 0.01, 0.01, 0.01, 0.05, 0.03, 0.03), strict=True):
        assert raw[k] == pytest.approx(ref, rel=tol), k
