"""Registry of model variants: the ``variant:`` key of a model YAML names one of these.

A variant is a prior with its options; the networks, objective and trainer are shared. The LMM-VAE
variants (``olmm``, ``slmm``) register in :mod:`lmmvae.priors`; the baselines (``vae``, ``cvae``,
``gppvae``, ``svgpvae``, ``lvae``) in the ``baselines`` package; the classical rows (``mixedlm``,
``mean``: ``classical=True``, fitted by :mod:`lmmvae.classical`, never by the neural builder) in
:mod:`lmmvae.classical`. Providers are imported on first look-up.

A neural variant is made in two steps, as the design is (SPEC 1: fitted once, saved, re-applied):

* ``summarise(options, design, covariates, subject) -> dict``: everything the prior needs from the
  training split (level counts, number of subjects and rows, initial inducing points, view grid…),
  as a small JSON-able record, saved in the run directory as ``prior.json``. ``options`` is the
  variant's options dataclass (the YAML's ``prior:`` mapping, unknown keys rejected), ``design``
  the design fitted on the train split (:class:`lmmvae.design.FittedDesign`: for GP priors its
  formula is read as a kernel, SPEC 5), ``covariates`` the training split's covariates by name,
  ``subject`` the config's subject covariate. Errors a user can cause are raised here.
* ``build_prior(options, summary, latent_dim) -> Prior``: pure, no data; a run directory is
  rebuilt from its JSON files with it (:mod:`lmmvae.assemble`).

``conditional``: the networks take the shared design row ``x^s`` as an extra input (CVAE).
Adding a model is one module with its options, summarise and build, plus one ``register`` line
(docs/adding_a_model.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lmmvae.errors import ConfigError
from lmmvae.registry import Registry


def no_summary(options, design, covariates, subject: str) -> dict:
    """``summarise`` of a prior that needs nothing from the training split."""
    return {}


@dataclass(frozen=True)
class Variant:
    name: str
    options: type  # a dataclass; its fields are the valid keys of the YAML's `prior:` mapping
    build_prior: Callable[[Any, dict, int], Any]  # (options, summary, latent_dim) -> Prior
    description: str = ""  # one line for humans (the data summary is `summarise`)
    classical: bool = False  # fitted by lmmvae.classical (no networks, no latent): mixedlm, mean
    #: whether GSNN (SPEC 4) can train it: the prior's per-observation marginal must carry the
    #: covariates (a zero-mean prior gives every observation the same marginal: nothing to learn)
    gsnn: bool = False
    why_no_gsnn: str = "its prior has zero mean whatever the covariates, so the per-observation GSNN bound learns nothing from them (SPEC 4); use objective: elbo"
    #: (options, design, covariates, subject) -> JSON-able dict, the run's prior.json
    summarise: Callable[[Any, Any, dict, str], dict] = no_summary
    conditional: bool = False  # the networks also take the shared design row x^s (CVAE)


_PROVIDERS = ("lmmvae.priors", "baselines", "lmmvae.classical")
#: the variants, in the registry style of networks, likelihoods and objectives (lmmvae.registry);
#: the providers register the library's own variants when a name is first looked up
_REGISTRY: Registry[Variant] = Registry("variant", providers=_PROVIDERS)


def register(variant: Variant) -> Variant:
    return _REGISTRY.register(variant)


def get(name: str) -> Variant:
    return _REGISTRY.get(name)


def names() -> list[str]:
    return _REGISTRY.names()
