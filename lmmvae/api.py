"""The Python API, mirroring the command line: ``fit``, ``load`` and :class:`LMMVAE`.

Example::

    import lmmvae
    data = lmmvae.read_h5("health_mnist.h5")
    m = lmmvae.fit(data, design="~ age + sex + sex:age + (1 | id)", network="health_mnist",
                   latent_dim=16, epochs=20, out="runs/hm")
    m.predict(data.covariate_frame().head())   # conditional generation (SPEC 2.4)
    m.impute(data); m.latent(data); m.evaluate(data)
    m2 = lmmvae.load("runs/hm")

A run directory holds ``config.json`` (model config, seed, data summary), ``design.json`` (the
fitted design), ``train_covariates.h5`` (what priors are rebuilt from), ``history.csv``,
``checkpoint.pt`` (every epoch, for ``--resume``) and, written last, ``model.pt``.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmmvae import rundir, variants
from lmmvae.atomic import write_text
from lmmvae.config import ModelConfig
from lmmvae.design import Design, FittedDesign
from lmmvae.errors import ConfigError, LmmvaeWarning, RunError, TrainingError
from lmmvae.h5 import Covariate, LongitudinalData, read_h5, write_h5
from lmmvae.likelihoods import build_likelihood
from lmmvae.loader import TensorData
from lmmvae.model import LatentVariableModel
from lmmvae.networks import bounded_output, build_networks
from lmmvae.runtime import choose_device, seed_everything
from lmmvae.train import Trainer, atomic_save

MODEL_FILE = "model.pt"
#: largest |observed value| fit accepts: squares of larger values overflow float32 (3.4e38)
MAX_ABS_Y = 1e15


def build_model(config: ModelConfig, design: FittedDesign, train: LongitudinalData, data_dim: int,
                image_shape: tuple[int, ...] | None) -> LatentVariableModel:
    """Networks × likelihood × the variant's prior, from a config (no training)."""
    variant = variants.get(config.variant)
    options = config.prior_options(variant=variant)
    kwargs = {"subject": config.subject} if "subject" in inspect.signature(variant.build_prior).parameters else {}
    prior = variant.build_prior(options, design, train, config.latent_dim, **kwargs)
    cond_dim = design.n_shared if prior.conditional else 0
    encoder, decoder = build_networks(config.network, data_dim, config.latent_dim, image_shape=image_shape,
                                      condition_dim=cond_dim, **config.network_options)
    likelihood_options = config.likelihood_options
    if config.likelihood == "gaussian" and bounded_output(config.network):  # images: μ = sigmoid (SPEC 7)
        likelihood_options = {"bounded": True, **likelihood_options}
    likelihood = build_likelihood(config.likelihood, data_dim, **likelihood_options)
    model = LatentVariableModel(encoder, decoder, likelihood, prior)
    model.initialise(train.y, train.mask)  # output offset and Gaussian variances from the data (SPEC 7)
    return model


def _reference_levels(covariates: dict[str, Covariate]) -> dict[str, list]:
    return {name: list(c.levels) for name, c in covariates.items() if c.levels is not None}


class LMMVAE:
    """A fitted model with its design, ready to predict, impute and embed."""

    def __init__(self, config: ModelConfig, design: FittedDesign, model: LatentVariableModel,
                 train_covariates: dict[str, Covariate], info: dict[str, Any], device: torch.device):
        self.config, self.design, self.model = config, design, model
        self.train_covariates = train_covariates
        self.reference_levels = _reference_levels(train_covariates)
        self.info = info  # seed, data_dim, image_shape, feature_names, data name/path
        self.device = device

    # -- data ---------------------------------------------------------------------------
    def tensors(self, data: LongitudinalData) -> TensorData:
        if data.n_features != self.info["data_dim"]:
            raise ConfigError(f"data have {data.n_features} features, the model was fitted on {self.info['data_dim']}")
        return TensorData(data, self.design, self.config.subject, self.reference_levels, self.device)

    def covariates_to_data(self, covariates) -> LongitudinalData:
        """Rows of new covariates (DataFrame, dict of arrays, or LongitudinalData) as data without
        observations, coded like the training covariates."""
        if isinstance(covariates, LongitudinalData):
            return covariates
        import pandas as pd

        frame = pd.DataFrame(covariates)
        needed = set(self.design.covariate_names)
        if self.config.subject in self.train_covariates:
            needed.add(self.config.subject)
        missing = sorted(needed - set(frame.columns))
        if missing:
            raise ConfigError(f"covariates lack column(s) {', '.join(missing)} (the model uses: {', '.join(sorted(needed))})")
        covs = {}
        for name in frame.columns:
            if name not in self.train_covariates:
                continue
            ref = self.train_covariates[name]
            if ref.levels is not None:
                covs[name] = Covariate(frame[name].astype(str).to_numpy(), ref.kind)
            else:
                covs[name] = Covariate(frame[name].to_numpy(), ref.kind)
        n, d = len(frame), self.info["data_dim"]
        zeros = np.zeros((n, d), dtype=np.float32)
        return LongitudinalData(y=zeros, mask=zeros.astype(np.uint8), split=np.zeros(n, np.uint8), covariates=covs)

    # -- predictions (see lmmvae.evaluate for the batched implementations) --------------------
    def predict(self, covariates) -> dict[str, np.ndarray]:
        """Conditional generation at covariates (SPEC 2.4, 3.4): ``y_pred``, ``z_mean``, ``z_var``."""
        from lmmvae.evaluate import predict_rows

        data = self.covariates_to_data(covariates)
        tensors = self.tensors(data)
        return predict_rows(self, tensors, tensors.indices(None))

    def _needs_encoder(self, what: str) -> None:
        if not self.config.reads_encoder:
            raise RunError(f"{what} needs the encoder's posterior, which a model trained by GSNN does not have "
                           f"(SPEC 4); use predict, or train with objective: elbo")

    def impute(self, data: LongitudinalData) -> np.ndarray:
        """``y`` with missing entries filled from ``g(E q(z|y))`` (SPEC 2.4); observed kept.

        Structured posteriors (sLMM-VAE) pool the rows of ``data`` by subject."""
        from lmmvae.evaluate import reconstruct_rows

        self._needs_encoder("impute")

        tensors = self.tensors(data)
        y_hat = reconstruct_rows(self, tensors, tensors.indices(None))["y_impute"]
        return np.where(data.mask.astype(bool), data.y, y_hat)

    def latent(self, data: LongitudinalData) -> np.ndarray:
        """Posterior latent means ``E q(z_i)`` for every row: [N, L]."""
        from lmmvae.evaluate import reconstruct_rows

        self._needs_encoder("latent")

        tensors = self.tensors(data)
        return reconstruct_rows(self, tensors, tensors.indices(None))["z_mean"]

    def evaluate(self, data: LongitudinalData) -> dict[str, float]:
        """MSE / NLL / MCC of SPEC 6 on ``data`` (see :func:`lmmvae.evaluate.evaluate`)."""
        from lmmvae.evaluate import evaluate

        return evaluate(self, data)

    # -- persistence --------------------------------------------------------------------
    def save(self, run_dir: str | os.PathLike) -> Path:
        run_dir = Path(run_dir)
        _write_run_files(run_dir, self.config, self.design, self.train_covariates, self.info)
        atomic_save(self.model.state_dict(), run_dir / MODEL_FILE)
        return run_dir


def _write_run_files(run_dir: Path, config: ModelConfig, design: FittedDesign,
                     train_covariates: dict[str, Covariate], info: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # strict JSON: a non-finite value (an overflowed statistic) is an error, never "Infinity"
        config_text = json.dumps({"model": config.to_dict(), "info": info}, indent=2, allow_nan=False)
        design_text = json.dumps(design.to_dict(), indent=2, allow_nan=False)
    except ValueError as err:
        raise RunError(f"{run_dir}: the run's config or design holds a non-finite number ({err})") from None
    write_text(config_text, run_dir / "config.json")
    write_text(design_text, run_dir / "design.json")
    n = len(next(iter(train_covariates.values())).values) if train_covariates else 0
    skeleton = LongitudinalData(y=np.zeros((n, 0), np.float32), mask=np.zeros((n, 0), np.uint8),
                                split=np.zeros(n, np.uint8), covariates=train_covariates)
    write_h5(skeleton, run_dir / "train_covariates.h5")


def _as_data(data) -> tuple[LongitudinalData, str | None]:
    if isinstance(data, LongitudinalData):
        return data, None
    return read_h5(data), str(data)


def fit(data, out: str | os.PathLike | None = None, seed: int = 0, resume: bool = False,
        progress: bool = True, config: ModelConfig | None = None, overwrite: bool = False,
        **settings) -> LMMVAE:
    """Fit a model to ``data`` (a LongitudinalData or a path to an HDF5 file).

    ``settings`` are model-config keys (``variant``, ``design``, ``latent_dim``, ``epochs``, …);
    with ``out``, the run directory is written as training goes (checkpoints every epoch) and
    ``resume=True`` continues from its last checkpoint (same config, seed and data, else an
    error). A finished run in ``out`` is replaced only with ``overwrite=True``, and only once the
    new one is complete (:mod:`lmmvae.rundir`).

    ``data`` may also be a long-format pandas DataFrame: ``fit(df, subject=…, time=…,
    features=…, design=…)`` (optional ``covariates``, ``kinds``, ``validation_fraction``,
    ``test_after``, ``split_seed``: :func:`lmmvae.datasets.table.frame_for_fit`).
    """
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # a pandas DataFrame
        from lmmvae.datasets.table import frame_for_fit

        data, settings = frame_for_fit(data, settings)
    config = config or ModelConfig.from_dict(settings)
    plan = rundir.prepare(out, resume=resume, overwrite=overwrite) if out is not None else None
    if variants.get(config.variant).classical:  # mixedlm, mean: no networks (lmmvae.classical)
        from lmmvae import classical
        return classical.fit(data, config, out=out, seed=seed, plan=plan)
    data, path = _as_data(data)
    generator = seed_everything(seed)
    device = choose_device(config.device)
    train = data.subset(data.split_index("train"))
    if train.n_obs == 0:
        raise ConfigError(f"{path or 'data'}: the train split is empty")
    _check_training_data(data, train, path)
    design = Design(config.design).fit(train.covariates)
    model = build_model(config, design, train, data.n_features, data.image_shape).to(device)
    info = {"seed": seed, "data_dim": data.n_features, "image_shape": data.image_shape,
            "feature_names": data.attrs.get("feature_names"), "dataset": data.name, "data_path": path}
    if plan is not None:
        info.update(rundir.data_fingerprint(data, path))
    fitted = LMMVAE(config, design, model, train.covariates, info, device)
    tensors = fitted.tensors(data)
    run_dir = plan.train_dir if plan is not None else None
    trainer = Trainer(model, tensors, config, generator, run_dir=run_dir, progress=progress)
    try:
        if plan is not None:
            plan.start(config.to_dict(), seed, info,
                       lambda d: _write_run_files(d, config, design, train.covariates, info))
            if resume:
                trainer.load_checkpoint()
        try:
            trainer.fit()
        except FloatingPointError as err:
            raise TrainingError(f"{path or 'data'}: training diverged ({err})") from None
        condition(fitted, tensors)
        if plan is not None:
            atomic_save(model.state_dict(), run_dir / MODEL_FILE)
            plan.commit()
    except BaseException as err:
        if plan is not None:
            plan.abort(interrupted=not isinstance(err, Exception))
        raise
    return fitted


def _check_training_data(data: LongitudinalData, train: LongitudinalData, path: str | None) -> None:
    """What makes training meaningless or silently wrong, said before any work: no observed
    entry to train on, values so large that float32 training overflows; duplicate (id, time)
    rows are allowed (repeated measurements) but reported."""
    where = path or "data"
    if not train.mask.any():
        raise ConfigError(f"{where}: every entry of the train split is missing (/mask is all 0): nothing to train on")
    observed = np.abs(np.where(data.mask.astype(bool), data.y, 0.0))
    if observed.size and observed.max() > MAX_ABS_Y:
        row, col = np.unravel_index(int(observed.argmax()), observed.shape)
        raise ConfigError(f"{where}: /y holds {data.y[row, col]:.3g} at row {row}, column {col}; values beyond "
                          f"{MAX_ABS_Y:.0e} overflow float32 training: rescale /y")
    n_dup, example = data.duplicate_rows()
    if n_dup:
        warnings.warn(f"{where}: {n_dup} row(s) repeat an earlier row's (id, time), first at {example}; "
                      "kept as repeated measurements", LmmvaeWarning, stacklevel=3)


@torch.no_grad()
def condition(fitted: LMMVAE, tensors: TensorData) -> None:
    """Give the prior the encodings of the training split, and of no other rows (SPEC 3.4, 6; GP
    posteriors). Not after GSNN, which trains no encoder (SPEC 4): predictions then rest on the
    design alone (sLMM-VAE: ``ν_p = 0``, ``ω_p² = σ_ε²``)."""
    from lmmvae.evaluate import encode_rows

    if not fitted.config.reads_encoder:
        return
    fitted.model.eval()
    rows = tensors.indices("train")
    fitted.model.prior.condition(encode_rows(fitted, tensors, rows), tensors.batch(rows))


def load(run_dir: str | os.PathLike, device: str = "auto") -> LMMVAE:
    """Load a finished run directory written by :func:`fit` / ``lmmvae fit``."""
    run_dir = Path(run_dir)
    from lmmvae import classical
    if classical.is_classical_run(run_dir):  # mixedlm, mean
        return classical.load(run_dir)
    rundir.require_finished(run_dir)
    saved = rundir.read_config(run_dir)
    config = ModelConfig.from_dict(saved["model"], where=str(run_dir / "config.json"))
    if device != "auto":
        config.device = device
    info = saved["info"]
    design = rundir.read_design(run_dir)
    skeleton = read_h5(run_dir / "train_covariates.h5")
    n = skeleton.n_obs
    y = np.broadcast_to(np.zeros((1, info["data_dim"]), np.float32), (n, info["data_dim"]))
    train = LongitudinalData(y=y, mask=np.broadcast_to(np.zeros((1, info["data_dim"]), np.uint8), y.shape),
                             split=np.zeros(n, np.uint8), covariates=skeleton.covariates)
    image_shape = tuple(info["image_shape"]) if info.get("image_shape") else None
    dev = choose_device(config.device)
    model = build_model(config, design, train, info["data_dim"], image_shape)
    rundir.load_weights(model, run_dir / MODEL_FILE)
    model.to(dev).eval()
    return LMMVAE(config, design, model, skeleton.covariates, info, dev)
