"""Benchmark figures (matplotlib, seaborn for the metric panels; PNG and PDF, written atomically).

* :func:`metrics_figure`: ``by_model`` (one panel per metric, a bar per model, hue = sweep value)
  and ``sweep`` (a metric against the sweep parameter, e.g. the number of basis functions or the
  latent size; models that are not swept are drawn as horizontal reference bands). Error bars are
  ± one standard deviation over seeds (ddof=1, as in the tables).
* :func:`trajectories_figure`: observed images of test subjects over time against the model's
  conditional predictions (SPEC 2.4); held-out (test) time points are framed in red.
* :func:`latent_grid` and :func:`latent_effects_figure`: the interpretability figure of
  sLMM-VAE: latent dimensions against a covariate, the shared effect ``A^T x`` (predicted for an
  unseen subject, whose random effect is zero) and each subject's curve ``A^T x + nu_p``
  (SPEC 3.4), whose vertical distance from the shared curve is that subject's random offset.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lmmvae.atomic import atomic_output  # noqa: E402
from lmmvae.data.h5 import SPLITS, LongitudinalData  # noqa: E402
from lmmvae.errors import ConfigError  # noqa: E402
from lmmvae.reporting.subjects import choose_subjects, subject_label  # noqa: E402

#: axis labels of the usual sweep parameters (others are shown by their config name)
PARAMETER_LABELS = {"latent_dim": "latent dimensions (latent_dim)",
                    "n_basis": "basis functions (n_basis)"}

#: marks the shared-effect curve in a latent grid (its subject id is one no subject has)
SHARED = "shared"


def _unseen_level(levels: list | None):
    """A subject id that no subject has: below the smallest integer id, else a reserved name."""
    if levels and all(isinstance(v, int) for v in levels):
        return min(levels) - 1
    return "__shared__"


def save(fig, png: str | os.PathLike, pdf: str | os.PathLike | None = None) -> None:
    """Save ``fig`` as PNG (and PDF), each written atomically (:mod:`lmmvae.atomic`)."""
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is None:
            continue
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)


def metrics_figure(frame: pd.DataFrame, spec: dict):
    """The ``by_model`` or ``sweep`` figure of one experiment (spec as for tables, plus ``kind``)."""
    rows = frame[(frame["dataset"] == spec["dataset"]) & frame["model"].isin(spec["models"])]
    metrics = list(spec["metrics"])
    rows = rows[rows["metric"].isin(metrics)].copy()
    if rows.empty:
        raise ConfigError(f"no results for {spec['dataset']!r}, {', '.join(metrics)} to plot")
    order = list(dict.fromkeys(rows.set_index("model").loc[
        [m for m in spec["models"] if m in set(rows["model"])], "label"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 2.2, 3.8), squeeze=False)
    drawn = []
    for ax, metric in zip(axes[0], metrics):
        sub = rows[rows["metric"] == metric]
        if sub.empty:
            ax.set_visible(False)
            continue
        if spec["kind"] == "sweep":
            _sweep_panel(ax, sub, spec.get("sweep_parameter"), order)
        else:
            _by_model_panel(ax, sub, order, spec.get("sweep_parameter"))
        if (sub["value"] >= 0).all():  # MSE, MCC: bars and gaps read against zero, not a zoomed axis
            ax.set_ylim(0, max(ax.get_ylim()[1], 1.08 * sub["value"].max()))
        ax.set_title(f"{spec['metrics'][metric]}\n({_sample_size(sub)})", fontsize=10)
        ax.set_ylabel(spec["metrics"][metric])
        drawn.append(ax)
    for ax in drawn:  # one legend, beside the last panel: never over the data
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if drawn:
        handles, labels = drawn[-1].get_legend_handles_labels()
        if handles:
            drawn[-1].legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1),
                             borderaxespad=0, title=spec.get("sweep_parameter") if spec["kind"] != "sweep" else None)
    fig.suptitle(spec.get("title", ""), y=1.02)
    fig.tight_layout()
    return fig


def _sample_size(sub: pd.DataFrame) -> str:
    """``n = 3 seeds per bar``: how many runs each mean and error bar stands on (points: each run)."""
    unit = "seed pair" if "seed_b" in sub and sub["seed_b"].notna().any() else "seed"
    counts = sub.groupby(["label", sub["sweep_value"].fillna("-")]).size()
    low, high = int(counts.min()), int(counts.max())
    n = str(low) if low == high else f"{low}-{high}"
    return f"n = {n} {unit}{'' if n == '1' else 's'} each; dots: single runs" + ("" if high > 1 else ", no error bar")


def _by_model_panel(ax, sub: pd.DataFrame, order: list[str], parameter: str | None) -> None:
    import seaborn as sns  # lazy: seaborn imports scipy.stats (about a second); trajectories need neither

    swept = sub["sweep_value"].notna().any()
    hue = None
    if swept:
        sub = sub.assign(**{parameter: sub["sweep_value"].fillna("–")})
        hue = parameter
    present = [o for o in order if o in set(sub["label"])]
    sns.barplot(data=sub, x="label", y="value", hue=hue, order=present, errorbar="sd", capsize=0.15, ax=ax,
                palette="crest" if hue else None, alpha=0.8)
    sns.stripplot(data=sub, x="label", y="value", hue=hue, order=present, dodge=bool(hue), ax=ax,
                  palette=["black"] * sub[hue].nunique() if hue else None, color=None if hue else "black",
                  size=3.5, jitter=0.08, legend=False)
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")


def _sweep_panel(ax, sub: pd.DataFrame, parameter: str | None, order: list[str]) -> None:
    import seaborn as sns

    swept = sub[sub["sweep_value"].notna()].copy()
    swept[parameter] = pd.to_numeric(swept["sweep_value"], errors="coerce")
    if swept[parameter].isna().any():  # non-numeric sweep values: keep them as categories
        swept[parameter] = swept["sweep_value"]
    labels = [o for o in order if o in set(swept["label"])]  # same colours in every panel
    sns.lineplot(data=swept, x=parameter, y="value", hue="label", style="label", markers=True,
                 dashes=False, errorbar="sd", err_style="bars", ax=ax, hue_order=labels,
                 style_order=labels)
    colors = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    for label, runs in swept.groupby("label", sort=False):  # every run, not only the mean
        ax.scatter(runs[parameter], runs["value"], s=10, color=colors[label], alpha=0.6, zorder=3,
                   edgecolor="none")
    palette = sns.color_palette("Greys", 4)[2:]
    top = ax.get_ylim()[1]
    for k, (label, ref) in enumerate(sub[sub["sweep_value"].isna()].groupby("label", sort=False)):
        mean = ref["value"].mean()
        std = ref["value"].std(ddof=1) if len(ref) > 1 else 0.0
        color = palette[k % len(palette)]
        ax.axhline(mean, color=color, linestyle="--", label=f"{label} (not swept, ± sd)")
        ax.axhspan(mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        top = max(top, mean + std + 0.05 * abs(mean + std))
    ax.set_ylim(top=top)  # reference bands are not data: they would otherwise be cut off
    ax.set_xlabel(PARAMETER_LABELS.get(parameter, parameter))
    if pd.api.types.is_numeric_dtype(swept[parameter]):
        ax.set_xticks(sorted(swept[parameter].unique()))


def _subject_covariate(data: LongitudinalData) -> str:
    ids = [n for n, c in data.covariates.items() if c.kind == "id"]
    if not ids:
        raise ConfigError(f"{data.name}: no covariate of kind 'id' identifies the subjects")
    return ids[0]


def _time_covariate(data: LongitudinalData, time: str | None) -> str:
    if time is not None:
        if time not in data.covariates:
            raise ConfigError(f"{data.name}: no covariate {time!r}; have {', '.join(data.covariates)}")
        return time
    times = [n for n, c in data.covariates.items() if c.kind == "time"]
    if not times:
        raise ConfigError(f"{data.name}: no covariate of kind 'time'; name one with `time:`")
    return times[0]


def trajectories_figure(data: LongitudinalData, y_pred: np.ndarray, subjects: int = 2,
                        steps: int = 10, title: str = "", time: str | None = None):
    """Truth (``y_full`` where known, else ``y``) and prediction of ``subjects`` test subjects, at up
    to ``steps`` time points spread over each trajectory. The subjects are chosen by
    :func:`lmmvae.reporting.subjects.choose_subjects` (a diseased Health MNIST subject among them when
    the test split has one); each row pair is labelled with the subject's id and covariates."""
    if data.image_shape is None:
        raise ConfigError(f"{data.name}: trajectories need image data (no image_shape attribute)")
    if y_pred.shape != data.y.shape:
        raise ConfigError(f"predictions have shape {y_pred.shape}, the data {data.y.shape}")
    subject = data.covariates[_subject_covariate(data)].values
    time_name = _time_covariate(data, time)
    times = data.covariates[time_name].values
    test = data.split == SPLITS["test"]
    chosen = np.asarray(choose_subjects(data, np.unique(subject[test]), subjects), dtype=np.int64)
    if chosen.size == 0:
        raise ConfigError(f"{data.name}: no test observations, so no test subject to draw")
    truth = data.y_full if data.y_full is not None else np.where(data.mask == 1, data.y, np.nan)
    n_cols = min(steps, max(int((subject == s).sum()) for s in chosen))
    fig, axes = plt.subplots(2 * len(chosen), n_cols, figsize=(1.1 * n_cols + 2.2, 2.4 * len(chosen)),
                             squeeze=False)
    for k, s in enumerate(chosen):
        rows = np.flatnonzero(subject == s)
        rows = rows[np.argsort(times[rows], kind="stable")]
        picked = rows[np.unique(np.linspace(0, len(rows) - 1, n_cols).round().astype(int))]
        name = subject_label(data, int(s))
        for j in range(n_cols):
            for r, (source, what) in enumerate(((truth, "truth"), (y_pred, "predicted"))):
                ax = axes[2 * k + r, j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j >= len(picked):
                    ax.set_visible(False)
                    continue
                i = picked[j]
                ax.imshow(source[i].reshape(data.image_shape), cmap="gray", vmin=0, vmax=1)
                if test[i]:
                    for spine in ax.spines.values():
                        spine.set_edgecolor("red")
                        spine.set_linewidth(2)
                if r == 0:
                    ax.set_title(f"{time_name}={times[i]:.3g}", fontsize=7)
                if j == 0:
                    ax.set_ylabel(f"{name}\n\n{what}" if r == 0 else what, fontsize=7, rotation=0,
                                  ha="right", va="center")
    fig.suptitle(f"{title}: test subjects, truth vs prediction (red: held-out time points)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def latent_grid(data: LongitudinalData, covariate: str, points: int = 64,
                subjects: int = 5) -> pd.DataFrame:
    """Covariate rows for ``lmmvae predict``: ``covariate`` on a grid over its training range,
    for an unseen subject (``curve = shared``) and the first ``subjects`` training subjects; the
    other covariates keep the values of each subject's first training observation."""
    if covariate not in data.covariates:
        raise ConfigError(f"{data.name}: no covariate {covariate!r}; have {', '.join(data.covariates)}")
    if data.covariates[covariate].is_coded:
        raise ConfigError(f"{data.name}: covariate {covariate!r} is not continuous; cannot grid it")
    id_name = _subject_covariate(data)
    subject = data.covariates[id_name].values
    train = np.flatnonzero(data.split == SPLITS["train"])
    values = data.covariates[covariate].values[train]
    grid = np.linspace(values.min(), values.max(), points)
    chosen = np.unique(subject[train])[:subjects]
    frames = []
    for curve, s in [(SHARED, chosen[0])] + [(None, s) for s in chosen]:
        first = train[np.flatnonzero(subject[train] == s)[0]]
        row = {}
        for name, cov in data.covariates.items():
            value = cov.values[first]
            row[name] = cov.levels[value] if cov.levels is not None else value
        level = row[id_name]
        row[id_name] = _unseen_level(data.covariates[id_name].levels) if curve == SHARED else level
        frame = pd.DataFrame({**row, covariate: grid}, index=range(points))
        frame["curve"] = "shared" if curve == SHARED else f"subject {level}"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def latent_effects_figure(grid: pd.DataFrame, z: np.ndarray, covariate: str, title: str = "",
                          n_dims: int = 2):
    """The ``n_dims`` latent dimensions that vary most with ``covariate`` along the shared curve:
    shared effect (black) and each subject's curve (colour)."""
    if len(grid) != len(z):
        raise ConfigError(f"latent predictions have {len(z)} rows, the grid {len(grid)}")
    shared = (grid["curve"] == "shared").to_numpy()
    spread = z[shared].var(axis=0)  # [L]
    dims = np.argsort(spread)[::-1][: min(n_dims, z.shape[1])]
    fig, axes = plt.subplots(1, len(dims), figsize=(4.6 * len(dims), 3.6), squeeze=False)
    curves = [c for c in dict.fromkeys(grid["curve"]) if c != "shared"]
    import seaborn as sns

    colors = sns.color_palette("husl", len(curves))
    for ax, d in zip(axes[0], dims):
        for curve, color in zip(curves, colors):
            rows = (grid["curve"] == curve).to_numpy()
            ax.plot(grid[covariate][rows], z[rows, d], color=color, linewidth=1, label=curve)
        ax.plot(grid[covariate][shared], z[shared, d], color="black", linewidth=2.5,
                label="shared effect")
        ax.set_xlabel(covariate)
        ax.set_ylabel(f"z[{d}] (latent units)")
        ax.set_title(f"latent dimension {d}")
    axes[0, -1].legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(f"{title}: shared effect of {covariate} and subject offsets", y=1.02)
    fig.tight_layout()
    return fig
