"""The import layers hold (pyproject's [tool.importlinter] contracts), and `claimbench --help` stays light:
it lists the subcommands packages contribute without importing them (or torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from claimbench.testing import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.is_file():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_import_contracts_hold():
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_the_contracts_catch_each_kind_of_violation(tmp_path):
    """The same contracts over a small tree that breaks each: the core importing a plugin, one paper
    importing another, and two sibling modules importing each other."""
    files = {
        "claimbench/__init__.py": "",
        "claimbench/claims.py": "from claimbench import study\n",
        "claimbench/study.py": "from claimbench import claims\n",
        "claimbench/cli.py": "import methods.jreg.metric\n",
        "benchmarks/__init__.py": "",
        "baselines/__init__.py": "",
        "methods/__init__.py": "",
        "methods/jreg/__init__.py": "",
        "methods/jreg/metric.py": "",
        "methods/optlaws/__init__.py": "",
        "methods/optlaws/cli.py": "from methods.jreg import metric\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    r = _lint(tmp_path, "--contract", "core", "--contract", "papers", "--contract", "acyclic")
    assert r.returncode != 0
    out = r.stdout
    assert "claimbench.cli -> methods.jreg.metric" in out
    assert "methods.optlaws.cli -> methods.jreg.metric" in out
    assert "No cycles are allowed in claimbench" in out
    assert "0 kept, 3 broken" in out


def _help_in_subprocess() -> dict:
    code = textwrap.dedent("""
        import contextlib, io, json, sys
        from claimbench.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main(["--help"])
            except SystemExit:
                pass
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "methods", "benchmarks", "baselines")
                       and m not in ("methods", "benchmarks", "baselines"))
        print(json.dumps({"help": out.getvalue(), "heavy": heavy}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_help_lists_the_contributed_commands_without_importing_them():
    res = _help_in_subprocess()
    for name in ("jump", "law", "lm-eval-data", "train", "tables"):
        assert f"\n    {name} " in res["help"], name
    assert "hidden-state jump profile" in res["help"]
    assert res["heavy"] == [], res["heavy"]  # no torch, no plugin module: only the package __init__ files


def test_each_declared_command_loads_and_adds_its_parser():
    import argparse

    from claimbench import registry

    cmds = registry.commands()
    assert {"jump": "methods.jreg.cli:register", "law": "methods.optlaws.cli:register",
            "lm-eval-data": "benchmarks.cli:register_lm_eval_data"}.items() <= {
                n: c.target for n, c in cmds.items()}.items()
    for name, cmd in cmds.items():
        sub = argparse.ArgumentParser().add_subparsers()
        cmd.load()(sub)
        assert name in sub.choices, f"{cmd.target} did not add '{name}'"


def test_a_malformed_command_table_is_an_error(tmp_path):
    from claimbench.registry import declared_commands

    (tmp_path / "cli.py").write_text('COMMANDS = {"x": "help without a function"}\n')
    with pytest.raises(ValueError, match="COMMANDS must be a literal"):
        declared_commands(tmp_path / "cli.py")
    (tmp_path / "cli.py").write_text('"""no commands here"""\n')
    assert declared_commands(tmp_path / "cli.py") == {}
