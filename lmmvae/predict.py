"""Predictions of a fitted model, computed in batches on its device (evaluation is apart:
:mod:`lmmvae.evaluate` scores these).

* prediction / conditional generation (SPEC 2.4, 3.4): the prior's latent predictive at a row's
  covariates, conditioned on the training split (:func:`condition`), decoded;
* the posterior (SPEC 2.2, 3.2): ``q(z_i)`` from the encoder, pooled by the prior where it pools
  (sLMM-VAE subjects, SVGP-VAE); imputation decodes its mean.

A model trained by GSNN has no posterior (SPEC 4): it trains no encoder. That is decided here
once, by :func:`has_posterior` (``ModelConfig.reads_encoder``): :func:`posterior_rows` refuses
with a one-line :class:`~lmmvae.errors.RunError`, :func:`condition` does nothing (predictions then
rest on the design alone: sLMM-VAE ``ν_p = 0``, ``ω_p² = σ_ε²``) and evaluation skips the metrics
that need it.
"""

from __future__ import annotations

import numpy as np
import torch

from lmmvae.errors import RunError
from lmmvae.loader import TensorData
from lmmvae.metrics import log_mean_exp
from lmmvae.priors.base import Encoded
from lmmvae.progress import Progress

CHUNK = 512


def _chunks(rows: torch.Tensor, size: int = CHUNK, desc: str = "lmmvae: rows"):
    """``rows`` in chunks of ``size``, with a progress line or bar once it takes over 2 s."""
    for start in Progress(range(0, rows.shape[0], size), desc=desc, unit="batches", delay=2.0):
        yield rows[start:start + size]


def has_posterior(fitted) -> bool:
    """Whether the model has an encoder posterior to read: not after GSNN (SPEC 4)."""
    return fitted.config.reads_encoder


@torch.no_grad()
def encode_rows(fitted, tensors: TensorData, rows: torch.Tensor) -> Encoded:
    """Encoder outputs for ``rows``, in chunks."""
    return fitted.model.eval().encode_rows(tensors, rows, chunks=_chunks(rows))


@torch.no_grad()
def condition(fitted, tensors: TensorData) -> None:
    """Give the prior the encodings of the training split, and of no other rows (SPEC 3.4, 6; GP
    posteriors). Nothing after GSNN (:func:`has_posterior`)."""
    if not has_posterior(fitted):
        return
    fitted.model.eval()
    rows = tensors.indices("train")
    fitted.model.prior.condition(encode_rows(fitted, tensors, rows), tensors.batch(rows))


@torch.no_grad()
def posterior_rows(fitted, tensors: TensorData, rows: torch.Tensor, what: str = "the posterior") -> dict[str, np.ndarray]:
    """Posterior latent means (subjects pooled over ``rows`` for structured priors) and their
    decodings: ``z_mean`` [n, L], ``y_impute`` [n, D]. A RunError after GSNN."""
    if not has_posterior(fitted):
        raise RunError(f"{what} needs the encoder's posterior, which a model trained by GSNN does not have "
                       f"(SPEC 4); use predict, or train with objective: elbo")
    model = fitted.model.eval()
    encoded = encode_rows(fitted, tensors, rows)
    z_mean = model.prior.infer(encoded, tensors.batch(rows), kl=False).q_z.mean  # [n, L]
    y_hat = [model.generate(z_mean[i:i + CHUNK], tensors.batch(chunk))
             for i, chunk in zip(range(0, rows.shape[0], CHUNK), _chunks(rows))]
    return {"z_mean": z_mean.cpu().numpy(), "y_impute": _cat(y_hat, tensors, fitted)}


reconstruct_rows = posterior_rows  # the name evaluate and the CLI used


@torch.no_grad()
def predict_rows(fitted, tensors: TensorData, rows: torch.Tensor, with_nll: bool = False) -> dict[str, np.ndarray]:
    """Prediction from covariates alone (SPEC 2.4, 3.4): ``y_pred`` [n, D], ``z_mean``, ``z_var`` [n, L].

    Deterministic: the Monte Carlo draws come from a generator seeded with the run's seed.

    ``y_pred`` is the predictive mean ``(1/S) Σ_s E[y | g(z^(s))]`` over ``S = nll_samples`` draws
    of the latent predictive (``prediction: plugin`` decodes its mean instead). With ``with_nll``,
    also ``nll`` [n]: ``−log (1/S) Σ_s p(y_i | g(z^(s)))`` from the same draws (SPEC 6).
    """
    model = fitted.model.eval()
    n_samples = fitted.config.nll_samples
    plugin = fitted.config.prediction == "plugin"
    generator = torch.Generator(device=tensors.device).manual_seed(int(fitted.info.get("seed", 0)))
    out: dict[str, list] = {"y_pred": [], "z_mean": [], "z_var": [], "nll": []}
    for chunk in _chunks(rows, max(1, CHUNK // 8)):
        batch = tensors.batch(chunk)
        dist = model.prior.predict(batch)
        out["z_mean"].append(dist.mean)
        out["z_var"].append(dist.variance)
        if plugin and not with_nll:
            out["y_pred"].append(model.generate(dist.mean, batch))
            continue
        eps = torch.randn((n_samples, *dist.mean.shape), generator=generator, device=dist.mean.device,
                          dtype=dist.mean.dtype)
        z = dist.mean + dist.stddev * eps  # [S, B, L]
        params = model.decode(z, batch)  # [S, B, D]
        mean = model.likelihood.mean(params)
        out["y_pred"].append(model.generate(dist.mean, batch) if plugin else mean.mean(0))
        if with_nll:
            log_p = model.likelihood.log_prob(batch.y, batch.mask, params)  # [S, B]
            out["nll"].append(-log_mean_exp(log_p, dim=0))
    result = {"y_pred": _cat(out["y_pred"], tensors, fitted),
              "z_mean": _cat(out["z_mean"], tensors, fitted, latent=True),
              "z_var": _cat(out["z_var"], tensors, fitted, latent=True)}
    if with_nll:
        result["nll"] = torch.cat(out["nll"]).cpu().numpy() if out["nll"] else np.zeros(0)
    return result


def latent_means(fitted, data) -> np.ndarray:
    """Posterior latent means of the training rows, pooled over training rows only (SPEC 6): [n_train, L]."""
    tensors = fitted.tensors(data)
    return posterior_rows(fitted, tensors, tensors.indices("train"), what="latent means")["z_mean"]


def _cat(parts, tensors, fitted, latent: bool = False) -> np.ndarray:
    if parts:
        return torch.cat(parts).cpu().numpy()
    width = fitted.model.latent_dim if latent else int(tensors.y.shape[1])
    return np.zeros((0, width), np.float32)
