"""The longitudinal HDF5 format: round trip, atomic writes, and errors that name file and path."""

import h5py
import numpy as np
import pytest

from lmmvae.data.h5 import Covariate, LongitudinalData, read_h5, write_h5
from lmmvae.errors import DataFormatError


def small_data(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    mask = (rng.random((n, d)) > 0.3).astype(np.uint8)
    y_full = rng.random((n, d)).astype(np.float32)
    return LongitudinalData(
        y=y_full * mask, mask=mask, split=np.arange(n) % 3, y_full=y_full,
        covariates={
            "time": Covariate(np.arange(n) % 4, "time"),
            "id": Covariate(np.repeat(np.arange(3), 4), "id", levels=["a", "b", "c"]),
            "sex": Covariate(np.repeat([0, 1, 0], 4), "binary"),
        },
        latent_truth=rng.normal(size=(n, 2)),
        attrs={"name": "toy", "generator": "test", "seed": 1, "args": {"n": n}},
    )


def test_round_trip(tmp_path):
    data = small_data()
    path = write_h5(data, tmp_path / "toy.h5")
    back = read_h5(path)
    np.testing.assert_array_equal(back.y, data.y)
    np.testing.assert_array_equal(back.mask, data.mask)
    np.testing.assert_array_equal(back.split, data.split)
    np.testing.assert_array_equal(back.latent_truth, data.latent_truth)
    assert back.covariates["id"].levels == ["a", "b", "c"]
    assert back.covariates["id"].kind == "id"
    assert back.attrs["args"] == {"n": 12}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_missing_dataset_is_named(tmp_path):
    path = write_h5(small_data(), tmp_path / "toy.h5")
    with h5py.File(path, "a") as f:
        del f["mask"]
    with pytest.raises(DataFormatError, match=r"toy\.h5: missing dataset /mask"):
        read_h5(path)


def test_bad_kind_is_named(tmp_path):
    path = write_h5(small_data(), tmp_path / "toy.h5")
    with h5py.File(path, "a") as f:
        f["covariates/sex"].attrs["kind"] = "boolean"
    with pytest.raises(DataFormatError, match=r"/covariates/sex attribute kind is 'boolean'"):
        read_h5(path)


def test_nan_in_observed_entry_is_rejected():
    data = small_data()
    row, col = np.argwhere(data.mask == 1)[0]
    data.y[row, col] = np.nan
    with pytest.raises(DataFormatError, match=f"row {row}, column {col}"):
        data.validate()


def test_corrupted_file(tmp_path):
    path = tmp_path / "broken.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataFormatError, match="broken.h5: not a readable HDF5 file"):
        read_h5(path)
