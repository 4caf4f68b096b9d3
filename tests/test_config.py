"""Bad input: one line naming the key (with the closest valid name), exit 2, before training."""

from __future__ import annotations

import pytest

from claimbench.config import ConfigError, load_config, parse_value
from claimbench.testing import micro_overrides
from claimbench.train import prepare


def _cfg(**sets):
    return load_config(None, micro_overrides(**sets), base={})


@pytest.mark.parametrize("sets, message", [
    ({"train.stepz": 5}, "unknown key 'train.stepz' (did you mean 'train.steps'?)"),
    ({"trian.steps": 5}, "unknown key 'trian' (did you mean 'train'?)"),
    ({"train.steps": "many"}, "bad value for 'train.steps'"),
    ({"train.lr": -1}, "bad value for 'train.lr'"),
    ({"train.grad_accum": 3}, "grad_accum=3 does not divide batch_size=4"),
    ({"train.schedule": "cosin"}, "bad value for 'train.schedule'"),
])
def test_schema_errors_name_the_key(sets, message):
    with pytest.raises(ConfigError) as e:
        _cfg(**sets)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("sets, message", [
    ({"workload": "gtp"}, "unknown workload 'gtp' (did you mean 'gpt'?)"),
    ({"recipe": "adamw_nowarmp"}, "unknown recipe 'adamw_nowarmp' (did you mean 'adamw_nowarmup'?)"),
    ({"methods": ["zlos"]}, "unknown method 'zlos' (did you mean 'zloss'?)"),
    ({"methods": [{"name": "zloss", "coef": -1}]}, "methods[0] (zloss): bad value for 'coef'"),
    ({"methods": [{"name": "zloss", "cof": 1}]}, "unknown key 'cof' (did you mean 'coef'?)"),
    ({"size": "mikro"}, "unknown size 'size: mikro' for workload gpt (did you mean 'micro'?)"),
    ({"model.n_layr": 2}, "model: unknown key 'n_layr' (did you mean 'n_layer'?)"),
    ({"data.dir": "/nonexistent/corpus"}, "/nonexistent/corpus/meta.json not found"),
    ({"train.device": "cuda"}, "train.device: 'cuda' requested but no CUDA device is available"),
])
def test_plugin_and_data_errors(sets, message, tmp_path, data_dir):
    cfg = _cfg(**sets)
    with pytest.raises(ConfigError) as e:
        prepare(cfg, tmp_path / "run")
    assert message in str(e.value)
    assert not (tmp_path / "run").exists()


def test_cli_exit_2_and_untouched_out_dir(cli, tmp_path, data_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"workload: gpt\nsize: micro\ndata: {{dir: {data_dir}}}\ntrain: {{steps: 3, batch_size: 2}}\n")
    r = cli("train", str(cfg), "--set", "train.stepz=5", "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("claimbench: error: ")
    assert lines[0].endswith("unknown key 'train.stepz' (did you mean 'train.steps'?)")
    assert not (tmp_path / "run").exists()


def test_out_dir_with_other_config_is_refused(tmp_path, data_dir):
    from claimbench.testing import run_micro

    out = tmp_path / "run"
    run_micro(out, steps=2)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        prepare(_cfg(steps=3), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_set_values_parse_as_yaml():
    assert parse_value("1e-3") == 1e-3
    assert parse_value(".inf") == float("inf")
    assert parse_value("[a, {name: b, x: 1}]") == ["a", {"name": "b", "x": 1}]
    assert parse_value("cosine") == "cosine"
    assert parse_value("true") is True


def test_methods_accept_name_or_mapping():
    cfg = _cfg(methods=["none", {"name": "zloss", "coef": 0.01}])
    assert [m.name for m in cfg.methods] == ["none", "zloss"]
    assert cfg.methods[1].options == {"coef": 0.01}
