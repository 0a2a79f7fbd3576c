"""Evaluation metrics and the summary statistics of the benchmark tables (SPEC 6).

* :func:`mse`: mean of ``(y − ŷ)²`` over the entries a mask selects (scored entries only; values
  elsewhere, even NaN, are ignored).
* :func:`mcc`: mean correlation coefficient (Khemakhem et al. 2020) between two latent matrices:
  absolute Pearson correlations of their columns, one-to-one matching by the Hungarian algorithm,
  mean of the matched values. **choice:** a constant column has correlation 0 with everything (no
  NaN); with ``L1 != L2`` columns, ``min(L1, L2)`` pairs are matched and averaged.
* :func:`log_mean_exp`: the stable ``log (1/S) Σ_s exp(x_s)`` of the Monte Carlo NLL, and
  :func:`log_mean_exp_se`, its Monte Carlo standard error; :func:`mean_se` for a mean over rows.
* :func:`mse_mc_error`: the Monte Carlo error of an MSE whose prediction is a Monte Carlo mean.
* :func:`mean_std`, :func:`bold_best`: "mean ± std over seeds" and which table entries are bold.
  **choice:** an entry is bold when its mean is within one standard deviation *of the best entry*
  (``|mean − best_mean| <= best_std``), so the best is always bold.
* :data:`METRICS`, :func:`score`: the metrics of ``lmmvae evaluate`` for every family of models, each
  one function of a :class:`Scored` record (what a fitted model predicted for one data set); a new
  metric is one function plus one :func:`register_metric` line, and shows in ``metrics.json``,
  ``metrics.csv`` and the tables of every family that gives what it reads.

Inputs may be numpy arrays or torch tensors (any device); results are Python floats. The module
does not import torch (the report jobs of the workflow use it without torch); only
:func:`log_mean_exp` and :func:`log_mean_exp_se`, which take tensors, need it, and a tensor
argument means torch is loaded.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    import torch

ArrayLike = Union[np.ndarray, "torch.Tensor", Sequence[float]]


def _numpy(x: ArrayLike) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def mse(y: ArrayLike, y_hat: ArrayLike, mask: ArrayLike) -> float:
    """Mean squared error over entries with ``mask == 1`` (SPEC 6)."""
    y, y_hat, mask = _numpy(y), _numpy(y_hat), _numpy(mask)
    if not y.shape == y_hat.shape == mask.shape:
        raise ValueError(f"mse: shapes differ: y {y.shape}, y_hat {y_hat.shape}, mask {mask.shape}")
    scored = mask == 1
    if not scored.any():
        raise ValueError("mse: the mask selects no entries to score")
    return float(np.mean((y[scored] - y_hat[scored]) ** 2))


def abs_correlation(u: ArrayLike, v: ArrayLike) -> np.ndarray:
    """``[L1, L2]`` absolute Pearson correlations between the columns of ``u [N, L1]``, ``v [N, L2]``;
    0 where a column is constant."""
    u, v = _numpy(u), _numpy(v)
    const_u = np.ptp(u, axis=0) == 0  # [L1]
    const_v = np.ptp(v, axis=0) == 0  # [L2]
    u = u - u.mean(axis=0)  # [N, L1]
    v = v - v.mean(axis=0)  # [N, L2]
    norm_u = np.sqrt((u**2).sum(axis=0))  # [L1]
    norm_v = np.sqrt((v**2).sum(axis=0))  # [L2]
    const_u |= norm_u == 0
    const_v |= norm_v == 0
    norm_u[const_u] = 1.0
    norm_v[const_v] = 1.0
    corr = np.abs((u / norm_u).T @ (v / norm_v))  # [L1, L2]
    corr[const_u, :] = 0.0
    corr[:, const_v] = 0.0
    return np.clip(corr, 0.0, 1.0)


def mcc(u: ArrayLike, v: ArrayLike) -> float:
    """Mean correlation coefficient between latent matrices ``u [N, L1]`` and ``v [N, L2]`` (SPEC 6).

    Invariant to permutation, scaling and sign flips of the columns; in [0, 1].
    """
    u, v = _numpy(u), _numpy(v)
    if u.ndim != 2 or v.ndim != 2 or u.shape[0] != v.shape[0]:
        raise ValueError(f"mcc: need [N, L1] and [N, L2] with the same N, got {u.shape} and {v.shape}")
    if u.shape[0] < 2:
        raise ValueError("mcc: need at least 2 rows to compute correlations")
    from scipy.optimize import linear_sum_assignment  # lazy: scipy.optimize takes ~0.3 s to import

    corr = abs_correlation(u, v)  # [L1, L2]
    rows, cols = linear_sum_assignment(corr, maximize=True)  # min(L1, L2) pairs
    return float(corr[rows, cols].mean())


def log_mean_exp(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """``log mean_s exp(x_s)`` along ``dim``, computed stably via ``logsumexp`` (SPEC 6, NLL)."""
    import torch

    return torch.logsumexp(x, dim=dim, keepdim=keepdim) - math.log(x.shape[dim])


def log_mean_exp_se(log_w: torch.Tensor, dim: int) -> torch.Tensor:
    """Monte Carlo standard error of ``log mean_s exp(log_w_s)`` along ``dim`` (SPEC 6, NLL).

    Delta method on the weights ``w_s = exp(log_w_s)``: ``sd(w) / (√S · mean(w))``, computed on
    ``w / max w`` so that nothing overflows. An underestimate where the weights are heavy-tailed
    (prior sampling of a sharp likelihood), hence the half-draws check of the evaluation."""
    import torch

    n = log_w.shape[dim]
    w = torch.exp(log_w - log_w.amax(dim=dim, keepdim=True))
    sd = w.std(dim=dim, unbiased=True) if n > 1 else torch.zeros_like(w.mean(dim=dim))
    return sd / (math.sqrt(n) * w.mean(dim=dim))


def mean_se(se: ArrayLike) -> float:
    """Standard error of a mean over rows of independent estimates with standard errors ``se``:
    ``sqrt(Σ se_i²) / n``."""
    se = _numpy(se).ravel()
    if se.size == 0:
        raise ValueError("mean_se: no standard errors")
    return float(np.sqrt(np.sum(se**2)) / se.size)


def mse_mc_error(y: ArrayLike, y_hat: ArrayLike, y_hat_var: ArrayLike, mask: ArrayLike) -> float:
    """Monte Carlo error of :func:`mse` due to a Monte Carlo prediction ``y_hat`` (SPEC 2.4).

    ``y_hat_var``: the MC variance of each entry of ``y_hat`` (per-draw variance / S). With ``e``
    the MC error of ``y_hat`` and ``r = y_hat − y``, ``MSE(y_hat) − MSE(E y_hat) = mean(2 r e + e²)``
    over scored entries: a bias ``mean(var)`` (MC noise adds to the squared error) and a spread of
    standard deviation ``2 sqrt(Σ r² var) / n``. Returns their root-mean-square combination."""
    y, y_hat, var, mask = _numpy(y), _numpy(y_hat), _numpy(y_hat_var), _numpy(mask)
    scored = mask == 1
    if not scored.any():
        raise ValueError("mse_mc_error: the mask selects no entries to score")
    n = scored.sum()
    bias = var[scored].sum() / n
    spread = 2 * np.sqrt(np.sum((y_hat[scored] - y[scored]) ** 2 * var[scored])) / n
    return float(np.sqrt(bias**2 + spread**2))


def mean_std(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard deviation (``ddof=1``; 0 for a single seed) of per-seed results (SPEC 6)."""
    values = _numpy(values).ravel()
    if values.size == 0:
        raise ValueError("mean_std: no values")
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)), std


def bold_best(means: ArrayLike, stds: ArrayLike, lower_is_better: bool = True) -> list[bool]:
    """Which entries of a table row are bold: mean within one std of the best mean (SPEC 6).

    The std is that of the best entry (module docstring); NaN means are never bold.
    """
    means, stds = _numpy(means).ravel(), _numpy(stds).ravel()
    if means.shape != stds.shape:
        raise ValueError(f"bold_best: {means.size} means but {stds.size} stds")
    finite = np.isfinite(means)
    if not finite.any():
        return [False] * means.size
    candidates = np.where(finite, means, np.inf if lower_is_better else -np.inf)
    best = int(np.argmin(candidates) if lower_is_better else np.argmax(candidates))
    tolerance = stds[best] if np.isfinite(stds[best]) else 0.0
    return [bool(ok and abs(m - means[best]) <= tolerance) for m, ok in zip(means, finite)]


@dataclass
class Scored:
    """What the metrics of SPEC 6 read, for one fitted model and one data set; each family fills
    what it has (``None``: the family has no such thing, and the metrics reading it are left out).

    ``nll``: per observed test row, ``nll`` [n] (``−log p(y_i | x_i, training rows)``), and where
    estimated by Monte Carlo ``nll_se``, ``nll_half`` [n] and the scalars ``importance`` (1:
    importance sampling, 0: prior sampling) and ``draws``; None without an observed test entry."""

    data: Any  # the LongitudinalData scored (y, mask, split, y_full, latent_truth)
    y_pred: np.ndarray  # [N, D] prediction from covariates alone (SPEC 2.4), every row
    y_pred_mc_var: np.ndarray | None = None  # [N, D] Monte Carlo variance of y_pred; None: exact
    y_impute: np.ndarray | None = None  # [N_train, D] imputation of the training rows (SPEC 2.4)
    nll: dict | None = None
    z_train: np.ndarray | None = None  # [N_train, L] posterior latent means of the training rows
    collapse: dict = field(default_factory=dict)  # active_dims, explained_share (lmmvae.answers.diagnostics)
    predictions: dict = field(default_factory=dict)  # arrays for ``lmmvae evaluate --predictions``

    @property
    def observed_test(self) -> np.ndarray:
        """``[N, D]``: observed entries of test rows (SPEC 6: what prediction is scored on)."""
        return (self.data.mask == 1) & (self.data.split == 2)[:, None]


def _mse_impute(s: Scored) -> float | None:
    """Imputation MSE (SPEC 6): masked-out entries of training rows against ``/y_full``."""
    train = s.data.split == 0
    missing = s.data.mask[train] == 0
    if s.y_impute is None or s.data.y_full is None or not missing.any():
        return None
    return mse(s.data.y_full[train], s.y_impute, missing)


def _mse_test(s: Scored) -> float | None:
    """Test MSE (SPEC 6): observed entries of test rows, prediction from covariates alone."""
    return mse(s.data.y, s.y_pred, s.observed_test) if s.observed_test.any() else None


def _mse_test_mc_se(s: Scored) -> float | None:
    if s.y_pred_mc_var is None or not s.observed_test.any():
        return None
    return mse_mc_error(s.data.y, s.y_pred, s.y_pred_mc_var, s.observed_test)


def _nll(key: str, how: Callable[[Any], float]) -> Callable[[Scored], float | None]:
    """A metric read from ``Scored.nll[key]`` (left out where the family has no such entry)."""
    return lambda s: how(s.nll[key]) if s.nll is not None and key in s.nll else None


def _mcc_truth(s: Scored) -> float | None:
    """MCC of the training rows' posterior latent means against ``/latent_truth`` (SPEC 6)."""
    train = s.data.split == 0
    if s.z_train is None or s.data.latent_truth is None or not train.any():
        return None
    return mcc(s.z_train, s.data.latent_truth[train])


#: name -> metric (a function of a Scored record, None where it does not apply), in output order
METRICS: dict[str, Callable[[Scored], float | None]] = {}


def register_metric(name: str, metric: Callable[[Scored], float | None]) -> Callable[[Scored], float | None]:
    """Add ``metric`` to what :func:`score` computes, under ``name`` (a key of ``metrics.json``)."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} is registered twice")
    METRICS[name] = metric
    return metric


register_metric("mse_impute", _mse_impute)
register_metric("mse_test", _mse_test)
register_metric("mse_test_mc_se", _mse_test_mc_se)
register_metric("nll_test", _nll("nll", lambda v: float(v.mean())))
register_metric("nll_test_se", _nll("nll_se", mean_se))
register_metric("nll_test_half", _nll("nll_half", lambda v: float(v.mean())))
register_metric("nll_importance", _nll("importance", float))
register_metric("nll_draws", _nll("draws", float))
register_metric("mcc_truth", _mcc_truth)
register_metric("active_dims", lambda s: s.collapse.get("active_dims"))
register_metric("explained_share", lambda s: s.collapse.get("explained_share"))


def score(scored: Scored) -> dict[str, float]:
    """Every registered metric that applies to ``scored`` (:data:`METRICS`), as floats."""
    out = {}
    for name, metric in METRICS.items():
        value = metric(scored)
        if value is not None:
            out[name] = float(value)
    return out
