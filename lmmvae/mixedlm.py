"""Fitting one output feature of ``variant: mixedlm`` (:mod:`lmmvae.classical`): statsmodels'
``MixedLM`` with lme4's fallbacks, and the BLUPs.

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
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from lmmvae.errors import ConfigError

if TYPE_CHECKING:
    from lmmvae.classical import MixedLMOptions

#: floor of every predictive variance: the Gaussian likelihood's default ``min_variance`` of the
#: neural models (lmmvae.likelihoods), so that NLLs compare (a constant feature is not rewarded more)
MIN_VARIANCE = 1e-4


def independent_columns(x: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns of ``x`` [n, q] (pivoted QR)."""
    from scipy.linalg import qr

    if x.shape[1] == 0 or x.shape[0] == 0:
        return np.zeros(0, np.int64)
    _, r, piv = qr(x, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int((diag > tol * max(diag[0], 1e-300)).sum()) if diag.size else 0
    return np.sort(piv[:rank])


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """``β`` [q] (0 on dependent columns) and residual variance ``RSS / (n − rank)``."""
    beta = np.zeros(x.shape[1])
    keep = independent_columns(x)
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


def fit_feature(x, z, y, groups, n_groups, options: MixedLMOptions, intercept: int | None) -> dict[str, Any]:
    """One feature: MixedLM on the independent fixed-effect columns, with the design's random
    columns ``z``; when that cannot be fitted, with the random intercept alone (column
    ``intercept`` of ``z``); then least squares. A structure is not tried when the feature has no
    more observations than random effects (lme4's ``nobs <= nRE`` check) or fewer than two subjects."""
    q, f = x.shape[1], z.shape[1]
    keep = independent_columns(x)
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
    beta, scale = least_squares(x, y)
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


def random_block(design, matrix) -> tuple[np.ndarray, np.ndarray, int, str | None]:
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


def gaussian_nll(y: np.ndarray, mean: np.ndarray, var: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``−Σ_d m_id log N(y_id; mean_id, var_id)`` per row ``[N]`` (SPEC 6)."""
    y, mean, var = (np.asarray(a, dtype=float) for a in (y, mean, var))
    terms = 0.5 * (np.log(2 * math.pi * var) + (y - mean) ** 2 / var)
    return (terms * (np.asarray(mask) == 1)).sum(axis=1)
