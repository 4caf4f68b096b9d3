"""How long `claimbench tables` takes to rebuild every table and figure from 200 runs (target: < 10 s).

Synthetic run files (claimbench.synthetic) in the stable format: 16 two-arm claims of 5 seeds per arm
(160 runs) and one LR-transfer claim sweeping 2 widths x 4 LRs x 5 seeds (40 runs). With every run present
no plugin module is imported (the registry is consulted only to explain missing runs); the time a cold plugin
discovery would add (imports of torch, timm and every plugin; once per process) is printed apart.

    .venv/bin/python scripts/speed/bench_tables.py
"""

from __future__ import annotations

import math
import random
import tempfile
import time
import warnings
from pathlib import Path

import yaml

from claimbench import registry
from claimbench.claims import load_file
from claimbench.figures import write_figures
from claimbench.synthetic import write_run
from claimbench.tables import build_studies, write_tables

N_PAIRS, SEEDS = 16, 5


def claims_doc() -> dict:
    claims = []
    for i in range(N_PAIRS):
        arm = {"workload": "gpt", "size": "micro", "recipes": ["adamw"], "seeds": list(range(SEEDS))}
        claims.append({"id": f"bench.c{i}", "statement": f"benchmark claim {i}", "source": "synthetic",
                       "paper_value": {"value": -0.1, "setting": "synthetic"},
                       "grid": {"smoke": {"a": {**arm, "set": {"train.lr": 1e-3 * (2 * i + 1)}},
                                          "b": {**arm, "set": {"train.lr": 1e-3 * (2 * i + 2)}}}},
                       "statistic": {"kind": "difference", "arms": ["a", "b"], "metric": "final_val_loss"},
                       "rule": {"reproduced_if": "ci_hi < 0", "not_reproduced_if": "ci_lo > 0"}})
    claims.append({"id": "bench.transfer", "statement": "benchmark LR transfer", "source": "synthetic",
                   "paper_value": {"value": 0, "setting": "synthetic"},
                   "grid": {"smoke": {"fl": {"workload": "gpt", "size": "micro", "recipes": ["adamw"],
                                             "seeds": list(range(SEEDS)),
                                             "sweep": {"model.n_embd": [32, 64],
                                                       "train.lr": [1e-3, 2e-3, 4e-3, 8e-3]}}}},
                   "statistic": {"kind": "optimum_shift", "arms": ["fl"], "metric": "final_val_loss",
                                 "over": "train.lr", "across": "model.n_embd"},
                   "rule": {"reproduced_if": "max_abs_shift_fl <= 1", "not_reproduced_if": "max_abs_shift_fl > 2"}})
    return {"paper": {"id": "bench", "title": "Synthetic benchmark paper", "arxiv": "2501.00002"}, "claims": claims}


def main() -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bench.yaml").write_text(yaml.safe_dump(claims_doc(), sort_keys=False))
        claims = load_file(tmp / "bench.yaml")
        n = 0
        for c in claims:
            for specs in c.arms("smoke").values():
                for rid in specs:
                    final = 2.0 + rng.gauss(0, 0.05)
                    curve = [2.0 + 3.0 * math.exp(-k / 8) + rng.gauss(0, 0.02) for k in range(30)] + [final]
                    write_run(tmp / "runs" / rid, final_val_loss=final, curve=curve, steps=300)
                    n += 1
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            studies = build_studies(claims, "smoke", tmp / "runs", tmp / "results")
            t2 = time.perf_counter()
            figs = write_figures(studies, claims, tmp / "results")
            t3 = time.perf_counter()
            tables = write_tables(studies, claims, tmp / "results", "smoke")
            t4 = time.perf_counter()
        used_registry = registry._discovered
        registry.discover()
        t5 = time.perf_counter()
        print(f"{n} runs, {len(claims)} claims: studies {t2 - t1:.2f} s, {len(figs)} figures {t3 - t2:.2f} s, "
              f"{len(tables)} tables {t4 - t3:.2f} s; total {t4 - t1:.2f} s (plugins imported: {used_registry}; "
              f"a cold plugin discovery, paid only when runs are missing, takes {t5 - t4:.2f} s)")


if __name__ == "__main__":
    main()
