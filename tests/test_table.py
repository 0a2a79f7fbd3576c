"""Your own table in: a long-format CSV / Parquet / AnnData file or DataFrame
becomes the longitudinal HDF5 format with inferred kinds, masks from empty cells, text levels kept,
the documented split, one-line errors naming file, column and row; and from there a model that
predicts held-out later visits better than the feature means."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

import lmmvae
from lmmvae.cli import main
from lmmvae.data.h5 import read_h5
from lmmvae.data.sets.table import from_frame, from_table, table_split
from lmmvae.errors import DataFormatError

FEATURES = [f"f{j}" for j in range(5)]


def visits(n_subjects=30, n_months=8, seed=0, missing=0.15) -> pd.DataFrame:
    """Long format, one row per visit: text ids, a text binary (sex M/F), a categorical (arm), a
    continuous (age), 5 features from 2 latent factors with a subject intercept, a time trend and
    sex/arm effects, and empty cells."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(2, 5))
    rows = []
    for p in range(n_subjects):
        sex, arm = ("F" if p % 2 else "M"), ["placebo", "low", "high"][p % 3]
        intercept, age = rng.normal(size=2), int(rng.integers(40, 70))
        for t in range(n_months):
            z = intercept + np.array([0.3 * t, 0.8 * (sex == "F")])
            z[1] += {"placebo": 0.0, "low": -0.5, "high": -1.0}[arm] * t / 4
            y = z @ loadings + rng.normal(scale=0.3, size=5)
            rows.append({"patient": f"S{p:03d}", "month": t, "sex": sex, "arm": arm, "age": age,
                         **{f: round(float(v), 4) for f, v in zip(FEATURES, y)}})
    frame = pd.DataFrame(rows)
    frame[FEATURES] = frame[FEATURES].mask(rng.random((len(frame), 5)) < missing)
    return frame


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    frame = visits()
    path = tmp_path_factory.mktemp("t") / "visits.csv"
    frame.to_csv(path, index=False)
    return frame, path


def data_cmd(*argv):
    return main(["data", "from-table", *map(str, argv)])


# -- kinds, masks, levels, scale ------------------------------------------------------------------


def test_csv_kinds_levels_masks_and_scale(table, tmp_path, capsys):
    frame, path = table
    out = tmp_path / "v.h5"
    assert data_cmd("--table", path, "--subject", "patient", "--time", "month", "--features", ",".join(FEATURES),
                    "--covariates", "sex,arm,age", "--out", out) == 0
    assert "patient id, month time, sex binary, arm categorical, age continuous" in capsys.readouterr().out
    data = read_h5(out)
    cov = data.covariates
    assert {n: c.kind for n, c in cov.items()} == {"patient": "id", "month": "time", "sex": "binary",
                                                   "arm": "categorical", "age": "continuous"}
    assert cov["sex"].levels == ["F", "M"]  # text binary: levels kept, coded in sorted order
    assert (np.array(cov["sex"].levels)[cov["sex"].values] == frame["sex"]).all()
    assert cov["arm"].levels == ["high", "low", "placebo"]
    assert (np.array(cov["arm"].levels)[cov["arm"].values] == frame["arm"]).all()
    assert (np.array(cov["patient"].levels)[cov["patient"].values] == frame["patient"]).all()  # row order kept
    np.testing.assert_array_equal(cov["month"].values, frame["month"])
    np.testing.assert_array_equal(data.mask, frame[FEATURES].notna().to_numpy().astype(np.uint8))
    assert 0 < data.mask.mean() < 1
    # standardised on observed train entries, the scale kept: y * std + mean gives the table back
    mean, std = np.array(data.attrs["feature_mean"]), np.array(data.attrs["feature_std"])
    observed = data.mask.astype(bool)
    back = data.y * std + mean
    np.testing.assert_allclose(back[observed], frame[FEATURES].to_numpy()[observed], atol=1e-4)
    assert (data.y[~observed] == 0).all()
    train_obs = observed & (data.split == 0)[:, None]
    np.testing.assert_allclose([data.y[:, j][train_obs[:, j]].mean() for j in range(5)], 0, atol=1e-5)
    assert data.attrs["feature_names"] == FEATURES
    # the same through the Python API, from the DataFrame
    again = lmmvae.LongitudinalData.from_frame(frame, subject="patient", time="month", features=FEATURES,
                                               covariates=["sex", "arm", "age"])
    np.testing.assert_array_equal(again.y, data.y)
    np.testing.assert_array_equal(again.split, data.split)


def test_kinds_inferred_and_overridden():
    frame = pd.DataFrame({"id": [3, 3, 7, 7], "t": [0.0, 1.5, 0.0, 2.0], "treated": [0, 1, 0, 1],
                          "dose": [10, 20, 10, 20], "site": ["a", "b", "c", "a"], "ok": [True, False, True, True],
                          "y": [1.0, 2.0, np.nan, 4.0]})
    data = from_frame(frame, subject="id", time="t", features=["y"], validation_fraction=0)
    cov = data.covariates
    assert cov["id"].kind == "id" and cov["id"].levels == [3, 7]
    assert cov["treated"].kind == "binary" and cov["treated"].levels is None  # 0/1 kept as numbers
    assert cov["treated"].values.tolist() == [0, 1, 0, 1]
    assert cov["dose"].kind == "binary" and cov["dose"].levels == [10, 20]  # two numbers: coded, levels kept
    assert cov["site"].kind == "categorical" and cov["ok"].kind == "binary"
    assert cov["ok"].values.tolist() == [1, 0, 1, 1]
    over = from_frame(frame, subject="id", time="t", features=["y"], kinds={"dose": "continuous", "treated": "categorical"})
    assert over.covariates["dose"].kind == "continuous" and over.covariates["dose"].values.tolist() == [10, 20, 10, 20]
    assert over.covariates["treated"].kind == "categorical" and over.covariates["treated"].levels == [0, 1]
    with pytest.raises(DataFormatError, match=r"column 'site' has 3 distinct values .* but is binary; use --kind site=categorical"):
        from_frame(frame, subject="id", time="t", features=["y"], kinds={"site": "binary"})


# -- the split -------------------------------------------------------------------------------------


def test_split_without_test_option_is_train_or_validation_by_row():
    subject = np.repeat(np.arange(40), 6)
    time = np.tile(np.arange(6.0), 40)
    split = table_split(subject, time, validation_fraction=0.25, seed=1)
    assert set(np.unique(split)) == {0, 1}
    assert abs((split == 1).mean() - 0.25) < 0.02
    assert all((split[subject == s] == 0).any() for s in range(40))  # every subject keeps a train row
    # by row, not by subject: most subjects have both train and validation rows
    assert sum((split[subject == s] == 1).any() for s in range(40)) > 20
    np.testing.assert_array_equal(split, table_split(subject, time, validation_fraction=0.25, seed=1))


def test_test_after_holds_out_later_visits_of_subjects_seen_before():
    subject = np.repeat(np.arange(20), 6)
    time = np.tile(np.arange(6.0), 20)
    late_only = (subject == 19) & (time < 4)
    subject, time = subject[~late_only], time[~late_only]  # subject 19 has only visits 4, 5
    split = table_split(subject, time, validation_fraction=0.2, test_after=3, seed=0)
    np.testing.assert_array_equal(split == 2, (time > 3) & (subject != 19))
    assert not (split[time <= 3] == 2).any() and (split[subject == 19] != 2).all()
    assert (split[(time <= 3)] == 1).any()  # early visits of test subjects may validate
    half = table_split(subject, time, test_after=3, test_fraction=0.5, seed=0)
    test_subjects = np.unique(subject[half == 2])
    assert len(test_subjects) == 10 and (half[np.isin(subject, test_subjects) & (time > 3)] == 2).all()


# -- other formats ----------------------------------------------------------------------------


def _write_h5ad(path, frame, sparse=False):
    """An AnnData file as anndata >= 0.8 writes it (encoding-type attributes), by hand."""
    str_dtype = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        x = frame[FEATURES].to_numpy(dtype=np.float32)
        if sparse:
            import scipy.sparse

            csr = scipy.sparse.csr_matrix(np.nan_to_num(x, nan=0.0) + 0.0)
            g = f.create_group("X")
            g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": x.shape})
            g["data"], g["indices"], g["indptr"] = csr.data, csr.indices, csr.indptr
        else:
            f["X"] = x
        obs = f.create_group("obs")
        obs.attrs.update({"encoding-type": "dataframe", "_index": "_index"})
        obs.attrs.create("column-order", np.array(["patient", "month", "sex", "arm"], dtype=object), dtype=str_dtype)
        obs.create_dataset("_index", data=np.array([str(i) for i in range(len(frame))], dtype=object), dtype=str_dtype)
        obs.create_dataset("patient", data=frame["patient"].to_numpy(dtype=object), dtype=str_dtype)
        obs["month"] = frame["month"].to_numpy()
        obs.create_dataset("sex", data=frame["sex"].to_numpy(dtype=object), dtype=str_dtype)
        arm = pd.Categorical(frame["arm"], categories=["placebo", "low", "high"])  # placebo first: reference
        g = obs.create_group("arm")
        g.attrs["encoding-type"] = "categorical"
        g.create_dataset("categories", data=np.array(arm.categories, dtype=object), dtype=str_dtype)
        g["codes"] = arm.codes.astype(np.int8)
        var = f.create_group("var")
        var.attrs.update({"encoding-type": "dataframe", "_index": "_index"})
        var.attrs.create("column-order", np.array([], dtype=object), dtype=str_dtype)
        var.create_dataset("_index", data=np.array(FEATURES, dtype=object), dtype=str_dtype)


def test_h5ad_dense_and_sparse_read_like_the_csv(table, tmp_path):
    frame, path = table
    csv = from_table(path, subject="patient", time="month", features=FEATURES, covariates=["sex", "arm"])
    _write_h5ad(tmp_path / "v.h5ad", frame)
    dense = from_table(tmp_path / "v.h5ad", subject="patient", time="month")  # features: var names, covariates: obs
    assert dense.attrs["feature_names"] == FEATURES and set(dense.covariates) == {"patient", "month", "sex", "arm"}
    np.testing.assert_array_equal(dense.mask, csv.mask)
    np.testing.assert_allclose(dense.y, csv.y, atol=1e-5)
    assert dense.covariates["arm"].levels == ["placebo", "low", "high"]  # category order kept
    assert dense.covariates["sex"].levels == ["F", "M"]
    _write_h5ad(tmp_path / "s.h5ad", frame, sparse=True)
    sparse = from_table(tmp_path / "s.h5ad", subject="patient", time="month")
    assert sparse.mask.all()  # sparse X: absent entries are zeros, observed
    raw = sparse.y * np.array(sparse.attrs["feature_std"]) + np.array(sparse.attrs["feature_mean"])
    np.testing.assert_allclose(raw, np.nan_to_num(frame[FEATURES].to_numpy()), atol=1e-4)


def test_parquet(table, tmp_path):
    frame, _ = table
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "v.parquet").write_bytes(b"PAR1")
        with pytest.raises(DataFormatError, match=r"v\.parquet: reading Parquet needs the pyarrow package, which is not installed"):
            from_table(tmp_path / "v.parquet", subject="patient", time="month", features=FEATURES)
        return
    frame.to_parquet(tmp_path / "v.parquet")
    data = from_table(tmp_path / "v.parquet", subject="patient", time="month", features=FEATURES)
    assert data.covariates["sex"].levels == ["F", "M"] and data.mask.mean() < 1


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit, argv, message", [
    (lambda f: f.assign(f1=f["f1"].astype(object).where(f.index != 4, "high")), [],
     r"v\.csv: column 'f1' at row 5 \(line 6\): 'high' is not a finite number \(a feature is a number, or empty"),
    (lambda f: f.assign(patient=f["patient"].where(f.index != 2)), [],
     r"v\.csv: column 'patient' at row 3 \(line 4\): is empty; every row needs a subject id"),
    (lambda f: f.assign(arm=f["arm"].where(f.index != 7)), [],
     r"v\.csv: column 'arm' at row 8 \(line 9\): is empty"),
    (lambda f: f.assign(month=f["month"].astype(object).where(f.index != 0, "baseline")), [],
     r"v\.csv: column 'month' at row 1 \(line 2\): 'baseline' is not a finite number \(a time \(e.g. days since baseline\) is a number\)"),
    (lambda f: f, ["--features", "f0,weight"], r"v\.csv: no column 'weight'; columns: patient, month"),
    (lambda f: f, ["--kind", "age=ordinal"], r"kind 'ordinal' of column 'age' is not one of"),
    (lambda f: f, ["--kind", "age"], r"--kind 'age': expected COLUMN=KIND"),
    (lambda f: f, ["--kind", "patient=categorical"], r"column 'patient' is the subject, so its kind is id, not categorical"),
    (lambda f: f, ["--validation-fraction", "1.5"], r"--validation-fraction must be in \[0, 1\)"),
])
def test_errors_are_one_line_name_file_column_row_and_leave_no_output(table, tmp_path, capsys, edit, argv, message):
    frame, _ = table
    edit(frame.copy()).to_csv(tmp_path / "v.csv", index=False)
    features = [] if "--features" in argv else ["--features", ",".join(FEATURES)]
    code = data_cmd("--table", tmp_path / "v.csv", "--subject", "patient", "--time", "month", *features, *argv,
                    "--out", tmp_path / "v.h5")
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("lmmvae: error: ") and "\n" not in err, err
    import re
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.csv"]


def test_unknown_table_type(tmp_path, capsys):
    (tmp_path / "v.xlsx").write_text("x")
    assert data_cmd("--table", tmp_path / "v.xlsx", "--subject", "a", "--time", "b", "--out", tmp_path / "v.h5") == 2
    assert "unknown table type '.xlsx'; expected one of .csv, .tsv, .txt, .parquet, .h5ad" in capsys.readouterr().err


# -- end to end: table -> from-table -> fit -> held-out later visits ---------------------------

MODEL = """\
variant: olmm
design: "~ month + sex + arm + (1 | patient)"
subject: patient
latent_dim: 2
epochs: 40
lr: 1e-2
batch_size: 32
patience: 20
"""


@pytest.mark.slow
def test_table_to_fit_predicts_later_visits_better_than_feature_means(table, tmp_path, capsys):
    frame, path = table
    data_file = tmp_path / "v.h5"
    assert data_cmd("--table", path, "--subject", "patient", "--time", "month", "--features", ",".join(FEATURES),
                    "--covariates", "sex,arm,age", "--test-after", 4, "--out", data_file) == 0
    data = read_h5(data_file)
    late = frame["month"].to_numpy() > 4
    np.testing.assert_array_equal(data.split == 2, late)  # every subject has early visits: all later ones held out
    np.testing.assert_array_equal(data.mask, frame[FEATURES].notna().to_numpy())
    assert data.covariates["sex"].levels == ["F", "M"] and data.covariates["sex"].kind == "binary"
    (tmp_path / "m.yaml").write_text(MODEL)  # lr written 1e-2: exponent floats are numbers
    assert main(["fit", "--data", str(data_file), "--model", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "run"),
                 "--quiet", "--evaluate-out", str(tmp_path / "m.json"), "--predictions-out", str(tmp_path / "p.h5")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    train, test = data.split == 0, data.split == 2
    means = np.array([data.y[train & (data.mask[:, j] == 1), j].mean() for j in range(5)])  # [D]
    observed = data.mask[test].astype(bool)
    mse_means = float(((data.y[test] - means) ** 2)[observed].mean())
    with h5py.File(tmp_path / "p.h5") as f:
        y_pred = f["y_pred"][()]
    assert y_pred.shape == data.y.shape  # one prediction per row of the table, in its order
    mse_model = float(((y_pred[test] - data.y[test]) ** 2)[observed].mean())
    assert abs(mse_model - metrics["mse_test"]) < 1e-4
    # measured: 0.578 against 1.370 for the feature means (40 epochs, 120 training rows)
    assert metrics["mse_test"] < 0.6 * mse_means, (metrics["mse_test"], mse_means)

    # predict --out P.csv on the held-out visits, as a user writes them (text ids, "M"/"F"), shuffled
    late_rows = frame[late].sample(frac=1.0, random_state=0)
    asked = late_rows[["month", "patient", "sex", "arm", "age"]].assign(visit=[f"v{i}" for i in range(len(late_rows))])
    asked.to_csv(tmp_path / "late.csv", index=False)
    assert main(["predict", "--run", str(tmp_path / "run"), "--covariates", str(tmp_path / "late.csv"),
                 "--out", str(tmp_path / "P.csv")]) == 0
    answer = pd.read_csv(tmp_path / "P.csv")
    intervals = [f"{f}_{part}" for f in FEATURES for part in ("mean", "lower", "upper")]
    assert list(answer.columns) == [*asked.columns, *intervals]  # input columns first, in input order
    pd.testing.assert_frame_equal(answer[asked.columns], asked.reset_index(drop=True), check_dtype=False)
    for f in FEATURES:
        assert (answer[f"{f}_lower"] <= answer[f"{f}_mean"]).all() and (answer[f"{f}_mean"] <= answer[f"{f}_upper"]).all()
    truth = late_rows[FEATURES].to_numpy()  # [n_late, D] in the table's units, NaN where empty
    predicted = answer[[f"{f}_mean" for f in FEATURES]].to_numpy()
    train_means = frame.loc[(data.split == 0), FEATURES].mean().to_numpy()  # observed train entries, table units
    seen = ~np.isnan(truth)
    scale = frame[FEATURES].std().to_numpy()
    mse = lambda guess: float(((((guess - truth) / scale) ** 2)[seen]).mean())  # noqa: E731
    assert mse(predicted) < 0.6 * mse(np.broadcast_to(train_means, truth.shape)), (mse(predicted), mse(train_means))
    inside = (truth >= answer[[f"{f}_lower" for f in FEATURES]].to_numpy()) & (truth <= answer[[f"{f}_upper" for f in FEATURES]].to_numpy())
    assert 0.7 < inside[seen].mean() <= 1.0  # 90 % intervals cover most held-out values
    # measured: MSE / column variance 0.502 against 1.198 for the train means; coverage 0.903


@pytest.mark.slow
def test_fit_from_a_data_frame_and_predict_text_levels(table, tmp_path):
    frame, _ = table
    model = lmmvae.fit(frame, subject="patient", time="month", features=FEATURES, covariates=["sex", "arm"],
                       test_after=4, design="~ month + sex + arm + (1 | patient)", latent_dim=2, epochs=2,
                       batch_size=64, progress=False)
    assert model.config.subject == "patient"
    late = frame[frame["month"] > 4]
    out = model.predict_arrays(late[["patient", "month", "sex", "arm"]])  # "M"/"F" as written in the table
    assert out["y_pred"].shape == (len(late), 5) and np.isfinite(out["y_pred"]).all()


# -- exponent-form floats in YAML ---------------------------------------------


def test_exponent_floats_in_model_and_workflow_yaml(tmp_path):
    import yaml

    from lmmvae.reporting.experiments import load_plan
    from lmmvae.training.checks import config_from_yaml

    (tmp_path / "m.yaml").write_text("lr: 1e-3\nlr_decay: 9.9e-1\nprior: {tau_shared: 5E-1}\n")
    config = config_from_yaml(tmp_path / "m.yaml")
    assert config.lr == 0.001 and config.lr_decay == 0.99 and config.prior["tau_shared"] == 0.5
    (tmp_path / "q.yaml").write_text('lr: "1e-3"\n')  # quoted: a string, which the type check refuses
    with pytest.raises(Exception, match="lr"):
        config_from_yaml(tmp_path / "q.yaml")
    # the workflow: Snakemake's YAML 1.1 loader leaves 1e-3 a string; the plan reads it as a number
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    text = (repo / ".test" / "config.yaml").read_text().replace("lr: 0.003", "lr: 3e-3")
    assert "lr: 3e-3" in text
    raw = yaml.safe_load(text)
    assert raw["training"]["lr"] == "3e-3"
    plan = load_plan(raw, repo / "workflow" / "schemas" / "config.schema.yaml")
    lrs = {spec.config["lr"] for spec in plan.models.values() if "lr" in spec.config}
    assert lrs and all(isinstance(lr, float) for lr in lrs) and 0.003 in lrs
