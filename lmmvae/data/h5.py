"""The one longitudinal HDF5 format (docs/data_format.md): its reader and writer.

Files are validated on read, with errors that name the file, the HDF5 path and what was expected,
and are written atomically (:mod:`lmmvae.atomic`), so a half-written file is never mistaken for a
finished one. The in-memory form lives in :mod:`lmmvae.data.longitudinal` and the level matcher in
:mod:`lmmvae.data.levels`; both are re-exported here, the import path most callers use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from lmmvae.atomic import hdf5_output
from lmmvae.data.levels import is_blank, level_key, match_levels, plain_value
from lmmvae.data.longitudinal import COVARIATE_KINDS, CODED_KINDS, SPLITS, Covariate, LongitudinalData
from lmmvae.errors import DataFormatError

__all__ = ["COVARIATE_KINDS", "FORMAT_VERSION", "SPLITS", "Covariate", "LongitudinalData",
           "is_blank", "level_key", "match_levels", "plain_value", "read_h5", "write_h5"]

FORMAT_VERSION = 1


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
    """The data of the open file ``f`` (docs/data_format.md), every structural fault of the file a
    one-line :class:`DataFormatError` naming ``path`` and the dataset; sizes checked against the
    memory available before anything large is read."""
    _check_version(f, path)
    y_ds, mask_ds, split_ds = _dataset(f, path, "y"), _dataset(f, path, "mask"), _dataset(f, path, "split")
    y_full_ds, truth_ds = _dataset(f, path, "y_full", False), _dataset(f, path, "latent_truth", False)
    covariate_ds = _checked_datasets(f, path, y_ds, mask_ds, split_ds, y_full_ds)
    _check_memory(path, [y_ds, mask_ds, split_ds, y_full_ds, truth_ds, *covariate_ds.values()])
    covariates = {name: _read_covariate(ds, name, path) for name, ds in covariate_ds.items()}
    attrs = _read_attrs(f)
    try:
        return LongitudinalData(
            y=y_ds[()], mask=mask_ds[()], split=split_ds[()], covariates=covariates,
            y_full=None if y_full_ds is None else y_full_ds[()],
            latent_truth=None if truth_ds is None else truth_ds[()],
            attrs=attrs,
        )
    except DataFormatError as err:
        raise DataFormatError(str(err).replace("data:", f"{path}:", 1)) from None


def _check_version(f, path: Path) -> None:
    """Refuse a file whose root ``format_version`` is not this reader's (an integer, maybe 1-element array)."""
    version = plain_value(f.attrs.get("format_version"))
    if isinstance(version, np.ndarray) and version.size == 1:
        version = plain_value(version.reshape(-1)[0])
    integral = isinstance(version, int) and not isinstance(version, bool) or (
        isinstance(version, float) and version.is_integer())
    if not integral or int(version) != FORMAT_VERSION:
        raise DataFormatError(f"{path}: root attribute format_version must be {FORMAT_VERSION}, got {version!r}"
                              + ("" if integral or version is None else " (not an integer)"))


def _dataset(f, path: Path, key: str, required: bool = True):
    """The dataset ``/key`` of ``f`` (None when absent and not ``required``); a group there is an error."""
    if key not in f:
        if required:
            raise DataFormatError(f"{path}: missing dataset /{key}")
        return None
    if not isinstance(f[key], h5py.Dataset):
        raise DataFormatError(f"{path}: /{key} must be a dataset, found a group")
    return f[key]


def _checked_datasets(f, path: Path, y_ds, mask_ds, split_ds, y_full_ds) -> dict:
    """Check the dtypes and shapes of /y [N, D], /mask [N, D], /split [N], /y_full [N, D] and of
    each /covariates/<name> [N]; return the covariate datasets by name (in file order)."""
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
    return covariate_ds


def _read_covariate(ds, name: str, path: Path) -> Covariate:
    """The covariate stored in ``ds`` (/covariates/<name>): its kind, levels, dtype and reference checked."""
    kind = plain_value(ds.attrs.get("kind"))
    if kind not in COVARIATE_KINDS:
        raise DataFormatError(
            f"{path}: /covariates/{name} attribute kind is {kind!r}, expected one of {COVARIATE_KINDS}"
        )
    levels = _read_levels(ds, name, kind, path)
    if kind in CODED_KINDS and ds.dtype.kind not in "iu":
        raise DataFormatError(f"{path}: /covariates/{name} ({kind}) must hold integer codes, got {ds.dtype}")
    if kind not in CODED_KINDS and ds.dtype.kind not in "biuf":
        raise DataFormatError(f"{path}: /covariates/{name} ({kind}) must hold numbers, got dtype {ds.dtype} "
                              "(store text as a categorical: integer codes plus a 'levels' attribute)")
    reference = ds.attrs.get("reference")  # JSON of one level, categorical only (docs/data_format.md)
    try:
        reference = None if reference is None else json.loads(plain_value(reference))
        return Covariate(ds[()], kind, levels, reference)
    except (json.JSONDecodeError, TypeError, DataFormatError) as err:
        raise DataFormatError(f"{path}: /covariates/{name} attribute reference: {err}") from None


def _read_levels(ds, name: str, kind: str, path: Path) -> list | None:
    """The 'levels' attribute of a coded covariate (required for categorical and id, optional for
    binary) as a list of plain values; None for the other kinds."""
    levels = ds.attrs.get("levels")
    if not (kind in ("categorical", "id") or (kind == "binary" and levels is not None)):
        return None
    if levels is None:
        raise DataFormatError(f"{path}: /covariates/{name} ({kind}) needs a 'levels' attribute")
    levels = plain_value(levels)
    try:
        levels = json.loads(levels) if isinstance(levels, str) else [plain_value(v) for v in levels]
    except (json.JSONDecodeError, TypeError):
        raise DataFormatError(f"{path}: /covariates/{name} attribute levels is not a JSON list") from None
    if not isinstance(levels, list) or any(isinstance(v, (list, dict)) for v in levels):
        raise DataFormatError(f"{path}: /covariates/{name} attribute levels must be a list of values, "
                              f"got {str(levels)[:80]}")
    return levels


def _read_attrs(f) -> dict:
    """The root attributes but format_version, as plain values (``args`` parsed from JSON when it is)."""
    attrs = {}
    for key, value in f.attrs.items():
        if key == "format_version":
            continue
        value = plain_value(value)
        if isinstance(value, np.ndarray):
            value = [plain_value(v) for v in value.tolist()]
        if key == "args" and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # provenance only: keep the text
        attrs[key] = value
    return attrs


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
    with hdf5_output(path) as f:  # built in memory: a full disk is an OSError, never a crash in HDF5
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
            if cov.reference is not None:
                ds.attrs["reference"] = json.dumps(cov.reference)
        for key, value in data.attrs.items():
            if key == "args" and not isinstance(value, str):
                value = json.dumps(value, sort_keys=True)
            if value is None:
                continue
            f.attrs[key] = value
        f.attrs["format_version"] = FORMAT_VERSION
    return path
