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
  values are stored as the covariate's ``levels``. A numeric column inferred continuous with at
  most ``FEW_VALUES`` (5) distinct values (stage 1-4) is named in one warning: it may be a code.
  A covariate cell may not be empty, unless ``drop_incomplete``: then rows with an empty subject,
  time or covariate cell are dropped and counted (``attrs['dropped_incomplete_rows']``).
- **repeated visits**: rows that repeat an earlier row's (subject, time) are kept (repeated
  measurements) and warned about once, here; ``attrs['duplicate_rows']`` records the count, so
  that fitting the data does not warn again (lmmvae.training.assemble.check_training_data).
- **split** (``/split``): with no test option every row is train or validation — a random
  ``validation_fraction`` of the *rows* (not of the subjects: a model with a per-subject random
  effect can only predict a validation row of a subject it has seen), with every subject keeping at
  least one training row (lmmvae.data.sets.splits.train_validation_split). With ``test_after=T``,
  later visits are held out: among subjects with visits both at ``time <= T`` and ``time > T``, a
  random ``test_fraction`` (default all of them) are test subjects, whose visits after ``T`` go to
  test (their earlier visits stay in train/validation) — the benchmark's withheld-late design
  (lmmvae.data.sets.splits.withhold_late_split), except that test subjects' early rows may also go
  to validation.

Rows keep the input order, so row ``i`` of the file is row ``i`` of the table (of the rows kept,
with ``drop_incomplete``; errors still name a row by its place in the source). Every error is one
line naming the source (file or data frame), the column and the row.

Reading files is :mod:`lmmvae.data.sets.table_files`, column by column conversion
:mod:`lmmvae.data.sets.table_columns`; this module assembles the data and its split.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lmmvae.data.sets._common import check_fraction, generator_attrs, standardise_on_train, streams
from lmmvae.data.sets.splits import TEST, TRAIN, n_test_subjects, train_validation_split
from lmmvae.data.sets.table_columns import (FEW_VALUES, Where, as_numbers, blank_mask, column_names, covariate,
                                           few_valued, infer_kind)
from lmmvae.data.h5 import COVARIATE_KINDS, Covariate, LongitudinalData
from lmmvae.data.sets.table_files import TEXT_SUFFIXES, read_table
from lmmvae.errors import ConfigError, DataFormatError, LmmvaeWarning


def from_frame(frame, subject: str, time: str, features: Iterable[str] | str | None = None,
               covariates: Iterable[str] | str | None = None, kinds: dict[str, str] | None = None,
               references: dict[str, Any] | None = None,
               validation_fraction: float = 0.2, test_after: float | None = None, test_fraction: float = 1.0,
               seed: int = 0, standardise: bool = True, drop_incomplete: bool = False, source: str = "data frame",
               name: str | None = None, _csv: bool = False) -> LongitudinalData:
    """A long-format DataFrame (one row per visit) as :class:`LongitudinalData` (module docstring).

    ``features``: the measurement columns (default: every column that is not the subject, the
    time or a listed covariate); ``covariates``: the other columns to keep (default: every
    column that is not a feature, the subject or the time; with neither given, an error).
    ``drop_incomplete``: rows with an empty subject, time or covariate cell are dropped (counted
    in ``attrs``) instead of refused.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    where = Where(source, _csv)
    frame, features, covariates = _resolve_columns(frame, subject, time, features, covariates, source)
    kinds = _check_kinds(kinds, covariates, subject, time, source)

    dropped: dict[str, int] = {}
    if drop_incomplete:
        frame, where, dropped = _drop_incomplete(frame, [subject, time, *covariates], where)
    y, mask = _read_features(frame, features, where)  # [N, D], [N, D]
    covs = _read_covariates(frame, subject, time, covariates, kinds, references, where, source)

    split = table_split(covs[subject].values, covs[time].values, validation_fraction=validation_fraction,
                        test_after=test_after, test_fraction=test_fraction, seed=seed)
    args = {"subject": subject, "time": time, "features": features, "covariates": covariates,
            "kinds": kinds, "validation_fraction": validation_fraction, "test_after": test_after,
            "test_fraction": test_fraction, "standardise": standardise, "source": source}
    if references:
        args["references"] = dict(references)
    if drop_incomplete:
        args["drop_incomplete"] = True
    attrs = generator_attrs(name or Path(source).stem or "data", __name__, seed, args)
    attrs["feature_names"] = list(features)
    if dropped:
        attrs["dropped_incomplete_rows"] = int(dropped.pop(""))
        attrs["dropped_incomplete_cells"] = ", ".join(f"{col} {n}" for col, n in dropped.items())
    n_dup = _warn_duplicates(covs, subject, time, where)
    if n_dup:
        attrs["duplicate_rows"] = n_dup  # reported here: a fit of this data does not warn again
    if standardise:
        y, mean, std = standardise_on_train(y, mask, split)
        attrs["feature_mean"], attrs["feature_std"] = mean.tolist(), std.tolist()
    _fits_float32(y, features, where)
    return LongitudinalData(y=y.astype(np.float32), mask=mask, split=split, covariates=covs, attrs=attrs)


def _resolve_columns(frame, subject, time, features, covariates, source: str):
    """``frame`` with a plain index and string column names, and the feature and covariate column
    lists :func:`from_frame` uses (its defaults filled in), after checking every named column
    exists, no column is named twice or has two roles, and there are features and rows."""
    frame = frame.reset_index(drop=True)
    columns = [str(c) for c in frame.columns]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise DataFormatError(f"{source}: column {twice[0]!r} is named twice; rename one")
    frame.columns = columns
    features, covariates = column_names(features, "features"), column_names(covariates, "covariates")
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
    return frame, features, covariates


def _check_kinds(kinds: dict[str, str] | None, covariates: list[str], subject: str, time: str,
                 source: str) -> dict[str, str]:
    """A copy of the user's ``kinds`` after checking each is a known kind of a kept column, and
    that the subject is given only kind ``id`` and the time only kind ``time``."""
    kinds = dict(kinds or {})
    for col, kind in kinds.items():
        if kind not in COVARIATE_KINDS:
            raise DataFormatError(f"{source}: kind {kind!r} of column {col!r} is not one of {', '.join(COVARIATE_KINDS)}")
        if col not in covariates and col not in (subject, time):
            raise DataFormatError(f"{source}: a kind is given for {col!r}, which is not the subject, the time or a covariate")
        role_kind = "id" if col == subject else "time" if col == time else None
        if role_kind and kind != role_kind:
            raise DataFormatError(f"{source}: column {col!r} is the {'subject' if role_kind == 'id' else 'time'}, "
                                  f"so its kind is {role_kind}, not {kind}")
    return kinds


def _read_features(frame, features: list[str], where: Where):
    """The feature columns as ``y`` (float64, 0 where missing) and ``mask`` (1 where observed)."""
    y = np.empty((len(frame), len(features)), dtype=np.float64)  # [N, D]
    for j, col in enumerate(features):
        y[:, j] = as_numbers(frame[col], col, where, allow_blank=True, what="feature")
    mask = np.isfinite(y).astype(np.uint8)  # [N, D]
    y = np.where(mask.astype(bool), y, 0.0)
    return y, mask


def _read_covariates(frame, subject: str, time: str, covariates: list[str], kinds: dict[str, str],
                     references: dict[str, Any] | None, where: Where, source: str) -> dict[str, Covariate]:
    """The covariates, in the order subject, time, then as listed: each of its given kind or an
    inferred one (few-valued inferred columns noted), with the given reference levels set."""
    covs: dict[str, Covariate] = {}
    inferred: dict[str, str] = {}
    for col in [subject, time, *covariates]:
        kind = kinds.get(col) or ("id" if col == subject else "time" if col == time else infer_kind(frame[col]))
        if col not in kinds and col not in (subject, time):
            inferred[col] = kind
        covs[col] = covariate(frame[col], col, kind, where)
    _note_few_valued(frame, covariates, inferred, source)
    for col, level in (references or {}).items():  # the level a design's C(col) drops (docs/data_format.md)
        if col not in covs:
            raise DataFormatError(f"{source}: a reference level is given for {col!r}, which is not a covariate")
        try:
            covs[col] = Covariate(covs[col].values, covs[col].kind, covs[col].levels, level)
        except DataFormatError as err:
            raise DataFormatError(f"{source}: column {col!r}: {err}") from None
    return covs


def _drop_incomplete(frame, columns: list[str], where: Where):
    """``frame`` without the rows that have an empty cell in ``columns``, a :class:`Where` that names
    the kept rows by their place in the source, and the count: ``{"": rows dropped, col: empty cells
    of col among them}``. Every row incomplete is an error."""
    blank = np.stack([blank_mask(frame[col]) for col in columns], axis=1)  # [N, C]
    drop = blank.any(axis=1)  # [N]
    if drop.all():
        raise DataFormatError(f"{where.source}: every row has an empty subject, time or covariate cell; "
                              "nothing is left after dropping incomplete rows")
    kept = np.flatnonzero(~drop)
    counts = {"": int(drop.sum())}
    counts.update({col: int(n) for col, n in zip(columns, blank.sum(axis=0)) if n})
    return frame.iloc[kept].reset_index(drop=True), Where(where.source, where.csv, kept), counts


def _note_few_valued(frame, covariates: list[str], inferred: dict[str, str], source: str) -> None:
    """One warning naming the numeric covariates read as continuous that have few distinct values
    (a code such as stage 1-4 is often meant as categorical), with how to override."""
    named = few_valued(frame, covariates, inferred)
    if named:
        first = named[0].split(" (")[0]
        warnings.warn(f"{source}: numeric column(s) read as continuous with at most {FEW_VALUES} distinct values: "
                      f"{', '.join(named)}; if they code categories, say so: --kind {first}=categorical "
                      "(kinds={...} in Python)", LmmvaeWarning, stacklevel=3)


def _warn_duplicates(covs: dict[str, Covariate], subject: str, time: str, where: Where) -> int:
    """The number of rows that repeat an earlier row's (subject, time), with one warning naming the
    first (legal, as repeated measurements, but usually a merge gone wrong)."""
    import pandas as pd

    ids, times = covs[subject], covs[time]
    repeat = pd.DataFrame({"s": ids.values, "t": times.values}).duplicated().to_numpy()  # [N]
    n = int(repeat.sum())
    if n:
        i = int(np.flatnonzero(repeat)[0])
        who = ids.levels[ids.values[i]] if ids.levels is not None else ids.values[i]
        warnings.warn(f"{where.source}: {n} row(s) repeat an earlier row's ({subject}, {time}), first at "
                      f"{where.row(i)}: {subject} {who!r}, {time} {times.values[i]:g}; kept as repeated "
                      "measurements", LmmvaeWarning, stacklevel=3)
    return n


def _fits_float32(y: np.ndarray, features: list[str], where: Where) -> None:
    """``y`` [N, D] is stored as float32: a value beyond its range (3.4e38) would become inf."""
    big = ~(np.abs(y) <= np.finfo(np.float32).max)
    if big.any():
        i, j = (int(k[0]) for k in np.nonzero(big))
        raise where.error(features[j], i, "is beyond the float32 range (3.4e38) the data file stores; "
                                          "rescale the feature, or keep the default standardisation")


def table_split(subject: np.ndarray, time: np.ndarray, validation_fraction: float = 0.2,
                test_after: float | None = None, test_fraction: float = 1.0, seed: int = 0) -> np.ndarray:
    """Split codes [N] (module docstring): test = later visits (``time > test_after``) of a random
    ``test_fraction`` of the subjects seen on both sides of ``test_after``; every other row train
    or validation at random by row, every subject keeping a training row."""
    check_fraction("--validation-fraction", validation_fraction)
    check_fraction("--test-fraction", test_fraction, low_open=True, high_open=False)
    if test_after is not None and not (isinstance(test_after, (int, float)) and np.isfinite(test_after)):
        raise DataFormatError(f"--test-after must be a finite number, got {test_after!r}")
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
               sep: str | None = None, **options) -> LongitudinalData:
    """:func:`read_table` then :func:`from_frame`; errors name the file. For an AnnData file the
    features default to ``X``'s columns (its ``var`` names) and the covariates to ``obs``'s.
    ``sep``: a text table's delimiter (default by suffix: ``.csv`` comma, ``.tsv`` tab)."""
    frame, default_features = read_table(path, text=(subject,) if isinstance(subject, str) else (), sep=sep)
    if features is None and default_features is not None:
        features = default_features
    return from_frame(frame, subject=subject, time=time, features=features, covariates=covariates,
                      source=str(path), _csv=Path(path).suffix.lower() in TEXT_SUFFIXES, **options)


#: keyword arguments of ``lmmvae.fit(df, …)`` that describe the table rather than the model
FRAME_KEYS = ("time", "features", "covariates", "kinds", "validation_fraction", "test_after", "test_fraction",
              "standardise", "references", "drop_incomplete")


def frame_for_fit(frame, settings: dict) -> tuple[LongitudinalData, dict]:
    """``lmmvae.fit(df, subject=…, time=…, features=…, **model_settings)``: the table's keywords
    build the data (:func:`from_frame`, split seed ``split_seed``, default 0, so that models fitted
    with different seeds share one split); ``subject`` is also the model's subject covariate; the
    rest are model settings."""
    settings = dict(settings)
    options = {k: settings.pop(k) for k in FRAME_KEYS if k in settings}
    seed = settings.pop("split_seed", 0)
    if "subject" not in settings or "time" not in options:
        raise ConfigError("fit(data_frame, …) needs subject=COLUMN and time=COLUMN (and features=[…])")
    time = options.pop("time")
    data = from_frame(frame, subject=settings["subject"], time=time, seed=seed, **options)
    return data, settings
