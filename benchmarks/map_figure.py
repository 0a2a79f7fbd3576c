"""The map's figure (:mod:`benchmarks.map`): heatmaps of log(test-MSE ratio oLMM-VAE / MixedLM) for
slice A (D × r) and slice B (decoder × noise), each cell annotated with the ratio (mean over seeds;
blue: oLMM-VAE ahead, red: MixedLM ahead), the real data sets as points on slice A (placed by D and
their effective rank, :mod:`benchmarks.map_real`), and a third panel with every cell and real set
against the effective rank per feature (the share of the features' subject-level variation that
does not pool: low = strongly shared)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from benchmarks import map as bmap

LIMIT = math.log(4.0)  # colour scale: ratios 1/4 .. 4


def _axis_position(value: float, ticks: list[float]) -> float:
    """Fractional index of ``value`` on categorical ``ticks``, interpolated in log scale, clipped."""
    logs = np.log(ticks)
    return float(np.interp(math.log(value), logs, np.arange(len(ticks))))


def _heatmap(ax, grid: np.ndarray, xlabels, ylabels, title: str, xlabel: str, ylabel: str, cmap):
    """``grid`` [len(ylabels), len(xlabels)] of ratios (NaN: not run), coloured by log ratio."""
    image = ax.imshow(np.log(grid), cmap=cmap, vmin=-LIMIT, vmax=LIMIT, origin="lower", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not math.isnan(value):
            ax.text(j - 0.45, i + 0.32, f"{value:.2f}", ha="left", va="center", fontsize=9)  # the centre: real sets
    ax.set_xticks(range(len(xlabels)), [str(x) for x in xlabels])
    ax.set_yticks(range(len(ylabels)), [str(y) for y in ylabels])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return image


def draw(summary: list[dict], path: Path, real: list[dict] | None = None, note: str = "") -> Path:
    """Write the figure to ``path`` (PNG) from the map's per-cell ``summary`` and the ``real`` points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("RdBu_r")
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1.1, 1, 1.1]})
    ds, rs = list(bmap.SLICE_A["D"]), sorted({2, *bmap.SLICE_A["r"]})  # r = 2 from slice B's cell
    by = {(s["D"], s["r"], s["decoder"], s["noise"]): s["ratio"] for s in summary}
    grid_a = np.array([[by.get((d, r, bmap.SLICE_A["decoder"], bmap.SLICE_A["noise"]), math.nan) if r <= d else math.nan
                        for d in ds] for r in rs])
    image = _heatmap(axes[0], grid_a, ds, rs, f"A: D × r ({bmap.SLICE_A['decoder']}, noise {bmap.SLICE_A['noise']})",
                     "features D", "latent rank r (generating)", cmap)
    offsets = [(-10, -30), (10, -4), (10, -22)]  # label placement, one per real set: they crowd near D = 20
    for point, offset in zip(real or [], offsets):
        x, y = _axis_position(point["D"], ds), _axis_position(min(point["effective_rank"], rs[-1]), rs)
        y += 0.3 if point["effective_rank"] > rs[-1] else 0.0  # off scale: drawn above the top row's centre
        axes[0].scatter([x], [y], s=90, marker="D", c=[math.log(point["ratio"])], cmap=cmap, vmin=-LIMIT,
                        vmax=LIMIT, edgecolors="black", zorder=3)
        off_scale = " (off scale)" if point["effective_rank"] > rs[-1] else ""
        label = f"{point['name']}: {point['ratio']:.2f}\neff. rank {point['effective_rank']}{off_scale}"
        axes[0].annotate(label, (x, y),
                         xytext=offset, textcoords="offset points", fontsize=7.5,
                         bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8, "lw": 0})
    noises, kinds = list(bmap.SLICE_B["noise"]), list(bmap.SLICE_B["decoder"])
    grid_b = np.array([[by.get((bmap.SLICE_B["D"], bmap.SLICE_B["r"], k, n), math.nan) for n in noises] for k in kinds])
    _heatmap(axes[1], grid_b, noises, kinds, f"B: decoder × noise (D = {bmap.SLICE_B['D']}, r = {bmap.SLICE_B['r']})",
             "noise sd", "decoder", cmap)
    _scatter(axes[2], summary, real or [])
    fig.colorbar(image, ax=axes[:2], location="bottom", shrink=0.6, pad=0.14, label="log ratio (< 0: oLMM-VAE ahead)")
    fig.suptitle("Test MSE ratio oLMM-VAE (ELBO) / MixedLM per feature (mean over seeds; < 1: LMM-VAE ahead)"
                 + (f"\n{note}" if note else ""), y=1.06)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _scatter(ax, summary: list[dict], real: list[dict]) -> None:
    """Every cell (circles, slice A; squares, slice B) and real set (diamonds): ratio against the
    effective rank per feature, both computed the same way (:func:`benchmarks.map_real.effective_rank`)."""
    for s in summary:
        if math.isnan(s.get("effective_rank", math.nan)):
            continue
        marker = "o" if "A" in s["slice"] else "s"
        ax.scatter(s["effective_rank"] / s["D"], s["ratio"], marker=marker, s=16 + 4 * math.sqrt(s["D"]),
                   facecolors="none", edgecolors="tab:blue" if "A" in s["slice"] else "tab:orange")
    for p in real:
        ax.scatter(p["effective_rank"] / p["D"], p["ratio"], marker="D", s=60, c="black")
        ax.annotate(p["name"], (p["effective_rank"] / p["D"], p["ratio"]), xytext=(4, 4), textcoords="offset points",
                    fontsize=7.5)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="effective rank / D (low: features share)", ylabel="ratio",
           title="all cells (o: slice A, □: slice B) and real sets (◆)")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
