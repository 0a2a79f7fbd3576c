"""Classical rows of the benchmark: a linear mixed model per output feature, and the feature mean.

Both are models of the benchmark like the neural ones (``variant:`` in a model YAML, ``lmmvae fit``
/ ``evaluate`` / ``predict``, the workflow, the tables), for tabular data; they have no latent
space, so no MCC and no ``z``.

``variant: mixedlm`` — for each output feature ``d``, one statsmodels ``MixedLM`` fitted on the
observed (``mask == 1``) entries of feature ``d`` in the **train split only** (SPEC 6):

    y_id = x_i^s · β_d + z_i · b_{d,p(i)} + ε_id,   b_{d,p} ~ N(0, G_d),   ε_id ~ N(0, σ_d²)

with ``x_i^s`` the design's dense shared columns (SPEC 1, the same columns LMM-VAE uses as fixed
effects) and ``z_i`` the columns ``f`` of the design's random-effect term(s) ``(f | g)``, grouped by
``g``. Terms of one grouping factor share one joint ``G_d``; random terms of two different grouping
factors are refused (MixedLM fits one grouping factor). Prediction at covariates:

    ŷ_id = x_i^s · β_d + z_i · b̂_{d,p(i)}

where ``b̂`` is the BLUP (conditional mean of ``b`` given the training entries of the subject,
statsmodels' ``random_effects``) for a subject seen in training, and 0 for a subject unseen
there (lme4's rule; also for a subject with no training entry of feature ``d``).

**Choice (predictive variance, for the NLL of SPEC 6):** ``σ_d² + z_i^T C_{d,p} z_i`` with
``C_{d,p} = Cov(b_{d,p} | training entries)`` (statsmodels' ``random_effects_cov``) for a seen
subject and ``C = G_d`` (the prior) for an unseen one; the uncertainty of ``β̂`` and of the
variance parameters is ignored (plug-in). Entries are independent across features given the
covariates, so ``−log p(y_i | x_i) = −Σ_{d observed} log N(y_id; ŷ_id, var_id)``.

The fitting of one feature (BLUPs, fallbacks, dropped columns) is :mod:`lmmvae.mixedlm`.

``variant: mean`` — ``ŷ_id`` = mean of the observed training entries of feature ``d``; predictive
variance their variance.

A run directory holds ``config.json``, ``design.json``, ``train_covariates.h5`` (as for neural
runs) and ``model.pt``: the fitted parameters as a dict of tensors and plain containers, loadable
with ``torch.load(weights_only=True)`` (nothing loaded executes code).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmmvae.errors import ConfigError, RunError
from lmmvae.intervals import scale_info
from lmmvae.mixedlm import (MIN_VARIANCE, blups, fit_feature, gaussian_nll,  # noqa: F401 (blups: tests, callers)
                            independent_columns, least_squares, random_block)
from lmmvae.variants import Variant, register

#: variants without a latent space, fitted by this module (checked without importing torch)
CLASSICAL_VARIANTS = ("mixedlm", "mean")
FORMAT = "lmmvae-classical"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
#: statsmodels' own default order of optimisers for MixedLM.fit
DEFAULT_METHODS = ["bfgs", "lbfgs", "cg"]


@dataclass
class MixedLMOptions:
    """``prior:`` keys of ``variant: mixedlm``."""

    reml: bool = True  # REML (lme4's default) or ML estimates of G and σ²
    method: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))  # optimisers, tried in order
    maxiter: int = 200  # iterations per optimiser


@dataclass
class MeanOptions:
    """``variant: mean`` has no options."""


def _not_neural(*_args, **_kwargs):
    raise ConfigError("classical variants (mixedlm, mean) have no prior network; fit them with lmmvae.fit")


register(Variant("mixedlm", MixedLMOptions, _not_neural,
                 "MixedLM: one statsmodels linear mixed model per output feature (design fixed + random effects)",
                 classical=True))
register(Variant("mean", MeanOptions, _not_neural, "per-feature mean of the observed training entries",
                 classical=True))


def is_classical(variant: str) -> bool:
    return variant in CLASSICAL_VARIANTS


class ClassicalModel:
    """A fitted ``mixedlm`` or ``mean`` model: ``predict``, ``predict_arrays``, ``impute``, ``evaluate``, ``save``."""

    classical = True

    def __init__(self, config, design, params: dict[str, Any], train_covariates: dict, info: dict):
        self.config, self.design, self.params = config, design, params
        self.train_covariates = train_covariates
        self.info = info  # seed, data_dim, feature_names, dataset, data_path, warnings
        self.device = "cpu"

    @property
    def warnings(self) -> dict[str, int]:
        return dict(self.info.get("warnings", {}))

    # -- predictions ---------------------------------------------------------------------------
    def _mean_var(self, covariates) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance ``[N, D]`` at covariates (module docstring)."""
        p = self.params
        if self.config.variant == "mean":
            n = _n_rows(covariates)
            return (np.broadcast_to(p["mean"], (n, p["mean"].size)).astype(np.float32),
                    np.broadcast_to(np.maximum(p["var"], MIN_VARIANCE), (n, p["var"].size)).astype(np.float32))
        matrix = self.design.transform(covariates)
        x = matrix.shared.astype(float)  # [N, Q_s]
        mean = x @ p["beta"].T  # [N, D]
        var = np.broadcast_to(p["scale"], mean.shape).copy()
        if self.design.random_terms:
            z, levels, _, _ = random_block(self.design, matrix)
            z_all = self._unmasked_random_columns(covariates, z, levels)
            seen = levels >= 0
            lv = np.where(seen, levels, 0)
            # fixed part + z_i · b̂_{d,p(i)} (0 for unseen subjects: z is zero on their rows)
            mean += np.einsum("nf,dnf->nd", z, p["blup"][:, lv, :])
            cond = np.where(seen[None, :, None, None], p["blup_cov"][:, lv], p["cov_re"][:, None])  # [D, N, F, F]
            var += np.einsum("nf,dnfg,ng->nd", z_all, cond, z_all)
        return mean.astype(np.float32), np.maximum(var, MIN_VARIANCE).astype(np.float32)

    def _unmasked_random_columns(self, covariates, z, levels) -> np.ndarray:
        """The random-effect columns also on rows of unseen subjects (where the design matrix
        zeroes them), for their prior predictive variance ``z^T G z``."""
        if (levels >= 0).all():
            return z
        if hasattr(covariates, "covariates") and not isinstance(covariates, dict):
            covariates = covariates.covariates
        group = self.design.random_terms[0].group
        first = self.design.random_terms[0].levels[0]
        swapped = dict(covariates)
        swapped[group] = np.full(_n_rows(covariates), first, dtype=object)  # any seen level
        z_all, _, _, _ = random_block(self.design, self.design.transform(swapped))
        return z_all

    def predict(self, covariates, level: float = 0.9, n_samples: int | None = None, intervals: bool = True):
        """As :meth:`lmmvae.api.LMMVAE.predict`: a pandas DataFrame gives a DataFrame with its index (its
        columns, then ``F_mean``, ``F_lower``, ``F_upper`` per feature: exact normal quantiles of
        ``N(y_pred, y_var)`` at ``level``; ``n_samples`` is not used), anything else the arrays of
        :meth:`predict_arrays` (:func:`lmmvae.intervals.predict`)."""
        from lmmvae.intervals import predict as predict_answer

        return predict_answer(self, covariates, level=level, n_samples=n_samples, intervals=intervals)

    def predict_arrays(self, covariates) -> dict[str, np.ndarray]:
        """Prediction from covariates alone: ``y_pred`` [N, D] and its predictive ``y_var``."""
        data = self.covariates_to_data(covariates)
        mean, var = self._mean_var(data.covariates)
        return {"y_pred": mean, "y_var": var}

    def covariates_to_data(self, covariates):
        from lmmvae.api import LMMVAE

        return LMMVAE.covariates_to_data(self, covariates)  # same coding of new covariates as neural runs

    def impute(self, data) -> np.ndarray:
        """``y`` with missing entries filled by the prediction at the row's covariates."""
        self._check(data)
        mean, _ = self._mean_var(data.covariates)
        return np.where(data.mask.astype(bool), data.y, mean)

    def latent(self, data, give_var: bool = False):
        raise RunError(f"{self.config.variant} has no latent space")

    def summary(self):
        """A one-line RunError, as ``lmmvae summary`` (:func:`lmmvae.summary.summarise`): no latent space."""
        from lmmvae.summary import summarise

        return summarise(self)

    @property
    def history(self):
        raise RunError(f"{self.config.variant} is fitted in closed form, without epochs: no training history")

    def __repr__(self) -> str:
        from lmmvae.summary import describe

        return describe(self)

    def _check(self, data) -> None:
        if data.n_features != self.info["data_dim"]:
            raise ConfigError(f"data have {data.n_features} features, the model was fitted on {self.info['data_dim']}")

    def evaluate(self, data, predictions: dict | None = None) -> dict[str, float]:
        """The metrics of SPEC 6 that apply (keys as :func:`lmmvae.evaluate.evaluate`):
        ``mse_impute`` (masked-out train entries vs ``/y_full``), ``mse_test`` and ``nll_test``
        (observed entries of test rows; NLL per observation, summed over its observed features)."""
        from lmmvae.metrics import mse

        self._check(data)
        mean, var = self._mean_var(data.covariates)
        metrics: dict[str, float] = {}
        train, test = data.split == 0, data.split == 2
        missing = (data.mask == 0) & train[:, None]
        if data.y_full is not None and missing.any():
            metrics["mse_impute"] = mse(data.y_full, mean, missing)
        observed_test = (data.mask == 1) & test[:, None]
        if observed_test.any():
            metrics["mse_test"] = mse(data.y, mean, observed_test)
            metrics["nll_test"] = float(gaussian_nll(data.y[test], mean[test], var[test], data.mask[test]).mean())
        if predictions is not None:
            predictions.update(y_pred=mean, y_impute=mean, y_var=var)
        return metrics

    # -- persistence -----------------------------------------------------------------------------
    def _write_files(self, run_dir: Path) -> None:
        from lmmvae.api import _write_run_files

        _write_run_files(run_dir, self.config, self.design, self.train_covariates, self.info)

    def _write_model(self, run_dir: Path) -> None:
        """``model.pt``, written last: the fitted arrays as tensors plus plain containers."""
        import torch

        from lmmvae.train import atomic_save

        state = {"format": FORMAT, "version": FORMAT_VERSION, "variant": self.config.variant,
                 "warnings": self.warnings, "status": list(self.info.get("status", [])),
                 "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.params.items()}}
        atomic_save(state, run_dir / MODEL_FILE)

    def save(self, run_dir: str | os.PathLike) -> Path:
        run_dir = Path(run_dir)
        self._write_files(run_dir)
        self._write_model(run_dir)
        return run_dir


def _n_rows(covariates) -> int:
    if hasattr(covariates, "n_obs"):
        return covariates.n_obs
    first = next(iter(covariates.values()))
    return len(first.values if hasattr(first, "kind") else first)


def fit(data, config, out: str | os.PathLike | None = None, seed: int = 0, plan=None) -> ClassicalModel:
    """Fit ``config.variant`` (mixedlm | mean) on the train split of ``data`` (a LongitudinalData or
    an HDF5 path); with ``out``, write the run directory through ``plan`` (a
    :class:`lmmvae.rundir.RunPlan`; made here when not given): the same protections as a neural
    run (a finished run is replaced only with ``overwrite``, and only once the new one is written).
    A classical fit is deterministic and takes seconds: ``resume`` refits from scratch."""
    from lmmvae import rundir
    from lmmvae.design import INTERCEPT, Design
    from lmmvae.h5 import LongitudinalData, read_h5

    if out is not None and plan is None:
        plan = rundir.prepare(out)
    path = None
    if not isinstance(data, LongitudinalData):
        path, data = str(data), read_h5(data)
    if not is_classical(config.variant):
        raise ConfigError(f"variant {config.variant!r} is not classical ({', '.join(CLASSICAL_VARIANTS)})")
    train = data.subset(data.split_index("train"))  # SPEC 6: nothing else is read
    if train.n_obs == 0:
        raise ConfigError(f"{path or 'data'}: the train split is empty")
    if not train.mask.any():
        raise ConfigError(f"{path or 'data'}: every entry of the train split is missing (/mask is all 0): "
                          "nothing to fit")
    design = Design(config.design).fit(train.covariates)
    y, mask = train.y.astype(float), train.mask == 1
    d_count = data.n_features
    status: list[str] = []
    counts = {"no_observations": 0, "fallback_ols": 0, "random_intercept_only": 0, "singular": 0, "boundary": 0,
              "rank_deficient": 0}
    if config.variant == "mean":
        mean, var = np.zeros(d_count), np.ones(d_count)
        for d in range(d_count):
            obs = y[mask[:, d], d]
            if obs.size == 0:
                counts["no_observations"] += 1
                status.append("no observations: mean 0, variance 1")
                continue
            mean[d] = obs.mean()
            var[d] = max(float(obs.var()), 1e-12) if obs.size > 1 else 1.0
            status.append("mean")
        params = {"mean": mean, "var": var}
    else:
        options = config.prior_options()
        matrix = design.transform(train.covariates)
        x = matrix.shared.astype(float)
        z, levels, n_groups, _ = random_block(design, matrix)
        f = z.shape[1]
        names = [c for t in design.random_terms for c in t.columns]
        intercept = names.index(INTERCEPT) if INTERCEPT in names else None
        params = {"beta": np.zeros((d_count, x.shape[1])), "scale": np.ones(d_count),
                  "cov_re": np.zeros((d_count, f, f)), "blup": np.zeros((d_count, n_groups, f)),
                  "blup_cov": np.zeros((d_count, n_groups, f, f))}
        for d in range(d_count):
            rows = mask[:, d]
            if not rows.any():
                counts["no_observations"] += 1
                status.append("no observations: prediction 0, variance 1")
                continue
            if f == 0:
                beta, scale = least_squares(x[rows], y[rows, d])
                params["beta"][d], params["scale"][d] = beta, scale
                dropped = x.shape[1] - independent_columns(x[rows]).size
                status.append("ols")
            else:
                one = fit_feature(x[rows], z[rows], y[rows, d], levels[rows], n_groups, options, intercept)
                for key in ("beta", "scale", "cov_re", "blup", "blup_cov"):
                    params[key][d] = one[key]
                dropped = one["dropped"]
                status.append(one["status"] + (f" ({one['note']})" if one["note"] else ""))
                counts["fallback_ols"] += one["status"] == "ols"
                counts["random_intercept_only"] += one["reduced"]
                counts["singular"] += "singular" in one["note"]
                counts["boundary"] += "boundary" in one["note"]
            counts["rank_deficient"] += dropped > 0
    info = {"seed": seed, "data_dim": d_count, "image_shape": data.image_shape,
            "feature_names": data.attrs.get("feature_names"), "dataset": data.name, "data_path": path,
            "warnings": counts, "status": status, **scale_info(data.attrs)}
    if plan is not None:
        info.update(rundir.data_fingerprint(data, path))
    model = ClassicalModel(config, design, params, train.covariates, info)
    if plan is not None:
        try:
            plan.start(config.to_dict(), seed, info, model._write_files)
            model._write_model(plan.train_dir)
            plan.commit()
        except BaseException as err:
            plan.abort(interrupted=not isinstance(err, Exception))
            raise
    return model


def is_classical_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a classical run (read from its config.json; False if none)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return False
    try:
        return is_classical(json.loads(path.read_text())["model"]["variant"])
    except (ValueError, KeyError, TypeError):
        return False


def load(run_dir: str | os.PathLike) -> ClassicalModel:
    """Load a classical run directory written by :func:`fit`."""
    import torch

    from lmmvae import rundir
    from lmmvae.config import ModelConfig
    from lmmvae.h5 import read_h5

    run_dir = Path(run_dir)
    rundir.require_finished(run_dir)
    saved = rundir.read_config(run_dir)
    config = ModelConfig.from_dict(saved["model"], where=str(run_dir / "config.json"))
    design = rundir.read_design(run_dir)
    path = run_dir / MODEL_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never executes code
    except Exception as err:  # noqa: BLE001 - truncated, garbage, a pickle with code: all unreadable
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise RunError(f"{path}: unreadable ({type(err).__name__}: {reason}); retrain the run "
                       "with `lmmvae fit --overwrite`") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != FORMAT_VERSION:
        raise RunError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} model file; retrain the run")
    if state.get("variant") != config.variant:
        raise RunError(f"{path}: holds {state.get('variant')!r}, config.json says {config.variant!r}; retrain the run")
    arrays = state.get("arrays")
    expected = {"mean", "var"} if config.variant == "mean" else {"beta", "scale", "cov_re", "blup", "blup_cov"}
    if not isinstance(arrays, dict) or set(arrays) != expected or not all(
            isinstance(v, torch.Tensor) for v in arrays.values()):
        raise RunError(f"{path}: does not hold the arrays of {config.variant} ({', '.join(sorted(expected))}); "
                       "retrain the run")
    params = {k: v.numpy().astype(float) for k, v in arrays.items()}
    _check_shapes(path, config.variant, params, design, saved["info"]["data_dim"])
    skeleton = read_h5(run_dir / "train_covariates.h5")
    return ClassicalModel(config, design, params, skeleton.covariates, saved["info"])


def _check_shapes(path: Path, variant: str, params: dict, design, d: int) -> None:
    """The saved arrays fit the design and the data size (a one-line RunError otherwise)."""
    if variant == "mean":
        shapes = {"mean": (d,), "var": (d,)}
    else:
        f = sum(len(t.columns) for t in design.random_terms)
        p = design.random_terms[0].n_levels if design.random_terms else 0
        shapes = {"beta": (d, design.n_shared), "scale": (d,), "cov_re": (d, f, f), "blup": (d, p, f),
                  "blup_cov": (d, p, f, f)}
    for key, shape in shapes.items():
        if params[key].shape != shape:
            raise RunError(f"{path}: {key} has shape {params[key].shape}, the run's design and data need {shape}; "
                           "retrain the run")
