"""YAML as people write it: ``lr: 1e-3`` is a number.

PyYAML follows YAML 1.1, whose float pattern needs a dot and a signed exponent (``1.0e-3``), so
``1e-3`` and ``5e4`` load as strings; YAML 1.2 (and every other tool a user knows) reads them as
floats. :func:`safe_load` is ``yaml.safe_load`` with the 1.2 reading of exponent floats;
:func:`exponent_floats` converts such strings in data that another loader (Snakemake's) has
already read.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: a number with an exponent, as YAML 1.2 reads it (1e-3, 5E4, -2.5e+3, .5e1)
EXPONENT_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also resolves exponent floats without a dot or exponent sign."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789."))


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, with ``1e-3`` read as the float 0.001 (nothing loaded can run code)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def exponent_floats(value: Any) -> Any:
    """``value`` (nested dicts and lists) with every string like ``"1e-3"`` turned into a float."""
    if isinstance(value, str):
        return float(value) if EXPONENT_FLOAT.match(value.strip()) else value
    if isinstance(value, dict):
        return type(value)((k, exponent_floats(v)) for k, v in value.items())
    if isinstance(value, list):
        return [exponent_floats(v) for v in value]
    return value
