"""Validation of the workflow config against its JSON schema, with one-line messages.

``jsonschema`` reports where a config breaks its schema as a path and a long message; this module
turns the most specific error into one line that names the config path and the fix, e.g.
``experiments.physionet: unknown key 'colour'; valid keys: dataset, defaults, ...``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from lmmvae.errors import ConfigError


#: the schema's name patterns, in words
_PATTERN_WORDS = {
    "^[A-Za-z][A-Za-z0-9_]*$": "start with a letter and use only letters, digits and _",
    "^[A-Za-z][A-Za-z0-9_-]*$": "start with a letter and use only letters, digits, _ and -",
    "^[A-Za-z][A-Za-z0-9_.+-]*$": "start with a letter and use only letters, digits and _ . + -",
    "^[A-Za-z_][A-Za-z0-9_.]*$": "start with a letter or _ and use only letters, digits, _ and .",
    "^[A-Za-z0-9_.+-]+$": "use only letters, digits and _ . + -",
}


def validate_config(config: dict, schema_path: str | os.PathLike) -> None:
    """Check ``config`` against the JSON schema; the first error becomes a one-line ConfigError."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(describe_schema_error(_deepest(errors[0])))


def _deepest(error):
    """For oneOf/anyOf/if-then errors, the sub-error that says most about what is wrong."""
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.message)))
    return error


def describe_schema_error(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    kind, value = error.validator, error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        hint = f"; valid keys: {', '.join(allowed)}" if allowed else ""
        return f"{where}: unknown key {', '.join(map(repr, extra))}{hint}"
    if kind == "required":
        return f"{where}: {error.message.replace(' is a required property', '')} is missing"
    if kind == "enum":
        return f"{where}: {value!r} is not one of {', '.join(map(str, error.validator_value))}"
    if kind == "pattern":
        allowed = _PATTERN_WORDS.get(error.validator_value, f"match {error.validator_value}")
        return f"{where}: name {value!r} must {allowed} (names reach file paths and shell commands)"
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{where}: expected {expected}, got {type(value).__name__} {value!r}"
    return f"{where}: {error.message}"
