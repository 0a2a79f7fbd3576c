"""The standard normal prior ``p(z) = N(0, I)`` of the plain VAE (docs/baselines.md)."""

from __future__ import annotations

import torch
from torch.distributions import Normal

from lmmvae.data.batch import Batch
from lmmvae.model.priors.base import Encoded, Inference, KLTerms, Prior
from lmmvae.model.priors.describe import PriorDescription


class StandardNormalPrior(Prior):
    """``KL(N(μ, s²) || N(0, I))`` in closed form; predictions are the prior itself."""

    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        q_z = encoded.as_normal()
        if not kl:
            return Inference(q_z, None)
        mu, s2 = q_z.mean, q_z.variance
        terms = 0.5 * (s2 + mu.square() - 1 - s2.log())
        return Inference(q_z, KLTerms(local=terms.sum(), global_=terms.new_zeros(())))

    def predict(self, batch: Batch) -> Normal:
        zeros = torch.zeros(batch.size, self.latent_dim, device=batch.y.device)
        return Normal(zeros, torch.ones_like(zeros))

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        return self.predict(batch).sample((n_samples,))

    def describe(self, design, objective) -> PriorDescription:
        """Nothing learned: ``N(0, I)`` has no effects, variances or noise scale to report."""
        return PriorDescription()
