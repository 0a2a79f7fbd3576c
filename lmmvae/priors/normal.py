"""The standard normal prior ``p(z) = N(0, I)`` of the plain VAE (BASELINES.md)."""

from __future__ import annotations

import torch
from torch.distributions import Normal

from lmmvae.batch import Batch
from lmmvae.priors.base import Encoded, KLTerms, Prior


class StandardNormalPrior(Prior):
    """``KL(N(μ, s²) || N(0, I))`` in closed form; predictions are the prior itself."""

    def kl(self, q_z: Normal, encoded: Encoded, batch: Batch) -> KLTerms:
        mu, s2 = q_z.mean, q_z.variance
        kl = 0.5 * (s2 + mu.square() - 1 - s2.log())
        return KLTerms(local=kl.sum(), global_=kl.new_zeros(()))

    def predict(self, batch: Batch) -> Normal:
        zeros = torch.zeros(batch.size, self.latent_dim, device=batch.y.device)
        return Normal(zeros, torch.ones_like(zeros))

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        return self.predict(batch).sample((n_samples,))
