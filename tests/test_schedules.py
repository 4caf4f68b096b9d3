"""Shapes of every LR schedule family (baselines/schedules.py): the laws and the trainer share them."""

from __future__ import annotations

import math

import pytest

from baselines import schedules as S


def _vals(f, total):
    return [f(s) for s in range(total)]


def test_warmup_is_linear_and_nonzero_at_step0():
    f = S.cosine(100, warmup=10)
    assert f(0) == pytest.approx(0.1)
    assert f(4) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1.0)


def test_constant_is_flat_after_warmup():
    assert set(_vals(S.constant(50, warmup=5), 50)[5:]) == {1.0}


def test_cosine_ends_at_min_ratio_and_is_monotone():
    v = _vals(S.cosine(200, warmup=20, min_ratio=0.1), 201)
    assert v[20] == pytest.approx(1.0)
    assert v[200] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(v[20:], v[21:], strict=False))
    assert v[110] == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2


def test_linear_decays_to_zero():
    v = _vals(S.linear(101, warmup=1, min_ratio=0.0), 102)
    assert v[51] == pytest.approx(0.5)
    assert v[101] == pytest.approx(0.0)


@pytest.mark.parametrize("decay", ["linear", "exp"])
def test_wsd_stable_then_decay(decay):
    f = S.wsd(100, warmup=10, min_ratio=0.01, decay_frac=0.2, decay=decay)
    v = _vals(f, 100)
    assert set(v[10:80]) == {1.0}
    assert v[99] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(v[80:], v[81:], strict=False))
    mid = v[80 + 19 // 2 + 1]
    if decay == "linear":
        assert mid == pytest.approx(1 - 0.99 * 10 / 19)
    else:  # exponential: geometric interpolation, far below the linear midpoint
        assert mid == pytest.approx(0.01 ** (10 / 19))
        assert S.wsd_exp(100, 10, 0.01, 0.2)(90) == f(90)


def test_wsd_default_is_unchanged_linear():
    assert S.wsd(100, 0, 0.0, 0.2)(90) == S.wsd(100, 0, 0.0, 0.2, decay="linear")(90)


def test_two_stage_jumps_once():
    f = S.two_stage(100, warmup=5, second_ratio=0.3, switch_frac=0.6)
    v = _vals(f, 100)
    assert set(v[5:60]) == {1.0} and set(v[60:]) == {0.3}


def test_multi_step_drops_by_gamma_at_each_milestone():
    f = S.multi_step(100, warmup=0, milestones=(0.5, 0.75), gamma=0.1)
    assert (f(49), f(50), f(74), f(75), f(99)) == pytest.approx((1.0, 0.1, 0.1, 0.01, 0.01))


def test_inverse_sqrt():
    f = S.inverse_sqrt(1000, warmup=25)
    assert f(25) == pytest.approx(1.0)
    assert f(100) == pytest.approx(0.5)
    assert f(400) == pytest.approx(0.25)


def test_piecewise_interpolates_and_holds_last():
    f = S.piecewise([(0, 1.0), (10, 0.5), (20, 0.0)])
    assert (f(5), f(10), f(15), f(25)) == pytest.approx((0.75, 0.5, 0.25, 0.0))


@pytest.mark.parametrize("name,kw", [("wsd_exp", {"min_ratio": 0.01}), ("two_stage", {}), ("inverse_sqrt", {}),
                                     ("multi_step", {}), ("cosine", {})])
def test_to_piecewise_reproduces_the_family(name, kw):
    total, warm = 400, 20
    f = S.family(name, total, warm, **kw)
    g = S.piecewise(S.to_piecewise(f, total, warmup=warm, tol=0.01), warm)
    worst = max(abs(f(s) - g(s)) for s in range(total))
    assert worst < 0.011, (name, worst)
    if name in ("two_stage", "multi_step"):  # jumps are exact
        assert worst == pytest.approx(0.0, abs=1e-6)


def test_unknown_family():
    with pytest.raises(ValueError, match="unknown schedule family"):
        S.family("cosin", 10)


def test_from_train_config_keeps_existing_behaviour():
    from claimbench.config import TrainConfig

    t = TrainConfig(steps=100, warmup_steps=10, schedule="wsd", min_lr_ratio=0.0, decay_frac=0.2)
    assert S.from_train_config(t)(90) == S.wsd(100, 10, 0.0, 0.2)(90)
    t = TrainConfig(steps=100, warmup_steps=0, schedule=[(0, 1.0), (50, 0.2)])
    assert S.from_train_config(t)(75) == pytest.approx(0.2)
    assert not math.isnan(S.from_train_config(TrainConfig())(0))
