"""Paper manifests (claimbench/papers.py): the in-repo papers are registered in one place each, and a paper from
outside the repository (tests/fixtures/toy_paper, registered by entry point metadata in a temp directory) goes
through the real Snakefile to a verdict in the tables with no file of the repository edited."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from claimbench import papers
from claimbench.claims import CLAIMS_DIR
from claimbench.testing import REPO

FIXTURE = REPO / "tests" / "fixtures" / "toy_paper"
IN_REPO = {"flerm", "jreg", "lrm", "nowarmup", "optlaws"}


def test_every_in_repo_paper_is_one_manifest():
    registered = papers.discover()
    assert IN_REPO <= set(registered)
    assert {p.stem for p in CLAIMS_DIR.glob("*.yaml")} == IN_REPO
    for pid in IN_REPO:
        p = registered[pid]
        assert p.claims_file == CLAIMS_DIR / f"{pid}.yaml" and p.dag is not None and p.methods


def test_the_dag_names_no_paper():
    """The Snakefile and rules/ build the DAG from the manifests: no paper id, no per-paper rules file."""
    assert not any((REPO / "rules" / f"{pid}.smk").exists() for pid in IN_REPO)
    for f in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:
        code = "\n".join(ln.split("#")[0] for ln in f.read_text().splitlines())
        for pid in IN_REPO:
            assert not re.search(rf"\b{pid}\b", code, re.IGNORECASE), (f.name, pid)
        assert "ruleorder" not in code and "use rule train" not in code, f.name


def install_toy(site: Path) -> None:
    """The toy paper as an installed distribution would be: its package plus a dist-info with the entry point."""
    shutil.copytree(FIXTURE / "toy_paper", site / "toy_paper")
    info = site / "toy_paper-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-paper\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[claimbench.papers]\ntoy = toy_paper.paper:PAPER\n")


def toy_env(site: Path) -> dict:
    path = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


TOY_CONFIG = {
    "profile": "paper", "runs_dir": "runs/paper", "results_dir": "results", "evidence_dir": "evidence",
    "threads_per_run": 1, "warm": False, "grid": [], "papers": ["toy"],
    "data": {},  # the paper brings its own data set (its grid's `data:`)
}


def snakemake(workdir: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "--configfile", str(workdir / "toy.yaml"), "--cores", "2",
                           *args], capture_output=True, text=True, env=toy_env(site), timeout=900)


@pytest.fixture
def toy(tmp_path):
    install_toy(tmp_path / "site")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "toy.yaml").write_text(yaml.safe_dump(TOY_CONFIG))
    return tmp_path / "work", tmp_path / "site"


def test_a_paper_from_outside_plans_its_runs_stage_and_claim(toy):
    work, site = toy
    r = snakemake(work, site, "-n")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert out.count("rule train:") == 4 and "rule toy_analysis:" in out
    assert "rule prepare_data:" in out and "data/toy_text/train.bin" in out  # the paper's own data source
    assert "results/studies/toy.lower_lr_trains_slower.json" in out


@pytest.mark.slow
def test_a_paper_from_outside_gets_a_verdict(toy):
    work, site = toy
    status = ["git", "status", "--porcelain", "--untracked-files=all", "--", "Snakefile", "rules", "config",
              "claimbench", "benchmarks", "results", "runs"]
    before = subprocess.run(status, cwd=REPO, capture_output=True, text=True).stdout
    r = snakemake(work, site)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = yaml.safe_load((work / "results" / "analysis" / "toy" / "summary.json").read_text())
    assert set(summary["loss"]) == {"base", "scaled"}
    assert yaml.safe_load((work / "data" / "toy_text" / "meta.json").read_text())["train_tokens"] > 0
    claims = pd.read_csv(work / "results" / "claims.csv")
    row = claims[claims["claim"] == "toy.lower_lr_trains_slower"].iloc[0]
    assert row["verdict"] in {"reproduced", "not_reproduced", "inconclusive"}, row.to_dict()
    assert (work / "results" / "toy.md").is_file()
    # the second stage ran its own command (a stage loop once ran the last stage's command for every stage)
    assert (work / "results" / "analysis" / "toy" / "summary.md").read_text().startswith("# toy\n\ngap ")
    after = subprocess.run(status, cwd=REPO, capture_output=True, text=True).stdout
    assert after == before  # nothing of the repository was written (runs, results, evidence all under WORK)


def test_a_claim_arm_names_an_entry_of_its_papers_grid(tmp_path):
    """`{entry: NAME}` is the paper's own grid entry (one source); keys beside it replace the entry's."""
    from claimbench.claims import load_file
    from claimbench.config import ConfigError
    from claimbench.grid import expand

    doc = yaml.safe_load((CLAIMS_DIR / "optlaws.yaml").read_text())
    grid = yaml.safe_load((REPO / "config" / "papers" / "optlaws.smoke.yaml").read_text())["grid"]
    claims = {c.id: c for c in load_file(CLAIMS_DIR / "optlaws.yaml")}
    arms = claims["optlaws.c1_top2"].arms("smoke")
    assert set(arms["constant"]) == set(expand([grid[0]]))  # the first entry named optlaws:constant
    assert len(arms["constant_repeats"]) == 2 and set(arms["constant_repeats"]) < set(expand([grid[1]]))
    doc["claims"][0]["grid"]["smoke"]["constant"] = {"entry": "optlaws:constnt"}
    bad = tmp_path / "optlaws.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"grid\.smoke\.constant\.entry: no grid entry 'optlaws:constnt'.*"
                                          r"did you mean 'optlaws:constant'"):
        load_file(bad)
