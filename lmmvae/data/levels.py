"""Values of categorical and id covariates, matched by value: the one level matcher.

The loader (``lmmvae.data.loader.recode``: ``batch.subject``, ``batch.covariates``) and the design
(categorical levels, random-effect groups) both code levels through :func:`match_levels`, so
``12``, ``12.0`` and ``"12"`` are one subject on every path (tests/test_h5_levels.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def plain_value(v: Any) -> Any:
    """numpy scalars and bytes -> plain Python values (JSON- and HDF5-attr-friendly)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


_BLANK = {"", "nan", "none", "na", "<na>", "null"}


def is_blank(value: Any) -> bool:
    """A missing level: ``None``, NaN, ``""`` or the text pandas/R write for them (``nan``, ``NA``)."""
    value = plain_value(value)
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _BLANK


def level_key(value: Any) -> str:
    """How levels are compared, by value: ``12``, ``12.0``, ``np.int64(12)``, ``"12"`` and
    ``"12.0"`` are one level (pandas turns an int id column with a blank into floats; a CSV read
    as text gives strings); other strings compare as themselves, stripped."""
    value = plain_value(value)
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
    exact = {str(plain_value(v)): i for i, v in enumerate(reference)}
    by_key: dict[str, int] = {}
    for i, v in enumerate(reference):
        key = level_key(v)
        by_key[key] = -2 if key in by_key else i  # -2: ambiguous key
    out = np.empty(len(values), dtype=np.int64)
    for j, v in enumerate(values):
        code = exact.get(str(plain_value(v)))
        if code is None:
            code = by_key.get(level_key(v), -1)
            code = -1 if code == -2 else code
        out[j] = code
    return out
