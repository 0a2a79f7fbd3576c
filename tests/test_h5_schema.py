"""Schema validation (docs/data_format.md): every kind of malformed file is rejected with a message that names
the file, the HDF5 path and what was expected."""

import json

import h5py
import numpy as np
import pytest

from lmmvae.data.h5 import Covariate, LongitudinalData, read_h5, write_h5
from lmmvae.errors import DataFormatError


def valid_file(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 8, 4
    mask = (rng.random((n, d)) > 0.3).astype(np.uint8)
    y_full = rng.random((n, d)).astype(np.float32)
    data = LongitudinalData(
        y=y_full * mask, mask=mask, split=np.arange(n) % 3, y_full=y_full, latent_truth=rng.normal(size=(n, 2)),
        covariates={
            "age": Covariate(np.arange(n) % 4, "time"),
            "id": Covariate(np.repeat([0, 1], 4), "id", levels=["s1", "s2"]),
            "sex": Covariate(np.repeat([0, 1], 4), "binary"),
            "dose": Covariate(rng.random(n), "continuous"),
        },
        attrs={"name": "toy", "generator": "test", "seed": 0, "args": {}, "image_shape": [2, 2]},
    )
    return write_h5(data, tmp_path / "toy.h5")


def replace(key, value):
    def mutate(f):
        attrs = dict(f[key].attrs) if key in f and isinstance(f[key], h5py.Dataset) else {}
        del f[key]
        f[key] = value
        for name, attr in attrs.items():
            f[key].attrs[name] = attr
    return mutate


def set_attr(key, name, value):
    def mutate(f):
        target = f if key == "/" else f[key]
        target.attrs[name] = value
    return mutate


def delete(key):
    def mutate(f):
        del f[key]
    return mutate


def group_instead(key):
    def mutate(f):
        del f[key]
        f.create_group(key)
    return mutate


CASES = {
    "no format_version": (lambda f: f.attrs.__delitem__("format_version"), r"format_version must be 1, got None"),
    "wrong format_version": (set_attr("/", "format_version", 7), r"format_version must be 1, got 7"),
    "missing /y": (delete("y"), r"missing dataset /y"),
    "missing /split": (delete("split"), r"missing dataset /split"),
    "/y is a group": (group_instead("y"), r"/y must be a dataset, found a group"),
    "/y integer": (replace("y", np.zeros((8, 4), dtype=np.int32)), r"/y has dtype int32, expected float"),
    "/y not 2-D": (replace("y", np.zeros(8, dtype=np.float32)), r"/y must be 2-D"),
    "/mask shape": (replace("mask", np.ones((8, 3), dtype=np.uint8)), r"/mask must have shape \(8, 4\)"),
    "/mask values": (replace("mask", np.full((8, 4), 2, dtype=np.uint8)), r"/mask must contain only 0 and 1"),
    "/split values": (replace("split", np.full(8, 3, dtype=np.uint8)), r"/split must contain only 0 \(train\)"),
    "/split shape": (replace("split", np.zeros(9, dtype=np.uint8)), r"/split must have shape \(8,\)"),
    "/split float": (replace("split", np.zeros(8, dtype=np.float64)), r"/split has dtype float64, expected integer"),
    "/y_full shape": (replace("y_full", np.zeros((8, 5), dtype=np.float32)), r"/y_full must have shape \(8, 4\)"),
    "/latent_truth rows": (replace("latent_truth", np.zeros((7, 2), dtype=np.float32)), r"/latent_truth must have shape \[8, K\]"),
    "no /covariates": (delete("covariates"), r"missing group /covariates"),
    "covariate is a group": (group_instead("covariates/sex"), r"/covariates/sex must be a dataset, found a group"),
    "unknown kind": (set_attr("covariates/sex", "kind", "boolean"), r"/covariates/sex attribute kind is 'boolean'"),
    "id without levels": (lambda f: f["covariates/id"].attrs.__delitem__("levels"), r"/covariates/id \(id\) needs a 'levels' attribute"),
    "levels not JSON": (set_attr("covariates/id", "levels", "[s1, s2"), r"/covariates/id attribute levels is not a JSON list"),
    "code outside levels": (replace("covariates/id", np.repeat([0, 2], 4)), r"/covariates/id has codes outside 0..1"),
    "float codes": (replace("covariates/sex", np.repeat([0.0, 1.0], 4)), r"/covariates/sex \(binary\) must hold integer codes"),
    "binary not 0/1": (replace("covariates/sex", np.repeat([0, 2], 4)), r"/covariates/sex \(binary\) must contain only 0 and 1"),
    "covariate length": (replace("covariates/age", np.arange(5.0)), r"/covariates/age must have shape \(8,\)"),
    "NaN covariate": (replace("covariates/dose", np.full(8, np.nan)), r"/covariates/dose contains NaN"),
    "NaN observed y": (lambda f: f["y"].__setitem__((slice(None), slice(None)), np.nan), r"/y has a non-finite observed value"),
    "image_shape": (set_attr("/", "image_shape", [3, 3]), r"image_shape \[3, 3\] has 9 pixels but /y has D = 4"),
    "feature_names": (set_attr("/", "feature_names", ["a", "b"]), r"feature_names lists 2 names but /y has D = 4"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_file_is_rejected_with_file_and_path(tmp_path, case):
    mutate, message = CASES[case]
    path = valid_file(tmp_path)
    read_h5(path)  # valid before the mutation
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(DataFormatError, match=message) as err:
        read_h5(path)
    assert str(err.value).startswith(str(path)), str(err.value)
    assert "\n" not in str(err.value)


def test_levels_survive_round_trip_as_json(tmp_path):
    path = valid_file(tmp_path)
    with h5py.File(path) as f:
        assert json.loads(f["covariates/id"].attrs["levels"]) == ["s1", "s2"]
