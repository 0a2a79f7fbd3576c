"""The decoded effect of one covariate: the model's prediction along a grid of that covariate, the
other covariates held at reference values (``lmmvae effects RUN --covariate age --png OUT.png``).

This is the interpretability argument of the paper made usable: the covariate moves the latent
mean ``A^T x`` (SPEC 2.1) and the decoder shows what that does in data space — features for tabular
data, images for image data. Each grid row is predicted from covariates alone, as
:func:`lmmvae.answers.intervals.predict_frame` does: the predicted mean (SPEC 2.4) with two bands,

* the **band of the mean**: the distribution of ``E[y | g(z)]`` over ``z ~ p(z | x*, train)``, each
  latent draw decoded to the likelihood's mean, no observation noise (latent uncertainty only);
* the **predictive band**: latent uncertainty *and* the likelihood's noise (where one new
  observation falls).

Whether a covariate *matters* is a question about the difference of means with its own interval:
:mod:`lmmvae.answers.contrast` (two bands that overlap do not say the difference is uncertain). Classical
rows: the band of the fixed-effect mean (from the covariance of ``β̂``) and the Gaussian predictive.

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

from lmmvae.answers.intervals import feature_names, needed_columns, predict_frame, table_scale
from lmmvae.data.levels import match_levels
from lmmvae.errors import ConfigError
from lmmvae.model.design.terms import Term

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
    terms = [t for t in fitted.design.terms
             if isinstance(t, Term) and any(f.covariate == covariate for f in t.factors)]
    if not terms or any(len(t.factors) == 1 for t in terms):
        return []
    partners = {f.covariate for t in terms for f in t.factors if f.covariate != covariate}
    return sorted(p for p in partners if p in fitted.train_covariates and fitted.train_covariates[p].kind == "binary")


def _held_value(fitted, name: str, text, where: str | None = None):
    """A value given as ``--at name=text`` (or as a contrast's level: ``where``), checked against the
    covariate's kind and levels."""
    where = where or f"at {name}={text}"
    cov = fitted.train_covariates[name]
    if cov.levels is not None:
        if cov.kind != "id" and match_levels([text], list(cov.levels))[0] < 0:
            raise ConfigError(f"{where}: not a training level of {name} "
                              f"(levels: {', '.join(map(str, _train_levels(cov)))})")
        return text
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} is {cov.kind}, give a number") from None


def check_covariate(fitted, covariate: str):
    """The training covariate ``covariate`` of the design (a one-line ConfigError otherwise)."""
    used = needed_columns(fitted)
    if covariate not in used:
        raise ConfigError(f"covariate {covariate!r} is not in the model's design {fitted.config.design!r} "
                          f"(covariates: {', '.join(c for c in used if fitted.train_covariates[c].kind != 'id')})")
    cov = fitted.train_covariates[covariate]
    if cov.kind == "id":
        raise ConfigError(f"{covariate!r} is the subject id: its effect is a random effect, not a covariate effect")
    return cov


def held_values(fitted, covariate: str, at: dict | None = None) -> dict:
    """Every other covariate where the effect of ``covariate`` is read: its reference value
    (:func:`reference_values`), a binary interaction partner at 1 (:func:`interaction_partners`),
    or the value ``at`` gives. ``effects`` and ``contrast`` read effects at the same values."""
    reference = reference_values(fitted)
    for partner in interaction_partners(fitted, covariate):
        levels = _train_levels(fitted.train_covariates[partner])
        reference[partner] = levels[-1]
    for name, value in (at or {}).items():
        if name == covariate or name not in reference:
            raise ConfigError(f"at {name}=…: not another covariate of the design "
                              f"(covariates: {', '.join(c for c in reference if c != covariate)})")
        reference[name] = _held_value(fitted, name, value)
    reference.pop(covariate, None)
    return reference


def effect_grid(fitted, covariate: str, n_points: int = 25, at: dict | None = None) -> pd.DataFrame:
    """Covariate rows: ``covariate`` along its grid, every other covariate at its reference value
    (binary interaction partners at 1: :func:`interaction_partners`), or at the value ``at`` gives."""
    cov = check_covariate(fitted, covariate)
    if cov.levels is not None or cov.kind in ("categorical", "binary"):
        values = _train_levels(cov)
    else:
        if n_points < 2:
            raise ConfigError(f"the grid needs at least 2 points (got {n_points})")
        values = np.linspace(float(np.min(cov.values)), float(np.max(cov.values)), n_points)
    reference = held_values(fitted, covariate, at)
    return pd.DataFrame({covariate: list(values), **{name: [value] * len(values) for name, value in reference.items()}})


def covariate_effect(fitted, covariate: str, n_points: int = 25, level: float = 0.9,
                     at: dict | None = None) -> pd.DataFrame:
    """The grid of :func:`effect_grid` with, per feature, the predictive mean ``F_mean``, the
    ``level`` band of the mean ``F_mean_lower``, ``F_mean_upper`` (latent uncertainty only; classical
    rows: the fixed-effect mean's, NaN if the run has none) and the predictive band ``F_lower``,
    ``F_upper`` (latent uncertainty and the likelihood's noise): :func:`lmmvae.answers.intervals.predict_frame`."""
    grid = effect_grid(fitted, covariate, n_points, at)
    with warnings.catch_warnings():  # the population subject is unseen on purpose
        warnings.filterwarnings("ignore", message=r".*not seen in training.*")
        return predict_frame(fitted, grid, level=level, where=f"effect of {covariate}", mean_band=True)


def _image(row: np.ndarray, shape) -> np.ndarray:
    shape = [int(s) for s in shape]
    image = row.reshape(shape)
    if image.ndim == 3 and image.shape[0] in (1, 3):  # [C, H, W]
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return np.clip(image, 0.0, 1.0)


def _label(value) -> str:
    return f"{value:.3g}" if isinstance(value, (float, np.floating)) else str(value)


#: category labels longer than this are wrapped; more categories than ``ROTATE_OVER`` are rotated
WRAP_AT, ROTATE_OVER = 12, 3


def _category_ticks(ax, labels: list[str]) -> None:
    """Category labels that do not overlap: long ones wrapped onto lines, many rotated 40°."""
    import textwrap

    wrapped = ["\n".join(textwrap.wrap(text, WRAP_AT, break_long_words=True)) or text for text in labels]
    rotate = len(labels) > ROTATE_OVER or sum(len(t) for t in labels) > 24
    ax.set_xticks(np.arange(len(labels)), wrapped, fontsize=6 if rotate else 7,
                  rotation=40 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor" if rotate else "default")
    ax.set_xlim(-0.5, len(labels) - 0.5)


def band_labels(fitted, level: float, has_mean_band: bool) -> tuple[str, str]:
    """Legend texts of the two bands: (band of the mean, predictive band), saying what each holds."""
    share = f"{level:.0%}"
    if fitted.predictive_is_gaussian:  # closed-form bands (lmmvae.fitted): say which parameters give them
        if fitted.config.variant == "mean":
            mean = f"{share} band of the mean (its standard error)"
            pred = f"{share} predictive band (the entries' variance)"
        else:
            mean = f"{share} band of the fixed-effect mean (Cov of the fixed effects)"
            pred = f"{share} predictive band (random effect + residual noise)"
        return (mean if has_mean_band else "no band of the mean (this run stores no Cov of the fixed effects)"), pred
    return (f"{share} band of the mean (latent uncertainty, no noise)",
            f"{share} predictive band (latent uncertainty + likelihood noise)")


def _draw_panel(ax, table, f: str, x: list, categorical: bool) -> None:
    """One feature: the mean, its band (dark) inside the predictive band (light)."""
    mean, mlo, mhi, lo, hi = (table[f"{f}{s}"].to_numpy(dtype=float)
                              for s in ("_mean", "_mean_lower", "_mean_upper", "_lower", "_upper"))
    if categorical:
        positions = np.arange(len(x))
        ax.errorbar(positions, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor="tab:blue", alpha=0.35,
                    elinewidth=1, capsize=4)
        if np.isfinite(mlo).any():
            ax.errorbar(positions, mean, yerr=[mean - mlo, mhi - mean], fmt="none", ecolor="tab:blue",
                        elinewidth=3.5, capsize=0)
        ax.plot(positions, mean, "o", color="tab:blue", markersize=4)
        _category_ticks(ax, [_label(v) for v in x])
    else:
        positions = np.asarray(x, dtype=float)
        ax.fill_between(positions, lo, hi, color="tab:blue", alpha=0.15, linewidth=0)
        if np.isfinite(mlo).any():
            ax.fill_between(positions, mlo, mhi, color="tab:blue", alpha=0.4, linewidth=0)
        ax.plot(positions, mean, color="tab:blue")


def _legend(fig, fitted, table, level: float, categorical: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    has_band = np.isfinite(table[[c for c in table.columns if str(c).endswith("_mean_lower")]].to_numpy(float)).any()
    mean_text, pred_text = band_labels(fitted, level, has_band)
    if categorical:
        handles = [Line2D([], [], color="tab:blue", marker="o", linestyle="none", label="predicted mean"),
                   Line2D([], [], color="tab:blue", linewidth=3.5, label=mean_text),
                   Line2D([], [], color="tab:blue", alpha=0.35, linewidth=1, label=pred_text)]
    else:
        handles = [Line2D([], [], color="tab:blue", label="predicted mean"),
                   Patch(color="tab:blue", alpha=0.4, label=mean_text),
                   Patch(color="tab:blue", alpha=0.15, label=pred_text)]
    if not has_band:
        handles[1] = Line2D([], [], linestyle="none", label=mean_text)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False, bbox_to_anchor=(0.5, 0.0))


def plot_effect(fitted, covariate: str, png: str | os.PathLike, n_points: int | None = None,
                level: float = 0.9, features: list[str] | None = None, at: dict | None = None) -> pd.DataFrame:
    """Draw the decoded effect of ``covariate`` to ``png``; returns the table drawn.

    Tabular data: one panel per feature (``features``, else the ``MAX_PANELS`` the covariate moves
    most), the predicted mean with the band of the mean (dark) inside the predictive band (light),
    both at ``level`` (:func:`covariate_effect`); points with two error bars for a categorical
    covariate. Images: the predicted-mean image at each grid value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # lazy, like matplotlib: drawing costs about 0.5 s of import, which lmmvae.api's import should not pay
    from lmmvae.reporting.figures import save

    image_shape = fitted.info.get("image_shape")
    n_points = n_points or (8 if image_shape else 25)
    table = covariate_effect(fitted, covariate, n_points, level, at)
    names = feature_names(fitted)
    held = ", ".join(f"{k} = {_label(table[k].iloc[0])}" for k in table.columns
                     if k != covariate and k in reference_values(fitted)) or "none"
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
        save(fig, Path(png))
        return table
    chosen = _chosen_features(table, names, features)
    n_cols = min(4, len(chosen))
    n_rows = -(-len(chosen) // n_cols)
    tall = 0.5 if categorical and (len(x) > ROTATE_OVER or sum(len(_label(v)) for v in x) > 24) else 0.0
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.8 * n_cols, (2.2 + tall) * n_rows + 0.9), squeeze=False)
    for ax, f in zip(axes.flat, chosen):
        _draw_panel(ax, table, f, x, categorical)
        ax.set_title(f, fontsize=8)
        ax.set_xlabel(covariate, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(chosen):]:
        ax.set_visible(False)
    units = "table units" if table_scale(fitted) is not None else "stored scale"
    for ax in axes[:, 0]:
        ax.set_ylabel(f"value ({units})", fontsize=7)
    _legend(fig, fitted, table, level, categorical)
    fig.suptitle(f"Decoded effect of {covariate} on each feature; others held at {held}", fontsize=9)
    fig.tight_layout(rect=(0, 0.06 + 0.1 / n_rows, 1, 1))
    save(fig, Path(png))
    return table


def _chosen_features(table, names: list[str], features: list[str] | None) -> list[str]:
    """``features`` (checked), else the ``MAX_PANELS`` features whose mean moves most along the grid."""
    if features:
        unknown = [f for f in features if f not in names]
        if unknown:
            raise ConfigError(f"unknown feature(s) {', '.join(unknown)}; the model's features: "
                              f"{', '.join(names[:20])}{', …' if len(names) > 20 else ''}")
        return list(features)
    spread = [np.ptp(table[f"{f}_mean"].to_numpy()) for f in names]
    return [names[i] for i in sorted(np.argsort(spread)[::-1][:MAX_PANELS])]
