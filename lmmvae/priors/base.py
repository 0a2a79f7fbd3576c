"""The ``Prior`` seam: one interface for every latent prior of the project (STYLE.md).

A model is *prior × objective × networks*. The networks map observations to per-observation
Gaussian encodings ``(μ_i, s_i²)`` and latents to likelihood parameters; the objective (ELBO or
GSNN, :mod:`lmmvae.objectives`) asks the prior for four things:

* ``posterior(encoded, batch)``: the variational posterior ``q(z)`` of the batch rows. Most priors
  use the encoder output as it is; the structured prior of sLMM-VAE (SPEC 3.2) and the sparse-GP
  posterior of SVGP-VAE combine encodings across rows.
* ``kl(q_z, encoded, batch)``: the regulariser of the ELBO for the batch, split into a *local* part
  (a sum over the batch's rows or subjects, which the objective multiplies by ``batch.scale``) and a
  *global* part (a term of the whole data set, such as ``KL(q(A) || p(A))``, added once).
* ``sample(batch, n_samples)``: draws ``z ~ p(z | covariates)`` for GSNN training (SPEC 4).
* ``predict(batch)``: the latent distribution at (possibly new) covariates for prediction
  (SPEC 2.4, 3.4), after ``condition`` has been given the encodings of the training split.

Priors are ``torch.nn.Module`` so their parameters train with the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Normal

from lmmvae.batch import Batch


@dataclass
class KLTerms:
    """``local``: sum over the batch (scaled by the objective); ``global_``: added once."""

    local: torch.Tensor  # scalar
    global_: torch.Tensor  # scalar


@dataclass
class Encoded:
    """Per-observation encoder output ``(μ_i, s_i²)``."""

    mean: torch.Tensor  # [B, L]
    var: torch.Tensor  # [B, L]

    def as_normal(self) -> Normal:
        return Normal(self.mean, self.var.sqrt())


class Prior(nn.Module):
    """Base class of latent priors; subclasses implement ``kl``, ``sample`` and ``predict``."""

    #: how minibatches must be drawn: "observations" (i.i.d. rows) or "subjects" (whole subjects)
    batching: ClassVar[str] = "observations"
    #: whether the model's networks take the design row as an extra input (CVAE)
    conditional: ClassVar[bool] = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def posterior(self, encoded: Encoded, batch: Batch) -> Normal:
        """``q(z_i)`` for the batch rows; by default the encoder's Gaussian (SPEC 2.2)."""
        return encoded.as_normal()

    def kl(self, q_z: Normal, encoded: Encoded, batch: Batch) -> KLTerms:
        raise NotImplementedError

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """``[n_samples, B, L]`` draws from the prior at the batch covariates (GSNN, SPEC 4)."""
        raise NotImplementedError(f"{type(self).__name__} does not support GSNN training")

    def predict(self, batch: Batch) -> Normal:
        """Latent distribution at the batch covariates, for prediction and generation."""
        raise NotImplementedError

    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """Remember what ``predict`` needs from the training split (e.g. subject offsets).

        ``batch`` holds every training observation; ``encoded`` their encodings. Default: nothing.
        """

    def prior_kl(self, batch: Batch) -> KLTerms:
        """The part of ``kl`` that does not involve ``q(z)`` (e.g. ``KL(q(A) || p(A))``, SPEC 2.3).

        GSNN training (SPEC 4) keeps this term and drops the rest. Default: none.
        """
        zero = batch.y.new_zeros(())
        return KLTerms(local=zero, global_=zero)

    def on_epoch_start(self, model: nn.Module, data) -> None:
        """Hook before each training epoch (``data``: :class:`lmmvae.loader.TensorData`).

        Priors with state over the whole training set (GPPVAE's cache of latent means) refresh it
        here. Default: nothing.
        """

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters that receive sparse gradients (embedding tables of random effects).

        The trainer gives them to ``torch.optim.SparseAdam`` so that an optimiser step costs
        O(rows touched), not O(subjects).
        """
        return []
