"""What a fitted prior says of itself for ``lmmvae summary`` (:meth:`lmmvae.model.priors.base.Prior.describe`).

A prior knows its own parameters; the summary only renders them. A prior that gives no description
gets an explicit line in the summary, never an empty table that looks like "nothing learned".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

FIXED_COLUMNS = ["term", "latent", "mean", "sd"]
RANDOM_COLUMNS = ["term", "group", "column", "latent", "tau", "sd_levels", "n_levels"]
NOISE_COLUMNS = ["parameter", "value"]


@dataclass
class PriorDescription:
    """Rows of the summary's tables (columns above) and notes, as plain Python / NumPy numbers.

    ``fixed_effects``: the shared rows of ``A`` (SPEC 2.1, 3.1), ``sd`` NaN for a point estimate;
    ``random_effects``: per random term, column and latent dimension the prior std ``tau`` and the
    spread of the levels' means; ``noise``: the prior's noise scales (``σ_z``, ``σ_ε``); ``notes``:
    what the prior's factors mean under the objective it was trained by (SPEC 4)."""

    fixed_effects: list[tuple] = field(default_factory=list)
    random_effects: list[tuple] = field(default_factory=list)
    noise: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def latent_names(n: int) -> list[str]:
    return [f"z{l + 1}" for l in range(n)]


def as_numpy(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def fixed_effect_rows(effects, design) -> list[tuple]:
    """``(term, latent, mean, sd)`` per shared design column and latent dimension (SPEC 2.2)."""
    if not design.n_shared:
        return []
    mean = as_numpy(effects.shared_mean)  # [Q_s, L]
    sd = as_numpy(effects.shared_log_std.exp()) if effects.gaussian else np.full_like(mean, np.nan)
    latents = latent_names(mean.shape[1])
    return [(term, latents[l], mean[q, l], sd[q, l])
            for q, term in enumerate(design.shared_columns) for l in range(mean.shape[1])]


def random_effect_rows(effects, design, tau: Callable[[int, int], np.ndarray]) -> list[tuple]:
    """``(term, group, column, latent, tau, sd_levels, n_levels)`` per random term, column and
    latent dimension; ``tau(t, n_cols)`` is term ``t``'s prior std as ``[F_t, L]``."""
    rows: list[tuple[Any, ...]] = []
    for t, info in enumerate(design.random_terms):
        n_levels, n_cols = effects.term_shapes[t]
        latent = effects.latent_dim
        means = as_numpy(effects.random_mean[t]).reshape(n_levels, n_cols, latent)  # [P, F, L]
        tau_t = tau(t, n_cols)  # [F, L]
        spread = means.std(axis=0, ddof=1) if n_levels > 1 else np.full((n_cols, latent), np.nan)
        names = list(info.columns) if len(info.columns) == n_cols else [str(f) for f in range(n_cols)]
        for f in range(n_cols):
            for l, lname in enumerate(latent_names(latent)):
                rows.append((info.name, info.group, names[f], lname, tau_t[f, l], spread[f, l], n_levels))
    return rows
