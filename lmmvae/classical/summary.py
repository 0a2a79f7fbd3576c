"""What a fitted ``variant: mixedlm`` / ``mean`` run says, per feature: ``model.summary()`` and
``lmmvae summary RUN`` of a classical run (:mod:`lmmvae.classical.family`).

Per feature, the table a statsmodels / lme4 user looks for: the fixed effects with names and
standard errors, the random-effect standard deviations and correlations, the residual standard
deviation, the log-likelihood (REML or ML), the structure fitted (the fallback, and why:
:mod:`lmmvae.classical.mixedlm`), and above them the design that won on the validation rows.

**Units.** Data written by ``from-table`` (or the PhysioNet / trial generators) store each feature
standardised, ``y = (y_table − mean_d) / std_d`` (info ``feature_mean`` / ``feature_std``): every
coefficient, standard error, random-effect SD and the residual SD are multiplied by ``std_d``, the
intercept gets ``mean_d`` added, and the log-likelihood gets the Jacobian ``−n' log std_d``
(``n' = n − rank(X)`` under REML, ``n`` under ML), so that it is the one lme4 reports on the table
(under REML also ``+ log|det A|``, the Jacobian of the covariate map below, since REML's
``log|X^T V^-1 X|`` depends on the columns' scale).
A plain continuous covariate ``v`` that the design standardises (SPEC 1: ``(v − m) / s`` with the
fit rows' ``m, s``, stored in the fitted design) and that enters a block (fixed effects; the
random term) only as its own column, next to that block's intercept, is read in its own units:
``β_v = β_z / s`` and ``β_0 −= β_z m / s`` (the same map ``A`` on the random-effect covariance,
``A G A^T``, and on the covariance of ``β̂``). Every other column (a Fourier or polynomial basis,
a category, an interaction) stays in design units, and its row says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmmvae.model.design import INTERCEPT


@dataclass
class ClassicalSummary:
    """A classical run's summary (module docstring); ``str(summary)`` is the readable table."""

    model: dict[str, Any]
    features: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN as None)."""
        return _clean({"model": self.model, "features": self.features})

    def __str__(self) -> str:
        m = self.model
        lines = [f"Classical model: {m['variant']}, design {m['design']!r}, {m['data_dim']} features, "
                 f"fitted on {m['n_fit_rows']} {m['fit_rows']} rows; values in {m['units']}"]
        sel = m.get("selection")
        if sel:
            lines.append(f"Design chosen: {sel['winner']!r} by {sel['rule']}")
            for c in sel["candidates"]:
                mse = c.get("validation_mse")
                lines.append(f"  {'*' if c['design'] == sel['winner'] else ' '} validation MSE "
                             f"{'–' if mse is None else f'{mse:.5g}'}  {c['design']}"
                             + (f"  ({c['error']})" if c.get("error") else ""))
        for f in self.features:
            lines += [""] + _feature_lines(f)
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython
        printer.text(str(self))


def _feature_lines(f: dict) -> list[str]:
    head = f"Feature {f['feature']}: {f['fit']}, {f['n_obs']} observations"
    if f.get("loglik") is not None:
        head += f", log-likelihood ({f['criterion']}) {f['loglik']:.6g}"
    lines = [head] + ([f"  fallback, because: {f['why']}"] if f.get("why") else [])
    if f.get("fixed"):
        width = max(len(r["term"]) for r in f["fixed"])
        lines.append(f"  {'fixed effect':<{width}}  {'estimate':>11}  {'std. error':>11}  units")
        for r in f["fixed"]:
            se = "–" if r["se"] is None or not math.isfinite(r["se"]) else f"{r['se']:.5g}"
            lines.append(f"  {r['term']:<{width}}  {r['estimate']:>11.5g}  {se:>11}  {r['units']}")
    for r in f.get("random", []):
        lines.append(f"  random {r['group']}: {r['column']} SD {r['sd']:.5g} ({r['units']})")
    for r in f.get("correlations", []):
        lines.append(f"  random {r['group']}: corr({r['a']}, {r['b']}) {r['corr']:.4f}")
    lines.append(f"  residual SD {f['residual_sd']:.5g}")
    return lines


def summarise(fitted) -> ClassicalSummary:
    """The :class:`ClassicalSummary` of a fitted classical model (``lmmvae.classical.family.ClassicalModel``)."""
    info, cfg = fitted.info, fitted.config
    scale = _table_scale(info)
    selection = info.get("selection")
    model = {"variant": cfg.variant, "design": fitted.design.formula, "data_dim": int(info["data_dim"]),
             "n_fit_rows": info.get("n_fit_rows"), "fit_rows": (selection or {}).get("fit_rows", "train + validation"),
             "units": "the data's units (y * feature_std + feature_mean)" if scale else "the stored units",
             "selection": selection, "seed": info.get("seed")}
    records = info.get("features") or [{} for _ in range(model["data_dim"])]
    features = []
    for d, rec in enumerate(records):
        mean, std = (scale[0][d], scale[1][d]) if scale else (0.0, 1.0)
        if cfg.variant == "mean":
            features.append(_mean_feature(fitted.params, d, rec, mean, std))
        else:
            features.append(_mixed_feature(fitted, d, rec, mean, std))
    return ClassicalSummary(model, features)


def _table_scale(info: dict):
    mean, std = info.get("feature_mean"), info.get("feature_std")
    return (np.asarray(mean, float), np.asarray(std, float)) if mean is not None and std is not None else None


def _mean_feature(params: dict, d: int, rec: dict, mean: float, std: float) -> dict:
    return {**_head(rec, d), "fixed": [{"term": "(mean)", "estimate": params["mean"][d] * std + mean,
                                        "se": math.sqrt(params["var"][d] / max(rec.get("n_obs", 1), 1)) * std,
                                        "units": "response"}],
            "random": [], "correlations": [], "residual_sd": math.sqrt(params["var"][d]) * std}


def _head(rec: dict, d: int) -> dict:
    return {"feature": rec.get("feature", f"y{d}"), "fit": rec.get("fit", "?"), "why": rec.get("why", ""),
            "n_obs": rec.get("n_obs", 0), "criterion": rec.get("criterion"), "loglik": rec.get("loglik")}


def _mixed_feature(fitted, d: int, rec: dict, mean: float, std: float) -> dict:
    """One feature's fixed effects, random-effect SDs and correlations, residual SD, in table units."""
    p, design = fitted.params, fitted.design
    a_fixed, fixed_units = covariate_map(design, design.shared_columns, design.terms)
    beta = a_fixed @ p["beta"][d] * std
    cov = a_fixed @ p["beta_cov"][d] @ a_fixed.T * std**2
    names = list(design.shared_columns)
    if INTERCEPT in names:
        beta[names.index(INTERCEPT)] += mean
    out = _head(rec, d)
    out["fixed"] = [{"term": n, "estimate": float(b), "se": float(math.sqrt(c)) if c >= 0 else None, "units": u}
                    for n, b, c, u in zip(names, beta, np.diag(cov), fixed_units) if rec.get("level") != 3]
    if p["offset"][d] != 0 or rec.get("level") == 3:
        out["fixed"] = [{"term": "(mean)", "estimate": p["offset"][d] * std + mean,
                         "se": math.sqrt(p["scale"][d] / max(rec.get("n_obs", 1), 1)) * std, "units": "response"}]
    out["random"], out["correlations"] = _random(design, p["cov_re"][d] * std**2)
    out["residual_sd"] = math.sqrt(p["scale"][d]) * std
    if out["loglik"] is not None:  # Jacobians of y -> y * std + mean and, under REML, of X -> X A^-1
        reml = rec.get("criterion") == "REML"
        n = rec.get("n_obs", 0) - (len(names) - rec.get("dropped_columns", 0) if reml else 0)
        out["loglik"] += -n * math.log(std) + (math.log(abs(np.linalg.det(a_fixed))) if reml else 0.0)
    return out


def _random(design, cov_re: np.ndarray) -> tuple[list[dict], list[dict]]:
    """Random-effect SDs and correlations of the fitted structure (columns with variance > 0)."""
    if not design.random_terms:
        return [], []
    columns = [c for t in design.random_terms for c in t.columns]
    terms = [inner for t in design.terms if hasattr(t, "group") for inner in t.terms]
    a, units = covariate_map(design, columns, terms)
    g = a @ cov_re @ a.T
    group = design.random_terms[0].group
    live = [j for j in range(len(columns)) if cov_re[j, j] > 0]
    sds = [{"group": group, "column": columns[j], "sd": float(math.sqrt(max(g[j, j], 0.0))), "units": units[j]}
           for j in live]
    corr = [{"group": group, "a": columns[i], "b": columns[j],
             "corr": float(g[i, j] / math.sqrt(g[i, i] * g[j, j]))}
            for k, i in enumerate(live) for j in live[k + 1:] if g[i, i] > 0 and g[j, j] > 0]
    return sds, corr


def covariate_map(design, columns: list[str], terms: list) -> tuple[np.ndarray, list[str]]:
    """``A`` [K, K] taking a block's coefficients on design columns to covariate units, and each
    column's units (module docstring): a plain standardised covariate whose only column in the
    block is its own, next to the block's intercept, gets ``1/s`` and ``−m/s`` on the intercept."""
    k = len(columns)
    a, units = np.eye(k), ["design units"] * k
    if INTERCEPT in columns:
        units[columns.index(INTERCEPT)] = "response"
    states = design.to_dict()["factors"]
    uses: dict[str, int] = {}
    for t in terms:
        for factor in getattr(t, "factors", ()):
            uses[factor.covariate] = uses.get(factor.covariate, 0) + 1
    if INTERCEPT not in columns:
        return a, units
    i0 = columns.index(INTERCEPT)
    for t in terms:
        factors = getattr(t, "factors", ())
        if len(factors) != 1 or factors[0].basis != "linear" or uses[factors[0].covariate] != 1:
            continue
        state = states[factors[0].label]["state"]
        if state.get("mean") is None or factors[0].label not in columns:
            continue  # binary (0/1, not standardised)
        j = columns.index(factors[0].label)
        a[j, j] = 1.0 / state["std"]
        a[i0, j] = -state["mean"] / state["std"]
        units[j] = f"per unit of {factors[0].covariate}"
    return a, units


def _clean(value):
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
