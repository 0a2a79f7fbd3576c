"""Predictions and the metrics of SPEC 6 for a fitted model, computed in batches on its device.

* imputation (SPEC 2.4): decode the posterior mean ``E q(z_i)``; scored on masked-out entries of
  training rows against ``/y_full``;
* prediction / interpolation (SPEC 2.4, 3.4): decode the prior's prediction at the row's
  covariates, conditioned on the training split; scored on observed entries of test rows;
* NLL: ``−log (1/S) Σ_s p(y_i | g(z^(s)))``, ``z^(s)`` from the predictive at the covariates;
* MCC: posterior latent means against ``/latent_truth`` (or another run's latents).
"""

from __future__ import annotations

import numpy as np
import torch

from lmmvae.h5 import LongitudinalData
from lmmvae.loader import TensorData
from lmmvae.metrics import log_mean_exp, mcc, mse
from lmmvae.priors.base import Encoded
from lmmvae.progress import Progress

CHUNK = 512


def _chunks(rows: torch.Tensor, size: int = CHUNK, desc: str = "lmmvae: rows"):
    """``rows`` in chunks of ``size``, with a progress line or bar once it takes over 2 s."""
    for start in Progress(range(0, rows.shape[0], size), desc=desc, unit="batches", delay=2.0):
        yield rows[start:start + size]


@torch.no_grad()
def encode_rows(fitted, tensors: TensorData, rows: torch.Tensor) -> Encoded:
    """Encoder outputs for ``rows``, in chunks."""
    model = fitted.model.eval()
    parts = [model.encode(tensors.batch(chunk)) for chunk in _chunks(rows)]
    if not parts:
        empty = torch.zeros(0, model.latent_dim, device=tensors.device)
        return Encoded(empty, empty)
    return Encoded(torch.cat([p.mean for p in parts]), torch.cat([p.var for p in parts]))


@torch.no_grad()
def reconstruct_rows(fitted, tensors: TensorData, rows: torch.Tensor) -> dict[str, np.ndarray]:
    """Posterior latent means (subjects pooled over ``rows`` for structured priors) and their
    decodings: ``z_mean`` [n, L], ``y_impute`` [n, D]."""
    model = fitted.model.eval()
    encoded = encode_rows(fitted, tensors, rows)
    z_mean = model.prior.posterior(encoded, tensors.batch(rows)).mean  # [n, L]
    y_hat = [model.generate(z_mean[i:i + CHUNK], tensors.batch(chunk))
             for i, chunk in zip(range(0, rows.shape[0], CHUNK), _chunks(rows))]
    return {"z_mean": z_mean.cpu().numpy(), "y_impute": _cat(y_hat, tensors, fitted)}


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


def _cat(parts, tensors, fitted, latent: bool = False) -> np.ndarray:
    if parts:
        return torch.cat(parts).cpu().numpy()
    width = fitted.model.latent_dim if latent else int(tensors.y.shape[1])
    return np.zeros((0, width), np.float32)


def evaluate(fitted, data: LongitudinalData, predictions: dict | None = None) -> dict[str, float]:
    """Metrics of SPEC 6 that apply to ``data`` and the model; fills ``predictions`` if given.

    No leakage (SPEC 6): the model was conditioned on training rows only (``api.condition``);
    imputation and the latents for MCC pool the *training* rows only, so nothing scored here
    depends on a test row's observations except that row's own NLL and squared error.
    """
    torch.manual_seed(fitted.info.get("seed", 0))
    tensors = fitted.tensors(data)
    metrics: dict[str, float] = {}
    train, test = data.split == 0, data.split == 2
    scored = tensors.indices("test") if test.any() else tensors.indices(None)[:0]
    pred = predict_rows(fitted, tensors, tensors.indices(None))
    recon = None
    if fitted.config.reads_encoder:  # not after GSNN: no posterior (SPEC 4)
        recon = reconstruct_rows(fitted, tensors, tensors.indices("train"))
    missing = (data.mask[train] == 0)
    if recon is not None and data.y_full is not None and missing.any():
        metrics["mse_impute"] = mse(data.y_full[train], recon["y_impute"], missing)
    observed_test = (data.mask == 1) & test[:, None]
    if observed_test.any():
        metrics["mse_test"] = mse(data.y, pred["y_pred"], observed_test)
        metrics["nll_test"] = float(predict_rows(fitted, tensors, scored, with_nll=True)["nll"].mean())
    if recon is not None and data.latent_truth is not None and train.any():
        metrics["mcc_truth"] = mcc(recon["z_mean"], data.latent_truth[train])
    if predictions is not None:
        predictions.update(y_pred=pred["y_pred"], z_pred=pred["z_mean"])
        if recon is not None:  # training rows only; NaN elsewhere
            y_impute = np.full(data.y.shape, np.nan, np.float32)
            z_mean = np.full((data.n_obs, fitted.model.latent_dim), np.nan, np.float32)
            y_impute[train], z_mean[train] = recon["y_impute"], recon["z_mean"]
            predictions.update(y_impute=y_impute, z_mean=z_mean)
    return metrics


def latent_means(fitted, data: LongitudinalData) -> np.ndarray:
    """Posterior latent means of the training rows, pooled over training rows only (SPEC 6): [n_train, L]."""
    tensors = fitted.tensors(data)
    return reconstruct_rows(fitted, tensors, tensors.indices("train"))["z_mean"]
