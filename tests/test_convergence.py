"""Honest convergence (docs/model.md, "Warm-up and convergence"): the tabular variance warm-up is a
known schedule, no run stops or keeps an epoch inside it, why a run stopped is recorded, and the
validation loss uses common random numbers so that early stopping reads a signal, not noise."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lmmvae.model.likelihoods import WARMUP_EPOCHS, GaussianLikelihood, variance_ceiling
from lmmvae.reporting.curves import read_history
from lmmvae.training import assemble
from lmmvae.training.checks import config_from_dict
from lmmvae.training.train import BUDGET, CONVERGED, Trainer, warmup_epochs
from simulate import simulate_lmm

SMALL = dict(variant="olmm", design="~ time + (1 | id)", latent_dim=2, network="mlp", batch_size=32)


def _trainer(tmp_path=None, seed=0, **settings):
    config = config_from_dict({**SMALL, **settings})
    built = assemble.assemble(config, simulate_lmm(n_subjects=12, n_times=5, n_future=1), seed=seed)
    return Trainer(built.model, built.tensors, config, built.generator, run_dir=tmp_path, progress=False)


def test_variance_ceiling_is_the_hand_computed_geometric_schedule():
    data_var = torch.tensor([2.0, 0.5])  # [D]
    # epoch t of W = 4 from 1 %: data_var * 0.01 ** (1 - t/4)
    assert torch.allclose(variance_ceiling(data_var, 0.01, 0, 4), torch.tensor([0.02, 0.005]))
    assert torch.allclose(variance_ceiling(data_var, 0.01, 1, 4), torch.tensor([2.0, 0.5]) * 0.031622777)
    assert torch.allclose(variance_ceiling(data_var, 0.01, 2, 4), torch.tensor([0.2, 0.05]))
    assert torch.isinf(variance_ceiling(data_var, 0.01, 4, 4)).all()  # free from epoch W on
    assert torch.isinf(variance_ceiling(data_var, 0.01, 0, 0)).all()  # no warm-up


def test_likelihood_follows_the_ceiling_and_is_free_after_the_warm_up():
    lik = GaussianLikelihood(2)
    y = np.array([[0.0, 0.0], [2.0, 1.0], [4.0, 2.0]])  # variances 4 and 1
    lik.initialise(y, np.ones_like(y))
    assert lik.start_fraction == 0.01 and lik.default_warmup_epochs == WARMUP_EPOCHS
    with torch.no_grad():
        lik.log_var.fill_(math.log(10.0))  # the optimiser pushed the variance up
    lik.start_epoch(2, 4)
    assert torch.allclose(lik.variance, torch.tensor([0.4, 0.1]), rtol=1e-5)  # capped at 0.01^(1/2) * data
    assert torch.allclose(lik.log_var.exp() + lik.min_variance, torch.tensor([0.4, 0.1]), rtol=1e-5)  # projected
    with torch.no_grad():
        lik.log_var.fill_(math.log(10.0))
    lik.start_epoch(4, 4)
    assert torch.allclose(lik.variance, torch.full((2,), 10.0 + 1e-4))  # free


@pytest.mark.parametrize("settings,expected", [
    ({}, WARMUP_EPOCHS),  # tabular Gaussian, ELBO: starts at 1 % of the data's variance
    ({"objective": "gsnn"}, 0),  # GSNN starts at the data's variance
    ({"likelihood": "bernoulli"}, 0),
    ({"warmup_epochs": 7}, 7),
])
def test_default_warm_up_only_where_the_variance_starts_small(settings, expected):
    trainer = _trainer(epochs=1, **settings)
    assert warmup_epochs(trainer.config, trainer.model) == trainer.warmup_epochs == expected


def test_no_stop_and_no_kept_epoch_inside_the_warm_up(tmp_path):
    """lr 1e-30 leaves every weight unchanged, so (common random numbers) every validation loss
    after the warm-up is the same: with patience 2 the run converges at exactly W + 1 + 2 = 6,
    keeps epoch W + 1 = 4, and says so in history.csv and read_history."""
    trainer = _trainer(tmp_path, epochs=30, warmup_epochs=3, patience=2, lr=1e-30)
    state = trainer.fit()
    assert (state.epoch, state.best_epoch, state.stopped) == (6, 4, CONVERGED)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["warmup"]) == [1, 1, 1, 0, 0, 0]
    assert history["stopped"].iloc[-1] == CONVERGED and history["stopped"].iloc[:-1].isna().all()
    assert history["val_loss"].iloc[3:].nunique() == 1  # the same draws every epoch
    record = read_history(tmp_path / "history.csv", 30)
    assert (record["best_epoch"], record["stopped"], record["stopped_early"], record["warmup_epochs"]) == (
        4, CONVERGED, True, 3)


def test_warm_up_variance_stays_under_the_ceiling_and_patience_counts_after_it(tmp_path):
    trainer = _trainer(tmp_path, epochs=8, warmup_epochs=5, patience=1, lr=3e-2)
    data_var, fraction = trainer.model.likelihood.data_variance.clone(), trainer.model.likelihood.start_fraction
    state = trainer.fit()
    history = pd.read_csv(tmp_path / "history.csv")
    assert state.best_epoch > 5 and state.epoch >= 7  # earliest stop: epoch W + 1 + patience
    for epoch, variance in zip(history["epoch"][:5], history["likelihood_variance"][:5]):
        assert variance <= float(variance_ceiling(data_var, fraction, epoch - 1, 5).mean()) * (1 + 1e-5)
    assert state.stopped in (CONVERGED, BUDGET) and (state.stopped == BUDGET) == (state.epoch == 8)


def test_budget_inside_the_warm_up_keeps_the_last_epoch_and_says_budget(tmp_path):
    state = _trainer(tmp_path, epochs=3, patience=1).fit()  # default warm-up 50 > budget
    assert (state.epoch, state.best_epoch, state.stopped) == (3, 3, BUDGET)
    assert read_history(tmp_path / "history.csv", 3)["stopped_early"] is False


@pytest.mark.parametrize("objective", ["elbo", "gsnn"])
def test_validation_uses_common_random_numbers_and_leaves_the_training_stream_alone(objective):
    trainer = _trainer(epochs=1, objective=objective)
    rng = torch.get_rng_state()
    first, second = trainer.validation_loss(), trainer.validation_loss()
    assert first == second
    assert torch.equal(torch.get_rng_state(), rng)


def test_gsnn_validation_uses_its_own_number_of_draws():
    trainer = _trainer(epochs=1, objective="gsnn", gsnn_samples=3, gsnn_val_samples=40)
    seen, objective = [], trainer.objective

    def recording(model, batch, n_total, n_samples):
        seen.append(n_samples)
        return objective(model, batch, n_total, n_samples=n_samples)

    trainer.objective = recording
    trainer.validation_loss()
    assert set(seen) == {40}
    trainer._pass("train", train=True)
    assert set(seen[-1:]) == {3}
