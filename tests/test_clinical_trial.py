"""Clinical-trial preprocessing (docs/data_format.md; paper H.1) on a hand-written SDTM trial, errors, synthetic trial."""

import io
import json
import struct

import numpy as np
import pandas as pd
import pytest

from lmmvae.data.sets import clinical_trial, clinical_trial_synthetic
from lmmvae.data.sets.splits import TEST, TRAIN
from lmmvae.errors import DataFormatError
from datahash import tree_hash

SDTM = {
    "dm": """USUBJID,AGE,SEX,RACE,ARM
T-1,50,F,WHITE,DRUG
T-2,60,M,ASIAN,PLACEBO
T-3,,F,WHITE,DRUG
T-4,40,M,WHITE,PLACEBO
""",
    # T-1 day 1 has two ALT results (mean 25); T-2's day-8 ALT has no LBDY (VISITDY used); RARE is
    # seen at one visit only (dropped by min_feature_fraction); T-1's day-22 ALT has no value
    "lb": """STUDYID,DOMAIN,USUBJID,LBTESTCD,LBSTRESN,LBDY,VISITDY
S,LB,T-1,ALT,20,1,1
S,LB,T-1,ALT,30,1,1
S,LB,T-1,ALT,40,8,8
S,LB,T-1,ALT,50,15,15
S,LB,T-1,ALT,,22,22
S,LB,T-1,RARE,1,1,1
S,LB,T-2,ALT,10,1,1
S,LB,T-2,ALT,12,,8
S,LB,T-2,ALT,14,16,15
S,LB,T-3,ALT,5,1,1
S,LB,T-3,ALT,6,8,8
S,LB,T-3,ALT,7,15,15
S,LB,T-4,ALT,7,1,1
S,LB,T-4,ALT,8,8,8
""",
    # T-1's day 22 has one of three features (dropped at min_observed 0.5)
    "vs": """STUDYID,DOMAIN,USUBJID,VSTESTCD,VSSTRESN,VSDY,VISITDY
S,VS,T-1,SYSBP,120,1,1
S,VS,T-1,SYSBP,130,8,8
S,VS,T-1,PULSE,70,8,8
S,VS,T-1,PULSE,72,15,15
S,VS,T-1,PULSE,75,22,22
S,VS,T-2,SYSBP,110,1,1
S,VS,T-2,SYSBP,115,8,8
S,VS,T-2,SYSBP,118,16,15
S,VS,T-2,PULSE,60,1,1
S,VS,T-2,PULSE,62,16,15
S,VS,T-3,SYSBP,100,1,1
S,VS,T-4,SYSBP,100,1,1
S,VS,T-4,SYSBP,101,8,8
""",
    # HEADACHE has the most records but no end day: not counted; T-4 is dropped, so its RASH is not counted
    "ae": """USUBJID,AETERM,AEDECOD,AESTDY,AEENDY
T-1,Nausea,NAUSEA,1,8
T-1,Headache,HEADACHE,10,
T-1,Headache,HEADACHE,12,
T-2,Headache,HEADACHE,1,
T-2,Nausea,NAUSEA,15,20
T-2,Rash,RASH,2,3
T-4,Rash,RASH,1,1
T-4,Rash,RASH,8,8
""",
    "cm": """USUBJID,CMTRT,CMDECOD,CMSTDY,CMENDY
T-2,aspirin,ASPIRIN,-100,100
T-1,paracetamol,PARACETAMOL,8,8
T-1,paracetamol,PARACETAMOL,,5
""",
}


def write_sdtm(root, tables=SDTM):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (root / f"{name}.csv").write_text(text)
    return root


def test_small_trial_by_hand(tmp_path):
    data = clinical_trial(write_sdtm(tmp_path / "trial"), min_observed=0.5, min_visits=3,
                          min_feature_fraction=0.2, test_fraction=0.0)
    assert data.attrs["feature_names"] == ["ALT", "PULSE", "SYSBP"]
    cov = data.covariates
    assert cov["id"].levels == ["T-1", "T-2"]  # T-3: unknown age; T-4: two visits
    assert json.loads(data.attrs["dropped_subjects"]) == {"not in dm or unknown age/sex": 1, "few visits": 1}
    np.testing.assert_array_equal(cov["day"].values, [1, 8, 15, 1, 8, 16])
    nan = np.nan
    expected = np.array([[25, nan, 120], [40, 70, 130], [50, 72, nan],
                         [10, 60, 110], [12, nan, 115], [14, 62, 118]])
    np.testing.assert_array_equal(data.mask, np.isfinite(expected).astype(np.uint8))
    mean, std = np.array(data.attrs["feature_mean"]), np.array(data.attrs["feature_std"])
    np.testing.assert_allclose((data.y * std + mean)[data.mask == 1], expected[np.isfinite(expected)], rtol=1e-5)
    # standardised on train: with test_fraction 0 and one validation draw, recompute from train rows
    train = data.split == TRAIN
    alt = expected[train, 0]
    np.testing.assert_allclose([mean[0], std[0]], [alt.mean(), alt.std(ddof=1)], rtol=1e-5)
    np.testing.assert_array_equal(cov["age"].values, [50, 50, 50, 60, 60, 60])
    np.testing.assert_array_equal(cov["sex"].values, [1, 1, 1, 0, 0, 0])
    assert cov["race"].levels == ["ASIAN", "WHITE"] and list(cov["race"].values) == [1, 1, 1, 0, 0, 0]
    assert cov["arm"].levels == ["DRUG", "PLACEBO"] and list(cov["arm"].values) == [0, 0, 0, 1, 1, 1]
    # AE: NAUSEA (2 records with start and end), then RASH (1 kept record); HEADACHE never ends
    assert [n for n in cov if n.startswith("ae_")] == ["ae_nausea", "ae_rash"]
    np.testing.assert_array_equal(cov["ae_nausea"].values, [1, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(cov["ae_rash"].values, [0, 0, 0, 0, 0, 0])
    assert [n for n in cov if n.startswith("cm_")] == ["cm_aspirin", "cm_paracetamol"]  # tie: alphabetical
    np.testing.assert_array_equal(cov["cm_aspirin"].values, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(cov["cm_paracetamol"].values, [0, 1, 0, 0, 0, 0])
    assert cov["ae_nausea"].kind == "binary" and cov["day"].kind == "time"


def ibm_double(x: float) -> bytes:
    """IEEE -> IBM hexadecimal floating point (8 bytes), as SAS transport files store numbers."""
    if np.isnan(x):
        return b"." + bytes(7)  # SAS missing value
    if x == 0:
        return bytes(8)
    sign, x = (0x80 if x < 0 else 0), abs(x)
    exponent = int(np.floor(np.log(x) / np.log(16))) + 1
    fraction = x / 16.0**exponent  # in [1/16, 1)
    mantissa = int(round(fraction * 2**56))
    if mantissa >= 2**56:
        mantissa, exponent = mantissa >> 4, exponent + 1
    return bytes([sign | (exponent + 64)]) + mantissa.to_bytes(7, "big")


def write_xport(path, frame: pd.DataFrame) -> None:
    """A minimal SAS XPORT v5 writer (pandas reads the format but cannot write it)."""
    def card(text):
        return text.ljust(80).encode("ascii")

    date = "01JAN24:00:00:00"
    out = io.BytesIO()
    out.write(card("HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!" + "0" * 30))
    out.write(card("SAS     SAS     SASLIB  9.4     X64_7PRO" + " " * 24 + date))
    out.write(card(date))
    out.write(card("HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!" + "0" * 17 + "16" + "0" * 8 + "140"))
    out.write(card("HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!" + "0" * 30))
    out.write(card("SAS     " + "DATA".ljust(8) + "SASDATA 9.4     X64_7PRO" + " " * 24 + date))
    out.write(card(date + " " * 16 + " " * 40 + "DATA    "))
    out.write(card("HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000" + f"{frame.shape[1]:04d}" + "0" * 20))
    widths, namestrs, position = [], b"", 0
    for number, column in enumerate(frame.columns, start=1):
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        width = 8 if numeric else max(8, int(frame[column].astype(str).str.len().max()))
        widths.append((numeric, width))
        namestrs += struct.pack(">hhhh8s40s8shhh2s8shhl52s", 1 if numeric else 2, 0, width, number,
                                column.encode().ljust(8), b"".ljust(40), b"".ljust(8), 0, 0, 0, b"  ",
                                b"".ljust(8), 0, 0, position, b"".ljust(52))
        position += width
    out.write(namestrs.ljust(-(-len(namestrs) // 80) * 80, b" "))
    out.write(card("HEADER RECORD*******OBS     HEADER RECORD!!!!!!!" + "0" * 30))
    rows = b""
    for _, row in frame.iterrows():
        for (numeric, width), value in zip(widths, row):
            rows += ibm_double(float(value)) if numeric else str(value).encode().ljust(width)
    out.write(rows.ljust(-(-len(rows) // 80) * 80, b" "))
    path.write_bytes(out.getvalue())


def test_sas_transport_domains_read_like_csv(tmp_path):
    """dm and lb as SAS transport files (.xpt, any case) give the same data set as the CSVs."""
    assert ibm_double(1.0) == bytes.fromhex("4110000000000000")  # the IBM encoding of 1.0
    csv_dir = write_sdtm(tmp_path / "csv")
    xpt_dir = write_sdtm(tmp_path / "xpt", {k: v for k, v in SDTM.items() if k not in ("dm", "lb")})
    write_xport(xpt_dir / "dm.xpt", pd.read_csv(csv_dir / "dm.csv"))
    write_xport(xpt_dir / "LB.XPT", pd.read_csv(csv_dir / "lb.csv"))
    np.testing.assert_array_equal(pd.read_sas(xpt_dir / "LB.XPT", format="xport", encoding="latin-1")["LBSTRESN"],
                                  pd.read_csv(csv_dir / "lb.csv")["LBSTRESN"])
    options = dict(min_observed=0.5, min_visits=3, min_feature_fraction=0.2, test_fraction=0.0)
    from_csv, from_xpt = clinical_trial(csv_dir, **options), clinical_trial(xpt_dir, **options)
    np.testing.assert_array_equal(from_xpt.y, from_csv.y)
    np.testing.assert_array_equal(from_xpt.mask, from_csv.mask)
    assert from_xpt.covariates["id"].levels == ["T-1", "T-2"]
    assert from_xpt.covariates["race"].levels == ["ASIAN", "WHITE"]
    np.testing.assert_array_equal(from_xpt.covariates["age"].values, from_csv.covariates["age"].values)


def test_top_terms_limit(tmp_path):
    data = clinical_trial(write_sdtm(tmp_path / "trial"), min_observed=0.5, min_visits=3,
                          min_feature_fraction=0.2, n_terms=1, test_fraction=0.0)
    assert [n for n in data.covariates if n[:3] in ("ae_", "cm_")] == ["ae_nausea", "cm_aspirin"]


def test_test_subjects_keep_their_first_visits(tmp_path):
    clinical_trial_synthetic(tmp_path / "raw", n_subjects=40, seed=2)
    data = clinical_trial(tmp_path / "raw", train_visits=3, test_fraction=0.25, seed=1)
    subject, day = data.covariates["id"].values, data.covariates["day"].values
    test_subjects = np.unique(subject[data.split == TEST])
    n_eligible = (np.bincount(subject) > 3).sum()  # subjects with visits on both sides of the cut
    assert n_eligible < len(np.unique(subject)) and len(test_subjects) == round(0.25 * n_eligible)
    for s in test_subjects:
        rows = np.flatnonzero(subject == s)
        order = rows[np.argsort(day[rows])]
        assert (data.split[order[:3]] == TRAIN).all() and (data.split[order[3:]] == TEST).all()


def test_missing_domain_and_column_are_named(tmp_path):
    tables = dict(SDTM)
    del tables["cm"]
    with pytest.raises(FileNotFoundError, match=r"cm\.csv\|\.xpt\|\.sas7bdat: SDTM domain 'cm' not found"):
        clinical_trial(write_sdtm(tmp_path / "a", tables))
    tables = dict(SDTM, lb=SDTM["lb"].replace("LBTESTCD", "TEST"))
    with pytest.raises(DataFormatError, match=r"lb\.csv: missing column LBTESTCD"):
        clinical_trial(write_sdtm(tmp_path / "b", tables))
    tables = dict(SDTM, ae=SDTM["ae"].replace("AEENDY", "END"))
    with pytest.raises(DataFormatError, match=r"ae\.csv: missing column AEENDY"):
        clinical_trial(write_sdtm(tmp_path / "c", tables))


def test_synthetic_trial_deterministic_with_drug_effects(tmp_path):
    clinical_trial_synthetic(tmp_path / "a", n_subjects=60, seed=5)
    clinical_trial_synthetic(tmp_path / "b", n_subjects=60, seed=5)
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    data = clinical_trial(tmp_path / "a")
    names = data.attrs["feature_names"]
    assert {"ALT", "NEUT", "SYSBP", "WEIGHT"} <= set(names)
    assert len([n for n in data.covariates if n.startswith("ae_")]) == 10
    assert len([n for n in data.covariates if n.startswith("cm_")]) == 10
    arm = np.asarray(data.covariates["arm"].levels)[data.covariates["arm"].values]
    late = data.covariates["day"].values > 80
    neut = names.index("NEUT")
    observed = data.mask[:, neut] == 1

    def late_mean(a):
        return data.y[late & observed & (arm == a), neut].mean()

    # the drug lowers neutrophils over time, with dose
    assert late_mean("DRUG 20 MG") < late_mean("DRUG 10 MG") < late_mean("PLACEBO") - 0.5
