"""What every fitted model offers, whatever its family: the :class:`FittedModel` protocol.

Two families fit models today: the neural one (:class:`lmmvae.api.LMMVAE`: LMM-VAE and the
baselines, networks trained over epochs, SPEC 2-5) and the classical one
(:class:`lmmvae.classical.family.ClassicalModel`: ``mixedlm``, ``mean``, fitted in closed form, SPEC 6).
The answers (:mod:`lmmvae.answers.intervals`, :mod:`lmmvae.answers.effects`, :mod:`lmmvae.answers.contrast`,
:mod:`lmmvae.answers.summary`, :mod:`lmmvae.answers.evaluate`) and the command line read the attributes below,
never the class: a model says what it has (a latent space, a Gaussian predictive, epochs), and a
caller asks that. Which family fits a variant is said once, by the variant
(:class:`lmmvae.model.variants.Variant`'s ``family``).

This module imports nothing (a bottom floor): it only names the shape of a fitted model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class FittedModel(Protocol):
    """A fitted model of either family (module docstring)."""

    config: Any  # the run's ModelConfig (lmmvae.config)
    design: Any  # the FittedDesign (SPEC 1), fitted on the training split
    info: dict  # seed, data_dim, feature_names, dataset, data_path, feature scale, …
    train_covariates: dict  # {name: Covariate}: the training covariates, coding new rows like them
    device: Any
    run_dir: Path | None  # the run directory it was fitted into or loaded from (None: fitted without one)

    #: a latent space ``z`` (SPEC 2): ``latent``, MCC, the collapse diagnostics and the ``z`` outputs exist
    has_latent: bool
    #: the predictive at covariates is ``N(y_pred, y_var)`` in closed form (``predict_arrays`` gives
    #: ``y_var``): exact normal quantiles, bands of the mean and contrasts from the fitted parameters
    #: (``Cov(β̂)``, SPEC 6) instead of Monte Carlo draws of the latent
    predictive_is_gaussian: bool
    #: trained over epochs (an objective, early stopping, ``history.csv``); False: fitted in closed form
    trained_by_epochs: bool

    @property
    def design_chosen(self) -> str | None:
        """The design chosen among candidates on the validation rows (None: the config's own)."""

    def fit_note(self) -> str:
        """What ``lmmvae fit`` adds to its line (empty: nothing to add)."""

    def covariates_to_data(self, covariates) -> Any:
        """Rows of new covariates as data without observations, coded like the training ones."""

    def predict(self, covariates, level: float = 0.9, n_samples: int | None = None, intervals: bool = True):
        """A DataFrame with ``F_mean, F_lower, F_upper`` per feature, or the arrays of :meth:`predict_arrays`."""

    def predict_arrays(self, covariates) -> dict:
        """``y_pred`` [N, D] at covariates (SPEC 2.4), plus what the family has (``z_mean``, ``z_var`` or ``y_var``)."""

    def impute(self, data) -> Any:
        """``y`` [N, D] with the missing entries filled (SPEC 2.4)."""

    def latent(self, data, give_var: bool = False) -> Any:
        """Posterior latent means [N, L] (a RunError where ``has_latent`` is False)."""

    def evaluation_inputs(self, data) -> Any:
        """What the metrics of SPEC 6 read (:class:`lmmvae.answers.metrics.Scored`), computed once per evaluation."""

    def evaluate(self, data, predictions: dict | None = None) -> dict:
        """The metrics of SPEC 6 that apply (:func:`lmmvae.answers.evaluate.evaluate`)."""

    def summary(self) -> Any:
        """The fit in numbers, as ``lmmvae summary`` prints it."""

    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write the run directory that the family's ``load`` reads back."""
