"""Registry of model variants: the ``variant:`` key of a model YAML names one of these.

A variant is a prior with its options; the networks, objective and trainer are shared. The LMM-VAE
variants (``olmm``, ``slmm``) register in :mod:`lmmvae.model.priors`; the baselines (``vae``, ``cvae``,
``gppvae``, ``svgpvae``, ``lvae``) in the ``baselines`` package; the classical rows (``mixedlm``,
``mean``: ``family=CLASSICAL``, fitted by :mod:`lmmvae.classical.family`, never by the neural builder) in
:mod:`lmmvae.classical.family`. Providers are imported on first look-up.

A variant names the :class:`Family` that fits and loads its models: ``None`` is the neural family
(networks trained by :mod:`lmmvae.training.train`, :mod:`lmmvae.api`); another family gives its own ``fit``
and ``load``, and :func:`lmmvae.api.fit` / :func:`lmmvae.api.load` ask the variant, nothing else.

A neural variant is made in two steps, as the design is (SPEC 1: fitted once, saved, re-applied):

* ``summarise(options, design, covariates, subject) -> dict``: everything the prior needs from the
  training split (level counts, number of subjects and rows, initial inducing points, view grid…),
  as a small JSON-able record, saved in the run directory as ``prior.json``. ``options`` is the
  variant's options dataclass (the YAML's ``prior:`` mapping, unknown keys rejected), ``design``
  the design fitted on the train split (:class:`lmmvae.model.design.FittedDesign`: for GP priors its
  formula is read as a kernel, SPEC 5), ``covariates`` the training split's covariates by name,
  ``subject`` the config's subject covariate. Errors a user can cause are raised here.
* ``build_prior(options, summary, latent_dim) -> Prior``: pure, no data; a run directory is
  rebuilt from its JSON files with it (:mod:`lmmvae.training.assemble`).

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
class Family:
    """How the models of a family other than the neural one are fitted and loaded (module docstring)."""

    name: str
    #: (data, config, out=, seed=, plan=) -> FittedModel (lmmvae.fitted); ``plan``: the run directory's RunPlan or None
    fit: Callable[..., Any]
    load: Callable[[Any], Any]  # (run_dir) -> FittedModel, from the directory ``fit`` wrote


@dataclass(frozen=True)
class Variant:
    name: str
    options: type  # a dataclass; its fields are the valid keys of the YAML's `prior:` mapping
    build_prior: Callable[[Any, dict, int], Any]  # (options, summary, latent_dim) -> Prior
    description: str = ""  # one line for humans (the data summary is `summarise`)
    #: the family that fits and loads it; None: the neural family (lmmvae.api, lmmvae.training.train)
    family: Family | None = None
    #: whether GSNN (SPEC 4) can train it: the prior's per-observation marginal must carry the
    #: covariates (a zero-mean prior gives every observation the same marginal: nothing to learn)
    gsnn: bool = False
    why_no_gsnn: str = "its prior has zero mean whatever the covariates, so the per-observation GSNN bound learns nothing from them (SPEC 4); use objective: elbo"
    #: (options, design, covariates, subject) -> JSON-able dict, the run's prior.json
    summarise: Callable[[Any, Any, dict, str], dict] = no_summary
    conditional: bool = False  # the networks also take the shared design row x^s (CVAE)

    @property
    def classical(self) -> bool:
        """Fitted by a family of its own (no networks, no latent): mixedlm, mean."""
        return self.family is not None


_PROVIDERS = ("lmmvae.model.priors", "baselines", "lmmvae.classical.family")
#: the variants, in the registry style of networks, likelihoods and objectives (lmmvae.registry);
#: the providers register the library's own variants when a name is first looked up
_REGISTRY: Registry[Variant] = Registry("variant", providers=_PROVIDERS)


def register(variant: Variant) -> Variant:
    return _REGISTRY.register(variant)


def get(name: str) -> Variant:
    return _REGISTRY.get(name)


def names() -> list[str]:
    return _REGISTRY.names()


def registered(name: str) -> Variant | None:
    """The variant ``name`` if it is registered already, without importing any provider (so without
    torch): for torch-free callers that import the provider they ask about themselves."""
    return _REGISTRY.peek(name)
