"""Fitting the classical family (:mod:`lmmvae.classical.family`): ``variant: mean`` per feature, and
``variant: mixedlm``'s design chosen on the validation rows then refitted on train + validation rows
(the rule: :data:`RULE`, SPEC 6; the fitting of one feature: :mod:`lmmvae.classical.mixedlm`)."""

from __future__ import annotations

import math

import numpy as np

from lmmvae.answers.metrics import mse
from lmmvae.classical.mixedlm import fit_design, predict_design
from lmmvae.errors import DesignError
from lmmvae.model.design import Design


def fit_rows(data, rows, config, names: list[str]):
    """``(design, params, records, selection)`` of ``config.variant`` fitted on ``rows`` (train +
    validation rows of ``data``): the per-feature mean, or mixedlm after its design choice."""
    if config.variant == "mean":
        return _fit_mean(rows, config, names)
    return _fit_mixedlm(data, rows, config, names)


def _fit_mean(rows, config, names):
    """``variant: mean``: per feature, the mean and variance of its observed fit-row entries."""
    d_count = rows.n_features
    mean, var, records = np.zeros(d_count), np.ones(d_count), []
    for d in range(d_count):
        obs = rows.y[rows.mask[:, d] == 1, d].astype(float)
        if obs.size == 0:
            records.append({"feature": names[d], "fit": "no observations", "level": None,
                            "why": "no entry in the fit rows: prediction 0, variance 1", "n_obs": 0})
            continue
        mean[d] = obs.mean()
        var[d] = max(float(obs.var()), 1e-12) if obs.size > 1 else 1.0
        records.append({"feature": names[d], "fit": "mean", "level": 3, "why": "", "n_obs": int(obs.size)})
    return Design(config.design).fit(rows.covariates), {"mean": mean, "var": var}, records, None


def _fit_mixedlm(data, rows, config, names):
    """Choose the design on the validation rows, then refit the winner on train + validation rows
    (module docstring: the rule); returns the design, parameters, feature records and the selection."""
    # lazy: imports torch; torch-free here, as lmmvae.classical.family (read by the workflow's plan) imports this module
    from lmmvae.training.checks import prior_options

    options = prior_options(config)
    candidates = list(dict.fromkeys([config.design, *options.candidates]))
    train = data.subset(np.flatnonzero(data.split == 0))
    val = data.subset(np.flatnonzero(data.split == 1))
    scored, start = [], None
    if val.n_obs and val.mask.any() and train.n_obs and train.mask.any():
        scored = [_score(formula, train, val, options, names) for formula in candidates]
        mses = [s["validation_mse"] if s["validation_mse"] is not None else math.inf for s in scored]
        best = int(np.argmin(mses))  # the first of equal ones
        start = scored[best].pop("levels") if math.isfinite(mses[best]) else None
        for s in scored:
            s.pop("levels", None)
        rule = RULE
    else:
        best, rule = 0, "no validation rows: the first candidate (the model's design), not compared"
    design, params, records = fit_design(candidates[best], rows, options, names, start=start)
    selection = {"rule": rule, "winner": candidates[best], "fit_rows": "train + validation",
                 "candidates": scored or [{"design": c, "validation_mse": None} for c in candidates]}
    return design, params, records, selection


#: how mixedlm's design is chosen (recorded in every run)
RULE = ("lowest validation MSE (observed entries of the validation rows, all features pooled) of the "
        "candidate fitted on the train rows; the winner refitted on train + validation rows, each feature "
        "starting at the fallback level it reached on validation")


def _score(formula, train, val, options, names) -> dict:
    """A candidate design fitted on the train rows, scored on the validation rows (SPEC 6 MSE)."""
    try:
        design, params, records = fit_design(formula, train, options, names, check=val)
    except DesignError as err:
        if "no covariate named" in str(err):
            raise
        return {"design": formula, "validation_mse": None, "error": str(err).splitlines()[0][:160]}
    mean, _ = predict_design(design, params, val.covariates, mean_only=True)
    value = mse(val.y, mean, val.mask == 1)
    return {"design": formula, "validation_mse": float(value) if np.isfinite(value) else None,
            "fallbacks": fit_counts(records), "levels": records}


def fit_counts(records: list[dict]) -> dict[str, int]:
    """Features per fit other than the first level: ``no observations``, each fallback, dropped columns."""
    counts = {"no_observations": 0, "random_intercept_only": 0, "fixed_effects_only": 0, "mean": 0,
              "rank_deficient": 0}
    for r in records:
        key = r["fit"].replace(" ", "_")
        if key in counts and r.get("level") != 3 or key == "mean" and "criterion" in r:  # mean: a fallback only in mixedlm
            counts[key] += 1
        counts["rank_deficient"] += r.get("dropped_columns", 0) > 0
    return counts


def status_line(record: dict) -> str:
    return record["fit"] + (f" ({record['why']})" if record["why"] else "")
