"""Real images for the vision and MLP workloads, offline, with batches that are pure functions.

Sources (nothing downloads at run time):
- `fashion-mnist`: Debian's `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`, IDX format),
  60k train / 10k test, 28x28x1, 10 classes. The micro and smoke profiles use it.
- `cifar10:ROOT` / `cifar100:ROOT`: torchvision's CIFAR loaders with `download=False` on files the user put
  in ROOT (gpu profile).
Both are prepared once (`claimbench prepare-data fashion-mnist --out DIR`) into `train.bin` / `val.bin`
(records of a uint16 label and the uint8 HxWxC image, so a batch is one memmap gather) and `meta.json`
(written last). ImageNet-1k is read in place from an `ImageFolder` layout (`DIR/train/<class>/*`,
`DIR/val/<class>/*`); it is far too large to copy.

A training batch is a function of (seed, step, micro) only: samples are drawn epoch by epoch from a
seeded permutation, and augmentation draws from a generator keyed by the same numbers, so a resumed
run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from claimbench.config import ConfigError
from claimbench.io import atomic_write_bytes, atomic_write_text
from claimbench.seeding import stable_key

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"  # Debian package: apt-get install dataset-fashion-mnist
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EVAL_KEY, ORDER_KEY, AUG_KEY, CROP_KEY = 0x5EED, 0x0DE7, 0xA06, 0xC409


class ImageData(BaseModel):
    """`data:` options of the image workloads."""

    model_config = ConfigDict(extra="forbid")
    dir: str = "data/fashion-mnist"
    augment: bool | None = Field(None, description="random crop + flip; default: on from size gpu up")
    crop_pad: int | None = Field(None, ge=0, description="padding of the random crop; default img_size // 8")
    flip: bool = True
    randaugment: str | None = Field(None, description="e.g. 'n2m9' (torchvision RandAugment num_ops=2, magnitude=9)")
    mixup: float = Field(0.0, ge=0, description="mixup Beta(alpha, alpha); 0 disables it")
    fit: Literal["pad", "resize"] = Field("pad", description="smaller images to img_size: zero-pad or resize")


def missing_data_message(path: str | Path) -> str:
    return (f"data.dir: {path} holds neither a prepared image set (meta.json) nor an ImageFolder (train/, val/). "
            f"micro/smoke: `apt-get install {FASHION_MNIST_PACKAGE}` then `claimbench prepare-data fashion-mnist "
            f"--out {path}`; CIFAR-10/100: download the python version from {CIFAR_URL}, extract it into data/raw "
            f"and run `claimbench prepare-data cifar100:data/raw --out {path}`; ImageNet-1k: put ILSVRC2012 train/ "
            f"and val/ as class folders (ImageFolder layout) in {path}")


# ----------------------------------------------------------------------------------------- preparation

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip): magic 0 0 dtype ndim, big-endian dims, then the data."""
    raw = gzip.open(path).read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ConfigError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(root: Path = FASHION_MNIST_DIR) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    files = {s: (root / f"{p}-images-idx3-ubyte.gz", root / f"{p}-labels-idx1-ubyte.gz")
             for s, p in (("train", "train"), ("val", "t10k"))}
    for pair in files.values():
        for f in pair:
            if not f.is_file():
                raise ConfigError(f"Fashion-MNIST file not found: {f}; install the Debian package "
                                  f"`{FASHION_MNIST_PACKAGE}` (apt-get install {FASHION_MNIST_PACKAGE})")
    return {s: (read_idx(xi)[..., None], read_idx(yi)) for s, (xi, yi) in files.items()}


def cifar(name: str, root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    try:
        sets = {s: cls(str(root), train=(s == "train"), download=False) for s in ("train", "val")}
    except RuntimeError:
        folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
        raise ConfigError(f"{name}: {root}/{folder} not found; download the CIFAR python version from {CIFAR_URL} "
                          f"and extract it into {root}") from None
    return {s: (np.asarray(d.data, np.uint8), np.asarray(d.targets)) for s, d in sets.items()}


SOURCES: dict[str, Callable[[str | None], dict]] = {
    "fashion-mnist": lambda arg: fashion_mnist(Path(arg) if arg else FASHION_MNIST_DIR),
    "cifar10": lambda arg: cifar("cifar10", Path(arg or "data/raw")),
    "cifar100": lambda arg: cifar("cifar100", Path(arg or "data/raw")),
}


def is_image_source(corpus: str) -> bool:
    return corpus.split(":", 1)[0] in SOURCES


def record_dtype(shape: tuple[int, int, int]) -> np.dtype:
    return np.dtype([("label", "<u2"), ("image", "u1", tuple(shape))])


def _digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(x.tobytes(), digest_size=16).digest() for x in images]


def prepare(source: str, out: str | Path) -> dict:
    """`fashion-mnist[:ROOT]`, `cifar10:ROOT` or `cifar100:ROOT` -> out/{train,val}.bin + meta.json.

    Validation images identical to a training image are dropped (none in Fashion-MNIST or CIFAR, but a
    user's copy might differ), so validation accuracy never measures memorisation.
    """
    name, _, arg = source.partition(":")
    if name not in SOURCES:
        raise ConfigError(f"unknown image source '{source}' (use {', '.join(SOURCES)})")
    splits = SOURCES[name](arg or None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = splits["train"]
    train_digests = set(_digests(xtr))
    xva, yva = splits["val"]
    keep = np.array([d not in train_digests for d in _digests(xva)], dtype=bool)
    shape = tuple(int(s) for s in xtr.shape[1:])
    meta = {"kind": "images", "source": source, "shape_hwc": list(shape), "num_classes": int(ytr.max()) + 1,
            "val_removed_duplicates": int((~keep).sum())}
    for split, (x, y) in (("train", (xtr, ytr)), ("val", (xva[keep], yva[keep]))):
        rec = np.empty(len(x), dtype=record_dtype(shape))
        rec["label"], rec["image"] = y, x
        atomic_write_bytes(out / f"{split}.bin", rec.tobytes())
        meta[f"{split}_n"] = len(x)
    scaled = xtr.reshape(-1, shape[-1]).astype(np.float64) / 255.0
    meta["mean"], meta["std"] = scaled.mean(0).tolist(), scaled.std(0).tolist()
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2))
    return meta


# ----------------------------------------------------------------------------------------- reading

class RecordSet:
    """One split of a prepared set: `get(indices)` -> uint8 (N, C, H, W) images and int64 labels."""

    def __init__(self, data_dir: Path, split: str, meta: dict):
        path = data_dir / f"{split}.bin"
        if not path.is_file():
            raise ConfigError(f"data file not found: {path} (re-run `claimbench prepare-data {meta['source']} "
                              f"--out {data_dir}`)")
        dtype = record_dtype(tuple(meta["shape_hwc"]))
        size = path.stat().st_size
        if size == 0 or size % dtype.itemsize:
            raise ConfigError(f"{path}: {size} bytes, not a whole number of {dtype.itemsize}-byte image records "
                              f"(re-run `claimbench prepare-data {meta.get('source', '...')} --out {data_dir}`)")
        self.records = np.memmap(path, dtype=dtype, mode="r")

    def __len__(self) -> int:
        return len(self.records)

    def get(self, indices: np.ndarray, train: bool, keys: list[int], img_size: int | None) -> tuple[torch.Tensor, ...]:
        rec = self.records[indices]
        x = torch.from_numpy(np.ascontiguousarray(rec["image"])).permute(0, 3, 1, 2)
        return x, torch.from_numpy(rec["label"].astype(np.int64))


class FolderSet:
    """One split of an ImageFolder tree (ImageNet): decoded on the fly, RandomResizedCrop for training."""

    def __init__(self, data_dir: Path, split: str):
        from torchvision.datasets.folder import make_dataset

        root = data_dir / split
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        index = {c: i for i, c in enumerate(self.classes)}
        self.samples = make_dataset(str(root), index, extensions=(".jpeg", ".jpg", ".png"))
        if not self.samples:
            raise ConfigError(f"{root}: no images (expected {root}/<class>/*.JPEG)")
        self.pool = ThreadPoolExecutor(max_workers=8)

    def __len__(self) -> int:
        return len(self.samples)

    def get(self, indices: np.ndarray, train: bool, keys: list[int], img_size: int | None) -> tuple[torch.Tensor, ...]:
        """Decode in threads; `train`: RandomResizedCrop drawn from each sample's key, else resize + center crop."""
        from PIL import Image
        from torchvision.transforms.v2 import functional as TF

        size = img_size or 224

        def load(j: int) -> torch.Tensor:
            path, _ = self.samples[int(indices[j])]
            with Image.open(path) as im:
                x = TF.pil_to_tensor(im.convert("RGB"))
            if train:
                top, left, h, w = random_resized_crop_params(x.shape[-2], x.shape[-1],
                                                             np.random.default_rng(stable_key(keys[j], CROP_KEY)))
                return TF.resized_crop(x, top, left, h, w, [size, size], antialias=True)
            x = TF.resize(x, [int(size / 0.875)], antialias=True)
            return TF.center_crop(x, [size, size])

        xs = list(self.pool.map(load, range(len(indices))))
        return torch.stack(xs), torch.tensor([self.samples[int(i)][1] for i in indices], dtype=torch.int64)


def random_resized_crop_params(height: int, width: int, rng: np.random.Generator, scale=(0.08, 1.0),
                               ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, drawn from `rng` (torch's global RNG is not thread-safe)."""
    area = height * width
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(*log_ratio)))
        w, h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height  # fallback: the central crop of the allowed aspect ratios
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def open_split(data_dir: str | Path, split: str) -> tuple[RecordSet | FolderSet, dict]:
    """The split and the set's meta (classes, channels, mean/std); ConfigError if nothing is there."""
    d = Path(data_dir)
    if (d / "meta.json").is_file():
        try:
            meta = json.loads((d / "meta.json").read_bytes())
        except (ValueError, OSError) as e:  # not UTF-8, not JSON, unreadable
            raise ConfigError(f"{d}/meta.json: not a readable JSON file ({type(e).__name__}); "
                              "re-run prepare-data") from None
        if not isinstance(meta, dict) or meta.get("kind") != "images":
            kind = meta.get("kind") if isinstance(meta, dict) else None
            raise ConfigError(f"data.dir: {d}/meta.json is not an image set (kind={kind!r}); "
                              f"{missing_data_message(d)}")
        return RecordSet(d, split, meta), meta
    if (d / "train").is_dir() and (d / "val").is_dir():
        ds = FolderSet(d, split)
        meta = {"kind": "images", "source": f"imagefolder:{d}", "num_classes": len(ds.classes), "shape_hwc": None,
                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        return ds, meta
    raise ConfigError(missing_data_message(d))


# ----------------------------------------------------------------------------------------- batches

def parse_randaugment(spec: str) -> tuple[int, int]:
    try:
        n, m = spec.lower().lstrip("n").split("m")
        return int(n), int(m)
    except ValueError:
        raise ConfigError(f"data.randaugment: '{spec}' is not of the form 'n2m9'") from None


class ImagePipeline:
    """Training and validation batches of one image set, sized for one model.

    Step s holds the samples at positions s*B ... (s+1)*B-1 of the seeded epoch orders (B = the global
    batch), and every random augmentation choice is drawn for the whole global batch from (seed, step)
    and then sliced, so gradient accumulation changes how a step is computed, never what it sees
    (mixup pairs images within a micro-batch: the one exception).
    """

    def __init__(self, opts: ImageData, img_size: int | None, augment_default: bool, seed: int, global_batch: int):
        self.opts, self.img_size, self.seed, self.global_batch = opts, img_size, seed, global_batch
        self.train, self.meta = open_split(opts.dir, "train")
        self.val, _ = open_split(opts.dir, "val")
        self.augment = augment_default if opts.augment is None else opts.augment
        self.num_classes = int(self.meta["num_classes"])
        self.in_chans = 3 if self.meta["shape_hwc"] is None else int(self.meta["shape_hwc"][-1])
        native = None if self.meta["shape_hwc"] is None else int(self.meta["shape_hwc"][0])
        self.out_size = img_size or native
        self.mean = torch.tensor(self.meta["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(self.meta["std"], dtype=torch.float32).view(1, -1, 1, 1)
        self.randaugment = parse_randaugment(opts.randaugment) if opts.randaugment else None
        self._val_order = np.random.default_rng(EVAL_KEY).permutation(len(self.val))

    @lru_cache(maxsize=2)  # noqa: B019 -- two epochs (a batch may straddle a boundary); the pipeline lives for a run
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(stable_key(self.seed, epoch, ORDER_KEY)).permutation(len(self.train))

    def positions(self, step: int, micro: int, batch_size: int) -> np.ndarray:
        """Sample positions of the micro-batch in the run's stream (epochs laid end to end)."""
        return step * self.global_batch + micro * batch_size + np.arange(batch_size)

    def train_indices(self, step: int, micro: int, batch_size: int) -> np.ndarray:
        """Dataset indices of the micro-batch: its positions looked up in the seeded epoch orders."""
        n = len(self.train)
        pos = self.positions(step, micro, batch_size)
        epochs, within = pos // n, pos % n
        out = np.empty(batch_size, dtype=np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._order(int(e))[within[sel]]
        return out

    def _draws(self, step: int, micro: int, batch_size: int) -> dict[str, torch.Tensor]:
        """Every random choice of the step, drawn for the global batch from (seed, step), this micro-batch's slice."""
        g = torch.Generator().manual_seed(stable_key(self.seed, step, AUG_KEY))
        total = self.global_batch
        pad = self._crop_pad()
        d = {"dy": torch.randint(0, 2 * pad + 1, (total,), generator=g),
             "dx": torch.randint(0, 2 * pad + 1, (total,), generator=g),
             "flip": torch.rand(total, generator=g) < 0.5,
             "keys": torch.randint(0, 2**62, (total,), generator=g)}
        sl = slice(micro * batch_size, (micro + 1) * batch_size)
        out = {k: v[sl] for k, v in d.items()}
        out["mix"] = torch.Generator().manual_seed(stable_key(self.seed, step, micro, AUG_KEY))
        return out

    def train_batch(self, step: int, micro: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self._draws(step, micro, batch_size)
        x, y = self.train.get(self.train_indices(step, micro, batch_size), self.augment, d["keys"].tolist(),
                              self.img_size)
        if self.randaugment is not None:
            x = self._randaugment(x, d["keys"])
        x = self._fit(self._normalize(x))
        if self.augment:
            x = self._crop_flip(x, d["dy"], d["dx"], d["flip"])
        if self.opts.mixup > 0:
            return self._mixup(x, y, d["mix"])
        return x, y

    def val_batch(self, i: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed, seed-independent validation batch i (a fixed shuffle, so classes are mixed)."""
        idx = self._val_order[(i * batch_size + np.arange(batch_size)) % len(self.val)]
        x, y = self.val.get(idx, False, [], self.img_size)
        return self._fit(self._normalize(x)), y

    # -- transforms on batched tensors (N, C, H, W)
    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        """To out_size: zero-pad (zero = the mean after normalisation) or bilinear resize."""
        size = self.out_size
        h = x.shape[-1]
        if size is None or h == size:
            return x
        if h < size and self.opts.fit == "pad":
            lo = (size - h) // 2
            return F.pad(x, (lo, size - h - lo, lo, size - h - lo))
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=h > size, align_corners=False)

    def _crop_pad(self) -> int:
        """Pad of the random crop: img_size // 8 for the small sets; none for ImageFolder (RandomResizedCrop)."""
        if self.opts.crop_pad is not None:
            return self.opts.crop_pad
        return 0 if isinstance(self.train, FolderSet) else (self.out_size or 32) // 8

    def _crop_flip(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Random crop of the zero-padded image (offsets dy, dx in [0, 2 * pad]) and horizontal flip."""
        n, c, h, w = x.shape
        pad = self._crop_pad()
        if pad > 0:
            xp = F.pad(x, (pad, pad, pad, pad))
            rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
            xp = xp.gather(2, rows)
            cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, c, h, w)
            x = xp.gather(3, cols)
        if self.opts.flip:
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        return x

    def _mixup(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup with one lambda per micro-batch; targets become class probabilities (soft cross-entropy)."""
        lam = _beta(self.opts.mixup, g)
        perm = torch.randperm(len(x), generator=g)
        onehot = F.one_hot(y, self.num_classes).float()
        return lam * x + (1 - lam) * x[perm], lam * onehot + (1 - lam) * onehot[perm]

    def _randaugment(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """torchvision's RandAugment on each uint8 image, its ops drawn from the sample's own key."""
        from torchvision.transforms import v2

        n_ops, mag = self.randaugment
        ra = v2.RandAugment(num_ops=n_ops, magnitude=mag)
        out = []
        with torch.random.fork_rng(devices=[]):
            for xi, k in zip(x, keys.tolist(), strict=True):
                torch.manual_seed(stable_key(k, AUG_KEY))
                out.append(ra(xi))
        return torch.stack(out)


def _beta(alpha: float, g: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) keyed by `g` (torch's Beta distribution takes no generator)."""
    u = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=g))).beta(alpha, alpha)
    return torch.tensor(float(u))


def micro_image_dir() -> Path:
    """Fashion-MNIST prepared once under data/_test/ for tests and micro runs (meta.json last = complete)."""
    out = Path(__file__).resolve().parents[2] / "data" / "_test" / "fashion-mnist"
    if not (out / "meta.json").is_file():
        prepare("fashion-mnist", out)
    return out
