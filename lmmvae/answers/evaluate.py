"""The metrics of SPEC 6 for a fitted model, from the predictions of :mod:`lmmvae.answers.predict`.

* imputation (SPEC 2.4): decode the posterior mean ``E q(z_i)``; scored on masked-out entries of
  training rows against ``/y_full``;
* prediction / interpolation (SPEC 2.4, 3.4): decode the prior's prediction at the row's
  covariates, conditioned on the training split; scored on observed entries of test rows;
* NLL: ``−log p(y_i | x_i, training rows)`` by importance sampling (defensive proposal ``½ q(z|y) +
  ½ p(z|x)``), or by prior sampling after GSNN (SPEC 6), with its Monte Carlo standard error;
* MCC: posterior latent means against ``/latent_truth`` (or another run's latents);
* collapse (:mod:`lmmvae.answers.diagnostics`): active latent dimensions and the share of the latent
  variance the covariates explain, so that a collapsed model shows in the tables.

:func:`evaluate` serves every family of models: the model gives what it predicted
(``fitted.evaluation_inputs``, a :class:`lmmvae.answers.metrics.Scored`: :func:`neural_inputs` here for the
neural family, :meth:`lmmvae.classical.family.ClassicalModel.evaluation_inputs` for the classical one), and
the metrics are computed from it in one place, :func:`lmmvae.answers.metrics.score` (its registry).
"""

from __future__ import annotations

import numpy as np
import torch

from lmmvae.answers.diagnostics import collapse_metrics
from lmmvae.answers.metrics import Scored, score
from lmmvae.answers.predict import has_posterior, nll_rows, posterior_rows, predict_rows, uses_importance_sampling
from lmmvae.data.h5 import LongitudinalData


def evaluate(fitted, data: LongitudinalData, predictions: dict | None = None) -> dict[str, float]:
    """Metrics of SPEC 6 that apply to ``data`` and the model (a :class:`lmmvae.fitted.FittedModel`
    of any family); fills ``predictions`` if given (the arrays of ``lmmvae evaluate --predictions``)."""
    scored = fitted.evaluation_inputs(data)
    if predictions is not None:
        predictions.update(scored.predictions)
    return score(scored)


def neural_inputs(fitted, data: LongitudinalData) -> Scored:
    """What the metrics read, for a neural model (:class:`lmmvae.api.LMMVAE`).

    No leakage (SPEC 6): the model was conditioned on training rows only (``predict.condition``);
    imputation and the latents for MCC pool the *training* rows only, so nothing scored here
    depends on a test row's observations except that row's own NLL and squared error.
    """
    torch.manual_seed(fitted.info.get("seed", 0))
    tensors = fitted.tensors(data)
    train, test = data.split == 0, data.split == 2
    scored = tensors.indices("test") if test.any() else tensors.indices(None)[:0]
    pred = predict_rows(fitted, tensors, tensors.indices(None), mc_error=True)
    recon = None
    if has_posterior(fitted):  # not after GSNN (SPEC 4)
        recon = posterior_rows(fitted, tensors, tensors.indices("train"))
    nll = None
    if ((data.mask == 1) & test[:, None]).any():
        nll = _nll_inputs(fitted, tensors, scored)
    collapse = collapse_metrics(fitted, data)  # active latent dims, share the covariates explain
    arrays = {"y_pred": pred["y_pred"], "z_pred": pred["z_mean"]}
    if recon is not None:  # training rows only; NaN elsewhere
        y_impute = np.full(data.y.shape, np.nan, np.float32)
        z_mean = np.full((data.n_obs, fitted.model.latent_dim), np.nan, np.float32)
        y_impute[train], z_mean[train] = recon["y_impute"], recon["z_mean"]
        arrays.update(y_impute=y_impute, z_mean=z_mean)
    return Scored(data, pred["y_pred"], y_pred_mc_var=pred["y_pred_mc_var"],
                  y_impute=None if recon is None else recon["y_impute"], nll=nll,
                  z_train=None if recon is None else recon["z_mean"], collapse=collapse, predictions=arrays)


def _nll_inputs(fitted, tensors, rows) -> dict:
    """Test NLL per row (SPEC 6) and what says how far to trust it (all numbers: metrics.csv is numeric):
    ``nll`` [n], its Monte Carlo standard error ``nll_se`` [n] (``nll_test_se``: ``sqrt(Σ se_i²)/n``),
    ``nll_half`` [n] (the same estimate from the first half of the draws: equal within a few s.e.
    once it has stopped moving), ``importance`` (1: importance sampling, 0: prior sampling) and
    ``draws`` (draws per row)."""
    nll = nll_rows(fitted, tensors, rows)
    return {**nll, "importance": float(uses_importance_sampling(fitted)), "draws": float(fitted.config.nll_samples)}
