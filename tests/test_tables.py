"""Studies, verdicts and tables from run files on disk: every verdict path (a diverged seed and a
truncated result.json included), lm-eval scores, sweeps, provenance, links, and `claimbench tables`."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
import yaml

from claimbench.claims import load_all, load_file
from claimbench.cli import main
from claimbench.figures import figures_dir, write_figures
from claimbench.study import run_study
from claimbench.synthetic import write_run
from claimbench.tables import build_studies, write_tables


def arm(lr: float, seeds=(0, 1, 2), **extra) -> dict:
    return {"workload": "gpt", "size": "micro", "recipes": ["adamw"], "seeds": list(seeds),
            "set": {"train.lr": lr}, **extra}


def diff_claim(cid: str, lr_a: float, lr_b: float, **stat) -> dict:
    return {"id": f"toy.{cid}", "statement": f"claim {cid} of the toy paper", "source": "Table 1",
            "paper_value": {"value": -0.5, "unit": "nats", "setting": "toy"},
            "ours": {"rule": "toy threshold"},
            "grid": {"smoke": {"a": arm(lr_a), "b": arm(lr_b)}},
            "statistic": {"kind": "difference", "arms": ["a", "b"], "metric": "final_val_loss", **stat},
            "rule": {"reproduced_if": "ci_hi < 0", "not_reproduced_if": "ci_lo > 0"}}


TOY = {
    "paper": {"id": "toy", "title": "A toy paper", "arxiv": "2501.00001"},
    "claims": [
        diff_claim("better", 1e-3, 2e-3),
        diff_claim("worse", 3e-3, 4e-3),
        diff_claim("noisy", 5e-3, 6e-3),
        diff_claim("diverged", 7e-3, 8e-3),
        diff_claim("missing", 9e-3, 1e-2),
        diff_claim("truncated", 1.1e-2, 1.2e-2),
        {"id": "toy.crash", "statement": "No warmup crashes the toy model.", "source": "text",
         "paper_value": {"value": "crash", "setting": "toy"},
         "grid": {"smoke": {"nowu": arm(2e-2, seeds=(0, 1, 2)), "wu": arm(3e-2, seeds=(0, 1, 2))}},
         "statistic": {"kind": "diverged_fraction", "arms": ["nowu", "wu"]},
         "rule": {"reproduced_if": "diverged_frac_nowu >= 2/3 and diverged_frac_wu == 0",
                  "not_reproduced_if": "diverged_frac_nowu == 0"}},
        {"id": "toy.downstream", "statement": "The method raises task accuracy.", "source": "Table 2",
         "paper_value": {"value": 0.01, "setting": "toy"},
         "grid": {"smoke": {"m": arm(4e-2), "base": arm(5e-2)}},
         "statistic": {"kind": "difference", "arms": ["m", "base"], "metric": "lm_eval:toytask:acc",
                       "direction": "higher", "chance": 0.25},
         "rule": {"reproduced_if": "ci_lo > 0", "not_reproduced_if": "ci_hi < 0",
                  "cannot_judge_at": {"gpu": "not at gpu"}}},
        {"id": "toy.law", "statement": "The law picks the best schedule.", "source": "abstract",
         "paper_value": {"value": 0.94, "setting": "toy"},
         "grid": {"smoke": {"a": arm(1e-3)}},
         "statistic": {"kind": "from_file", "path": "{results}/analysis/toy.json", "key": "laws.x.hit_rate",
                       "values": {"low": "laws.x.wilson_low"},
                       "ci_keys": ["laws.x.wilson_low", "laws.x.wilson_high"]},
         "rule": {"reproduced_if": "estimate >= 0.75 and low > 0.3", "not_reproduced_if": "estimate < 0.6"}},
        {"id": "toy.transfer", "statement": "The optimal LR moves by less than one octave with width.",
         "source": "Fig. 3", "paper_value": {"value": 0, "unit": "log2", "setting": "toy"},
         "grid": {"smoke": {"fl": {"workload": "gpt", "size": "micro", "recipes": ["adamw"], "seeds": [0],
                                   "sweep": {"model.n_embd": [32, 64], "train.lr": [1e-3, 2e-3, 4e-3, 8e-3]}}}},
         "statistic": {"kind": "optimum_shift", "arms": ["fl"], "metric": "final_val_loss", "over": "train.lr",
                       "across": "model.n_embd"},
         "rule": {"reproduced_if": "max_abs_shift_fl <= 1", "not_reproduced_if": "max_abs_shift_fl > 2"}},
    ],
}


@pytest.fixture
def toy(tmp_path):
    cdir, runs = tmp_path / "claims", tmp_path / "runs"
    cdir.mkdir()
    (cdir / "toy.yaml").write_text(yaml.safe_dump(TOY, sort_keys=False))
    claims = {c.id: c for c in load_file(cdir / "toy.yaml")}

    def fill(cid: str, values: dict[str, list], **kw):
        for a, specs in claims[cid].arms("smoke").items():
            for (rid, _), v in zip(sorted(specs.items()), values[a], strict=True):
                if v == "diverged":
                    write_run(runs / rid, status="diverged", curve=[3.0, 5.0, math.inf], **kw)
                elif isinstance(v, dict):
                    write_run(runs / rid, final_val_loss=2.0, lm_eval=v, **kw)
                else:
                    write_run(runs / rid, final_val_loss=v, curve=[4.0, 3.0, v], **kw)

    fill("toy.better", {"a": [1.0, 1.1, 0.9], "b": [2.0, 2.2, 1.9]})
    fill("toy.worse", {"a": [3.0, 3.1, 2.9], "b": [2.0, 2.1, 1.95]}, git_sha="def456")
    fill("toy.noisy", {"a": [1.0, 3.0, 2.0], "b": [2.0, 1.0, 2.9]})
    rid = sorted(claims["toy.noisy"].arms("smoke")["b"])[0]
    write_run(runs / rid, final_val_loss=2.0, curve=[4.0, 3.0, 2.0], git_sha="fff999")  # other code version
    fill("toy.diverged", {"a": [1.0, "diverged", 0.9], "b": [2.0, 2.1, 1.9]})
    fill("toy.truncated", {"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1, 1.9]})
    rid = sorted(claims["toy.truncated"].arms("smoke")["a"])[0]
    text = (runs / rid / "result.json").read_text()
    (runs / rid / "result.json").write_text(text[: len(text) // 2])  # a half-written file
    fill("toy.crash", {"nowu": ["diverged", "diverged", 3.0], "wu": [2.5, 2.6, 2.4]})
    fill("toy.downstream", {"m": [{"toytask": {"acc,none": a}} for a in (0.40, 0.42, 0.41)],
                            "base": [{"toytask": {"acc,none": a}} for a in (0.30, 0.31, 0.29)]})
    for rid, spec in claims["toy.transfer"].arms("smoke")["fl"].items():
        sets = dict(s.split("=", 1) for s in spec.sets)
        lr, width = float(sets["train.lr"]), int(sets["model.n_embd"])
        best = 2e-3 if width == 32 else 4e-3  # the optimum moves one octave
        write_run(runs / rid, final_val_loss=2.0 + (math.log2(lr) - math.log2(best)) ** 2 / 10)
    return claims, runs, tmp_path / "results"


def _study(claims, runs, results, cid, profile="smoke"):
    return run_study(claims[cid], profile, runs, results)


def test_each_verdict_path(toy):
    claims, runs, results = toy
    s = _study(claims, runs, results, "toy.better")
    assert s["verdict"] == "reproduced" and s["values"]["paired"] and s["ci"][1] < 0
    assert s["estimate"] == pytest.approx(1.0 - 2.0333333, abs=1e-6)
    assert _study(claims, runs, results, "toy.worse")["verdict"] == "not_reproduced"
    noisy = _study(claims, runs, results, "toy.noisy")
    assert noisy["verdict"] == "inconclusive" and noisy["ci"][0] < 0 < noisy["ci"][1]
    missing = _study(claims, runs, results, "toy.missing")
    assert missing["verdict"] == "not_run" and "0/6 runs present" in missing["why"]


def test_a_diverged_seed_counts_as_a_miss(toy):
    s = _study(*toy, "toy.diverged")
    assert s["values"]["diverged_a"] == 1 and s["estimate"] == "inf"
    assert s["verdict"] == "not_reproduced"  # an infinite loss is worse, never dropped
    crash = _study(*toy, "toy.crash")
    assert crash["verdict"] == "reproduced" and crash["values"]["diverged_frac_nowu"] == pytest.approx(2 / 3)


def test_truncated_result_json_is_a_warning_and_a_missing_run(toy):
    claims, runs, results = toy
    with pytest.warns(UserWarning, match="result.json: corrupt"):
        s = _study(claims, runs, results, "toy.truncated")
    assert s["verdict"] == "not_run" and "5/6 runs present" in s["why"] and "corrupt result.json" in s["why"]


def test_corrupt_metrics_line_is_named(toy, tmp_path):
    claims, runs, results = toy
    rid = sorted(claims["toy.better"].arms("smoke")["a"])[0]
    with open(runs / rid / "metrics.jsonl", "a") as f:
        f.write("{not json}\n{\"step\": 99}\n")
    s = _study(claims, runs, results, "toy.better")
    with pytest.warns(UserWarning, match="metrics.jsonl: line 4 is corrupt"):
        write_figures([s], list(claims.values()), results)


def test_no_generic_figure_with_more_curves_than_colours(toy, tmp_path):
    from claimbench.figures import MAX_CURVES, claim_figure

    claims, runs, results = toy
    s = _study(claims, runs, results, "toy.better")
    assert claim_figure(s, claims["toy.better"], tmp_path) is not None
    run = next(iter(s["runs"].values()))[0]
    s["runs"] = {f"arm{i}": [run] for i in range(MAX_CURVES + 1)}
    assert claim_figure(s, claims["toy.better"], tmp_path / "many") is None


def test_lm_eval_scores_and_scale_rule(toy):
    s = _study(*toy, "toy.downstream")
    assert s["verdict"] == "reproduced" and s["estimate"] == pytest.approx(0.11, abs=1e-9)
    g = run_study(toy[0]["toy.downstream"], "gpu", toy[1], toy[2])
    assert g["verdict"] == "not_run" and "no grid" in g["why"]


def test_from_file_statistic_reads_an_analysis_output(toy):
    claims, runs, results = toy
    s = _study(claims, runs, results, "toy.law")
    assert s["verdict"] == "not_run" and "analysis output missing" in s["why"]
    (results / "analysis").mkdir(parents=True)
    (results / "analysis" / "toy.json").write_text(
        '{"laws": {"x": {"hit_rate": 0.8, "wilson_low": 0.45, "wilson_high": 0.96}}}')
    s = _study(claims, runs, results, "toy.law")
    assert s["verdict"] == "reproduced" and s["values"]["low"] == 0.45
    claims["toy.law"].statistic = {k: v for k, v in claims["toy.law"].statistic.items() if k != "ci_keys"}
    s = _study(claims, runs, results, "toy.law")  # a number without its interval decides nothing
    assert s["verdict"] == "inconclusive" and "no interval" in s["why"]
    (results / "analysis" / "toy.json").write_text('{"laws": {}}')
    with pytest.warns(UserWarning, match="no usable value at 'laws.x.hit_rate'"):
        assert _study(claims, runs, results, "toy.law")["verdict"] == "not_run"


def test_from_file_key_indexes_lists():
    from claimbench.study import _dig

    data = {"studies": {"w": {"score": 1, "best": [0.5, -0.25]}}}
    assert _dig(data, "studies.w.score") == 1.0
    assert _dig(data, "studies.w.best.-1") == -0.25 and _dig(data, "studies.w.best.0") == 0.5
    with pytest.raises(IndexError):
        _dig(data, "studies.w.best.2")


def test_optimum_shift_from_a_sweep(toy):
    s = _study(*toy, "toy.transfer")
    assert s["values"]["shift_fl"] == pytest.approx(1.0) and s["values"]["resolution"] == pytest.approx(1.0)
    assert s["verdict"] == "reproduced"


def test_tables_and_figures(toy):
    claims, runs, results = toy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        studies = build_studies(list(claims.values()), "smoke", runs, results)
        drawn = {"toy.better", "toy.diverged", "toy.transfer", "toy.missing"}
        figs = write_figures([s for s in studies if s["claim"] in drawn], list(claims.values()), results)
        write_tables(studies, list(claims.values()), results, "smoke")
    df = pd.read_csv(results / "claims.csv")
    assert list(df["claim"]) == list(claims)
    assert dict(zip(df["claim"], df["verdict"], strict=True))["toy.better"] == "reproduced"
    md = (results / "claims.md").read_text()
    assert all(cid in md for cid in claims)
    assert "**Mixed code versions**" in md  # toy.worse ran from another commit
    rid = sorted(claims["toy.better"].arms("smoke")["a"])[0]
    assert f"(../runs/{rid})" in md  # rows link to their run directories
    page = (results / "toy.md").read_text()
    assert "## toy.better: reproduced" in page and "*rule*: toy threshold" in page
    code = dict(zip(df["claim"], df["code"], strict=True))
    assert code["toy.worse"] == "def456" and code["toy.noisy"] == "MIXED: abc123, fff999"
    assert figures_dir(results) / "toy.better.png" in figs and "toy.missing" not in {p.stem for p in figs}
    assert "![toy.better](figures/claims/toy.better.png)" in page


def test_claimbench_tables_lists_every_claim_of_all_papers(tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    code = main(["tables", "--profile", "smoke", "--runs-dir", str(runs), "--results-dir", str(results),
                 "--evidence-dir", str(tmp_path / "evidence"), "--no-figures"])
    assert code == 0
    df = pd.read_csv(results / "claims.csv")
    ids = [c.id for c in load_all()]
    assert list(df["claim"]) == ids and set(df["verdict"]) == {"not_run"}
    assert {"lrm", "nowarmup", "flerm", "optlaws", "jreg"} == set(df["paper"])
    assert all((results / f"{p}.md").is_file() for p in set(df["paper"]))
    assert f"{len(ids)} claims" in capsys.readouterr().out


def test_unregistered_plugin_is_not_run_naming_it(toy):
    claims, runs, results = toy
    c = claims["toy.better"]
    c.grid = {"smoke": {**c.grid["smoke"], "b": {**c.grid["smoke"]["b"], "methods": [["nosuchmethod"]]}}}
    (s,) = build_studies([c], "smoke", runs, results)
    assert s["verdict"] == "not_run" and s["why"] == "not implemented yet: method 'nosuchmethod'"


@pytest.mark.slow
def test_snakemake_tables_rule_lists_every_claim(tmp_path):
    """`snakemake tables` through the real Snakefile: no runs at this profile -> every claim not_run."""
    import os
    import subprocess
    import sys

    from claimbench.testing import REPO

    cfg = {"profile": "micro", "runs_dir": "runs/micro", "results_dir": "results", "threads_per_run": 1,
           "data": {"shakespeare": {"corpus": "shakespeare", "vocab_size": 512, "dir": "data/shakespeare"}},
           "grid": []}
    (tmp_path / "micro.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(tmp_path / "micro.yaml"), "--cores", "1", "tables"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_csv(tmp_path / "results" / "claims.csv")
    assert list(df["claim"]) == [c.id for c in load_all()] and set(df["verdict"]) == {"not_run"}
    bad = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(tmp_path / "micro.yaml"), "--cores", "1", "-n",
                          "--config", "papers=[nosuchpaper]"], capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode != 0 and "unknown paper 'nosuchpaper'" in bad.stdout + bad.stderr
