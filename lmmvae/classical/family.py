"""Classical rows of the benchmark: a linear mixed model per output feature, and the feature mean.

Both are models of the benchmark like the neural ones (``variant:`` in a model YAML, ``lmmvae fit``
/ ``evaluate`` / ``predict``, the workflow, the tables), for tabular data; they have no latent
space, so no MCC and no ``z``.

``variant: mixedlm`` — for each output feature ``d``, one statsmodels ``MixedLM`` fitted on the
observed (``mask == 1``) entries of feature ``d`` (SPEC 6):

    y_id = x_i^s · β_d + z_i · b_{d,p(i)} + ε_id,   b_{d,p} ~ N(0, G_d),   ε_id ~ N(0, σ_d²)

with ``x_i^s`` the design's dense shared columns (SPEC 1, the same columns LMM-VAE uses as fixed
effects) and ``z_i`` the columns ``f`` of the design's random-effect term(s) ``(f | g)``, grouped by
``g``. The columns of one term share a joint covariance, separate terms of one factor (``(t || g)``) are independent (a block-diagonal ``G_d``); random terms of two different grouping
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

**Choice (design and rows):** the design is chosen among candidates, ``design`` then ``prior:
{candidates: […]}``: each is fitted on the train rows and scored by its MSE on the observed
entries of the validation rows (all features pooled, SPEC 6's ``mse``); the lowest wins (the first
of equal ones), and the winner is refitted on the train + validation rows, each feature starting
at the fallback it reached on validation. A neural model spends its validation rows on early
stopping; a closed-form model has nothing to stop early, so after the choice it uses every
non-test row. Without validation rows the first candidate is taken and the run says so
(``info.selection``: the rule, every candidate's validation MSE, the winner). The fitting of one
feature (BLUPs, fallbacks and their rule, dropped columns) is :mod:`lmmvae.classical.mixedlm`; the summary
table :mod:`lmmvae.classical.summary`.

``variant: mean`` — ``ŷ_id`` = mean of the observed train + validation entries of feature ``d``;
predictive variance their variance.

A run directory holds ``config.json``, ``design.json``, ``covariates.json`` (as for neural runs)
and ``model.pt``: the fitted parameters as a dict of tensors and plain containers, loadable
with ``torch.load(weights_only=True)`` (nothing loaded executes code).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmmvae.answers.intervals import predict as predict_answer, scale_info
from lmmvae.answers.metrics import Scored
from lmmvae.classical.fit import fit_counts, fit_rows, status_line
from lmmvae.classical.mixedlm import MIN_VARIANCE, MixedLMOptions, gaussian_nll, predict_design
from lmmvae.classical.summary import summarise
from lmmvae.data.h5 import LongitudinalData, read_h5
from lmmvae.data.longitudinal import covariate_rows
from lmmvae.errors import ConfigError, RunError
from lmmvae.model.variants import Family, Variant, register, registered
from lmmvae.runs import rundir
from lmmvae.runs.rundir import atomic_save

FORMAT = "lmmvae-classical"
FORMAT_VERSION = 2
MODEL_FILE = "model.pt"
@dataclass
class MeanOptions:
    """``variant: mean`` has no options."""


def _not_neural(*_args, **_kwargs):
    raise ConfigError("classical variants (mixedlm, mean) have no prior network; fit them with lmmvae.fit")


class ClassicalModel:
    """A fitted ``mixedlm`` or ``mean`` model: ``predict``, ``predict_arrays``, ``impute``, ``evaluate``, ``save``
    (a :class:`lmmvae.fitted.FittedModel`)."""

    has_latent = False  # no latent space: no MCC, no z
    predictive_is_gaussian = True  # N(y_pred, y_var) in closed form (module docstring)
    trained_by_epochs = False  # fitted in closed form: no objective, no history
    #: the run directory the model was fitted into or loaded from (None: fitted without ``out``)
    run_dir: Path | None = None

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
        mean, var = predict_design(self.design, p, covariates)
        return mean.astype(np.float32), var.astype(np.float32)

    @property
    def design_chosen(self) -> str | None:
        """The design chosen on the validation rows when there were several candidates (else None):
        ``lmmvae evaluate`` writes it to the metrics file and the tables add it to the row's label."""
        selection = self.info.get("selection") or {}
        return selection.get("winner") if len(selection.get("candidates", [])) > 1 else None

    def fit_note(self) -> str:
        """What ``lmmvae fit`` adds to its line: the design chosen and the features that fell back, by name."""
        parts = []
        selection = self.info.get("selection") or {}
        if len(selection.get("candidates", [])) > 1:
            parts.append(f"design chosen on validation: {selection['winner']!r}")
        by_fit: dict[str, list[str]] = {}
        for rec in self.info.get("features", []):
            if rec["fit"] not in ("mixedlm", "mean") or (rec["fit"] == "mean" and self.config.variant == "mixedlm"):
                by_fit.setdefault(rec["fit"], []).append(str(rec["feature"]))
        for fit_name, names in by_fit.items():
            parts.append(f"{fit_name}: {', '.join(names[:8])}" + (f" (+{len(names) - 8} more)" if len(names) > 8 else ""))
        return ("; " + "; ".join(parts) + " (why: lmmvae summary)") if parts else ""

    def predict(self, covariates, level: float = 0.9, n_samples: int | None = None, intervals: bool = True):
        """As :meth:`lmmvae.api.LMMVAE.predict`: a pandas DataFrame gives a DataFrame with its index (its
        columns, then ``F_mean``, ``F_lower``, ``F_upper`` per feature: exact normal quantiles of
        ``N(y_pred, y_var)`` at ``level``; ``n_samples`` is not used), anything else the arrays of
        :meth:`predict_arrays` (:func:`lmmvae.answers.intervals.predict`)."""
        return predict_answer(self, covariates, level=level, n_samples=n_samples, intervals=intervals)

    def predict_arrays(self, covariates) -> dict[str, np.ndarray]:
        """Prediction from covariates alone: ``y_pred`` [N, D] and its predictive ``y_var``."""
        data = self.covariates_to_data(covariates)
        mean, var = self._mean_var(data.covariates)
        return {"y_pred": mean, "y_var": var}

    def covariates_to_data(self, covariates):
        """New covariates coded like the training ones, as for neural runs (:func:`lmmvae.data.longitudinal.covariate_rows`)."""
        return covariate_rows(covariates, self.train_covariates, self.design.covariate_names, self.config.subject,
                              self.info["data_dim"])

    def impute(self, data) -> np.ndarray:
        """``y`` with missing entries filled by the prediction at the row's covariates."""
        self._check(data)
        mean, _ = self._mean_var(data.covariates)
        return np.where(data.mask.astype(bool), data.y, mean)

    def latent(self, data, give_var: bool = False):
        raise RunError(f"{self.config.variant} has no latent space")

    def contrast(self, covariate: str, levels, at: dict | None = None, level: float = 0.9, n_samples: int = 500):
        """mixedlm: the difference of the fixed-effect predictions between ``levels[1]`` and ``levels[0]``
        of ``covariate``, with its exact normal interval from ``Cov(β̂)`` (:func:`lmmvae.answers.contrast.contrast`)."""
        # lazy: imports torch; this module stays torch-free, as the workflow's plan imports it (is_classical)
        from lmmvae.answers.contrast import contrast

        return contrast(self, covariate, levels, at=at, level=level, n_samples=n_samples)

    def summary(self):
        """The per-feature table of the fit (:mod:`lmmvae.classical.summary`), as ``lmmvae summary``."""
        return summarise(self)

    @property
    def history(self):
        raise RunError(f"{self.config.variant} is fitted in closed form, without epochs: no training history")

    def __repr__(self) -> str:
        return f"<{self.config.variant} model, design {self.config.design!r}, {self.info['data_dim']} features>"

    def _check(self, data) -> None:
        if data.n_features != self.info["data_dim"]:
            raise ConfigError(f"data have {data.n_features} features, the model was fitted on {self.info['data_dim']}")

    def evaluation_inputs(self, data) -> Scored:
        """What the metrics of SPEC 6 read (:func:`lmmvae.answers.evaluate.evaluate` scores it): the
        prediction at every row's covariates, which is also the imputation of the training rows,
        and per observed test row the exact ``nll`` (summed over its observed features)."""
        self._check(data)
        mean, var = self._mean_var(data.covariates)  # [N, D] each
        train, test = data.split == 0, data.split == 2
        nll = None
        if ((data.mask == 1) & test[:, None]).any():
            nll = {"nll": gaussian_nll(data.y[test], mean[test], var[test], data.mask[test])}  # [n_test]
        return Scored(data, mean, y_impute=mean[train], nll=nll,
                      predictions={"y_pred": mean, "y_impute": mean, "y_var": var})

    def evaluate(self, data, predictions: dict | None = None) -> dict[str, float]:
        """The metrics of SPEC 6 that apply: ``mse_impute`` (masked-out train entries vs ``/y_full``),
        ``mse_test`` and ``nll_test`` (observed entries of test rows) (:func:`lmmvae.answers.evaluate.evaluate`)."""
        # lazy: imports torch; this module stays torch-free, as the workflow's plan imports it (is_classical)
        from lmmvae.answers.evaluate import evaluate

        return evaluate(self, data, predictions)

    # -- persistence -----------------------------------------------------------------------------
    def _write_files(self, run_dir: Path) -> None:
        """The run files of a neural run (``covariates.json`` holds the training covariates :func:`load` reads)."""
        rundir.write_run_files(run_dir, self.config, self.design, self.train_covariates, self.info)

    def _write_model(self, run_dir: Path) -> None:
        """``model.pt``, written last: the fitted arrays as tensors plus plain containers."""
        import torch

        state = {"format": FORMAT, "version": FORMAT_VERSION, "variant": self.config.variant,
                 "warnings": self.warnings, "status": list(self.info.get("status", [])),
                 "selection": json.dumps(self.info.get("selection")), "features": json.dumps(self.info.get("features")),
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
    """Fit ``config.variant`` (mixedlm | mean) on the train and validation rows of ``data`` (a
    LongitudinalData or an HDF5 path), choosing mixedlm's design on the validation rows first
    (module docstring); with ``out``, write the run directory through ``plan`` (a
    :class:`lmmvae.runs.rundir.RunPlan`; made here when not given): the same protections as a neural
    run (a finished run is replaced only with ``overwrite``, and only once the new one is written).
    A classical fit is deterministic and takes seconds: ``resume`` refits from scratch."""
    if out is not None and plan is None:
        plan = rundir.prepare(out)
    path = None
    if not isinstance(data, LongitudinalData):
        path, data = str(data), read_h5(data)
    if not is_classical(config.variant):
        raise ConfigError(f"variant {config.variant!r} is not classical ({', '.join(v.name for v in VARIANTS)})")
    rows = data.subset(np.flatnonzero(data.split != 2))  # train + validation: never a test row (SPEC 6)
    if rows.n_obs == 0:
        raise ConfigError(f"{path or 'data'}: the train and validation splits are empty")
    if not rows.mask.any():
        raise ConfigError(f"{path or 'data'}: every entry of the train and validation splits is missing "
                          "(/mask is all 0): nothing to fit")
    names = [str(n) for n in data.attrs.get("feature_names") or []]
    names = names if len(names) == data.n_features else [f"y{d}" for d in range(data.n_features)]
    design, params, records, selection = fit_rows(data, rows, config, names)
    info = {"seed": seed, "data_dim": data.n_features, "image_shape": data.image_shape,
            "feature_names": data.attrs.get("feature_names"), "dataset": data.name, "data_path": path,
            "warnings": fit_counts(records), "status": [status_line(r) for r in records], "features": records,
            "selection": selection, "n_fit_rows": rows.n_obs, **scale_info(data.attrs)}
    if plan is not None:
        info.update(rundir.data_fingerprint(data, path))
    model = ClassicalModel(config, design, params, rows.covariates, info)
    if plan is not None:
        try:
            plan.start(config.to_dict(), seed, info, model._write_files)
            model._write_model(plan.train_dir)
            plan.commit()
            model.run_dir = Path(out) if out is not None else None
        except BaseException as err:
            plan.abort(interrupted=not isinstance(err, Exception))
            raise
    return model


def load(run_dir: str | os.PathLike) -> ClassicalModel:
    """Load a classical run directory written by :func:`fit`."""
    import torch

    # lazy: imports torch; this module stays torch-free, as the workflow's plan imports it (is_classical)
    from lmmvae.training.checks import config_from_dict

    run_dir = Path(run_dir)
    rundir.require_finished(run_dir)
    saved = rundir.read_config(run_dir)
    config = config_from_dict(saved["model"], where=str(run_dir / "config.json"))
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
    expected = {"mean", "var"} if config.variant == "mean" else set(_MIXEDLM_ARRAYS)
    if not isinstance(arrays, dict) or set(arrays) != expected or not all(
            isinstance(v, torch.Tensor) for v in arrays.values()):
        raise RunError(f"{path}: does not hold the arrays of {config.variant} ({', '.join(sorted(expected))}); "
                       "retrain the run")
    params = {k: v.numpy().astype(float) for k, v in arrays.items()}
    _check_shapes(path, config.variant, params, design, saved["info"]["data_dim"])
    model = ClassicalModel(config, design, params, rundir.read_covariates(run_dir), saved["info"])
    model.run_dir = run_dir
    return model


_MIXEDLM_ARRAYS = ("beta", "beta_cov", "scale", "cov_re", "blup", "blup_cov", "offset", "loglik")


def _check_shapes(path: Path, variant: str, params: dict, design, d: int) -> None:
    """The saved arrays fit the design and the data size (a one-line RunError otherwise)."""
    if variant == "mean":
        shapes = {"mean": (d,), "var": (d,)}
    else:
        f = sum(len(t.columns) for t in design.random_terms)
        p = design.random_terms[0].n_levels if design.random_terms else 0
        q = design.n_shared
        shapes = {"beta": (d, q), "beta_cov": (d, q, q), "scale": (d,), "cov_re": (d, f, f), "blup": (d, p, f),
                  "blup_cov": (d, p, f, f), "offset": (d,), "loglik": (d,)}
    for key, shape in shapes.items():
        if params[key].shape != shape:
            raise RunError(f"{path}: {key} has shape {params[key].shape}, the run's design and data need {shape}; "
                           "retrain the run")


def is_classical(variant: str) -> bool:
    """Whether ``variant`` is fitted by this family (its Variant says so), asked without importing
    torch: for the workflow's plan, which must stay torch-free (no neural provider is imported)."""
    found = registered(variant)
    return found is not None and found.family is FAMILY


#: the classical family: :func:`lmmvae.api.fit` and :func:`lmmvae.api.load` hand its variants here
FAMILY = Family("classical", fit, load)
VARIANTS = (
    register(Variant("mixedlm", MixedLMOptions, _not_neural,
                     "MixedLM: one statsmodels linear mixed model per output feature (design fixed + random effects)",
                     family=FAMILY)),
    register(Variant("mean", MeanOptions, _not_neural, "per-feature mean of the observed training entries",
                     family=FAMILY)),
)
