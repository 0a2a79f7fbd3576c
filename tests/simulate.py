"""Simulated longitudinal data with known fixed and random effects, for the end-to-end tests."""

import numpy as np

from lmmvae.data.h5 import Covariate, LongitudinalData


def simulate_lmm(n_subjects=60, n_times=10, data_dim=12, n_future=3, noise=0.1, seed=0):
    """``z = β·t + γ·sex + b_p`` (2-D), ``y = tanh(W z) + noise``; the last ``n_future`` time points of
    every other subject are test (future prediction), the rest train/validation 85:15."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_times)
    time = np.tile(np.linspace(0.0, 1.0, n_times), n_subjects)
    sex = np.repeat(rng.integers(0, 2, n_subjects), n_times)
    beta, gamma = np.array([2.0, -1.5]), np.array([1.0, 1.0])
    intercepts = rng.normal(0.0, 0.8, size=(n_subjects, 2))
    z = time[:, None] * beta + sex[:, None] * gamma + intercepts[subject]
    weights = rng.normal(size=(2, data_dim)) / np.sqrt(2)
    y = np.tanh(z @ weights) + noise * rng.normal(size=(len(z), data_dim))
    step = np.tile(np.arange(n_times), n_subjects)
    split = np.where(rng.random(len(z)) < 0.15, 1, 0)
    split[(subject % 2 == 0) & (step >= n_times - n_future)] = 2
    return LongitudinalData(
        y=y, mask=np.ones_like(y, dtype=np.uint8), split=split,
        covariates={"time": Covariate(time, "time"), "sex": Covariate(sex, "binary"),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)])},
        latent_truth=z, attrs={"name": "simulated"},
    )
