"""Training objectives: the ELBO (SPEC 2.3, 3.3) and GSNN (SPEC 4), chosen by config.

Priors return unscaled sums over the batch; the objective scales them to the training set with
``batch.scale`` (``N/|B|`` or ``P/|B_subjects|``) and reports ``−ELBO / N`` (gpytorch's habit: the
objective, not the model, knows the data size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lmmvae.answers.metrics import log_mean_exp
from lmmvae.data.batch import Batch
from lmmvae.model.latent import LatentVariableModel
from lmmvae.model.objective_kinds import OBJECTIVE_KINDS, ObjectiveKind, objective_kind
from lmmvae.registry import Registry


@dataclass
class LossTerms:
    """``loss`` to minimise (``−ELBO / N``) and its parts, as unscaled batch sums."""

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl_local: torch.Tensor
    kl_global: torch.Tensor


def elbo(model: LatentVariableModel, batch: Batch, n_total: int, n_samples: int = 1) -> LossTerms:
    """``ELBO = Σ_i E_q log p(y_i|z_i) − Σ_i E KL_i − KL_global`` (SPEC 2.3), one reparameterised
    draw per row by default."""
    inferred = model.prior.infer(model.encode(batch), batch)  # q(z) and the KL terms, in one call
    z = inferred.q_z.rsample((n_samples,))  # [S, B, L]
    reconstruction = model.log_likelihood(z, batch).mean(0).sum()
    kl = inferred.kl
    loss = -(batch.scale * (reconstruction - kl.local) - kl.global_) / n_total
    return LossTerms(loss, reconstruction, kl.local, kl.global_)


def gsnn(model: LatentVariableModel, batch: Batch, n_total: int, n_samples: int = 10) -> LossTerms:
    """``−Σ_i log (1/S) Σ_s p(y_i | g(z_i^(s))) + KL(q(A)||p(A))`` with ``z^(s)`` from the prior
    (SPEC 4), by log-sum-exp."""
    z = model.prior.sample(batch, n_samples)  # [S, B, L]
    log_p = model.log_likelihood(z, batch)  # [S, B]
    reconstruction = log_mean_exp(log_p, dim=0).sum()
    kl = model.prior.prior_kl(batch)
    loss = -(batch.scale * (reconstruction - kl.local) - kl.global_) / n_total
    return LossTerms(loss, reconstruction, kl.local, kl.global_)


@dataclass(frozen=True)
class Objective:
    """A registry entry (:mod:`lmmvae.registry`): ``loss(model, batch, n_total, n_samples) -> LossTerms``,
    and ``kind``, what the objective implies elsewhere (:mod:`lmmvae.model.objective_kinds`, torch-free)."""

    name: str
    loss: Callable[..., LossTerms]

    @property
    def kind(self) -> ObjectiveKind:
        return objective_kind(self.name)

    @property
    def trains_encoder(self) -> bool:
        """Whether anything after training may read the encoder's posterior (not after GSNN, SPEC 4)."""
        return self.kind.trains_encoder


OBJECTIVES: Registry[Objective] = Registry("objective")
OBJECTIVES.register(Objective("elbo", elbo))
OBJECTIVES.register(Objective("gsnn", gsnn))
assert set(OBJECTIVES.names()) == set(OBJECTIVE_KINDS.names()), "each objective needs a kind and a loss"


def get_objective(name: str) -> Callable[..., LossTerms]:
    return OBJECTIVES.get(name).loss
