"""One way to build a model: from data (``fit``, the benchmark harness, the contract test) and from
a run directory (``load``).

A model is rebuilt from a :class:`Recipe`, which is all JSON: the model config, the fitted design
(SPEC 1), the variant's summary of the training split (:mod:`lmmvae.model.variants`: level counts,
subjects, initial inducing points, view grid…), the training covariates (kinds, levels, values)
and the data's shape. :func:`build` makes networks × likelihood × prior from a recipe and nothing
else, so a run directory loads from its JSON files and weights alone (:func:`read_recipe`).
:func:`assemble` is the sequence from data: seed → split → checks → ``Design.fit`` → summary →
:func:`build` → likelihood and output offset started from the training data (SPEC 7) → tensors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmmvae.config import ModelConfig
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.data.loader import TensorData
from lmmvae.errors import ConfigError, LmmvaeWarning, RunError
from lmmvae.model import variants
from lmmvae.model.design import Design, FittedDesign
from lmmvae.model.latent import LatentVariableModel
from lmmvae.model.likelihoods import build_likelihood
from lmmvae.model.networks import bounded_output, build_networks
from lmmvae.model.objective_kinds import objective_kind
from lmmvae.runs import rundir
from lmmvae.training.checks import config_from_dict, prior_options
from lmmvae.training.runtime import seed_everything

#: largest |observed value| fit accepts: squares of larger values overflow float32 (3.4e38)
MAX_ABS_Y = 1e15


@dataclass
class Recipe:
    """What a model is built from; saved as the run's JSON files (:func:`lmmvae.runs.rundir.write_run_files`)."""

    config: ModelConfig
    design: FittedDesign
    prior: dict  # the variant's summary of the training split (prior.json)
    covariates: dict[str, Covariate]  # the training covariates (covariates.json)
    info: dict[str, Any]  # data_dim, image_shape, seed, feature names, data name / path / fingerprint

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        shape = self.info.get("image_shape")
        return tuple(shape) if shape else None

    def write(self, run_dir: Path) -> None:
        rundir.write_run_files(run_dir, self.config, self.design, self.covariates, self.info, prior=self.prior)


def summarise(config: ModelConfig, design: FittedDesign, covariates: dict[str, Covariate]) -> dict:
    """The variant's JSON summary of the training covariates (raises ConfigError on a bad config)."""
    variant = variants.get(config.variant)
    return variant.summarise(prior_options(config, variant=variant), design, covariates, config.subject)


def build(recipe: Recipe) -> LatentVariableModel:
    """Networks × likelihood × the variant's prior, from the recipe alone (no data, no training)."""
    config, design = recipe.config, recipe.design
    variant = variants.get(config.variant)
    prior = variant.build_prior(prior_options(config, variant=variant), recipe.prior, config.latent_dim)
    data_dim = recipe.info["data_dim"]
    cond_dim = design.n_shared if variant.conditional else 0
    encoder, decoder = build_networks(config.network, data_dim, config.latent_dim, image_shape=recipe.image_shape,
                                      condition_dim=cond_dim, **config.network_options)
    likelihood_options = config.likelihood_options
    if config.likelihood == "gaussian" and bounded_output(config.network):  # images: μ = sigmoid (SPEC 7)
        likelihood_options = {"bounded": True, **likelihood_options}
    if config.likelihood == "gaussian" and not objective_kind(config.objective).latent_kl:  # GSNN (SPEC 4):
        likelihood_options = {"init_fraction": 1.0, **likelihood_options}  # start at the data's variance
    likelihood = build_likelihood(config.likelihood, data_dim, **likelihood_options)
    return LatentVariableModel(encoder, decoder, likelihood, prior, conditional=variant.conditional,
                               precision=config.precision, compile=config.compile)


def build_from_training(config: ModelConfig, design: FittedDesign, train: LongitudinalData,
                        info: dict[str, Any]) -> tuple[Recipe, LatentVariableModel]:
    """Summary of the training split, :func:`build`, then the likelihood's variances and the output
    offset started from the training data (SPEC 7)."""
    recipe = Recipe(config, design, summarise(config, design, train.covariates), train.covariates, info)
    model = build(recipe)
    model.initialise(train.y, train.mask)
    return recipe, model


def build_model(config: ModelConfig, design: FittedDesign, train: LongitudinalData, data_dim: int,
                image_shape: tuple[int, ...] | None) -> LatentVariableModel:
    """A model for a config, a fitted design and a training split (no training)."""
    return build_from_training(config, design, train, {"data_dim": data_dim, "image_shape": image_shape})[1]


def reference_levels(covariates: dict[str, Covariate]) -> dict[str, list]:
    return {name: list(c.levels) for name, c in covariates.items() if c.levels is not None}


def tensors(recipe: Recipe, data: LongitudinalData, device: torch.device | str = "cpu") -> TensorData:
    """``data`` on ``device``, coded like the training covariates (unseen levels: ``-1``)."""
    if data.n_features != recipe.info["data_dim"]:
        raise ConfigError(f"data have {data.n_features} features, the model was fitted on {recipe.info['data_dim']}")
    return TensorData(data, recipe.design, recipe.config.subject, reference_levels(recipe.covariates), device)


@dataclass
class Assembled:
    recipe: Recipe
    model: LatentVariableModel  # on ``device``
    train: LongitudinalData
    tensors: TensorData  # all rows of the data, on ``device``
    generator: torch.Generator  # the seeded generator of minibatch order
    device: torch.device


def assemble(config: ModelConfig, data: LongitudinalData, seed: int = 0, device: torch.device | str = "cpu",
             info: dict[str, Any] | None = None, path: str | None = None) -> Assembled:
    """The one build sequence from data (``path``: the data file, for messages; ``info``: extra run info)."""
    generator = seed_everything(seed)
    device = torch.device(device)
    train = data.subset(data.split_index("train"))
    if train.n_obs == 0:
        raise ConfigError(f"{path or 'data'}: the train split is empty")
    check_training_data(data, train, path)
    design = Design(config.design).fit(train.covariates)
    info = {"seed": seed, "data_dim": data.n_features, "image_shape": data.image_shape, **(info or {})}
    recipe, model = build_from_training(config, design, train, info)
    model = model.to(device)
    return Assembled(recipe, model, train, tensors(recipe, data, device), generator, device)


def read_recipe(run_dir: Path, device: str | None = None) -> Recipe:
    """A finished run directory's recipe, from its JSON files (``device`` overrides the config's).
    A run whose files this version does not write (no ``prior.json``; an oLMM-VAE summary without its
    ``q_A``) is a one-line RunError that says to retrain it."""
    rundir.require_finished(run_dir)
    saved = rundir.read_config(run_dir)
    config = config_from_dict(saved["model"], where=str(run_dir / "config.json"))
    if device is not None:
        config.device = device
    design = rundir.read_design(run_dir)
    prior = rundir.read_prior(run_dir)
    if config.variant == "olmm" and "q_A" not in config.prior and "q_A" not in prior:
        raise RunError(f"{run_dir / rundir.PRIOR_FILE}: no q_A (a run of an earlier version, whose default "
                       "q(A) differed); retrain the run")
    return Recipe(config, design, prior, rundir.read_covariates(run_dir), saved["info"])


def check_training_data(data: LongitudinalData, train: LongitudinalData, path: str | None) -> None:
    """What makes training meaningless or silently wrong, said before any work: no observed
    entry to train on, values so large that float32 training overflows; duplicate (id, time)
    rows are allowed (repeated measurements) but reported, once: not again for data whose
    conversion reported them (attribute ``duplicate_rows``, lmmvae data from-table)."""
    where = path or "data"
    if not train.mask.any():
        raise ConfigError(f"{where}: every entry of the train split is missing (/mask is all 0): nothing to train on")
    observed = np.abs(np.where(data.mask.astype(bool), data.y, 0.0))
    if observed.size and observed.max() > MAX_ABS_Y:
        row, col = np.unravel_index(int(observed.argmax()), observed.shape)
        raise ConfigError(f"{where}: /y holds {data.y[row, col]:.3g} at row {row}, column {col}; values beyond "
                          f"{MAX_ABS_Y:.0e} overflow float32 training: rescale /y")
    n_dup, example = data.duplicate_rows()
    if n_dup and n_dup != data.attrs.get("duplicate_rows"):  # from-table warned about these already
        warnings.warn(f"{where}: {n_dup} row(s) repeat an earlier row's (id, time), first at {example}; "
                      "kept as repeated measurements", LmmvaeWarning, stacklevel=4)
