"""The one longitudinal HDF5 format (shared/DATA.md), its in-memory form, reader and writer.

Every data set of the benchmark, and any user data set, is a :class:`LongitudinalData`. Files are
validated on read, with errors that name the file, the HDF5 path and what was expected, and are
written atomically (temporary name, then rename), so a half-written file is never mistaken for a
finished one.
"""

from __future__ import annotations

import json
import math
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


# -- levels: the one place where values of categorical / id covariates are matched ---------------

_BLANK = {"", "nan", "none", "na", "<na>", "null"}


def is_blank(value: Any) -> bool:
    """A missing level: ``None``, NaN, ``""`` or the text pandas/R write for them (``nan``, ``NA``)."""
    value = _plain(value)
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _BLANK


def level_key(value: Any) -> str:
    """How levels are compared, by value: ``12``, ``12.0``, ``np.int64(12)``, ``"12"`` and
    ``"12.0"`` are one level (pandas turns an int id column with a blank into floats; a CSV read
    as text gives strings); other strings compare as themselves, stripped."""
    value = _plain(value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text
        if not math.isfinite(number):
            return text
        value = number
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def match_levels(values: list, reference: list) -> np.ndarray:
    """Codes into ``reference`` of each of ``values`` (int64, ``-1``: not a reference level).

    An exact textual match wins; otherwise values match by :func:`level_key`, unless two reference
    levels share that key (then only exact matches count). Used by the loader (``recode``) and
    by the design (categorical levels, random-effect groups), so both agree on who is who.
    """
    exact = {str(_plain(v)): i for i, v in enumerate(reference)}
    by_key: dict[str, int] = {}
    for i, v in enumerate(reference):
        key = level_key(v)
        by_key[key] = -2 if key in by_key else i  # -2: ambiguous key
    out = np.empty(len(values), dtype=np.int64)
    for j, v in enumerate(values):
        code = exact.get(str(_plain(v)))
        if code is None:
            code = by_key.get(level_key(v), -1)
            code = -1 if code == -2 else code
        out[j] = code
    return out


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
        self.y = _as_float32(self.y, "/y")
        self.mask = _as_codes(self.mask, (0, 1), "/mask", "0 and 1")
        self.split = _as_codes(self.split, (0, 1, 2), "/split", "0 (train), 1 (validation), 2 (test)")
        if self.y_full is not None:
            self.y_full = _as_float32(self.y_full, "/y_full")
        if self.latent_truth is not None:
            self.latent_truth = _as_float32(self.latent_truth, "/latent_truth")
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
        if self.mask.size and self.mask.max() > 1:
            raise DataFormatError(f"{where}: /mask must contain only 0 and 1")
        if self.split.size and self.split.max() > 2:
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
            if cov.kind == "id":
                _check_ids(cov, f"{where}: /covariates/{name}")

    def duplicate_rows(self) -> tuple[int, str]:
        """Rows that repeat an earlier row's (id, time): their number and the first one, described.

        ``lmmvae fit`` warns about them (a repeated measurement is legal for the model, but is
        usually a merge gone wrong); ``(0, "")`` without an id or a time covariate.
        """
        ids = [n for n, c in self.covariates.items() if c.kind == "id"]
        times = [n for n, c in self.covariates.items() if c.kind == "time"]
        if not ids or not times or self.n_obs < 2:
            return 0, ""
        keys = np.stack([self.covariates[n].values.astype(np.float64) for n in ids + times], axis=1)
        _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
        n_dup = int((counts - 1).sum())
        if not n_dup:
            return 0, ""
        seen = np.zeros(self.n_obs, bool)
        seen[first] = True
        row = int(np.flatnonzero(~seen)[0])
        cov = self.covariates[ids[0]]
        subject = cov.levels[cov.values[row]] if cov.levels is not None else cov.values[row]
        return n_dup, f"row {row}: {ids[0]} {subject!r}, {times[0]} {_plain(self.covariates[times[0]].values[row])}"


def _as_float32(arr, key: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise DataFormatError(f"data: {key} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _as_codes(arr, valid: tuple, key: str, meaning: str) -> np.ndarray:
    """``arr`` as uint8 after checking its values (a cast alone would wrap 256 to 0 and 1.5 to 1)."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise DataFormatError(f"data: {key} must hold integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint8 or arr.dtype.kind == "b":
        if arr.dtype.kind == "b" or not arr.size or arr.max() <= valid[-1]:
            return arr.astype(np.uint8, copy=False)
    ok = np.isin(arr, valid)
    if not ok.all():
        bad = np.argwhere(~ok)[0]
        raise DataFormatError(f"data: {key} must contain only {meaning}, found {_plain(arr[tuple(bad)])!r} "
                              f"at {'row' if arr.ndim == 1 else 'row, column'} {', '.join(map(str, bad))}")
    return arr.astype(np.uint8)


def _check_ids(cov: Covariate, where: str) -> None:
    """Every row has an id, and no two levels are the same id written differently (``12``/``12.0``)."""
    if cov.levels is None or not len(cov.values):
        return
    blank = [i for i, v in enumerate(cov.levels) if is_blank(v)]
    if blank:
        rows = np.flatnonzero(np.isin(cov.values, blank))
        if len(rows):
            raise DataFormatError(f"{where} (id) is blank at row {rows[0]} ({len(rows)} row(s) in all); "
                                  "every row needs its subject's id")
    keys: dict[str, Any] = {}
    for v in cov.levels:
        other = keys.setdefault(level_key(v), v)
        if other is not v and str(other) != str(v):
            raise DataFormatError(f"{where} (id) has levels {other!r} and {v!r}, which are the same id; "
                                  "write each subject's id one way")


# -- reading and writing ----------------------------------------------------------------------


def read_h5(path: str | os.PathLike) -> LongitudinalData:
    """Read and validate a longitudinal HDF5 file: the one gate every data file passes.

    Errors are one-line :class:`DataFormatError` s naming the file, the HDF5 path and the fix; the
    shapes and sizes the file declares are checked before anything is read, so a file that
    declares more data than this machine's memory fails at once.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data file")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a directory, not an HDF5 data file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(f"{path}: not a readable HDF5 file ({str(err).splitlines()[0][:120]})") from None
    try:
        with handle as f:
            return _read_open(f, path)
    except DataFormatError:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as err:  # h5py on a damaged file
        raise DataFormatError(f"{path}: unreadable HDF5 content ({type(err).__name__}: "
                              f"{(str(err).splitlines() or [''])[0][:120]})") from None


def _read_open(f, path: Path) -> LongitudinalData:
    version = _plain(f.attrs.get("format_version"))
    if isinstance(version, np.ndarray) and version.size == 1:
        version = _plain(version.reshape(-1)[0])
    integral = isinstance(version, int) and not isinstance(version, bool) or (
        isinstance(version, float) and version.is_integer())
    if not integral or int(version) != FORMAT_VERSION:
        raise DataFormatError(f"{path}: root attribute format_version must be {FORMAT_VERSION}, got {version!r}"
                              + ("" if integral or version is None else " (not an integer)"))

    def dataset(key: str, required: bool = True):
        if key not in f:
            if required:
                raise DataFormatError(f"{path}: missing dataset /{key}")
            return None
        if not isinstance(f[key], h5py.Dataset):
            raise DataFormatError(f"{path}: /{key} must be a dataset, found a group")
        return f[key]

    y_ds, mask_ds, split_ds = dataset("y"), dataset("mask"), dataset("split")
    y_full_ds, truth_ds = dataset("y_full", required=False), dataset("latent_truth", required=False)
    for key, ds, kinds in (("y", y_ds, "f"), ("mask", mask_ds, "uib"), ("split", split_ds, "ui")):
        if ds.dtype.kind not in kinds:
            raise DataFormatError(f"{path}: /{key} has dtype {ds.dtype}, expected {'float' if kinds == 'f' else 'integer'}")
    if len(y_ds.shape) != 2:
        raise DataFormatError(f"{path}: /y must be 2-D [N, D], got shape {y_ds.shape}")
    n, d = y_ds.shape
    for key, ds, shape in (("mask", mask_ds, (n, d)), ("split", split_ds, (n,)),
                           ("y_full", y_full_ds, (n, d))):
        if ds is not None and ds.shape != shape:
            raise DataFormatError(f"{path}: /{key} must have shape {shape} (as /y), got {ds.shape}")
    if "covariates" not in f or not isinstance(f["covariates"], h5py.Group):
        raise DataFormatError(f"{path}: missing group /covariates")
    covariate_ds = {}
    for name, ds in f["covariates"].items():
        if not isinstance(ds, h5py.Dataset):
            raise DataFormatError(f"{path}: /covariates/{name} must be a dataset, found a group")
        if ds.shape != (n,):
            raise DataFormatError(f"{path}: /covariates/{name} must have shape ({n},) (one value per row of /y), "
                                  f"got {ds.shape}")
        covariate_ds[name] = ds
    _check_memory(path, [y_ds, mask_ds, split_ds, y_full_ds, truth_ds, *covariate_ds.values()])

    covariates = {}
    for name, ds in covariate_ds.items():
        kind = _plain(ds.attrs.get("kind"))
        if kind not in COVARIATE_KINDS:
            raise DataFormatError(
                f"{path}: /covariates/{name} attribute kind is {kind!r}, expected one of {COVARIATE_KINDS}"
            )
        levels = ds.attrs.get("levels")
        if kind in ("categorical", "id"):
            if levels is None:
                raise DataFormatError(f"{path}: /covariates/{name} ({kind}) needs a 'levels' attribute")
            levels = _plain(levels)
            try:
                levels = json.loads(levels) if isinstance(levels, str) else [_plain(v) for v in levels]
            except (json.JSONDecodeError, TypeError):
                raise DataFormatError(f"{path}: /covariates/{name} attribute levels is not a JSON list") from None
            if not isinstance(levels, list) or any(isinstance(v, (list, dict)) for v in levels):
                raise DataFormatError(f"{path}: /covariates/{name} attribute levels must be a list of values, "
                                      f"got {str(levels)[:80]}")
        else:
            levels = None
        if kind in _CODED_KINDS and ds.dtype.kind not in "iu":
            raise DataFormatError(f"{path}: /covariates/{name} ({kind}) must hold integer codes, got {ds.dtype}")
        if kind not in _CODED_KINDS and ds.dtype.kind not in "biuf":
            raise DataFormatError(f"{path}: /covariates/{name} ({kind}) must hold numbers, got dtype {ds.dtype} "
                                  "(store text as a categorical: integer codes plus a 'levels' attribute)")
        covariates[name] = Covariate(ds[()], kind, levels)
    attrs = {}
    for key, value in f.attrs.items():
        if key == "format_version":
            continue
        value = _plain(value)
        if isinstance(value, np.ndarray):
            value = [_plain(v) for v in value.tolist()]
        if key == "args" and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # provenance only: keep the text
        attrs[key] = value
    try:
        return LongitudinalData(
            y=y_ds[()], mask=mask_ds[()], split=split_ds[()], covariates=covariates,
            y_full=None if y_full_ds is None else y_full_ds[()],
            latent_truth=None if truth_ds is None else truth_ds[()],
            attrs=attrs,
        )
    except DataFormatError as err:
        raise DataFormatError(str(err).replace("data:", f"{path}:", 1)) from None


def _available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _check_memory(path: Path, datasets: list) -> None:
    """Refuse a file whose arrays (as read, plus their float32 copies) exceed the memory available."""
    declared = 0
    for ds in datasets:
        if ds is not None:
            declared += int(np.prod(ds.shape, dtype=np.float64)) * max(ds.dtype.itemsize, 4) * 2
    available = _available_memory()
    if declared > available:
        raise DataFormatError(f"{path}: its datasets declare {declared / 2**30:.3g} GiB, more than the "
                              f"{available / 2**30:.3g} GiB of memory available; is the file damaged?")


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
