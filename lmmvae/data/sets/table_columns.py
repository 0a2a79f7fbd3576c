"""The columns of a long-format table, one at a time: feature cells as numbers (blank = missing),
covariate kinds inferred (:func:`infer_kind`) and covariates coded (:func:`covariate`), with
one-line errors naming the source, the column and the row (:class:`Where`). Used by
:func:`lmmvae.data.sets.table.from_frame`, whose module docstring states the rules.
"""

from __future__ import annotations

import numpy as np

from lmmvae.data.levels import is_blank, plain_value
from lmmvae.data.longitudinal import Covariate
from lmmvae.errors import DataFormatError


def column_names(value, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = [str(v) for v in value]
    if len(set(names)) != len(names):
        raise DataFormatError(f"{what} lists a column twice: {', '.join(names)}")
    return names


class Where:
    """How rows are named in errors: CSV ``row 3 (line 4)``; other sources ``row 3``. ``rows``
    [N]: each kept row's position in the source, when some rows were dropped (``drop_incomplete``)."""

    def __init__(self, source: str, csv: bool, rows: np.ndarray | None = None):
        self.source, self.csv, self.rows = source, csv, rows

    def row(self, i: int) -> str:
        i = int(self.rows[i]) if self.rows is not None else i
        return f"row {i + 1} (line {i + 2})" if self.csv else f"row {i + 1}"

    def error(self, column: str, i: int, text: str) -> DataFormatError:
        return DataFormatError(f"{self.source}: column {column!r} at {self.row(i)}: {text}")


def blank_mask(column) -> np.ndarray:
    """[N] bool: the cells of ``column`` that are empty (NaN, None, blank text)."""
    return column.isna().to_numpy() | np.array([is_blank(v) for v in column], dtype=bool)


def as_numbers(column, name: str, where: Where, *, allow_blank: bool, what: str) -> np.ndarray:
    """``column`` as float64; blanks are NaN (or an error), anything else that is not a finite
    number is an error naming the column and row."""
    import pandas as pd

    blank = blank_mask(column)
    if blank.any() and not allow_blank:
        i = int(np.flatnonzero(blank)[0])
        raise where.error(name, i, f"is empty; every row needs a value of the {what} "
                                   "(fill it in, or drop such rows: --drop-incomplete)")
    if column.dtype == bool:
        values = column.to_numpy(dtype=np.float64)
    else:
        values = pd.to_numeric(column.where(~blank), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) & ~blank
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        blank_ok = ", or empty for a missing entry" if allow_blank else ""
        raise where.error(name, i, f"{plain_value(column.iloc[i])!r} is not a finite number (a {what} is a number{blank_ok})")
    return values


def _is_text(column) -> bool:
    import pandas as pd

    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


#: a numeric column read as continuous with at most this many distinct values is named at
#: conversion: often a code (stage 1-4, edema 0/0.5/1) meant as categorical
FEW_VALUES = 5


def few_valued(frame, columns, inferred: dict[str, str]) -> list[str]:
    """The ``columns`` whose inferred kind is continuous (``inferred``: column -> kind) and that hold
    at most :data:`FEW_VALUES` distinct values, each as ``'name (v1/v2/v3)'``."""
    named = []
    for col in columns:
        if inferred.get(col) != "continuous":
            continue
        distinct = sorted(frame[col].dropna().unique().tolist())
        if len(distinct) <= FEW_VALUES:
            named.append(f"{col} ({'/'.join(f'{float(v):g}' for v in distinct)})")
    return named


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


def _levels_and_codes(column, name: str, where: Where) -> tuple[list, np.ndarray]:
    """Sorted distinct values (pandas category order for a categorical) and each row's code."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        levels = [plain_value(v) for v in column.cat.categories]
        return levels, column.cat.codes.to_numpy().astype(np.int64)
    values = column.to_numpy()
    if not _is_text(column):
        numbers = values.astype(np.float64)
        if np.all(numbers == np.round(numbers)):  # 12.0 (an int column pandas made float) -> 12
            values = numbers.astype(np.int64)
        uniq, codes = np.unique(values, return_inverse=True)
        return [plain_value(v) for v in uniq], codes.astype(np.int64)
    text = np.array([str(plain_value(v)).strip() for v in values], dtype=object)
    uniq, codes = np.unique(text, return_inverse=True)
    return [str(v) for v in uniq], codes.astype(np.int64)


def covariate(column, name: str, kind: str, where: Where) -> Covariate:
    if kind in ("continuous", "time"):
        what = "time (e.g. days since baseline)" if kind == "time" else "continuous covariate"
        return Covariate(as_numbers(column, name, where, allow_blank=False, what=what), kind)
    blank = blank_mask(column)
    if blank.any():
        i = int(np.flatnonzero(blank)[0])
        what = "subject id" if kind == "id" else "value"
        raise where.error(name, i, f"is empty; every row needs a {what} (fill it in, or drop such rows: --drop-incomplete)")
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
