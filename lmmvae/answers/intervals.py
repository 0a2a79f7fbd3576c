"""Predictions as a table: one row per input row, each feature's predictive mean and interval.

``model.predict(df, level=0.9)`` (:func:`predict`; ``lmmvae predict``) returns ``df`` (its columns
in its order, its index) followed by ``F_mean, F_lower, F_upper`` for every feature ``F``
(:func:`predict_frame`); given a LongitudinalData or a dict of arrays it returns the arrays of
``model.predict_arrays`` (``y_pred``, ``z_mean``, ``z_var``; classical rows ``y_pred``, ``y_var``):

* ``F_mean`` is the predictive mean ``(1/S) Σ_s E[y | g(z^(s))]`` (SPEC 2.4, 3.4), the estimator of
  ``fitted.predict_arrays`` with the draws below (``prediction: plugin`` in the run's config: the plug-in
  decoding, as there);
* ``[F_lower, F_upper]`` is the central ``level`` interval of the **predictive distribution**
  ``p(y* | x*) = ∫ p(y* | g(z)) p(z | x*, train) dz``: latent uncertainty *and* the likelihood's
  noise. Monte Carlo: ``z^(s)`` from the prior's prediction at the covariates (SPEC 2.4: variance
  ``σ_z² + (x*⊙x*)^T(S⊙S)``; SPEC 3.4: ``ω_p²``), decoded, then ``y^(s) ~ p(y | g(z^(s)))`` (Gaussian:
  ``N(μ_d, σ_d²)``; Bernoulli: a 0/1 draw); the bounds are the empirical quantiles
  ``(1 ∓ level)/2`` of the ``n_samples`` draws, rounded outwards to a draw. The draws come from a
  generator seeded with the run's seed, so a run gives the same table every time.
* Classical rows (``mixedlm``, ``mean``) have a Gaussian predictive ``N(y_pred, y_var)``: exact
  normal quantiles.

Covariates are checked first, with one-line errors naming the column and row: a covariate the
design uses is missing, a value is empty or not a number, a categorical level was never seen in
training. An unseen *subject* is allowed: its random effects are zero (the population prediction).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from statistics import NormalDist
from typing import Callable

import numpy as np

from lmmvae.atomic import atomic_output
from lmmvae.data.levels import is_blank, match_levels, plain_value
from lmmvae.data.tables import numeric_column
from lmmvae.errors import ConfigError, LmmvaeWarning, RunError
from lmmvae.progress import Progress

#: Monte Carlo draws per row for the interval bounds (the 5 % / 95 % quantiles need a few hundred)
N_SAMPLES = 500
#: most draws (samples × rows × features) held at once
MAX_DRAWS = 4_000_000
SUFFIXES = ("_mean", "_lower", "_upper")


def feature_names(fitted) -> list[str]:
    """The data's feature names (``attrs/feature_names`` of the training file), else ``y0, y1, …``."""
    d = int(fitted.info["data_dim"])
    names = fitted.info.get("feature_names")
    if names is not None and len(names) == d:
        return [str(n) for n in names]
    return [f"y{j}" for j in range(d)]


def scale_info(attrs) -> dict:
    """The data's feature scale (``attrs/feature_mean``, ``attrs/feature_std``: ``y_table = y * std +
    mean``, written by ``from-table`` and the PhysioNet/trial generators) as plain lists for a run's
    ``info``; empty when the data carry none or it does not fit."""
    mean, std = attrs.get("feature_mean"), attrs.get("feature_std")
    if mean is None or std is None:
        return {}
    mean, std = np.asarray(mean, dtype=np.float64).ravel(), np.asarray(std, dtype=np.float64).ravel()
    if mean.shape != std.shape or not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        return {}
    return {"feature_mean": mean.tolist(), "feature_std": std.tolist()}


def table_scale(fitted) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, std)`` [D] that take the stored scale to the table's units, or None (stored = table)."""
    mean, std = fitted.info.get("feature_mean"), fitted.info.get("feature_std")
    if mean is None or std is None or len(mean) != int(fitted.info["data_dim"]):
        return None
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def needed_columns(fitted) -> list[str]:
    """Covariate columns a prediction needs: the design's, plus the subject id if training had one."""
    needed = set(fitted.design.covariate_names)
    if fitted.config.subject in fitted.train_covariates:
        needed.add(fitted.config.subject)
    return sorted(needed)


def _default_row(i: int) -> str:
    return f"row {i + 1}"


def check_covariates(fitted, frame, where: str = "covariates",
                     row: Callable[[int], str] = _default_row):
    """``frame``'s covariate columns checked and coded like the training covariates (a copy).

    One-line errors name ``where``, the column and the row (``row(i)`` for the i-th row)."""
    import pandas as pd

    frame = pd.DataFrame(frame)
    needed = needed_columns(fitted)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ConfigError(f"{where}: lacks column(s) {', '.join(missing)} "
                          f"(the model uses: {', '.join(needed)})")
    clean = {}
    for name in needed:
        column, ref = frame[name], fitted.train_covariates[name]
        blank = np.array([is_blank(v) for v in column], dtype=bool)
        if blank.any():
            i = int(np.flatnonzero(blank)[0])
            raise ConfigError(f"{where}: column {name!r} is blank at {row(i)}; predictions need every covariate")
        if ref.levels is not None:  # categorical, id, or a binary column with text levels
            values = [plain_value(v) for v in column]
            codes = match_levels(values, list(ref.levels))
            if ref.kind != "id" and (codes < 0).any():  # an unseen subject: population prediction
                i = int(np.flatnonzero(codes < 0)[0])
                shown = ", ".join(map(str, ref.levels[:10])) + (", …" if len(ref.levels) > 10 else "")
                raise ConfigError(f"{where}: column {name!r} at {row(i)}: level {values[i]!r} was not seen in "
                                  f"training (levels: {shown})")
            clean[name] = np.asarray([str(v) for v in values], dtype=object)
            continue
        clean[name] = numeric_column(column, name, ref.kind, where, row, ConfigError)
    return pd.DataFrame(clean, index=frame.index)


def sample_observations(likelihood, params, noise):
    """Draws ``y ~ p(y | params)`` for ``params [S, B, D]`` from standard noise ``noise [S, 1, D]``
    (the same for every row: common random numbers, SPEC 2.1). Gaussian: ``μ + σ_d · ε`` with
    ``ε ~ N(0, 1)``; Bernoulli: ``1[u < p]`` with ``u = Φ(ε)`` uniform."""
    import torch

    # lazy: imports torch; torch-free here, as lmmvae.classical.family (read by the workflow's plan) imports this module
    from lmmvae.model.likelihoods import BernoulliLikelihood, GaussianLikelihood

    mean = likelihood.mean(params)
    if isinstance(likelihood, GaussianLikelihood):
        return mean + likelihood.variance.sqrt() * noise
    if isinstance(likelihood, BernoulliLikelihood):
        uniform = 0.5 * (1.0 + torch.erf(noise / math.sqrt(2.0)))
        return (uniform < mean).to(mean.dtype)
    raise RunError(f"predictive intervals: no sampler for the {type(likelihood).__name__}")


def _quantiles(draws, probs: tuple[float, float]):
    """The ``probs = (lower, upper)`` empirical quantiles over dim 0 of ``draws [S, ...]``, each rounded
    outwards to a draw (``floor`` / ``ceil`` of ``p (S − 1)``): conservative, and a value the
    likelihood can take (0 or 1 for a Bernoulli)."""
    ordered = draws.sort(dim=0).values
    n = ordered.shape[0]
    return ordered[int(math.floor(probs[0] * (n - 1)))], ordered[int(math.ceil(probs[1] * (n - 1)))]


def predictive(fitted, clean, level: float, n_samples: int = N_SAMPLES) -> dict[str, np.ndarray]:
    """The predictive distribution at ``clean`` covariates by Monte Carlo (module docstring):
    ``y_pred`` (its mean, SPEC 2.4; the plug-in decoding if the run's config says ``prediction:
    plugin``), ``y_lower``, ``y_upper`` [N, D], and the latent predictive ``z_mean``, ``z_var`` [N, L].

    Also the **band of the mean** ``mean_lower``, ``mean_upper`` [N, D]: the ``level`` quantiles of
    ``E[y | g(z^(s))]`` over the same latent draws, without the likelihood's noise (latent
    uncertainty only: what a covariate does to the mean, not to one new observation).

    The standard-normal draws behind ``z^(s)`` and ``y^(s)`` are drawn once, from a generator seeded
    with the run's seed, and shared by all rows (common random numbers): the table does not depend
    on how rows are chunked, and a grid of covariates gives smooth curves (each row's draws are
    still exact draws of its own predictive)."""
    import torch

    probs = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
    data = fitted.covariates_to_data(clean)
    tensors = fitted.tensors(data)
    model = fitted.model.eval()
    rows = tensors.indices(None)
    n, d, n_latent = data.n_obs, data.n_features, model.latent_dim
    generator = torch.Generator(device="cpu").manual_seed(int(fitted.info.get("seed", 0)))
    eps = torch.randn((n_samples, 1, n_latent), generator=generator).to(tensors.device)  # [S, 1, L]
    noise = torch.randn((n_samples, 1, d), generator=generator).to(tensors.device)  # [S, 1, D]
    plugin = fitted.config.prediction == "plugin"
    chunk = max(1, MAX_DRAWS // (n_samples * max(d, 1)))
    out: dict[str, list] = {"y_pred": [], "y_lower": [], "y_upper": [], "z_mean": [], "z_var": [],
                            "mean_lower": [], "mean_upper": []}
    with torch.no_grad():
        for start in Progress(range(0, n, chunk), desc="lmmvae: predictive intervals", unit="batches", delay=2.0):
            batch = tensors.batch(rows[start:start + chunk])
            dist = model.prior.predict(batch)  # latent predictive at the covariates (SPEC 2.4, 3.4)
            z = dist.mean + dist.stddev * eps.to(dist.mean.dtype)  # [S, B, L]
            params = model.decode(z, batch)  # [S, B, D]
            y = sample_observations(model.likelihood, params, noise.to(params.dtype))  # [S, B, D]
            lower, upper = _quantiles(y, probs)
            means = model.likelihood.mean(params)  # [S, B, D]: E[y | g(z^(s))], no observation noise
            mean_lower, mean_upper = _quantiles(means, probs)
            mean = model.likelihood.mean(model.decode(dist.mean, batch)) if plugin else means.mean(0)
            for key, value in (("y_pred", mean), ("y_lower", lower), ("y_upper", upper),
                               ("z_mean", dist.mean), ("z_var", dist.variance),
                               ("mean_lower", mean_lower), ("mean_upper", mean_upper)):
                out[key].append(value.cpu().numpy())
    widths = {"z_mean": n_latent, "z_var": n_latent}
    return {k: np.concatenate(v) if v else np.zeros((0, widths.get(k, d)), np.float32) for k, v in out.items()}


def predict_frame(fitted, frame, level: float = 0.9, n_samples: int = N_SAMPLES, where: str = "covariates",
                  row: Callable[[int], str] = _default_row, arrays: dict | None = None, table_units: bool = True,
                  intervals: bool = True, mean_band: bool = False):
    """``frame`` followed by ``F_mean, F_lower, F_upper`` per feature (module docstring), with
    ``frame``'s index. ``arrays``, if given, receives ``y_pred``, ``y_lower``, ``y_upper`` [N, D] and the
    prediction's other arrays (``z_mean``, ``z_var``; ``y_var`` for classical rows).

    With ``table_units`` and a run that recorded its data's feature scale (:func:`scale_info`: data
    from ``from-table`` are standardised on the training rows), ``y_*`` are in the table's units
    (``y * std + mean``; ``y_var`` times ``std²``); otherwise on the scale the data were stored in.

    ``intervals=False``: ``F_mean`` only, from ``fitted.predict_arrays`` (its ``nll_samples`` draws), for callers
    that want means and latents fast (the workflow's latent figures).

    ``mean_band=True`` (``lmmvae effects``): also ``F_mean_lower``, ``F_mean_upper`` after ``F_mean``, the
    ``level`` band of the mean (latent uncertainty only, :func:`predictive`; classical rows: the
    fixed-effect mean's normal band, :func:`classical_mean_band`, NaN where the run
    stores no covariance of the fixed effects)."""
    import pandas as pd

    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie strictly between 0 and 1 (got {level})")
    if int(n_samples) < 2:
        raise ConfigError(f"n_samples must be at least 2 (got {n_samples})")
    frame = pd.DataFrame(frame)
    if len(frame) == 0:
        raise ConfigError(f"{where}: has no rows to predict")
    names = feature_names(fitted)
    clash = [c for c in frame.columns if any(str(c) == f + s for f in names for s in SUFFIXES)]
    if clash:
        raise ConfigError(f"{where}: column {clash[0]!r} would collide with an output column; rename it")
    clean = check_covariates(fitted, frame, where, row).reset_index(drop=True)
    pred = _predicted(fitted, clean, level, n_samples, table_units, intervals, mean_band)
    if arrays is not None:
        arrays.update(pred)
    suffixes = SUFFIXES if intervals else SUFFIXES[:1]
    parts = [pred["y_pred"], pred["y_lower"], pred["y_upper"]] if intervals else [pred["y_pred"]]
    if "mean_lower" in pred:
        suffixes = ("_mean", "_mean_lower", "_mean_upper", "_lower", "_upper")
        parts = [pred["y_pred"], pred["mean_lower"], pred["mean_upper"], pred["y_lower"], pred["y_upper"]]
    block = np.stack(parts, axis=2).reshape(len(frame), -1)  # [N, kD]: F_mean, (F_mean_lower, F_mean_upper,) F_lower, F_upper, …
    columns = [f + s for f in names for s in suffixes]
    out = pd.DataFrame(block, index=frame.index, columns=columns)
    return pd.concat([frame, out], axis=1)


def _predicted(fitted, clean, level: float, n_samples: int, table_units: bool, intervals: bool,
               mean_band: bool) -> dict:
    """The arrays :func:`predict_frame` reports for the checked rows ``clean``: ``y_pred`` [N, D] and,
    with ``intervals``, ``y_lower``, ``y_upper`` (exact normal quantiles where the predictive is
    Gaussian, else :func:`predictive`'s draws) and, with ``mean_band``, ``mean_lower``, ``mean_upper``;
    in the table's units where ``table_units`` and the run recorded its feature scale."""
    if not intervals:
        pred = {k: np.asarray(v) for k, v in fitted.predict_arrays(clean).items()}
    elif fitted.predictive_is_gaussian:  # N(y_pred, y_var) in closed form (lmmvae.fitted): exact quantiles
        pred = {k: np.asarray(v) for k, v in fitted.predict_arrays(clean).items()}
        half = NormalDist().inv_cdf((1.0 + level) / 2.0) * np.sqrt(pred["y_var"])
        pred.update(y_lower=pred["y_pred"] - half, y_upper=pred["y_pred"] + half)
        if mean_band:
            pred["mean_lower"], pred["mean_upper"] = classical_mean_band(fitted, clean, level)
    else:
        pred = predictive(fitted, clean, level, n_samples)
    if not (mean_band and intervals):
        pred.pop("mean_lower", None), pred.pop("mean_upper", None)
    scale = table_scale(fitted) if table_units else None
    if scale is not None:  # a positive affine map: means and quantiles map alike
        mean_d, std_d = scale
        for key in ("y_pred", "y_lower", "y_upper", "mean_lower", "mean_upper"):
            if key in pred:
                pred[key] = pred[key] * std_d + mean_d
        if "y_var" in pred:
            pred["y_var"] = pred["y_var"] * std_d ** 2
    return pred


def shared_rows(fitted, covariates) -> np.ndarray:
    """The design's shared (fixed-effect) columns ``x^s`` of the rows [N, Q]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmvaeWarning)  # the population subject is unseen on purpose
        return np.asarray(fitted.design.transform(covariates).shared, dtype=float)


def quadratic(cov: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``c^T Cov_d c`` per feature, for ``cov`` [D, Q, Q] and ``c`` [Q] (or [N, Q]: then [N, D]).
    A column dropped as collinear (NaN row, coefficient fixed at 0) adds nothing; a feature whose
    covariance is all NaN (no fixed effects fitted) gives NaN."""
    cov = np.asarray(cov, dtype=float)
    none = np.isnan(cov).all(axis=(1, 2))  # [D]
    filled = np.nan_to_num(cov, nan=0.0)
    rows = np.atleast_2d(c)
    out = np.einsum("nq,dqr,nr->nd", rows, filled, rows)  # [N, D]
    out = np.where(none[None, :], np.nan, np.maximum(out, 0.0))
    return out[0] if np.ndim(c) == 1 else out


def classical_mean_band(fitted, clean: pd.DataFrame, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``level`` band of a classical model's mean at covariate rows, stored scale [N, D]:
    mixedlm ``ŷ ± z sqrt(x^T Cov(β̂_d) x)`` (the fixed effects' uncertainty), mean ``ŷ ± z sqrt(var_d / n_d)``;
    NaN where not available."""
    covariates = fitted.covariates_to_data(clean).covariates
    pred = np.asarray(fitted.predict_arrays(clean)["y_pred"], dtype=float)  # [N, D]
    if fitted.config.variant == "mean":
        counts = np.array([r.get("n_obs", 0) for r in fitted.info.get("features") or []], dtype=float)
        if counts.shape != (pred.shape[1],):
            var = np.full(pred.shape, np.nan)
        else:
            var = np.broadcast_to(fitted.params["var"] / np.where(counts > 0, counts, np.nan), pred.shape)
    elif "beta_cov" in fitted.params:
        var = quadratic(fitted.params["beta_cov"], shared_rows(fitted, covariates))
    else:
        var = np.full(pred.shape, np.nan)
    half = NormalDist().inv_cdf((1.0 + level) / 2.0) * np.sqrt(var)
    return pred - half, pred + half


def predict(fitted, covariates, level: float = 0.9, n_samples: int | None = None, intervals: bool = True):
    """What ``model.predict(covariates, …)`` returns, for neural and classical models alike.

    A pandas DataFrame gives the table of :func:`predict_frame` in the table's units: ``covariates``'
    columns in their order and its index, then ``F_mean`` (and, with ``intervals``, ``F_lower``,
    ``F_upper`` at ``level``, from ``n_samples`` draws per row; default :data:`N_SAMPLES`) per
    feature. Anything else (a LongitudinalData, a dict of covariate arrays) gives the arrays of
    ``fitted.predict_arrays`` on the stored scale; ``level``, ``n_samples`` and ``intervals`` are
    then refused (a one-line ConfigError) rather than ignored."""
    import pandas as pd

    if isinstance(covariates, pd.DataFrame):
        return predict_frame(fitted, covariates, level=level, n_samples=n_samples or N_SAMPLES, intervals=intervals)
    if float(level) != 0.9 or n_samples is not None or not intervals:
        raise ConfigError(f"predict: level, n_samples and intervals apply to a pandas DataFrame of covariates, "
                          f"not to a {type(covariates).__name__} (whose prediction is the arrays of predict_arrays); "
                          f"pass data.covariate_frame() for the table")
    return fitted.predict_arrays(covariates)


#: significant digits of the numbers a CSV output prints: estimates whose Monte Carlo and
#: statistical error is far above 1e-7 relative, so 16 digits would only be noise to read
CSV_FLOAT_FORMAT = "%.7g"


def write_frame(table, path: str | os.PathLike, arrays: dict | None = None, attrs: dict | None = None,
                exact: tuple[str, ...] = ()) -> Path:
    """Write a prediction table by extension: ``.csv`` (floats to 7 significant digits,
    :data:`CSV_FLOAT_FORMAT`, except the ``exact`` columns: the user's own input values, written as
    read); ``.parquet`` (needs pyarrow or fastparquet);
    ``.h5``: the arrays ``/y_pred``, ``/y_lower``, ``/y_upper`` [N, D] (and ``/z_mean``, ``/z_var`` or
    ``/y_var``) with the input columns under ``/input/<column>`` (attribute ``columns``: their order)
    and ``attrs`` (e.g. ``level``, ``units``) as file attributes."""
    import json


    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        kept = table.copy()
        for column in exact:  # object dtype: pandas writes repr(), untouched by float_format
            if column in kept.columns and kept[column].dtype.kind == "f":
                kept[column] = kept[column].astype(object)
        with atomic_output(path) as tmp:
            kept.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
    elif suffix == ".parquet":
        try:
            with atomic_output(path) as tmp:
                table.to_parquet(tmp, index=False)
        except ImportError:
            raise ConfigError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow); or write .csv") from None
    elif suffix in (".h5", ".hdf5"):
        import h5py

        if arrays is None:
            raise ConfigError(f"{path}: an HDF5 prediction file needs the prediction arrays")
        inputs = [c for c in table.columns if not any(str(c).endswith(s) for s in SUFFIXES)]
        with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
            for key, value in arrays.items():
                value = np.asarray(value)
                f.create_dataset(key, data=value, compression="gzip" if value.ndim == 2 and value.size > 4096 else None)
            group = f.create_group("input")
            group.attrs["columns"] = json.dumps([str(c) for c in inputs])
            for name in inputs:
                column = table[name]
                if column.dtype.kind in "biuf":
                    group.create_dataset(str(name), data=column.to_numpy())
                else:
                    group.create_dataset(str(name), data=column.astype(str).to_numpy().astype(object),
                                         dtype=h5py.string_dtype())
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
    else:
        raise ConfigError(f"{path}: the output's extension must be .csv, .parquet or .h5")
    return path


def latent_posterior(fitted, data) -> tuple[np.ndarray, np.ndarray]:
    """Posterior latent means and variances ``[N, L]`` of every row of ``data`` (``q(z_i)``, SPEC 2.2;
    sLMM-VAE pools each subject's rows of ``data``, SPEC 3.2). A RunError after GSNN (SPEC 4)."""
    import torch

    # lazy: imports torch; torch-free here, as lmmvae.classical.family (read by the workflow's plan) imports this module
    from lmmvae.answers.predict import encode_rows, has_posterior

    if not has_posterior(fitted):
        raise RunError("latent variances need the encoder's posterior, which a model trained by GSNN does not "
                       "have (SPEC 4); train with objective: elbo")
    tensors = fitted.tensors(data)
    rows = tensors.indices(None)
    with torch.no_grad():
        encoded = encode_rows(fitted, tensors, rows)
        q_z = fitted.model.eval().prior.infer(encoded, tensors.batch(rows), kl=False).q_z  # [N, L]
    return q_z.mean.cpu().numpy(), q_z.variance.cpu().numpy()
