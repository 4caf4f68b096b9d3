"""The claims registry: every paper's file validates; a typo is one line naming the file and key;
selecting a paper whose plugins are missing fails before training; claims share runs with the profile grid."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from claimbench.claims import CLAIMS_DIR, load_all, load_file, select_grid
from claimbench.config import ConfigError
from claimbench.grid import expand
from claimbench.testing import REPO

PAPERS = {"lrm": "2601.04890", "nowarmup": "2505.21910", "flerm": "2502.17405", "optlaws": "2409.04777",
          "jreg": "2601.18302"}

GOOD = {
    "paper": {"id": "toy", "title": "A toy paper", "arxiv": "2501.00001"},
    "claims": [{
        "id": "toy.c1", "statement": "Warmup lowers the final loss.", "source": "Table 1",
        "paper_value": {"value": -0.1, "unit": "nats", "setting": "toy"},
        "grid": {"smoke": {"a": {"workload": "gpt", "size": "micro", "recipes": ["adamw"], "seeds": [0, 1]},
                           "b": {"workload": "gpt", "size": "micro", "recipes": ["adamw_nowarmup"], "seeds": [0, 1]}}},
        "statistic": {"kind": "difference", "arms": ["a", "b"], "metric": "final_val_loss"},
        "rule": {"reproduced_if": "ci_hi < 0", "not_reproduced_if": "ci_lo > 0"},
    }],
}


def _write(tmp_path: Path, doc: dict, name: str = "toy") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _bad(tmp_path: Path, edit) -> str:
    doc = copy.deepcopy(GOOD)
    edit(doc)
    with pytest.raises(ConfigError) as e:
        load_file(_write(tmp_path, doc))
    msg = str(e.value)
    assert "\n" not in msg and "toy.yaml" in msg
    return msg


def test_every_paper_has_its_claims_file():
    claims = load_all()
    by_paper = {c.paper["id"]: c.paper for c in claims}
    assert {p: v["arxiv"] for p, v in by_paper.items()} == PAPERS
    counts = {p: sum(c.paper["id"] == p for c in claims) for p in PAPERS}
    assert all(n >= 8 for n in counts.values()), counts
    assert len({c.id for c in claims}) == len(claims)
    for c in claims:
        # every claim names the runs that test it at some profile, or says under ours.grid why it has none yet
        # (a plugin that cannot serve it: shown as not_run, and selecting the paper never trains for it)
        assert c.grid or "not run" in c.ours.get("grid", ""), c.id


def test_good_file_loads(tmp_path):
    (c,) = load_file(_write(tmp_path, GOOD))
    assert c.id == "toy.c1" and c.paper["arxiv"] == "2501.00001"
    assert set(c.arms("smoke")) == {"a", "b"} and len(c.arms("smoke")["a"]) == 2
    assert c.arms("gpu") == {}


def test_typo_names_file_key_and_suggestion(tmp_path):
    msg = _bad(tmp_path, lambda d: d["claims"][0].__setitem__("statment", d["claims"][0].pop("statement")))
    assert "'statment'" in msg and "did you mean 'statement'" in msg and "toy.c1" in msg


def test_missing_key_wrong_value_and_bad_arxiv(tmp_path):
    assert "'rule'" in _bad(tmp_path, lambda d: d["claims"][0].pop("rule"))
    assert "kind" in _bad(tmp_path, lambda d: d["claims"][0]["statistic"].__setitem__("kind", "medain"))
    assert "arxiv" in _bad(tmp_path, lambda d: d["paper"].__setitem__("arxiv", "not-an-id"))
    msg = _bad(tmp_path, lambda d: d["claims"][0]["grid"].__setitem__("smok", d["claims"][0]["grid"]["smoke"]))
    assert "smok" in msg


def test_cross_checks_a_schema_cannot_express(tmp_path):
    msg = _bad(tmp_path, lambda d: d["claims"][0]["statistic"].__setitem__("arms", ["a", "c"]))
    assert "arm 'c'" in msg and "grid.smoke" in msg
    msg = _bad(tmp_path, lambda d: d["claims"][0]["rule"].__setitem__("reproduced_if", "ci_hii < 0"))
    assert "unknown name 'ci_hii'" in msg and "did you mean 'ci_hi'" in msg
    msg = _bad(tmp_path, lambda d: d["claims"][0]["rule"].__setitem__("reproduced_if", "__import__('os')"))
    assert "not allowed" in msg
    msg = _bad(tmp_path, lambda d: d["claims"][0]["statistic"].__setitem__("metric", "lm_eval:hellaswag"))
    assert "lm_eval:<task>:<metric>" in msg
    msg = _bad(tmp_path, lambda d: d["claims"][0].__setitem__("id", "other.c1"))
    assert "must start with 'toy.'" in msg
    msg = _bad(tmp_path, lambda d: d["claims"][0]["rule"].__setitem__("reproduced_if", "estimate < paper_effect"))
    assert "paper_effect" in msg


def test_yaml_syntax_error_names_the_file(tmp_path):
    p = tmp_path / "toy.yaml"
    p.write_text("paper: {id: toy\nclaims: [")
    with pytest.raises(ConfigError, match="toy.yaml: not valid YAML"):
        load_file(p)


def test_selecting_papers_fails_early_on_unknown_names(tmp_path):
    with pytest.raises(ConfigError, match="unknown paper 'nowarmp' \\(did you mean 'nowarmup'\\?\\)"):
        select_grid(["nowarmp"], "smoke")
    doc = copy.deepcopy(GOOD)
    doc["claims"][0]["grid"]["smoke"]["b"]["methods"] = [["adamw3"]]
    claims = load_file(_write(tmp_path, doc))
    with pytest.raises(ConfigError, match="method 'adamw3'"):
        select_grid(["toy"], "smoke", claims=claims)
    doc = copy.deepcopy(GOOD)
    doc["claims"][0]["grid"]["smoke"]["b"]["methods"] = [[{"name": "zloss", "coef": 1e-4, "typo": 1}]]
    claims = load_file(_write(tmp_path, doc))
    with pytest.raises(ConfigError, match="toy.c1: grid.smoke.b: methods\\[0\\] \\(zloss\\)"):
        select_grid(["toy"], "smoke", claims=claims)
    doc = copy.deepcopy(GOOD)
    doc["claims"][0]["grid"]["smoke"]["b"]["data"] = "wikitext"
    claims = load_file(_write(tmp_path, doc))
    with pytest.raises(ConfigError, match="'wikitext' is not a data set"):
        select_grid(["toy"], "smoke", ["shakespeare"], claims=claims)


def test_selected_grid_is_the_claims_runs_shared_and_deduplicated(tmp_path):
    claims = load_file(_write(tmp_path, GOOD))
    entries = select_grid(["toy", "toy"], "smoke", ["shakespeare"], claims=claims)
    runs = expand(entries)
    assert len(entries) == 4 and len(runs) == 4  # the same paper twice: its runs once


def test_nowarmup_crash_claim_reuses_the_smoke_profile_runs():
    # the crash-study claims read the probed runs of the plugin's own grid (config/papers/nowarmup.smoke.yaml)
    grid = yaml.safe_load((REPO / "config" / "papers" / "nowarmup.smoke.yaml").read_text())
    paper_runs = set(expand(grid["grid"]))
    by_id = {c.id: c for c in load_all(CLAIMS_DIR)}
    for cid in ("nowarmup.crash", "nowarmup.sigma_growth", "nowarmup.sec_concentration", "nowarmup.parity_gpt",
                "nowarmup.malignant_collapse", "nowarmup.adamw2_sigma", "nowarmup.adamw2_sec",
                "nowarmup.adamw2_collapse", "nowarmup.cost"):
        claim_runs = {rid for specs in by_id[cid].arms("smoke").values() for rid in specs}
        assert claim_runs and claim_runs <= paper_runs, cid
    # tau_band's tau 1.0 runs are in the cpu tier only (config/papers/nowarmup.cpu.yaml): nothing at smoke
    cpu_runs = set(expand(yaml.safe_load((REPO / "config" / "papers" / "nowarmup.cpu.yaml").read_text())["grid"]))
    assert not by_id["nowarmup.tau_band"].arms("smoke")
    tau_runs = {rid for specs in by_id["nowarmup.tau_band"].arms("cpu").values() for rid in specs}
    assert tau_runs and tau_runs <= paper_runs | cpu_runs


@pytest.mark.parametrize("paper", ["lrm", "flerm"])
def test_claims_share_the_runs_of_the_papers_own_grid(paper):
    """A claim of a paper with its own grid (config/papers/<paper>.<profile>.yaml) trains nothing beyond it."""
    from claimbench.papers import discover

    for profile in ("smoke", "cpu", "gpu"):
        paper_runs = set(expand(discover()[paper].grid_config(profile)["grid"]))
        for c in (c for c in load_all(CLAIMS_DIR) if c.paper["id"] == paper):
            claim_runs = {rid for specs in c.arms(profile).values() for rid in specs}
            assert claim_runs <= paper_runs, (c.id, profile)


def test_from_file_claims_read_a_file_the_dag_makes():
    """Each from_file claim with runs reads a file one of the rules or papers' stages writes (so its study job can
    wait for it), or the speed suite's output, which is run by hand (an input once it is there, else not_run)."""
    import inspect
    import sys

    from claimbench import papers

    sources = [Path(inspect.getfile(sys.modules[p.dag.__module__])) for p in papers.discover().values() if p.dag]
    rules = "\n".join(p.read_text() for p in [*(REPO / "rules").glob("*.smk"), *sources])
    for c in load_all(CLAIMS_DIR):
        if c.statistic["kind"] != "from_file" or not c.grid or c.statistic["path"] == "{speed}":
            continue
        name = Path(c.statistic["path"]).name
        assert name in rules or name.removesuffix(".json") in rules, (c.id, name)


def test_interior_premise_names_grid_arms_and_a_sweep_key(tmp_path):
    """An interior-optimum premise says which arms need their optimum inside the grid and over which sweep key
    (`interior: {arms, over}`): both checked against every profile's grid, so a grid check can read it."""
    def premise(interior):
        return lambda d: d["claims"][0].__setitem__("premises", [{"name": "optimum inside the grid",
                                                                  "holds_if": "n_a >= 0", "interior": interior}])

    def sweep(d):
        for arm in d["claims"][0]["grid"]["smoke"].values():
            arm["sweep"] = {"train.lr": [1e-3, 2e-3, 4e-3]}

    doc = copy.deepcopy(GOOD)
    sweep(doc)
    premise({"arms": ["a", "b"], "over": "train.lr"})(doc)
    assert load_file(_write(tmp_path, doc))[0].premises[0]["interior"]["arms"] == ["a", "b"]
    msg = _bad(tmp_path, lambda d: (sweep(d), premise({"arms": ["a", "c"], "over": "train.lr"})(d)))
    assert "interior.arms: 'c'" in msg and "grid.smoke" in msg
    msg = _bad(tmp_path, lambda d: (sweep(d), premise({"arms": ["a"], "over": "train.steps"})(d)))
    assert "interior.over: 'train.steps'" in msg
