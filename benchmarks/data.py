"""Data of the benchmarks: Health MNIST from the project's generator (cached on disk), and simulated
tabular longitudinal data with any number of observations, subjects (random intercepts and slopes
in time) and shared covariates, generated vectorised (:func:`simulate`):

    z_i = B^T c_i + b0_p + b1_p t_i        (K = 4 true latent factors)
    y_i = tanh(W z_i) + 0.1 ε_i            (D features, all observed)

Subjects get equal shares of the rows (contiguous blocks), ``t`` runs over [0, 1] within a
subject, and every row is in the train split (the benchmarks time training epochs only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmmvae.data.h5 import Covariate, LongitudinalData, read_h5, write_h5

N_FACTORS = 4


def health_mnist(n_instances: int, n_timepoints: int = 20, cache: str | Path | None = None,
                 seed: int = 0) -> LongitudinalData:
    """Health MNIST of ``n_instances × n_timepoints`` images (docs/data_format.md), generated once by
    :func:`lmmvae.data.sets.health_mnist.health_mnist` and kept under ``cache`` (if given)."""
    from lmmvae.data.sets.health_mnist import health_mnist as generate

    path = None if cache is None else Path(cache) / f"health_mnist-I{n_instances}-T{n_timepoints}-s{seed}.h5"
    if path is not None and path.exists():
        return read_h5(path)
    data = generate(n_instances=n_instances, n_timepoints=n_timepoints, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_h5(data, path)
    return data


def simulate(n_obs: int, n_subjects: int, n_covariates: int = 2, data_dim: int = 32, seed: int = 0) -> LongitudinalData:
    if not 1 <= n_subjects <= n_obs:
        raise ValueError(f"need 1 <= n_subjects <= n_obs, got {n_subjects} subjects for {n_obs} rows")
    rng = np.random.default_rng(seed)
    subject = (np.arange(n_obs, dtype=np.int64) * n_subjects) // n_obs  # [N], contiguous, balanced
    counts = np.bincount(subject, minlength=n_subjects)  # [P]
    start = np.cumsum(counts) - counts
    position = np.arange(n_obs) - start[subject]
    time = position / np.maximum(counts[subject] - 1, 1)  # [N] in [0, 1]
    shared = rng.normal(size=(n_obs, n_covariates)).astype(np.float32)  # [N, Q]
    effects = rng.normal(size=(n_covariates, N_FACTORS)) / np.sqrt(max(n_covariates, 1))  # [Q, K]
    intercepts = rng.normal(0.0, 0.8, size=(n_subjects, N_FACTORS))  # [P, K]
    slopes = rng.normal(0.0, 0.5, size=(n_subjects, N_FACTORS))  # [P, K]
    z = shared @ effects + intercepts[subject] + slopes[subject] * time[:, None]  # [N, K]
    weights = rng.normal(size=(N_FACTORS, data_dim)) / np.sqrt(N_FACTORS)  # [K, D]
    y = (np.tanh(z @ weights) + 0.1 * rng.normal(size=(n_obs, data_dim))).astype(np.float32)  # [N, D]
    covariates = {
        "time": Covariate(time, "time"),
        "id": Covariate(subject, "id", levels=list(range(n_subjects))),
    }
    for q in range(n_covariates):
        covariates[f"x{q}"] = Covariate(shared[:, q], "continuous")
    return LongitudinalData(
        y=y, mask=np.ones_like(y, dtype=np.uint8), split=np.zeros(n_obs, dtype=np.uint8),
        covariates=covariates, latent_truth=z.astype(np.float32),
        attrs={"name": f"simulated-N{n_obs}-P{n_subjects}-Q{n_covariates}"},
    )


def design_formula(n_covariates: int) -> str:
    """``~ time + x0 + … + x{Q−1} + (1 + time | id)``: shared effects and random intercepts and slopes."""
    shared = " + ".join(["time"] + [f"x{q}" for q in range(n_covariates)])
    return f"~ {shared} + (1 + time | id)"
