"""The statistic registry: a claim's statistic is looked up by name, a paper's own statistic registers from its
package and is found by plugin discovery, and an unknown name is one line naming the known ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from claimbench import statistics
from claimbench.config import ConfigError
from claimbench.study import compute, output_names

CORE = Path(__file__).resolve().parents[1] / "claimbench"


def test_core_statistics_and_tests_are_registered_by_name():
    assert {"mean", "difference", "ratio", "diverged_fraction", "best_of_sweep", "optimum_shift",
            "from_file"} <= set(statistics.STATISTICS)
    from claimbench import hypotheses as H

    assert H.TESTS is statistics.TESTS
    assert set(H.TESTS) == {"directional", "equivalence", "noninferiority", "hit_rate", "interval"}


def test_a_paper_statistic_is_found_through_discovery():
    """`trend` is jreg's: methods.jreg registers it; the core reaches it only through registry.discover()."""
    assert statistics.statistic("trend").name == "trend"
    assert "per_seed" in output_names({"kind": "trend", "arm": "base", "metric": "metrics:jreg/jump"})
    for f in CORE.glob("*.py"):
        assert not re.search(r"^\s*(from|import) methods\b", f.read_text(), re.M), f


def test_a_registered_statistic_computes_and_names_its_outputs():
    @statistics.register_statistic("toy_count", arm_values=False, needs_metric=False,
                                   outputs=lambda stat, per_arm: {"estimate", "ci_lo", "ci_hi"})
    def toy(stat, evidence, grid, paths, arm_vals, out):
        n = sum(len(rows) for rows in evidence.values())
        return {"estimate": float(n), "ci_lo": float(n), "ci_hi": float(n)}

    try:
        assert output_names({"kind": "toy_count"}) == {"estimate", "ci_lo", "ci_hi"}
        out = compute({"kind": "toy_count"}, {"a": []}, {}, {})
        assert out["estimate"] == 0.0 and out["diverged_a"] == 0
    finally:
        statistics.STATISTICS.pop("toy_count")


def test_unknown_statistic_is_one_line_with_a_hint():
    with pytest.raises(ConfigError, match="unknown statistic 'diference' \\(did you mean 'difference'\\?\\)"):
        statistics.statistic("diference")
