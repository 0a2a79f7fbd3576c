"""One seam for the two families of models (lmmvae/fitted.py, lmmvae/model/variants.py, lmmvae/answers/metrics.py):

* the variant names the family that fits and loads it, and ``lmmvae.fit`` / ``lmmvae.load`` ask it;
  a classical run directory is read back from its JSON files (no HDF5 of covariates written);
* the metrics are computed in one place for both families: a metric registered in a test shows in
  the evaluation of a neural and of a classical model, with the value computed by hand;
* the classical metrics (imputation, test MSE, exact Gaussian NLL) match a hand computation;
* the workflow's plan tells the classical variants apart without importing torch.
"""

import subprocess
import sys
from statistics import NormalDist

import numpy as np
import pytest

import lmmvae
from lmmvae.answers import metrics
from lmmvae.answers.evaluate import evaluate
from lmmvae.classical import family as classical
from lmmvae.errors import ConfigError
from lmmvae.fitted import FittedModel
from lmmvae.model import variants
from lmmvae.training.checks import config_from_dict
from simulate import simulate_lmm
from test_classical import simulate

NEURAL = dict(latent_dim=2, network="mlp", network_options={"hidden": [8]}, epochs=2, batch_size=32, lr=1e-2,
              progress=False, design="~ time + sex + (1 | id)")


def mae_test(scored: metrics.Scored) -> float | None:
    """Mean absolute error on the observed entries of test rows: a metric a user adds."""
    entries = scored.observed_test
    return float(np.abs(scored.data.y - scored.y_pred)[entries].mean()) if entries.any() else None


@pytest.fixture(scope="module")
def neural():
    data = simulate_lmm(n_subjects=12, n_times=6, data_dim=3)
    return lmmvae.fit(data, seed=0, variant="olmm", **NEURAL), data


def test_a_registered_metric_shows_for_both_families(monkeypatch, tmp_path, neural):
    monkeypatch.setattr(metrics, "METRICS", dict(metrics.METRICS))  # registered for this test only
    metrics.register_metric("mae_test", mae_test)
    data, _ = simulate(n_subjects=20, n_times=6, n_future=2)
    fitted = [(neural[0], neural[1]), (lmmvae.fit(data, out=tmp_path / "mixedlm", variant="mixedlm",
                                                  design="~ time + sex + (1 | id)"), data)]
    for model, rows in fitted:
        predictions: dict = {}
        found = evaluate(model, rows, predictions)
        test = (rows.mask == 1) & (rows.split == 2)[:, None]
        hand = np.abs(rows.y - predictions["y_pred"])[test].mean()
        assert found["mae_test"] == pytest.approx(hand, rel=1e-12), model.config.variant
        assert list(found)[-1] == "mae_test"  # after the library's own, in registration order
    with pytest.raises(ValueError, match="registered twice"):
        metrics.register_metric("mae_test", mae_test)


def test_classical_metrics_match_a_hand_computation(tmp_path):
    data, _ = simulate(n_subjects=20, n_times=6, n_future=2)
    model = lmmvae.fit(data, variant="mixedlm", design="~ time + sex + (1 | id)")
    found = model.evaluate(data)
    arrays = model.predict_arrays(data)  # [N, D]: y_pred, y_var at every row's covariates
    mean, var = arrays["y_pred"].astype(float), arrays["y_var"].astype(float)
    train, test = data.split == 0, data.split == 2
    missing = (data.mask == 0) & train[:, None]
    observed = (data.mask == 1) & test[:, None]
    assert found["mse_impute"] == pytest.approx(((data.y_full - mean)[missing] ** 2).mean(), rel=1e-9)
    assert found["mse_test"] == pytest.approx(((data.y - mean)[observed] ** 2).mean(), rel=1e-9)
    nll_rows = [-sum(np.log(NormalDist(mean[i, d], np.sqrt(var[i, d])).pdf(data.y[i, d]))
                     for d in range(data.n_features) if data.mask[i, d]) for i in np.flatnonzero(test)]
    assert found["nll_test"] == pytest.approx(np.mean(nll_rows), rel=1e-6)
    assert set(found) == {"mse_impute", "mse_test", "nll_test"}  # no Monte Carlo error, no latent


def test_the_variant_names_the_family_that_fits_and_loads(tmp_path, neural):
    assert variants.get("mixedlm").family is classical.FAMILY is variants.get("mean").family
    assert variants.get("olmm").family is None  # the neural family (lmmvae.api)
    data, _ = simulate(n_subjects=20, n_times=6, n_future=2)
    run = tmp_path / "mean"
    model = lmmvae.fit(data, out=run, variant="mean", design="~ time + (1 | id)")
    assert not (run / "train_covariates.h5").exists() and (run / "covariates.json").exists()
    loaded = lmmvae.load(run)
    assert type(loaded) is classical.ClassicalModel and loaded.run_dir == run == model.run_dir
    frame = data.covariate_frame().head(5)
    np.testing.assert_array_equal(loaded.predict_arrays(frame)["y_pred"], model.predict_arrays(frame)["y_pred"])
    assert loaded.evaluate(data) == model.evaluate(data)
    for fitted in (loaded, neural[0]):
        assert isinstance(fitted, FittedModel)
    assert (neural[0].has_latent, loaded.has_latent) == (True, False)
    assert (neural[0].predictive_is_gaussian, loaded.predictive_is_gaussian) == (False, True)
    with pytest.raises(ConfigError, match=r"variant 'olmm' is not classical \(mixedlm, mean\)"):
        classical.fit(data, config_from_dict({"variant": "olmm", "design": "~ time"}))


def test_the_plan_tells_classical_variants_apart_without_torch():
    code = ("import sys; import lmmvae.reporting.experiments; from lmmvae.classical.family import is_classical as c; "
            "assert c('mixedlm') and c('mean') and not c('olmm') and not c('nonsense'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_classical_run_without_its_covariates_file_is_a_one_line_error(tmp_path):
    """The training covariates live in covariates.json only: a run without it cannot predict."""
    data, _ = simulate(n_subjects=20, n_times=6, n_future=2)
    run = tmp_path / "run"
    lmmvae.fit(data, out=run, variant="mixedlm", design="~ time + (1 | id)")
    (run / "covariates.json").unlink()
    with pytest.raises(lmmvae.errors.RunError, match="covariates.json") as err:
        lmmvae.load(run)
    assert "\n" not in str(err.value)
