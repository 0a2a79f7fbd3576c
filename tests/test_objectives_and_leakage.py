"""Objectives and leakage, each with a test that would catch the bug:

* ``elbo`` and ``gsnn`` against hand-computed values on a tiny linear-Gaussian model (SPEC 2.3, 4);
* the validation loss of a row equals its training loss (the KL of ``A`` is a term of the training
  set, divided by ``N_train`` whatever split is scored);
* after GSNN, nothing reads the encoder: randomising its weights changes no prediction (SPEC 4);
* no leakage (SPEC 6): changing test rows leaves imputations, validation loss and MCC unchanged;
* predictions are the Monte Carlo predictive mean, not the decoded mean latent (SPEC 2.4).
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import lmmvae
from lmmvae.answers.evaluate import evaluate
from lmmvae.data.batch import Batch
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.data.loader import TensorData
from lmmvae.model.design import Design
from lmmvae.model.latent import LatentVariableModel
from lmmvae.model.likelihoods import GaussianLikelihood
from lmmvae.model.priors.olmm import OLMMOptions, OLMMPrior
from lmmvae.training.objectives import elbo, gsnn
from simulate import simulate_lmm


class FixedEncoder(nn.Module):
    def __init__(self, mean, var):
        super().__init__()
        self.mean, self.var = torch.tensor(mean), torch.tensor(var)

    def forward(self, y, cond=None):
        return self.mean.clone(), self.var.clone()


class LinearDecoder(nn.Module):
    """``g(z) = w z + b`` for a 1-d latent and 1-d data."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, z, cond=None):
        return self.w * z + self.b


def _tiny():
    """Three rows, one latent and one feature; prior mean ``x^T M`` with ``x = [1, t]``."""
    t = np.array([0.0, 1.0, 2.0])
    data = LongitudinalData(y=np.array([[0.5], [1.5], [2.0]], np.float32), mask=np.ones((3, 1), np.uint8),
                            split=np.zeros(3, np.uint8), covariates={"t": Covariate(t, "continuous")})
    design = Design("~ t").fit(data.covariates)
    opts = OLMMOptions(q_A="point", sigma_z=0.7, learn_sigma_z=False, tau_shared=0.5)
    prior = OLMMPrior(1, design.n_shared, [], [], opts)
    with torch.no_grad():
        prior.effects.shared_mean.copy_(torch.tensor([[0.3], [0.8]]))
    enc_mean, enc_var = [[0.2], [1.1], [1.7]], [[0.04], [0.09], [0.01]]
    likelihood = GaussianLikelihood(1, learn_variance=False, init_variance=0.25 + 1e-4)
    model = LatentVariableModel(FixedEncoder(enc_mean, enc_var), LinearDecoder(1.5, -0.2), likelihood, prior)
    tensors = TensorData(data, design, None, {})
    batch = tensors.batch(tensors.indices(None), scale=1.0)
    x = design.transform(data.covariates).shared  # [3, 2], standardised t
    return model, batch, data, x, np.array(enc_mean)[:, 0], np.array(enc_var)[:, 0]


def test_elbo_matches_the_hand_computed_value():
    model, batch, data, x, mu, s2 = _tiny()
    m = x @ np.array([0.3, 0.8])  # prior means x^T M
    w, b, v, sz2 = 1.5, -0.2, 0.25, 0.49
    y = data.y[:, 0].astype(np.float64)
    rec = -0.5 * (math.log(2 * math.pi * v) + ((y - w * mu - b) ** 2 + w**2 * s2) / v)  # E_q log p(y|z)
    kl_z = 0.5 * (math.log(sz2) - np.log(s2) - 1 + (s2 + (mu - m) ** 2) / sz2)
    penalty = 0.5 * (0.3**2 + 0.8**2) / 0.5**2  # point q(A): M²/(2τ_s²)
    expected = -(rec.sum() - kl_z.sum() - penalty) / 3
    torch.manual_seed(0)
    loss = elbo(model, batch, n_total=3, n_samples=200_000).loss.item()
    assert loss == pytest.approx(expected, abs=5e-3)
    assert abs(loss - (-(rec.sum() - kl_z.sum()) / 3)) > 10 * 5e-3  # the KL of A is in it


def test_gsnn_matches_the_marginal_likelihood():
    """With ``z ~ N(x^T M, σ_z²)`` and a linear decoder, ``log mean_s p(y|g(z_s)) → log N(y | w m + b,
    w² σ_z² + v)`` as ``S`` grows (SPEC 4)."""
    model, batch, data, x, _, _ = _tiny()
    m = x @ np.array([0.3, 0.8])
    w, b, v, sz2 = 1.5, -0.2, 0.25, 0.49
    y = data.y[:, 0].astype(np.float64)
    var = w**2 * sz2 + v
    marginal = -0.5 * (np.log(2 * math.pi * var) + (y - w * m - b) ** 2 / var)
    penalty = 0.5 * (0.3**2 + 0.8**2) / 0.5**2
    torch.manual_seed(0)
    loss = gsnn(model, batch, n_total=3, n_samples=200_000).loss.item()
    assert loss == pytest.approx(-(marginal.sum() - penalty) / 3, abs=5e-3)


@pytest.fixture(scope="module")
def data():
    return simulate_lmm(n_subjects=16, n_times=6, data_dim=5, n_future=2, seed=4)


COMMON = dict(latent_dim=2, network="mlp", network_options={"hidden": [16, 8]}, epochs=3, batch_size=16,
              lr=1e-2, progress=False)


def test_validation_loss_equals_the_training_loss_of_the_same_rows(data):
    """Score the validation rows as the trainer does, and as one training step would see them."""
    model = lmmvae.fit(data, seed=0, variant="olmm", design="~ time + sex + (1 | id)", **COMMON)
    from lmmvae.training.train import Trainer

    trainer = Trainer(model.model, model.tensors(data), model.config, torch.Generator().manual_seed(0),
                      progress=False)
    trainer.config.batch_size = 10_000  # one batch: the same draws for both
    val_rows = trainer.data.indices("validation")
    torch.manual_seed(5)
    scored = trainer._pass("validation", train=False)["loss"]
    model.model.eval()
    torch.manual_seed(5)
    batch = trainer.data.batch(val_rows, scale=trainer.n_train / val_rows.shape[0])
    with torch.no_grad():
        as_training = elbo(model.model, batch, trainer.n_train).loss.item()
    assert scored == pytest.approx(as_training, rel=1e-5)


def test_gsnn_predictions_never_read_the_encoder(data):
    for variant, design in (("slmm", "~ time + sex + (1 + time | id)"), ("olmm", "~ time + sex + (1 | id)")):
        model = lmmvae.fit(data, seed=0, variant=variant, objective="gsnn", design=design, **COMMON)
        frame = data.covariate_frame()
        before = model.predict_arrays(frame)["y_pred"]
        with torch.no_grad():
            for p in model.model.encoder.parameters():
                p.normal_()
        lmmvae.answers.predict.condition(model, model.tensors(data))  # what fit does after training: must be a no-op
        np.testing.assert_array_equal(model.predict_arrays(frame)["y_pred"], before)
        metrics = evaluate(model, data)
        assert "mse_impute" not in metrics and "mcc_truth" not in metrics
        with pytest.raises(lmmvae.errors.RunError, match="GSNN"):
            model.impute(data)


def _perturb_test_rows(data):
    test = data.split == 2
    y = data.y.copy()
    y[test] = np.random.default_rng(0).normal(5.0, 3.0, size=y[test].shape)
    return LongitudinalData(y=y, mask=data.mask, split=data.split, covariates=data.covariates,
                            y_full=data.y_full, latent_truth=data.latent_truth, attrs=data.attrs)


@pytest.mark.parametrize("variant,design", [("slmm", "~ time + sex"), ("olmm", "~ time + sex + (1 | id)")])
def test_test_rows_change_nothing_but_their_own_scores(data, variant, design):
    """SPEC 6: training, validation loss, imputation and MCC do not depend on test rows."""
    mask = data.mask.copy()
    mask[(data.split == 0)[:, None] & (np.arange(data.n_features) % 2 == 0)] = 0  # missing train entries
    base = LongitudinalData(y=np.where(mask, data.y, 0), mask=mask, split=data.split, covariates=data.covariates,
                            y_full=data.y, latent_truth=data.latent_truth, attrs=data.attrs)
    changed = _perturb_test_rows(base)
    a = lmmvae.fit(base, seed=1, variant=variant, design=design, **COMMON)
    b = lmmvae.fit(changed, seed=1, variant=variant, design=design, **COMMON)
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[key], value, msg=key)
    ma, mb = evaluate(a, base), evaluate(b, base)  # b's model, scored on the same data
    mc = evaluate(a, changed)  # a's model, scored on data whose test rows changed
    assert ma["mse_impute"] == mb["mse_impute"] == mc["mse_impute"]
    assert ma["mcc_truth"] == mc["mcc_truth"]
    assert ma["mse_test"] != mc["mse_test"]  # the test rows' own score does change
    train = base.split == 0
    np.testing.assert_array_equal(a.impute(base.subset(np.flatnonzero(train))),
                                  a.impute(changed.subset(np.flatnonzero(train))))


def test_prediction_is_the_monte_carlo_predictive_mean(data):
    """SPEC 2.4: the average of decoded draws, which differs from decoding the mean latent."""
    model = lmmvae.fit(data, seed=0, variant="olmm", design="~ time + sex + (1 | id)",
                       prior={"sigma_z": 1.0, "learn_sigma_z": False}, predict_samples=2000, **COMMON)
    frame = data.covariate_frame()
    mc = model.predict_arrays(frame)
    tensors = model.tensors(data)
    batch: Batch = tensors.batch(tensors.indices(None))
    with torch.no_grad():
        dist = model.model.prior.predict(batch)
        plugin = model.model.generate(dist.mean, batch).numpy()
        torch.manual_seed(0)
        many = model.model.generate(dist.sample((8000,)), batch).mean(0).numpy()
    np.testing.assert_allclose(mc["y_pred"], many, atol=0.03)
    assert np.abs(mc["y_pred"] - plugin).mean() > 3 * np.abs(mc["y_pred"] - many).mean()
    model.config.prediction = "plugin"
    np.testing.assert_allclose(model.predict_arrays(frame)["y_pred"], plugin, atol=1e-6)
