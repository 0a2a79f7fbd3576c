"""`lmmvae report aggregate | table | claims | figure | trajectories | grid | latent-effects`.

The reporting steps of the benchmark workflow, one command per rule: collect metrics files into
``results/metrics.csv``, write tables (Markdown, LaTeX, HTML) and figures (PNG, PDF). Every output is
written to a temporary name and renamed. Only ``table`` imports torch (through
:mod:`lmmvae.answers.metrics`); the others start in about a second.
"""

from __future__ import annotations

import json

from lmmvae.cli import argtypes as T
from lmmvae.errors import ConfigError


def register(subparsers) -> None:
    report = subparsers.add_parser("report", help="benchmark tables and figures from metrics files")
    commands = report.add_subparsers(dest="report_command", metavar="STEP", required=True)

    p = commands.add_parser("aggregate", help="metrics.json files listed in a manifest -> tidy CSV")
    p.add_argument("--manifest", required=True, help="JSON written by the workflow (results/runs.json)")
    p.add_argument("--out", required=True, help="CSV to write (one row per run x metric)")
    p.set_defaults(handler=_aggregate)

    p = commands.add_parser("table", help="mean ± std over seeds, best within one std in bold")
    p.add_argument("--metrics", required=True, help="results/metrics.csv")
    p.add_argument("--spec", required=True, help="JSON: dataset, models, metrics, sweep_parameter, title")
    p.add_argument("--md", required=True, help="Markdown table to write")
    p.add_argument("--tex", required=True, help="LaTeX table to write")
    p.add_argument("--html", default=None, help="also write the table as HTML (for the Snakemake report)")
    p.set_defaults(handler=_table)

    p = commands.add_parser("claims", help="the config's claims decided by the paired rule over seeds")
    p.add_argument("--metrics", required=True, help="results/metrics.csv")
    p.add_argument("--spec", required=True, help="JSON: claims (the config's `claims:`) and experiments (name -> dataset)")
    p.add_argument("--md", required=True, help="Markdown table to write")
    p.set_defaults(handler=_claims)

    p = commands.add_parser("figure", help="metric per model (by_model) or against a sweep (sweep)")
    p.add_argument("--metrics", required=True, help="results/metrics.csv")
    p.add_argument("--spec", required=True, help="JSON as for `table`, plus kind: by_model | sweep")
    _image_outputs(p)
    p.set_defaults(handler=_figure)

    p = commands.add_parser("trajectories", help="images of test subjects: truth vs prediction")
    p.add_argument("--data", required=True, help="longitudinal HDF5 (image data)")
    p.add_argument("--predictions", required=True, help="HDF5 with /y_pred (lmmvae evaluate --predictions)")
    p.add_argument("--subjects", type=T.COUNT, default=2, help="test subjects shown (default 2)")
    p.add_argument("--steps", type=T.COUNT, default=10, help="time points shown per subject")
    p.add_argument("--time", default=None, help="time covariate (default: the one of kind 'time')")
    p.add_argument("--title", default="", help="figure title")
    _image_outputs(p)
    p.set_defaults(handler=_trajectories)

    p = commands.add_parser("grid", help="covariate grid (CSV) for lmmvae predict: shared + subjects")
    p.add_argument("--data", required=True, help="longitudinal HDF5 whose covariates the grid follows")
    p.add_argument("--covariate", required=True, help="continuous covariate to vary")
    p.add_argument("--points", type=T.POINTS, default=64, help="grid points along the covariate (default 64)")
    p.add_argument("--subjects", type=T.COUNT, default=5, help="training subjects added to the shared grid (default 5)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.set_defaults(handler=_grid)

    p = commands.add_parser("latent-effects", help="latent dimensions against the grid covariate")
    p.add_argument("--grid", required=True, help="CSV written by `lmmvae report grid`")
    p.add_argument("--latent", required=True, help="HDF5 with /z_mean (lmmvae predict on the grid)")
    p.add_argument("--dims", type=T.COUNT, default=2, help="number of latent dimensions shown")
    p.add_argument("--title", default="", help="figure title")
    _image_outputs(p)
    p.set_defaults(handler=_latent_effects)


def _image_outputs(p) -> None:
    p.add_argument("--png", required=True, help="PNG file to write")
    p.add_argument("--pdf", default=None, help="also write this PDF file")


def _spec(text: str) -> dict:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--spec: not valid JSON ({err.msg} at column {err.colno})") from None
    missing = [k for k in ("dataset", "models", "metrics") if k not in spec]
    if missing:
        raise ConfigError(f"--spec: key(s) {', '.join(missing)} missing")
    if isinstance(spec["metrics"], list):
        from lmmvae.reporting.experiments import METRIC_LABELS

        spec["metrics"] = {m: METRIC_LABELS.get(m, m) for m in spec["metrics"]}
    return spec


def _aggregate(args) -> int:
    from lmmvae.reporting.aggregate import aggregate, read_json, write_csv

    frame = aggregate(read_json(args.manifest, "manifest"))
    write_csv(frame, args.out)
    print(f"lmmvae: {len(frame)} rows ({frame['model'].nunique()} models) -> {args.out}")
    return 0


def _table(args) -> int:
    from lmmvae.atomic import write_text
    from lmmvae.reporting.aggregate import read_metrics
    from lmmvae.reporting.tables import build_table, to_html, to_latex, to_markdown

    table = build_table(read_metrics(args.metrics), _spec(args.spec))
    markdown = to_markdown(table)
    write_text(markdown, args.md)
    write_text(to_latex(table), args.tex)
    if args.html is not None:
        write_text(to_html(table), args.html)
    print(markdown)
    return 0


def _claims(args) -> int:
    from lmmvae.atomic import write_text
    from lmmvae.reporting.aggregate import read_metrics
    from lmmvae.reporting.claims import evaluate, parse_claims, to_markdown

    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--spec: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(spec, dict) or not {"claims", "experiments"} <= set(spec):
        raise ConfigError("--spec: needs a JSON object with `claims` and `experiments`")
    claims = parse_claims(spec["claims"], spec["experiments"])
    markdown = to_markdown(evaluate(read_metrics(args.metrics), claims, spec["experiments"]))
    if spec.get("left_out"):
        markdown += f"\nLeft out (their experiments are not in this config): {', '.join(spec['left_out'])}.\n"
    write_text(markdown, args.md)
    print(markdown)
    return 0


def _figure(args) -> int:
    from lmmvae.reporting.aggregate import read_metrics
    from lmmvae.reporting.figures import metrics_figure, save

    spec = _spec(args.spec)
    if spec.get("kind", "by_model") not in ("by_model", "sweep"):
        raise ConfigError(f"--spec: kind must be by_model or sweep, got {spec.get('kind')!r}")
    spec.setdefault("kind", "by_model")
    save(metrics_figure(read_metrics(args.metrics), spec), args.png, args.pdf)
    return 0


def _read_array(path: str, key: str):
    import h5py

    from lmmvae.errors import RunError

    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise RunError(f"{path}: no dataset {key} (have {', '.join(f.keys())})")
            return f[key][()]
    except OSError as err:
        raise RunError(f"{path}: cannot read HDF5 ({err})") from None


def _trajectories(args) -> int:
    from lmmvae.data.h5 import read_h5
    from lmmvae.reporting.figures import save, trajectories_figure

    fig = trajectories_figure(read_h5(args.data), _read_array(args.predictions, "y_pred"),
                              args.subjects, args.steps, args.title, args.time)
    save(fig, args.png, args.pdf)
    return 0


def _grid(args) -> int:
    from lmmvae.atomic import atomic_output
    from lmmvae.data.h5 import read_h5
    from lmmvae.reporting.figures import latent_grid

    grid = latent_grid(read_h5(args.data), args.covariate, args.points, args.subjects)
    with atomic_output(args.out) as tmp:
        grid.to_csv(tmp, index=False)
    print(f"lmmvae: {len(grid)} grid rows ({grid['curve'].nunique()} curves) -> {args.out}")
    return 0


def _latent_effects(args) -> int:
    from lmmvae.data.tables import read_csv
    from lmmvae.reporting.figures import latent_effects_figure, save

    grid = read_csv(args.grid)  # one-line errors for empty, binary, header-only files
    covariate = _grid_covariate(grid)
    fig = latent_effects_figure(grid, _read_array(args.latent, "z_mean"), covariate, args.title,
                                args.dims)
    save(fig, args.png, args.pdf)
    return 0


def _grid_covariate(grid) -> str:
    """The column that varies within the shared curve of a grid."""
    shared = grid[grid["curve"] == "shared"].drop(columns="curve")
    varying = [c for c in shared.columns if shared[c].nunique() > 1]
    if len(varying) != 1:
        raise ConfigError(f"grid: expected one varying covariate, found {varying or 'none'}")
    return varying[0]
