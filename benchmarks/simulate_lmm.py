"""Data drawn from exactly a linear mixed model in a 2-d latent space, decoded by a fixed MLP: the
data of the accuracy benchmark (:mod:`benchmarks.accuracy`) and of the recipe study.

For subject ``p`` with binary covariate ``sex_p`` and visit times ``t`` in [0, 1]::

    z(t) = f(t) + γ·sex_p + b0_p + b1_p·t                    (2-d latent; SPEC 2.1 with σ_z = 0)
    f(t) = (sin 2πt, cos πt)                                   the shared, non-linear time effect
    b0_p ~ N(0, 0.8² I),  b1_p ~ N(0, 0.8² I)                  random intercepts and slopes in time
    y    = W2 tanh(W1 z + c1) + c2 + noise·ε,  ε ~ N(0, I_D)   a fixed random MLP 2 → 32 tanh → D

The decoder's weights come from ``decoder_seed`` (fixed: every data seed shares one decoder); the
subjects, visits and noise from ``seed``. Visit ``j`` of ``T`` is at ``j/(T−1)`` jittered by up to
± a quarter step (sorted, clipped to [0, 1]).

Splits (DATA.md codes): every other subject (by id: ``s0, s2, …``) is a *test subject*, whose last
``n_future`` visits are test (split 2: future prediction). The remaining rows are split at random
by observation, 85:15, into train (0) and validation (1).

The design ``~ time + fourier(time, 2, period=2) + sex + (1 + time | id)`` (:data:`DESIGN`)
contains the generating latent model exactly: ``fourier(time, 2, period=2)`` is
``cos πt, sin πt, cos 2πt, sin 2πt``, which spans ``f`` (period 2 = twice the observed span, so the
basis is not forced to be periodic over the window), and ``(1 + time | id)`` are the random
intercepts and slopes. A polynomial basis (``poly(time, 3)``) would not contain ``sin 2πt``, so the
comparison with the truth would mix the fit with a basis misspecification; with this design, any gap
between a model and the truth row is estimation, not the model class.
"""

from __future__ import annotations

import numpy as np

from lmmvae.h5 import Covariate, LongitudinalData

#: the LMM-VAE design that contains the generating model (see the module docstring)
DESIGN = "~ time + fourier(time, 2, period=2) + sex + (1 + time | id)"
LATENT_DIM = 2
HIDDEN = 32
GAMMA = np.array([0.8, -0.8])  # effect of sex on z
RANDOM_SD = 0.8  # std of random intercepts and slopes


def shared_effect(time: np.ndarray) -> np.ndarray:
    """``f(t) = (sin 2πt, cos πt)``: [N, 2]."""
    return np.stack([np.sin(2 * np.pi * time), np.cos(np.pi * time)], axis=1)


def decoder(data_dim: int = 20, decoder_seed: int = 1234):
    """The fixed random MLP ``2 → 32 tanh → data_dim`` as a function ``z [N, 2] → y [N, D]``."""
    rng = np.random.default_rng(decoder_seed)
    w1 = rng.normal(size=(LATENT_DIM, HIDDEN))  # z of std ~1.3 → pre-activations of std ~2: tanh bends
    c1 = rng.normal(0.0, 0.5, size=HIDDEN)
    w2 = rng.normal(size=(HIDDEN, data_dim)) / np.sqrt(HIDDEN)
    c2 = rng.normal(0.0, 0.2, size=data_dim)

    def g(z: np.ndarray) -> np.ndarray:
        return np.tanh(np.asarray(z, dtype=np.float64) @ w1 + c1) @ w2 + c2

    return g


def simulate_lmm(n_subjects: int = 100, n_visits: int = 10, data_dim: int = 20, n_future: int = 3,
                 noise: float = 0.1, seed: int = 0, decoder_seed: int = 1234,
                 val_fraction: float = 0.15) -> LongitudinalData:
    """Simulated longitudinal data (module docstring): ``n_subjects × n_visits`` rows, ``data_dim``
    features, all observed; ``latent_truth`` is the true ``z``, ``y_full`` the noise-free decoding
    ``g(z)`` (so ``mean((y − y_full)²) ≈ noise²`` on any rows)."""
    if n_subjects < 2 or n_visits < 2 or not 0 <= n_future < n_visits:
        raise ValueError(f"need n_subjects >= 2, n_visits >= 2 and 0 <= n_future < n_visits, "
                         f"got {n_subjects}, {n_visits}, {n_future}")
    rng = np.random.default_rng(seed)
    n = n_subjects * n_visits
    subject = np.repeat(np.arange(n_subjects), n_visits)  # [N]
    step = np.tile(np.arange(n_visits), n_subjects)  # [N]
    jitter = rng.uniform(-0.25, 0.25, size=(n_subjects, n_visits)) / (n_visits - 1)
    time = np.sort(np.clip(np.arange(n_visits) / (n_visits - 1) + jitter, 0.0, 1.0), axis=1).ravel()
    sex = rng.integers(0, 2, size=n_subjects)  # [P]
    intercepts = rng.normal(0.0, RANDOM_SD, size=(n_subjects, LATENT_DIM))  # [P, 2]
    slopes = rng.normal(0.0, RANDOM_SD, size=(n_subjects, LATENT_DIM))  # [P, 2]
    z = (shared_effect(time) + sex[subject, None] * GAMMA + intercepts[subject]
         + slopes[subject] * time[:, None])  # [N, 2]
    clean = decoder(data_dim, decoder_seed)(z)  # [N, D]
    y = clean + noise * rng.normal(size=clean.shape)
    split = np.where(rng.random(n) < val_fraction, 1, 0).astype(np.uint8)
    split[(subject % 2 == 0) & (step >= n_visits - n_future)] = 2
    return LongitudinalData(
        y=y, mask=np.ones(y.shape, dtype=np.uint8), split=split,
        covariates={"time": Covariate(time, "time"),
                    "sex": Covariate(sex[subject], "binary"),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)])},
        y_full=clean, latent_truth=z,
        attrs={"name": "simulated_lmm", "noise": float(noise), "seed": int(seed),
               "decoder_seed": int(decoder_seed), "design": DESIGN},
    )
