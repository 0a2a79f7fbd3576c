"""``variant: mixedlm`` chooses its design on the validation rows, refits the winner on train +
validation rows, and falls back per feature with the feature named (lmmvae/classical/family.py,
lmmvae/classical/mixedlm.py)."""

import numpy as np
import pytest

import lmmvae
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.errors import ConfigError
from lmmvae.training.checks import config_from_dict, prior_options


def simulate(n_subjects=40, n_times=6, seed=0):
    """Two features ``y = 1 + 0.8 t + b_p + ε``; visits 4, 5 of every other subject are test, 20 %
    of the rest validation. ``spike`` is noise (sd 0.01) on train rows and 100 on validation and
    test rows: a design with it extrapolates wildly there."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_times)
    time = np.tile(np.arange(n_times, dtype=float), n_subjects)
    split = np.zeros(len(time), np.uint8)
    split[(subject % 2 == 0) & (time >= n_times - 2)] = 2
    split[(split == 0) & (rng.random(len(time)) < 0.2)] = 1
    b = rng.normal(0, 1.0, size=(n_subjects, 2))
    y = 1 + 0.8 * time[:, None] + b[subject] + 0.3 * rng.normal(size=(len(time), 2))
    spike = np.where(split == 0, 0.01 * rng.normal(size=len(time)), 100.0)
    y[split == 0] += 20 * spike[split == 0, None]  # the train rows tie y to spike
    covariates = {"time": Covariate(time, "time"), "spike": Covariate(spike, "continuous"),
                  "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)])}
    return LongitudinalData(y=y, mask=np.ones_like(y, np.uint8), split=split, covariates=covariates,
                            attrs={"name": "design-choice", "feature_names": ["alpha", "beta"]})


@pytest.fixture(scope="module")
def data():
    return simulate()


@pytest.fixture(scope="module")
def chosen(data):
    return lmmvae.fit(data, variant="mixedlm", design="~ time + spike + (1 | id)",
                      prior={"candidates": ["~ time + (1 | id)", "~ 1 + (1 | id)"]})


def test_the_candidate_that_blows_up_on_validation_is_not_chosen(data, chosen):
    selection = chosen.info["selection"]
    scores = {c["design"]: c["validation_mse"] for c in selection["candidates"]}
    assert list(scores) == ["~ time + spike + (1 | id)", "~ time + (1 | id)", "~ 1 + (1 | id)"]
    assert selection["winner"] == "~ time + (1 | id)" == chosen.design.formula == chosen.design_chosen
    assert scores["~ time + (1 | id)"] == min(scores.values()) < 0.5 * scores["~ 1 + (1 | id)"]
    # the spiked design blew up on every feature and fell to the mean, named in the record
    spiked = selection["candidates"][0]
    assert spiked["fallbacks"]["mean"] == 2
    # its validation MSE is that of the features' means, not the blow-up's (20 * 100 = 2000 off)
    val = data.split == 1
    train_mean = data.y[data.split == 0].mean(axis=0)
    assert scores["~ time + spike + (1 | id)"] == pytest.approx(np.mean((data.y[val] - train_mean) ** 2), rel=1e-6)


def test_the_blow_up_is_recorded_per_feature(data):
    model = lmmvae.fit(data, variant="mixedlm", design="~ time + spike + (1 | id)")
    records = model.info["features"]
    assert [r["feature"] for r in records] == ["alpha", "beta"]
    assert all(r["fit"] == "mean" and "mixedlm: blew up" in r["why"] for r in records)
    assert "mean: alpha, beta" in model.fit_note()
    text = str(model.summary())
    assert "Feature alpha: mean" in text and "blew up" in text


def test_the_winner_is_refitted_on_train_and_validation_rows(data, chosen):
    fit_rows = int((data.split != 2).sum())
    assert 0 < (data.split == 1).sum() and chosen.info["n_fit_rows"] == fit_rows
    assert len(chosen.train_covariates["time"].values) == fit_rows
    # the refit equals a fit of the one design on the train + validation rows relabelled as train
    relabelled = LongitudinalData(y=data.y, mask=data.mask, split=np.where(data.split == 1, 0, data.split),
                                  covariates=data.covariates, attrs=data.attrs)
    direct = lmmvae.fit(relabelled, variant="mixedlm", design="~ time + (1 | id)")
    assert direct.info["selection"]["rule"].startswith("no validation rows")
    np.testing.assert_allclose(chosen.params["beta"], direct.params["beta"], rtol=1e-6)
    np.testing.assert_allclose(chosen.params["cov_re"], direct.params["cov_re"], rtol=1e-5)


def test_the_tables_name_the_winner(tmp_path):
    from lmmvae.reporting.aggregate import _row

    entry = {"label": "MixedLM (per feature)", "seed": 0, "model": "mixedlm", "base_model": "mixedlm"}
    row = _row(entry, {"variant": "mixedlm", "design_chosen": "time + (1 + time | id)"}, "mse_test", 0.4, None)
    assert row["label"] == "MixedLM (per feature) [design chosen on validation: time + (1 + time | id)]"
    assert _row(entry, {"variant": "olmm"}, "mse_test", 0.4, None)["label"] == "MixedLM (per feature)"


def test_candidates_and_methods_are_checked_in_one_line():
    config = config_from_dict({"variant": "mixedlm", "prior": {"candidates": ["time + (1 | id)"]}})
    assert prior_options(config).candidates == ["time + (1 | id)"]
    assert prior_options(config).method[0] == "lbfgs"  # statsmodels' default (bfgs first) stops short
    for prior, match in (({"candidates": ["time + (1 | id"]}, r"candidates\[0\] 'time \+ \(1 \| id'"),
                         ({"candidates": [3]}, r"candidates\[0\]: expected a design formula"),
                         ({"method": ["newton"]}, "method: 'newton' is not one of")):
        with pytest.raises(ConfigError, match=match) as err:
            config_from_dict({"variant": "mixedlm", "prior": prior})
        assert "\n" not in str(err.value)


def test_a_regular_optimum_is_not_called_a_boundary():
    """A random slope with a small but clear variance stays (the old rule, statsmodels' 'boundary'
    warning at var < 0.01, reduced it)."""
    rng = np.random.default_rng(1)
    n_subjects, n_times = 60, 8
    subject = np.repeat(np.arange(n_subjects), n_times)
    time = np.tile(np.linspace(0, 1, n_times), n_subjects)
    b = rng.normal(0, [1.0, 0.02], size=(n_subjects, 2))
    y = (b[subject, 0] + (0.5 + b[subject, 1]) * time * 10 + 0.05 * rng.normal(size=len(time)))[:, None]
    data = LongitudinalData(y=y, mask=np.ones_like(y, np.uint8), split=np.zeros(len(y), np.uint8),
                            covariates={"time": Covariate(time, "time"), "id": Covariate(subject, "id")})
    model = lmmvae.fit(data, variant="mixedlm", design="~ time + (1 + time | id)")
    assert model.info["status"] == ["mixedlm"]
    slope_var = model.params["cov_re"][0, 1, 1]  # design units: time standardised
    assert 1e-8 < slope_var < 0.01  # below statsmodels' "boundary" warning threshold, yet kept
