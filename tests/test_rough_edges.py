"""The rough edges a statistician meets with their own table: a table given where the HDF5 data
file belongs, one form of the run argument, counts written 1e3, TSV and --sep, repeated visits
warned once, CSV outputs to 7 significant digits, numeric codes read as continuous named, and
--drop-incomplete. Fast: one classical (mixedlm) run, no neural training."""

from __future__ import annotations

import argparse
import re
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from lmmvae.cli import argtypes as T
from lmmvae.cli import build_parser, main
from lmmvae.data.h5 import read_h5
from lmmvae.errors import ConfigError, LmmvaeWarning
from lmmvae.training.assemble import check_training_data
from lmmvae.training.checks import config_from_yaml


def visits(n_subjects=15, n_days=5, seed=0) -> pd.DataFrame:
    """One row per visit: text ids, a 3-level arm, a stage code 1-4, an edema score 0/0.5/1, an age
    with many values, and two features with a subject intercept, a time trend and an arm effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_subjects):
        arm, u, age = ["placebo", "low", "high"][p % 3], rng.normal(), 40 + 1.7 * p
        for t in range(n_days):
            rows.append({"id": f"P{p:02d}", "day": t, "arm": arm, "stage": p % 4 + 1, "edema": [0, 0.5, 1][p % 3],
                         "age": age, "a": u + 0.3 * t + (arm == "high") + rng.normal(scale=0.3),
                         "b": -u + rng.normal(scale=0.3)})
    return pd.DataFrame(rows)


def one_line(code: int, err: str, *fragments: str) -> None:
    err = err.strip()
    assert code == 2 and err.startswith("lmmvae: error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A mixedlm run on the table (columns id, day, arm, a, b), its data file and its CSV."""
    root = tmp_path_factory.mktemp("rough")
    visits()[["id", "day", "arm", "a", "b"]].to_csv(root / "v.csv", index=False)
    assert main(["data", "from-table", "--table", str(root / "v.csv"), "--subject", "id", "--time", "day",
                 "--features", "a,b", "--test-after", "2", "--out", str(root / "v.h5")]) == 0
    (root / "m.yaml").write_text('variant: mixedlm\ndesign: "~ day + arm + (1 | id)"\nsubject: id\n')
    assert main(["fit", "--data", str(root / "v.h5"), "--model", str(root / "m.yaml"), "--out", str(root / "run")]) == 0
    return root


# -- a table where the HDF5 data file belongs ------------------------------------------------------


@pytest.mark.parametrize("name, what", [("visits.csv", "a CSV table"), ("visits.tsv", "a TSV table"),
                                        ("visits.h5ad", "an AnnData file"), ("visits.dat", "a text table")])
def test_a_table_given_as_data_points_to_from_table(run, tmp_path, capsys, name, what):
    table = tmp_path / name
    table.write_text("id,day,a\nP1,0,1.5\n")
    for argv in (["fit", "--data", table, "--model", run / "m.yaml", "--out", tmp_path / "r"],
                 ["evaluate", run / "run", "--data", table, "--out", tmp_path / "m.json"],
                 ["mcc", run / "run", run / "run", "--data", table]):
        code = main([str(a) for a in argv])
        one_line(code, capsys.readouterr().err, f"--data {table}: is {what}, not a longitudinal HDF5 data file",
                 f"lmmvae data from-table --table {table} --subject COL --time COL --out visits.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no run, no metrics


# -- one form of the run argument --------------------------------------------------------------------

RUN_COMMANDS = {
    "evaluate": ["--data", "D.h5", "--out", "m.json"], "predict": ["--covariates", "c.csv", "--out", "p.csv"],
    "summary": [], "effects": ["--covariate", "arm", "--png", "e.png"],
    "contrast": ["--covariate", "arm", "--levels", "placebo,high"],
}


@pytest.mark.parametrize("command", sorted(RUN_COMMANDS))
def test_every_command_takes_the_run_positionally_or_as_run(command, tmp_path, capsys, monkeypatch):
    parser, rest = build_parser(), RUN_COMMANDS[command]
    assert T.run_dir(parser.parse_args([command, "R1", *rest]), "") == "R1"
    assert T.run_dir(parser.parse_args([command, "--run", "R1", *rest]), "") == "R1"
    with pytest.raises(ConfigError, match=r"two run directories given \(R1 and --run R2\)"):
        T.run_dir(parser.parse_args([command, "R1", "--run", "R2", *rest]), "")
    with pytest.raises(ConfigError, match=f"{command} needs a run directory"):
        T.run_dir(parser.parse_args([command, *rest]), "")
    # the path checks see either form (lmmvae.runs.paths, PATHS): a file is not a run directory
    monkeypatch.chdir(tmp_path)
    for name in ("D.h5", "c.csv", "notarun"):
        (tmp_path / name).write_text("x")
    one_line(main([command, "notarun", *rest]), capsys.readouterr().err, "RUN notarun: is a file, not a run directory")
    one_line(main([command, "--run", "notarun", *rest]), capsys.readouterr().err,
             "--run notarun: is a file, not a run directory")


def test_evaluate_positional_and_run_give_the_same_metrics(run, tmp_path):
    assert main(["evaluate", str(run / "run"), "--data", str(run / "v.h5"), "--out", str(tmp_path / "1.json")]) == 0
    assert main(["evaluate", "--run", str(run / "run"), "--data", str(run / "v.h5"), "--out", str(tmp_path / "2.json")]) == 0
    import json

    one, two = (json.loads((tmp_path / f"{i}.json").read_text()) for i in (1, 2))
    assert one["metrics"] == two["metrics"] and one["metrics"]["mse_test"] > 0


# -- counts written 1e3 ------------------------------------------------------------------------------


def test_counts_accept_whole_numbers_in_exponent_form(tmp_path):
    assert T.EPOCHS("1e3") == 1000 and T.SAMPLES("2.5e2") == 250 and T.SIZE("1E2") == 100 and T.EPOCHS("7") == 7
    for bad, message in (("2.5", "expected an integer"), ("1e9", "out of range"), ("2**70", "expected an integer"),
                         ("nan", "expected an integer"), ("inf", "expected an integer")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            T.SAMPLES(bad)
    args = build_parser().parse_args(["fit", "--data", "d", "--model", "m", "--out", "o", "--epochs", "1e3"])
    assert args.epochs == 1000 and type(args.epochs) is int
    args = build_parser().parse_args(["data", "health-mnist", "--out", "o.h5", "--instances", "1e2",
                                      "--train-timepoints", "3.0"])
    assert (args.instances, args.train_timepoints) == (100, 3)
    (tmp_path / "m.yaml").write_text("epochs: 1e3\nbatch_size: 6.4e1\nlr: 1e-3\n")
    config = config_from_yaml(tmp_path / "m.yaml")
    assert (config.epochs, config.batch_size) == (1000, 64) and type(config.epochs) is int
    (tmp_path / "bad.yaml").write_text("epochs: 2.5\n")
    with pytest.raises(ConfigError, match=r"epochs: expected an integer, got 2\.5"):
        config_from_yaml(tmp_path / "bad.yaml")


# -- TSV and --sep -----------------------------------------------------------------------------------


def _convert(table, out, *extra) -> int:
    return main(["data", "from-table", "--table", str(table), "--subject", "id", "--time", "day",
                 "--features", "a,b", "--covariates", "arm,age", *map(str, extra), "--out", str(out)])


def test_tsv_and_sep_read_the_same_data_as_csv(tmp_path, capsys):
    frame = visits()
    frame.to_csv(tmp_path / "v.csv", index=False)
    frame.to_csv(tmp_path / "v.tsv", index=False, sep="\t")
    frame.to_csv(tmp_path / "v.txt", index=False, sep=";")
    frame.to_csv(tmp_path / "t.txt", index=False, sep="\t")
    assert _convert(tmp_path / "v.csv", tmp_path / "csv.h5") == 0
    assert _convert(tmp_path / "v.tsv", tmp_path / "tsv.h5") == 0
    assert _convert(tmp_path / "v.txt", tmp_path / "semi.h5", "--sep", ";") == 0
    assert _convert(tmp_path / "t.txt", tmp_path / "tab.h5") == 0  # .txt: a tab in the header line
    ref = read_h5(tmp_path / "csv.h5")
    for name in ("tsv", "semi", "tab"):
        data = read_h5(tmp_path / f"{name}.h5")
        np.testing.assert_array_equal(data.y, ref.y)
        np.testing.assert_array_equal(data.split, ref.split)
        for col, cov in ref.covariates.items():
            np.testing.assert_array_equal(data.covariates[col].values, cov.values)
            assert data.covariates[col].levels == cov.levels
    capsys.readouterr()
    one_line(_convert(tmp_path / "v.tsv", tmp_path / "x.h5", "--sep", "ab"), capsys.readouterr().err,
             "--sep 'ab': expected one character or one of tab")
    one_line(_convert(tmp_path / "v.txt", tmp_path / "x.h5"), capsys.readouterr().err, "no column 'id'")


# -- repeated visits: warned once, at from-table -----------------------------------------------------


def test_repeated_visits_warned_once_at_from_table_not_again_at_fit(tmp_path, capsys):
    frame = visits()[["id", "day", "a", "b"]]
    frame = pd.concat([frame, frame.iloc[[7, 12]]], ignore_index=True)  # rows 76, 77: P01 day 2, P02 day 2
    frame.to_csv(tmp_path / "v.csv", index=False)
    code = main(["data", "from-table", "--table", str(tmp_path / "v.csv"), "--subject", "id", "--time", "day",
                 "--features", "a,b", "--out", str(tmp_path / "v.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and len(err) == 1, err
    assert re.search(r"v\.csv: 2 row\(s\) repeat an earlier row's \(id, day\), first at row 76 \(line 77\): "
                     r"id 'P01', day 2; kept as repeated measurements", err[0]), err
    data = read_h5(tmp_path / "v.h5")
    assert data.attrs["duplicate_rows"] == 2 == data.duplicate_rows()[0]
    train = data.subset(data.split_index("train"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_training_data(data, train, str(tmp_path / "v.h5"))  # what fit checks: no second warning
        assert not caught
        data.attrs.pop("duplicate_rows")  # a file from elsewhere: fit is where they are reported
        check_training_data(data, train, "other.h5")
    assert [str(w.message) for w in caught if w.category is LmmvaeWarning] == [
        "other.h5: 2 row(s) repeat an earlier row's (id, time), first at row 75: id 'P01', day 2.0; "
        "kept as repeated measurements"]


# -- CSV outputs: 7 significant digits ---------------------------------------------------------------


def _significant(cell: str) -> int:
    mantissa = cell.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_csv_outputs_print_seven_significant_digits_and_keep_the_inputs(run, tmp_path):
    out = tmp_path
    assert main(["predict", str(run / "run"), "--covariates", str(run / "v.csv"), "--out", str(out / "p.csv")]) == 0
    assert main(["predict", str(run / "run"), "--covariates", str(run / "v.csv"), "--out", str(out / "p.h5")]) == 0
    assert main(["effects", str(run / "run"), "--covariate", "day", "--points", "7", "--png", str(out / "e.png"),
                 "--csv", str(out / "e.csv")]) == 0
    assert main(["contrast", str(run / "run"), "--covariate", "arm", "--levels", "placebo,high",
                 "--csv", str(out / "c.csv")]) == 0
    given = pd.read_csv(run / "v.csv", dtype=str)
    written = pd.read_csv(out / "p.csv", dtype=str)
    pd.testing.assert_frame_equal(written[given.columns], given)  # the user's values as they were (17 digits)
    assert given["a"].str.len().max() > 12
    for name, numeric in (("p.csv", [c for c in written.columns if c not in given.columns]),
                          ("e.csv", None), ("c.csv", ["difference", "lower", "upper", "sd"])):
        table = pd.read_csv(out / name, dtype=str)
        cols = numeric or [c for c in table.columns if c.endswith(("_mean", "_lower", "_upper"))]
        digits = [_significant(v) for c in cols for v in table[c].dropna()]
        assert digits and max(digits) <= 7 and max(digits) >= 6, (name, max(digits))
    with h5py.File(out / "p.h5") as f:  # the same numbers at full precision: rounded, not changed
        full = f["y_pred"][()]
    np.testing.assert_allclose(pd.read_csv(out / "p.csv")[["a_mean", "b_mean"]].to_numpy(), full,
                               rtol=6e-7, atol=1e-12)


# -- numeric codes read as continuous; --drop-incomplete -------------------------------------------


def test_few_valued_numeric_columns_are_named_once_with_the_override(tmp_path, capsys):
    visits().to_csv(tmp_path / "v.csv", index=False)
    base = ["data", "from-table", "--table", str(tmp_path / "v.csv"), "--subject", "id", "--time", "day",
            "--features", "a,b", "--out", str(tmp_path / "v.h5")]
    assert main(base) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lmmvae: warning: " + str(tmp_path / "v.csv") + ": numeric column(s) read as continuous with "
                   "at most 5 distinct values: stage (1/2/3/4), edema (0/0.5/1); if they code categories, say so: "
                   "--kind stage=categorical (kinds={...} in Python)"], err  # not age (15 values), arm, day
    assert read_h5(tmp_path / "v.h5").covariates["stage"].kind == "continuous"
    assert main([*base, "--kind", "stage=categorical", "--kind", "edema=continuous"]) == 0
    assert capsys.readouterr().err == ""  # an explicit kind is the user's answer
    assert read_h5(tmp_path / "v.h5").covariates["stage"].levels == [1, 2, 3, 4]


def test_drop_incomplete_drops_and_counts_rows_with_empty_covariates(tmp_path, capsys):
    frame = visits()
    frame["age"] = frame["age"].astype(object)
    frame.loc[[3, 9], "age"] = ""
    frame.loc[[9, 20], "stage"] = np.nan
    frame.loc[30, "arm"] = None
    frame.to_csv(tmp_path / "v.csv", index=False)
    argv = ["data", "from-table", "--table", str(tmp_path / "v.csv"), "--subject", "id", "--time", "day",
            "--features", "a,b", "--kind", "stage=categorical", "--kind", "edema=categorical", "--out",
            str(tmp_path / "v.h5")]
    one_line(main(argv), capsys.readouterr().err, "column 'arm' at row 31 (line 32): is empty",
             "or drop such rows: --drop-incomplete")
    assert main([*argv, "--drop-incomplete"]) == 0
    out = capsys.readouterr().out
    assert f"dropped 4 incomplete row(s) of {len(frame)} (empty cells: arm 1, stage 2, age 2)" in out, out
    data, kept = read_h5(tmp_path / "v.h5"), frame.drop(index=[3, 9, 20, 30]).reset_index(drop=True)
    assert data.n_obs == len(frame) - 4 and data.attrs["dropped_incomplete_rows"] == 4
    np.testing.assert_allclose(data.covariates["age"].values, kept["age"].astype(float))
    mean, std = (np.array(data.attrs[k]) for k in ("feature_mean", "feature_std"))
    np.testing.assert_allclose(data.y * std + mean, kept[["a", "b"]].to_numpy(), rtol=1e-5, atol=1e-5)
    frame["a"] = frame["a"].astype(object)
    frame.loc[40, "a"] = "high"  # an error in a kept row names its row in the file, not among the kept ones
    frame.to_csv(tmp_path / "v.csv", index=False)
    one_line(main([*argv, "--drop-incomplete"]), capsys.readouterr().err, "column 'a' at row 41 (line 42): 'high'")
    frame.loc[:, "arm"] = None
    frame.to_csv(tmp_path / "v.csv", index=False)
    one_line(main([*argv, "--drop-incomplete"]), capsys.readouterr().err, "nothing is left after dropping")


def test_a_reader_that_stops_early_is_no_error(run, monkeypatch, capsys):
    """`lmmvae summary RUN | head` under `set -o pipefail`: when the reader has gone, the command
    stops quietly with status 0, as `cat` does, instead of printing "Broken pipe"."""
    import os
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader stopped
    broken = os.fdopen(write_end, "w", buffering=1)  # line-buffered: the first line written fails
    monkeypatch.setattr(sys, "stdout", broken)
    saved = os.dup(1)
    try:
        assert main(["summary", str(run / "run")]) == 0
    finally:
        os.dup2(saved, 1)  # the handler pointed fd 1 at /dev/null; give the test its output back
        os.close(saved)
    assert "error" not in capsys.readouterr().err.lower()
