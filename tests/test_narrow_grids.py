"""`claimbench plan` reports, before training, a claim whose LR grid puts a recorded optimum on its edge."""

import json

from claimbench.grid import expand
from methods.flerm.checks import narrow_grids


def _grid(lrs):
    x1, x2 = {"width": 32}, {"width": 64}
    return {"studies": {"w": {"kind": "width", "base": "b", "across": "model", "scales": [1, 2], "values": [x1, x2]}},
            "grid": [{"name": "flerm:b:base", "config": "benchmarks/configs/mlp.yaml", "workload": "mlp",
                      "size": "smoke", "seeds": [0], "set": {"model": x1}, "sweep": {"train.lr": lrs}},
                     {"name": "flerm:w:fl", "config": "benchmarks/configs/mlp.yaml", "workload": "mlp",
                      "size": "smoke", "seeds": [0], "sweep": {"model": [x2], "train.lr": lrs}}]}


def _record(runs, grid, loss):
    for rid, spec in expand(grid["grid"]).items():
        sets = dict(s.split("=", 1) for s in spec.sets)
        lr = float(sets["train.lr"])
        (runs / rid).mkdir(parents=True)
        (runs / rid / "result.json").write_text(json.dumps({"status": "ok", "final_train_loss": loss(lr, sets)}))


def test_an_optimum_on_the_top_edge_names_claim_arm_scale_and_edge(tmp_path):
    claims = {"w": ["flerm.cx"]}
    lrs = [1e-3, 2e-3, 4e-3, 8e-3]
    grid = _grid(lrs)
    # the base's optimum is interior (2e-3), the x2 FLeRM arm's keeps falling to the top LR
    _record(tmp_path / "runs", grid, lambda lr, s: (1 + abs(lr - 2e-3)) if '"width": 32' in s.get("model", "")
            else 1 / lr)
    lines = narrow_grids(grid, claims, tmp_path / "runs", None)
    assert lines == ["flerm.cx: arm fl, scale x2: the optimum is at the highest LR of the grid (0.008) over 1 "
                     "recorded seed(s): extend train.lr up"]
    # a grid one step wider whose new point is not trained yet: the recorded optimum is no longer on its edge
    assert narrow_grids(_grid([*lrs, 1.6e-2]), claims, tmp_path / "runs", None) == []
