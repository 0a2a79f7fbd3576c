"""workflow/report/*.rst, rendered as `snakemake --report` renders them (Jinja, then docutils):
the report opens on the results, each experiment's table inside it, captions that say what is shown."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

jinja2 = pytest.importorskip("jinja2")
from docutils.core import publish_parts  # noqa: E402

from lmmvae.reporting.tables import Cell, Table, to_html  # noqa: E402

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"
TINY = Path(__file__).resolve().parents[1] / ".test" / "config.yaml"


def example_table(row: str):
    return Table("T", [row], ["MSE"], [[Cell(0.1, 0.0, 1, bold=True)]], decimals=[3], n_seeds=1)


def render(name: str, snakemake, cwd: Path) -> str:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake.report does
    text = env.from_string((REPORT / name).read_text()).render(snakemake=snakemake, categories={}, files=[])
    old = os.getcwd()
    os.chdir(cwd)  # the report is made in the workflow's working directory
    try:
        return publish_parts(text, writer="html", settings_overrides={"report_level": 2,
                                                                          "halt_level": 2})["html_body"]
    finally:
        os.chdir(old)


def test_report_opens_on_results_with_every_experiments_table(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    for name in config["experiments"]:
        table = tmp_path / "results" / "tables" / f"{name}.html"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(to_html(example_table(f"{name}-row")))
    html = render("workflow.rst", SimpleNamespace(config=config), tmp_path)
    assert html.index("Results") < html.index("How these numbers were made")
    for name, exp in config["experiments"].items():
        # the table itself, rendered (not a link to it, nor its source as monospace text)
        assert exp["title"] in html and f"<td style=\"text-align:left\">{name}-row</td>" in html
    assert html.count("<table class=\"lmmvae-table\"") == len(config["experiments"])
    assert "<pre" not in html and "| Model |" not in html
    assert html.index(f"{next(iter(config['experiments']))}-row") < html.index("How these numbers")


@pytest.mark.parametrize("rule, expected", [
    ("figure_trajectories", "(diseasePresence = 1) is drawn"),
    ("figure_metrics", "the panel title gives n"),
    ("figure_latent_effects", "random offset"),
])
def test_figure_captions_say_what_is_shown(tmp_path, rule, expected):
    job = SimpleNamespace(rule=rule, params=SimpleNamespace(caption="Custom caption.", subjects=2))
    html = render("figure.rst", job, tmp_path)
    assert "Custom caption." in html and expected in html


def test_table_caption_includes_the_rendered_table(tmp_path):
    (tmp_path / "t.html").write_text(to_html(example_table("A")))
    job = SimpleNamespace(wildcards=SimpleNamespace(experiment="health_mnist"),
                          output=SimpleNamespace(md="t.md", html="t.html"))
    html = render("table.rst", job, tmp_path)
    assert "health mnist: one row per model" in html
    assert "<td style=\"text-align:right\"><strong>0.100</strong></td>" in html
