"""`lmmvae predict | summary | effects | contrast`: answers from a finished run, as tables and figures."""

from __future__ import annotations

from pathlib import Path

from lmmvae.cli import argtypes as T

def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict at new covariates: mean and predictive interval per feature")
    T.add_run(p)
    p.add_argument("--covariates", required=True,
                   help="CSV (or .tsv, .parquet), one row per prediction, a column per covariate of the design and the subject id")
    p.add_argument("--out", required=True,
                   help=".csv or .parquet: the input columns, then F_mean, F_lower, F_upper per feature F; "
                        ".h5: /y_pred, /y_lower, /y_upper, /z_mean, /z_var (mixedlm, mean: /y_var) and /input")
    p.add_argument("--level", type=T.LEVEL, default=0.9, help="coverage of the predictive interval (default 0.9)")
    p.add_argument("--samples", type=T.SAMPLES, default=None,
                   help="Monte Carlo draws per row for the interval (default 500)")
    p.add_argument("--no-intervals", action="store_true",
                   help="F_mean only (no Monte Carlo interval): fast, for the latent means of /z_mean")
    p.add_argument("--stored-scale", action="store_true",
                   help="values on the scale the data were stored in (default: the table's units when the run "
                        "recorded them, as for data from `lmmvae data from-table`)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    T.add_threads(p)
    p.set_defaults(handler=_predict)

    p = subparsers.add_parser("summary", help="fixed effects, random-effect variances, noise and training of a run")
    T.add_run(p)
    p.add_argument("--out", default=None, metavar="JSON", help="also write the summary as JSON")
    T.add_threads(p)
    p.set_defaults(handler=_summary)

    p = subparsers.add_parser("effects", help="draw the decoded effect of one covariate (others at reference values)")
    T.add_run(p)
    p.add_argument("--covariate", required=True, help="a covariate of the design, e.g. age")
    p.add_argument("--png", required=True, help="figure to write")
    p.add_argument("--csv", default=None, help="also write the grid with, per feature F, F_mean, the band of the mean "
                                               "F_mean_lower, F_mean_upper and the predictive band F_lower, F_upper")
    p.add_argument("--points", type=T.POINTS, default=None, help="grid points of a continuous covariate (default 25; images 8)")
    p.add_argument("--features", default=None, help="comma-separated features to draw (default: the 12 it moves most)")
    p.add_argument("--level", type=T.LEVEL, default=0.9, help="coverage of both bands (default 0.9)")
    p.add_argument("--at", action="append", default=[], metavar="COL=VALUE",
                   help="hold another covariate at VALUE instead of its reference (repeatable)")
    T.add_threads(p)
    p.set_defaults(handler=_effects)
    _register_contrast(subparsers)


def _register_contrast(subparsers) -> None:
    p = subparsers.add_parser("contrast", help="difference of the mean between two values of one covariate, "
                                               "per feature, with an interval")
    T.add_run(p)
    p.add_argument("--covariate", required=True, help="a covariate of the design, e.g. arm")
    p.add_argument("--levels", required=True, metavar="FROM,TO",
                   help="two values of the covariate: the difference is TO minus FROM (e.g. placebo,high or 40,60)")
    p.add_argument("--at", action="append", default=[], metavar="COL=VALUE",
                   help="hold another covariate at VALUE instead of its reference, as effects does (repeatable)")
    p.add_argument("--level", type=T.LEVEL, default=0.9, help="coverage of the interval (default 0.9)")
    p.add_argument("--samples", type=T.SAMPLES, default=500, help="draws of A ~ q(A) (default 500)")
    p.add_argument("--csv", default=None, help="also write feature, difference, lower, upper, sd")
    T.add_threads(p)
    p.set_defaults(handler=_contrast)


def _read_covariates(path: str, subject: str):
    import pandas as pd

    from lmmvae.data.tables import read_csv
    from lmmvae.errors import ConfigError

    if Path(path).suffix.lower() != ".parquet":  # ids as text: 007 is not 7; .tsv: tab-delimited
        return read_csv(path, text=(subject,), sep="\t" if Path(path).suffix.lower() == ".tsv" else ",")
    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow); or give a CSV") from None
    if frame.columns.duplicated().any():
        raise ConfigError(f"{path}: column {frame.columns[frame.columns.duplicated()][0]!r} is named twice")
    return frame


def _predict(args) -> int:
    from lmmvae.answers.intervals import N_SAMPLES, predict_frame, table_scale, write_frame
    from lmmvae.api import load

    run = T.run_dir(args, "lmmvae predict RUN --covariates FILE --out FILE")
    fitted = load(run, device=args.device, threads=args.threads)
    frame = _read_covariates(args.covariates, fitted.config.subject)
    arrays: dict = {}
    table = predict_frame(fitted, frame, level=args.level, n_samples=args.samples or N_SAMPLES,
                          where=args.covariates, row=lambda i: f"row {i + 1} (line {i + 2})", arrays=arrays,
                          table_units=not args.stored_scale, intervals=not args.no_intervals)
    units = "table" if table_scale(fitted) is not None and not args.stored_scale else "stored"
    level = "no" if args.no_intervals else f"{args.level:.0%}"
    write_frame(table, args.out, arrays=arrays, exact=tuple(frame.columns),
                attrs={"units": units, **({} if args.no_intervals else {"level": float(args.level)})})
    print(f"lmmvae: {len(table)} predictions ({level} intervals, {units} units) -> {args.out}")
    return 0


def _summary(args) -> int:
    import json

    from lmmvae.answers.summary import summarise
    from lmmvae.api import load
    from lmmvae.atomic import write_text

    run = T.run_dir(args, "lmmvae summary RUN")
    summary = summarise(load(run, threads=args.threads), run_dir=run)
    print(summary)
    if args.out:
        write_text(json.dumps(summary.to_dict(), indent=2, default=str), args.out)
    return 0


def _effects(args) -> int:
    from lmmvae.answers.effects import plot_effect
    from lmmvae.answers.intervals import write_frame
    from lmmvae.api import load

    fitted = load(T.run_dir(args, "lmmvae effects RUN --covariate COL --png FILE"), threads=args.threads)
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    at = _at(args.at)
    table = plot_effect(fitted, args.covariate, args.png, n_points=args.points, level=args.level, features=features,
                        at=at)
    if args.csv:
        write_frame(table, args.csv)
    print(f"lmmvae: effect of {args.covariate} ({len(table)} grid points) -> {args.png}")
    return 0


def _at(items: list[str]) -> dict[str, str]:
    """``--at COL=VALUE`` options as a mapping (one-line error for anything else)."""
    return T.pairs(items, "--at", "COL=VALUE", "sex=1", need_value=False)


def _contrast(args) -> int:
    from lmmvae.answers.contrast import contrast, describe
    from lmmvae.answers.intervals import write_frame
    from lmmvae.api import load
    from lmmvae.errors import ConfigError

    at = _at(args.at)
    levels = [v.strip() for v in args.levels.split(",")]
    if len(levels) != 2 or not all(levels):
        raise ConfigError(f"--levels {args.levels!r}: expected two values FROM,TO, e.g. --levels placebo,high")
    run = T.run_dir(args, "lmmvae contrast RUN --covariate COL --levels FROM,TO")
    table = contrast(load(run, threads=args.threads), args.covariate, levels, at=at, level=args.level, n_samples=args.samples)
    print(describe(table))
    if args.csv:
        write_frame(table, args.csv)
        print(f"lmmvae: contrast of {args.covariate} -> {args.csv}")
    return 0
