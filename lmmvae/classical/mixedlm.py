"""Fitting one output feature of ``variant: mixedlm`` (:mod:`lmmvae.classical.family`): statsmodels'
``MixedLM`` with lme4's fallbacks, and the BLUPs.

The BLUPs and conditional covariances are computed here from ``β̂, G, σ²`` with the direct formula
``b̂_p = G Z_p^T V_p^{-1} r_p``, ``C_p = G − G Z_p^T V_p^{-1} Z_p G``, ``V_p = Z_p G Z_p^T + σ² I``:
statsmodels' formula inverts ``G`` and raises for a singular (boundary) fit, which this one does
not need; tests/test_classical.py checks both agree on a regular fit.

Fixed-effect columns that are linearly dependent on the feature's fit rows are dropped
(coefficient 0, like lme4/R's ``lm``).

**Fallbacks.** A feature is fitted down the ladder :data:`LEVELS`: the design's random structure
(``mixedlm``), the random intercept alone (designs with ``(1 + … | g)``), the fixed effects alone
(least squares, random effects 0), the mean of its entries (an offset, variance their variance). A
level is left, and why is recorded, when

* it does not apply: a constant feature; fewer than two subjects; no more observations than random
  effects (lme4's ``nobs <= nRE`` check);
* the fit fails: ``MixedLM`` raises, does not converge or returns non-finite parameters;
* the fit is at the boundary: the smallest eigenvalue of ``G / σ²`` is below :data:`BOUNDARY`
  (1e-8, relative to its largest eigenvalue when that exceeds 1): a variance at zero or a
  correlation at ±1, where the next level is the same model with fewer parameters;
* the fit blows up: its predictions on the check rows (validation rows while the design is chosen,
  else the fit rows) are non-finite, or their MSE exceeds :data:`BLOWUP` (10) times the MSE of the
  feature's mean there.

statsmodels' default optimiser order (bfgs first) stops short of the optimum on regular fits
(``(1 + Time | Pig)`` on geepack's dietox: REML −2220.39 unconverged, against −2217.05 with
lbfgs): ``method`` defaults to lbfgs first (:class:`MixedLMOptions`). Every
predictive variance is floored at ``MIN_VARIANCE`` (the neural Gaussian likelihood's floor).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmmvae.errors import ConfigError, DesignError, LmmvaeWarning
from lmmvae.model.design import INTERCEPT, Design
from lmmvae.model.design.formula import parse_formula

#: floor of every predictive variance: the Gaussian likelihood's default ``min_variance`` of the
#: neural models (lmmvae.model.likelihoods), so that NLLs compare (a constant feature is not rewarded more)
MIN_VARIANCE = 1e-4
#: optimisers tried in order (statsmodels' semantics: the next starts where the last stopped
#: unconverged); lbfgs first, as statsmodels' own default (bfgs first) stops short of regular optima
DEFAULT_METHODS = ["lbfgs", "bfgs", "cg"]
_METHODS = ("lbfgs", "bfgs", "cg", "nm", "powell")


@dataclass
class MixedLMOptions:
    """``prior:`` keys of ``variant: mixedlm``."""

    reml: bool = True  # REML (lme4's default) or ML estimates of G and σ²
    method: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))  # optimisers, tried in order
    maxiter: int = 200  # iterations per optimiser
    # further design formulas to choose from on the validation rows; the candidates are the model's
    # `design` first, then these (module docstring: the rule)
    candidates: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for m in self.method:
            if m not in _METHODS:
                raise ConfigError(f"prior (mixedlm).method: {m!r} is not one of {', '.join(_METHODS)}")
        for i, text in enumerate(self.candidates):
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"prior (mixedlm).candidates[{i}]: expected a design formula, got {text!r}")
            try:
                parse_formula(text)
            except DesignError as err:
                raise ConfigError(f"prior (mixedlm).candidates[{i}] {text!r}: {err}") from None


def independent_columns(x: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns of ``x`` [n, q] (pivoted QR)."""
    from scipy.linalg import qr

    if x.shape[1] == 0 or x.shape[0] == 0:
        return np.zeros(0, np.int64)
    _, r, piv = qr(x, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int((diag > tol * max(diag[0], 1e-300)).sum()) if diag.size else 0
    return np.sort(piv[:rank])


def least_squares(x: np.ndarray, y: np.ndarray, with_cov: bool = False):
    """``β`` [q] (0 on dependent columns) and residual variance ``RSS / (n − rank)``; with
    ``with_cov``, also ``σ² (X_k^T X_k)^{-1}`` [k, k] on the kept columns."""
    beta = np.zeros(x.shape[1])
    keep = independent_columns(x)
    if keep.size:
        beta[keep] = np.linalg.lstsq(x[:, keep], y, rcond=None)[0]
    resid = y - x @ beta
    dof = len(y) - keep.size
    scale = max(float(resid @ resid / dof) if dof > 0 else float(np.var(y)) if len(y) > 1 else 1.0, 1e-12)
    if not with_cov:
        return beta, scale
    xk = x[:, keep]
    return beta, scale, scale * np.linalg.pinv(xk.T @ xk) if dof > 0 else np.full((keep.size, keep.size), np.nan)


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


#: the structures a feature is fitted with, most to least complex (module docstring)
LEVELS = ("mixedlm", "random intercept only", "fixed effects only", "mean")
#: a fit "blows up" when its MSE on the check rows exceeds this multiple of the feature mean's
BLOWUP = 10.0
#: a random-effect covariance is at the boundary when its smallest eigenvalue, relative to the
#: residual variance (and to its largest eigenvalue when that exceeds it), is below this
BOUNDARY = 1e-8


def fit_feature(x, z, y, groups, n_groups, options: MixedLMOptions, intercept: int | None,
                check=None, start: int = 0, why: str = "", blocks: np.ndarray | None = None) -> dict[str, Any]:
    """One feature, down the ladder of :data:`LEVELS` from ``start`` (module docstring).

    ``x`` [n, Q], ``z`` [n, F], ``y`` [n], ``groups`` [n]: the fit rows; ``check``: ``(x, z, y,
    groups)`` of held-out rows (validation) for the blow-up test, or None to test on the fit rows.
    ``why``: why the levels above ``start`` were left (on validation); ``blocks`` [F, F]: which
    entries of ``G`` are free (:func:`term_blocks`; None: all). Returns the parameters,
    ``level`` (index into LEVELS) and ``reasons`` (why each level above it was left)."""
    f = z.shape[1]
    check = check if check is not None and len(check[2]) else (x, z, y, groups)
    ref = float(np.mean((check[2] - y.mean()) ** 2))  # the feature mean's MSE on the check rows
    reasons: list[str] = [f"on validation, {why}"] if why else []
    for level in range(start, len(LEVELS)):
        try:
            one = _fit_level(level, x, z, y, groups, n_groups, options, intercept, blocks)
        except _Skip as skip:
            if str(skip):
                reasons.append(f"{LEVELS[level]}: {skip}")
            continue
        mse = _check_mse(one, *check)
        if level < len(LEVELS) - 1 and not (np.isfinite(mse) and mse <= BLOWUP * max(ref, 1e-12)):
            reasons.append(f"{LEVELS[level]}: blew up (check MSE {mse:.4g} > {BLOWUP:g} x the mean's {ref:.4g})")
            continue
        one.update(level=level, reasons=reasons, check_mse=mse, mean_mse=ref)
        return one
    raise AssertionError("the mean level always fits")  # pragma: no cover


class _Skip(Exception):
    """A level that does not apply or cannot be fitted (the message says why; empty: not applicable)."""


def _fit_level(level, x, z, y, groups, n_groups, options, intercept, blocks=None) -> dict[str, Any]:
    """The parameters of one level of :data:`LEVELS` (raises :class:`_Skip`)."""
    q, f = x.shape[1], z.shape[1]
    keep = independent_columns(x)
    out = {"beta": np.zeros(q), "beta_cov": np.full((q, q), np.nan), "cov_re": np.zeros((f, f)),
           "offset": 0.0, "loglik": np.nan, "dropped": q - keep.size, "n_obs": len(y)}
    if level == 3:  # the mean: offset, variance of the entries
        out.update(offset=float(y.mean()), scale=float(y.var()) if len(y) > 1 else 1.0, dropped=0)
        out["scale"] = max(out["scale"], 1e-12)
    elif level == 2:
        if np.ptp(y) == 0:
            raise _Skip("constant feature")
        out["beta"], out["scale"], cov = least_squares(x, y, with_cov=True)
        out["beta_cov"][np.ix_(keep, keep)] = cov
    else:
        cols = np.arange(f) if level == 0 else np.array([intercept] if intercept is not None else [])
        if f == 0 or cols.size == 0 or (level == 1 and f == 1):
            raise _Skip("")  # no random term, or no random intercept to reduce to
        n_subjects = len(np.unique(groups))
        if np.ptp(y) == 0:
            raise _Skip("constant feature")
        if n_subjects < 2:
            raise _Skip("fewer than two subjects")
        if len(y) <= n_subjects * cols.size:  # lme4's nobs <= nRE check
            raise _Skip(f"{len(y)} observations <= {n_subjects * cols.size} random effects")
        try:
            free = None if blocks is None else blocks[np.ix_(cols, cols)]
            beta_k, cov_sub, scale, loglik, cov_k = _mixedlm(x[:, keep], z[:, cols], y, groups, options, free)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as err:
            raise _Skip(str(err).splitlines()[0][:120] if str(err) else type(err).__name__) from None
        out["beta"][keep], out["scale"], out["loglik"] = beta_k, scale, loglik
        out["beta_cov"][np.ix_(keep, keep)] = cov_k
        out["cov_re"][np.ix_(cols, cols)] = cov_sub
    if f == 0:
        out["blup"], out["blup_cov"] = np.zeros((n_groups, 0)), np.zeros((n_groups, 0, 0))
        return out
    out["blup"], out["blup_cov"] = blups(out["beta"], out["cov_re"], out["scale"], x, z, y - out["offset"],
                                         groups, n_groups)
    return out


def _check_mse(one: dict, x, z, y, groups) -> float:
    """MSE of the fitted feature's predictions (fixed part + BLUP; 0 for unseen subjects) on rows."""
    with np.errstate(all="ignore"):
        pred = x @ one["beta"] + one["offset"]
        if z.shape[1]:
            seen = groups >= 0
            pred += np.einsum("nf,nf->n", z, one["blup"][np.where(seen, groups, 0)] * seen[:, None])
        return float(np.mean((y - pred) ** 2)) if np.isfinite(pred).all() else math.inf


def _mixedlm(x, z, y, groups, options: MixedLMOptions, free: np.ndarray | None = None):
    """statsmodels MixedLM: ``β`` [q], ``G`` [F, F], ``σ²``, the (REML or ML) log-likelihood and
    the covariance of ``β̂`` [q, q]; raises ValueError when it does not converge, returns
    non-finite parameters, or ``G`` is at the boundary (:data:`BOUNDARY`). ``free`` [F, F]: the
    entries of ``G`` that are estimated, the others held at 0 (separate terms of one grouping
    factor, lme4's ``(1 | g) + (0 + t | g)`` = ``(t || g)``: a block-diagonal ``G``)."""
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

    f = z.shape[1]
    fit_options = {}
    if free is not None and not np.all(free):
        fit_options["free"] = MixedLMParams.from_components(np.ones(x.shape[1]), np.asarray(free, dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # judged here: convergence, finiteness, boundary
        result = MixedLM(y, x, groups=groups, exog_re=z).fit(
            reml=options.reml, method=list(options.method), maxiter=options.maxiter, **fit_options)
        try:
            cov = np.asarray(result.cov_params(), dtype=float)[: x.shape[1], : x.shape[1]]
        except (ValueError, np.linalg.LinAlgError):
            cov = np.full((x.shape[1], x.shape[1]), np.nan)
    beta = np.asarray(result.fe_params, dtype=float)
    cov_re = np.asarray(result.cov_re, dtype=float).reshape(f, f)
    scale = float(result.scale)
    if not result.converged:
        raise ValueError(f"did not converge ({', '.join(options.method)})")
    if not (np.isfinite(beta).all() and np.isfinite(cov_re).all() and np.isfinite(scale) and scale > 0):
        raise ValueError("non-finite parameters")
    eig = np.linalg.eigvalsh(cov_re / scale)
    if eig.min() < BOUNDARY * max(1.0, eig.max()):
        raise ValueError(f"boundary: random-effect covariance / residual variance has eigenvalue {eig.min():.3g}")
    return beta, cov_re, scale, float(result.llf), cov


def term_blocks(design) -> np.ndarray:
    """``[F, F]`` mask of the entries of ``G`` that are estimated: the columns of one random term
    share a joint covariance; separate terms (``(1 | g) + (0 + t | g)``, ``(t || g)``) are
    independent, as in lme4."""
    sizes = [len(t.columns) for t in design.random_terms]
    term = np.repeat(np.arange(len(sizes)), sizes)  # [F]
    return term[:, None] == term[None, :]


def random_block(design, matrix) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    """The random-effect columns ``z`` [N, F], subject codes [N] and subject count of a design
    matrix; the terms of one grouping factor are laid side by side (their covariance:
    :func:`term_blocks`)."""
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


def fit_design(formula: str, fit, options: MixedLMOptions, names: list[str], check=None,
               start: list | None = None):
    """Every feature of ``fit`` (a LongitudinalData: the fit rows) under design ``formula``:
    the fitted design, the parameter arrays (``beta`` [D, Q], ``beta_cov`` [D, Q, Q], ``scale``
    [D], ``cov_re`` [D, F, F], ``blup`` [D, P, F], ``blup_cov`` [D, P, F, F], ``offset`` [D],
    ``loglik`` [D]) and one record per feature (its level of :data:`LEVELS` and why). ``check``:
    held-out rows for the blow-up test (raises DesignError when the design cannot code them);
    ``start``: per feature, the level to start from (the level reached on validation) and why
    (its record, or None)."""
    design = Design(formula).fit(fit.covariates)
    x, z, levels, n_groups = _arrays(design, fit.covariates)
    held = None
    if check is not None:
        xc, zc, lc, _ = _arrays(design, check.covariates)
        held = (xc, zc, lc, check.y.astype(float), check.mask == 1)
    names_re = [c for t in design.random_terms for c in t.columns]
    blocks = term_blocks(design)  # [F, F]
    intercept = names_re.index(INTERCEPT) if INTERCEPT in names_re else None
    d_count, q, f = fit.n_features, x.shape[1], z.shape[1]
    params = {"beta": np.zeros((d_count, q)), "beta_cov": np.full((d_count, q, q), np.nan),
              "scale": np.ones(d_count), "cov_re": np.zeros((d_count, f, f)),
              "blup": np.zeros((d_count, n_groups, f)), "blup_cov": np.zeros((d_count, n_groups, f, f)),
              "offset": np.zeros(d_count), "loglik": np.full(d_count, np.nan)}
    y, mask, records = fit.y.astype(float), fit.mask == 1, []
    for d in range(d_count):
        rows = mask[:, d]
        if not rows.any():
            records.append({"feature": names[d], "fit": "no observations", "level": None,
                            "why": "no entry in the fit rows: prediction 0, variance 1", "n_obs": 0})
            continue
        chk = None
        if held is not None:
            r = held[4][:, d]  # observed check entries of feature d
            chk = (held[0][r], held[1][r], held[3][r, d], held[2][r])
        one = fit_feature(x[rows], z[rows], y[rows, d], levels[rows], n_groups, options, intercept,
                          check=chk, start=(start[d] or {}).get("level") or 0 if start else 0,
                          why=(start[d] or {}).get("why", "") if start else "", blocks=blocks)
        for key in params:
            params[key][d] = one[key]
        records.append(_record(names[d], one, options))
    return design, params, records


def _arrays(design, covariates):
    """Shared columns ``x`` [N, Q], random columns ``z`` [N, F], subject codes [N] (-1: unseen
    in the fit rows) and the number of subjects, with the unseen-level warning silenced (unseen
    subjects get a zero random effect, by design)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmvaeWarning)
        matrix = design.transform(covariates)
    z, levels, n_groups, _ = random_block(design, matrix)
    return matrix.shared.astype(float), z, levels, n_groups


def _record(name: str, one: dict, options: MixedLMOptions) -> dict[str, Any]:
    """A feature's JSON-able fit record: level, why the levels above were left, sizes, log-likelihood."""
    level = int(one["level"])
    criterion = ("REML" if options.reml else "ML") if level <= 1 else None
    finite = lambda v: float(v) if v is not None and np.isfinite(v) else None  # noqa: E731
    return {"feature": name, "fit": LEVELS[level], "level": level, "why": "; ".join(one["reasons"]),
            "n_obs": int(one["n_obs"]), "dropped_columns": int(one["dropped"]), "criterion": criterion,
            "loglik": finite(one["loglik"]), "check_mse": finite(one["check_mse"]),
            "mean_check_mse": finite(one["mean_mse"])}


def predict_design(design, params: dict, covariates, mean_only: bool = False):
    """Predictive mean and variance ``[N, D]`` at covariates (SPEC 6; :mod:`lmmvae.classical.family`'s
    docstring): ``x β + z b̂ + offset`` and ``σ² + z^T C z`` (C: BLUP covariance for a seen
    subject, ``G`` for an unseen one)."""
    x, z, levels, _ = _arrays(design, covariates)
    mean = x @ params["beta"].T + params["offset"]  # [N, D]
    var = np.broadcast_to(params["scale"], mean.shape).copy()
    if design.random_terms:
        seen = levels >= 0
        lv = np.where(seen, levels, 0)
        mean += np.einsum("nf,dnf->nd", z, params["blup"][:, lv, :])  # z is 0 on unseen rows
        if not mean_only:
            z_all = _unmasked_random_columns(design, covariates, z, levels)
            cond = np.where(seen[None, :, None, None], params["blup_cov"][:, lv], params["cov_re"][:, None])
            var += np.einsum("nf,dnfg,ng->nd", z_all, cond, z_all)  # [D, N, F, F] -> [N, D]
    return mean, np.maximum(var, MIN_VARIANCE)


def _unmasked_random_columns(design, covariates, z, levels) -> np.ndarray:
    """The random-effect columns also on rows of unseen subjects (where the design matrix zeroes
    them), for their prior predictive variance ``z^T G z``."""
    if (levels >= 0).all():
        return z
    if hasattr(covariates, "covariates") and not isinstance(covariates, dict):
        covariates = covariates.covariates
    group = design.random_terms[0].group
    n = len(levels)
    swapped = dict(covariates)
    swapped[group] = np.full(n, design.random_terms[0].levels[0], dtype=object)  # any seen level
    return _arrays(design, swapped)[1]
