"""The accuracy benchmark's simulator (benchmarks/simulate_lmm.py), its reference rows, and smoke runs
of benchmarks/accuracy.py and benchmarks/recipe_study.py (--quick)."""

import csv

import numpy as np
import pytest

from benchmarks import accuracy, recipe_study
from benchmarks.simulate_lmm import DESIGN, decoder, shared_effect, simulate_lmm
from lmmvae.data.h5 import LongitudinalData, write_h5


def test_simulator_splits_test_rows_are_the_last_visits_of_every_other_subject():
    data = simulate_lmm(n_subjects=40, n_visits=10, data_dim=20, n_future=3, seed=1)
    assert data.n_obs == 400 and data.n_features == 20 and data.latent_truth.shape == (400, 2)
    subject = data.covariates["id"].values
    time = data.covariates["time"].values.reshape(40, 10)
    assert (np.diff(time, axis=1) > 0).all() and time.min() >= 0 and time.max() <= 1
    test = data.split == 2
    assert test.sum() == 20 * 3
    step = np.tile(np.arange(10), 40)
    np.testing.assert_array_equal(test, (subject % 2 == 0) & (step >= 7))
    rest = ~test
    assert set(np.unique(data.split[rest])) == {0, 1}
    assert 0.08 < (data.split[rest] == 1).mean() < 0.22  # 85:15 at random by observation
    # every test subject has training rows to learn its random effects from
    assert set(subject[test]) <= set(subject[data.split == 0])
    assert data.covariates["sex"].kind == "binary" and data.covariates["id"].kind == "id"
    assert data.covariates["time"].kind == "time" and len(data.covariates["id"].levels) == 40


def test_simulator_truth_reproduces_y_up_to_the_noise():
    data = simulate_lmm(n_subjects=60, noise=0.1, seed=2)
    g = decoder(data.n_features, data.attrs["decoder_seed"])
    truth = g(data.latent_truth)
    np.testing.assert_allclose(truth, data.y_full, atol=1e-5)
    assert np.mean((data.y - truth) ** 2) == pytest.approx(0.01, rel=0.1)  # noise²
    assert data.y_full.var(0).mean() > 20 * 0.01  # signal well above the noise
    # one decoder for every data seed; the data differ
    other = simulate_lmm(n_subjects=60, noise=0.1, seed=3)
    np.testing.assert_allclose(g(other.latent_truth), other.y_full, atol=1e-5)
    assert not np.allclose(other.y, data.y)


def test_design_contains_the_generating_latent_model_exactly():
    """z is, to rounding, a linear function of DESIGN's columns: fixed 1, time, fourier(time, 2,
    period=2), sex, and per-subject intercepts and slopes (what the module docstring claims)."""
    assert "fourier(time, 2, period=2)" in DESIGN and "(1 + time | id)" in DESIGN
    data = simulate_lmm(n_subjects=10, n_visits=8, seed=4)
    t, sex, subject = (data.covariates[k].values for k in ("time", "sex", "id"))
    onehot = np.eye(10)[subject]
    x = np.hstack([accuracy.fixed_design(t, sex), onehot, onehot * t[:, None]])
    coef, *_ = np.linalg.lstsq(x, data.latent_truth.astype(np.float64), rcond=None)
    assert np.abs(x @ coef - data.latent_truth).max() < 1e-4
    # ... and a design without the Fourier columns does not contain it
    coef, *_ = np.linalg.lstsq(np.delete(x, [2, 3, 4, 5], axis=1), data.latent_truth, rcond=None)
    assert np.abs(np.delete(x, [2, 3, 4, 5], axis=1) @ coef - data.latent_truth).max() > 0.1
    np.testing.assert_allclose(shared_effect(np.array([0.25]))[0], [1.0, np.cos(np.pi / 4)])


def test_mixedlm_reference_predicts_an_lmm_in_output_space_to_the_noise():
    """With an identity decoder (y = z + noise: an LMM per feature), the per-feature MixedLM's
    future MSE is near the noise floor; without the subjects' BLUPs it would be near the
    random-effect variance (≥ 0.8² · 1)."""
    sim = simulate_lmm(n_subjects=30, n_visits=10, seed=5)
    rng = np.random.default_rng(0)
    y = sim.latent_truth + 0.1 * rng.normal(size=sim.latent_truth.shape)
    data = LongitudinalData(y=y, mask=np.ones(y.shape, np.uint8), split=sim.split, covariates=sim.covariates)
    pred, _ = accuracy.mixedlm_statsmodels(data)
    test = data.split == 2
    err = np.mean((pred - data.y[test]) ** 2)
    assert err < 0.05, err


def test_summary_ratio_and_targets():
    rows = [{"model": "mixedlm", "mse_test": 0.2}, {"model": "mixedlm", "mse_test": 0.4},
            {"model": "olmm_elbo", "mse_test": 0.06, "best_epoch": 5, "epochs_run": 9, "max_epochs": 10,
             "stopped_early": True},
            {"model": "olmm_gsnn", "mse_test": 0.07, "best_epoch": 10, "epochs_run": 10, "max_epochs": 10,
             "stopped_early": False}]
    models = [m for m in accuracy.MODELS if m.key in ("mixedlm", "olmm_elbo", "olmm_gsnn")]
    summary = {s["model"]: s for s in accuracy.summarise(rows, models)}
    assert summary["mixedlm"]["mse_test"] == pytest.approx(0.3)
    assert summary["mixedlm"]["mse_sd"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert summary["olmm_elbo"]["ratio_mixedlm"] == pytest.approx(0.2)
    assert summary["olmm_elbo"]["target"].endswith("met")
    assert summary["olmm_gsnn"]["target"].endswith("missed")  # 0.07 > 1.1 × 0.06
    assert summary["olmm_gsnn"]["best_is_last"] == 1 and summary["olmm_elbo"]["stopped_early"] == 1


@pytest.mark.slow
def test_accuracy_quick_writes_its_table_and_curves(tmp_path):
    result = accuracy.main(["--quick", "--threads", "1", "--mixedlm", "statsmodels", "--out", str(tmp_path)])
    with open(tmp_path / "summary.csv") as f:
        summary = {r["model"]: r for r in csv.DictReader(f)}
    assert set(summary) == {m.key for m in accuracy.MODELS}
    truth, mean = float(summary["truth"]["mse_test"]), float(summary["train_mean"]["mse_test"])
    assert truth < 0.03 < mean  # noise floor 0.01 ≪ the spread of the data
    assert float(summary["mixedlm"]["ratio_mixedlm"]) == pytest.approx(1.0)
    for key in ("olmm_elbo", "olmm_gsnn", "slmm_elbo", "slmm_gsnn", "vae"):
        assert np.isfinite(float(summary[key]["mse_test"]))
        assert (tmp_path / "curves" / f"{key}-seed0.png").stat().st_size > 1000
    assert "| oLMM-VAE (ELBO) |" in (tmp_path / "table.md").read_text()
    assert "÷ MixedLM" in result.markdown()


def test_recipe_grid_points_and_overrides():
    grid = recipe_study.parse_set(["lr=0.001,0.003", "prior.q_A=point", "lr_random_effects_factor=30"])
    assert grid == {"lr": [0.001, 0.003], "prior.q_A": ["point"], "lr_random_effects_factor": [30]}
    assert recipe_study.points(grid, "one-at-a-time") == [
        {}, {"lr": 0.001}, {"lr": 0.003}, {"prior.q_A": "point"}, {"lr_random_effects_factor": 30}]
    assert len(recipe_study.points({"a": [1, 2], "b": [3, 4, 5]}, "product")) == 1 + 6
    settings = recipe_study.apply({"variant": "olmm", "prior": {"tau_random": 2.0}},
                                  {"lr": 0.003, "prior.q_A": "point", "lr_random_effects_factor": 30})
    assert settings == {"variant": "olmm", "lr": 0.003, "lr_random_effects": pytest.approx(0.09),
                        "prior": {"tau_random": 2.0, "q_A": "point"}}
    key, error = recipe_study.resolved({"variant": "slmm", "prior": {"q_A": "point"}})
    assert key is None and "q_A" in error


@pytest.mark.slow
def test_recipe_study_never_reads_test_rows(tmp_path):
    """The same study on data whose test rows' y differ wildly gives the same validation numbers."""
    sim = simulate_lmm(n_subjects=12, n_visits=6, data_dim=5, seed=0)
    paths = []
    for k, shift in enumerate((0.0, 1e3)):
        y = sim.y.copy()
        y[sim.split == 2] += shift
        data = LongitudinalData(y=y, mask=sim.mask, split=sim.split, covariates=sim.covariates)
        paths.append(tmp_path / f"d{k}.h5")
        write_h5(data, paths[-1])
    results = []
    for k, path in enumerate(paths):
        results.append(recipe_study.main([
            "--quick", "--threads", "1", "--grid", "none", "--data", str(path), "--set", "lr=0.003",
            "--out", str(tmp_path / f"out{k}"), "--markdown", "none"]))
    assert [r["setting"] for r in results[0]] == ["defaults", "lr=0.003"]
    for a, b in zip(*results):
        assert a["val_mse"] == pytest.approx(b["val_mse"], rel=1e-6) and np.isfinite(a["val_mse"])
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
