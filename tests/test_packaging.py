"""Packaging agrees with itself: environment.yml vs pyproject.toml, README vs .ci/run."""

from __future__ import annotations

import tomllib

import yaml

from claimbench.testing import REPO


def _norm(req: str) -> str:
    return req.split(";")[0].strip().lower().replace("_", "-")


def test_environment_yml_lists_the_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_norm(r) for r in pip if not r.startswith("-")}
    assert listed == wanted


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "make reproduce" in readme
