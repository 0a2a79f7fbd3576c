"""The contract every model of the benchmark honours, whatever its prior (LMM-VAE variants and the
five baselines), on one tiny data set: a finite loss whose gradients reach every trainable
parameter, a save/load round trip that predicts the same, the same fit for the same seed, and
predictions of the right shape at unseen covariates (new times, an unseen subject)."""

import numpy as np
import pandas as pd
import pytest
import torch

import lmmvae
from lmmvae import variants
from lmmvae.api import build_model
from lmmvae.config import ModelConfig
from lmmvae.design import Design
from lmmvae.loader import TensorData
from lmmvae.objectives import elbo, gsnn
from simulate import simulate_lmm

#: a design per variant; GP variants read it as a kernel (SPEC 5)
DESIGNS = {
    "olmm": "~ time + sex + (1 | id)",
    "slmm": "~ time + sex",
    "vae": "~ 1",
    "cvae": "~ time + sex",
    "gppvae": "~ time + (1 | id)",
    "svgpvae": "~ time + (1 | id)",
    "lvae": "~ time + sex:time + (1 + time | id)",
}
#: GSNN needs a prior whose per-observation marginal carries the covariates (SPEC 4)
SUPPORTS_GSNN = {"olmm", "slmm", "cvae"}
COMMON = dict(latent_dim=3, network="mlp", network_options={"hidden": [16, 8]}, epochs=2, batch_size=16,
              lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def data():
    return simulate_lmm(n_subjects=8, n_times=6, data_dim=5, n_future=2, seed=3)


def test_every_registered_variant_is_covered():
    # classical rows (mixedlm, mean) have no networks: tests/test_classical.py
    assert {n for n in variants.names() if not variants.get(n).classical} == set(DESIGNS)


def _model(variant, data, objective="elbo"):
    config = ModelConfig.from_dict({k: v for k, v in dict(COMMON, variant=variant, design=DESIGNS[variant],
                                                           objective=objective).items() if k != "progress"})
    train = data.subset(data.split_index("train"))
    design = Design(config.design).fit(train.covariates)
    torch.manual_seed(0)
    model = build_model(config, design, train, data.n_features, None)
    levels = {n: list(c.levels) for n, c in train.covariates.items() if c.levels is not None}
    return model, TensorData(data, design, config.subject, levels)


@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_finite_loss_and_gradients_reach_every_parameter(variant, data):
    model, tensors = _model(variant, data)
    model.train()
    model.prior.on_epoch_start(model, tensors)
    batch = next(tensors.batches("train", 16, by=model.prior.batching, generator=torch.Generator().manual_seed(0)))
    terms = elbo(model, batch, int(tensors.indices("train").shape[0]))
    assert torch.isfinite(terms.loss), terms
    terms.loss.backward()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        assert param.grad is not None, f"{variant}: no gradient reaches {name}"
        grad = param.grad.coalesce().values() if param.grad.is_sparse else param.grad
        assert torch.isfinite(grad).all(), f"{variant}: non-finite gradient in {name}"
        assert grad.abs().sum() > 0, f"{variant}: zero gradient for {name}"


@pytest.mark.parametrize("variant", sorted(SUPPORTS_GSNN))
def test_gsnn_loss_is_finite(variant, data):
    model, tensors = _model(variant, data, objective="gsnn")
    batch = next(tensors.batches("train", 16, by=model.prior.batching, generator=torch.Generator().manual_seed(0)))
    terms = gsnn(model, batch, int(tensors.indices("train").shape[0]), n_samples=4)
    assert torch.isfinite(terms.loss)
    terms.loss.backward()


def test_gsnn_is_declared_by_the_variant_and_refused_elsewhere():
    assert {name for name in DESIGNS if variants.get(name).gsnn} == SUPPORTS_GSNN
    for name in set(DESIGNS) - SUPPORTS_GSNN:
        with pytest.raises(lmmvae.errors.ConfigError, match="cannot be trained by GSNN"):
            ModelConfig.from_dict({"variant": name, "objective": "gsnn"})


def _unseen_covariates(data):
    """Two new time points of a training subject, and a subject never seen in training."""
    frame = data.covariate_frame()
    known = frame["id"].iloc[0]
    return pd.DataFrame({"time": [1.5, -0.2, 0.4], "sex": [0, 1, 1], "id": [known, known, "nobody"]})


@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_save_load_determinism_and_prediction_shapes(variant, data, tmp_path):
    first = lmmvae.fit(data, seed=7, out=tmp_path / "a", variant=variant, design=DESIGNS[variant], **COMMON)
    second = lmmvae.fit(data, seed=7, variant=variant, design=DESIGNS[variant], **COMMON)
    loaded = lmmvae.load(tmp_path / "a")
    new = _unseen_covariates(data)
    pred = first.predict(new)
    assert pred["y_pred"].shape == (3, data.n_features)
    assert pred["z_mean"].shape == (3, COMMON["latent_dim"]) and pred["z_var"].shape == (3, COMMON["latent_dim"])
    for key in ("y_pred", "z_mean", "z_var"):
        assert np.isfinite(pred[key]).all(), f"{variant}: non-finite {key}"
    assert (pred["z_var"] > 0).all()
    np.testing.assert_allclose(loaded.predict(new)["y_pred"], pred["y_pred"], atol=1e-5)
    np.testing.assert_allclose(second.predict(new)["y_pred"], pred["y_pred"], atol=1e-5)
    np.testing.assert_allclose(loaded.latent(data), first.latent(data), atol=1e-5)
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value, msg=f"{variant}: {key} differs")
