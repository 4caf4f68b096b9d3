"""Name -> class registries for workloads, recipes and methods (timm/lm-eval style).

The core never imports a plugin by name: it imports every module of the in-repo packages
(`benchmarks.workloads`, `baselines`, `methods`), every `claimbench.methods` entry point and the
method modules every registered paper declares (claimbench/papers.py), and each module registers
itself with a decorator.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from claimbench.config import ConfigError, closest

T = TypeVar("T")

WORKLOADS: dict[str, Any] = {}
RECIPES: dict[str, Any] = {}
METHODS: dict[str, Any] = {}
# data sources (registered by benchmarks.data, also imported by discover): name -> prepare(source, out, **options)
# -> meta, what `claimbench prepare-data NAME[:ARG]` runs
DATA: dict[str, Any] = {}
_KINDS = {"workload": WORKLOADS, "recipe": RECIPES, "method": METHODS, "data": DATA}
_PACKAGES = ("benchmarks.workloads", "benchmarks.data", "baselines", "methods")
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


def register_data(name: str):
    """A data source (`shakespeare`, `cifar10`, ...): `prepare(source, out, **options) -> meta`."""
    return _register("data", name)


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


# Subcommands ---------------------------------------------------------------------------------------------
# Found without importing their package (a plugin's `__init__` may import torch): a `cli.py` at the top of an
# in-repo package or one level below it declares `COMMANDS = {name: (help, function)}`, read as a literal, and
# the module is imported only when that command runs; installed packages add `name = "module:function"` to the
# `claimbench.commands` entry-point group.

COMMAND_GROUP = "claimbench.commands"
_COMMAND_PACKAGES = ("benchmarks", "baselines", "methods")  # their __init__ modules import nothing heavy


@dataclass(frozen=True)
class Command:
    """A subcommand contributed by a package: `target` ("module:function") adds its parser when it runs."""

    name: str
    help: str
    target: str

    def load(self) -> Callable[[Any], None]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


COMMANDS: dict[str, Command] = {}
_commands_discovered = False


def register_command(name: str, help: str, target: str) -> None:
    """`claimbench NAME` runs `target` ("module:function"; function(subparsers) adds the parser and sets `fn`)."""
    cmd = Command(name, help, target)
    if name in COMMANDS and COMMANDS[name] != cmd:
        raise ValueError(f"command {name!r} registered twice ({COMMANDS[name].target} and {target})")
    COMMANDS[name] = cmd


def declared_commands(cli_file: str | Path) -> dict[str, tuple[str, str]]:
    """The `COMMANDS = {name: (help, function)}` literal of a cli.py, read without importing it."""
    path = Path(cli_file)
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in node.targets):
            table = ast.literal_eval(node.value)
            ok = isinstance(table, dict) and all(
                isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, str) for x in v) for v in table.values())
            if not ok:
                raise ValueError(f"{path}: COMMANDS must be a literal {{name: (help, function)}}")
            return table
    return {}


def commands() -> dict[str, Command]:
    """Every contributed subcommand, found without importing the modules that implement them."""
    global _commands_discovered
    if not _commands_discovered:
        _commands_discovered = True
        for pkg_name in _COMMAND_PACKAGES:
            pkg = importlib.import_module(pkg_name)
            for root in map(Path, pkg.__path__):
                for cli in sorted([root / "cli.py", *root.glob("*/cli.py")]):
                    if not cli.is_file():
                        continue
                    module = ".".join([pkg_name, *cli.relative_to(root).with_suffix("").parts])
                    for name, (help, function) in declared_commands(cli).items():
                        register_command(name, help, f"{module}:{function}")
        for ep in entry_points(group=COMMAND_GROUP):
            if ep.name not in COMMANDS:
                register_command(ep.name, f"(from {ep.dist.name})" if ep.dist else "", ep.value)
    return COMMANDS
