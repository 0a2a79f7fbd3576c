"""Trainings named by their content: identical model settings train once per seed.

Two models of one dataset whose resolved settings are the same (a basis sweep's ``n_basis = 4``
and the main experiment's model with 4 frequencies; the label, key order and keys set to
:class:`lmmvae.config.ModelConfig`'s default do not count) train once per seed: a
:class:`Training`, named by the content of its model YAML (``<variant>-<sha256[:10]>`` of
:func:`training_yaml`). :func:`name_trainings` gives each model of a plan its training's name
(:mod:`lmmvae.reporting.experiments` builds the plan; :class:`ModelSpec`, one model's settings,
lives here, below the plan that holds them). Torch-free, like the plan: the workflow
imports it at parse time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from lmmvae.config import ModelConfig  # torch-free
from lmmvae.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """One model of one dataset: ``config``, its resolved settings, is what ``lmmvae fit --model``
    reads (as :func:`training_yaml`, shared with the models of identical settings)."""

    dataset: str
    name: str  # unique per dataset; a swept model is named ``<base>_<parameter><value>``
    base: str
    label: str  # for tables and legends
    config: dict
    sweep_parameter: str | None = None
    sweep_value: Any = None


@dataclass(frozen=True)
class Training:
    """One training job: a dataset, a model YAML (by content: ``name``, see module docstring) and
    a seed. Every :class:`Run` whose model resolves to that YAML reads this training's results."""

    dataset: str
    name: str  # "<variant>-<first 10 hex digits of the SHA-256 of its model YAML>"
    seed: int


@dataclass(frozen=True)
class TrainingPair:
    """Two seeds of one training whose latents are compared by MCC (shared, like a Training)."""

    dataset: str
    name: str
    seed_a: int
    seed_b: int


def name_trainings(
    models: dict[tuple[str, str], ModelSpec],
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Each model's training name, and each training's model YAML: models of one dataset whose
    YAML is the same share one name (the YAML's content, not the model's name, defines it)."""
    names: dict[tuple[str, str], str] = {}
    yamls: dict[tuple[str, str], str] = {}
    for (dataset, model), spec in models.items():
        text = training_yaml(spec.config)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        # the variant for readability, as a path-safe word (it is free text until `lmmvae fit`)
        word = re.sub(r"[^A-Za-z0-9_]", "", str(spec.config["variant"]))[:32] or "model"
        name = f"{word}-{digest}"
        if yamls.setdefault((dataset, name), text) != text:  # 40 bits: never seen, but say so
            raise ConfigError(f"models of {dataset!r}: two model YAMLs hash to {name}; rename one")
        names[(dataset, model)] = name
    return names, yamls


def training_yaml(config: dict) -> str:
    """The canonical model YAML of resolved settings ``config``: the keys that differ from
    :class:`lmmvae.config.ModelConfig`'s defaults, in its field order (so `objective: elbo` written
    out or left to the default, and the order the layers set the keys in, give the same YAML)."""
    fields = dataclasses.fields(ModelConfig)
    default = {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in fields
    }
    canonical = {
        f.name: _sorted(_as_default_type(config[f.name], default[f.name]))
        for f in fields
        if f.name in config and not _same(config[f.name], default[f.name])
    }
    return yaml.safe_dump(canonical, sort_keys=False, default_flow_style=False)


def _sorted(value: Any) -> Any:
    """Nested mappings (``prior:``, ``network_options:``) with their keys sorted."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=str)}
    return value


def _as_default_type(value: Any, default: Any) -> Any:
    """`lr: 1` of a float setting as 1.0 (the YAML, and so the training's name, are the same)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _same(value: Any, default: Any) -> bool:
    """Equal as settings: 0.001 == 1e-3; but True is not 1 and 1 is not "1"."""
    if isinstance(value, bool) or isinstance(default, bool):
        return type(value) is type(default) and value == default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return value == default
    return type(value) is type(default) and value == default
