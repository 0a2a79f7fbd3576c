"""Predictions of a fitted model, computed in batches on its device (evaluation is apart:
:mod:`lmmvae.answers.evaluate` scores these).

* prediction / conditional generation (SPEC 2.4, 3.4): the prior's latent predictive at a row's
  covariates, conditioned on the training split (:func:`condition`), decoded;
* the posterior (SPEC 2.2, 3.2): ``q(z_i)`` from the encoder, pooled by the prior where it pools
  (sLMM-VAE subjects, SVGP-VAE); imputation decodes its mean;
* the NLL of held-out rows (SPEC 6, :func:`nll_rows`): importance sampling with a defensive
  proposal where the model has an encoder, prior sampling after GSNN; each with its Monte Carlo
  standard error.

A model trained by GSNN has no posterior (SPEC 4): it trains no encoder. That is decided here
once, by :func:`has_posterior` (:func:`lmmvae.training.checks.reads_encoder`): :func:`posterior_rows` refuses
with a one-line :class:`~lmmvae.errors.RunError`, :func:`condition` does nothing (predictions then
rest on the design alone: sLMM-VAE ``ν_p = 0``, ``ω_p² = σ_ε²``) and evaluation skips the metrics
that need it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Normal

from lmmvae.answers.metrics import log_mean_exp, log_mean_exp_se
from lmmvae.data.loader import TensorData
from lmmvae.errors import RunError
from lmmvae.model.priors.base import Encoded
from lmmvae.progress import Progress
from lmmvae.training.checks import reads_encoder

CHUNK = 512


def _chunks(rows: torch.Tensor, size: int = CHUNK, desc: str = "lmmvae: rows"):
    """``rows`` in chunks of ``size``, with a progress line or bar once it takes over 2 s."""
    for start in Progress(range(0, rows.shape[0], size), desc=desc, unit="batches", delay=2.0):
        yield rows[start:start + size]


def has_posterior(fitted) -> bool:
    """Whether the model has an encoder posterior to read: not after GSNN (SPEC 4)."""
    return reads_encoder(fitted.config)


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


#: decoder evaluations per forward pass (rows x draws) when decoding many draws (memory bound)
DECODES_PER_PASS = 4096


def _draw_counts(n_samples: int, n_rows: int):
    """``n_samples`` split into passes of at most ``DECODES_PER_PASS // n_rows`` draws."""
    step = max(1, DECODES_PER_PASS // max(1, n_rows))
    return [min(step, n_samples - start) for start in range(0, n_samples, step)]


def _generator(fitted, tensors: TensorData) -> torch.Generator:
    return torch.Generator(device=tensors.device).manual_seed(int(fitted.info.get("seed", 0)))


def _normal_draws(dist: Normal, n: int, generator: torch.Generator) -> torch.Tensor:
    eps = torch.randn((n, *dist.mean.shape), generator=generator, device=dist.mean.device, dtype=dist.mean.dtype)
    return dist.mean + dist.stddev * eps  # [n, B, L]


def _predictive_mean(model, batch, dist: Normal, n_samples: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1/S) Σ_s E[y | g(z^(s))]`` [B, D] and its Monte Carlo variance (per-draw variance / S) [B, D]."""
    total = second = None
    for n in _draw_counts(n_samples, batch.size):
        mean = model.likelihood.mean(model.decode(_normal_draws(dist, n, generator), batch)).double()  # [n, B, D]
        total = mean.sum(0) if total is None else total + mean.sum(0)
        second = mean.square().sum(0) if second is None else second + mean.square().sum(0)
    y_pred = total / n_samples
    per_draw_var = (second / n_samples - y_pred.square()).clamp_min(0) * n_samples / max(1, n_samples - 1)
    return y_pred.float(), (per_draw_var / n_samples).float()


@torch.no_grad()
def predict_rows(fitted, tensors: TensorData, rows: torch.Tensor, mc_error: bool = False) -> dict[str, np.ndarray]:
    """Prediction from covariates alone (SPEC 2.4, 3.4): ``y_pred`` [n, D], ``z_mean``, ``z_var`` [n, L].

    Deterministic: the Monte Carlo draws come from a generator seeded with the run's seed.

    ``y_pred`` is the predictive mean ``(1/S) Σ_s E[y | g(z^(s))]`` over ``S = predict_samples``
    draws of the latent predictive (``prediction: plugin`` decodes its mean instead). With
    ``mc_error``, also ``y_pred_mc_var`` [n, D]: the Monte Carlo variance of each entry of ``y_pred``
    (0 for the plug-in), from which evaluation gives the MC error of the MSE (SPEC 2.4).
    """
    model = fitted.model.eval()
    plugin = fitted.config.prediction == "plugin"
    generator = _generator(fitted, tensors)
    out: dict[str, list] = {"y_pred": [], "z_mean": [], "z_var": [], "y_pred_mc_var": []}
    for chunk in _chunks(rows, max(1, CHUNK // 8)):
        batch = tensors.batch(chunk)
        dist = model.prior.predict(batch)
        out["z_mean"].append(dist.mean)
        out["z_var"].append(dist.variance)
        if plugin:
            y_pred = model.generate(dist.mean, batch)
            mc_var = torch.zeros_like(y_pred)
        else:
            y_pred, mc_var = _predictive_mean(model, batch, dist, fitted.config.predict_samples, generator)
        out["y_pred"].append(y_pred)
        out["y_pred_mc_var"].append(mc_var)
    result = {"y_pred": _cat(out["y_pred"], tensors, fitted),
              "z_mean": _cat(out["z_mean"], tensors, fitted, latent=True),
              "z_var": _cat(out["z_var"], tensors, fitted, latent=True)}
    if mc_error:
        result["y_pred_mc_var"] = _cat(out["y_pred_mc_var"], tensors, fitted)
    return result


def _log_weights(model, batch, prior: Normal, proposal: Normal | None, n: int, generator) -> torch.Tensor:
    """``log p(y_i | z_s) + log p(z_s | x_i) − log r(z_s)`` for ``n`` draws ``z_s ~ r``: [n, B].

    ``r = ½ q(z | y_i) + ½ p(z | x_i)`` (each draw picks a component with probability ½); without a
    proposal (no encoder, SPEC 4) ``r = p`` and the weight is the likelihood alone."""
    if proposal is None:
        return model.log_likelihood(_normal_draws(prior, n, generator), batch)
    from_q = torch.rand((n, batch.size, 1), generator=generator, device=prior.mean.device) < 0.5  # [n, B, 1]
    z = torch.where(from_q, _normal_draws(proposal, n, generator), _normal_draws(prior, n, generator))  # [n, B, L]
    log_p = prior.log_prob(z).sum(-1)  # [n, B]
    log_r = torch.logaddexp(log_p, proposal.log_prob(z).sum(-1)) - math.log(2.0)
    return model.log_likelihood(z, batch) + log_p - log_r


def uses_importance_sampling(fitted) -> bool:
    """Whether the NLL is importance-sampled (SPEC 6): only where an encoder was trained (not GSNN)."""
    return has_posterior(fitted)


@torch.no_grad()
def nll_rows(fitted, tensors: TensorData, rows: torch.Tensor) -> dict[str, np.ndarray]:
    """``−log p(y_i | x_i, training rows)`` per row (SPEC 6), from ``S = nll_samples`` draws.

    Importance sampling with the defensive proposal ``r = ½ q(z | y_i) + ½ p(z | x_i)`` (``q``: the
    row's own encoder output, ``p``: the prior's prediction after conditioning on training rows)
    where the model has an encoder; prior sampling after GSNN. Returns ``nll`` [n], its Monte Carlo
    standard error ``nll_se`` [n] (delta method on the weights: ``sd(w) / (√S · mean(w))``) and
    ``nll_half`` [n], the estimate from the first half of the draws (has it stopped moving?).
    """
    model = fitted.model.eval()
    n_samples = fitted.config.nll_samples
    importance = uses_importance_sampling(fitted)
    generator = _generator(fitted, tensors)
    out: dict[str, list] = {"nll": [], "nll_se": [], "nll_half": []}
    for chunk in _chunks(rows, max(1, CHUNK // 8)):
        batch = tensors.batch(chunk)
        prior = model.prior.predict(batch)
        proposal = model.encode(batch).as_normal() if importance else None
        log_w = torch.cat([_log_weights(model, batch, prior, proposal, n, generator)
                           for n in _draw_counts(n_samples, batch.size)]).double()  # [S, B]
        out["nll"].append(-log_mean_exp(log_w, dim=0))
        out["nll_se"].append(log_mean_exp_se(log_w, dim=0))
        out["nll_half"].append(-log_mean_exp(log_w[:max(1, n_samples // 2)], dim=0))
    return {key: torch.cat(parts).cpu().numpy() if parts else np.zeros(0) for key, parts in out.items()}


def latent_means(fitted, data) -> np.ndarray:
    """Posterior latent means of the training rows, pooled over training rows only (SPEC 6): [n_train, L]."""
    tensors = fitted.tensors(data)
    return posterior_rows(fitted, tensors, tensors.indices("train"), what="latent means")["z_mean"]


def _cat(parts, tensors, fitted, latent: bool = False) -> np.ndarray:
    if parts:
        return torch.cat(parts).cpu().numpy()
    width = fitted.model.latent_dim if latent else int(tensors.y.shape[1])
    return np.zeros((0, width), np.float32)
