"""The Python API, mirroring the command line: ``fit``, ``load`` and :class:`LMMVAE`.

Example::

    import lmmvae
    data = lmmvae.read_h5("health_mnist.h5")
    m = lmmvae.fit(data, design="~ age + sex + sex:age + (1 | id)", network="health_mnist",
                   latent_dim=16, epochs=20, out="runs/hm")
    m.predict(data.covariate_frame().head())   # a DataFrame: F_mean, F_lower, F_upper per feature (SPEC 2.4)
    m.predict_arrays(data)                      # the arrays y_pred, z_mean, z_var (stored scale)
    m.impute(data); m.latent(data); m.evaluate(data)
    m2 = lmmvae.load("runs/hm")

A run directory (:mod:`lmmvae.runs.rundir`) holds JSON files (config, design, the prior's summary of
the training split, the training covariates' levels), ``history.csv``, ``checkpoint.pt`` (by
time, for ``--resume``) and, written last, ``model.pt``; a model is built the same way from data
(``fit``) and from a run directory (``load``): :mod:`lmmvae.training.assemble`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmmvae.answers import predict
from lmmvae.answers import summary as _summary  # the module: a patched lmmvae.answers.summary.summarise is the one called
from lmmvae.answers.contrast import contrast
from lmmvae.answers.effects import covariate_effect, plot_effect
from lmmvae.answers.evaluate import evaluate as _evaluate
from lmmvae.answers.evaluate import neural_inputs
from lmmvae.answers.intervals import latent_posterior, predict as predict_answer, scale_info
from lmmvae.answers.predict import condition
from lmmvae.config import ModelConfig
from lmmvae.data.h5 import Covariate, LongitudinalData, read_h5
from lmmvae.data.loader import TensorData
from lmmvae.data.longitudinal import covariate_rows
from lmmvae.data.sets.table import frame_for_fit
from lmmvae.errors import TrainingError
from lmmvae.model import variants
from lmmvae.model.design import FittedDesign
from lmmvae.model.latent import LatentVariableModel
from lmmvae.model.networks import is_image_network
from lmmvae.runs import rundir
from lmmvae.runs.runlock import hold
from lmmvae.training import assemble
from lmmvae.training.checks import config_from_dict
from lmmvae.training.runtime import choose_device, set_threads
from lmmvae.training.train import Trainer

MODEL_FILE = rundir.MODEL_FILE


class LMMVAE:
    """A fitted model with its design, ready to predict, impute and embed (a :class:`lmmvae.fitted.FittedModel`)."""

    has_latent = True  # z (SPEC 2): latent(), MCC, the collapse diagnostics
    predictive_is_gaussian = False  # the predictive is a mixture over the latent: Monte Carlo answers
    trained_by_epochs = True  # an objective, early stopping, history.csv
    design_chosen = None  # the config's design is the design (no choice among candidates)

    def __init__(self, config: ModelConfig, design: FittedDesign, model: LatentVariableModel,
                 train_covariates: dict[str, Covariate], info: dict[str, Any], device: torch.device,
                 prior_summary: dict | None = None):
        self.config, self.design, self.model = config, design, model
        self.train_covariates = train_covariates
        self.reference_levels = assemble.reference_levels(train_covariates)
        self.info = info  # seed, data_dim, image_shape, feature_names, data name/path
        self.device = device
        self.prior_summary = prior_summary or {}  # the variant's summary of the training split (prior.json)

    # -- data ---------------------------------------------------------------------------
    @property
    def recipe(self) -> assemble.Recipe:
        """What the model is rebuilt from (prior summary from ``prior.json`` on load)."""
        return assemble.Recipe(self.config, self.design, self.prior_summary, self.train_covariates, self.info)

    def tensors(self, data: LongitudinalData) -> TensorData:
        return assemble.tensors(self.recipe, data, self.device)

    def covariates_to_data(self, covariates) -> LongitudinalData:
        """Rows of new covariates (DataFrame, dict of arrays, or LongitudinalData) as data without
        observations, coded like the training covariates."""
        return covariate_rows(covariates, self.train_covariates, self.design.covariate_names, self.config.subject,
                              self.info["data_dim"])

    # -- predictions (batched implementations: lmmvae.answers.predict) ------------------------------
    def predict(self, covariates, level: float = 0.9, n_samples: int | None = None, intervals: bool = True):
        """Prediction from covariates alone (SPEC 2.4, 3.4). A pandas DataFrame gives a DataFrame with its
        index: its columns, then ``F_mean``, ``F_lower``, ``F_upper`` per feature ``F`` (a ``level``
        predictive interval from ``n_samples`` draws per row, default 500; ``intervals=False``:
        ``F_mean`` only), in the table's units; a LongitudinalData or dict of arrays gives
        :meth:`predict_arrays` (:func:`lmmvae.answers.intervals.predict`)."""
        return predict_answer(self, covariates, level=level, n_samples=n_samples, intervals=intervals)

    def predict_arrays(self, covariates) -> dict[str, np.ndarray]:
        """Conditional generation at covariates (SPEC 2.4, 3.4), on the stored scale: ``y_pred`` [N, D]
        (the predictive mean over ``nll_samples`` draws), ``z_mean``, ``z_var`` [N, L]."""
        tensors = self.tensors(self.covariates_to_data(covariates))
        return predict.predict_rows(self, tensors, tensors.indices(None))

    def impute(self, data: LongitudinalData) -> np.ndarray:
        """``y`` with missing entries filled from ``g(E q(z|y))`` (SPEC 2.4); observed kept.

        Structured posteriors (sLMM-VAE) pool the rows of ``data`` by subject."""
        tensors = self.tensors(data)
        y_hat = predict.posterior_rows(self, tensors, tensors.indices(None), what="impute")["y_impute"]
        return np.where(data.mask.astype(bool), data.y, y_hat)

    def latent(self, data: LongitudinalData, give_var: bool = False):
        """Posterior latent means ``E q(z_i)`` for every row: [N, L]; with ``give_var``, the pair
        ``(means, variances)`` of ``q(z_i)`` (:func:`lmmvae.answers.intervals.latent_posterior`)."""
        if give_var:
            return latent_posterior(self, data)
        tensors = self.tensors(data)
        return predict.posterior_rows(self, tensors, tensors.indices(None), what="latent")["z_mean"]

    def evaluation_inputs(self, data: LongitudinalData):
        """What the metrics of SPEC 6 read (:func:`lmmvae.answers.evaluate.neural_inputs`)."""
        return neural_inputs(self, data)

    def evaluate(self, data: LongitudinalData, predictions: dict | None = None) -> dict[str, float]:
        """MSE / NLL / MCC of SPEC 6 on ``data`` (see :func:`lmmvae.answers.evaluate.evaluate`); fills ``predictions`` if given."""
        return _evaluate(self, data, predictions)

    def fit_note(self) -> str:
        """Nothing to add to ``lmmvae fit``'s line (it says the epochs from ``history.csv``)."""
        return ""

    # -- persistence --------------------------------------------------------------------
    def save(self, run_dir: str | os.PathLike) -> Path:
        run_dir = Path(run_dir)
        self.recipe.write(run_dir)
        rundir.write_model(self.model, run_dir)
        return run_dir

    # -- answers: tables, summary, effects (lmmvae.answers.intervals, lmmvae.answers.summary, lmmvae.answers.effects) -----
    #: the run directory the model was fitted into or loaded from (None: fitted without ``out``)
    run_dir: Path | None = None

    def summary(self):
        """Fixed effects, random-effect variances, noise scales and training (:func:`lmmvae.answers.summary.summarise`)."""
        return _summary.summarise(self)

    def effect(self, covariate: str, png: str | os.PathLike | None = None, n_points: int | None = None,
               level: float = 0.9, at: dict | None = None):
        """The decoded effect of ``covariate`` on a grid, others at reference values or ``at``; drawn to ``png`` if given (:mod:`lmmvae.answers.effects`)."""
        if png is not None:
            return plot_effect(self, covariate, png, n_points=n_points, level=level, at=at)
        return covariate_effect(self, covariate, n_points=n_points or 25, level=level, at=at)

    def contrast(self, covariate: str, levels, at: dict | None = None, level: float = 0.9, n_samples: int = 500,
                 data=None, uncertainty: str = "collapsed"):
        """The decoded difference of the mean, per feature, ``levels[1]`` minus ``levels[0]`` of ``covariate``
        (others held as :meth:`effect` holds them), with a ``level`` interval over the uncertainty of ``A``
        (``data``: the training data, else the run's recorded file): a DataFrame ``feature, difference,
        lower, upper, sd`` (:func:`lmmvae.answers.contrast.contrast`)."""
        return contrast(self, covariate, levels, at=at, level=level, n_samples=n_samples, data=data,
                        uncertainty=uncertainty)

    @property
    def history(self):
        """The run's ``history.csv`` as a DataFrame (one row per epoch)."""
        return _summary.history_frame(self.run_dir)

    def __repr__(self) -> str:
        return _summary.describe(self)


def _as_data(data) -> tuple[LongitudinalData, str | None]:
    if isinstance(data, LongitudinalData):
        return data, None
    return read_h5(data), str(data)


def fit(data, out: str | os.PathLike | None = None, seed: int = 0, resume: bool = False,
        progress: bool = True, config: ModelConfig | None = None, overwrite: bool = False,
        threads: int | None = None, **settings) -> LMMVAE:
    """Fit a model to ``data`` (a LongitudinalData or a path to an HDF5 file).

    ``settings`` are model-config keys (``variant``, ``design``, ``latent_dim``, ``epochs``, …);
    with ``out``, the run directory is written as training goes (checkpoints by time: lmmvae.training.train) and
    ``resume=True`` continues from its last checkpoint (same config, seed and data, else an
    error). A finished run in ``out`` is replaced only with ``overwrite=True``, and only once the
    new one is complete (:mod:`lmmvae.runs.rundir`).

    ``data`` may also be a long-format pandas DataFrame: ``fit(df, subject=…, time=…,
    features=…, design=…)`` (optional ``covariates``, ``kinds``, ``validation_fraction``,
    ``test_after``, ``split_seed``: :func:`lmmvae.data.sets.table.frame_for_fit`).

    ``threads``: torch's intra-op threads (:func:`lmmvae.training.runtime.set_threads`; default: one for dense
    networks, two for image networks, or the ``OMP_NUM_THREADS`` you exported).
    """
    settings["_threads"] = threads
    if out is None:
        return _fit(data, out, seed, resume, progress, config, overwrite, settings)
    with hold(out):  # one writer per run directory (lmmvae.runs.runlock): a second fit into `out` is refused
        return _fit(data, out, seed, resume, progress, config, overwrite, settings)


def _fit(data, out, seed: int, resume: bool, progress: bool, config: ModelConfig | None, overwrite: bool,
         settings: dict) -> LMMVAE:
    """:func:`fit`, with the run directory's write lock held when there is one."""
    threads = settings.pop("_threads", None)
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # a pandas DataFrame
        data, settings = frame_for_fit(data, settings)
    config = config or config_from_dict(settings)
    set_threads(threads, image=is_image_network(config.network))
    plan = rundir.prepare(out, resume=resume, overwrite=overwrite) if out is not None else None
    family = variants.get(config.variant).family
    if family is not None:  # mixedlm, mean: no networks (lmmvae.classical.family)
        return family.fit(data, config, out=out, seed=seed, plan=plan)
    data, path = _as_data(data)
    info = {"feature_names": data.attrs.get("feature_names"), "dataset": data.name, "data_path": path,
            **scale_info(data.attrs)}  # feature_mean/std: predict(df) answers in the table's units
    if plan is not None:
        info.update(rundir.data_fingerprint(data, path))
    built = assemble.assemble(config, data, seed=seed, device=choose_device(config.device), info=info, path=path)
    recipe, model, tensors = built.recipe, built.model, built.tensors
    fitted = _fitted(recipe, model, built.device)
    run_dir = plan.train_dir if plan is not None else None
    trainer = Trainer(model, tensors, config, built.generator, run_dir=run_dir, progress=progress)
    try:
        if plan is not None:
            plan.start(config.to_dict(), seed, recipe.info, recipe.write)
            if resume:
                trainer.load_checkpoint()
        try:
            trainer.fit()
        except FloatingPointError as err:
            raise TrainingError(f"{path or 'data'}: training diverged ({err})") from None
        condition(fitted, tensors)
        if plan is not None:
            rundir.write_model(model, run_dir)
            plan.commit()
            fitted.run_dir = Path(out)
    except BaseException as err:
        if plan is not None:
            plan.abort(interrupted=not isinstance(err, Exception))
        raise
    return fitted


def _fitted(recipe: assemble.Recipe, model: LatentVariableModel, device: torch.device) -> LMMVAE:
    return LMMVAE(recipe.config, recipe.design, model, recipe.covariates, recipe.info, device, recipe.prior)


def _family_of_run(run_dir: Path) -> variants.Family | None:
    """The family of the run's variant (from its config.json), None for the neural family; also None
    where config.json is missing or unreadable, so that the neural loader says what is wrong."""
    import json

    try:
        name = json.loads((run_dir / "config.json").read_text())["model"]["variant"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return variants.get(name).family if isinstance(name, str) and name in variants.names() else None


def load(run_dir: str | os.PathLike, device: str = "auto", threads: int | None = None) -> LMMVAE:
    """Load a finished run directory written by :func:`fit` / ``lmmvae fit``, from its JSON files and
    ``model.pt`` alone (no data are read). ``threads``: as for :func:`fit`."""
    run_dir = Path(run_dir)
    family = _family_of_run(run_dir)
    if family is not None:  # mixedlm, mean (lmmvae.classical.family)
        set_threads(threads, image=False)
        return family.load(run_dir)
    recipe = assemble.read_recipe(run_dir, device=None if device == "auto" else device)
    set_threads(threads, image=is_image_network(recipe.config.network))
    model = assemble.build(recipe)
    rundir.load_weights(model, run_dir / MODEL_FILE)
    # a GPU slot (`cuda:any`, lmmvae.training.gpu_slots) is claimed by a training process only: a model loaded
    # for evaluation or prediction goes to the current CUDA device
    dev = choose_device("cuda" if recipe.config.device == "cuda:any" else recipe.config.device)
    model.to(dev).eval()
    fitted = _fitted(recipe, model, dev)
    fitted.run_dir = run_dir
    return fitted
