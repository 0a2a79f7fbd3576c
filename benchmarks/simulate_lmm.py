"""Data drawn from exactly a linear mixed model in an L-d latent space (L = 2 or 3), decoded by a
fixed MLP: the data of the accuracy benchmark (:mod:`benchmarks.accuracy`) and of the recipe study.

For subject ``p`` with binary covariate ``sex_p`` and visit times ``t`` in [0, 1]::

    z(t) = f(t) + γ·sex_p + b0_p + b1_p·t                    (L-d latent; SPEC 2.1 with σ_z = 0)
    f(t) = (sin 2πt, cos πt[, cos 2πt])                        the shared, non-linear time effect
    b0_p ~ N(0, 0.8² I),  b1_p ~ N(0, 0.8² I)                  random intercepts and slopes in time
    y    = W2 tanh(W1 z + c1) + c2 + noise·ε,  ε ~ N(0, I_D)   a fixed random MLP L → 32 tanh → D

``latent_dim`` (2, the default, or 3: the third coordinate adds ``cos 2πt`` to ``f`` and ``γ_3 = 0.5``)
and ``decoder`` (:data:`DECODERS`: ``tanh32``, the default above, or ``elu64x2``, a deeper and wider
MLP ``L → 64 ELU → 64 ELU → D``) vary the data while keeping the latent model inside ``DESIGN``; the
defaults give exactly the arrays they gave before these options existed.

The decoder's weights come from ``decoder_seed`` (fixed: every data seed shares one decoder); the
subjects, visits and noise from ``seed``. Visit ``j`` of ``T`` is at ``j/(T−1)`` jittered by up to
± a quarter step (sorted, clipped to [0, 1]).

Splits (docs/data_format.md codes): every other subject (by id: ``s0, s2, …``) is a *test subject*, whose last
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

from lmmvae.data.h5 import Covariate, LongitudinalData

#: the LMM-VAE design that contains the generating model (see the module docstring)
DESIGN = "~ time + fourier(time, 2, period=2) + sex + (1 + time | id)"
LATENT_DIM = 2  # the default latent dimension
LATENT_DIMS = (2, 3)
DECODERS = ("tanh32", "elu64x2")  # the default first
HIDDEN = 32
GAMMA = np.array([0.8, -0.8, 0.5])  # effect of sex on z (the first latent_dim entries)
RANDOM_SD = 0.8  # std of random intercepts and slopes


def shared_effect(time: np.ndarray, latent_dim: int = LATENT_DIM) -> np.ndarray:
    """``f(t) = (sin 2πt, cos πt[, cos 2πt])``: [N, latent_dim]; inside ``fourier(time, 2, period=2)``."""
    columns = [np.sin(2 * np.pi * time), np.cos(np.pi * time), np.cos(2 * np.pi * time)]
    return np.stack(columns[:latent_dim], axis=1)


def decoder(data_dim: int = 20, decoder_seed: int = 1234, latent_dim: int = LATENT_DIM,
            kind: str = DECODERS[0]):
    """The fixed random MLP ``kind`` (:data:`DECODERS`) as a function ``z [N, L] → y [N, D]``."""
    if kind not in DECODERS or latent_dim not in LATENT_DIMS:
        raise ValueError(f"decoder: kind must be one of {DECODERS} and latent_dim one of {LATENT_DIMS}, "
                         f"got {kind!r}, {latent_dim}")
    rng = np.random.default_rng(decoder_seed)
    if kind == "elu64x2":
        return _elu_decoder(rng, data_dim, latent_dim)
    w1 = rng.normal(size=(latent_dim, HIDDEN))  # z of std ~1.3 → pre-activations of std ~2: tanh bends
    c1 = rng.normal(0.0, 0.5, size=HIDDEN)
    w2 = rng.normal(size=(HIDDEN, data_dim)) / np.sqrt(HIDDEN)
    c2 = rng.normal(0.0, 0.2, size=data_dim)

    def g(z: np.ndarray) -> np.ndarray:
        return np.tanh(np.asarray(z, dtype=np.float64) @ w1 + c1) @ w2 + c2

    return g


def _elu_decoder(rng: np.random.Generator, data_dim: int, latent_dim: int, width: int = 64):
    """``L → 64 ELU → 64 ELU → D``, weights scaled so every layer's pre-activations have std ~1.5
    (the ELU's bend at 0 is crossed often) and the outputs a spread like the tanh decoder's."""
    def elu(x):
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))

    w1 = rng.normal(size=(latent_dim, width))  # [L, 64]
    c1 = rng.normal(0.0, 0.5, size=width)
    w2 = rng.normal(size=(width, width)) * 1.5 / np.sqrt(width)  # [64, 64]
    c2 = rng.normal(0.0, 0.5, size=width)
    w3 = rng.normal(size=(width, data_dim)) * 0.4 / np.sqrt(width)  # [64, D]
    c3 = rng.normal(0.0, 0.2, size=data_dim)

    def g(z: np.ndarray) -> np.ndarray:
        h = elu(np.asarray(z, dtype=np.float64) @ w1 + c1)
        return elu(h @ w2 + c2) @ w3 + c3

    return g


def simulate_lmm(n_subjects: int = 100, n_visits: int = 10, data_dim: int = 20, n_future: int = 3,
                 noise: float = 0.1, seed: int = 0, decoder_seed: int = 1234,
                 val_fraction: float = 0.15, latent_dim: int = LATENT_DIM,
                 decoder_kind: str = DECODERS[0]) -> LongitudinalData:
    """Simulated longitudinal data (module docstring): ``n_subjects × n_visits`` rows, ``data_dim``
    features, all observed; ``latent_truth`` is the true ``z``, ``y_full`` the noise-free decoding
    ``g(z)`` (so ``mean((y − y_full)²) ≈ noise²`` on any rows)."""
    if n_subjects < 2 or n_visits < 2 or not 0 <= n_future < n_visits:
        raise ValueError(f"need n_subjects >= 2, n_visits >= 2 and 0 <= n_future < n_visits, "
                         f"got {n_subjects}, {n_visits}, {n_future}")
    g = decoder(data_dim, decoder_seed, latent_dim, decoder_kind)  # checks latent_dim and decoder_kind
    rng = np.random.default_rng(seed)
    n = n_subjects * n_visits
    subject = np.repeat(np.arange(n_subjects), n_visits)  # [N]
    step = np.tile(np.arange(n_visits), n_subjects)  # [N]
    jitter = rng.uniform(-0.25, 0.25, size=(n_subjects, n_visits)) / (n_visits - 1)
    time = np.sort(np.clip(np.arange(n_visits) / (n_visits - 1) + jitter, 0.0, 1.0), axis=1).ravel()
    sex = rng.integers(0, 2, size=n_subjects)  # [P]
    intercepts = rng.normal(0.0, RANDOM_SD, size=(n_subjects, latent_dim))  # [P, L]
    slopes = rng.normal(0.0, RANDOM_SD, size=(n_subjects, latent_dim))  # [P, L]
    z = (shared_effect(time, latent_dim) + sex[subject, None] * GAMMA[:latent_dim] + intercepts[subject]
         + slopes[subject] * time[:, None])  # [N, L]
    clean = g(z)  # [N, D]
    y = clean + noise * rng.normal(size=clean.shape)
    split = np.where(rng.random(n) < val_fraction, 1, 0).astype(np.uint8)
    split[(subject % 2 == 0) & (step >= n_visits - n_future)] = 2
    attrs = {"name": "simulated_lmm", "noise": float(noise), "seed": int(seed),
             "decoder_seed": int(decoder_seed), "design": DESIGN}
    if (latent_dim, decoder_kind) != (LATENT_DIM, DECODERS[0]):  # the defaults' files stay as they were
        attrs.update(latent_dim=int(latent_dim), decoder=decoder_kind)
    return LongitudinalData(
        y=y, mask=np.ones(y.shape, dtype=np.uint8), split=split,
        covariates={"time": Covariate(time, "time"),
                    "sex": Covariate(sex[subject], "binary"),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)])},
        y_full=clean, latent_truth=z, attrs=attrs,
    )


def truth_decoder(data: LongitudinalData):
    """The decoder that generated ``data`` (from its attrs; absent keys = the defaults)."""
    attrs = data.attrs
    return decoder(data.n_features, int(attrs["decoder_seed"]), int(attrs.get("latent_dim", LATENT_DIM)),
                   str(attrs.get("decoder", DECODERS[0])))
