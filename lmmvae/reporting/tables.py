"""Benchmark tables: mean ± std over seeds per model and metric, best within one std in bold.

One :class:`Table`, three renderings with the same cells and caption: Markdown
(:func:`to_markdown`), HTML for the Snakemake report (:func:`to_html`) and LaTeX (:func:`to_latex`).

A table spec (built by the workflow from the config, :func:`lmmvae.reporting.experiments`) names
the dataset, the models in row order, the metrics (name -> column label) and the sweep parameter,
if any. Rows are base models; with a sweep, each metric gets one column per sweep value (a model
that is not swept, e.g. a reference baseline, shows its one result in each of them). Bold follows
:func:`lmmvae.answers.metrics.bold_best` (within one std *of the best entry*, SPEC 6), column by column.

When the metrics table says how the runs' training ended (``stopped_early``, written by ``lmmvae fit
--evaluate-out`` / ``lmmvae evaluate`` for neural runs), a last column "stopped early" gives, per
row, the runs that early stopping ended before the epoch budget (converged) out of all its runs
(all seeds and sweep values), e.g. ``2/2``; the caption gives the totals: stopped early vs hit the
budget. Classical rows (mixedlm, mean) have no epochs: "–", and are not counted.

An estimated NLL (neural rows) shows its Monte Carlo standard error after the spread over seeds,
``12.3 ± 0.4 (MC ± 0.02)``, from the runs' ``nll_test_se`` (SPEC 6); exact NLLs (classical rows)
show none. An estimate that has not stopped moving with the draw count is flagged: a run whose
first-half estimate (``nll_test_half``) differs from the full one by more than
:data:`MOVING_SE` of its standard errors (``half − full = (half − other half) / 2`` has the full
estimate's s.e. when both halves estimate the same value) is counted, and the cell ends in
``still moving in k/n``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmvae.answers.metrics import bold_best, mean_std  # numpy only: no torch in the report jobs
from lmmvae.errors import ConfigError
from lmmvae.reporting.experiments import DIAGNOSTICS, HIGHER_IS_BETTER


@dataclass
class Cell:
    mean: float
    std: float
    n: int  # number of seeds (or seed pairs) behind the mean
    bold: bool = False
    mc_se: float | None = None  # Monte Carlo standard error of the mean (the NLL's, SPEC 6); None: exact
    moving: tuple[int, int] | None = None  # (runs whose estimate still moves with the draws, runs checked)


@dataclass
class Table:
    title: str
    row_labels: list[str]
    column_labels: list[str]
    cells: list[list[Cell | None]]  # [row][column]; None: no result
    decimals: list[int]  # per column
    n_seeds: int
    #: per row, (runs stopped early, runs with epochs); None: a row without epochs (classical).
    #: None for the whole table: the metrics table does not say how training ended (older runs)
    training: list[tuple[int, int] | None] | None = None
    budgets: list[int] | None = None  # the epoch budgets of the counted runs


def summarize(frame: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Mean, std (ddof=1) and count per model x metric of the spec's dataset and models."""
    rows_all = frame[(frame["dataset"] == spec["dataset"]) & frame["model"].isin(spec["models"])]
    rows = rows_all[rows_all["metric"].isin(list(spec["metrics"]))]
    out = []
    for (model, metric), group in rows.groupby(["model", "metric"], sort=False):
        values = group["value"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        mean, std = mean_std(values)
        first = group.iloc[0]
        mc_se = _mc_se(rows_all, model, metric)
        moving = _moving(rows_all, model, metric)
        out.append(
            {
                "model": model,
                "base_model": first["base_model"],
                "label": first["label"],
                "sweep_value": first["sweep_value"],
                "metric": metric,
                "mean": mean,
                "std": std,
                "n": int(values.size),
                "mc_se": mc_se,
                "moving": moving,
            }
        )
    return pd.DataFrame(out, columns=["model", "base_model", "label", "sweep_value", "metric",
                                      "mean", "std", "n", "mc_se", "moving"])


#: metrics whose runs also report a Monte Carlo standard error, as metric ``<name>_se`` (SPEC 6)
MC_ERRORS = {"nll_test": "nll_test_se"}


def _mc_se(rows: pd.DataFrame, model: str, metric: str) -> float | None:
    """Monte Carlo standard error of the mean over seeds, ``sqrt(Σ se_s²) / n``, from the runs'
    ``<metric>_se`` rows; None when the runs report none (classical rows are exact)."""
    if metric not in MC_ERRORS:
        return None
    se = rows[(rows["model"] == model) & (rows["metric"] == MC_ERRORS[metric])]["value"].to_numpy(dtype=float)
    se = se[np.isfinite(se)]
    return float(np.sqrt(np.sum(se**2)) / se.size) if se.size else None


#: metrics whose runs also report the estimate from the first half of the draws (SPEC 6)
HALF_DRAWS = {"nll_test": "nll_test_half"}
#: a run's estimate still moves when |first half − full| exceeds this many Monte Carlo s.e.
MOVING_SE = 3.0


def _moving(rows: pd.DataFrame, model: str, metric: str) -> tuple[int, int] | None:
    """(runs whose estimate still moves with the draw count, runs that report both halves), from the
    runs' ``<metric>``, ``<metric>_half`` and ``<metric>_se`` rows; None when none reports them."""
    if metric not in HALF_DRAWS or metric not in MC_ERRORS:
        return None
    needed = [metric, HALF_DRAWS[metric], MC_ERRORS[metric]]
    mine = rows[(rows["model"] == model) & rows["metric"].isin(needed)]  # one run per seed (a model is
    wide = mine.pivot_table(index="seed", columns="metric", values="value", aggfunc="first")  # one sweep value)
    if not set(needed) <= set(wide.columns):
        return None
    wide = wide[needed].dropna()
    if wide.empty:
        return None
    drift = (wide[HALF_DRAWS[metric]] - wide[metric]).abs()
    return int((drift > MOVING_SE * wide[MC_ERRORS[metric]]).sum()), int(len(wide))


def build_table(frame: pd.DataFrame, spec: dict) -> Table:
    """Lay out :func:`summarize` as rows (base models) x columns (metric [x sweep value])."""
    summary = summarize(frame, spec)
    if summary.empty:
        raise ConfigError(
            f"no results for dataset {spec['dataset']!r} and models {', '.join(spec['models'])} "
            "in the metrics table"
        )
    present = set(summary["model"])
    models = [m for m in spec["models"] if m in present]
    info = summary.drop_duplicates("model").set_index("model")
    bases = list(dict.fromkeys(info.loc[m, "base_model"] for m in models))
    labels = {info.loc[m, "base_model"]: info.loc[m, "label"] for m in models}
    swept = [m for m in models if _is_set(info.loc[m, "sweep_value"])]
    sweep_values = list(dict.fromkeys(info.loc[m, "sweep_value"] for m in swept)) or [None]
    parameter = spec.get("sweep_parameter")

    columns, column_keys = [], []
    for metric, metric_label in spec["metrics"].items():
        for value in sweep_values:
            column_keys.append((metric, value))
            columns.append(metric_label if value is None else f"{metric_label}, {parameter}={value}")
    lookup = {(r.base_model, r.sweep_value if _is_set(r.sweep_value) else None, r.metric): r
              for r in summary.itertuples()}

    cells: list[list[Cell | None]] = [[None] * len(columns) for _ in bases]
    for j, (metric, value) in enumerate(column_keys):
        for i, base in enumerate(bases):
            hit = lookup.get((base, value, metric)) or lookup.get((base, None, metric))
            if hit is not None:
                mc_se = hit.mc_se if _is_set(hit.mc_se) else None
                moving = hit.moving if isinstance(hit.moving, tuple) else None
                cells[i][j] = Cell(hit.mean, hit.std, hit.n, mc_se=mc_se, moving=moving)
        present_rows = [i for i in range(len(bases)) if cells[i][j] is not None]
        if present_rows and metric not in DIAGNOSTICS:
            flags = bold_best(
                [cells[i][j].mean for i in present_rows],
                [cells[i][j].std for i in present_rows],
                lower_is_better=metric not in HIGHER_IS_BETTER,
            )
            for i, flag in zip(present_rows, flags):
                cells[i][j].bold = flag
    decimals = [_decimals([c.mean for c in col if c is not None]) for col in zip(*cells)]
    rows = frame[(frame["dataset"] == spec["dataset"]) & frame["model"].isin(models)]
    n_seeds = len(set(rows["seed"]) | set(rows["seed_b"].dropna()))
    training, budgets = _training(rows, {m: info.loc[m, "base_model"] for m in models}, bases)
    return Table(spec.get("title", spec["dataset"]), [labels[b] for b in bases], columns, cells,
                 decimals, n_seeds, training, budgets)


def _training(rows: pd.DataFrame, base_of: dict, bases: list
              ) -> tuple[list[tuple[int, int] | None] | None, list[int] | None]:
    """Per base model, (runs stopped early, runs with epochs): one run per model x seed (the rows of
    one run repeat its training fields; seed-pair rows are not runs). (None, None) when no run says
    how its training ended."""
    if "stopped_early" not in rows:
        return None, None
    runs = rows[rows["seed_b"].isna()].drop_duplicates(["model", "seed"])
    runs = runs[runs["stopped_early"].notna()]
    if runs.empty:
        return None, None
    counts = []
    for base in bases:
        mine = runs[runs["model"].map(base_of) == base]["stopped_early"].astype(bool)
        counts.append((int(mine.sum()), int(mine.size)) if mine.size else None)
    budgets = []
    if "epoch_budget" in runs:
        budgets = sorted({int(b) for b in runs["epoch_budget"].dropna()})
    return counts, budgets


def _training_note(table: Table) -> str:
    """Caption words for the "stopped early" column, with the table's totals."""
    early = sum(c[0] for c in table.training if c)
    total = sum(c[1] for c in table.training if c)
    budgets = table.budgets or []
    if len(budgets) == 1:
        budget = f"the {budgets[0]}-epoch budget"
    elif budgets:
        budget = f"the epoch budget ({budgets[0]}–{budgets[-1]})"
    else:
        budget = "the epoch budget"
    return (f"stopped early: runs that early stopping ended before {budget} (converged) of all runs; "
            f"in all {early} stopped early, {total - early} hit the budget")


def _training_cell(count: tuple[int, int] | None) -> str:
    return "–" if count is None else f"{count[0]}/{count[1]}"


def _is_set(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _decimals(means: list[float], significant: int = 3) -> int:
    """Decimals that show the smallest non-zero |mean| of a column with 3 significant digits."""
    magnitudes = [abs(m) for m in means if np.isfinite(m) and m != 0]
    if not magnitudes:
        return 3
    return int(min(6, max(0, significant - 1 - math.floor(math.log10(min(magnitudes))))))


def _seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def format_cell(cell: Cell | None, decimals: int, pm: str = "±") -> str:
    if cell is None:
        return "–"
    text = f"{cell.mean:.{decimals}f}"
    if cell.n > 1:
        text += f" {pm} {cell.std:.{decimals}f}"
    if cell.mc_se is not None:  # the Monte Carlo error of the estimate itself (NLL, SPEC 6)
        moving = f", still moving in {cell.moving[0]}/{cell.moving[1]}" if cell.moving and cell.moving[0] else ""
        text += f" (MC {pm} {cell.mc_se:.{max(decimals, _decimals([cell.mc_se], 1))}f}{moving})"
    return text


def to_markdown(table: Table) -> str:
    trained = table.training is not None
    header = ["Model", *table.column_labels] + (["Stopped early"] if trained else [])
    lines = [
        f"**{table.title}** ({_caption_note(table)})",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join([":--"] + ["--:"] * (len(header) - 1)) + " |",
    ]
    for i, (label, row) in enumerate(zip(table.row_labels, table.cells)):
        texts = [
            f"**{format_cell(c, d)}**" if c is not None and c.bold else format_cell(c, d)
            for c, d in zip(row, table.decimals)
        ]
        if trained:
            texts.append(_training_cell(table.training[i]))
        lines.append("| " + " | ".join([label, *texts]) + " |")
    return "\n".join(lines) + "\n"


def _caption_note(table: Table) -> str:
    """The caption after the title, shared by the Markdown and HTML tables."""
    note = f"; {_training_note(table)}" if table.training is not None else ""
    mc = "; MC ±: Monte Carlo standard error of an estimated NLL" if _has_mc(table) else ""
    if _has_moving(table):
        mc += (f"; still moving in k/n: in k of n runs the estimate from the first half of the draws is more "
               f"than {MOVING_SE:g} MC s.e. from the full one")
    return f"mean ± std over {_seeds(table.n_seeds)}; bold: within one std of the best{mc}{note}"


def _has_moving(table: Table) -> bool:
    return any(c is not None and c.moving and c.moving[0] for row in table.cells for c in row)


def _has_mc(table: Table) -> bool:
    return any(c is not None and c.mc_se is not None for row in table.cells for c in row)


def to_html(table: Table) -> str:
    """The Markdown table as an HTML ``<table>`` (same cells, bold, caption): a fragment that the
    Snakemake report shows in place (``.. raw:: html``) and a browser opens on its own. Text is
    escaped and non-ASCII characters (±, –) written as character references, so that the file
    reads the same in any encoding."""
    trained = table.training is not None
    header = ["Model", *table.column_labels] + (["Stopped early"] if trained else [])
    left, right = ' style="text-align:left"', ' style="text-align:right"'
    lines = [
        '<table class="lmmvae-table" style="border-collapse:collapse">',
        f"<caption><strong>{_html(table.title)}</strong> ({_html(_caption_note(table))})</caption>",
        "<thead>",
        "<tr>" + "".join(f"<th{left if j == 0 else right}>{_html(h)}</th>"
                         for j, h in enumerate(header)) + "</tr>",
        "</thead>",
        "<tbody>",
    ]
    for i, (label, row) in enumerate(zip(table.row_labels, table.cells)):
        texts = [
            f"<strong>{_html(format_cell(c, d))}</strong>" if c is not None and c.bold
            else _html(format_cell(c, d))
            for c, d in zip(row, table.decimals)
        ]
        if trained:
            texts.append(_html(_training_cell(table.training[i])))
        cells = [f"<td{left}>{_html(label)}</td>"] + [f"<td{right}>{t}</td>" for t in texts]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines) + "\n"


def _html(text: str) -> str:
    return html.escape(str(text)).encode("ascii", "xmlcharrefreplace").decode("ascii")


def to_latex(table: Table) -> str:
    def cell_tex(c: Cell | None, d: int) -> str:
        text = format_cell(c, d, pm=r"$\pm$").replace("–", "--")
        return rf"\textbf{{{text}}}" if c is not None and c.bold else text

    trained = table.training is not None
    header = [*table.column_labels] + (["Stopped early"] if trained else [])
    note = f"; {_tex_escape(_training_note(table))}" if trained else ""
    if _has_mc(table):
        note = r"; MC $\pm$: Monte Carlo standard error of an estimated NLL" + note
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex_escape(table.title)}: mean $\pm$ std over {_seeds(table.n_seeds)}; "
        rf"bold: within one std of the best{note}.}}",
        r"\begin{tabular}{l" + "c" * len(header) + "}",
        r"\toprule",
        " & ".join(["Model", *map(_tex_escape, header)]) + r" \\",
        r"\midrule",
    ]
    for i, (label, row) in enumerate(zip(table.row_labels, table.cells)):
        texts = [cell_tex(c, d) for c, d in zip(row, table.decimals)]
        if trained:
            texts.append(_training_cell(table.training[i]).replace("–", "--"))
        lines.append(" & ".join([_tex_escape(label), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "±": r"$\pm$", "×": r"$\times$", "–": "--"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX.get(char, char) for char in str(text))
