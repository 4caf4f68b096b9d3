"""The estimator comparison (claim 14): the Kronecker estimator's single-draw variance against the unbiased
full-covariance one, on the model and first update FLeRM is applied to.

Design (fixed before any draw was made): the base ResMLP of the grid entry `flerm:mlp:base` (its settings, without
the flerm method, at the entry's middle LR), one model per seed of that entry. Its first real optimizer step from
initialisation gives the per-unit-LR update (as FLeRM measures it at step 0; the model is restored afterwards); the
FSLR^2 of every weight matrix (2-D tensors: on a 1-D tensor the two estimators are the same formula) is then
estimated `DRAWS` times from one random projection each, on FLeRM's first estimator batch, by
 - `kronecker`, `full_cov`: the two estimators compared, from the same projections (paired draws);
 - `full_cov` again from fresh projections: the placebo, which must not look like "half the variance" of the first.
Per seed and matrix, the variance ratio Var(kronecker) / Var(full_cov) of the draws; per seed the largest ratio over
the matrices ("much lower variance" read for every matrix); the estimate is the mean over seeds with its 90% Student-t
interval over the per-seed values and n (the flerm stage's level: the one-sided 5% test of a band's edge). The
placebo ratio Var(full_cov, second set) / Var(full_cov) is aggregated the same way. The bias, reported and not
tested: per matrix mean(kronecker) / mean(full_cov) - 1, the largest |bias| per seed, mean over seeds.

Written by hand: no library estimates function-space learning rates; the statistics are methods/flerm/estimator.py's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from claimbench.config import load_config
from claimbench.grid import expand
from claimbench.tiers import load_grid
from methods.flerm.analysis import LEVEL, t_mean
from methods.flerm.estimator import combine, projection_products, statistics
from methods.flerm.method import FRESH_STEP
from methods.flerm.paper import ESTIMATOR_ENTRY as ENTRY

DRAWS = 2000
CHUNK = 250  # draws per vectorised backward


def _model_and_update(cfg_path: Path, sets: list[str], out: Path):
    """(model, workload, estimator batch, per-unit-LR update of every parameter) of one seed's run settings."""
    from claimbench.train import Trainer, prepare

    cfg = load_config(cfg_path, sets)
    t = Trainer(prepare(cfg, out))
    params = dict(t.model.named_parameters())
    old = {n: p.detach().clone() for n, p in params.items()}
    lr = {id(p): g["lr"] for g in t.optimizer.param_groups for p in g["params"]}
    t.train_step()
    with torch.no_grad():
        unit = {n: (p.detach() - old[n]) / lr[id(p)] for n, p in params.items()}
        for n, p in params.items():
            p.copy_(old[n])
    bs = cfg.train.batch_size // cfg.train.grad_accum
    batch = tuple(t.run.workload.train_batch(FRESH_STEP + 1, 0, bs))
    return t.model, t.run.workload, batch, unit


def single_draws(model, workload, batch, unit: dict[str, torch.Tensor], estimators: tuple[str, ...],
                 draws: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """estimator -> matrix -> FSLR^2 estimates from `draws` single projections (the same projections for every
    estimator listed; 2-D tensors only)."""
    mats = {n: u for n, u in unit.items() if u.dim() == 2}
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    got: dict[str, dict[str, list[float]]] = {e: {n: [] for n in mats} for e in estimators}
    with torch.enable_grad():
        out = workload.forward(model, batch, frozenset()).logits.float()
        done = 0
        while done < draws:
            c = min(CHUNK, draws - done)
            done += c
            us = projection_products(out, {n: params[n] for n in mats}, mats, gen, retain_graph=done < draws,
                                     draws=c)
            for n, u in us.items():
                for i in range(c):
                    for e in estimators:
                        got[e][n].append(combine(statistics(u[i], e), e, 2))
    return {e: {n: np.asarray(v) for n, v in per.items()} for e, per in got.items()}


def per_seed(draws: dict[str, dict[str, np.ndarray]], placebo: dict[str, np.ndarray]) -> dict:
    """One seed's numbers: per matrix the variance ratios and bias; the largest ratio / |bias| over matrices."""
    kron, full = draws["kronecker"], draws["full_cov"]
    rows = {n: {"var_ratio": float(np.var(kron[n], ddof=1) / np.var(full[n], ddof=1)),
                "placebo_ratio": float(np.var(placebo[n], ddof=1) / np.var(full[n], ddof=1)),
                "bias": float(kron[n].mean() / full[n].mean() - 1)} for n in kron}
    return {"matrices": rows, "var_ratio_max": max(r["var_ratio"] for r in rows.values()),
            "placebo_ratio_max": max(r["placebo_ratio"] for r in rows.values()),
            "abs_bias_max": max(abs(r["bias"]) for r in rows.values())}


def run(grid_file: Path, repo: Path, draws: int = DRAWS, data_dirs: dict[str, str] | None = None) -> dict:
    """`data_dirs`: data set name -> directory; default the grid's `data:` section, relative to `repo`."""
    grid = load_grid(grid_file)
    if data_dirs is None:
        data_dirs = {k: str(repo / v["dir"]) for k, v in (grid.get("data") or {}).items()}
    entry = next(e for e in grid["grid"] if e.get("name") == ENTRY)
    lrs = entry["sweep"]["train.lr"]
    middle = {**entry, "methods": [[]], "sweep": {"train.lr": [lrs[len(lrs) // 2]]}}
    seeds = {}
    for spec in sorted(expand([middle]).values(), key=lambda s: s.run_id):
        sets = [*spec.sets, f"data.dir={data_dirs[spec.data]}", "train.threads=1"]
        seed = int(next(s for s in spec.sets if s.startswith("seed=")).split("=")[1])
        with tempfile.TemporaryDirectory() as d:
            model, wl, batch, unit = _model_and_update(repo / spec.config, sets, Path(d))
            pair = single_draws(model, wl, batch, unit, ("kronecker", "full_cov"), draws, seed=2 * seed)
            again = single_draws(model, wl, batch, unit, ("full_cov",), draws, seed=2 * seed + 1)["full_cov"]
        seeds[str(seed)] = per_seed(pair, again)
    vals = list(seeds.values())
    return {"entry": ENTRY, "lr": middle["sweep"]["train.lr"][0], "draws": draws, "level": LEVEL,
            "var_ratio_kron_over_full": t_mean([s["var_ratio_max"] for s in vals]),
            "placebo_ratio": t_mean([s["placebo_ratio_max"] for s in vals]),
            "abs_bias_max": t_mean([s["abs_bias_max"] for s in vals]), "seeds": seeds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m methods.flerm.variance", description=__doc__.split("\n")[0])
    p.add_argument("--grid", required=True, help="the profile's flerm grid file (its `data:` names the data dirs)")
    p.add_argument("--out", required=True)
    p.add_argument("--draws", type=int, default=DRAWS)
    a = p.parse_args(argv)
    from claimbench.io import atomic_write_json
    from claimbench.testing import REPO

    torch.set_num_threads(1)
    res = run(Path(a.grid), REPO, a.draws)
    atomic_write_json(Path(a.out), res)
    print(json.dumps({k: res[k] for k in ("var_ratio_kron_over_full", "placebo_ratio", "abs_bias_max")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
