"""Tiers: a profile that extends another trains its runs plus its own, and reads its claims' arms by fallback."""

from pathlib import Path

import pytest

from claimbench.claims import load_all
from claimbench.config import ConfigError
from claimbench.tiers import chain, load_grid, paths


def test_cpu_tier_extends_smoke():
    assert chain("cpu") == ("smoke", "cpu")
    assert chain("smoke") == ("smoke",)


def test_extends_loop_is_one_clear_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ConfigError, match="loops"):
        chain("a", tmp_path)


def test_grid_include_puts_the_base_entries_first(tmp_path):
    (tmp_path / "p.smoke.yaml").write_text("data: {d: {dir: x}}\ngrid:\n  - {name: a}\n")
    (tmp_path / "p.cpu.yaml").write_text("include: [p.smoke.yaml]\ndata: {e: {dir: y}}\ngrid:\n  - {name: b}\n")
    g = load_grid(tmp_path / "p.cpu.yaml")
    assert [e["name"] for e in g["grid"]] == ["a", "b"]
    assert set(g["data"]) == {"d", "e"}
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_grid(tmp_path / "nope.yaml")


def test_a_claim_without_cpu_arms_reads_its_smoke_arms():
    claims = load_all()
    plain = [c for c in claims if "smoke" in c.grid and "cpu" not in c.grid]
    assert plain, "some claim has smoke arms only"
    c = plain[0]
    assert c.arms("cpu").keys() == c.arms("smoke").keys()
    assert {r for a in c.arms("cpu").values() for r in a} == {r for a in c.arms("smoke").values() for r in a}


def test_the_cpu_tier_shares_the_smoke_speed_file():
    assert paths("cpu", "results/cpu", "runs/smoke")["speed"] == "results/speed/smoke.json"
    assert paths("smoke", "results", "runs/smoke")["speed"] == "results/speed/smoke.json"
    assert Path(paths("gpu", "results/gpu", "runs/gpu")["speed"]) == Path("results/gpu/speed/gpu.json")


def test_an_undecided_claim_without_a_seed_count_says_why():
    from types import SimpleNamespace

    from claimbench.judge import _no_plan

    hits = SimpleNamespace(test={"kind": "hit_rate", "alpha": 0.05})
    line = _no_plan(hits, {"chance": [0.37, 0.37, 0.37]})
    assert "at least 4 cases" in line and "it has 3" in line  # 0.37^3 = 0.051 >= 0.05, 0.37^4 < 0.05
    assert "per-seed" in _no_plan(SimpleNamespace(test={"kind": "interval"}), {})
