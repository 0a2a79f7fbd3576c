"""Latent priors of LMM-VAE, registered as the ``olmm`` and ``slmm`` variants.

See :mod:`lmmvae.model.priors.base` for the seam every prior (and every baseline) implements, and
:mod:`lmmvae.model.variants` for the two steps of a variant: *summarise* the training split into a JSON
record (saved as the run's ``prior.json``), *build* the prior from options + summary + latent size.
"""

from __future__ import annotations

import dataclasses
import numpy as np

from lmmvae.errors import ConfigError
from lmmvae.model.priors.base import Encoded, Inference, KLTerms, Prior
from lmmvae.model.priors.normal import StandardNormalPrior
from lmmvae.model.priors.olmm import OLMMOptions, OLMMPrior
from lmmvae.model.priors.slmm import SLMMOptions, SLMMPrior
from lmmvae.model.variants import Variant, register

__all__ = ["Encoded", "Inference", "KLTerms", "Prior", "StandardNormalPrior", "OLMMPrior", "SLMMPrior"]


def summarise_effects(design, covariates) -> dict:
    """The shapes of ``A`` (SPEC 1): shared columns, ``(levels, columns)`` per random term, and the
    training rows per level of each term (the weights ``1/n_p`` of the KL of A)."""
    matrix = design.transform(covariates)
    counts = [np.bincount(lv[lv >= 0], minlength=term.n_levels).tolist()
              for lv, term in zip(matrix.levels, design.random_terms)]
    return {"n_shared": int(design.n_shared),
            "random_terms": [[int(term.n_levels), len(term.columns)] for term in design.random_terms],
            "level_counts": counts}


def summarise_olmm(options: OLMMOptions, design, covariates, subject: str) -> dict:
    if options.q_A not in ("gaussian", "point"):
        raise ConfigError(f"prior.q_A must be 'gaussian' or 'point', got {options.q_A!r}")
    return {**summarise_effects(design, covariates), "q_A": options.q_A}  # read_recipe: a run without it


def build_olmm(options: OLMMOptions, summary: dict, latent_dim: int) -> OLMMPrior:
    return OLMMPrior(latent_dim, summary["n_shared"], [tuple(t) for t in summary["random_terms"]],
                     summary["level_counts"], options)


def summarise_slmm(options: SLMMOptions, design, covariates, subject: str) -> dict:
    cov = covariates.get(subject)
    if cov is None or cov.levels is None:
        raise ConfigError(f"sLMM-VAE needs a subject covariate of kind id/categorical named {subject!r} "
                          f"(config key `subject`); the data have: {', '.join(covariates)}")
    if options.random_effects not in ("gaussian", "point"):
        raise ConfigError(f"prior.random_effects must be 'gaussian' or 'point', got {options.random_effects!r}")
    return {**summarise_effects(design, covariates), "n_subjects": len(cov.levels),
            "random_effects": options.random_effects}


def build_slmm(options: SLMMOptions, summary: dict, latent_dim: int) -> SLMMPrior:
    # a run summarised before `random_effects` existed had point random-effect rows: it loads so
    options = dataclasses.replace(options, random_effects=summary.get("random_effects", "point"))
    return SLMMPrior(latent_dim, summary["n_shared"], [tuple(t) for t in summary["random_terms"]],
                     summary["n_subjects"], options, level_counts=summary["level_counts"])


register(Variant("olmm", OLMMOptions, build_olmm, "oLMM-VAE: LMM prior with q(A) (SPEC 2)", gsnn=True,
                 summarise=summarise_olmm))
register(Variant("slmm", SLMMOptions, build_slmm, "sLMM-VAE: structured subject deviations (SPEC 3)", gsnn=True,
                 summarise=summarise_slmm))
