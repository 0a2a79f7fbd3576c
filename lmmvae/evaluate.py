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

CHUNK = 512


def _chunks(rows: torch.Tensor, size: int = CHUNK):
    for start in range(0, rows.shape[0], size):
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
def predict_rows(fitted, tensors: TensorData, rows: torch.Tensor) -> dict[str, np.ndarray]:
    """Prediction from covariates alone: ``y_pred`` [n, D], ``z_mean``, ``z_var`` [n, L]."""
    model = fitted.model.eval()
    y_pred, z_mean, z_var = [], [], []
    for chunk in _chunks(rows):
        batch = tensors.batch(chunk)
        dist = model.prior.predict(batch)
        y_pred.append(model.generate(dist.mean, batch))
        z_mean.append(dist.mean)
        z_var.append(dist.variance)
    return {"y_pred": _cat(y_pred, tensors, fitted), "z_mean": _cat(z_mean, tensors, fitted, latent=True),
            "z_var": _cat(z_var, tensors, fitted, latent=True)}


def _cat(parts, tensors, fitted, latent: bool = False) -> np.ndarray:
    if parts:
        return torch.cat(parts).cpu().numpy()
    width = fitted.model.latent_dim if latent else int(tensors.y.shape[1])
    return np.zeros((0, width), np.float32)


@torch.no_grad()
def nll_rows(fitted, tensors: TensorData, rows: torch.Tensor, n_samples: int) -> np.ndarray:
    """``−log p(y_i | x_i)`` per row by log-mean-exp over ``n_samples`` predictive draws (SPEC 6)."""
    model = fitted.model.eval()
    out = []
    for chunk in _chunks(rows, max(1, CHUNK // 8)):
        batch = tensors.batch(chunk)
        z = model.prior.predict(batch).sample((n_samples,))  # [S, B, L]
        out.append(-log_mean_exp(model.log_likelihood(z, batch), dim=0))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)


def evaluate(fitted, data: LongitudinalData, predictions: dict | None = None) -> dict[str, float]:
    """Metrics of SPEC 6 that apply to ``data`` and the model; fills ``predictions`` if given."""
    torch.manual_seed(fitted.info.get("seed", 0))
    tensors = fitted.tensors(data)
    everything = tensors.indices(None)
    gsnn = fitted.config.objective == "gsnn"  # no posterior: no imputation, no MCC (SPEC 4)
    metrics: dict[str, float] = {}
    pred = predict_rows(fitted, tensors, everything)
    recon = reconstruct_rows(fitted, tensors, everything) if not gsnn else None
    train, test = data.split == 0, data.split == 2
    missing = (data.mask == 0) & train[:, None]
    if recon is not None and data.y_full is not None and missing.any():
        metrics["mse_impute"] = mse(data.y_full, recon["y_impute"], missing)
    observed_test = (data.mask == 1) & test[:, None]
    if observed_test.any():
        metrics["mse_test"] = mse(data.y, pred["y_pred"], observed_test)
        test_rows = tensors.indices("test")
        metrics["nll_test"] = float(nll_rows(fitted, tensors, test_rows, fitted.config.nll_samples).mean())
    if recon is not None and data.latent_truth is not None:
        metrics["mcc_truth"] = mcc(recon["z_mean"], data.latent_truth)
    if predictions is not None:
        predictions.update(y_pred=pred["y_pred"], z_pred=pred["z_mean"])
        if recon is not None:
            predictions.update(y_impute=recon["y_impute"], z_mean=recon["z_mean"])
    return metrics


def latent_means(fitted, data: LongitudinalData) -> np.ndarray:
    tensors = fitted.tensors(data)
    return reconstruct_rows(fitted, tensors, tensors.indices(None))["z_mean"]
