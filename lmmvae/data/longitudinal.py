"""The in-memory form of the longitudinal data format (docs/data_format.md) and its checks.

Every data set of the benchmark, and any user data set, is a :class:`LongitudinalData`; it is
validated on construction with errors that name the offending part. :mod:`lmmvae.data.h5` reads and
writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmmvae.data.levels import is_blank, level_key, plain_value
from lmmvae.errors import ConfigError, DataFormatError

COVARIATE_KINDS = ("continuous", "binary", "categorical", "id", "time")
SPLITS = {"train": 0, "validation": 1, "test": 2}
CODED_KINDS = ("binary", "categorical", "id")


@dataclass
class Covariate:
    """One named covariate: ``values`` float64 (continuous, time) or int64 codes (binary,
    categorical, id); ``levels`` are the original values behind the codes (categorical, id)."""

    values: np.ndarray  # [N]
    kind: str
    levels: list | None = None
    #: categorical only: the level a design's ``C(v)`` / ``v`` drops as its reference (default: the first)
    reference: Any = None

    def __post_init__(self) -> None:
        if self.kind not in COVARIATE_KINDS:
            raise DataFormatError(f"covariate kind {self.kind!r} is not one of {COVARIATE_KINDS}")
        self.values = np.asarray(self.values)
        text_binary = self.kind == "binary" and self.values.dtype.kind in "OUS"  # "M"/"F": levels, as categorical
        if (self.kind in ("categorical", "id") or text_binary) and self.levels is None:
            # no levels given: the values are the raw levels; store codes into their sorted set
            uniq, codes = np.unique(self.values, return_inverse=True)
            self.levels = [plain_value(v) for v in uniq]
            self.values = codes
        if self.kind in CODED_KINDS:
            self.values = self.values.astype(np.int64)
        else:
            self.values = self.values.astype(np.float64)
        if self.levels is not None:
            self.levels = [plain_value(v) for v in self.levels]
        if self.reference is not None:
            self.reference = _reference_level(self.reference, self.kind, self.levels)

    @property
    def is_coded(self) -> bool:
        return self.kind in CODED_KINDS

    def subset(self, index: np.ndarray) -> "Covariate":
        return Covariate(self.values[index], self.kind, self.levels, self.reference)


def covariate_rows(covariates, train_covariates: dict[str, Covariate], names, subject: str,
                   n_features: int) -> LongitudinalData:
    """Rows of new covariates (a DataFrame, a dict of arrays, or :class:`LongitudinalData`, returned as
    it is) as data without observations (``y`` [N, ``n_features``] zeros, all masked), each column
    coded like the training covariate of its name; ``names`` (and ``subject``, when the model was
    trained with it) must be present."""
    if isinstance(covariates, LongitudinalData):
        return covariates
    import pandas as pd

    frame = pd.DataFrame(covariates)
    needed = set(names)
    if subject in train_covariates:
        needed.add(subject)
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise ConfigError(f"covariates lack column(s) {', '.join(missing)} (the model uses: {', '.join(sorted(needed))})")
    covs = {}
    for name in frame.columns:
        if name not in train_covariates:
            continue
        ref = train_covariates[name]
        if ref.levels is not None:
            covs[name] = Covariate(frame[name].astype(str).to_numpy(), ref.kind)
        else:
            covs[name] = Covariate(frame[name].to_numpy(), ref.kind)
    n = len(frame)
    zeros = np.zeros((n, n_features), dtype=np.float32)  # [N, D]
    return LongitudinalData(y=zeros, mask=zeros.astype(np.uint8), split=np.zeros(n, np.uint8), covariates=covs)


def _reference_level(reference: Any, kind: str, levels: list | None) -> Any:
    """The stored level that ``reference`` names (``2``, ``2.0`` and ``"2"`` are one level)."""
    if kind != "categorical":
        raise DataFormatError(f"a reference level is for categorical covariates, this one is {kind}")
    keys = [level_key(v) for v in levels]
    if level_key(reference) not in keys:
        shown = ", ".join(repr(v) for v in levels[:8]) + (", ..." if len(levels) > 8 else "")
        raise DataFormatError(f"reference level {plain_value(reference)!r} is not one of the levels ({shown})")
    return levels[keys.index(level_key(reference))]


@dataclass
class LongitudinalData:
    """Observations ``y`` [N, D] with observed-mask, split and named covariates (docs/data_format.md).

    ``LongitudinalData.from_frame(frame, subject, time, ...)`` builds one from a long-format pandas
    DataFrame: :func:`lmmvae.data.sets.table.from_frame`, attached as a classmethod by the package's
    ``__init__`` because the table reader builds on this module, not the other way round.
    """

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
        return n_dup, f"row {row}: {ids[0]} {subject!r}, {times[0]} {plain_value(self.covariates[times[0]].values[row])}"


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
        raise DataFormatError(f"data: {key} must contain only {meaning}, found {plain_value(arr[tuple(bad)])!r} "
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
