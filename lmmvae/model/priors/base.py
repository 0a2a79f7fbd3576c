"""The ``Prior`` seam: one interface for every latent prior of the project.

A model is *prior × objective × networks*. The networks map observations to per-observation
Gaussian encodings ``(μ_i, s_i²)`` (:class:`Encoded`) and latents to likelihood parameters; the
prior is built by its variant from options, a JSON summary of the training split and the latent
size (:mod:`lmmvae.model.variants`), never from the data themselves.

The contract (``tests/test_contract.py`` checks it for every registered variant):

* ``infer(encoded, batch, kl=True) -> Inference``: in **one call** the variational posterior
  ``q(z)`` of the batch rows and the ELBO's regulariser, split into a *local* part (a sum over the
  batch's rows or subjects, which the objective multiplies by ``batch.scale``) and a *global* part
  (a term of the whole data set, such as ``KL(q(A) || p(A))``, added once). ``kl=False`` skips the
  regulariser (``Inference.kl`` is then ``None``): evaluation reads ``q(z)`` alone. Whatever work
  ``q(z)`` and the KL share (sLMM-VAE's subject posterior, SPEC 3.2; SVGP-VAE's inducing posterior)
  is done once inside the call; nothing is remembered between calls except the per-epoch state below.
* ``sample(batch, n_samples) -> [S, B, L]`` and ``prior_kl(batch) -> KLTerms``: GSNN training
  (SPEC 4) draws ``z ~ p(z | covariates)`` and keeps only the regulariser of the prior's own
  parameters (default: none). A prior that cannot be trained by GSNN raises in ``sample``; the
  variant says so (``Variant.gsnn``) so that the config refuses it first.
* ``condition(encoded, batch)`` then ``predict(batch) -> Normal``: after training, the encodings of
  every training row (and of no other row, SPEC 6) are handed over once; ``predict`` gives the
  latent distribution at (possibly new) covariates from them (SPEC 2.4, 3.4). State kept by
  ``condition`` lives in buffers, so that it is saved with the weights.
* per-epoch state, declared: a prior with ``epoch_encodings = True`` (GPPVAE's cache) receives
  ``on_epoch_start(encoded, batch)`` with the encodings of every training row before each training
  epoch (computed by the model, :meth:`lmmvae.model.latent.LatentVariableModel.start_epoch`); others
  receive ``on_epoch_start(None, None)``. Only in training mode may ``infer`` update that state.
* ``describe(design, objective) -> PriorDescription | None``: the fitted prior's fixed effects,
  random-effect variances, noise scales and what its factors mean under the objective
  (:mod:`lmmvae.model.priors.describe`), which ``lmmvae summary`` renders. Default ``None``: the summary
  then says that the prior gives no description.
* ``batching``: how minibatches are drawn ("observations" or "subjects", SPEC 3.3);
  ``sparse_parameters()``: the embedding tables that get sparse gradients (SparseAdam).

Conditioning of the *networks* on the design row (CVAE) is not the prior's business: the variant
declares it (``Variant.conditional``) and the model is built with it.
Priors are ``torch.nn.Module`` so their parameters train with the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.distributions import Normal

from lmmvae.data.batch import Batch
from lmmvae.model.priors.describe import PriorDescription


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


@dataclass
class Inference:
    """What :meth:`Prior.infer` returns: ``q(z)`` of the batch rows and the KL terms (or ``None``)."""

    q_z: Normal  # [B, L]
    kl: KLTerms | None


class Prior(nn.Module):
    """Base class of latent priors; subclasses implement ``infer`` and ``predict`` (module docstring)."""

    #: how minibatches must be drawn: "observations" (i.i.d. rows) or "subjects" (whole subjects)
    batching: ClassVar[str] = "observations"
    #: whether ``on_epoch_start`` needs the encodings of every training row (GPPVAE's cache)
    epoch_encodings: ClassVar[bool] = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        """``q(z)`` of the batch rows and, with ``kl``, the regulariser of the ELBO (SPEC 2.3)."""
        raise NotImplementedError

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """``[n_samples, B, L]`` draws from the prior at the batch covariates (GSNN, SPEC 4)."""
        raise NotImplementedError(f"{type(self).__name__} does not support GSNN training")

    def prior_kl(self, batch: Batch) -> KLTerms:
        """The regulariser that does not involve ``q(z)`` (e.g. ``KL(q(A) || p(A))``, SPEC 2.3):
        what GSNN training (SPEC 4) keeps. Default: none."""
        zero = batch.y.new_zeros(())
        return KLTerms(local=zero, global_=zero)

    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """Remember what ``predict`` needs from the training split (every training row). Default: nothing."""

    def predict(self, batch: Batch) -> Normal:
        """Latent distribution at the batch covariates, for prediction and generation."""
        raise NotImplementedError

    def on_epoch_start(self, encoded: Encoded | None, batch: Batch | None) -> None:
        """Before each training epoch: the training rows' encodings if ``epoch_encodings``. Default: nothing."""

    def describe(self, design, objective) -> "PriorDescription | None":
        """What the fitted prior reports for ``lmmvae summary``: ``design`` the fitted design (column
        names, :class:`lmmvae.model.design.FittedDesign`), ``objective`` the
        :class:`lmmvae.model.objective_kinds.ObjectiveKind` it was trained by. ``None``: no description
        (the summary says so instead of showing empty tables)."""
        return None

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters that receive sparse gradients (embedding tables of random effects).

        The trainer gives them to ``torch.optim.SparseAdam`` so that an optimiser step costs
        O(rows touched), not O(subjects).
        """
        return []
