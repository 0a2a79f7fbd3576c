"""LMM-VAE on simulated longitudinal data with known effects: future prediction beats a VAE with a
standard normal prior and the covariate-free mean; the fit → save → load round trip."""

import numpy as np
import pytest

import lmmvae
from lmmvae.answers.metrics import mse
from simulate import simulate_lmm

COMMON = dict(latent_dim=2, network="mlp", epochs=30, batch_size=64, lr=5e-3, lr_decay=0.99, progress=False)


@pytest.fixture(scope="module")
def data():
    return simulate_lmm()


@pytest.fixture(scope="module")
def future_mse(data):
    test = data.split == 2
    mask = np.zeros_like(data.mask, dtype=bool)
    mask[test] = True

    def score(model):
        return mse(data.y[test], model.predict_arrays(data.covariate_frame()[test])["y_pred"], mask[test])

    baseline_mean = data.y[data.split == 0].mean(0)
    return score, mse(data.y[test], np.broadcast_to(baseline_mean, data.y[test].shape), mask[test])


@pytest.mark.slow
def test_lmm_variants_predict_the_future_better_than_vae_and_mean(data, future_mse):
    score, mean_mse = future_mse
    olmm = score(lmmvae.fit(data, seed=0, variant="olmm", design="~ time + sex + (1 | id)", **COMMON))
    slmm = score(lmmvae.fit(data, seed=0, variant="slmm", design="~ time + sex", **COMMON))
    vae = score(lmmvae.fit(data, seed=0, variant="vae", **COMMON))
    print(f"future MSE: olmm {olmm:.4f}, slmm {slmm:.4f}, vae {vae:.4f}, covariate-free mean {mean_mse:.4f}")
    for name, value in (("olmm", olmm), ("slmm", slmm)):
        assert value < 0.5 * vae, f"{name} {value:.4f} vs VAE {vae:.4f}"
        assert value < 0.5 * mean_mse, f"{name} {value:.4f} vs mean {mean_mse:.4f}"


@pytest.mark.slow
def test_gsnn_trains_and_save_load_round_trip(data, tmp_path):
    model = lmmvae.fit(data, seed=1, variant="olmm", objective="gsnn", design="~ time + (1 | id)",
                       out=tmp_path / "run", **{**COMMON, "epochs": 5})
    again = lmmvae.load(tmp_path / "run")
    frame = data.covariate_frame().head(7)
    np.testing.assert_allclose(model.predict_arrays(frame)["y_pred"], again.predict_arrays(frame)["y_pred"], atol=1e-6)
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 6 and history[0].startswith("epoch,train_loss,val_loss")
