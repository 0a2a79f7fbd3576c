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

The BLUPs and conditional covariances are computed here from ``β̂, G, σ²`` with the direct formula
``b̂_p = G Z_p^T V_p^{-1} r_p``, ``C_p = G − G Z_p^T V_p^{-1} Z_p G``, ``V_p = Z_p G Z_p^T + σ² I``:
statsmodels' formula inverts ``G`` and raises for a singular (boundary) fit, which this one does
not need; tests/test_classical.py checks both agree on a regular fit.

Fixed-effect columns that are linearly dependent on the feature's training rows are dropped
(coefficient 0, like lme4/R's ``lm``). A random structure is not fitted when the feature has no
more training entries than random effects (lme4's ``nobs <= nRE`` check). When it cannot be fitted
(that check, or ``MixedLM`` raises, does not converge or returns non-finite parameters), a feature
falls back to the random intercept alone (designs with ``(1 + … | g)``), then to least squares on
the fixed effects (random effects 0, variance the residual variance). A singular (boundary) fit is
kept, as lme4 keeps it. The counts are kept in the model's ``warnings`` (and a status per feature)
and printed by ``lmmvae fit``: the benchmark never crashes on one feature. A design without a
random term is fitted by least squares per feature. Every predictive variance is floored at
``MIN_VARIANCE`` (the neural Gaussian likelihood's floor).

``variant: mean`` — ``ŷ_id`` = mean of the observed training entries of feature ``d``; predictive
variance their variance.

A run directory holds ``config.json``, ``design.json``, ``train_covariates.h5`` (as for neural
runs) and ``model.pt``: the fitted parameters as a dict of tensors and plain containers, loadable
with ``torch.load(weights_only=True)`` (nothing loaded executes code).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmmvae.errors import ConfigError, RunError
from lmmvae.variants import Variant, register

#: variants without a latent space, fitted by this module (checked without importing torch)
CLASSICAL_VARIANTS = ("mixedlm", "mean")
FORMAT = "lmmvae-classical"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
#: floor of every predictive variance: the Gaussian likelihood's default ``min_variance`` of the
#: neural models (lmmvae.likelihoods), so that NLLs compare (a constant feature is not rewarded more)
MIN_VARIANCE = 1e-4
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


# -- fitting ----------------------------------------------------------------------------------------


def _independent_columns(x: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns of ``x`` [n, q] (pivoted QR)."""
    from scipy.linalg import qr

    if x.shape[1] == 0 or x.shape[0] == 0:
        return np.zeros(0, np.int64)
    _, r, piv = qr(x, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int((diag > tol * max(diag[0], 1e-300)).sum()) if diag.size else 0
    return np.sort(piv[:rank])


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """``β`` [q] (0 on dependent columns) and residual variance ``RSS / (n − rank)``."""
    beta = np.zeros(x.shape[1])
    keep = _independent_columns(x)
    if keep.size:
        beta[keep] = np.linalg.lstsq(x[:, keep], y, rcond=None)[0]
    resid = y - x @ beta
    dof = len(y) - keep.size
    scale = float(resid @ resid / dof) if dof > 0 else float(np.var(y)) if len(y) > 1 else 1.0
    return beta, max(scale, 1e-12)


def blups(beta: np.ndarray, cov_re: np.ndarray, scale: float, x: np.ndarray, z: np.ndarray, y: np.ndarray,
          groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Conditional means ``[P, F]`` and covariances ``[P, F, F]`` of the random effects given the
    rows (module docstring); groups without a row keep mean 0 and covariance ``G``."""
    f = cov_re.shape[0]
    means = np.zeros((n_groups, f))
    covs = np.broadcast_to(cov_re, (n_groups, f, f)).copy()
    resid = y - x @ beta
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for rows in np.split(order, bounds):
        if rows.size == 0:
            continue
        zp = z[rows]  # [n_p, F]
        gz = cov_re @ zp.T  # [F, n_p]
        v = zp @ gz + scale * np.eye(rows.size)  # [n_p, n_p]
        solved = np.linalg.solve(v, np.column_stack([resid[rows], gz.T]))  # [n_p, 1 + F]
        p = groups[rows[0]]
        means[p] = gz @ solved[:, 0]
        covs[p] = cov_re - gz @ solved[:, 1:]
    return means, covs


def _fit_mixedlm(x, z, y, groups, n_groups, options: MixedLMOptions, intercept: int | None) -> dict[str, Any]:
    """One feature: MixedLM on the independent fixed-effect columns, with the design's random
    columns ``z``; when that cannot be fitted, with the random intercept alone (column
    ``intercept`` of ``z``); then least squares. A structure is not tried when the feature has no
    more observations than random effects (lme4's ``nobs <= nRE`` check) or fewer than two subjects."""
    q, f = x.shape[1], z.shape[1]
    keep = _independent_columns(x)
    structures = [("", np.arange(f))]
    if f > 1 and intercept is not None:
        structures.append(("random intercept only", np.array([intercept])))
    reasons = []
    n_subjects = len(np.unique(groups))
    if np.ptp(y) == 0:
        reasons.append("constant feature")
        structures = []
    for label, cols in structures:
        if n_subjects < 2 or len(y) <= n_subjects * cols.size:
            reasons.append(f"{len(y)} observations <= {n_subjects * cols.size} random effects" if n_subjects >= 2
                           else "fewer than two subjects")
            continue
        try:
            beta_k, cov_sub, scale, note = _mixedlm(x[:, keep], z[:, cols], y, groups, options)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as err:
            reasons.append(str(err).splitlines()[0][:120] if str(err) else type(err).__name__)
            continue
        beta = np.zeros(q)
        beta[keep] = beta_k
        cov_re = np.zeros((f, f))
        cov_re[np.ix_(cols, cols)] = cov_sub
        means, covs = blups(beta, cov_re, scale, x, z, y, groups, n_groups)
        note = "; ".join(n for n in (label, note) if n)
        return {"beta": beta, "cov_re": cov_re, "scale": scale, "blup": means, "blup_cov": covs,
                "status": "mixedlm", "note": note, "reduced": bool(label), "dropped": q - keep.size}
    beta, scale = _least_squares(x, y)
    cov_re = np.zeros((f, f))
    means, covs = blups(beta, cov_re, scale, x, z, y, groups, n_groups)  # zero: G = 0
    return {"beta": beta, "cov_re": cov_re, "scale": scale, "blup": means, "blup_cov": covs,
            "status": "ols", "note": "; ".join(reasons), "reduced": False, "dropped": q - keep.size}


def _mixedlm(x, z, y, groups, options: MixedLMOptions) -> tuple[np.ndarray, np.ndarray, float, str]:
    """statsmodels MixedLM: ``β`` [q], ``G`` [F, F], ``σ²`` and a note (singular / boundary);
    raises ValueError when it does not converge or returns non-finite parameters."""
    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    f = z.shape[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = MixedLM(y, x, groups=groups, exog_re=z).fit(
            reml=options.reml, method=list(options.method), maxiter=options.maxiter)
    beta = np.asarray(result.fe_params, dtype=float)
    cov_re = np.asarray(result.cov_re, dtype=float).reshape(f, f)
    scale = float(result.scale)
    if not result.converged:
        raise ValueError("did not converge")
    if not (np.isfinite(beta).all() and np.isfinite(cov_re).all() and np.isfinite(scale) and scale > 0):
        raise ValueError("non-finite parameters")
    note = ""
    if any(issubclass(w.category, ConvergenceWarning) and "boundary" in str(w.message) for w in caught):
        note = "boundary"
    if np.linalg.eigvalsh(cov_re).min() <= 1e-8 * max(1.0, np.abs(cov_re).max()):
        note = "singular"
    return beta, cov_re, scale, note


def _random_block(design, matrix) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    """The random-effect columns ``z`` [N, F], subject codes [N] and subject count of a design
    matrix; terms of one grouping factor are joined (one joint covariance)."""
    terms = design.random_terms
    if not terms:
        return np.zeros((matrix.n_rows, 0)), np.full(matrix.n_rows, -1, np.int64), 0, None
    groups = {t.group for t in terms}
    if len(groups) > 1:
        raise ConfigError(f"design {design.formula!r}: mixedlm fits random effects of one grouping factor; "
                          f"this design groups by {', '.join(sorted(groups))}")
    z = np.concatenate([np.asarray(v, dtype=float) for v in matrix.values], axis=1)
    levels = matrix.levels[0]
    return z, levels, terms[0].n_levels, terms[0].group


class ClassicalModel:
    """A fitted ``mixedlm`` or ``mean`` model: ``predict``, ``impute``, ``evaluate``, ``save``."""

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
            z, levels, _, _ = _random_block(self.design, matrix)
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
        z_all, _, _, _ = _random_block(self.design, self.design.transform(swapped))
        return z_all

    def predict(self, covariates) -> dict[str, np.ndarray]:
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

    def latent(self, data):
        raise RunError(f"{self.config.variant} has no latent space")

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


def gaussian_nll(y: np.ndarray, mean: np.ndarray, var: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``−Σ_d m_id log N(y_id; mean_id, var_id)`` per row ``[N]`` (SPEC 6)."""
    y, mean, var = (np.asarray(a, dtype=float) for a in (y, mean, var))
    terms = 0.5 * (np.log(2 * math.pi * var) + (y - mean) ** 2 / var)
    return (terms * (np.asarray(mask) == 1)).sum(axis=1)


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
        z, levels, n_groups, _ = _random_block(design, matrix)
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
                beta, scale = _least_squares(x[rows], y[rows, d])
                params["beta"][d], params["scale"][d] = beta, scale
                dropped = x.shape[1] - _independent_columns(x[rows]).size
                status.append("ols")
            else:
                one = _fit_mixedlm(x[rows], z[rows], y[rows, d], levels[rows], n_groups, options, intercept)
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
            "warnings": counts, "status": status}
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
