"""Reporting of the benchmark (config -> plan: tests/test_reporting_plan.py): metrics files -> metrics.csv -> tables and figures.

Values are hand-computed: e.g. seeds [0.10, 0.12, 0.14] give 0.120 ± 0.020 (ddof=1).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from lmmvae.cli import main
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.errors import ConfigError, RunError
from lmmvae.reporting import figures
from lmmvae.reporting.aggregate import aggregate, read_metrics, write_csv
from lmmvae.reporting.tables import Cell, Table, build_table, to_html, to_latex, to_markdown

SCHEMA = "workflow/schemas/config.schema.yaml"


def write_runs(tmp_path, results: dict, sweep=None) -> dict:
    """metrics.json per (model, seed) from {model: {metric: [value per seed]}}; the manifest."""
    runs = []
    for model, metrics in results.items():
        n_seeds = len(next(iter(metrics.values())))
        for seed in range(n_seeds):
            path = tmp_path / model / f"seed{seed}" / "metrics.json"
            path.parent.mkdir(parents=True)
            values = {m: v[seed] for m, v in metrics.items() if v[seed] is not None}
            path.write_text(json.dumps({"metrics": values, "variant": "olmm", "objective": "elbo",
                                        "latent_dim": 4, "seed": seed}))
            base, value = (sweep or {}).get(model, (model, None))
            runs.append({"dataset": "d", "model": model, "base_model": base, "label": base.upper(),
                         "sweep_parameter": "latent_dim" if value is not None else None,
                         "sweep_value": value, "seed": seed, "path": str(path)})
    return {"runs": runs, "seed_pairs": []}


def spec(models, metrics, sweep_parameter=None):
    return {"title": "T", "dataset": "d", "models": models, "metrics": metrics,
            "sweep_parameter": sweep_parameter}


def test_table_mean_std_and_bold_within_one_std_of_the_best(tmp_path):
    frame = aggregate(write_runs(tmp_path, {
        "a": {"mse_test": [0.10, 0.12, 0.14], "mcc_truth": [0.5, 0.6, 0.7]},
        "b": {"mse_test": [0.13, 0.13, 0.13], "mcc_truth": [0.95, 0.95, 0.95]},
        "c": {"mse_test": [0.20, 0.22, 0.24], "mcc_truth": [0.8, 0.9, 1.0]},
    }))
    assert len(frame) == 18 and set(frame["seed"]) == {0, 1, 2}
    table = build_table(frame, spec(["a", "b", "c"], {"mse_test": "MSE", "mcc_truth": "MCC"}))
    md = to_markdown(table)
    # MSE, lower is better: best a = 0.12 ± 0.02, so b (0.13) is within one std of it, c is not
    assert "| A | **0.120 ± 0.020** | 0.600 ± 0.100 |" in md
    # MCC, higher is better: best b = 0.95 ± 0; c = 0.9 ± 0.1 is NOT bold although its own std
    # would reach 0.95: the tolerance is the best entry's std
    assert "| B | **0.130 ± 0.000** | **0.950 ± 0.000** |" in md
    assert "| C | 0.220 ± 0.020 | 0.900 ± 0.100 |" in md
    assert "3 seeds" in md
    tex = to_latex(table)
    assert r"\textbf{0.120 $\pm$ 0.020} & 0.600 $\pm$ 0.100 \\" in tex
    assert tex.count(r"\textbf") == 3 and r"\begin{tabular}{lcc}" in tex


def test_single_seed_shows_mean_only_and_missing_metric_a_dash(tmp_path):
    frame = aggregate(write_runs(tmp_path, {"a": {"mse_test": [0.5], "mse_impute": [None]},
                                            "b": {"mse_test": [0.25], "mse_impute": [0.0123]}}))
    md = to_markdown(build_table(frame, spec(["a", "b"], {"mse_test": "MSE", "mse_impute": "Imp"})))
    assert "| A | 0.500 | – |" in md  # 3 significant digits of the smallest mean in the column
    assert "| B | **0.250** | **0.0123** |" in md


def test_sweep_columns_and_unswept_reference_in_each(tmp_path):
    frame = aggregate(write_runs(tmp_path, {
        "m_l16": {"mse_test": [0.30, 0.32]}, "m_l32": {"mse_test": [0.20, 0.22]},
        "ref": {"mse_test": [0.25, 0.25]},
    }, sweep={"m_l16": ("m", 16), "m_l32": ("m", 32)}))
    table = build_table(frame, spec(["m_l16", "m_l32", "ref"], {"mse_test": "MSE"}, "latent_dim"))
    assert table.column_labels == ["MSE, latent_dim=16", "MSE, latent_dim=32"]
    assert table.row_labels == ["M", "REF"]
    (m16, m32), (r16, r32) = table.cells
    assert m16.mean == pytest.approx(0.31) and m32.mean == pytest.approx(0.21)
    assert r16.mean == r32.mean == pytest.approx(0.25)
    assert (m16.bold, r16.bold, m32.bold, r32.bold) == (False, True, True, False)


def test_aggregate_seed_pairs_round_trip_and_missing_file(tmp_path):
    manifest = write_runs(tmp_path, {"a": {"nll_test": [1.0, 2.0]}})
    pair = tmp_path / "a" / "mcc" / "seed0_seed1.json"
    pair.parent.mkdir()
    pair.write_text(json.dumps({"mcc": 0.75}))
    manifest["seed_pairs"] = [{**manifest["runs"][0], "seed_b": 1, "path": str(pair),
                               "run_path": manifest["runs"][0]["path"]}]
    frame = aggregate(manifest)
    mcc = frame[frame["metric"] == "mcc_seeds"].iloc[0]
    assert (mcc["seed"], mcc["seed_b"], mcc["value"], mcc["variant"]) == (0, 1, 0.75, "olmm")
    write_csv(frame, tmp_path / "metrics.csv")
    back = read_metrics(tmp_path / "metrics.csv")
    assert back["value"].tolist() == frame["value"].tolist()
    assert not list(tmp_path.glob(".*.tmp"))
    manifest["runs"][1]["path"] = str(tmp_path / "gone.json")
    with pytest.raises(RunError, match="gone.json: no such metrics file"):
        aggregate(manifest)


def test_tables_count_runs_that_stopped_early_vs_hit_the_budget(tmp_path):
    """Hand-made training ends: model m (swept, 2 values x 2 seeds) stopped early in 3 of its 4
    runs, model b in 0 of 2, the classical row has no epochs ("–", not counted); the seed-pair
    row of m is not a run. Through metrics.csv and back, as the report jobs read it."""
    manifest = write_runs(tmp_path, {
        "m_l16": {"mse_test": [0.30, 0.32]}, "m_l32": {"mse_test": [0.20, 0.22]},
        "b": {"mse_test": [0.25, 0.26]}, "lmm": {"mse_test": [0.40, 0.40]},
    }, sweep={"m_l16": ("m", 16), "m_l32": ("m", 32)})
    ends = {("m_l16", 0): (40, 60, True), ("m_l16", 1): (100, 100, False), ("m_l32", 0): (30, 50, True),
            ("m_l32", 1): (70, 90, True), ("b", 0): (99, 100, False), ("b", 1): (100, 100, False)}
    for run in manifest["runs"]:
        path = tmp_path / run["model"] / f"seed{run['seed']}" / "metrics.json"
        result = json.loads(path.read_text())
        if run["model"] == "lmm":
            result.update(variant="mixedlm", objective=None, latent_dim=None, best_epoch=None,
                          epochs_run=None, epoch_budget=None, stopped_early=None)
        else:
            best, ran, early = ends[(run["model"], run["seed"])]
            result.update(best_epoch=best, epochs_run=ran, epoch_budget=100, stopped_early=early)
        path.write_text(json.dumps(result))
    pair = tmp_path / "mcc.json"
    pair.write_text(json.dumps({"mcc": 0.5}))
    manifest["seed_pairs"] = [{**manifest["runs"][0], "seed_b": 1, "path": str(pair),
                               "run_path": manifest["runs"][0]["path"]}]
    write_csv(aggregate(manifest), tmp_path / "metrics.csv")
    frame = read_metrics(tmp_path / "metrics.csv")
    run = frame[(frame["model"] == "m_l16") & (frame["seed"] == 1) & frame["seed_b"].isna()].iloc[0]
    assert (run["best_epoch"], run["epochs_run"], run["epoch_budget"], run["stopped_early"]) == (100, 100, 100, False)
    assert frame[frame["model"] == "lmm"]["stopped_early"].isna().all()

    table = build_table(frame, spec(["m_l16", "m_l32", "b", "lmm"], {"mse_test": "MSE", "mcc_seeds": "MCC"},
                                    "latent_dim"))
    assert table.training == [(3, 4), (0, 2), None] and table.budgets == [100]
    md = to_markdown(table)
    assert "| Model | MSE, latent_dim=16 | MSE, latent_dim=32 | MCC, latent_dim=16 | MCC, latent_dim=32 " \
           "| Stopped early |" in md
    assert md.splitlines()[3].count("--:") == 5
    assert "| M | 0.310 ± 0.014 | **0.210 ± 0.014** | **0.500** | – | 3/4 |" in md
    assert md.splitlines()[-2].endswith("| 0/2 |") and md.splitlines()[-1].endswith("| – |")
    assert "before the 100-epoch budget (converged) of all runs; in all 3 stopped early, 3 hit the budget" in md
    tex = to_latex(table)
    assert r"\begin{tabular}{lccccc}" in tex and r"& Stopped early \\" in tex
    assert tex.rstrip().splitlines()[-5].endswith(r"& 0/2 \\")
    assert tex.rstrip().splitlines()[-4].endswith(r"& -- \\")
    assert "in all 3 stopped early, 3 hit the budget." in tex


class _Cells(HTMLParser):
    """An HTML table as its caption text and rows of cells, each cell as (text, bold)."""

    def __init__(self, html: str):
        super().__init__()
        self.caption, self.rows, self._in, self._bold = "", [], None, False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append(["", False])
            self._in = "cell"
        elif tag == "caption":
            self._in = "caption"
        elif tag == "strong":
            self._bold = True

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption"):
            self._in = None
        elif tag == "strong":
            self._bold = False

    def handle_data(self, data):
        if self._in == "caption":
            self.caption += f"**{data}**" if self._bold else data
        elif self._in == "cell":
            self.rows[-1][-1][0] += data
            self.rows[-1][-1][1] |= self._bold


def markdown_cells(md: str) -> list[list[tuple[str, bool]]]:
    """The Markdown table's header and body rows (the alignment row left out) as (text, bold)."""
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    out = []
    for line in rows[:1] + rows[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        out.append([(c.strip("*"), c.startswith("**")) for c in cells])
    return out


def test_html_table_has_the_markdown_tables_cells_bold_and_caption():
    """A 2 x 2 table checked by hand: bold best, mean ± std, a missing cell, the stopped-early
    column and the caption, identical in HTML and Markdown; text is escaped in HTML."""
    table = Table("T & <co>", ["A", "B <ref>"], ["MSE", "NLL"],
                  [[Cell(0.12, 0.02, 3, bold=True), Cell(1.5, 0.1, 3)],
                   [Cell(0.2, 0.01, 3), None]],
                  decimals=[3, 2], n_seeds=3, training=[(1, 2), None], budgets=[100])
    expected = [
        [("Model", False), ("MSE", False), ("NLL", False), ("Stopped early", False)],
        [("A", False), ("0.120 ± 0.020", True), ("1.50 ± 0.10", False), ("1/2", False)],
        [("B <ref>", False), ("0.200 ± 0.010", False), ("–", False), ("–", False)],
    ]
    html = to_html(table)
    parsed = _Cells(html)
    assert [[tuple(c) for c in row] for row in parsed.rows] == expected
    md = to_markdown(table)
    assert markdown_cells(md) == expected
    assert parsed.caption == md.splitlines()[0] == (
        "**T & <co>** (mean ± std over 3 seeds; bold: within one std of the best; stopped early: "
        "runs that early stopping ended before the 100-epoch budget (converged) of all runs; in all "
        "1 stopped early, 1 hit the budget)")
    assert html.isascii() and "&plusmn;" not in html and "&#177;" in html  # ± as a reference
    assert "T &amp; &lt;co&gt;" in html and "<ref>" not in html  # escaped, not markup
    assert html.startswith("<table") and html.rstrip().endswith("</table>")


def test_html_table_of_real_metrics_matches_markdown(tmp_path):
    frame = aggregate(write_runs(tmp_path, {"a": {"mse_test": [0.10, 0.12, 0.14], "mcc_truth": [0.5, 0.6, 0.7]},
                                            "b": {"mse_test": [0.13, 0.13, 0.13], "mcc_truth": [0.95] * 3}}))
    table = build_table(frame, spec(["a", "b"], {"mse_test": "MSE", "mcc_truth": "MCC"}))
    parsed = _Cells(to_html(table))
    assert [[tuple(c) for c in row] for row in parsed.rows] == markdown_cells(to_markdown(table))
    assert parsed.rows[1][1] == ["0.120 ± 0.020", True] and "Stopped early" not in to_html(table)


def test_tables_without_training_fields_have_no_stopped_early_column(tmp_path):
    frame = aggregate(write_runs(tmp_path, {"a": {"mse_test": [0.5]}}))
    table = build_table(frame.drop(columns=["stopped_early"]), spec(["a"], {"mse_test": "MSE"}))
    assert table.training is None and "Stopped early" not in to_markdown(table) + to_latex(table)


def longitudinal(n_subjects=4, n_times=5, test_subjects=(2, 3)) -> LongitudinalData:
    subject = np.repeat(np.arange(n_subjects), n_times)
    time = np.tile(np.arange(n_times, dtype=float), n_subjects)
    split = np.where(np.isin(subject, test_subjects) & (time >= 3), 2, 0)
    rng = np.random.default_rng(0)
    y = rng.uniform(size=(len(subject), 16)).astype(np.float32)
    return LongitudinalData(
        y=y, mask=np.ones_like(y, np.uint8), split=split,
        covariates={"t": Covariate(time * 2.0, "time"),
                    "id": Covariate(subject, "id", levels=[10, 11, 12, 13]),
                    "sex": Covariate(subject % 2, "binary")},
        attrs={"name": "toy", "image_shape": [4, 4]})


def test_latent_grid_shared_curve_has_an_unseen_id_and_spans_the_train_range():
    grid = figures.latent_grid(longitudinal(), "t", points=5, subjects=2)
    shared = grid[grid["curve"] == "shared"]
    assert shared["id"].unique().tolist() == [9]  # below the smallest id 10: no subject has it
    assert shared["t"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert grid["curve"].unique().tolist() == ["shared", "subject 10", "subject 11"]
    assert grid.loc[grid["curve"] == "subject 11", "sex"].unique().tolist() == [1]


def test_latent_effects_shows_the_dims_that_vary_most_along_the_shared_curve():
    grid = figures.latent_grid(longitudinal(), "t", points=5, subjects=2)
    t = grid["t"].to_numpy()
    z = np.stack([0.1 * t, np.zeros_like(t), np.sin(t) * 5, 2 + 0 * t], axis=1)  # [rows, 4]
    fig = figures.latent_effects_figure(grid, z, "t", "toy", n_dims=2)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["latent dimension 2", "latent dimension 0"]


def test_trajectories_draw_the_test_subjects_in_time_order():
    data = longitudinal()
    fig = figures.trajectories_figure(data, data.y, subjects=2, steps=5, title="toy")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    # each row pair names the subject and its subject-level covariates (sex), not the time-varying t
    assert labels == ["subject 12\nsex=0\n\ntruth", "predicted", "subject 13\nsex=1\n\ntruth", "predicted"]
    assert [ax.get_title() for ax in fig.axes[:5]] == [f"t={v:g}" for v in (0, 2, 4, 6, 8)]
    red = [ax for ax in fig.axes[:5] if ax.spines["top"].get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(red) == 2  # times 6 and 8 (time index >= 3) are test observations


def test_report_cli_writes_tables_and_figures_and_fails_in_one_line(tmp_path, capsys):
    manifest = write_runs(tmp_path, {"a": {"mse_test": [0.1, 0.2]}, "b": {"mse_test": [0.3, 0.3]}})
    (tmp_path / "runs.json").write_text(json.dumps(manifest))
    csv = tmp_path / "metrics.csv"
    assert main(["report", "aggregate", "--manifest", str(tmp_path / "runs.json"),
                 "--out", str(csv)]) == 0
    table_spec = json.dumps(spec(["a", "b"], ["mse_test"]))
    assert main(["report", "table", "--metrics", str(csv), "--spec", table_spec,
                 "--md", str(tmp_path / "t.md"), "--tex", str(tmp_path / "t.tex"),
                 "--html", str(tmp_path / "t.html")]) == 0
    assert "**0.150 ± 0.071**" in (tmp_path / "t.md").read_text()
    assert "<td style=\"text-align:right\"><strong>0.150 &#177; 0.071</strong></td>" in (tmp_path / "t.html").read_text()
    for kind in ("by_model", "sweep"):
        fig_spec = json.dumps({**spec(["a", "b"], ["mse_test"], "K"), "kind": kind})
        png, pdf = tmp_path / f"{kind}.png", tmp_path / f"{kind}.pdf"
        assert main(["report", "figure", "--metrics", str(csv), "--spec", fig_spec,
                     "--png", str(png), "--pdf", str(pdf)]) == 0
        assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    capsys.readouterr()
    assert main(["report", "table", "--metrics", str(csv), "--spec", "{oops",
                 "--md", str(tmp_path / "x.md"), "--tex", str(tmp_path / "x.tex")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmmvae: error: --spec: not valid JSON") and err.count("\n") == 1
    assert not (tmp_path / "x.md").exists()


def with_disease(data: LongitudinalData, diseased_subjects) -> LongitudinalData:
    subject = data.covariates["id"].values
    flag = np.isin(subject, diseased_subjects).astype(np.int64)
    data.covariates["diseasePresence"] = Covariate(flag, "binary")
    return data


def test_trajectories_draw_a_diseased_subject_when_the_test_split_has_one():
    # test subjects 12 and 13 (codes 2, 3) and 11 (code 1); only code 3 is diseased: drawing the
    # lowest codes would show healthy subjects only
    data = with_disease(longitudinal(test_subjects=(1, 2, 3)), diseased_subjects=[3])
    fig = figures.trajectories_figure(data, data.y, subjects=1, steps=5, title="toy")
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()][0] == "subject 13\nsex=1\ndiseasePresence=1\n\ntruth"
    # two subjects: the diseased one, then the one adding most unseen covariate values (sex=0)
    fig = figures.trajectories_figure(data, data.y, subjects=2, steps=5, title="toy")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel().startswith("subject")]
    assert labels == ["subject 13\nsex=1\ndiseasePresence=1\n\ntruth", "subject 12\nsex=0\ndiseasePresence=0\n\ntruth"]


def test_data_show_labels_image_rows_and_picks_the_diseased_subject(tmp_path):
    from lmmvae.data.sets import show

    data = with_disease(longitudinal(test_subjects=(2, 3)), diseased_subjects=[3])
    assert show._example_subjects(data, 2) == [3, 0]  # one test subject (the diseased), one other
    assert show.subject_label(data, 3) == "subject 13\nsex=1\ndiseasePresence=1"
    path = show.plot_examples(data, tmp_path / "show.png", n_subjects=2, n_columns=3)
    assert path.read_bytes()[:4] == b"\x89PNG" and [p.name for p in tmp_path.iterdir()] == ["show.png"]


def _metric_figure(tmp_path, kind, results, sweep=None):
    frame = aggregate(write_runs(tmp_path, results, sweep=sweep))
    models = list(results)
    return figures.metrics_figure(frame, {**spec(models, {"mse_test": "Test MSE"}, "latent_dim"), "kind": kind})


@pytest.mark.parametrize("kind", ["by_model", "sweep"])
def test_metric_figures_start_at_zero_show_every_run_and_say_n(tmp_path, kind):
    # two close means (1.00 vs 1.02): an axis zoomed to the data would make the gap look large
    results = {"a": {"mse_test": [1.00, 1.01, 0.99]}, "b": {"mse_test": [1.02, 1.03, 1.01]},
               "c": {"mse_test": [1.05, 1.04, 1.06]}}
    sweep = {"a": ("m", 2), "b": ("m", 4), "c": ("ref", None)} if kind == "sweep" else None
    fig = _metric_figure(tmp_path, kind, results, sweep)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0
    assert "n = 3 seeds each" in ax.get_title()
    points = sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets")
                 and len(c.get_offsets()) and c.get_offsets().shape[1] == 2
                 and np.isin(np.round(c.get_offsets()[:, 1], 6), [1.0, 1.01, 0.99, 1.02, 1.03, 1.01]).all())
    assert points == 6  # the swept / bar runs, each drawn (the reference model is a band)
    if kind == "sweep":
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        assert legend.x0 >= ax.get_window_extent().x1  # beside the panel, never over the data
        assert ax.get_ylim()[1] >= 1.05 + 0.01  # the reference band (1.05 ± 0.01) is not cut off


def test_figures_are_saved_atomically(tmp_path):
    data = longitudinal()
    fig = figures.trajectories_figure(data, data.y, subjects=1, steps=3, title="toy")
    figures.save(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]
