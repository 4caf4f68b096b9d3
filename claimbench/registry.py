"""Name -> class registries for workloads, recipes and methods (timm/lm-eval style).

The core never imports a plugin by name: it imports every module of the in-repo packages
(`benchmarks.workloads`, `baselines`, `methods`), every `claimbench.methods` entry point and the
method modules every registered paper declares (claimbench/papers.py), and each module registers
itself with a decorator.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from claimbench.config import ConfigError, closest

T = TypeVar("T")

WORKLOADS: dict[str, Any] = {}
RECIPES: dict[str, Any] = {}
METHODS: dict[str, Any] = {}
_KINDS = {"workload": WORKLOADS, "recipe": RECIPES, "method": METHODS}
_PACKAGES = ("benchmarks.workloads", "baselines", "methods")
ENTRY_POINT_GROUP = "claimbench.methods"
_discovered = False


def _register(kind: str, name: str) -> Callable[[T], T]:
    table = _KINDS[kind]

    def deco(obj: T) -> T:
        if name in table and table[name] is not obj:
            raise ValueError(f"{kind} {name!r} registered twice ({table[name]} and {obj})")
        table[name] = obj
        obj.name = name  # type: ignore[attr-defined]
        return obj

    return deco


def register_workload(name: str):
    return _register("workload", name)


def register_recipe(name: str):
    return _register("recipe", name)


def register_method(name: str):
    return _register("method", name)


def discover() -> None:
    """Import every in-repo plugin module and every installed entry point, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for pkg_name in _PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__, pkg_name + "."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if ep.name not in METHODS:
            register_method(ep.name)(obj)
    from claimbench.papers import method_modules

    for module in method_modules():  # the methods a registered paper declares (claimbench.papers entry points)
        importlib.import_module(module)


def get(kind: str, name: str) -> Any:
    discover()
    table = _KINDS[kind]
    if name not in table:
        hint = closest(name, table)
        raise ConfigError(f"unknown {kind} '{name}'" + (f" (did you mean '{hint}'?)" if hint else "")
                          + f"; known: {', '.join(sorted(table))}")
    return table[name]


def names(kind: str) -> list[str]:
    discover()
    return sorted(_KINDS[kind])
