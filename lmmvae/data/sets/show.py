"""``lmmvae data show``: a text summary of a longitudinal HDF5 file and a picture of examples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lmmvae.atomic import atomic_output
from lmmvae.data.h5 import SPLITS, LongitudinalData
from lmmvae.reporting.subjects import choose_subjects, subject_codes, subject_label

_SPLIT_LETTER = {SPLITS["train"]: "T", SPLITS["validation"]: "V", SPLITS["test"]: "X"}


def _time_covariate(data: LongitudinalData) -> str | None:
    """The covariate that orders a subject's observations: the first of kind time, else the first
    continuous one (Rotating MNIST's angle), else none."""
    for kind in ("time", "continuous"):
        for name, cov in data.covariates.items():
            if cov.kind == kind:
                return name
    return None


def summary(data: LongitudinalData, source: str = "") -> str:
    """Human-readable summary: sizes, subjects, split, missing rate, covariates with kinds."""
    n, d = data.y.shape
    image = data.image_shape
    lines = [f"{source or data.name}: {data.name} (generator {data.attrs.get('generator', '?')}, "
             f"seed {data.attrs.get('seed', '-')})"]
    lines.append(f"  N = {n} observations, D = {d} features"
                 + (f" (images {'x'.join(map(str, image))})" if image else ""))
    lines.append(f"  subjects: {len(np.unique(subject_codes(data)))}")
    counts = {name: int((data.split == code).sum()) for name, code in SPLITS.items()}
    lines.append("  split: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    lines.append(f"  missing rate: {100 * (1 - data.mask.mean()):.1f} % of entries")
    lines.append("  covariates:")
    for name, cov in data.covariates.items():
        if cov.levels is not None:
            shown = ", ".join(str(v) for v in cov.levels[:5]) + (", ..." if len(cov.levels) > 5 else "")
            detail = f"{len(cov.levels)} levels: {shown}"
        elif cov.kind == "binary":
            detail = f"share of 1: {cov.values.mean():.3f}" if n else ""
        else:
            detail = f"range {cov.values.min():.4g} .. {cov.values.max():.4g}" if n else ""
        lines.append(f"    {name:<22} {cov.kind:<12} {detail}")
    names = data.attrs.get("feature_names")
    if names is not None:
        lines.append(f"  features: {', '.join(map(str, names[:12]))}" + (", ..." if len(names) > 12 else ""))
    extra = []
    if data.y_full is not None:
        extra.append("y_full")
    if data.latent_truth is not None:
        label = data.attrs.get("latent_truth_names")
        extra.append(f"latent_truth [{n}, {data.latent_truth.shape[1]}]" + (f" ({', '.join(label)})" if label else ""))
    if extra:
        lines.append("  also: " + "; ".join(extra))
    return "\n".join(lines)


def _example_subjects(data: LongitudinalData, n_subjects: int) -> list[int]:
    """Subjects with test observations first (they show the split), then the others; within each,
    chosen by :func:`choose_subjects` (a diseased subject among them where there is one)."""
    subject = subject_codes(data)
    tested = np.unique(subject[data.split == SPLITS["test"]])
    others = np.setdiff1d(np.unique(subject), tested)
    half = n_subjects // 2 if len(others) else n_subjects
    first = choose_subjects(data, tested, half)
    return first + choose_subjects(data, others, n_subjects - len(first))


def plot_examples(data: LongitudinalData, path: str | os.PathLike, n_subjects: int = 6, n_columns: int = 10) -> Path:
    """Save a PNG of example trajectories: images over time per subject (rows, labelled with the
    subject's id and constant covariates), missing pixels in red, each titled with its time and
    split (T train, V validation, X test); or, for tabular data, the best-observed features over
    time, one line per subject (legend beside the panels). Written atomically."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    subject, time_name = subject_codes(data), _time_covariate(data)
    time = data.covariates[time_name].values if time_name else np.arange(data.n_obs, dtype=float)
    subjects = _example_subjects(data, n_subjects)
    if data.image_shape:
        fig = Figure(figsize=(1.3 * n_columns + 1.6, 1.45 * len(subjects) + 0.3))
        axes = fig.subplots(len(subjects), n_columns, squeeze=False)
        for r, s in enumerate(subjects):
            rows = np.flatnonzero(subject == s)
            rows = rows[np.argsort(time[rows], kind="stable")]
            rows = rows[np.unique(np.linspace(0, len(rows) - 1, min(n_columns, len(rows))).round().astype(int))]
            axes[r][0].text(-0.12, 0.5, subject_label(data, s), transform=axes[r][0].transAxes,
                            ha="right", va="center", fontsize=7)
            for c, ax in enumerate(axes[r]):
                ax.set_axis_off()
                if c >= len(rows):
                    continue
                i = rows[c]
                pixels = np.ma.masked_array(data.y[i], mask=data.mask[i] == 0).reshape(data.image_shape)
                ax.imshow(pixels, cmap=_gray_with_red(), vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"{time_name or 'row'}={time[i]:.3g} {_SPLIT_LETTER[int(data.split[i])]}", fontsize=7)
        fig.suptitle(f"{data.name}: one row per subject, sampled over {time_name or 'rows'} "
                     "(T train, V validation, X test; red = missing pixel)", fontsize=9)
    else:
        observed = data.mask.mean(axis=0)  # [D]
        features = np.argsort(-observed, kind="stable")[:6]
        names = data.attrs.get("feature_names") or [f"y{j}" for j in range(data.n_features)]
        standardised = data.attrs.get("feature_std") is not None
        fig = Figure(figsize=(13.5, 6.5))
        axes = fig.subplots(2, 3, squeeze=False).ravel()
        colors = [f"C{k % 10}" for k in range(len(subjects))]
        for ax, j in zip(axes, features):
            for s, color in zip(subjects, colors):
                rows = np.flatnonzero((subject == s) & (data.mask[:, j] == 1))
                rows = rows[np.argsort(time[rows], kind="stable")]
                ax.plot(time[rows], data.y[rows, j], marker=".", linewidth=1, color=color)
                test = rows[data.split[rows] == SPLITS["test"]]
                ax.plot(time[test], data.y[test, j], "kx", markersize=5)
            ax.set_title(f"{names[j]} (observed {100 * observed[j]:.0f} %)", fontsize=9)
            ax.set_xlabel(time_name or "row", fontsize=8)
            ax.set_ylabel("standardised value (sd)" if standardised else "value", fontsize=8)
        for ax in axes[len(features):]:
            ax.set_axis_off()
        handles = [Line2D([], [], color=c, marker=".", label=subject_label(data, s).replace("\n", ", "))
                   for s, c in zip(subjects, colors)]
        handles.append(Line2D([], [], color="k", marker="x", linestyle="", label="test observation"))
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        fig.suptitle(f"{data.name}: one line per subject"
                     + (", standardised values (training mean 0, sd 1)" if standardised else ""), fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png", bbox_inches="tight")
    return Path(path)


def _gray_with_red():
    from matplotlib import colormaps

    return colormaps["gray"].with_extremes(bad="red")
