"""The plain VAE (Kingma & Welling 2014): ``p(z) = N(0, I)``, ``q(z|y) = N(μ_φ(ỹ), s_φ(ỹ)²)``, ELBO
with the analytic KL (docs/baselines.md). The prior is the library's :class:`StandardNormalPrior`; its
prediction at any covariates is the prior mean ``z = 0``, i.e. one image for every input, the
floor that every covariate-aware model must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmmvae.model.priors.normal import StandardNormalPrior


@dataclass
class VAEOptions:
    """The VAE has no prior options (the YAML's ``prior:`` must be empty)."""


def build_vae(options: VAEOptions, summary: dict, latent_dim: int) -> StandardNormalPrior:
    return StandardNormalPrior(latent_dim)
