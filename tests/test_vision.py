"""Vision and MLP workloads on the real offline Fashion-MNIST: data pipeline, models, roles, captures, training."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data.images import ImageData, ImagePipeline, micro_image_dir, open_split, random_resized_crop_params
from benchmarks.models.vision import SplitQKV, capture
from claimbench import registry
from claimbench.config import ConfigError, load_config
from claimbench.io import read_jsonl
from claimbench.plugin import ROLES
from claimbench.train import execute, prepare

REPO = Path(__file__).resolve().parents[1]
VISION = ("vit", "swin", "mlp")


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return micro_image_dir()


def workload(name: str, size: str = "micro", data_dir: Path | None = None, **sets):
    base = [f"workload={name}", f"size={size}"] + [f"{k}={v}" for k, v in sets.items()]
    cfg = load_config(None, base + ([f"data.dir={data_dir}"] if data_dir else []), base={})
    wl = registry.get("workload", name)(cfg)
    if data_dir:
        wl.check_data()
    return wl


# ------------------------------------------------------------------------------------------ data

def test_prepared_set_matches_the_debian_files(data_dir):
    meta = json.loads((data_dir / "meta.json").read_text())
    assert (meta["train_n"], meta["val_n"], meta["num_classes"], meta["shape_hwc"]) == (60000, 10000, 10, [28, 28, 1])
    train, _ = open_split(data_dir, "train")
    labels = np.asarray(train.records["label"])
    assert np.bincount(labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced


def test_no_train_val_overlap(data_dir):
    train, _ = open_split(data_dir, "train")
    val, _ = open_split(data_dir, "val")
    digest = lambda rec: {hashlib.blake2b(x.tobytes(), digest_size=16).digest() for x in rec["image"]}  # noqa: E731
    assert not digest(train.records) & digest(val.records)


def test_batches_shapes_labels_and_purity(data_dir):
    pipe = ImagePipeline(ImageData(dir=str(data_dir)), 32, augment_default=True, seed=3, global_batch=32)
    x, y = pipe.train_batch(7, 1, 16)
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < 10
    x2, y2 = pipe.train_batch(7, 1, 16)  # a batch is a pure function of (seed, step, micro)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, pipe.train_batch(7, 0, 16)[0])
    other_seed = ImagePipeline(ImageData(dir=str(data_dir)), 32, augment_default=True, seed=4, global_batch=32)
    assert not torch.equal(y, other_seed.train_batch(7, 1, 16)[1])
    vx, vy = pipe.val_batch(0, 16)
    assert torch.equal(vx, other_seed.val_batch(0, 16)[0])  # validation does not depend on the seed
    assert len(set(vy.tolist())) > 3  # a fixed shuffle: classes are mixed


def test_one_epoch_visits_every_image_once(data_dir):
    pipe = ImagePipeline(ImageData(dir=str(data_dir)), None, augment_default=False, seed=0, global_batch=1000)
    seen = np.concatenate([pipe.train_indices(s, 0, 1000) for s in range(60)])
    assert len(np.unique(seen)) == 60000
    assert not np.array_equal(pipe.train_indices(60, 0, 1000), pipe.train_indices(0, 0, 1000))  # epoch 2 reshuffles


def test_accumulation_changes_nothing_in_the_data(data_dir):
    opts = ImageData(dir=str(data_dir))
    whole = ImagePipeline(opts, 32, augment_default=True, seed=1, global_batch=16).train_batch(5, 0, 16)
    acc = ImagePipeline(opts, 32, augment_default=True, seed=1, global_batch=16)
    parts = [acc.train_batch(5, m, 8) for m in (0, 1)]
    assert torch.equal(whole[0], torch.cat([p[0] for p in parts]))
    assert torch.equal(whole[1], torch.cat([p[1] for p in parts]))


def test_imagefolder_layout(data_dir, tmp_path):
    """ImageNet's layout (train/<class>/*.png, val/<class>/*.png), here with real Fashion-MNIST images."""
    from PIL import Image

    train, _ = open_split(data_dir, "train")
    for split, rows in (("train", range(0, 12)), ("val", range(100, 104))):
        for i in rows:
            rec = train.records[i]
            folder = tmp_path / split / f"class{int(rec['label'])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(rec["image"][..., 0])).save(folder / f"{i}.png")
    pipe = ImagePipeline(ImageData(dir=str(tmp_path)), 24, augment_default=True, seed=0, global_batch=4)
    x, y = pipe.train_batch(0, 0, 4)
    assert x.shape == (4, 3, 24, 24) and int(y.max()) < pipe.num_classes
    assert torch.equal(x, pipe.train_batch(0, 0, 4)[0])
    assert pipe.val_batch(0, 2)[0].shape == (2, 3, 24, 24)
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(28, 40, rng)
        assert 0 <= top and top + h <= 28 and 0 <= left and left + w <= 40 and h > 0 and w > 0


def test_augmentation_and_padding(data_dir):
    plain = ImagePipeline(ImageData(dir=str(data_dir)), 32, augment_default=False, seed=0, global_batch=32)
    aug = ImagePipeline(ImageData(dir=str(data_dir)), 32, augment_default=True, seed=0, global_batch=32)
    x, _ = plain.train_batch(0, 0, 32)
    xa, _ = aug.train_batch(0, 0, 32)
    zero = -plain.mean.item() / plain.std.item()  # a black pixel after normalisation
    assert torch.allclose(x[:, :, :2, :], torch.zeros(()))  # 28 -> 32: two rows of padding at the mean
    assert x[:, :, 2:30, 2:30].min() >= zero - 1e-5
    assert not torch.equal(x, xa)


def test_mixup_gives_class_probabilities(data_dir):
    pipe = ImagePipeline(ImageData(dir=str(data_dir), mixup=0.2), 32, augment_default=False, seed=0, global_batch=8)
    x, y = pipe.train_batch(0, 0, 8)
    assert y.shape == (8, 10) and torch.allclose(y.sum(-1), torch.ones(8))
    assert torch.equal(y, pipe.train_batch(0, 0, 8)[1])


def test_missing_data_is_a_one_line_config_error(tmp_path):
    cfg = load_config(REPO / "benchmarks/configs/vit.yaml", ["size=micro", f"data.dir={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError) as e:
        prepare(cfg, tmp_path / "run")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "nowhere") in msg and "dataset-fashion-mnist" in msg
    assert "cifar" in msg.lower() and "ImageFolder" in msg
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ models

PUBLISHED = {("vit", "paper"): 86e6, ("vit", "paper_l"): 304e6, ("swin", "paper"): 50e6, ("swin", "paper_b"): 88e6}


@pytest.mark.parametrize("name,size", list(PUBLISHED))
def test_paper_sizes_match_published_parameter_counts(name, size):
    wl = workload(name, size)
    with torch.device("meta"):
        model = wl.build_model()  # ImageNet-1k: 3 channels, 1000 classes
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / PUBLISHED[(name, size)] - 1) < 0.02, n


@pytest.mark.parametrize("name", VISION)
def test_every_parameter_has_a_role(name, data_dir):
    wl = workload(name, data_dir=data_dir)
    model = wl.build_model()
    roles = wl.param_roles(model)
    assert set(roles) == {n for n, _ in model.named_parameters()}
    assert set(roles.values()) <= ROLES
    assert "readout" in roles.values() and "embedding" in roles.values()


def test_timm_roles_and_no_weight_decay(data_dir):
    vit = workload("vit", data_dir=data_dir)
    model = vit.build_model()
    roles = vit.param_roles(model)
    assert roles["blocks.0.attn.qkv.weight"] == "hidden_matrix"  # fused W_q|W_k|W_v: see benchmarks/models/vision.py
    assert roles["blocks.0.attn.proj.weight"] == "attn_out" and roles["head.weight"] == "readout"
    assert roles["patch_embed.proj.weight"] == "embedding" and roles["pos_embed"] == "embedding"
    assert vit.no_weight_decay(model) == {"pos_embed", "cls_token"}
    swin = workload("swin", data_dir=data_dir)
    smodel = swin.build_model()
    nwd = swin.no_weight_decay(smodel)
    assert nwd and all(n.endswith("relative_position_bias_table") for n in nwd)
    assert all(swin.param_roles(smodel)[n] == "bias" for n in nwd)


@pytest.mark.parametrize("name", ("vit", "swin"))
def test_split_qkv_gives_q_k_v_roles_and_the_same_function(name, data_dir):
    torch.manual_seed(0)
    fused = workload(name, data_dir=data_dir).build_model().eval()
    torch.manual_seed(0)
    wl = workload(name, data_dir=data_dir, **{"model.split_qkv": "true"})
    split = wl.build_model().eval()
    assert any(isinstance(m, SplitQKV) for m in split.modules())
    assert {"attn_q", "attn_k", "attn_v"} <= set(wl.param_roles(split).values())
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fused(x), split(x), atol=1e-5)


@pytest.mark.parametrize("name,blocks", [("vit", 2), ("swin", 4)])
def test_captures_only_when_asked(name, blocks, data_dir):
    wl = workload(name, data_dir=data_dir)
    model = wl.build_model().eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
        logits, hidden, probs = wl.logits(model, x, frozenset({"hidden_states", "attn_probs"}))
    assert torch.allclose(ref, logits, atol=1e-5)  # the explicit attention path computes the same function
    assert len(hidden) == blocks + 1 and all(h.dim() == 3 and h.shape[0] == 3 for h in hidden)
    assert len(probs) == blocks
    for p in probs:
        assert torch.allclose(p.sum(-1), torch.ones(()), atol=1e-5)
    assert all(not m._forward_hooks for m in model.modules())  # hooks gone after the forward
    assert all(m.fused_attn == f for m, f in zip(
        [m for m in model.modules() if hasattr(m, "fused_attn")],
        [m.fused_attn for m in wl.build_model().modules() if hasattr(m, "fused_attn")], strict=True))
    assert wl.logits(model, x, frozenset())[1:] == (None, None)
    with capture(model, want_hidden=True, want_probs=False) as cap:
        model(x)
    assert cap.attn_probs is None and len(cap.hidden_states) == blocks + 1


def test_resmlp_options(data_dir):
    wl = workload("mlp", data_dir=data_dir, **{"model.norm": "pre", "model.branch_scale": "inv_sqrt_depth",
                                               "model.init_scale": 0.5, "model.n_blocks": 3})
    model = wl.build_model()
    assert model.blocks[0].scale == pytest.approx(3 ** -0.5)
    ref = workload("mlp", data_dir=data_dir, **{"model.n_blocks": 3}).build_model()
    w, w0 = model.blocks[0].layers[0].weight, ref.blocks[0].layers[0].weight
    assert w.std().item() == pytest.approx(0.5 * w0.std().item(), rel=0.1)
    logits, hidden, _ = wl.logits(model, torch.randn(4, 1, 28, 28), frozenset({"hidden_states"}))
    assert logits.shape == (4, 10) and len(hidden) == 4
    assert "norm" in wl.param_roles(model).values()


# ------------------------------------------------------------------------------------------ training

def _train(tmp_path: Path, name: str, data_dir: Path, steps: int = 60) -> tuple[dict, list[dict]]:
    cfg = load_config(REPO / f"benchmarks/configs/{name}.yaml", [
        "size=micro", f"data.dir={data_dir}", f"train.steps={steps}", "train.batch_size=32", "train.lr=4e-3",
        "train.warmup_steps=5", "eval.every=20", "eval.batches=16", "log.every=20", "ckpt.every=0"])
    assert execute(prepare(cfg, tmp_path)) == 0
    return json.loads((tmp_path / "result.json").read_text()), read_jsonl(tmp_path / "metrics.jsonl")


@pytest.mark.parametrize("name", ("swin", "mlp"))
def test_micro_training_learns(name, data_dir, tmp_path):
    result, rows = _train(tmp_path, name, data_dir)
    assert result["status"] == "ok" and result["collapsed"] is False
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_acc"] > rows[0]["val_acc"]
    assert result["final_val_acc"] > 0.3 and "samples_per_s" in rows[-1]


def test_claimbench_train_cli_vit_micro(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "claimbench", "train", str(REPO / "benchmarks/configs/vit.yaml"),
                           "--set", "size=micro", "--set", f"data.dir={data_dir}", "--set", "train.steps=60",
                           "--set", "train.batch_size=32", "--set", "train.lr=4e-3", "--set", "train.warmup_steps=5",
                           "--set", "eval.every=20", "--set", "eval.batches=16", "--set", "log.every=20",
                           "--set", "ckpt.every=0", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result, rows = json.loads((out / "result.json").read_text()), read_jsonl(out / "metrics.jsonl")
    assert result["status"] == "ok" and result["final_val_acc"] > 0.2 and result["final_val_loss"] < 2.3
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and rows[-1]["val_acc"] > rows[0]["val_acc"]


def test_timm_cosine_schedule_matches_timm():
    from timm.scheduler import CosineLRScheduler

    from baselines.adamw_timm import timm_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ref = CosineLRScheduler(opt, t_initial=10, lr_min=1e-5, warmup_t=3, warmup_lr_init=1e-6)
    ours = timm_cosine(1e-3, total=10, warmup=3, warmup_lr_init=1e-6, min_lr=1e-5)
    for t in range(10):
        assert ours(t) * 1e-3 == pytest.approx(ref._get_lr(t)[0], rel=1e-9)
    per_epoch = timm_cosine(1e-3, total=40, warmup=12, warmup_lr_init=1e-6, min_lr=1e-5, steps_per_epoch=4)
    assert [per_epoch(s) for s in range(40)] == [ours(s // 4) for s in range(40)]


def test_adamw_timm_recipe_trains_the_mlp(data_dir, tmp_path):
    cfg = load_config(REPO / "benchmarks/configs/mlp.yaml", [
        "size=micro", f"data.dir={data_dir}", "train.steps=20", "train.batch_size=32", "train.warmup_steps=4",
        "recipe={name: adamw_timm, per_epoch: true, steps_per_epoch: 5}", "eval.every=0", "eval.batches=4",
        "log.every=1", "ckpt.every=0"])
    assert execute(prepare(cfg, tmp_path)) == 0
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[0]["lr"] == pytest.approx(1e-6) and rows[4]["lr"] == rows[0]["lr"]  # epoch 0: warmup start
    assert rows[5]["lr"] > rows[0]["lr"] and rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_resume_is_exact_with_augmentation_and_drop_path(data_dir, tmp_path):
    """Stop a ViT run after 3 of 6 steps (checkpoint), resume it, and get the numbers of an unbroken run."""
    from claimbench.io import atomic_torch_save
    from claimbench.train import Trainer

    sets = ["size=micro", f"data.dir={data_dir}", "train.steps=6", "train.batch_size=8", "train.warmup_steps=2",
            "model.drop_path_rate=0.2", "data.augment=true", "eval.every=0", "eval.batches=2", "log.every=1",
            "ckpt.every=0"]
    cfg = load_config(REPO / "benchmarks/configs/vit.yaml", sets)
    assert execute(prepare(cfg, tmp_path / "whole")) == 0
    broken = tmp_path / "broken"
    trainer = Trainer(prepare(cfg, broken))
    broken.mkdir()
    for _ in range(3):
        trainer.train_step()
    trainer.t_start = time.perf_counter()  # fit() sets it; state_dict() reads it
    atomic_torch_save(broken / "ckpt.pt", trainer.state_dict())
    assert execute(prepare(cfg, broken)) == 0
    whole, resumed = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "whole", broken))
    assert resumed["final_val_loss"] == whole["final_val_loss"]
    assert resumed["final_train_loss"] == whole["final_train_loss"]
    a, b = (torch.load(d / "ckpt.pt", weights_only=True)["model"] for d in (tmp_path / "whole", broken))
    assert all(torch.equal(a[k], b[k]) for k in a)
