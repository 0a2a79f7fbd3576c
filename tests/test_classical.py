"""The classical rows of the benchmark (lmmvae/classical/family.py): MixedLM per feature and the feature
mean, fitted on the train and validation rows (never a test row), through the API and the command line."""

import json
import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import lmmvae
from lmmvae.classical import family as classical, mixedlm
from lmmvae.cli import main
from lmmvae.data.h5 import Covariate, LongitudinalData, write_h5
from lmmvae.errors import ConfigError
from lmmvae.training.checks import config_from_dict, prior_options

DESIGN = "~ time + sex + (1 + time | id)"
BETA = np.array([[0.5, 1.5, -1.0], [-0.3, -2.0, 0.8], [1.0, 0.5, 0.0]])  # [D, (1, time, sex)]
G = np.array([[0.6, 0.1], [0.1, 0.3]])  # random intercept, slope
NOISE = 0.2


def simulate(n_subjects=80, n_times=8, n_future=3, seed=0, missing=0.2):
    """One LMM per feature: ``y_d = β_d·(1, t, sex) + b_{d,p}·(1, t) + ε``, ``b ~ N(0, G)``; the
    last ``n_future`` visits of every other subject are test; ``missing`` of the train entries
    are masked out (``/y_full`` keeps them)."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_times)
    step = np.tile(np.arange(n_times), n_subjects)
    time = step / (n_times - 1) * 2.0
    sex = np.repeat(rng.integers(0, 2, n_subjects), n_times)
    d = BETA.shape[0]
    b = rng.multivariate_normal(np.zeros(2), G, size=(d, n_subjects))  # [D, P, 2]
    fixed = np.column_stack([np.ones_like(time), time, sex]) @ BETA.T  # [N, D]
    random = b[:, subject, 0].T + b[:, subject, 1].T * time[:, None]
    y = fixed + random + NOISE * rng.normal(size=fixed.shape)
    split = np.zeros(len(y), np.uint8)
    split[(subject % 2 == 0) & (step >= n_times - n_future)] = 2
    split[(split == 0) & (rng.random(len(y)) < 0.1)] = 1
    mask = np.ones_like(y, np.uint8)
    mask[(split == 0)[:, None] & (rng.random(y.shape) < missing)] = 0
    data = LongitudinalData(
        y=np.where(mask == 1, y, 0.0), mask=mask, split=split, y_full=y,
        covariates={"time": Covariate(time, "time"), "sex": Covariate(sex, "binary"),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)])},
        attrs={"name": "lmm-per-feature"})
    return data, fixed


def fit(data, variant="mixedlm", design=DESIGN, **prior):
    return lmmvae.fit(data, variant=variant, design=design, prior=prior)


@pytest.fixture(scope="module")
def sim():
    return simulate(n_subjects=400)  # standard errors of the fixed effects <= 0.08


@pytest.fixture(scope="module")
def fitted(sim):
    return fit(sim[0])


def test_mixedlm_recovers_fixed_effects_and_beats_the_mean(sim, fitted):
    data, fixed = sim
    assert fitted.info["status"] == ["mixedlm"] * 3
    # the fixed part, read as predictions for an unseen subject (random effect 0), is the truth's
    grid = pd.DataFrame({"time": np.tile(np.linspace(0, 2, 5), 2), "sex": np.repeat([0, 1], 5), "id": "new"})
    truth = np.column_stack([np.ones(10), grid.time, grid.sex]) @ BETA.T
    pred = fitted.predict_arrays(grid)["y_pred"]
    np.testing.assert_allclose(pred, truth, atol=0.25)
    assert np.abs(pred - truth).mean() < 0.08
    # the random-effect covariance is recovered on the design's scale: time standardised, so
    # (b0, b1) becomes (b0 + b1·mean(t), b1·std(t))
    t = data.covariates["time"].values[data.split == 0]
    a = np.array([[1.0, t.mean()], [0.0, t.std()]])
    for d in range(3):
        np.testing.assert_allclose(fitted.params["cov_re"][d], a @ G @ a.T, atol=0.25)
        assert abs(fitted.params["scale"][d] - NOISE**2) < 0.01
    mixed = fitted.evaluate(data)
    mean = fit(data, "mean").evaluate(data)
    assert mixed["mse_test"] < 0.25 * mean["mse_test"]
    assert mixed["nll_test"] < mean["nll_test"]
    # against the oracle: BLUPs from the train entries under the TRUE β, G, σ² (SPEC 6 scoring)
    oracle = _oracle_predictions(data)
    test, train = data.split == 2, data.split == 0
    observed_test = (data.mask == 1) & test[:, None]
    missing_train = (data.mask == 0) & train[:, None]
    best_test = np.mean((data.y - oracle)[observed_test] ** 2)
    best_impute = np.mean((data.y_full - oracle)[missing_train] ** 2)
    assert mixed["mse_test"] < 1.1 * best_test
    assert mixed["mse_impute"] < 1.1 * best_impute


def _oracle_predictions(data):
    time, sex = data.covariates["time"].values, data.covariates["sex"].values
    subject = data.covariates["id"].values
    x = np.column_stack([np.ones_like(time), time, sex])
    z = np.column_stack([np.ones_like(time), time])
    out = np.zeros(data.y.shape)
    for d in range(data.n_features):
        rows = (data.split == 0) & (data.mask[:, d] == 1)
        means, _ = mixedlm.blups(BETA[d], G, NOISE**2, x[rows], z[rows], data.y[rows, d].astype(float),
                                   subject[rows], subject.max() + 1)
        out[:, d] = x @ BETA[d] + np.einsum("nf,nf->n", z, means[subject])
    return out


def test_predictions_equal_statsmodels_predict_plus_blups(sim):
    from statsmodels.regression.mixed_linear_model import MixedLM

    data, _ = simulate(n_subjects=10, n_times=6, n_future=2, seed=3, missing=0.0)
    data = LongitudinalData(y=data.y[:, :1], mask=data.mask[:, :1], split=data.split, covariates=data.covariates)
    model = fit(data)
    assert model.info["status"] == ["mixedlm"]
    train = data.split != 2  # the refit uses train + validation rows
    design = model.design.transform(data.covariates)
    x, z, g = design.shared.astype(float), design.values[0].astype(float), design.levels[0]
    result = MixedLM(data.y[train, 0].astype(float), x[train], groups=g[train], exog_re=z[train]).fit(
        reml=True, method=["lbfgs"])
    np.testing.assert_allclose(model.params["beta"][0], result.fe_params, rtol=1e-6, atol=1e-8)
    by_hand = result.predict(x) + np.array([z[i] @ np.asarray(result.random_effects[g[i]]) for i in range(len(g))])
    out = model.predict_arrays(data.covariate_frame())
    np.testing.assert_allclose(out["y_pred"][:, 0], by_hand, rtol=1e-5, atol=1e-5)
    # predictive variance: σ² + z_i^T Cov(b_p | train) z_i with statsmodels' conditional covariance
    cond = np.array([z[i] @ np.asarray(result.random_effects_cov[g[i]]) @ z[i] for i in range(len(g))])
    np.testing.assert_allclose(out["y_var"][:, 0], result.scale + cond, rtol=1e-4)
    # NLL per test observation under that Gaussian
    test = data.split == 2
    nll = 0.5 * (np.log(2 * math.pi * (result.scale + cond[test])) + (data.y[test, 0] - by_hand[test]) ** 2
                 / (result.scale + cond[test]))
    assert model.evaluate(data)["nll_test"] == pytest.approx(nll.mean(), rel=1e-4)


def test_unseen_subject_gets_zero_random_effect(fitted):
    rows = pd.DataFrame({"time": [0.0, 1.0, 2.0], "sex": [1, 1, 1], "id": ["nobody"] * 3})
    seen = rows.assign(id="s1")
    x = fitted.design.transform({k: rows[k].to_numpy() for k in rows}).shared.astype(float)
    fixed = x @ fitted.params["beta"].T
    out = fitted.predict_arrays(rows)
    np.testing.assert_allclose(out["y_pred"], fixed, rtol=1e-5, atol=1e-6)
    assert np.abs(fitted.predict_arrays(seen)["y_pred"] - fixed).max() > 0.05  # a seen subject's BLUP moves it
    # variance of an unseen subject: σ² + z^T G z (the prior of its random effects), z = (1, time)
    z = fitted.design.transform({k: seen[k].to_numpy() for k in seen}).values[0].astype(float)
    expected = fitted.params["scale"][None, :] + np.einsum("nf,dfg,ng->nd", z, fitted.params["cov_re"], z)
    np.testing.assert_allclose(out["y_var"], expected, rtol=1e-5)


def test_changing_test_rows_changes_nothing_fitted(sim, fitted):
    data, _ = sim
    rng = np.random.default_rng(9)
    held = data.split == 2
    y = data.y.copy()
    y[held] = rng.normal(5.0, 3.0, size=y[held].shape)
    changed = LongitudinalData(y=y, mask=data.mask, split=data.split, y_full=np.where(held[:, None], y, data.y_full),
                               covariates=data.covariates, attrs=data.attrs)
    refit = fit(changed)
    for key, value in fitted.params.items():
        np.testing.assert_array_equal(refit.params[key], value, err_msg=key)
    before, after = fitted.evaluate(data), refit.evaluate(changed)
    assert after["mse_impute"] == before["mse_impute"]
    assert after["mse_test"] > 10 * before["mse_test"]  # the test rows are the ones scored


def test_mean_is_the_observed_training_mean_and_variance(sim):
    data, _ = sim
    model = fit(data, "mean", design="~ 1")
    train = data.split != 2
    for d in range(data.n_features):
        obs = data.y[train & (data.mask[:, d] == 1), d]
        assert model.params["mean"][d] == pytest.approx(obs.mean())
        assert model.params["var"][d] == pytest.approx(obs.var())
    test = data.split == 2
    var = model.params["var"]
    nll = 0.5 * (np.log(2 * math.pi * var) + (data.y[test] - model.params["mean"]) ** 2 / var)
    metrics = model.evaluate(data)
    assert metrics["nll_test"] == pytest.approx(nll.sum(axis=1).mean(), rel=1e-5)
    assert metrics["mse_test"] == pytest.approx(np.mean((data.y[test] - model.params["mean"]) ** 2), rel=1e-5)
    assert set(metrics) == {"mse_impute", "mse_test", "nll_test"}


def test_design_without_random_term_is_least_squares(sim):
    data, _ = sim
    model = fit(data, design="~ time + sex")
    train = data.split != 2
    x = model.design.transform(data.covariates).shared.astype(float)
    for d in range(data.n_features):
        rows = train & (data.mask[:, d] == 1)
        beta = np.linalg.lstsq(x[rows], data.y[rows, d].astype(float), rcond=None)[0]
        np.testing.assert_allclose(model.params["beta"][d], beta, rtol=1e-6, atol=1e-8)
    assert model.info["status"] == ["fixed effects only"] * 3


def test_hard_features_fall_back_and_are_counted():
    data, _ = simulate(n_subjects=30, n_times=6, missing=0.0)
    y, mask = data.y.copy(), data.mask.copy()
    y[:, 1] = 0.7  # constant feature
    mask[:, 2] = 0
    mask[:3, 2] = 1  # three entries of one subject
    y = np.column_stack([y, np.zeros(len(y))])
    mask = np.column_stack([mask, np.zeros(len(y), np.uint8)])  # a feature never observed
    hard = LongitudinalData(y=y, mask=mask, split=data.split, covariates=data.covariates)
    model = fit(hard)
    status = model.info["status"]
    assert status[0] == "mixedlm"
    assert status[1].startswith("mean (on validation, mixedlm: constant feature")
    assert status[2].startswith("fixed effects only (on validation, mixedlm: fewer than two subjects")
    assert status[3].startswith("no observations")
    assert model.warnings["fixed_effects_only"] == 1 and model.warnings["mean"] == 1
    assert model.warnings["no_observations"] == 1
    # the note names the features that fell back
    assert "fixed effects only: y2" in model.fit_note() and "mean: y1" in model.fit_note()
    out = model.predict_arrays(hard.covariate_frame())
    assert np.isfinite(out["y_pred"]).all() and (out["y_var"] >= mixedlm.MIN_VARIANCE).all()
    np.testing.assert_allclose(out["y_pred"][:, 1], 0.7, atol=1e-5)


def test_too_many_random_effects_reduce_to_the_random_intercept():
    # 2 visits per subject: (1 + time | id) has as many random effects as observations (lme4 refuses)
    data, _ = simulate(n_subjects=40, n_times=2, n_future=0, missing=0.0)
    model = fit(data)
    status = model.info["status"]
    assert all("mixedlm: 75 observations <= 80 random effects" in s for s in status)  # 5 rows are validation
    ri = [d for d, s in enumerate(status) if s.startswith("random intercept only")]
    assert len(ri) >= 2 and model.warnings["random_intercept_only"] == len(ri)
    assert np.all(model.params["cov_re"][ri, 1, :] == 0) and np.all(model.params["cov_re"][ri, 0, 0] > 0.1)


def test_config_validates_through_the_registry():
    config = config_from_dict({"variant": "mixedlm", "prior": {"reml": False, "method": ["lbfgs"]}})
    assert prior_options(config) == mixedlm.MixedLMOptions(reml=False, method=["lbfgs"])
    with pytest.raises(ConfigError, match="unknown key.*valid: reml, method, maxiter, candidates"):
        config_from_dict({"variant": "mixedlm", "prior": {"q_A": "point"}})
    with pytest.raises(ConfigError, match="valid: none"):
        config_from_dict({"variant": "mean", "prior": {"reml": True}})


def test_two_grouping_factors_are_refused_in_one_line(sim):
    data, _ = sim
    covs = dict(data.covariates, site=Covariate(data.covariates["id"].values % 3, "categorical"))
    two = LongitudinalData(y=data.y, mask=data.mask, split=data.split, covariates=covs)
    with pytest.raises(ConfigError, match="one grouping factor; this design groups by id, site"):
        fit(two, design="~ time + (1 | id) + (1 | site)")


MODEL_YAML = """\
variant: {variant}
design: "{design}"
prior: {prior}
"""


def test_cli_fit_evaluate_predict_and_mcc_refusal(tmp_path, capsys):
    data, _ = simulate(n_subjects=20, n_times=6, n_future=2)
    data_file = write_h5(data, tmp_path / "sim.h5")
    for variant, prior in (("mixedlm", "{reml: true}"), ("mean", "{}")):
        model = tmp_path / f"{variant}.yaml"
        model.write_text(MODEL_YAML.format(variant=variant, design=DESIGN, prior=prior))
        run = tmp_path / variant
        # the workflow always passes --resume; a classical run refits (seconds)
        assert main(["fit", "--data", str(data_file), "--model", str(model), "--out", str(run), "--resume",
                     "--quiet"]) == 0
        state = torch.load(run / "model.pt", weights_only=True)
        assert state["format"] == classical.FORMAT and state["variant"] == variant
        assert main(["evaluate", "--run", str(run), "--data", str(data_file), "--out", str(tmp_path / "m.json"),
                     "--predictions", str(tmp_path / "p.h5")]) == 0
        result = json.loads((tmp_path / "m.json").read_text())
        assert set(result["metrics"]) == {"mse_impute", "mse_test", "nll_test"}
        assert result["variant"] == variant and result["design"] == DESIGN
        assert {"objective", "latent_dim", "seed", "dataset", "run"} <= set(result)
        direct = lmmvae.load(run).evaluate(data)
        assert result["metrics"] == pytest.approx(direct)
        with h5py.File(tmp_path / "p.h5") as f:
            assert f["y_pred"].shape == data.y.shape and "split" in f
        data.covariate_frame().head(4).to_csv(tmp_path / "c.csv", index=False)
        assert main(["predict", "--run", str(run), "--covariates", str(tmp_path / "c.csv"),
                     "--out", str(tmp_path / "pred.h5")]) == 0
        with h5py.File(tmp_path / "pred.h5") as f:
            np.testing.assert_allclose(f["y_pred"][:], lmmvae.load(run).predict_arrays(data.covariate_frame().head(4))["y_pred"])
        capsys.readouterr()
        assert main(["mcc", str(run), str(run), "--data", str(data_file)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "without a latent space" in err


def test_default_config_declares_the_classical_rows_without_mcc():
    from pathlib import Path

    import yaml

    from lmmvae.reporting.experiments import load_plan

    root = Path(__file__).resolve().parents[1]
    for name in ("default.yaml", "paper.yaml"):
        plan = load_plan(yaml.safe_load((root / "config" / name).read_text()),
                         root / "workflow" / "schemas" / "config.schema.yaml")
        for exp in ("physionet", "identifiability_trial"):
            experiment = plan.experiments[exp]
            variants = {plan.model(experiment.dataset, m).config["variant"] for m in experiment.models}
            assert {"mixedlm", "mean"} <= variants, (name, exp)
        assert not [p for p in plan.seed_pairs
                    if classical.is_classical(plan.model(p.dataset, p.model).config["variant"])]


def test_damaged_or_foreign_model_file_is_one_line(tmp_path, sim):
    from lmmvae.errors import RunError

    data, _ = simulate(n_subjects=12, n_times=5)
    run = tmp_path / "run"
    lmmvae.fit(data, out=run, variant="mean", design="~ 1")
    assert lmmvae.load(run).evaluate(data)["mse_test"] > 0
    with pytest.raises(RunError, match="finished run"):
        lmmvae.fit(data, out=run, variant="mean", design="~ 1")  # no silent replacement
    torch.save({"format": classical.FORMAT, "version": classical.FORMAT_VERSION, "variant": "mean",
                "arrays": {"mean": torch.zeros(2), "var": torch.ones(2)}}, run / "model.pt")
    with pytest.raises(RunError, match="mean has shape"):
        lmmvae.load(run)
    (run / "model.pt").write_bytes(b"garbage")
    with pytest.raises(RunError, match="unreadable"):
        lmmvae.load(run)
