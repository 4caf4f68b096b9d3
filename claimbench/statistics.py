"""Statistics and tests by name (lm-eval style): a claim's `statistic.kind` and `test.kind` look up here.

A statistic turns a claim's runs into named values (`compute`) and says, before any run is read, which names
it produces (`outputs`), so the claims loader can reject a rule or premise that reads a name it never writes.
The suite's own statistics register in `claimbench.study`; a paper's own statistic registers from its package
(`methods/<paper>/...`) with `register_statistic` and is found through `claimbench.registry.discover()`, so the
core never imports a plugin by name. Test kinds (`claimbench.hypotheses`) register with `register_test`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from claimbench.config import ConfigError, closest


@dataclass(frozen=True)
class Statistic:
    name: str
    # (stat, evidence, grid, paths, arm_vals, out) -> the statistic's values, added to `out` (per-arm values and
    # misses are already there)
    compute: Callable[..., dict]
    outputs: Callable[[dict, set[str]], set[str]]  # (stat, per-arm names) -> names a rule may read
    arm_values: bool = True  # reads one metric value per run (summarized per arm)
    needs_metric: bool = True  # a usable run without a value of `statistic.metric` is missing


STATISTICS: dict[str, Statistic] = {}
TESTS: dict[str, Callable[..., Any]] = {}


def register_statistic(name: str, outputs: Callable[[dict, set[str]], set[str]], arm_values: bool = True,
                       needs_metric: bool = True):
    """Register `fn(stat, evidence, grid, paths, arm_vals, out) -> dict` as the statistic `name`."""
    def deco(fn):
        if name in STATISTICS and STATISTICS[name].compute is not fn:
            raise ValueError(f"statistic {name!r} registered twice")
        STATISTICS[name] = Statistic(name, fn, outputs, arm_values, needs_metric)
        return fn
    return deco


def register_test(name: str):
    """Register a test kind: `fn(test, ...) -> hypotheses.Outcome`."""
    def deco(fn):
        TESTS[name] = fn
        return fn
    return deco


def statistic(name: str) -> Statistic:
    """The statistic `name`: the core's, else a paper's (found by discovering the plugins)."""
    if name not in STATISTICS:
        from claimbench import registry

        registry.discover()
    if name not in STATISTICS:
        hint = closest(name, STATISTICS)
        raise ConfigError(f"unknown statistic '{name}'" + (f" (did you mean '{hint}'?)" if hint else "")
                          + f"; known: {', '.join(sorted(STATISTICS))}")
    return STATISTICS[name]
