"""Is a fitted model collapsed? Two numbers over the training rows (docs/model.md, "Warm-up and
convergence"), pure functions of a fitted model and its data:

* **active latent dimensions**: dimensions ``l`` whose KL ``KL(q(z_il) ‖ p(z_il | x_i))`` averaged
  over training rows exceeds ``ACTIVE_KL_NATS``. oLMM-VAE: the expected KL of SPEC 2.3 (the term the
  ELBO pays); sLMM-VAE: the subject's ``KL(q(ε_p) ‖ N(0, σ_ε²))`` per row (SPEC 3.3); VAE: against
  ``N(0, 1)``. Encoder models only: after GSNN there is no ``q(z | y)`` (SPEC 4).
* **explained share**: per dimension, ``var(A^T x) / (var(A^T x) + σ²)`` over training rows, with
  ``A`` at its posterior mean and ``σ² = σ_z²`` (oLMM, SPEC 2.1) or ``σ_ε²`` (sLMM, SPEC 3.1): the
  share of the latent prior's variance that the design (fixed and random effects) explains.

:func:`collapse_flags` states the rule under which a model "looks collapsed"; :func:`collapse_metrics`
gives the two numbers for ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lmmvae.data.longitudinal import LongitudinalData
from lmmvae.model.priors.normal import StandardNormalPrior
from lmmvae.model.priors.olmm import OLMMPrior
from lmmvae.model.priors.slmm import SLMMPrior
from lmmvae.training.checks import reads_encoder

#: a latent dimension is active when its mean KL over training rows exceeds this (nats)
ACTIVE_KL_NATS = 0.01
#: a model looks collapsed when the covariates explain less than this share of the latent variance
COLLAPSED_SHARE = 0.01
#: ... or when fewer than this fraction of its latent dimensions are active
ACTIVE_FRACTION = 0.5


@dataclass
class Diagnostics:
    """Per latent dimension ``[L]`` arrays (None where not defined) and the collapse verdict."""

    kl: np.ndarray | None  # [L] mean KL over training rows (nats); None: no encoder (GSNN) or no data
    explained: np.ndarray | None  # [L] var(A^T x) / (var(A^T x) + σ²); None: no A or a constant design

    @property
    def active_dims(self) -> int | None:
        return None if self.kl is None else int((self.kl > ACTIVE_KL_NATS).sum())

    @property
    def explained_share(self) -> float | None:
        return None if self.explained is None else float(self.explained.mean())


def training_batch(fitted, data):
    """Every training row of ``data`` (a LongitudinalData) as one Batch, coded like the model's."""
    tensors = fitted.tensors(data)
    return tensors.batch(tensors.indices("train"))


def covariates_only(fitted):
    """The model's own training covariates as a LongitudinalData with no observed entry (enough for
    the explained share, which needs no ``y``)."""
    covariates = fitted.train_covariates
    n = len(next(iter(covariates.values())).values) if covariates else 0
    d = int(fitted.info["data_dim"])
    return LongitudinalData(y=np.zeros((n, d), np.float32), mask=np.zeros((n, d), np.uint8),
                            split=np.zeros(n, np.uint8), covariates=covariates)


@torch.no_grad()
def latent_kl(model, batch) -> np.ndarray | None:
    """``[L]``: per latent dimension, the KL of ``q(z_i)`` from the prior at ``x_i``, averaged over
    the rows of ``batch`` (module docstring); None for a prior without a per-row Gaussian KL."""
    prior = model.prior
    if not isinstance(prior, (OLMMPrior, SLMMPrior, StandardNormalPrior)) or batch.size == 0:
        return None
    encoded = model.encode(batch)  # [N, L] mean and var
    if isinstance(prior, OLMMPrior):  # SPEC 2.3, expected over q(A)
        mean, var_a = prior.effects.mean(batch.x), prior.effects.variance(batch.x)  # [N, L]
        s2, sigma2 = encoded.var, prior.sigma_z2
        kl = 0.5 * (sigma2.log() - s2.log() - 1 + (s2 + (encoded.mean - mean).square() + var_a) / sigma2)
    elif isinstance(prior, SLMMPrior):  # SPEC 3.2-3.3, the subject's KL on each of its rows
        _, post = prior._subject_posterior(encoded, batch)
        s2 = prior.sigma_eps2
        per_subject = 0.5 * (s2.log() - post.var.log() - 1 + (post.var + post.mean.square()) / s2)  # [P, L]
        kl = per_subject[post.row_subject]  # [N, L]
    else:
        kl = 0.5 * (encoded.var + encoded.mean.square() - 1 - encoded.var.log())  # [N, L]
    return kl.mean(0).double().cpu().numpy()


@torch.no_grad()
def explained_share(model, batch) -> np.ndarray | None:
    """``[L]``: ``var(A^T x) / (var(A^T x) + σ²)`` over the rows of ``batch`` (module docstring);
    None without an ``A`` (VAE, GP priors) or when the design is constant over the rows (``~ 1``)."""
    prior = model.prior
    effects = getattr(prior, "effects", None)
    if hasattr(prior, "sigma_z2"):
        sigma2 = prior.sigma_z2  # [L]
    elif hasattr(prior, "sigma_eps2"):
        sigma2 = prior.sigma_eps2  # scalar
    else:
        return None
    if effects is None or batch.size < 2 or not _varies(batch.x):
        return None
    spread = effects.mean(batch.x).var(0, unbiased=False)  # [L], variance over rows of A^T x
    share = spread / (spread + sigma2 * torch.ones_like(spread))
    return share.double().cpu().numpy()


def _varies(x) -> bool:
    """Whether any design column varies over the rows (else nothing can be explained)."""
    shared = bool((x.shared.std(0) > 0).any()) if x.shared.shape[0] > 1 and x.shared.shape[1] else False
    return shared or any(bool((lv != lv[0]).any()) for lv in x.levels if lv.numel())


def diagnose(fitted, data=None) -> Diagnostics:
    """The model's :class:`Diagnostics` on the training rows of ``data``; without ``data`` only the
    explained share, from the model's own training covariates (active dimensions need ``y``)."""
    model = fitted.model
    was_training = model.training
    model.eval()
    try:
        own = training_batch(fitted, covariates_only(fitted)) if fitted.train_covariates else None
        explained = explained_share(model, own) if own is not None else None
        kl = None
        if data is not None and reads_encoder(fitted.config):  # no encoder after GSNN (SPEC 4)
            kl = latent_kl(model, training_batch(fitted, data))
    finally:
        model.train(was_training)
    return Diagnostics(kl=kl, explained=explained)


def collapse_flags(diagnostics: Diagnostics, latent_dim: int) -> list[str]:
    """The plain-words reasons a model looks collapsed (empty: it does not): the covariates explain
    under ``COLLAPSED_SHARE`` of the latent variance, or fewer than ``ACTIVE_FRACTION`` of the
    latent dimensions are active."""
    reasons = []
    share, active = diagnostics.explained_share, diagnostics.active_dims
    if share is not None and share < COLLAPSED_SHARE:
        reasons.append(f"the covariates explain {100 * share:.2g} % of the latent variance "
                       f"(under {100 * COLLAPSED_SHARE:.0f} %)")
    if active is not None and active < ACTIVE_FRACTION * latent_dim:
        reasons.append(f"only {active} of {latent_dim} latent dimensions are active "
                       f"(KL > {ACTIVE_KL_NATS} nats; under half)")
    return reasons


def collapse_metrics(fitted, data) -> dict[str, float]:
    """``active_dims`` and ``explained_share`` (mean over latent dimensions) on the training rows of
    ``data``, for ``metrics.json``; a key is left out where it is not defined (module docstring)."""
    if not fitted.has_latent:  # mixedlm, mean (lmmvae.fitted): no latent to collapse
        return {}
    found = diagnose(fitted, data)
    out = {}
    if found.active_dims is not None:
        out["active_dims"] = float(found.active_dims)
    if found.explained_share is not None:
        out["explained_share"] = found.explained_share
    return out
