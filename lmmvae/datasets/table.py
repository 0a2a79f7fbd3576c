"""Your own long-format table in: CSV, Parquet, AnnData ``.h5ad`` or a pandas DataFrame → the
longitudinal HDF5 format (docs/data_format.md).

One row per observation (visit): a subject column, a time column, covariate columns and feature
(measurement) columns. What happens to them:

- **features** become ``/y``; an empty cell (NaN, blank) is a missing entry (``/mask`` 0); any other
  value must be a finite number. With ``standardise`` (default) each feature is standardised with
  the mean and standard deviation of its observed *training* entries; the root attributes
  ``feature_mean`` and ``feature_std`` keep the scale (``y_original = y * std + mean``).
- **covariates** get a kind (docs/data_format.md): the subject column is ``id``, the time column
  ``time``; any other column is inferred — a boolean or a column with exactly two distinct values
  is ``binary``, other numbers ``continuous``, other text ``categorical``. ``kinds={col: kind}``
  overrides. A binary column of 0/1 numbers keeps its values; any other binary column (``"M"/"F"``,
  ``1/2``) is coded 0/1 in sorted order (a pandas ``category`` column: in category order) and its
  values are stored as the covariate's ``levels``. A covariate cell may not be empty.
- **split** (``/split``): with no test option every row is train or validation — a random
  ``validation_fraction`` of the *rows* (not of the subjects: a model with a per-subject random
  effect can only predict a validation row of a subject it has seen), with every subject keeping at
  least one training row (lmmvae.datasets.splits.train_validation_split). With ``test_after=T``,
  later visits are held out: among subjects with visits both at ``time <= T`` and ``time > T``, a
  random ``test_fraction`` (default all of them) are test subjects, whose visits after ``T`` go to
  test (their earlier visits stay in train/validation) — the benchmark's withheld-late design
  (lmmvae.datasets.splits.withhold_late_split), except that test subjects' early rows may also go
  to validation.

Rows keep the input order, so row ``i`` of the file is row ``i`` of the table. Every error is one
line naming the source (file or data frame), the column and the row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lmmvae.datasets._common import check_fraction, generator_attrs, standardise_on_train, streams
from lmmvae.datasets.splits import TEST, TRAIN, n_test_subjects, train_validation_split
from lmmvae.h5 import COVARIATE_KINDS, Covariate, DataFormatError, LongitudinalData, _plain, is_blank

TABLE_SUFFIXES = (".csv", ".parquet", ".h5ad")


# -- reading -------------------------------------------------------------------------------------


def read_table(path: str | os.PathLike):
    """A CSV, Parquet or AnnData file as a DataFrame: ``(frame, default_features)``.

    ``default_features`` are the AnnData file's ``var`` names (its ``X`` columns), ``None`` for
    CSV and Parquet. One-line errors name the file.
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
    if suffix == ".csv":
        from lmmvae.tables import read_csv

        return read_csv(path), None
    if suffix == ".parquet":
        return _read_parquet(path), None
    return _read_h5ad(path)


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
        obs = _h5ad_frame(f["obs"], path, "obs")
        var_names = [str(v) for v in _h5ad_index(f["var"], path, "var")]
        x = _h5ad_matrix(f["X"], path)
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
    return _plain(value) if not isinstance(value, np.ndarray) else [_plain(v) for v in value.tolist()]


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
        return np.array([_plain(v) for v in data], dtype=object)
    name = where.rsplit("/", 1)[-1]
    if frame_group is not None and "__categories" in frame_group and name in frame_group["__categories"]:
        # anndata < 0.7: a categorical is integer codes, its categories in obs/__categories/<name>
        categories = [_plain(v) for v in frame_group["__categories"][name][()]]
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
    return matrix.toarray().astype(np.float64)


# -- building ------------------------------------------------------------------------------------


def _names(value, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = [str(v) for v in value]
    if len(set(names)) != len(names):
        raise DataFormatError(f"{what} lists a column twice: {', '.join(names)}")
    return names


class _Where:
    """How rows are named in errors: CSV ``row 3 (line 4)``; other sources ``row 3``."""

    def __init__(self, source: str, csv: bool):
        self.source, self.csv = source, csv

    def row(self, i: int) -> str:
        return f"row {i + 1} (line {i + 2})" if self.csv else f"row {i + 1}"

    def error(self, column: str, i: int, text: str) -> DataFormatError:
        return DataFormatError(f"{self.source}: column {column!r} at {self.row(i)}: {text}")


def _blank_mask(column) -> np.ndarray:
    return column.isna().to_numpy() | np.array([is_blank(v) for v in column], dtype=bool)


def _numbers(column, name: str, where: _Where, *, allow_blank: bool, what: str) -> np.ndarray:
    """``column`` as float64; blanks are NaN (or an error), anything else that is not a finite
    number is an error naming the column and row."""
    import pandas as pd

    blank = _blank_mask(column)
    if blank.any() and not allow_blank:
        i = int(np.flatnonzero(blank)[0])
        raise where.error(name, i, f"is empty; every row needs a value of the {what} (fill it in or drop the row)")
    if column.dtype == bool:
        values = column.to_numpy(dtype=np.float64)
    else:
        values = pd.to_numeric(column.where(~blank), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) & ~blank
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        blank_ok = ", or empty for a missing entry" if allow_blank else ""
        raise where.error(name, i, f"{_plain(column.iloc[i])!r} is not a finite number (a {what} is a number{blank_ok})")
    return values


def _is_text(column) -> bool:
    import pandas as pd

    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def infer_kind(column) -> str:
    """The kind of a covariate column that is neither subject nor time: two distinct values →
    binary, other numbers → continuous, other text → categorical."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return "binary"
    if isinstance(column.dtype, pd.CategoricalDtype):
        return "binary" if len(column.cat.categories) == 2 else "categorical"
    distinct = column.dropna().unique()
    if len(distinct) == 2:
        return "binary"
    return "categorical" if _is_text(column) else "continuous"


def _levels_and_codes(column, name: str, where: _Where) -> tuple[list, np.ndarray]:
    """Sorted distinct values (pandas category order for a categorical) and each row's code."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        levels = [_plain(v) for v in column.cat.categories]
        return levels, column.cat.codes.to_numpy().astype(np.int64)
    values = column.to_numpy()
    if not _is_text(column):
        numbers = values.astype(np.float64)
        if np.all(numbers == np.round(numbers)):  # 12.0 (an int column pandas made float) -> 12
            values = numbers.astype(np.int64)
        uniq, codes = np.unique(values, return_inverse=True)
        return [_plain(v) for v in uniq], codes.astype(np.int64)
    text = np.array([str(_plain(v)).strip() for v in values], dtype=object)
    uniq, codes = np.unique(text, return_inverse=True)
    return [str(v) for v in uniq], codes.astype(np.int64)


def _covariate(column, name: str, kind: str, where: _Where) -> Covariate:
    if kind in ("continuous", "time"):
        what = "time (e.g. days since baseline)" if kind == "time" else "continuous covariate"
        return Covariate(_numbers(column, name, where, allow_blank=False, what=what), kind)
    blank = _blank_mask(column)
    if blank.any():
        i = int(np.flatnonzero(blank)[0])
        what = "subject id" if kind == "id" else "value"
        raise where.error(name, i, f"is empty; every row needs a {what} (fill it in or drop the row)")
    if kind == "binary" and not _is_text(column) and not hasattr(column, "cat"):
        values = column.to_numpy(dtype=np.float64)
        if np.isin(values, (0.0, 1.0)).all():
            return Covariate(values.astype(np.int64), "binary")  # 0/1 numbers: no levels needed
    levels, codes = _levels_and_codes(column, name, where)
    if kind == "binary" and len(levels) > 2:
        raise DataFormatError(f"{where.source}: column {name!r} has {len(levels)} distinct values "
                              f"({', '.join(map(str, levels[:4]))}{', …' if len(levels) > 4 else ''}) "
                              "but is binary; use --kind {name}=categorical".replace("{name}", name))
    return Covariate(codes, kind, levels)


def from_frame(frame, subject: str, time: str, features: Iterable[str] | str | None = None,
               covariates: Iterable[str] | str | None = None, kinds: dict[str, str] | None = None,
               validation_fraction: float = 0.2, test_after: float | None = None, test_fraction: float = 1.0,
               seed: int = 0, standardise: bool = True, source: str = "data frame",
               name: str | None = None, _csv: bool = False) -> LongitudinalData:
    """A long-format DataFrame (one row per visit) as :class:`LongitudinalData` (module docstring).

    ``features``: the measurement columns (default: every column that is not the subject, the
    time or a listed covariate); ``covariates``: the other columns to keep (default: every
    column that is not a feature, the subject or the time; with neither given, an error).
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    where = _Where(source, _csv)
    frame = frame.reset_index(drop=True)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    features, covariates = _names(features, "features"), _names(covariates, "covariates")
    for role, col in (("subject", subject), ("time", time)):
        if not isinstance(col, str) or not col:
            raise DataFormatError(f"{source}: give the {role} column by name ({role}=...)")
    if subject == time:
        raise DataFormatError(f"{source}: the subject and the time column are both {subject!r}")
    if features is None and covariates is None:
        raise DataFormatError(f"{source}: say which columns are features (the measurements to model)")
    roles = {subject, time}
    if features is None:
        features = [c for c in columns if c not in roles and c not in covariates]
    if covariates is None:
        covariates = [c for c in columns if c not in roles and c not in features]
    covariates = [c for c in covariates if c not in roles]
    for col in [subject, time, *features, *covariates]:
        if col not in columns:
            raise DataFormatError(f"{source}: no column {col!r}; columns: {', '.join(columns)}")
    both = sorted((set(features) & set(covariates)) | (set(features) & roles))
    if both:
        raise DataFormatError(f"{source}: column {both[0]!r} is both a feature and a covariate (or the subject/time)")
    if not features:
        raise DataFormatError(f"{source}: no feature columns")
    if len(frame) == 0:
        raise DataFormatError(f"{source}: has no rows")
    kinds = dict(kinds or {})
    for col, kind in kinds.items():
        if kind not in COVARIATE_KINDS:
            raise DataFormatError(f"{source}: kind {kind!r} of column {col!r} is not one of {', '.join(COVARIATE_KINDS)}")
        if col not in covariates and col not in roles:
            raise DataFormatError(f"{source}: a kind is given for {col!r}, which is not the subject, the time or a covariate")
        role_kind = "id" if col == subject else "time" if col == time else None
        if role_kind and kind != role_kind:
            raise DataFormatError(f"{source}: column {col!r} is the {'subject' if role_kind == 'id' else 'time'}, "
                                  f"so its kind is {role_kind}, not {kind}")

    # features -> y, mask
    y = np.empty((len(frame), len(features)), dtype=np.float64)  # [N, D]
    for j, col in enumerate(features):
        y[:, j] = _numbers(frame[col], col, where, allow_blank=True, what="feature")
    mask = np.isfinite(y).astype(np.uint8)  # [N, D]
    y = np.where(mask.astype(bool), y, 0.0)

    # covariates, in the order subject, time, then as listed
    covs: dict[str, Covariate] = {}
    for col in [subject, time, *covariates]:
        kind = kinds.get(col) or ("id" if col == subject else "time" if col == time else infer_kind(frame[col]))
        covs[col] = _covariate(frame[col], col, kind, where)

    split = table_split(covs[subject].values, covs[time].values, validation_fraction=validation_fraction,
                        test_after=test_after, test_fraction=test_fraction, seed=seed)
    args = {"subject": subject, "time": time, "features": features, "covariates": covariates,
            "kinds": kinds, "validation_fraction": validation_fraction, "test_after": test_after,
            "test_fraction": test_fraction, "standardise": standardise, "source": source}
    attrs = generator_attrs(name or Path(source).stem or "data", __name__, seed, args)
    attrs["feature_names"] = list(features)
    if standardise:
        y, mean, std = standardise_on_train(y, mask, split)
        attrs["feature_mean"], attrs["feature_std"] = mean.tolist(), std.tolist()
    return LongitudinalData(y=y.astype(np.float32), mask=mask, split=split, covariates=covs, attrs=attrs)


def table_split(subject: np.ndarray, time: np.ndarray, validation_fraction: float = 0.2,
                test_after: float | None = None, test_fraction: float = 1.0, seed: int = 0) -> np.ndarray:
    """Split codes [N] (module docstring): test = later visits (``time > test_after``) of a random
    ``test_fraction`` of the subjects seen on both sides of ``test_after``; every other row train
    or validation at random by row, every subject keeping a training row."""
    check_fraction("--validation-fraction", validation_fraction)
    check_fraction("--test-fraction", test_fraction, low_open=True, high_open=False)
    subject, time = np.asarray(subject, dtype=np.int64), np.asarray(time, dtype=np.float64)
    test_rng, validation_rng = streams(seed, 2)
    split = np.full(len(subject), TRAIN, dtype=np.uint8)
    if test_after is not None:
        late = time > float(test_after)
        subjects = np.unique(subject)
        eligible = subjects[np.isin(subjects, subject[~late]) & np.isin(subjects, subject[late])]
        chosen = test_rng.choice(eligible, size=n_test_subjects(len(eligible), test_fraction), replace=False)
        split[np.isin(subject, chosen) & late] = TEST
    pool = np.flatnonzero(split != TEST)
    return train_validation_split(split, pool, subject, validation_fraction, validation_rng)


def from_table(path: str | os.PathLike, subject: str, time: str, features=None, covariates=None,
               **options) -> LongitudinalData:
    """:func:`read_table` then :func:`from_frame`; errors name the file. For an AnnData file the
    features default to ``X``'s columns (its ``var`` names) and the covariates to ``obs``'s."""
    frame, default_features = read_table(path)
    if features is None and default_features is not None:
        features = default_features
    return from_frame(frame, subject=subject, time=time, features=features, covariates=covariates,
                      source=str(path), _csv=Path(path).suffix.lower() == ".csv", **options)


#: keyword arguments of ``lmmvae.fit(df, …)`` that describe the table rather than the model
FRAME_KEYS = ("time", "features", "covariates", "kinds", "validation_fraction", "test_after", "test_fraction",
              "standardise")


def frame_for_fit(frame, settings: dict) -> tuple[LongitudinalData, dict]:
    """``lmmvae.fit(df, subject=…, time=…, features=…, **model_settings)``: the table's keywords
    build the data (:func:`from_frame`, split seed ``split_seed``, default 0, so that models fitted
    with different seeds share one split); ``subject`` is also the model's subject covariate; the
    rest are model settings."""
    from lmmvae.errors import ConfigError

    settings = dict(settings)
    options = {k: settings.pop(k) for k in FRAME_KEYS if k in settings}
    seed = settings.pop("split_seed", 0)
    if "subject" not in settings or "time" not in options:
        raise ConfigError("fit(data_frame, …) needs subject=COLUMN and time=COLUMN (and features=[…])")
    time = options.pop("time")
    data = from_frame(frame, subject=settings["subject"], time=time, seed=seed, **options)
    return data, settings
