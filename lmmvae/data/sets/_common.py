"""Small pieces every generator shares: argument checks, seeded streams, standardisation, attrs."""

from __future__ import annotations

import numpy as np

from lmmvae.data.h5 import SPLITS
from lmmvae.errors import ConfigError


def check_fraction(name: str, value: float, *, low_open: bool = False, high_open: bool = True) -> float:
    """``value`` must lie in [0, 1) (by default); a ConfigError names the option otherwise."""
    value = float(value)
    too_low = value <= 0 if low_open else value < 0
    too_high = value >= 1 if high_open else value > 1
    if not np.isfinite(value) or too_low or too_high:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be in {interval}, got {value}")
    return value


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators from one seed, so that changing one option (e.g. the missing
    rate) does not reshuffle what the other streams draw (e.g. the split)."""
    return np.random.default_rng(int(seed)).spawn(n)


def standardise_on_train(y: np.ndarray, mask: np.ndarray, split: np.ndarray):
    """Standardise each column of ``y`` with the mean/std of its observed train entries.

    Returns ``(y_std, mean, std)``; missing entries become 0. Columns with fewer than two observed
    train values, or zero spread, keep std 1 so that nothing divides by zero.
    """
    observed = mask.astype(bool)  # [N, D]
    train = observed & (split == SPLITS["train"])[:, None]  # [N, D]
    counts = train.sum(axis=0)  # [D]
    sums = np.where(train, y, 0.0).sum(axis=0, dtype=np.float64)
    mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)  # [D]
    with np.errstate(over="ignore"):
        sq = np.where(train, (y - mean) ** 2, 0.0).sum(axis=0, dtype=np.float64)
    var = np.divide(sq, counts - 1, out=np.ones_like(sq), where=counts > 1)
    std = np.sqrt(var)
    if not np.isfinite(sq).all():  # values near 1e200: squares overflow (std inf: every value -> 0)
        centred = np.where(train, y - mean, 0.0)  # [N, D], scaled by its largest deviation first
        scale = np.abs(centred).max(axis=0, initial=0.0)  # [D]
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
        scaled = np.divide(((centred / scale) ** 2).sum(axis=0), counts - 1, out=np.ones_like(sq), where=counts > 1)
        std = np.where(np.isfinite(sq), std, np.sqrt(scaled) * scale)
    std[~(std > 1e-12)] = 1.0
    y_std = np.where(observed, (y - mean) / std, 0.0).astype(np.float32)  # [N, D]
    return y_std, mean, std


def generator_attrs(name: str, module: str, seed: int | None, args: dict) -> dict:
    """Root attrs of docs/data_format.md: ``name``, ``generator``, ``seed`` and the arguments (JSON on write)."""
    attrs = {"name": name, "generator": module, "args": dict(args)}
    if seed is not None:
        attrs["seed"] = int(seed)
    return attrs


