"""The one longitudinal HDF5 format (shared/DATA.md), its in-memory form, reader and writer.

Every data set of the benchmark, and any user data set, is a :class:`LongitudinalData`. Files are
validated on read, with errors that name the file, the HDF5 path and what was expected, and are
written atomically (temporary name, then rename), so a half-written file is never mistaken for a
finished one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lmmvae.atomic import atomic_output

FORMAT_VERSION = 1
COVARIATE_KINDS = ("continuous", "binary", "categorical", "id", "time")
SPLITS = {"train": 0, "validation": 1, "test": 2}
_CODED_KINDS = ("binary", "categorical", "id")


class DataFormatError(ValueError):
    """A file or array does not follow the longitudinal HDF5 format; the message says where."""


@dataclass
class Covariate:
    """One named covariate: ``values`` float64 (continuous, time) or int64 codes (binary,
    categorical, id); ``levels`` are the original values behind the codes (categorical, id)."""

    values: np.ndarray  # [N]
    kind: str
    levels: list | None = None

    def __post_init__(self) -> None:
        if self.kind not in COVARIATE_KINDS:
            raise DataFormatError(f"covariate kind {self.kind!r} is not one of {COVARIATE_KINDS}")
        self.values = np.asarray(self.values)
        if self.kind in ("categorical", "id") and self.levels is None:
            # no levels given: the values are the raw levels; store codes into their sorted set
            uniq, codes = np.unique(self.values, return_inverse=True)
            self.levels = [_plain(v) for v in uniq]
            self.values = codes
        if self.kind in _CODED_KINDS:
            self.values = self.values.astype(np.int64)
        else:
            self.values = self.values.astype(np.float64)
        if self.levels is not None:
            self.levels = [_plain(v) for v in self.levels]

    @property
    def is_coded(self) -> bool:
        return self.kind in _CODED_KINDS

    def subset(self, index: np.ndarray) -> "Covariate":
        return Covariate(self.values[index], self.kind, self.levels)


def _plain(v: Any) -> Any:
    """numpy scalars and bytes -> plain Python values (JSON- and HDF5-attr-friendly)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class LongitudinalData:
    """Observations ``y`` [N, D] with observed-mask, split and named covariates (DATA.md)."""

    y: np.ndarray  # [N, D] float32, 0 where missing
    mask: np.ndarray  # [N, D] uint8, 1 = observed
    split: np.ndarray  # [N] uint8, 0 train / 1 validation / 2 test
    covariates: dict[str, Covariate]
    y_full: np.ndarray | None = None  # [N, D] float32, complete data before masking
    latent_truth: np.ndarray | None = None  # [N, K] float32
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=np.uint8)
        self.split = np.asarray(self.split, dtype=np.uint8)
        if self.y_full is not None:
            self.y_full = np.asarray(self.y_full, dtype=np.float32)
        if self.latent_truth is not None:
            self.latent_truth = np.asarray(self.latent_truth, dtype=np.float32)
        self.validate()

    # -- shape --------------------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.y.shape[1])

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        shape = self.attrs.get("image_shape")
        return tuple(int(s) for s in shape) if shape is not None else None

    @property
    def name(self) -> str:
        return str(self.attrs.get("name", "data"))

    def split_index(self, split: str) -> np.ndarray:
        """Row indices of ``split`` ("train", "validation" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
        return np.flatnonzero(self.split == SPLITS[split])

    def subset(self, index: np.ndarray) -> "LongitudinalData":
        """Rows ``index``; covariate codes and levels are kept, so subsets stay comparable."""
        index = np.asarray(index)
        return LongitudinalData(
            y=self.y[index],
            mask=self.mask[index],
            split=self.split[index],
            covariates={k: c.subset(index) for k, c in self.covariates.items()},
            y_full=None if self.y_full is None else self.y_full[index],
            latent_truth=None if self.latent_truth is None else self.latent_truth[index],
            attrs=dict(self.attrs),
        )

    def covariate_frame(self):
        """Covariates as a pandas DataFrame with the original level values (categorical, id)."""
        import pandas as pd

        columns = {}
        for name, cov in self.covariates.items():
            if cov.levels is not None:
                columns[name] = np.asarray(cov.levels, dtype=object)[cov.values]
            else:
                columns[name] = cov.values
        return pd.DataFrame(columns)

    # -- checks -------------------------------------------------------------------------------
    def validate(self, where: str = "data") -> None:
        """Raise :class:`DataFormatError` naming ``where`` and the offending part."""
        if self.y.ndim != 2:
            raise DataFormatError(f"{where}: /y must be 2-D [N, D], got shape {self.y.shape}")
        n, d = self.y.shape
        image_shape = self.attrs.get("image_shape")
        if image_shape is not None and int(np.prod(image_shape)) != d:
            raise DataFormatError(
                f"{where}: root attribute image_shape {list(image_shape)} has {int(np.prod(image_shape))} pixels "
                f"but /y has D = {d} columns"
            )
        names = self.attrs.get("feature_names")
        if names is not None and len(names) != d:
            raise DataFormatError(f"{where}: root attribute feature_names lists {len(names)} names but /y has D = {d} columns")
        for key, arr, shape in (("/mask", self.mask, (n, d)), ("/split", self.split, (n,))):
            if arr.shape != shape:
                raise DataFormatError(f"{where}: {key} must have shape {shape}, got {arr.shape}")
        if self.y_full is not None and self.y_full.shape != (n, d):
            raise DataFormatError(f"{where}: /y_full must have shape {(n, d)}, got {self.y_full.shape}")
        if self.latent_truth is not None and (self.latent_truth.ndim != 2 or self.latent_truth.shape[0] != n):
            raise DataFormatError(f"{where}: /latent_truth must have shape [{n}, K], got {self.latent_truth.shape}")
        if not np.isin(self.mask, (0, 1)).all():
            raise DataFormatError(f"{where}: /mask must contain only 0 and 1")
        if not np.isin(self.split, (0, 1, 2)).all():
            raise DataFormatError(f"{where}: /split must contain only 0 (train), 1 (validation), 2 (test)")
        observed = self.mask.astype(bool)
        if not np.isfinite(self.y[observed]).all():
            bad = np.argwhere(~np.isfinite(self.y) & observed)[0]
            raise DataFormatError(
                f"{where}: /y has a non-finite observed value at row {bad[0]}, column {bad[1]} "
                "(mark missing entries with mask 0 instead)"
            )
        if not np.isfinite(self.y).all():
            self.y = np.where(observed, self.y, 0.0).astype(np.float32)
        for name, cov in self.covariates.items():
            if cov.values.shape != (n,):
                raise DataFormatError(f"{where}: /covariates/{name} must have shape ({n},), got {cov.values.shape}")
            if not cov.is_coded and not np.isfinite(cov.values).all():
                raise DataFormatError(f"{where}: /covariates/{name} contains NaN or infinite values")
            if cov.kind == "binary" and not np.isin(cov.values, (0, 1)).all():
                raise DataFormatError(f"{where}: /covariates/{name} (binary) must contain only 0 and 1")
            if cov.levels is not None and len(cov.values) and (
                cov.values.min() < 0 or cov.values.max() >= len(cov.levels)
            ):
                raise DataFormatError(
                    f"{where}: /covariates/{name} has codes outside 0..{len(cov.levels) - 1} (its levels)"
                )


# -- reading and writing ----------------------------------------------------------------------


def read_h5(path: str | os.PathLike) -> LongitudinalData:
    """Read and validate a longitudinal HDF5 file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle as f:
        version = f.attrs.get("format_version")
        if version is None or int(version) != FORMAT_VERSION:
            raise DataFormatError(f"{path}: root attribute format_version must be {FORMAT_VERSION}, got {_plain(version)!r}")

        def array(key: str, required: bool = True):
            if key not in f:
                if required:
                    raise DataFormatError(f"{path}: missing dataset /{key}")
                return None
            if not isinstance(f[key], h5py.Dataset):
                raise DataFormatError(f"{path}: /{key} must be a dataset, found a group")
            return f[key][()]

        y, mask, split = array("y"), array("mask"), array("split")
        for key, arr, kinds in (("y", y, "f"), ("mask", mask, "ui"), ("split", split, "ui")):
            if arr.dtype.kind not in kinds:
                raise DataFormatError(f"{path}: /{key} has dtype {arr.dtype}, expected {'float' if kinds == 'f' else 'integer'}")
        if "covariates" not in f or not isinstance(f["covariates"], h5py.Group):
            raise DataFormatError(f"{path}: missing group /covariates")
        covariates = {}
        for name, ds in f["covariates"].items():
            if not isinstance(ds, h5py.Dataset):
                raise DataFormatError(f"{path}: /covariates/{name} must be a dataset, found a group")
            kind = ds.attrs.get("kind")
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind not in COVARIATE_KINDS:
                raise DataFormatError(
                    f"{path}: /covariates/{name} attribute kind is {kind!r}, expected one of {COVARIATE_KINDS}"
                )
            levels = ds.attrs.get("levels")
            if kind in ("categorical", "id"):
                if levels is None:
                    raise DataFormatError(f"{path}: /covariates/{name} ({kind}) needs a 'levels' attribute")
                try:
                    levels = json.loads(levels) if isinstance(levels, str) else [_plain(v) for v in levels]
                except json.JSONDecodeError:
                    raise DataFormatError(f"{path}: /covariates/{name} attribute levels is not a JSON list") from None
                if not isinstance(levels, list):
                    raise DataFormatError(f"{path}: /covariates/{name} attribute levels must be a list, got {levels!r}")
            else:
                levels = None
            values = ds[()]
            if kind in _CODED_KINDS and values.dtype.kind not in "iu":
                raise DataFormatError(f"{path}: /covariates/{name} ({kind}) must hold integer codes, got {values.dtype}")
            covariates[name] = Covariate(values, kind, levels)
        attrs = {}
        for key, value in f.attrs.items():
            if key == "format_version":
                continue
            value = _plain(value)
            if isinstance(value, np.ndarray):
                value = [_plain(v) for v in value.tolist()]
            if key == "args" and isinstance(value, str):
                value = json.loads(value)
            attrs[key] = value
        try:
            return LongitudinalData(
                y=y, mask=mask, split=split, covariates=covariates,
                y_full=array("y_full", required=False),
                latent_truth=array("latent_truth", required=False),
                attrs=attrs,
            )
        except DataFormatError as err:
            raise DataFormatError(str(err).replace("data:", f"{path}:", 1)) from None


def write_h5(data: LongitudinalData, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then rename)."""
    data.validate()
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("y", data=data.y.astype(np.float32), compression="gzip", compression_opts=4)
        f.create_dataset("mask", data=data.mask.astype(np.uint8), compression="gzip", compression_opts=4)
        f.create_dataset("split", data=data.split.astype(np.uint8))
        if data.y_full is not None:
            f.create_dataset("y_full", data=data.y_full.astype(np.float32), compression="gzip", compression_opts=4)
        if data.latent_truth is not None:
            f.create_dataset("latent_truth", data=data.latent_truth.astype(np.float32))
        group = f.create_group("covariates")
        for name, cov in data.covariates.items():
            dtype = np.int64 if cov.is_coded else np.float64
            ds = group.create_dataset(name, data=cov.values.astype(dtype))
            ds.attrs["kind"] = cov.kind
            if cov.levels is not None:
                ds.attrs["levels"] = json.dumps(cov.levels)
        for key, value in data.attrs.items():
            if key == "args" and not isinstance(value, str):
                value = json.dumps(value, sort_keys=True)
            if value is None:
                continue
            f.attrs[key] = value
        f.attrs["format_version"] = FORMAT_VERSION
    return path
