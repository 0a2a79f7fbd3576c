"""Contrasts and the band of the mean (lmmvae/answers/contrast.py, lmmvae/answers/effects.py): a simulated trial whose
arm moves the latent mean and whose site does nothing, decoded linearly; hand-checked linear cases."""

import numpy as np
import pandas as pd
import pytest
import torch

import lmmvae
from lmmvae.answers.contrast import contrast
from lmmvae.answers.effects import covariate_effect
from lmmvae.cli import main
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.errors import ConfigError

P, T, D, L = 90, 5, 5, 2
ARMS = ["placebo", "low", "high"]
BETA_ARM = np.array([[0.0, 0.0], [0.5, 0.0], [1.5, -1.0]])  # arm's latent effect, per level
DESIGN = "~ time + site + arm + (1 | id)"


def simulate(seed=0):
    """``z = β_arm + 0.5 t + b_p + 0.3 ε``, ``y = W z + 0.3 noise``: the true decoded difference high −
    placebo is ``W (β_high − β_placebo)``; ``site`` (constant within subject) has no effect."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(P), T)
    time = np.tile(np.linspace(0, 1, T), P)
    arm = np.repeat(np.arange(P) % 3, T)
    site = np.repeat(rng.integers(0, 2, P), T)
    b = rng.normal(0, 0.5, (P, L))
    z = BETA_ARM[arm] + 0.5 * time[:, None] + b[subject] + 0.3 * rng.normal(size=(P * T, L))
    w = rng.normal(size=(D, L))
    y = z @ w.T + 0.3 * rng.normal(size=(P * T, D))
    data = LongitudinalData(
        y=y.astype(np.float32), mask=np.ones_like(y, np.uint8), split=np.where(rng.random(P * T) < 0.15, 1, 0),
        covariates={"time": Covariate(time, "time"), "site": Covariate(site, "binary"),
                    "arm": Covariate(arm, "categorical", levels=ARMS),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(P)])},
        attrs={"name": "sim", "feature_names": [f"f{d}" for d in range(D)]})
    return data, w @ (BETA_ARM[2] - BETA_ARM[0])


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    data, truth = simulate()
    run = tmp_path_factory.mktemp("contrast") / "run"
    lmmvae.fit(data, out=run, progress=False, variant="olmm", design=DESIGN, latent_dim=L, network="mlp",
               network_options={"hidden": [16]}, epochs=300, batch_size=64, lr=0.01, prior={"q_A": "gaussian"})
    return lmmvae.load(run), run, data, truth


def test_contrast_covers_the_true_effect_and_zero_for_no_effect(trial):
    """Collapsed posterior of the shared rows: the arm interval excludes 0 where the effect is real and covers the
    true difference for most features; site's interval holds 0. Mean-field q(A) alone is several
    times too narrow for these between-subject covariates (it misses most truths)."""
    model, _, data, truth = trial
    arm = contrast(model, "arm", ["placebo", "high"], data=data)
    assert list(arm.columns) == ["feature", "difference", "lower", "upper", "sd"]
    lower, upper = arm["lower"].to_numpy(), arm["upper"].to_numpy()
    strong = np.abs(truth) > 0.5  # a real effect on these features (W's rows vary)
    assert strong.sum() >= 3 and ((lower > 0) | (upper < 0))[strong].all(), (arm, truth)
    assert ((lower <= truth) & (truth <= upper)).sum() >= 4, (arm, truth)
    site = contrast(model, "site", ["0", "1"], data=data)
    assert ((site["lower"] <= 0) & (site["upper"] >= 0)).sum() >= 4, site
    naive = contrast(model, "arm", ["placebo", "high"], data=data, uncertainty="q_A")
    assert (naive["sd"] < 0.6 * arm["sd"]).all()  # same centre, narrower: the mean-field's clustering blind spot
    np.testing.assert_allclose(naive["difference"], arm["difference"], atol=0.1)


def test_band_of_the_mean_lies_inside_the_predictive_band(trial, tmp_path):
    model, run, _, _ = trial
    table = covariate_effect(model, "arm")
    for f in (f"f{d}" for d in range(D)):
        mean_width = table[f"{f}_mean_upper"] - table[f"{f}_mean_lower"]
        pred_width = table[f"{f}_upper"] - table[f"{f}_lower"]
        assert (mean_width > 0).all() and (mean_width < pred_width).all()
        assert (table[f"{f}_mean_lower"] <= table[f"{f}_mean"]).all() and (table[f"{f}_mean"] <= table[f"{f}_mean_upper"]).all()
    assert main(["effects", str(run), "--covariate", "arm", "--png", str(tmp_path / "a.png"),
                 "--csv", str(tmp_path / "a.csv")]) == 0
    assert {"f0_mean_lower", "f0_mean_upper"} <= set(pd.read_csv(tmp_path / "a.csv").columns)


def test_cli_contrast_and_bad_levels(trial, tmp_path, capsys):
    _, run, _, _ = trial
    assert main(["contrast", str(run), "--covariate", "arm", "--levels", "placebo,high", "--csv",
                 str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    assert "high minus placebo" in out and "excludes 0" in out and len(pd.read_csv(tmp_path / "c.csv")) == D
    assert main(["contrast", str(run), "--covariate", "arm", "--levels", "placebo,medium"]) == 2
    assert "not a training level of arm" in capsys.readouterr().err
    assert main(["contrast", str(run), "--covariate", "arm", "--levels", "placebo"]) == 2


def _linear(model, seed=0):
    """Replace the decoder by ``m(z) = W z + c`` with a known ``W`` [D, L] (Gaussian: mean = params)."""
    w = torch.as_tensor(np.random.default_rng(seed).normal(size=(D, L)), dtype=torch.float32)
    model.model.decode = lambda z, batch: z @ w.T + 1.0
    return w.numpy().astype(float)


def test_linear_decoder_point_A_is_exact():
    """``q_A: point``, a linear decoder: Δ = W M^T (x_high − x_placebo), interval of zero width."""
    data, _ = simulate(1)
    model = lmmvae.fit(data, progress=False, variant="olmm", design=DESIGN, latent_dim=L, network="mlp",
                       network_options={"hidden": [4]}, epochs=1, prior={"q_A": "point"})
    w = _linear(model)
    m = np.random.default_rng(2).normal(size=tuple(model.model.prior.effects.shared_mean.shape))
    with torch.no_grad():
        model.model.prior.effects.shared_mean.copy_(torch.as_tensor(m))
    cols = model.design.shared_columns
    c = np.array([col == "arm[high]" for col in cols], dtype=float)
    assert c.sum() == 1, cols  # treatment coding: placebo is the reference level
    table = contrast(model, "arm", ["placebo", "high"], table_units=False)
    np.testing.assert_allclose(table["difference"], w @ (m.T @ c), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table["lower"], table["upper"], atol=1e-6)
    reverse = contrast(model, "arm", ["high", "placebo"], table_units=False)
    np.testing.assert_allclose(reverse["difference"], -table["difference"], atol=1e-5)


def test_point_A_gets_the_collapsed_interval_with_data():
    """``q_A: point`` (the ELBO's default) with the training data: the shared rows are drawn from
    their collapsed posterior around the estimate, so for a linear decoder the sd is analytic,
    sd_d² = Σ_l W_dl² cᵀ Cov_l c; without data the interval has zero width and claims nothing."""
    from lmmvae.answers.contrast import describe, shared_covariance

    data, _ = simulate(1)
    model = lmmvae.fit(data, progress=False, variant="olmm", design=DESIGN, latent_dim=L, network="mlp",
                       network_options={"hidden": [4]}, epochs=1, prior={"q_A": "point"})
    w = _linear(model)
    c = np.array([col == "arm[high]" for col in model.design.shared_columns], dtype=float)
    cov = shared_covariance(model, data)  # [L, Q, Q]
    sd = np.sqrt((w ** 2) @ np.einsum("q,lqr,r->l", c, cov, c))
    table = contrast(model, "arm", ["placebo", "high"], table_units=False, n_samples=4000, data=data)
    np.testing.assert_allclose(table["sd"], sd, rtol=0.06)
    assert (table["upper"] > table["lower"]).all() and "integrated out" in table.attrs["estimator"]
    bare = contrast(model, "arm", ["placebo", "high"], table_units=False, uncertainty="q_A")
    assert (bare["upper"] == bare["lower"]).all()
    assert all(line.endswith("n/a") for line in describe(bare).splitlines()[3:])


def test_linear_decoder_gaussian_q_A_sd_is_analytic():
    """Mean-field q(A), linear decoder: Δ^(s) = W A^(s)T c is normal with sd_d² = Σ_l W_dl² Σ_q c_q² S_ql²."""
    data, _ = simulate(1)
    model = lmmvae.fit(data, progress=False, variant="olmm", design=DESIGN, latent_dim=L, network="mlp",
                       network_options={"hidden": [4]}, epochs=1, prior={"q_A": "gaussian"})
    w = _linear(model)
    effects = model.model.prior.effects
    with torch.no_grad():
        effects.shared_log_std.copy_(torch.log(torch.rand(effects.shared_log_std.shape, generator=torch.Generator().manual_seed(0)) + 0.2))
    c = np.array([col == "arm[high]" for col in model.design.shared_columns], dtype=float)
    s2 = (2 * effects.shared_log_std).exp().detach().numpy().astype(float)  # [Q, L]
    sd = np.sqrt((w ** 2) @ (c ** 2 @ s2))
    table = contrast(model, "arm", ["placebo", "high"], table_units=False, n_samples=4000, uncertainty="q_A")
    np.testing.assert_allclose(table["sd"], sd, rtol=0.06)
    np.testing.assert_allclose(table["difference"], w @ (effects.shared_mean.detach().numpy().T @ c), atol=4 * sd.max() / np.sqrt(4000))
    with pytest.raises(ConfigError, match="two values"):
        contrast(model, "arm", ["placebo", "low", "high"])


def test_mixedlm_contrast_is_the_coefficient_with_its_standard_error():
    data, _ = simulate(3)
    model = lmmvae.fit(data, progress=False, variant="mixedlm", design=DESIGN)
    table = model.contrast("arm", ["placebo", "high"], level=0.95)
    j = model.design.shared_columns.index("arm[high]")
    np.testing.assert_allclose(table["difference"], model.params["beta"][:, j], rtol=1e-8)
    np.testing.assert_allclose(table["sd"], np.sqrt(model.params["beta_cov"][:, j, j]), rtol=1e-8)
    np.testing.assert_allclose(table["upper"] - table["difference"], 1.959964 * table["sd"], rtol=1e-5)
