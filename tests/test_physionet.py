"""PhysioNet 2012 preprocessing on a hand-written raw directory, errors, and the synthetic cohort."""

import json

import numpy as np
import pytest

from lmmvae.data.sets import physionet, physionet_synthetic
from lmmvae.data.sets.physionet import VARIABLES
from lmmvae.data.sets.splits import TEST, TRAIN
from lmmvae.errors import DataFormatError
from datahash import tree_hash

RECORDS = {
    140001: """Time,Parameter,Value
00:00,RecordID,140001
00:00,Age,54
00:00,Gender,0
00:00,Height,-1
00:00,ICUType,4
00:00,Weight,80
00:10,HR,80
00:50,HR,90
01:05,Temp,37.5
01:30,HR,100
02:00,Weight,82
03:00,NIDiasABP,-1
47:59,GCS,14
48:00,GCS,15
49:00,HR,70
05:00,Foo,3
""",
    140002: """Time,Parameter,Value
00:00,RecordID,140002
00:00,Age,71
00:00,Gender,1
00:00,Height,170.2
00:00,ICUType,2
00:00,Weight,-1
05:00,Na,140
05:59,Na,144
05:30,TroponinT,0.5
10:00,pH,7.3
""",
    140003: """Time,Parameter,Value
00:00,RecordID,140003
00:00,Age,60
00:00,Gender,-1
00:00,ICUType,3
01:00,HR,60
02:00,HR,61
""",
    140004: """Time,Parameter,Value
00:00,RecordID,140004
00:00,Age,60
00:00,Gender,1
00:00,ICUType,1
07:10,HR,60
07:20,HR,61
""",
}
OUTCOMES = """RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death
140001,10,3,5,5,1
140002,12,4,8,-1,0
140003,9,1,3,-1,0
140004,11,2,4,-1,0
"""


def write_raw(root, records=RECORDS, outcomes=OUTCOMES):
    (root / "set-a").mkdir(parents=True)
    for record_id, text in records.items():
        (root / "set-a" / f"{record_id}.txt").write_text(text)
    (root / "Outcomes-a.txt").write_text(outcomes)
    return root


def test_two_patients_binned_by_hand(tmp_path, capsys):
    data = physionet(write_raw(tmp_path), min_bins=2, test_fraction=0.0)
    assert "Foo" in capsys.readouterr().err  # unknown parameters are reported, not silently used
    # 140003: unknown gender -> dropped; 140004: one bin (07h) -> fewer than 2 bins -> dropped
    assert data.covariates["id"].levels == [140001, 140002]
    assert json.loads(data.attrs["dropped_patients"]) == {"few bins": 1, "unknown age/gender/ICU type": 1}
    np.testing.assert_array_equal(data.covariates["time"].values, [0, 1, 2, 47, 5, 10])
    mean, std = np.array(data.attrs["feature_mean"]), np.array(data.attrs["feature_std"])
    raw = np.where(data.mask == 1, data.y * std + mean, np.nan)  # back on the raw scale
    col = {name: j for j, name in enumerate(VARIABLES)}
    expected = np.full((6, 37), np.nan)
    expected[0, col["HR"]] = 85.0  # mean of 80 and 90 within hour 0
    expected[0, col["Weight"]] = 80.0  # the 00:00 descriptor counts as a measurement
    expected[1, col["HR"]] = 100.0
    expected[1, col["Temp"]] = 37.5
    expected[2, col["Weight"]] = 82.0
    expected[3, col["GCS"]] = 14.5  # 47:59 and 48:00 share the last bin; 49:00 dropped
    expected[4, col["Na"]] = 142.0
    expected[4, col["TroponinT"]] = 0.5
    expected[5, col["pH"]] = 7.3
    np.testing.assert_array_equal(data.mask, np.isfinite(expected).astype(np.uint8))
    np.testing.assert_allclose(raw[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=1e-5)
    cov = data.covariates
    np.testing.assert_array_equal(cov["age"].values, [54, 54, 54, 54, 71, 71])
    np.testing.assert_array_equal(cov["gender"].values, [0, 0, 0, 0, 1, 1])
    assert cov["icu_type"].levels == [1, 2, 3, 4] and cov["icu_type"].kind == "categorical"
    np.testing.assert_array_equal(np.asarray(cov["icu_type"].levels)[cov["icu_type"].values], [4, 4, 4, 4, 2, 2])
    np.testing.assert_array_equal(cov["mortality"].values, [1, 1, 1, 1, 0, 0])
    assert data.attrs["feature_names"] == list(VARIABLES)


def test_standardised_on_the_train_split(tmp_path):
    physionet_synthetic(tmp_path / "raw", n_patients=30, seed=1)
    data = physionet(tmp_path / "raw", seed=0)
    train = (data.split == TRAIN)[:, None] & (data.mask == 1)
    hr = VARIABLES.index("HR")
    values = data.y[train[:, hr], hr]
    assert abs(values.mean()) < 1e-4 and abs(values.std(ddof=1) - 1) < 1e-3


def test_split_withholds_late_bins(tmp_path):
    physionet_synthetic(tmp_path / "raw", n_patients=30, seed=1)
    data = physionet(tmp_path / "raw", cut_hour=30, test_fraction=0.2, seed=0)
    subject, hour = data.covariates["id"].values, data.covariates["time"].values
    test_subjects = np.unique(subject[data.split == TEST])
    assert len(test_subjects) == round(0.2 * len(data.covariates["id"].levels))
    for s in test_subjects:
        rows = subject == s
        np.testing.assert_array_equal(data.split[rows] == TEST, hour[rows] >= 30)


@pytest.mark.parametrize(
    "text, message",
    [
        ("Time;Parameter;Value\n00:00,RecordID,1\n", r"140001\.txt: line 1 must be the header 'Time,Parameter,Value'"),
        ("Time,Parameter,Value\n00:00,RecordID,140001\n1:5,HR,80\n", r"140001\.txt, line 3: time '1:5' is not HH:MM"),
        ("Time,Parameter,Value\n00:00,RecordID,140001\n01:05,HR,fast\n", r"140001\.txt, line 3: value 'fast' of HR is not a number"),
        ("Time,Parameter,Value\n00:00,RecordID,140001\n01:05,HR\n", r"140001\.txt, line 3: expected 3 fields"),
    ],
)
def test_malformed_record_is_named_with_its_line(tmp_path, text, message):
    write_raw(tmp_path, {140001: text})
    with pytest.raises(DataFormatError, match=message):
        physionet(tmp_path)


def test_missing_pieces_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no set-a/, set-b/ or set-c/"):
        physionet(tmp_path)
    write_raw(tmp_path)
    (tmp_path / "Outcomes-a.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Outcomes-a\.txt: outcomes file not found"):
        physionet(tmp_path)
    (tmp_path / "Outcomes-a.txt").write_text(OUTCOMES.replace("140002,12,4,8,-1,0\n", ""))
    with pytest.raises(DataFormatError, match=r"Outcomes-a\.txt: no row for RecordID 140002"):
        physionet(tmp_path, min_bins=2)


def test_synthetic_cohort_is_deterministic_and_realistically_sparse(tmp_path):
    physionet_synthetic(tmp_path / "a", n_patients=40, seed=3)
    physionet_synthetic(tmp_path / "b", n_patients=40, seed=3)
    physionet_synthetic(tmp_path / "c", n_patients=40, seed=4)
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b") != tree_hash(tmp_path / "c")
    lines = (tmp_path / "a" / "set-a" / "132539.txt").read_text().splitlines()
    assert lines[0] == "Time,Parameter,Value"
    assert [line.split(",")[1] for line in lines[1:7]] == ["RecordID", "Age", "Gender", "Height", "ICUType", "Weight"]
    assert all(line.split(",")[0][2] == ":" for line in lines[1:])
    data = physionet(tmp_path / "a")
    observed = data.mask.mean(axis=0)  # [37]
    assert 0.7 < 1 - data.mask.mean() < 0.92  # the real set-a is about 80 % missing in hourly bins
    assert observed[VARIABLES.index("HR")] > 0.7  # hourly vitals
    assert observed[VARIABLES.index("Creatinine")] < 0.15  # labs every 12-24 h
    assert (observed > 0).all()  # every variable occurs
    # longitudinal structure: a patient's hourly HR is far more alike within than between patients
    hr = VARIABLES.index("HR")
    subject = data.covariates["id"].values
    rows = data.mask[:, hr] == 1
    means = np.array([data.y[rows & (subject == s), hr].mean() for s in np.unique(subject)])
    within = np.mean([data.y[rows & (subject == s), hr].var() for s in np.unique(subject)])
    assert means.var() > 0.5 * within
    # in-hospital mortality near the challenge's 14 %
    died = data.covariates["mortality"].values == 1
    assert 0.05 < died.mean() < 0.3
