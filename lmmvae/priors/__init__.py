"""Latent priors of LMM-VAE, registered as the ``olmm`` and ``slmm`` variants.

See :mod:`lmmvae.priors.base` for the seam every prior (and every baseline) implements.
"""

from __future__ import annotations

import numpy as np

from lmmvae.errors import ConfigError
from lmmvae.priors.base import Encoded, KLTerms, Prior
from lmmvae.priors.normal import StandardNormalPrior
from lmmvae.priors.olmm import OLMMOptions, OLMMPrior
from lmmvae.priors.slmm import SLMMOptions, SLMMPrior
from lmmvae.variants import Variant, register

__all__ = ["Encoded", "KLTerms", "Prior", "StandardNormalPrior", "OLMMPrior", "SLMMPrior"]


def _random_shapes(design) -> list[tuple[int, int]]:
    return [(term.n_levels, len(term.columns)) for term in design.random_terms]


def _level_counts(design, train) -> list[np.ndarray]:
    """Training rows per level of each random-effect term (the weights ``1/n_p`` of the KL of A)."""
    matrix = design.transform(train.covariates)
    return [np.bincount(lv[lv >= 0], minlength=term.n_levels)
            for lv, term in zip(matrix.levels, design.random_terms)]


def build_olmm(options: OLMMOptions, design, train, latent_dim: int) -> OLMMPrior:
    if options.q_A not in ("gaussian", "point"):
        raise ConfigError(f"prior.q_A must be 'gaussian' or 'point', got {options.q_A!r}")
    return OLMMPrior(latent_dim, design.n_shared, _random_shapes(design), _level_counts(design, train), options)


def build_slmm(options: SLMMOptions, design, train, latent_dim: int, subject: str = "id") -> SLMMPrior:
    cov = train.covariates.get(subject)
    if cov is None or cov.levels is None:
        raise ConfigError(f"sLMM-VAE needs a subject covariate of kind id/categorical named {subject!r} "
                          f"(config key `subject`); the data have: {', '.join(train.covariates)}")
    return SLMMPrior(latent_dim, design.n_shared, _random_shapes(design), len(cov.levels), options,
                     level_counts=_level_counts(design, train))


register(Variant("olmm", OLMMOptions, build_olmm, "oLMM-VAE: LMM prior with q(A) (SPEC 2)", gsnn=True))
register(Variant("slmm", SLMMOptions, build_slmm, "sLMM-VAE: structured subject deviations (SPEC 3)", gsnn=True))
