"""Tables (CSV) a user hands to the command line: the one validation layer for them.

``lmmvae predict --covariates`` and ``lmmvae report latent-effects --grid`` read CSV files here.
Every error is one line naming the file, and where a value is at fault its column and row
(``row 3`` is the third data row, ``line 4`` of the file): an empty or binary file, a header
without rows, text in a numeric column, a blank id, a binary covariate outside 0/1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lmmvae.data.levels import is_blank, plain_value
from lmmvae.errors import DataFormatError

NUMERIC_KINDS = ("continuous", "time", "binary")
CODED_KINDS = ("categorical", "id")


def read_csv(path: str | os.PathLike, kinds: dict[str, str] | None = None, required: tuple[str, ...] = (),
             text: tuple[str, ...] = (), sep: str = ","):
    """Read a CSV (``sep``: its delimiter, a tab for TSV) into a DataFrame and check it.

    ``kinds`` maps columns to covariate kinds: numeric kinds become float64 (a value that is not
    a number, blank or non-finite is an error naming column and row; binary must be 0 or 1);
    categorical and id columns must have no blank. ``required`` columns must be present. ``text``
    columns (subject ids) are read as text, never as numbers: ``007`` and ``7`` are two subjects. A
    column name given twice is an error (pandas would rename the second one).
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such CSV file")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a directory, not a CSV file")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        raise DataFormatError(f"{path}: is empty; expected a header line of column names, then one row per line")
    if b"\0" in head:
        raise DataFormatError(f"{path}: is binary, not a CSV text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the end of the sample
            raise DataFormatError(f"{path}: is not UTF-8 text (byte {err.start}); save it as UTF-8 CSV") from None
    try:
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
        twice = sorted({c for c in header if header.count(c) > 1})
        if not twice:
            frame = pd.read_csv(path, sep=sep, skip_blank_lines=False,
                                dtype={c: str for c in text if c in header} or None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise DataFormatError(f"{path}: not a readable CSV ({(str(err).splitlines() or [''])[0][:120]})") from None
    if twice:
        raise DataFormatError(f"{path}: column {twice[0]!r} is named twice in the header; rename one")
    if len(frame) == 0:
        raise DataFormatError(f"{path}: has a header but no rows")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})")
    for name, kind in (kinds or {}).items():
        if name not in frame.columns:
            continue
        column = frame[name]
        blank = column.isna().to_numpy() | np.array([is_blank(v) for v in column], dtype=bool)
        if blank.any():
            row = int(np.flatnonzero(blank)[0])
            what = "every row needs its subject's id" if kind == "id" else "fill it in or drop the row"
            raise DataFormatError(f"{path}: column {name!r} is blank at {_where(row)}; {what}")
        if kind in NUMERIC_KINDS:
            frame[name] = numeric_column(column, name, kind, f"{path}", _where, DataFormatError)
    return frame


def numeric_column(column, name: str, kind: str, where: str, row, error=DataFormatError) -> np.ndarray:
    """A covariate column of a numeric ``kind`` as float64: a value that is not a finite number, or a
    binary value outside 0/1, is one ``error`` naming ``where``, the column and ``row(i)``."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise error(f"{where}: column {name!r} at {row(i)}: {plain_value(column.iloc[i])!r} is not a finite number "
                    f"({name} is {kind})")
    if kind == "binary" and not np.isin(numbers, (0.0, 1.0)).all():
        i = int(np.flatnonzero(~np.isin(numbers, (0.0, 1.0)))[0])
        raise error(f"{where}: column {name!r} at {row(i)}: {plain_value(column.iloc[i])!r}; {name} is binary (0 or 1)")
    return numbers


def _where(row: int) -> str:
    return f"row {row + 1} (line {row + 2})"
