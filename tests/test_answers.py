"""Answers out: predictive intervals as a table, the summary, the decoded effect of
a covariate, history / repr / latent variances — on simulated data with known effects."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import lmmvae
from lmmvae.answers.effects import POPULATION, covariate_effect, effect_grid, plot_effect
from lmmvae.answers.intervals import predict_frame
from lmmvae.cli import main
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.errors import ConfigError, RunError

DESIGN = "~ time + sex + site + (1 | id)"
N_SUBJECTS, N_TIMES, D = 40, 8, 6
BETA, GAMMA = np.array([2.0, -1.5]), np.array([1.0, 1.0])  # effects of time and sex on z (2-D)


def simulate(seed=1, noise=0.5):
    """``z = β t + γ sex + b_p``, ``y = tanh(W z) + noise`` with ``W`` returned; a categorical ``site``
    without effect; every other subject's last 3 visits are test, the rest train/validation."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(N_SUBJECTS), N_TIMES)
    time = np.tile(np.linspace(0.0, 1.0, N_TIMES), N_SUBJECTS)
    sex = np.repeat(rng.integers(0, 2, N_SUBJECTS), N_TIMES)
    site = np.repeat(rng.integers(0, 3, N_SUBJECTS), N_TIMES)
    b = rng.normal(0.0, 0.8, size=(N_SUBJECTS, 2))
    w = rng.normal(size=(2, D)) / np.sqrt(2)
    z = time[:, None] * BETA + sex[:, None] * GAMMA + b[subject]
    y = np.tanh(z @ w) + noise * rng.normal(size=(len(z), D))
    split = np.where(rng.random(len(z)) < 0.15, 1, 0)
    split[(subject % 2 == 0) & (np.tile(np.arange(N_TIMES), N_SUBJECTS) >= N_TIMES - 3)] = 2
    data = LongitudinalData(
        y=y.astype(np.float32), mask=np.ones_like(y, dtype=np.uint8), split=split,
        covariates={"time": Covariate(time, "time"), "sex": Covariate(sex, "binary"),
                    "site": Covariate(site, "categorical", levels=["north", "south", "west"]),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(N_SUBJECTS)])},
        attrs={"name": "simulated", "feature_names": [f"f{d}" for d in range(D)],
               "feature_mean": [0.0] * D, "feature_std": [1.0] * D})  # the identity scale: values unchanged
    return data, w


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    data, w = simulate()
    run = tmp_path_factory.mktemp("answers") / "run"
    # trained to early stopping (~700 epochs): the likelihood's variance starts at 1 % of the data's
    # (TABULAR_START_FRACTION) and reaches the residual's only as training converges; intervals of a
    # model stopped at 100 epochs cover 75 % instead of 90 %
    lmmvae.fit(data, out=run, progress=False, variant="olmm", design=DESIGN, latent_dim=2, network="mlp",
               epochs=1000, batch_size=64, lr=0.01)
    return lmmvae.load(run), run, data, w


def bounds(table, suffix):
    return table[[c for c in table.columns if c.endswith(suffix)]].to_numpy(dtype=float)


def test_intervals_cover_held_out_visits_near_nominal(fitted):
    model, _, data, _ = fitted
    table = predict_frame(model, data.covariate_frame(), level=0.9)
    inside = (data.y >= bounds(table, "_lower")) & (data.y <= bounds(table, "_upper"))
    test = data.split == 2  # later visits of seen subjects, never trained on
    assert 0.85 <= inside[test].mean() <= 0.96, inside[test].mean()
    narrow = predict_frame(model, data.covariate_frame(), level=0.5)
    assert 0.4 <= ((data.y >= bounds(narrow, "_lower")) & (data.y <= bounds(narrow, "_upper")))[test].mean() <= 0.62


def test_intervals_are_quantiles_of_the_models_own_predictive(fitted):
    """Fresh ancestral draws from the model (z from the prior's prediction, decoded, plus Gaussian
    noise) fall inside the 90 % interval 90 % of the time; an interval without the likelihood's
    noise or without the latent spread would cover far less. The mean is the predictive mean."""
    model, _, data, _ = fitted
    frame = data.covariate_frame().iloc[::16].reset_index(drop=True)  # 20 rows
    table = predict_frame(model, frame, level=0.9)
    tensors = model.tensors(model.covariates_to_data(frame))
    batch = tensors.batch(tensors.indices(None))
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        dist = model.model.prior.predict(batch)
        z = dist.mean + dist.stddev * torch.randn((4000, *dist.mean.shape), generator=gen)
        mean = model.model.likelihood.mean(model.model.decode(z, batch))
        y = mean + model.model.likelihood.variance.sqrt() * torch.randn(mean.shape, generator=gen)
    y = y.numpy()
    lower, upper = bounds(table, "_lower"), bounds(table, "_upper")
    coverage = ((y >= lower) & (y <= upper)).mean()
    assert abs(coverage - 0.9) < 0.025, coverage
    standard_error = mean.std(0).numpy() / np.sqrt(500)  # of the table's mean over its 500 draws
    assert (np.abs(bounds(table, "_mean") - mean.mean(0).numpy()) <= 4.5 * standard_error + 1e-3).all()
    latent_only = np.quantile(mean.numpy(), [0.05, 0.95], axis=0)
    assert ((y >= latent_only[0]) & (y <= latent_only[1])).mean() < 0.8  # the noise matters here
    within = 4.5 * mean.std(0).numpy() / np.sqrt(model.config.predict_samples) + 4.5 * standard_error + 1e-3
    assert (np.abs(bounds(table, "_mean") - model.predict_arrays(frame)["y_pred"]) <= within).all()  # the same estimator


def test_rows_keep_identity_order_and_index(fitted):
    model, _, data, _ = fitted
    frame = data.covariate_frame().iloc[[5, 77, 3, 200, 31]].copy()
    frame.index = ["a", "b", "c", "d", "e"]
    frame.insert(1, "note", ["x", "y", "z", "u", "v"])  # a column the model does not use, kept in place
    table = model.predict(frame)
    features = [f"f{d}" for d in range(D)]
    assert list(table.columns) == list(frame.columns) + [f + s for f in features for s in ("_mean", "_lower", "_upper")]
    assert list(table.index) == list(frame.index)
    pd.testing.assert_frame_equal(table[frame.columns], frame)
    shuffled = model.predict(frame.iloc[::-1])
    pd.testing.assert_frame_equal(shuffled.loc[frame.index], table)  # a row's answer is its own, and reproducible
    assert (bounds(table, "_lower") < bounds(table, "_mean")).all() and (bounds(table, "_mean") < bounds(table, "_upper")).all()


def test_predict_on_a_data_frame_is_the_table_and_elsewhere_the_arrays(fitted, monkeypatch):
    """``model.predict(df)``: ``df``'s index and columns, then ``F_mean`` (``F_lower``,
    ``F_upper``) per feature, in the table's units; its means are ``predict_arrays``' ``y_pred``
    mapped by the recorded scale. A LongitudinalData still gives the arrays."""
    model, _, data, _ = fitted
    frame = data.covariate_frame().iloc[[40, 3, 17]].copy()
    frame.index = pd.Index([30, 10, 20], name="visit")
    mean, std = np.arange(D, dtype=float) - 2.0, np.linspace(0.5, 2.0, D)
    monkeypatch.setitem(model.info, "feature_mean", mean.tolist())
    monkeypatch.setitem(model.info, "feature_std", std.tolist())
    features = [f"f{d}" for d in range(D)]
    arrays = model.predict_arrays(frame)
    means = model.predict(frame, intervals=False)
    assert isinstance(means, pd.DataFrame) and means.index.equals(frame.index)
    assert list(means.columns) == list(frame.columns) + [f + "_mean" for f in features]
    pd.testing.assert_frame_equal(means[frame.columns], frame)
    np.testing.assert_allclose(bounds(means, "_mean"), arrays["y_pred"] * std + mean, rtol=1e-5, atol=1e-5)
    table = model.predict(frame, level=0.8, n_samples=100)
    assert list(table.columns) == list(frame.columns) + [f + s for f in features for s in ("_mean", "_lower", "_upper")]
    pd.testing.assert_frame_equal(table, predict_frame(model, frame, level=0.8, n_samples=100))
    wide = model.predict(frame, level=0.98, n_samples=100)  # same draws, wider level: the interval contains it
    assert (bounds(wide, "_lower") <= bounds(table, "_lower")).all() and (bounds(wide, "_upper") >= bounds(table, "_upper")).all()
    assert (bounds(wide, "_upper") - bounds(wide, "_lower") > bounds(table, "_upper") - bounds(table, "_lower")).any()
    rows = data.subset(np.arange(6))
    out = model.predict(rows)  # LongitudinalData: the arrays, stored scale
    assert isinstance(out, dict) and set(out) == {"y_pred", "z_mean", "z_var"}
    np.testing.assert_array_equal(out["y_pred"], model.predict_arrays(rows)["y_pred"])
    with pytest.raises(ConfigError, match="apply to a pandas DataFrame.*LongitudinalData"):
        model.predict(rows, level=0.5)
    assert not hasattr(model, "predict_frame")  # one name for one thing


def test_bad_covariates_are_one_line_errors(fitted, tmp_path, capsys):
    model, run, data, _ = fitted
    frame = data.covariate_frame().head(4)
    with pytest.raises(ConfigError, match="lacks column.*site"):
        predict_frame(model, frame.drop(columns="site"))
    with pytest.raises(ConfigError, match=r"column 'time' is blank at row 3"):
        predict_frame(model, frame.assign(time=[0.1, 0.2, np.nan, 0.4]))
    with pytest.raises(ConfigError, match=r"column 'site' at row 2: level 'east' was not seen in training"):
        predict_frame(model, frame.assign(site=["north", "east", "west", "west"]))
    unseen = predict_frame(model, frame.assign(id=["new1", "new2", "new3", "new4"]))  # population prediction
    assert np.isfinite(bounds(unseen, "_mean")).all()
    frame.assign(sex=[0, 1, "female", 0]).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["predict", str(run), "--covariates", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv" in err and "'sex'" in err and "row 3 (line 4)" in err


def test_cli_predict_writes_csv_and_h5(fitted, tmp_path):
    model, run, data, _ = fitted
    frame = data.covariate_frame().iloc[:7]
    frame.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(run), "--covariates", str(tmp_path / "new.csv"), "--out", str(tmp_path / "P.csv"),
                 "--level", "0.8"]) == 0
    table = pd.read_csv(tmp_path / "P.csv")
    expected = predict_frame(model, frame, level=0.8)
    assert list(table.columns) == list(expected.columns) and len(table) == 7
    np.testing.assert_allclose(bounds(table, "_upper"), bounds(expected, "_upper"), rtol=1e-5, atol=1e-6)
    assert main(["predict", "--run", str(run), "--covariates", str(tmp_path / "new.csv"), "--out", str(tmp_path / "P.h5")]) == 0
    with h5py.File(tmp_path / "P.h5") as f:
        assert f["y_pred"].shape == f["y_lower"].shape == f["y_upper"].shape == (7, D)
        assert f["z_mean"].shape == (7, 2) and np.all(f["z_var"][()] > 0)
        assert json.loads(f["input"].attrs["columns"]) == list(frame.columns)
        assert [v.decode() for v in f["input/id"][()]] == list(frame["id"])
        assert f.attrs["level"] == 0.9 and f.attrs["units"] == "table"
    assert main(["predict", str(run), "--covariates", str(tmp_path / "new.csv"), "--out", str(tmp_path / "fast.h5"),
                 "--no-intervals"]) == 0  # the workflow's latent figures: model.predict's means and latents
    with h5py.File(tmp_path / "fast.h5") as f:
        np.testing.assert_allclose(f["y_pred"][()], model.predict_arrays(frame)["y_pred"], rtol=1e-5, atol=1e-6)
        assert "y_lower" not in f and f["z_mean"].shape == (7, 2)
    assert main(["predict", str(run), "--covariates", str(tmp_path / "new.csv"), "--out", str(tmp_path / "P.txt")]) == 2


def test_effect_of_time_has_the_simulated_sign(fitted, tmp_path):
    """Population effect of time (sex 0, reference site, unseen subject): the true predictive mean
    ``E_b tanh(W(β t + b))`` rises for features with ``(W^T β)_d > 0`` and falls otherwise."""
    model, run, _, w = fitted
    table = covariate_effect(model, "time", n_points=5)
    assert table["sex"].eq(0).all() and table["site"].eq("north").all()
    np.testing.assert_allclose(table["time"], np.linspace(0, 1, 5))
    b = np.random.default_rng(0).normal(0.0, 0.8, size=(4000, 2))
    truth = np.tanh((BETA + b) @ w).mean(0) - np.tanh(b @ w).mean(0)  # change from t = 0 to 1
    learned = bounds(table, "_mean")[-1] - bounds(table, "_mean")[0]
    strong = np.abs(truth) > 0.3
    assert strong.sum() >= 2
    assert (np.sign(learned[strong]) == np.sign(truth[strong])).all(), (learned, truth)
    assert main(["effects", str(run), "--covariate", "time", "--png", str(tmp_path / "t.png"),
                 "--csv", str(tmp_path / "t.csv"), "--points", "5"]) == 0
    assert (tmp_path / "t.png").stat().st_size > 10_000 and len(pd.read_csv(tmp_path / "t.csv")) == 5
    plot_effect(model, "site", tmp_path / "site.png")  # categorical: one point per level
    with pytest.raises(ConfigError, match="not in the model's design"):
        covariate_effect(model, "age")


def test_effect_grid_holds_interaction_partners_and_at_values(fitted):
    model, _, data, _ = fitted
    grid = effect_grid(model, "time", 3, at={"sex": "1", "site": "west"})
    assert grid["sex"].eq(1.0).all() and grid["site"].eq("west").all() and grid["id"].eq(POPULATION).all()
    with pytest.raises(ConfigError, match="not a training level of site"):
        effect_grid(model, "time", 3, at={"site": "east"})
    with pytest.raises(ConfigError, match="not another covariate"):
        effect_grid(model, "time", 3, at={"age": "3"})
    only_with_sex = lmmvae.fit(data, variant="olmm", design="~ sex + sex:time + (1 | id)", latent_dim=2,
                               epochs=1, progress=False)
    assert effect_grid(only_with_sex, "time", 3)["sex"].eq(1.0).all()  # at sex 0 time would have no effect
    assert effect_grid(model, "time", 3)["sex"].eq(0.0).all()  # a main effect: the reference level


def test_summary_history_repr_and_latent_variance(fitted, tmp_path, capsys):
    model, run, data, _ = fitted
    summary = model.summary()
    columns = ["(Intercept)", "time", "sex", "site[south]", "site[west]"]
    assert list(summary.fixed_effects["term"].unique()) == columns
    assert len(summary.fixed_effects) == len(columns) * 2
    # the library's default q_A is a point estimate (docs/recipe_study.md): no sd, and the text says so
    assert model.config.prior.get("q_A") is None and summary.fixed_effects["sd"].isna().all()
    assert "point estimates of A" in str(summary)
    assert (summary.random_effects["n_levels"] == N_SUBJECTS).all() and (summary.random_effects["tau"] > 0).all()
    assert {"sigma_z[z1]", "sigma_z[z2]"} <= set(summary.noise["parameter"])
    history = model.history
    assert isinstance(history, pd.DataFrame) and {"epoch", "train_loss", "val_loss"} <= set(history.columns)
    best = int(history["epoch"][history["val_loss"][history["warmup"] == 0].idxmin()])  # kept: after the warm-up
    assert summary.training["best_epoch"] == best and summary.training["stopped"] in ("converged", "budget")
    assert summary.training["epochs_run"] == int(history["epoch"].iloc[-1])
    assert summary.training["stopped_early"] == (summary.training["epochs_run"] < model.config.epochs)
    text = str(summary)
    assert "Fixed effects in latent space" in text and f"best epoch {best}" in text and "Random effects" in text
    shown = repr(model)
    assert all(part in shown for part in ("olmm/elbo", DESIGN, "latent 2", f"{D} features", f"best {best}"))
    assert main(["summary", str(run), "--out", str(tmp_path / "s.json")]) == 0
    assert "Fixed effects in latent space" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["training"]["best_epoch"] == best
    mean, var = model.latent(data, give_var=True)
    np.testing.assert_allclose(mean, model.latent(data), atol=1e-6)
    assert var.shape == mean.shape and (var > 0).all()


def test_classical_rows_get_exact_normal_intervals_in_table_units(tmp_path):
    data, _ = simulate(seed=2)
    mean, std = np.linspace(-5.0, 5.0, D), np.linspace(0.5, 3.0, D)  # y_table = y * std + mean
    data.attrs.update(feature_mean=mean.tolist(), feature_std=std.tolist())
    model = lmmvae.fit(data, variant="mean", design=DESIGN)
    frame = data.covariate_frame().head(3).set_axis(["a", "b", "c"])
    table = model.predict(frame, level=0.9)
    assert list(table.index) == ["a", "b", "c"] and list(table.columns[:len(frame.columns)]) == list(frame.columns)
    pred = model.predict_arrays(frame)  # the stored scale
    np.testing.assert_allclose(bounds(model.predict(frame, intervals=False), "_mean"), pred["y_pred"] * std + mean,
                               rtol=1e-5)
    assert set(model.predict(data)) == {"y_pred", "y_var"}  # LongitudinalData: the arrays
    assert repr(model) == f"<mean model, design {DESIGN!r}, {D} features>"
    for ask in (lambda: model.latent(data, give_var=True), lambda: model.history):  # summary: tests/test_sleepstudy.py
        with pytest.raises(RunError, match="latent space|no training history"):  # one line, not an AttributeError
            ask()
    np.testing.assert_allclose(bounds(table, "_mean"), pred["y_pred"] * std + mean, rtol=1e-5)
    np.testing.assert_allclose(bounds(table, "_upper") - bounds(table, "_mean"),
                               1.6448536 * np.sqrt(pred["y_var"]) * std, rtol=1e-5)
    stored = predict_frame(model, frame, level=0.9, table_units=False)
    np.testing.assert_allclose(bounds(stored, "_mean"), pred["y_pred"], rtol=1e-6)


def test_neural_predictions_in_table_units(fitted, monkeypatch):
    model, _, data, _ = fitted
    assert model.info["feature_mean"] == [0.0] * D and model.info["feature_std"] == [1.0] * D  # recorded by fit
    frame = data.covariate_frame().head(5)
    stored = predict_frame(model, frame)
    mean, std = np.arange(D, dtype=float), np.full(D, 2.0)
    monkeypatch.setitem(model.info, "feature_mean", mean.tolist())
    monkeypatch.setitem(model.info, "feature_std", std.tolist())
    table = predict_frame(model, frame)
    for suffix in ("_mean", "_lower", "_upper"):
        np.testing.assert_allclose(bounds(table, suffix), bounds(stored, suffix) * std + mean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant,objective", [("slmm", "elbo"), ("olmm", "gsnn"), ("vae", "elbo"), ("cvae", "elbo")])
def test_summary_and_intervals_for_other_variants(variant, objective):
    """Smoke test over variants (one epoch): every section that applies is filled, the rest empty."""
    data, _ = simulate(seed=3)
    design = "~ time + sex" if variant in ("vae", "cvae") else DESIGN
    model = lmmvae.fit(data, variant=variant, objective=objective, design=design, latent_dim=2, epochs=1,
                       progress=False)
    summary = model.summary()
    noise = set(summary.noise["parameter"])
    if variant == "slmm":
        assert "sigma_eps" in noise and summary.fixed_effects["sd"].isna().all()  # A is a parameter (point)
        assert "point estimates of A" in str(summary)
    elif variant == "olmm":
        assert {"sigma_z[z1]", "sigma_z[z2]"} <= noise and (summary.fixed_effects["sd"] > 0).all()
    else:
        assert summary.fixed_effects.empty and summary.random_effects.empty
    assert summary.training == {} and "no history" in str(summary)
    table = predict_frame(model, data.covariate_frame().head(4), n_samples=50)
    assert (bounds(table, "_lower") <= bounds(table, "_upper")).all()


def test_bernoulli_intervals_are_draws_of_zero_or_one():
    data, _ = simulate(seed=4)
    data.y = (data.y > 0).astype(np.float32)
    model = lmmvae.fit(data, variant="olmm", design=DESIGN, likelihood="bernoulli", latent_dim=2, epochs=1,
                       progress=False)
    table = predict_frame(model, data.covariate_frame().head(6), level=0.9, n_samples=200)
    mean, lower, upper = bounds(table, "_mean"), bounds(table, "_lower"), bounds(table, "_upper")
    assert ((mean > 0) & (mean < 1)).all() and np.isin(lower, (0.0, 1.0)).all() and np.isin(upper, (0.0, 1.0)).all()
    assert (lower[mean > 0.99] == 1).all() and (upper[mean < 0.01] == 0).all()
    uncertain = (mean > 0.1) & (mean < 0.9)  # both outcomes likely: the interval is the whole range
    assert uncertain.any() and ((lower == 0) & (upper == 1))[uncertain].all()
