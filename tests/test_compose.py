"""Methods compose: every pair of registered methods (and each method with the Muon recipe, an optimizer of its own)
trains together for a few steps on the GPT micro workload (and on ViT micro where both support it), or is refused
before training by a declared conflict (Method.replaces / stands_in_for / conflicts / after, Recipe.optimizer):
one line naming both, exit 2, nothing written.

Parametrized from the registry, so a new method is paired with every other one without editing this file. Pairs
run in the registry's (sorted) order; a pair with a declared order (`after`) also runs in the other order.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from benchmarks.data.images import micro_image_dir
from claimbench import registry
from claimbench.config import ConfigError, load_config
from claimbench.plugin import Method, composition_error, validate_options
from claimbench.testing import REPO, micro_data_dir, micro_overrides
from claimbench.train import execute, prepare

METHODS = registry.names("method")
OPTIMIZER_RECIPES = ["muon"]  # recipes whose optimizer is not AdamW, paired with every method
# options that only make a pair cheaper (fewer estimator passes), never change what composes
CHEAP = {"flerm": {"warmup_passes": 2}}


def _usable(name: str) -> bool:
    """A method that runs on its default options (one that needs options is left to its own tests)."""
    try:
        validate_options(registry.get("method", name).Options, {}, name)
    except ConfigError:
        return False
    return True


def _supports(name: str, workload: str) -> bool:
    wl = registry.get("method", name).workloads
    return wl is None or workload in wl


def _cases(workload: str) -> list:
    names = [n for n in METHODS if _usable(n) and _supports(n, workload)]
    cases = []
    for a, b in itertools.combinations(names, 2):
        cases.append(pytest.param((a, b), "adamw", id=f"{a}+{b}"))
        ca, cb = registry.get("method", a), registry.get("method", b)
        if a in cb.after or b in ca.after:  # a declared order: the other order too
            cases.append(pytest.param((b, a), "adamw", id=f"{b}+{a}"))
    cases += [pytest.param((m,), r, id=f"{r}+{m}") for r in OPTIMIZER_RECIPES for m in names]
    return cases


def _entry(name: str) -> dict:
    return {"name": name, **CHEAP.get(name, {})}


def _config(workload: str, methods: list, recipe: str = "adamw"):
    data = micro_data_dir() if workload == "gpt" else micro_image_dir()
    return load_config(None, [
        f"workload={workload}", "size=micro", f"data.dir={data}", f"methods={json.dumps(methods)}",
        f"recipe.name={recipe}", "train.steps=2", "train.batch_size=2", "train.warmup_steps=0", "train.threads=1",
        "log.every=1", "eval.every=0", "eval.batches=1", "ckpt.every=0"], base={})


def _run_pair(tmp_path: Path, workload: str, names: tuple[str, ...], recipe: str) -> None:
    """The pair trains to `ok` or `diverged`, or prepare() refuses it with exactly the declared one-line conflict
    (naming both plugins) and writes nothing."""
    out = tmp_path / "run"
    cfg = _config(workload, [_entry(n) for n in names], recipe)
    declared = composition_error([registry.get("method", n) for n in names], registry.get("recipe", recipe))
    if declared is not None:
        assert "\n" not in declared
        for n in (*names, recipe) if len(names) == 1 else names:
            assert f"'{n}'" in declared
        with pytest.raises(ConfigError) as e:
            prepare(cfg, out)
        assert str(e.value) == declared
        assert not out.exists()
        return
    assert execute(prepare(cfg, out)) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] in ("ok", "diverged"), result.get("error")
    assert result["steps"] >= 1


@pytest.mark.parametrize(("names", "recipe"), _cases("gpt"))
def test_pair_gpt(names: tuple[str, ...], recipe: str, tmp_path: Path) -> None:
    _run_pair(tmp_path, "gpt", names, recipe)


@pytest.mark.slow
@pytest.mark.parametrize(("names", "recipe"), _cases("vit"))
def test_pair_vit(names: tuple[str, ...], recipe: str, tmp_path: Path) -> None:
    _run_pair(tmp_path, "vit", names, recipe)


@pytest.mark.parametrize("first", ["lrm", "flerm"])
def test_scalar_multipliers_with_flerm(first: str, tmp_path: Path) -> None:
    """LRM's scalar multipliers are 0-d tensors: FLeRM measures them as 1-entry tensors (the reported crash)."""
    lrm = {"name": "lrm", "placement": "scalar", "final_norm": "scalar"}
    flerm = {"name": "flerm", "warmup_passes": 2, "every": 1, "estimator": "iid"}
    out = tmp_path / "run"
    assert execute(prepare(_config("gpt", [lrm, flerm] if first == "lrm" else [flerm, lrm]), out)) == 0
    assert json.loads((out / "result.json").read_text())["status"] == "ok"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = [k for k in rows[0] if k.startswith("flerm/fslr/") and k.endswith(".s")]
    assert scalars and all(rows[0][k] >= 0 for k in scalars)


def test_declared_conflicts(monkeypatch: pytest.MonkeyPatch) -> None:
    get = lambda n: registry.get("method", n)  # noqa: E731
    recipe = lambda n: registry.get("recipe", n)  # noqa: E731
    # an optimizer-replacing method with a recipe whose optimizer it does not stand in for
    for r in ("muon", "radam"):
        msg = composition_error([get("adamw2")], recipe(r))
        assert msg and "'adamw2'" in msg and f"'{r}'" in msg and "silently dropped" in msg
    for r in ("adamw", "adamw_nowarmup", "adamw_timm"):
        assert composition_error([get("adamw2")], recipe(r)) is None
    # two methods replacing the optimizer (one declared, one by overriding make_optimizer alone)

    class OtherOptimizer(Method):
        def make_optimizer(self, groups, train):
            return None

    OtherOptimizer.name = "other_opt"
    assert OtherOptimizer.replaced_parts() == {"optimizer"}
    msg = composition_error([get("adamw2"), OtherOptimizer], recipe("adamw"))
    assert msg == ("methods[0] 'adamw2' and methods[1] 'other_opt' cannot run together: both replace the optimizer "
                   "(only one can)")
    assert composition_error([get("adamw2"), get("adamw2")]) is not None
    # symmetric conflicts, declared on one side
    assert composition_error([get("lrm"), get("sigma_reparam")]) is not None
    assert composition_error([get("sigma_reparam"), get("lrm")]) is not None
    # order: lora after sigma_reparam is a fine-tune of a sigma-Reparam model; before it, NaN at step 0
    assert composition_error([get("sigma_reparam"), get("lora")]) is None
    assert "list `sigma_reparam` before `lora`" in composition_error([get("lora"), get("sigma_reparam")])
    assert composition_error([get("lora"), get("flerm")]) is None
    assert "list `lora` before `flerm`" in composition_error([get("flerm"), get("lora")])
    # a conflict refuses the run in prepare() before anything is written
    monkeypatch.setitem(registry.METHODS, "other_opt", OtherOptimizer)
    with pytest.raises(ConfigError, match="both replace the optimizer"):
        prepare(_config("gpt", ["adamw2", "other_opt"]), Path("/nonexistent/never-written"))


def test_lrm_init_mup_needs_mup_first(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="list `mup` before `lrm`"):
        prepare(_config("gpt", [{"name": "lrm", "init": "mup"}, "mup"]), tmp_path / "run")
    prepare(_config("gpt", ["mup", {"name": "lrm", "init": "mup"}]), tmp_path / "run")
    prepare(_config("gpt", ["lrm", "mup"]), tmp_path / "run")


def test_conflict_is_one_line_exit_2_nothing_written(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [*micro_overrides(steps=2, methods=["adamw2"]), "recipe=muon"]
    r = cli("train", str(REPO / "benchmarks/configs/gpt.yaml"), *[a for s in sets for a in ("--set", s)],
            "--out", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'adamw2'" in lines[0] and "'muon'" in lines[0], r.stderr
    assert not out.exists()
