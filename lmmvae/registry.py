"""Named choices of a config (networks, likelihoods, objectives), looked up and configured one way.

Each registry maps a name to an entry whose ``options`` is a dataclass: its fields are the valid keys
of the config's ``<kind>_options:`` mapping, with their defaults (as a variant's options are the
valid keys of ``prior:``, :mod:`lmmvae.model.variants`). Errors a user can cause are one-line
:class:`~lmmvae.errors.ConfigError` s naming the bad name or key and listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Generic, Iterator, TypeVar

from lmmvae.errors import ConfigError

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """``{name: entry}`` for one kind of choice; ``what`` names the kind in error messages.

    ``providers``: modules that register entries when imported, imported on the first look-up of a
    name not yet registered (so that a registry can list entries defined in packages it must not
    import eagerly, as :mod:`lmmvae.model.variants` lists the baselines)."""

    def __init__(self, what: str, providers: tuple[str, ...] = ()):
        self.what = what
        self.providers = providers
        self._entries: dict[str, Entry] = {}

    def _load(self, name: str | None = None) -> None:
        for module in self.providers:
            if name is not None and name in self._entries:
                return
            importlib.import_module(module)

    def register(self, entry: Entry) -> Entry:
        name = entry.name  # type: ignore[attr-defined]
        assert name not in self._entries, f"{self.what} {name!r} registered twice"
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Entry:
        self._load(name)
        if name not in self._entries:
            raise ConfigError(f"unknown {self.what} {name!r}; valid: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def peek(self, name: str) -> Entry | None:
        """The entry ``name`` if registered already, importing no provider (None otherwise)."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load(name)  # type: ignore[arg-type]
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __getitem__(self, name: str) -> Entry:
        return self.get(name)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a choice that has none."""


def parse_options(cls: type, values: dict[str, Any], where: str) -> Any:
    """The options dataclass ``cls`` from a config mapping; unknown keys are one-line errors
    (``<where>: unknown option(s) …; valid: …``); values are checked by ``cls`` itself."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: options must be a mapping, got {type(values).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid)) or 'none'}")
    return cls(**values)
