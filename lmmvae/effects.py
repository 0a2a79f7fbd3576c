"""The decoded effect of one covariate: the model's prediction along a grid of that covariate, the
other covariates held at reference values (``lmmvae effects RUN --covariate age --png OUT.png``).

This is the interpretability argument of the paper made usable: the covariate moves the latent
mean ``A^T x`` (SPEC 2.1) and the decoder shows what that does in data space — features for tabular
data, images for image data. Each grid row is predicted from covariates alone, as
:func:`lmmvae.intervals.predict_frame` does: the predictive mean (SPEC 2.4) and a predictive
interval (latent uncertainty and the likelihood's noise).

Reference values (**choice**, as an LMM's "typical subject"): a continuous or time covariate at
its training mean, a binary one at 0 (its first level), a categorical one at its reference level
(the first training level, the one the design drops), and the subject at a level never seen in
training, so that random effects are zero: the population-level effect. Two exceptions: a binary
covariate that only *multiplies* the chosen one (``diseasePresence`` in
``diseasePresence:diseaseAge``) is held at 1, where the effect exists; and ``at={name: value}``
(``--at name=value``) holds any other covariate where the user says.

Grid: a continuous covariate spans its training range in ``n_points`` equal steps; a binary or
categorical one takes each training level.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lmmvae.errors import ConfigError

#: the subject id given to grid rows: unseen in training, so random effects are zero
POPULATION = "(population)"
#: panels drawn for tabular data when no features are named (those the covariate moves most)
MAX_PANELS = 12


def _train_levels(cov) -> list:
    """Levels seen in training, in code order (the first is the design's reference level)."""
    seen = np.unique(cov.values)
    return [cov.levels[int(c)] for c in seen] if cov.levels is not None else [v.item() for v in seen]


def reference_values(fitted) -> dict:
    """Each covariate the model uses at its reference value (module docstring)."""
    from lmmvae.intervals import needed_columns

    out = {}
    for name in needed_columns(fitted):
        cov = fitted.train_covariates[name]
        if cov.kind == "id":
            out[name] = POPULATION
        elif cov.levels is not None or cov.kind in ("categorical", "binary"):
            out[name] = _train_levels(cov)[0]
        else:
            out[name] = float(np.mean(cov.values))
    return out


def interaction_partners(fitted, covariate: str) -> list[str]:
    """Binary covariates that multiply ``covariate`` in the shared terms holding it, when it has no
    main effect (``diseasePresence:diseaseAge``): at their reference 0 its effect would vanish, so the
    grid holds them at 1 (their second level) instead."""
    from lmmvae.design.terms import Term

    terms = [t for t in fitted.design.terms
             if isinstance(t, Term) and any(f.covariate == covariate for f in t.factors)]
    if not terms or any(len(t.factors) == 1 for t in terms):
        return []
    partners = {f.covariate for t in terms for f in t.factors if f.covariate != covariate}
    return sorted(p for p in partners if p in fitted.train_covariates and fitted.train_covariates[p].kind == "binary")


def _held_value(fitted, name: str, text):
    """A value given as ``--at name=text``, checked against the covariate's kind and levels."""
    from lmmvae.levels import match_levels

    cov = fitted.train_covariates[name]
    if cov.levels is not None:
        if cov.kind != "id" and match_levels([text], list(cov.levels))[0] < 0:
            raise ConfigError(f"at {name}={text}: not a training level of {name} "
                              f"(levels: {', '.join(map(str, _train_levels(cov)))})")
        return text
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"at {name}={text}: {name} is {cov.kind}, give a number") from None


def effect_grid(fitted, covariate: str, n_points: int = 25, at: dict | None = None) -> pd.DataFrame:
    """Covariate rows: ``covariate`` along its grid, every other covariate at its reference value
    (binary interaction partners at 1: :func:`interaction_partners`), or at the value ``at`` gives."""
    from lmmvae.intervals import needed_columns

    used = needed_columns(fitted)
    if covariate not in used:
        raise ConfigError(f"covariate {covariate!r} is not in the model's design {fitted.config.design!r} "
                          f"(covariates: {', '.join(c for c in used if fitted.train_covariates[c].kind != 'id')})")
    cov = fitted.train_covariates[covariate]
    if cov.kind == "id":
        raise ConfigError(f"{covariate!r} is the subject id: its effect is a random effect, not a covariate effect")
    if cov.levels is not None or cov.kind in ("categorical", "binary"):
        values = _train_levels(cov)
    else:
        if n_points < 2:
            raise ConfigError(f"the grid needs at least 2 points (got {n_points})")
        values = np.linspace(float(np.min(cov.values)), float(np.max(cov.values)), n_points)
    reference = reference_values(fitted)
    for partner in interaction_partners(fitted, covariate):
        levels = _train_levels(fitted.train_covariates[partner])
        reference[partner] = levels[-1]
    for name, value in (at or {}).items():
        if name == covariate or name not in reference:
            raise ConfigError(f"at {name}=…: not another covariate of the design "
                              f"(covariates: {', '.join(c for c in reference if c != covariate)})")
        reference[name] = _held_value(fitted, name, value)
    grid = pd.DataFrame({name: [value] * len(values) for name, value in reference.items()})
    grid[covariate] = list(values)
    return grid[[covariate] + [c for c in grid.columns if c != covariate]]


def covariate_effect(fitted, covariate: str, n_points: int = 25, level: float = 0.9,
                     at: dict | None = None) -> pd.DataFrame:
    """The grid of :func:`effect_grid` with each feature's predictive mean and interval
    (``F_mean``, ``F_lower``, ``F_upper``: :func:`lmmvae.intervals.predict_frame`)."""
    from lmmvae.intervals import predict_frame

    grid = effect_grid(fitted, covariate, n_points, at)
    with warnings.catch_warnings():  # the population subject is unseen on purpose
        warnings.filterwarnings("ignore", message=r".*not seen in training.*")
        return predict_frame(fitted, grid, level=level, where=f"effect of {covariate}")


def _image(row: np.ndarray, shape) -> np.ndarray:
    shape = [int(s) for s in shape]
    image = row.reshape(shape)
    if image.ndim == 3 and image.shape[0] in (1, 3):  # [C, H, W]
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return np.clip(image, 0.0, 1.0)


def _label(value) -> str:
    return f"{value:.3g}" if isinstance(value, (float, np.floating)) else str(value)


def plot_effect(fitted, covariate: str, png: str | os.PathLike, n_points: int | None = None,
                level: float = 0.9, features: list[str] | None = None, at: dict | None = None) -> pd.DataFrame:
    """Draw the decoded effect of ``covariate`` to ``png``; returns the table drawn.

    Tabular data: one panel per feature (``features``, else the ``MAX_PANELS`` the covariate moves
    most), the predictive mean as a line with its ``level`` interval as a band (points with error
    bars for a categorical covariate). Images: the predictive-mean image at each grid value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmmvae.intervals import feature_names
    from lmmvae.reporting.figures import save

    image_shape = fitted.info.get("image_shape")
    n_points = n_points or (8 if image_shape else 25)
    table = covariate_effect(fitted, covariate, n_points, level, at)
    names = feature_names(fitted)
    reference = {k: table[k].iloc[0] for k in reference_values(fitted) if k != covariate}  # as held in the grid
    held = ", ".join(f"{k} = {_label(v)}" for k, v in reference.items()) or "none"
    x = table[covariate].tolist()
    categorical = not all(isinstance(v, (int, float, np.integer, np.floating)) for v in x) or len(x) <= 3
    if image_shape:
        means = table[[f"{f}_mean" for f in names]].to_numpy()
        fig, axes = plt.subplots(1, len(x), figsize=(1.3 * len(x), 2.1), squeeze=False)
        for ax, value, row in zip(axes[0], x, means):
            ax.imshow(_image(row, image_shape), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(_label(value), fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, 0].set_ylabel(covariate, fontsize=8)
        fig.suptitle(f"Decoded effect of {covariate} (value above each image): the predicted mean image\n"
                     f"others held at {held}", fontsize=8, y=1.08)
    else:
        if features:
            unknown = [f for f in features if f not in names]
            if unknown:
                raise ConfigError(f"unknown feature(s) {', '.join(unknown)}; the model's features: "
                                  f"{', '.join(names[:20])}{', …' if len(names) > 20 else ''}")
            chosen = list(features)
        else:
            spread = [np.ptp(table[f"{f}_mean"].to_numpy()) for f in names]
            chosen = [names[i] for i in sorted(np.argsort(spread)[::-1][:MAX_PANELS])]
        n_cols = min(4, len(chosen))
        n_rows = -(-len(chosen) // n_cols)
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.1 * n_rows + 0.6), squeeze=False)
        positions = np.arange(len(x)) if categorical else np.asarray(x, dtype=float)
        for ax, f in zip(axes.flat, chosen):
            mean, lo, hi = (table[f"{f}{s}"].to_numpy() for s in ("_mean", "_lower", "_upper"))
            if categorical:
                ax.errorbar(positions, mean, yerr=[mean - lo, hi - mean], fmt="o", color="tab:blue",
                            ecolor="tab:blue", capsize=3)
                ax.set_xticks(positions, [_label(v) for v in x], fontsize=7)
                ax.set_xlim(-0.5, len(x) - 0.5)
            else:
                ax.fill_between(positions, lo, hi, color="tab:blue", alpha=0.2, linewidth=0)
                ax.plot(positions, mean, color="tab:blue")
            ax.set_title(f, fontsize=8)
            ax.set_xlabel(covariate, fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(chosen):]:
            ax.set_visible(False)
        from lmmvae.intervals import table_scale

        units = "table units" if table_scale(fitted) is not None else "stored scale"
        for ax in axes[:, 0]:
            ax.set_ylabel(f"value ({units})", fontsize=7)
        from matplotlib.patches import Patch
        from matplotlib.lines import Line2D

        interval = f"{level:.0%} predictive interval (latent + noise)"
        if categorical:
            handles = [Line2D([], [], color="tab:blue", marker="o", linestyle="none", label="predictive mean"),
                       Line2D([], [], color="tab:blue", marker="|", markersize=12, linestyle="none", label=interval)]
        else:
            handles = [Line2D([], [], color="tab:blue", label="predictive mean"),
                       Patch(color="tab:blue", alpha=0.2, label=interval)]
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
        fig.suptitle(f"Decoded effect of {covariate} on each feature; others held at {held}", fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, Path(png))
    return table
