"""Registry of model variants: the ``variant:`` key of a model YAML names one of these.

A variant is a prior with its options; the networks, objective and trainer are shared. The LMM-VAE
variants (``olmm``, ``slmm``) register in :mod:`lmmvae.priors`; the baselines (``vae``, ``cvae``,
``gppvae``, ``svgpvae``, ``lvae``) in the ``baselines`` package; the classical rows (``mixedlm``,
``mean``: ``classical=True``, fitted by :mod:`lmmvae.classical`, never by the neural builder) in
:mod:`lmmvae.classical`. Providers are imported on first look-up.

``build_prior(options, design, train, latent_dim)`` receives the variant's options dataclass (the
YAML's ``prior:`` mapping, unknown keys rejected), the design fitted on the train split
(:class:`lmmvae.design.FittedDesign`: for GP priors its formula is read as a kernel, SPEC 5), the
training split as :class:`lmmvae.h5.LongitudinalData` and the latent size.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from lmmvae.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    name: str
    options: type  # a dataclass; its fields are the valid keys of the YAML's `prior:` mapping
    build_prior: Callable[..., Any]
    summary: str = ""
    classical: bool = False  # fitted by lmmvae.classical (no networks, no latent): mixedlm, mean
    #: whether GSNN (SPEC 4) can train it: the prior's per-observation marginal must carry the
    #: covariates (a zero-mean prior gives every observation the same marginal: nothing to learn)
    gsnn: bool = False
    why_no_gsnn: str = "its prior has zero mean whatever the covariates, so the per-observation GSNN bound learns nothing from them (SPEC 4); use objective: elbo"


_REGISTRY: dict[str, Variant] = {}
_PROVIDERS = ("lmmvae.priors", "baselines", "lmmvae.classical")


def register(variant: Variant) -> Variant:
    _REGISTRY[variant.name] = variant
    return variant


def get(name: str) -> Variant:
    for module in _PROVIDERS:
        if name in _REGISTRY:
            break
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown variant {name!r}; valid: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def names() -> list[str]:
    for module in _PROVIDERS:
        importlib.import_module(module)
    return sorted(_REGISTRY)
