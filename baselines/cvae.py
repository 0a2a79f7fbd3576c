"""The conditional VAE (Sohn et al. 2015, section 4.1 "CVAE"), docs/baselines.md.

Encoder ``q(z | y, x)`` and decoder ``p(y | z, x)`` both take the shared design row ``x_i^s`` of the
experiment's formula (concatenated to their inputs by :class:`lmmvae.model.latent.LatentVariableModel`:
the variant declares ``conditional=True``); the prior ``p(z | x) = N(0, I)``, the common choice (Sohn et
al. also learn a prior network; with it the CVAE is not comparable to the VAE on equal terms).
Prediction at new covariates decodes ``z = 0``, the prior mean, together with ``x*``.

Deviation: random-effect columns ``(f | g)`` of the design are not given to the networks (they are
sparse one-hot columns whose width grows with the number of subjects); the subject enters a CVAE
only through the shared covariates.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmmvae.errors import ConfigError
from lmmvae.model.priors.normal import StandardNormalPrior


@dataclass
class CVAEOptions:
    """The CVAE has no prior options (the YAML's ``prior:`` must be empty)."""


def summarise_cvae(options: CVAEOptions, design, covariates, subject: str) -> dict:
    if design.n_shared < 1:
        raise ConfigError("cvae: the design has no shared columns to condition on; name covariates in `design`")
    return {}


def build_cvae(options: CVAEOptions, summary: dict, latent_dim: int) -> StandardNormalPrior:
    return StandardNormalPrior(latent_dim)
