"""A model configuration checked against the registries, and the typed options it names.

:class:`~lmmvae.config.ModelConfig` is a typed record (keys, types, ranges) that imports no model
code. The names it holds are looked up here, one floor above the registries: the variant
(:mod:`lmmvae.model.variants`), the objective (:mod:`lmmvae.training.objectives`), the network
(:mod:`lmmvae.model.networks`), the likelihood (:mod:`lmmvae.model.likelihoods`) and the device
(:mod:`lmmvae.training.runtime`), with each one's own options. Every reader of user settings (``lmmvae
fit --model``, :func:`lmmvae.fit`, a run's ``config.json``) goes through :func:`config_from_dict`
or :func:`config_from_yaml`, so a wrong name is a one-line error naming the file before any data
are read.
"""

from __future__ import annotations

import os
from typing import Any

from lmmvae.config import ModelConfig, options_from_dict
from lmmvae.errors import ConfigError
from lmmvae.model import variants
from lmmvae.model.likelihoods import likelihood_options as _likelihood_options
from lmmvae.model.networks import network_options as _network_options
from lmmvae.model.objective_kinds import objective_kind
from lmmvae.training.objectives import OBJECTIVES
from lmmvae.training.runtime import check_device


def config_from_dict(values: dict[str, Any], where: str = "model config") -> ModelConfig:
    """:meth:`ModelConfig.from_dict` then :func:`check`: the config of ``values``, every key checked."""
    config = ModelConfig.from_dict(values, where)
    check(config, where)
    return config


def config_from_yaml(path: str | os.PathLike) -> ModelConfig:
    """:meth:`ModelConfig.from_yaml` then :func:`check`; errors name the file."""
    config = ModelConfig.from_yaml(path)
    check(config, str(path))
    return config


def check(config: ModelConfig, where: str = "model config") -> None:
    """The names ``config`` holds exist and fit together, and each one's options parse; one-line
    :class:`ConfigError` s that start with ``where``."""
    if config.objective not in OBJECTIVES:
        raise ConfigError(f"{where}: objective must be one of {', '.join(OBJECTIVES.names())}, got {config.objective!r}")
    check_device(config.device, f"{where}: device")
    variant = variants.get(config.variant)
    kind = objective_kind(config.objective)
    if kind.samples_prior and not variant.gsnn:
        raise ConfigError(f"{where}: variant {config.variant!r} cannot be trained by {kind.label}: {variant.why_no_gsnn}")
    prior_options(config, where, variant)
    network_options(config, where)
    likelihood_options(config, where)


def reads_encoder(config: ModelConfig) -> bool:
    """Whether anything after training may read the encoder: not after GSNN, which trains none
    (SPEC 4): no posterior, no imputation, no MCC, no encoder-based conditioning."""
    return objective_kind(config.objective).trains_encoder


def prior_options(config: ModelConfig, where: str = "model config", variant=None):
    """The variant's options dataclass filled from ``prior:``."""
    variant = variant or variants.get(config.variant)
    options = options_from_dict(variant.options, config.prior, f"{where}: prior ({config.variant})")
    resolve = getattr(options, "resolve", None)  # options whose default depends on the objective
    return resolve(config.objective) if resolve is not None else options


def network_options(config: ModelConfig, where: str = "model config"):
    """The network's options dataclass filled from ``network_options:`` (:mod:`lmmvae.model.networks`)."""
    return _at(where, _network_options, config.network, config.network_options)


def likelihood_options(config: ModelConfig, where: str = "model config"):
    """The likelihood's options dataclass filled from ``likelihood_options:`` (:mod:`lmmvae.model.likelihoods`)."""
    return _at(where, _likelihood_options, config.likelihood, config.likelihood_options)


def _at(where: str, parse, name: str, values: dict[str, Any]):
    """``parse(name, values)`` with ``where`` (the config file) in front of its one-line error."""
    try:
        return parse(name, values)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
