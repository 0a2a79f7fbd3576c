"""YAML as people write it: ``lr: 1e-3`` is a number.

PyYAML follows YAML 1.1, whose float pattern needs a dot and a signed exponent (``1.0e-3``), so
``1e-3`` and ``5e4`` load as strings; YAML 1.2 (and every other tool a user knows) reads them as
floats. :func:`safe_load` is ``yaml.safe_load`` with the 1.2 reading of exponent floats;
:func:`exponent_floats` converts such strings in data that another loader (Snakemake's) has
already read.

The loader is also strict, for files written by hand or handed over by someone else: a key given
twice in one mapping is an error (the last would silently win), a document may hold at most
:data:`MAX_ALIASES` aliases (a "billion laughs" file expands exponentially in whatever walks it),
and :func:`read_yaml` reads at most :data:`MAX_BYTES` from a regular file (``/dev/zero`` never ends).
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from lmmvae.errors import ConfigError
from lmmvae.runs.paths import check_input

#: a number with an exponent, as YAML 1.2 reads it (1e-3, 5E4, -2.5e+3, .5e1)
EXPONENT_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


#: the most aliases (``*name``) one document may use, and the largest YAML file read
MAX_ALIASES = 100
MAX_BYTES = 1 << 20


class _Loader(yaml.SafeLoader):
    """SafeLoader that also resolves exponent floats without a dot or exponent sign, refuses a key
    given twice and stops at :data:`MAX_ALIASES` aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (line {mark.line + 1}); "
                                     "write the values out instead")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key != "<<" and key in seen:
                    raise yaml.YAMLError(f"key {key!r} is given twice (line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789."))


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, with ``1e-3`` read as the float 0.001 (nothing loaded can run code)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """The YAML file ``path`` loaded with :func:`safe_load`; a missing file is FileNotFoundError, a
    non-regular or too large file, bad YAML, a key given twice or too many aliases a one-line
    ConfigError naming the file."""
    check_input(path, what)
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not a {what}")
    try:
        return safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def exponent_floats(value: Any) -> Any:
    """``value`` (nested dicts and lists) with every string like ``"1e-3"`` turned into a float."""
    if isinstance(value, str):
        return float(value) if EXPONENT_FLOAT.match(value.strip()) else value
    if isinstance(value, dict):
        return type(value)((k, exponent_floats(v)) for k, v in value.items())
    if isinstance(value, list):
        return [exponent_floats(v) for v in value]
    return value
