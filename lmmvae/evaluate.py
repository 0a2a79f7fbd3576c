"""The metrics of SPEC 6 for a fitted model, from the predictions of :mod:`lmmvae.predict`.

* imputation (SPEC 2.4): decode the posterior mean ``E q(z_i)``; scored on masked-out entries of
  training rows against ``/y_full``;
* prediction / interpolation (SPEC 2.4, 3.4): decode the prior's prediction at the row's
  covariates, conditioned on the training split; scored on observed entries of test rows;
* NLL: ``−log p(y_i | x_i, training rows)`` by importance sampling (defensive proposal ``½ q(z|y) +
  ½ p(z|x)``), or by prior sampling after GSNN (SPEC 6), with its Monte Carlo standard error;
* MCC: posterior latent means against ``/latent_truth`` (or another run's latents);
* collapse (:mod:`lmmvae.diagnostics`): active latent dimensions and the share of the latent
  variance the covariates explain, so that a collapsed model shows in the tables.
"""

from __future__ import annotations

import numpy as np
import torch

from lmmvae.diagnostics import collapse_metrics
from lmmvae.h5 import LongitudinalData
from lmmvae.metrics import mcc, mean_se, mse, mse_mc_error
from lmmvae.predict import has_posterior, nll_rows, posterior_rows, predict_rows, uses_importance_sampling


def evaluate(fitted, data: LongitudinalData, predictions: dict | None = None) -> dict[str, float]:
    """Metrics of SPEC 6 that apply to ``data`` and the model; fills ``predictions`` if given.

    No leakage (SPEC 6): the model was conditioned on training rows only (``predict.condition``);
    imputation and the latents for MCC pool the *training* rows only, so nothing scored here
    depends on a test row's observations except that row's own NLL and squared error.
    """
    torch.manual_seed(fitted.info.get("seed", 0))
    tensors = fitted.tensors(data)
    metrics: dict[str, float] = {}
    train, test = data.split == 0, data.split == 2
    scored = tensors.indices("test") if test.any() else tensors.indices(None)[:0]
    pred = predict_rows(fitted, tensors, tensors.indices(None), mc_error=True)
    recon = None
    if has_posterior(fitted):  # not after GSNN (SPEC 4)
        recon = posterior_rows(fitted, tensors, tensors.indices("train"))
    missing = (data.mask[train] == 0)
    if recon is not None and data.y_full is not None and missing.any():
        metrics["mse_impute"] = mse(data.y_full[train], recon["y_impute"], missing)
    observed_test = (data.mask == 1) & test[:, None]
    if observed_test.any():
        metrics["mse_test"] = mse(data.y, pred["y_pred"], observed_test)
        metrics["mse_test_mc_se"] = mse_mc_error(data.y, pred["y_pred"], pred["y_pred_mc_var"], observed_test)
        metrics.update(_nll_metrics(fitted, tensors, scored))
    if recon is not None and data.latent_truth is not None and train.any():
        metrics["mcc_truth"] = mcc(recon["z_mean"], data.latent_truth[train])
    metrics.update(collapse_metrics(fitted, data))  # active latent dims, share the covariates explain
    if predictions is not None:
        predictions.update(y_pred=pred["y_pred"], z_pred=pred["z_mean"])
        if recon is not None:  # training rows only; NaN elsewhere
            y_impute = np.full(data.y.shape, np.nan, np.float32)
            z_mean = np.full((data.n_obs, fitted.model.latent_dim), np.nan, np.float32)
            y_impute[train], z_mean[train] = recon["y_impute"], recon["z_mean"]
            predictions.update(y_impute=y_impute, z_mean=z_mean)
    return metrics


def _nll_metrics(fitted, tensors, rows) -> dict[str, float]:
    """Test NLL (SPEC 6) and what says how far to trust it, all numbers (metrics.csv is numeric):
    ``nll_test`` (mean over rows), ``nll_test_se`` (its Monte Carlo standard error, ``sqrt(Σ se_i²)/n``),
    ``nll_test_half`` (the same estimate from the first half of the draws: equal within a few s.e.
    once it has stopped moving), ``nll_importance`` (1: importance sampling, 0: prior sampling) and
    ``nll_draws`` (draws per row)."""
    nll = nll_rows(fitted, tensors, rows)
    return {"nll_test": float(nll["nll"].mean()), "nll_test_se": mean_se(nll["nll_se"]),
            "nll_test_half": float(nll["nll_half"].mean()),
            "nll_importance": float(uses_importance_sampling(fitted)), "nll_draws": float(fitted.config.nll_samples)}
