"""Fourier feature maps and the GP connection (SPEC 5).

A stationary kernel ``k(τ)`` is approximated by ``M`` frequencies,
``k(x - x') ≈ Σ_m w_m cos(ω_m (x - x'))``, which is the inner product of the feature map
``φ(x) = [√w_m cos(ω_m x), √w_m sin(ω_m x)]_m``. With ``a ~ N(0, I)``, ``f(x) = φ(x)ᵀ a`` is a
reduced-rank GP with that kernel. Equivalently, the *unweighted* design columns of
``fourier(v, K, period=T)`` with a prior variance ``w_k`` on both columns of frequency ``k`` (and
``w_0`` on the intercept) give the same GP: :func:`fourier_column_weights` lays the weights out in
the design's column order.

Kernels, with ``τ = x - x'``, variance ``σ²`` and lengthscale ``ℓ``:

* ``rbf``: ``σ² exp(-τ² / (2ℓ²))`` (gpytorch ``RBFKernel`` with ``lengthscale = ℓ``).
* ``periodic``: ``σ² exp(-2 sin²(π τ / T) / ℓ²)`` (MacKay). gpytorch's ``PeriodicKernel`` divides
  by its ``lengthscale`` unsquared, so its ``lengthscale`` is ``ℓ²`` here; ``period_length = T``.

Regular frequencies ``ω_k = 2πk/T`` (``k = 0..K``) give:

* periodic kernel: the exact Fourier series ``w_0 = σ² e^{-z} I_0(z)``, ``w_k = 2σ² e^{-z} I_k(z)``,
  ``z = ℓ^-2`` (modified Bessel functions), converging very fast in ``K``;
* RBF kernel: ``w_k = S(ω_k) Δω`` with the spectral density ``S(ω) = σ² ℓ/√(2π) exp(-ℓ²ω²/2)``
  (two-sided, so ``w_k`` doubles for ``k ≥ 1``) and ``Δω = 2π/T``. The sum is ``T``-periodic,
  ``Σ_n k(τ + nT)``: choose ``T`` a few lengthscales wider than the covariate's range.

Random frequencies (``rff``) draw ``ω_m ~ N(0, ℓ^-2)`` with ``w_m = σ²/M``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ive

KERNELS = ("rbf", "periodic")


def fourier_features(x: np.ndarray, n_frequencies: int, period: float) -> np.ndarray:
    """``[cos(ω_1 x), sin(ω_1 x), …, cos(ω_K x), sin(ω_K x)]``, ``ω_k = 2πk/T``: ``[N, 2K]``."""
    x = np.asarray(x, dtype=np.float64)
    omega = 2 * np.pi * np.arange(1, n_frequencies + 1) / period  # [K]
    return _interleave(np.outer(x, omega))


def rff_frequencies(n_features: int, lengthscale: float, seed: int = 0) -> np.ndarray:
    """``ω_m ~ N(0, ℓ^-2)``, drawn with ``numpy.random.default_rng(seed)``: ``[M]``."""
    return np.random.default_rng(seed).normal(0.0, 1.0 / lengthscale, size=n_features)


def rff_features(x: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """``[cos(ω_m x), sin(ω_m x)]_m / √M``, interleaved: ``[N, 2M]``; ``φ(x)ᵀφ(x') → k_RBF(x - x')``."""
    x = np.asarray(x, dtype=np.float64)
    return _interleave(np.outer(x, omega)) / np.sqrt(len(omega))


def _interleave(phase: np.ndarray) -> np.ndarray:
    out = np.empty((phase.shape[0], 2 * phase.shape[1]))  # [N, 2K]
    out[:, 0::2] = np.cos(phase)
    out[:, 1::2] = np.sin(phase)
    return out


def kernel(name: str, tau: np.ndarray, lengthscale: float, period: float | None = None,
           variance: float = 1.0) -> np.ndarray:
    """The exact stationary kernel ``k(τ)`` of the module docstring."""
    tau = np.asarray(tau, dtype=np.float64)
    if name == "rbf":
        return variance * np.exp(-(tau ** 2) / (2 * lengthscale ** 2))
    if name == "periodic":
        if period is None:
            raise ValueError("the periodic kernel needs a period")
        return variance * np.exp(-2 * np.sin(np.pi * tau / period) ** 2 / lengthscale ** 2)
    raise ValueError(f"unknown kernel {name!r}; valid: {', '.join(KERNELS)}")


def spectral_weights(name: str, n_frequencies: int, period: float, lengthscale: float,
                     variance: float = 1.0) -> np.ndarray:
    """Weights ``w_0..w_K`` of regular frequencies ``ω_k = 2πk/T`` for kernel ``name``: ``[K + 1]``.

    ``k(τ) ≈ w_0 + Σ_{k≥1} w_k cos(ω_k τ)`` (SPEC 5); ``w_0`` belongs to the intercept.
    """
    k = np.arange(n_frequencies + 1)
    if name == "periodic":
        z = 1.0 / lengthscale ** 2
        w = variance * ive(k, z)  # e^{-z} I_k(z)
    elif name == "rbf":
        d_omega = 2 * np.pi / period
        omega = k * d_omega
        w = variance * lengthscale / np.sqrt(2 * np.pi) * np.exp(-0.5 * (lengthscale * omega) ** 2) * d_omega
    else:
        raise ValueError(f"unknown kernel {name!r}; valid: {', '.join(KERNELS)}")
    w[1:] *= 2.0
    return w


def fourier_column_weights(weights: np.ndarray) -> np.ndarray:
    """Per-column prior variances ``[w_1, w_1, w_2, w_2, …]`` for the ``2K`` columns of
    ``fourier(v, K, period=T)`` (cos and sin of each frequency share ``w_k``): ``[2K]``."""
    return np.repeat(np.asarray(weights, dtype=np.float64)[1:], 2)


def weighted_fourier_features(x: np.ndarray, weights: np.ndarray, period: float) -> np.ndarray:
    """``φ(x) = [√w_0, √w_1 cos(ω_1 x), √w_1 sin(ω_1 x), …]``: ``[N, 2K + 1]``, so that
    ``φ(x)ᵀφ(x') = Σ_k w_k cos(ω_k (x - x'))``."""
    x = np.asarray(x, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    cols = fourier_features(x, len(weights) - 1, period) * np.sqrt(fourier_column_weights(weights))
    return np.concatenate([np.full((len(x), 1), np.sqrt(weights[0])), cols], axis=1)
