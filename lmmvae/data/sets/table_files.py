"""Reading a table file as a DataFrame: CSV / TSV / delimited text, Parquet or AnnData ``.h5ad``
(read with h5py, no anndata dependency). :mod:`lmmvae.data.sets.table` turns the frame into longitudinal data; every
error here is one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lmmvae.data.levels import plain_value
from lmmvae.data.tables import read_csv
from lmmvae.errors import DataFormatError

#: delimited text tables and the delimiter each suffix implies (.txt: the header line's tab or comma)
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}
TABLE_SUFFIXES = (*TEXT_SUFFIXES, ".parquet", ".h5ad")
#: names ``--sep`` accepts besides a single character
SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " ", "pipe": "|"}


def read_table(path: str | os.PathLike, text: tuple[str, ...] = (), sep: str | None = None):
    """A CSV / TSV / text, Parquet or AnnData file as a DataFrame: ``(frame, default_features)``.

    ``default_features`` are the AnnData file's ``var`` names (its ``X`` columns), ``None`` for
    text and Parquet. ``text`` columns of a text table (the subject id) are read as text (``007`` is
    not ``7``). ``sep`` is a text table's delimiter (:func:`delimiter`; default by suffix). One-line
    errors name the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataFormatError(f"{path}: unknown table type {suffix or '(no extension)'!r}; "
                              f"expected one of {', '.join(TABLE_SUFFIXES)}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table file")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a directory, not a table file")
    if suffix in TEXT_SUFFIXES:
        return read_csv(path, text=text, sep=delimiter(path, sep)), None
    if sep is not None:
        raise DataFormatError(f"{path}: --sep applies to text tables ({', '.join(TEXT_SUFFIXES)}), not {suffix}")
    if suffix == ".parquet":
        return _read_parquet(path), None
    return _read_h5ad(path)


def delimiter(path: Path, sep: str | None = None) -> str:
    """The delimiter of text table ``path``: ``sep`` (one character, or tab, comma, semicolon, space,
    pipe, ``\\t``) when given, else by suffix: ``.csv`` a comma, ``.tsv`` a tab, ``.txt`` a tab when
    its first line has one, else a comma."""
    if sep is not None:
        chosen = SEP_NAMES.get(sep.lower(), sep)
        if len(chosen) != 1 or chosen in "\"\r\n":
            raise DataFormatError(f"--sep {sep!r}: expected one character or one of {', '.join(SEP_NAMES)}")
        return chosen
    implied = TEXT_SUFFIXES[path.suffix.lower()]
    if implied is not None:
        return implied
    with open(path, "rb") as f:
        first = f.readline(1 << 16)
    return "\t" if b"\t" in first else ","


def _read_parquet(path: Path):
    import pandas as pd

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DataFormatError(f"{path}: reading Parquet needs the pyarrow package, which is not installed "
                              "(pip install pyarrow), or save the table as CSV") from None
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow's errors have no common base class
        raise DataFormatError(f"{path}: not a readable Parquet file ({(str(err).splitlines() or [''])[0][:120]})") from None
    if len(frame) == 0:
        raise DataFormatError(f"{path}: has no rows")
    return frame.reset_index(drop=True)


def _read_h5ad(path: Path):
    """AnnData's on-disk format read with h5py (no anndata dependency): ``X`` (dense, or CSR/CSC
    sparse) as feature columns named by ``var``'s index, ``obs`` columns (numbers, strings,
    categoricals, nullable integers/booleans) as covariates."""
    import h5py
    import pandas as pd

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(f"{path}: not a readable HDF5/AnnData file ({str(err).splitlines()[0][:120]})") from None
    with handle as f:
        for key in ("X", "obs", "var"):
            if key not in f:
                raise DataFormatError(f"{path}: missing /{key}; an AnnData file has X (features), obs and var")
        try:
            obs = _h5ad_frame(f["obs"], path, "obs")
            var_names = [str(v) for v in _h5ad_index(f["var"], path, "var")]
            x = _h5ad_matrix(f["X"], path)
        except DataFormatError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError) as err:
            # a layout this reader does not expect (codes out of range, a dataset where a group belongs, ...)
            reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
            raise DataFormatError(f"{path}: not a readable AnnData layout ({type(err).__name__}: {reason})") from None
    if x.shape != (len(obs), len(var_names)):
        raise DataFormatError(f"{path}: /X has shape {x.shape} but obs has {len(obs)} rows and var {len(var_names)} names")
    clash = sorted(set(var_names) & set(obs.columns))
    if clash:
        raise DataFormatError(f"{path}: {clash[0]!r} is both a var name (feature) and an obs column; rename one")
    if len(set(var_names)) != len(var_names):
        raise DataFormatError(f"{path}: var names are not unique")
    features = pd.DataFrame(x, columns=var_names)
    frame = pd.concat([obs.reset_index(drop=True), features], axis=1)
    if len(frame) == 0:
        raise DataFormatError(f"{path}: has no rows")
    return frame, var_names


def _attr(node, key, default=None):
    value = node.attrs.get(key, default)
    return plain_value(value) if not isinstance(value, np.ndarray) else [plain_value(v) for v in value.tolist()]


def _h5ad_index(group, path: Path, where: str) -> np.ndarray:
    key = _attr(group, "_index", "_index")
    if key not in group:
        raise DataFormatError(f"{path}: /{where} has no index dataset {key!r}")
    return _h5ad_column(group[key], path, f"{where}/{key}")


def _h5ad_frame(group, path: Path, where: str):
    import pandas as pd

    index_key = _attr(group, "_index", "_index")
    order = _attr(group, "column-order", None)
    if order is None:
        order = [k for k in group.keys() if k not in (index_key, "__categories")]
    if isinstance(order, str):
        order = [order]
    columns = {}
    for name in order:
        if name not in group:
            raise DataFormatError(f"{path}: /{where} lists column {name!r} in column-order but has no such entry")
        columns[str(name)] = _h5ad_column(group[name], path, f"{where}/{name}", group)
    return pd.DataFrame(columns)


def _h5ad_column(node, path: Path, where: str, frame_group=None) -> Any:
    import h5py
    import pandas as pd

    encoding = _attr(node, "encoding-type", None)
    if isinstance(node, h5py.Group):
        if encoding == "categorical" or {"categories", "codes"} <= set(node.keys()):
            categories = _h5ad_column(node["categories"], path, f"{where}/categories")
            codes = node["codes"][()].astype(np.int64)
            return pd.Categorical.from_codes(codes, categories=list(categories))
        if encoding in ("nullable-integer", "nullable-boolean") or {"values", "mask"} <= set(node.keys()):
            values = node["values"][()].astype(np.float64)
            values[node["mask"][()].astype(bool)] = np.nan
            return values
        raise DataFormatError(f"{path}: /{where} is a group of encoding {encoding!r}, which this reader does not know")
    data = node[()]
    if data.dtype.kind in ("S", "O", "U"):
        return np.array([plain_value(v) for v in data], dtype=object)
    name = where.rsplit("/", 1)[-1]
    if frame_group is not None and "__categories" in frame_group and name in frame_group["__categories"]:
        # anndata < 0.7: a categorical is integer codes, its categories in obs/__categories/<name>
        categories = [plain_value(v) for v in frame_group["__categories"][name][()]]
        return pd.Categorical.from_codes(data.astype(np.int64), categories=categories)
    return data


def _h5ad_matrix(node, path: Path) -> np.ndarray:
    import h5py

    if isinstance(node, h5py.Dataset):
        x = node[()]
        if x.ndim != 2:
            raise DataFormatError(f"{path}: /X must be 2-D, got shape {x.shape}")
        return np.asarray(x, dtype=np.float64)
    encoding = _attr(node, "encoding-type", "")
    shape = tuple(int(s) for s in _attr(node, "shape", ()) or ())
    if encoding not in ("csr_matrix", "csc_matrix") or len(shape) != 2:
        raise DataFormatError(f"{path}: /X is a group of encoding {encoding!r}; expected a dense array or "
                              "a csr_matrix / csc_matrix")
    import scipy.sparse

    cls = scipy.sparse.csr_matrix if encoding == "csr_matrix" else scipy.sparse.csc_matrix
    matrix = cls((node["data"][()], node["indices"][()], node["indptr"][()]), shape=shape)
    matrix.check_format(full_check=True)  # an index outside the shape: ValueError, not a wrong matrix
    return matrix.toarray().astype(np.float64)
