"""Random-content data sets in the prepared formats, for timing runs on a machine without the real data.

Throughput does not depend on what the tokens or pixels are (a batch is one memmap gather either way), so the GPU
check (gpu_check.sh) times GPT-2 124M's shape with nanoGPT's 50,304-token vocabulary and ViT-S/4 on CIFAR-100's
shape from these. Losses on them mean nothing: never use them for a claim. Each directory's meta.json says
`"synthetic": true` and is written last, so its presence means the set is complete.

    python scripts/speed/synth_data.py --gpt DIR [--vocab 50304] [--tokens 4000000]
    python scripts/speed/synth_data.py --images DIR [--shape 32 32 3] [--classes 100] [--n 50000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.data.images import record_dtype
from claimbench.io import atomic_write_bytes, atomic_write_text


def write_tokens(out: Path, vocab: int, tokens: int, seed: int = 0) -> dict:
    """nanoGPT-style train.bin / val.bin (uint16 ids, uniform over the vocabulary) and meta.json."""
    if not 1 < vocab <= 65536:
        raise SystemExit(f"--vocab {vocab}: uint16 token files hold 2..65536 ids")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_val = max(tokens // 10, 4096)
    for split, n in (("train", tokens), ("val", n_val)):
        atomic_write_bytes(out / f"{split}.bin", rng.integers(0, vocab, size=n, dtype=np.uint16).tobytes())
    meta = {"corpus": "synthetic", "synthetic": True, "vocab_size": vocab, "train_tokens": tokens, "val_tokens": n_val}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2))
    return meta


def write_images(out: Path, shape: tuple[int, int, int], classes: int, n: int, seed: int = 0) -> dict:
    """Records of a uint16 label and a uint8 HxWxC image (benchmarks/data/images.py's format) and meta.json."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    meta: dict = {"kind": "images", "source": "synthetic", "synthetic": True, "shape_hwc": list(shape),
                  "num_classes": classes, "val_removed_duplicates": 0}
    for split, count in (("train", n), ("val", max(n // 5, 64))):
        rec = np.empty(count, dtype=record_dtype(shape))
        rec["label"] = rng.integers(0, classes, size=count)
        rec["image"] = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
        atomic_write_bytes(out / f"{split}.bin", rec.tobytes())
        meta[f"{split}_n"] = count
    meta["mean"], meta["std"] = [0.5] * shape[-1], [0.289] * shape[-1]  # uniform bytes / 255
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2))
    return meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpt", type=Path, help="write a token set here")
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--tokens", type=int, default=4_000_000)
    p.add_argument("--images", type=Path, help="write an image set here")
    p.add_argument("--shape", type=int, nargs=3, default=[32, 32, 3], metavar=("H", "W", "C"))
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--n", type=int, default=50_000, help="training images")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.gpt is None and a.images is None:
        p.error("nothing to write: give --gpt DIR and/or --images DIR")
    if a.gpt is not None:
        print(f"synth_data: {a.gpt}: {write_tokens(a.gpt, a.vocab, a.tokens, a.seed)}")
    if a.images is not None:
        print(f"synth_data: {a.images}: {write_images(a.images, tuple(a.shape), a.classes, a.n, a.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
