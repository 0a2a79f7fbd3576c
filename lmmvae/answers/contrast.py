"""The decoded difference between two values of one covariate, with an interval
(``lmmvae contrast RUN --covariate arm --levels placebo,high``; ``model.contrast("arm", ["placebo", "high"])``).

Rows ``x_a``, ``x_b``: the covariate at the first and the second value, every other covariate held
where ``lmmvae effects`` holds it (:func:`lmmvae.answers.effects.held_values`: reference values, the
population subject, ``at``). The estimand, per feature ``d``, is the difference of the **mean** of
``y`` (not of one new observation):

    Δ_d(A) = E_ε[ m_d(A^T x_b + σ_z ε) − m_d(A^T x_a + σ_z ε) ],    m = E[y | g(z)]   (SPEC 2.1, 2.4)

— the second value minus the first. Its uncertainty is that of the prior's coefficients ``A``
under ``q(A)`` (SPEC 2.2): the covariate moves ``z`` only through ``A``. Monte Carlo with common
random numbers (SPEC 2.1):

* ``S`` draws ``A^(s) ~ q(A)``, each shared by both rows (a random-effect row once per level: the
  held subject reads the same row for ``x_a`` and ``x_b``);
* ``R`` draws ``ε^(r) ~ N(0, I)``, shared by both rows and by every ``s``: the inner average
  ``Δ^(s) = (1/R) Σ_r [m(A^(s)T x_b + σ_z ε^(r)) − m(A^(s)T x_a + σ_z ε^(r))]`` then varies with
  ``A^(s)`` only (the noise ``σ_z ε`` is a subject's own deviation, not uncertainty about the effect);
* the estimate is ``(1/S) Σ_s Δ^(s)``, the interval the ``level`` quantiles of ``Δ^(s)`` (rounded
  outwards to a draw), ``sd`` their standard deviation.

For a linear decoder ``m(z) = W z + c``, ``Δ^(s) = W A^(s)T (x_b − x_a)`` exactly, whatever ``R``.
For oLMM-VAE the default draws the shared rows from their collapsed posterior
(:func:`shared_covariance`) around their estimates, with ``q_A: point`` (the ELBO's default) too:
a point estimate has an uncertainty all the same, and an interval of zero width would call every
difference real. With ``uncertainty="q_A"`` and a point ``q(A)``, and for sLMM-VAE (``A`` a
parameter, SPEC 3; the noise is ``ν_p``, ``ω_p²`` of SPEC 3.4), there is nothing to draw: ``S = 1``
and the interval has zero width, and "excludes 0" is not claimed. The decoder's own uncertainty is not modelled. Other
neural priors (VAE, CVAE, GP priors) have no ``A``: refused.

Classical rows (``variant: mixedlm``): ``Δ_d = c^T β̂_d`` with ``c = x_b^s − x_a^s`` (plus the held
subject's BLUP terms, which cancel unless the covariate has a random slope), and the exact normal
interval ``Δ_d ± z_{(1+level)/2} sqrt(c^T Cov(β̂_d) c)``, ``Cov(β̂_d)`` from statsmodels (least
squares for a feature that fell back to it). ``variant: mean`` predicts the same at every value.

Values are in the table's units (``× feature_std``) when the run recorded its data's scale
(:func:`lmmvae.answers.intervals.table_scale`), else on the stored scale.
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch

from lmmvae.answers.effects import _held_value, check_covariate, held_values
from lmmvae.data.batch import DesignBatch
from lmmvae.data.h5 import read_h5
from lmmvae.errors import ConfigError, RunError
from lmmvae.answers.intervals import (_quantiles, check_covariates, feature_names, latent_posterior, quadratic, shared_rows,
                              table_scale)
from lmmvae.answers.predict import has_posterior
from lmmvae.classical.mixedlm import predict_design
from lmmvae.model.priors.olmm import OLMMPrior
from lmmvae.model.priors.slmm import SLMMPrior

#: draws of A ~ q(A) (outer) and of the latent noise ε (inner, shared: common random numbers)
N_OUTER, N_INNER = 500, 100
#: most decoded values (outer × inner × 2 rows × features) held at once
MAX_DRAWS = 4_000_000


def contrast_rows(fitted, covariate: str, levels, at: dict | None = None) -> pd.DataFrame:
    """The two covariate rows ``x_a``, ``x_b`` (module docstring), checked: two different values of
    ``covariate``, each a training level (or a number for a continuous covariate)."""
    check_covariate(fitted, covariate)
    levels = [levels] if isinstance(levels, str) else list(levels)
    if len(levels) != 2:
        raise ConfigError(f"contrast of {covariate}: give two values (from, to), got {len(levels)}: {levels}")
    values = [_held_value(fitted, covariate, str(v).strip(), where=f"contrast level {covariate}={v}")
              for v in levels]
    if str(values[0]) == str(values[1]):
        raise ConfigError(f"contrast of {covariate}: the two values are the same ({values[0]})")
    held = held_values(fitted, covariate, at)
    return pd.DataFrame({covariate: values, **{k: [v, v] for k, v in held.items()}})


def shared_covariance(fitted, data) -> np.ndarray | None:
    """``Cov(β_l | data)`` [L, Q, Q] of the shared rows of ``A`` with the random rows integrated out
    (the Gaussian LMM of SPEC 2.1 in latent space, one latent dimension at a time): the encoder's
    ``q(z_i) = N(μ_i, s_i²)`` of the training rows are the observations, ``σ_z², τ`` the fitted values,

        Cov(β_l)^{-1} = Σ_p X_p^T V_p^{-1} X_p + I/τ_s²,   V_p = Z_p G_l Z_p^T + diag(σ_zl² + s_il²),

    (``G_l = diag(τ_r[:, l]²)``; Woodbury per subject). Mean-field ``q(A)`` (SPEC 2.2) factorises the
    shared rows from the random rows and so ignores that rows of one subject share its random
    effect: for a covariate constant within subjects its variance is several times too small.
    None when it does not apply (no encoder after GSNN, random terms of two grouping factors)."""
    prior = fitted.model.prior
    if not has_posterior(fitted) or len(prior.effects.term_shapes) > 1:
        return None
    train = data.subset(np.flatnonzero(data.split == 0))
    mu, s2 = latent_posterior(fitted, train)  # [N, L]
    x = fitted.tensors(train).x
    shared = x.shared.double().cpu().numpy()  # [N, Q]
    d_rows = prior.sigma_z2.detach().double().cpu().numpy() + s2  # [N, L]
    q, latent = shared.shape[1], mu.shape[1]
    tau_s2 = float(prior.log_tau[0].detach().exp()) ** 2
    precision = np.einsum("nq,nl,nr->lqr", shared, 1.0 / d_rows, shared) + np.eye(q) / tau_s2  # [L, Q, Q]
    if prior.effects.term_shapes:
        n_levels, f = prior.effects.term_shapes[0]
        levels = x.levels[0].cpu().numpy()
        z = (x.values[0] * (x.levels[0] >= 0).unsqueeze(-1)).double().cpu().numpy()  # [N, F]
        taus = prior.log_tau_random
        tau_r = (taus[0].exp().view(f, latent) if taus is not None else prior.log_tau[1].exp().expand(f, latent))
        g_inv = 1.0 / tau_r.detach().double().cpu().numpy() ** 2  # [F, L]
        keep = levels >= 0
        for l in range(latent):
            w = 1.0 / d_rows[:, l]
            b = np.zeros((n_levels, q, f))
            c = np.zeros((n_levels, f, f))
            np.add.at(b, levels[keep], (w[:, None, None] * shared[:, :, None] * z[:, None, :])[keep])
            np.add.at(c, levels[keep], (w[:, None, None] * z[:, :, None] * z[:, None, :])[keep])
            inner = np.linalg.inv(c + np.diag(g_inv[:, l]))  # [P, F, F]
            precision[l] -= np.einsum("pqf,pfg,prg->qr", b, inner, b)
    return np.linalg.inv(precision)


def _training_data(fitted, data):
    """The run's data: ``data`` if given, else the file the run was fitted on (``info['data_path']``)."""
    from pathlib import Path


    if data is not None:
        return data
    path = fitted.info.get("data_path")
    return read_h5(path) if path and Path(path).exists() else None


def _latent_parts(prior, batch, n_outer: int, cov: np.ndarray | None = None):
    """``(draws [S, 2, L], noise_std [2, L] or [L])``: the coefficient part ``A^(s)T x`` of the latent
    predictive and the scale of the rest (module docstring). ``S = 1`` where ``A`` is a point.
    ``cov`` [L, Q, Q]: the shared rows drawn from ``N(M, cov)`` (:func:`shared_covariance`) instead of ``q(A)``."""
    if isinstance(prior, OLMMPrior):
        noise = prior.sigma_z2.sqrt()  # [L]
        if cov is None:
            if not prior.effects.gaussian:
                return prior.effects.mean(batch.x).unsqueeze(0), noise
            return torch.stack([prior.effects.sample(batch.x) for _ in range(n_outer)]), noise  # [S, 2, L]
        m = prior.effects.shared_mean  # [Q, L]
        chol = torch.linalg.cholesky(torch.as_tensor(cov, dtype=m.dtype, device=m.device))  # [L, Q, Q]
        beta = m + torch.einsum("lqr,srl->sql", chol, torch.randn(n_outer, *m.shape, dtype=m.dtype, device=m.device))
        random_only = DesignBatch(torch.zeros_like(batch.x.shared), batch.x.levels, batch.x.values)
        if prior.effects.gaussian:
            rand = torch.stack([prior.effects.sample(random_only) for _ in range(n_outer)])  # [S, 2, L]
        else:  # q_A: point: the random rows at their estimates
            rand = prior.effects.mean(random_only).unsqueeze(0).expand(n_outer, -1, -1)
        return torch.einsum("bq,sql->sbl", batch.x.shared, beta) + rand, noise
    if isinstance(prior, SLMMPrior):  # A a parameter; the subject's ν_p, ω_p² (SPEC 3.4)
        dist = prior.predict(batch)
        return dist.mean.unsqueeze(0), dist.stddev
    raise ConfigError(f"contrast: the prior of variant {type(prior).__name__} has no covariate coefficients A "
                      f"to put an interval on (oLMM-VAE, sLMM-VAE and mixedlm have); use lmmvae effects")


def neural_draws(fitted, clean: pd.DataFrame, n_outer: int = N_OUTER, n_inner: int = N_INNER,
                 cov: np.ndarray | None = None) -> np.ndarray:
    """``Δ^(s)`` [S, D] on the stored scale (module docstring) for the rows ``clean`` (``x_a``, ``x_b``).

    Deterministic: ``A^(s)`` and ``ε^(r)`` come from generators seeded with the run's seed."""
    seed = int(fitted.info.get("seed", 0))
    model = fitted.model.eval()
    tensors = fitted.tensors(fitted.covariates_to_data(clean))
    batch = tensors.batch(tensors.indices(None))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # q(A) draws (MixedEffects.sample reads the global generator)
        draws, noise = _latent_parts(model.prior, batch, n_outer, cov)  # [S, 2, L], [.., L]
        generator = torch.Generator(device="cpu").manual_seed(seed + 1)
        eps = torch.randn((n_inner, 1, model.latent_dim), generator=generator).to(draws)  # [R, 1, L]
        d = int(fitted.info["data_dim"])
        chunk = max(1, MAX_DRAWS // (n_inner * 2 * max(d, 1)))
        out = []
        for start in range(0, draws.shape[0], chunk):
            part = draws[start:start + chunk]  # [s, 2, L]
            z = part[:, None] + noise * eps  # [s, R, 2, L]
            means = model.likelihood.mean(model.decode(z.reshape(-1, 2, z.shape[-1]), batch))  # [s*R, 2, D]
            diff = (means[:, 1] - means[:, 0]).reshape(part.shape[0], n_inner, -1).mean(1)  # [s, D]
            out.append(diff.cpu().double().numpy())
    return np.concatenate(out)


def _classical_parts(fitted, clean: pd.DataFrame, level: float) -> tuple[np.ndarray, np.ndarray]:
    """mixedlm: ``(Δ [D], sd [D])`` on the stored scale (module docstring); sd NaN where the
    feature's ``Cov(β̂)`` is not available (it fell back to the mean)."""
    if fitted.config.variant == "mean":
        raise ConfigError("contrast: variant mean predicts the same value whatever the covariates: no contrast")
    params = fitted.params
    if "beta_cov" not in params:
        raise RunError("contrast: this mixedlm run stores no covariance of the fixed effects; refit it with "
                       "this version of lmmvae")
    covariates = fitted.covariates_to_data(clean).covariates
    mean, _ = predict_design(fitted.design, params, covariates, mean_only=True)  # [2, D]
    c = shared_rows(fitted, covariates)  # [2, Q]
    return mean[1] - mean[0], np.sqrt(quadratic(params["beta_cov"], c[1] - c[0]))


def contrast(fitted, covariate: str, levels, at: dict | None = None, level: float = 0.9,
             n_samples: int = N_OUTER, n_inner: int = N_INNER, table_units: bool = True, data=None,
             uncertainty: str = "collapsed") -> pd.DataFrame:
    """One row per feature: ``feature``, ``difference`` (second value minus first), ``lower``,
    ``upper`` (the ``level`` interval) and ``sd`` (module docstring). ``attrs`` say what was
    compared, where the others were held, the units and the estimator.

    oLMM-VAE: ``uncertainty="collapsed"`` (default) draws the shared rows of ``A`` from their
    posterior with the random rows integrated out (:func:`shared_covariance`; needs the training
    data: ``data``, else the file the run recorded), ``"q_A"`` from the mean-field ``q(A)``."""
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie strictly between 0 and 1 (got {level})")
    if int(n_samples) < 1 or int(n_inner) < 1:
        raise ConfigError(f"contrast: n_samples and n_inner must be at least 1 (got {n_samples}, {n_inner})")
    rows = contrast_rows(fitted, covariate, levels, at)
    clean = check_covariates(fitted, rows, where=f"contrast of {covariate}").reset_index(drop=True)
    with warnings.catch_warnings():  # the population subject is unseen on purpose
        warnings.filterwarnings("ignore", message=r".*not seen in training.*")
        if fitted.predictive_is_gaussian:  # closed form (lmmvae.fitted): the normal interval from Cov(beta)
            diff, sd = _classical_parts(fitted, clean, level)
            half = NormalDist().inv_cdf((1.0 + level) / 2.0) * sd
            lower, upper, estimator = diff - half, diff + half, "exact normal interval from Cov(beta)"
        else:
            cov, source = _covariance(fitted, data, uncertainty)
            draws = neural_draws(fitted, clean, int(n_samples), int(n_inner), cov)  # [S, D]
            diff, sd = draws.mean(0), draws.std(0, ddof=1) if len(draws) > 1 else np.zeros(draws.shape[1])
            lower, upper = (q.numpy() for q in _quantiles(torch.from_numpy(draws), ((1 - level) / 2, (1 + level) / 2)))
            estimator = (f"{len(draws)} draws of A ({source}) x {n_inner} shared latent-noise draws" if len(draws) > 1
                         else "A is a point estimate: no uncertainty to draw (zero-width interval)")
    scale = table_scale(fitted) if table_units else None
    std = scale[1] if scale is not None else np.ones(len(diff))
    table = pd.DataFrame({"feature": feature_names(fitted), "difference": diff * std, "lower": lower * std,
                          "upper": upper * std, "sd": sd * std})
    table.attrs.update(covariate=covariate, levels=[str(v) for v in rows[covariate]], level=float(level),
                       held={k: rows[k].iloc[0] for k in rows.columns if k != covariate},
                       units="table" if scale is not None else "stored", estimator=estimator)
    return table


def _covariance(fitted, data, uncertainty: str):
    """``(cov or None, what the draws of A are)`` for :func:`contrast`."""
    if uncertainty not in ("collapsed", "q_A"):
        raise ConfigError(f"contrast: uncertainty must be 'collapsed' or 'q_A' (got {uncertainty!r})")
    prior = fitted.model.prior
    if not isinstance(prior, OLMMPrior) or uncertainty == "q_A":
        return None, "q(A), mean-field"
    data = _training_data(fitted, data)
    cov = shared_covariance(fitted, data) if data is not None else None
    if cov is None:
        why = "no training data found" if data is None else "not available for this run"
        return None, f"q(A), mean-field: too narrow for between-subject covariates; collapsed covariance {why}"
    return cov, "shared rows from their posterior with the random effects integrated out"


def describe(table: pd.DataFrame) -> str:
    """The contrast as text: what was compared, held where, then the features by ``|difference| / sd``."""
    a = table.attrs
    held = ", ".join(f"{k} = {v}" for k, v in a.get("held", {}).items()) or "none"
    lines = [f"Contrast of {a['covariate']}: {a['levels'][1]} minus {a['levels'][0]} "
             f"(mean of y, {a['units']} units; others held at {held})",
             f"{a['level']:.0%} interval: {a['estimator']}"]
    width = max(8, *(len(str(f)) for f in table["feature"]))
    lines.append(f"{'feature':<{width}}  {'difference':>11}  {'lower':>11}  {'upper':>11}  excludes 0")
    for _, r in table.iterrows():
        excludes = r["lower"] > 0 or r["upper"] < 0
        lines.append(f"{str(r['feature']):<{width}}  {r['difference']:>11.4g}  {r['lower']:>11.4g}  "
                     f"{r['upper']:>11.4g}  {_excludes(r, excludes)}")
    return "\n".join(lines)


def _excludes(row, excludes: bool) -> str:
    """``yes`` / ``no`` / ``n/a``: a zero-width interval (no uncertainty drawn) claims nothing."""
    if not (math.isfinite(row["lower"]) and math.isfinite(row["upper"])) or row["upper"] <= row["lower"]:
        return "n/a"
    return "yes" if excludes else "no"
