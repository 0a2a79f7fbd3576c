"""``A^T x_i`` with shared and sparse random-effect rows of ``A`` (SPEC 1, 2.1-2.2).

:class:`MixedEffects` holds the coefficients ``A`` of the linear mixed model in latent space, as a
dense block for the shared columns and one embedding table per random-effect term ``(f | g)``.
Random-effect rows are *gathered* for the subjects of a batch (``F.embedding(..., sparse=True)``),
so the cost of a step and the gradient it produces are O(batch), whatever the number of subjects.

With ``q(A)`` mean-field Gaussian (``posterior="gaussian"``) each table has a mean ``M`` and a
log standard deviation ``log S``; with ``posterior="point"`` only ``M``. ``random_posterior`` sets
the random-effect tables apart from the shared rows: sLMM-VAE keeps its shared rows a point
parameter (no prior, SPEC 3.1) and gives its random-effect rows a Gaussian ``q`` (SPEC 3.1, 3.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmmvae.data.batch import DesignBatch

_INIT_LOG_STD = math.log(0.05)


@dataclass
class RandomRows:
    """Random-effect rows gathered for a batch: per term, means and log-stds [B, F*L] and whether
    the row's level was seen in training [B] (unseen levels carry no random effect)."""

    mean: list[torch.Tensor]
    log_std: list[torch.Tensor] | None
    seen: list[torch.Tensor]


class MixedEffects(nn.Module):
    """Coefficients ``A`` [Q, L] split into shared rows and random-effect tables."""

    def __init__(self, n_shared: int, random_terms: list[tuple[int, int]], latent_dim: int,
                 posterior: str = "gaussian", level_counts: list | None = None,
                 random_posterior: str | None = None):
        """``random_terms``: one ``(n_levels, n_columns)`` per random-effect term ``(f | g)``;
        ``level_counts``: training rows per level of each term (the weights ``1/n_p`` with which
        :meth:`kl_random_rows` spreads a level's KL over its rows; default 1 per level);
        ``random_posterior``: ``q`` of the random-effect rows (default: ``posterior``)."""
        super().__init__()
        random_posterior = posterior if random_posterior is None else random_posterior
        for name, value in (("posterior", posterior), ("random_posterior", random_posterior)):
            if value not in ("gaussian", "point"):
                raise ValueError(f"{name} must be 'gaussian' or 'point', got {value!r}")
        self.latent_dim = latent_dim
        self.gaussian = posterior == "gaussian"  # shared rows (and random rows unless set apart)
        self.random_gaussian = random_posterior == "gaussian"
        self.term_shapes = [(int(p), int(f)) for p, f in random_terms]
        self.shared_mean = nn.Parameter(torch.zeros(n_shared, latent_dim))  # [Q_s, L]
        # each table row holds the F_t x L coefficients of one level, flattened for F.embedding
        self.random_mean = nn.ParameterList(
            [nn.Parameter(torch.zeros(p, f * latent_dim)) for p, f in self.term_shapes]  # [P_t, F_t*L]
        )
        for t, counts in enumerate(level_counts or [np.ones(p) for p, _ in self.term_shapes]):
            inv = 1.0 / np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
            self.register_buffer(f"inv_count_{t}", torch.as_tensor(inv, dtype=torch.float32))  # [P_t]
        if self.gaussian:
            self.shared_log_std = nn.Parameter(torch.full((n_shared, latent_dim), _INIT_LOG_STD))
        if self.random_gaussian:
            self.random_log_std = nn.ParameterList(
                [nn.Parameter(torch.full((p, f * latent_dim), _INIT_LOG_STD)) for p, f in self.term_shapes]
            )

    # -- gathers --------------------------------------------------------------------------
    def gather(self, x: DesignBatch) -> "RandomRows":
        """The random-effect rows of the batch's levels, gathered once per step (embedding lookups
        with sparse gradients); ``mean``, ``variance`` and ``kl_random_rows`` all read them."""
        mean, log_std, seen = [], [], []
        for t, levels in enumerate(x.levels):
            idx = levels.clamp(min=0)
            seen.append((levels >= 0).to(x.shared.dtype))  # [B]
            mean.append(F.embedding(idx, self.random_mean[t], sparse=True))  # [B, F*L]
            if self.random_gaussian:
                log_std.append(F.embedding(idx, self.random_log_std[t], sparse=True))  # [B, F*L]
        return RandomRows(mean, log_std if self.random_gaussian else None, seen)

    def _terms(self, x: DesignBatch, rows: "RandomRows"):
        """Per random term: (values [B, F], seen [B], mean rows [B, F, L], log-std rows or None)."""
        for t, ((_, n_cols), values) in enumerate(zip(self.term_shapes, x.values)):
            shape = (values.shape[0], n_cols, self.latent_dim)
            log_std = rows.log_std[t].view(shape) if rows.log_std is not None else None
            yield values, rows.seen[t], rows.mean[t].view(shape), log_std

    def mean(self, x: DesignBatch, rows: "RandomRows | None" = None) -> torch.Tensor:
        """``x_i^T M`` for every row of the batch: [B, L]; unseen levels contribute nothing."""
        rows = rows or self.gather(x)
        out = x.shared @ self.shared_mean  # [B, L]
        for values, seen, mean, _ in self._terms(x, rows):
            out = out + torch.einsum("bf,bfl->bl", values * seen.unsqueeze(-1), mean)
        return out

    def variance(self, x: DesignBatch, rows: "RandomRows | None" = None) -> torch.Tensor:
        """``(x_i ⊙ x_i)^T (S ⊙ S)``, the variance of ``x_i^T a_l`` under ``q(A)``: [B, L]."""
        out = x.shared.new_zeros(x.n_rows, self.latent_dim)
        if self.gaussian:
            out = out + x.shared.square() @ (2 * self.shared_log_std).exp()
        if not self.random_gaussian:
            return out
        rows = rows or self.gather(x)
        for values, seen, _, log_std in self._terms(x, rows):
            out = out + torch.einsum("bf,bfl->bl", values.square() * seen.unsqueeze(-1), (2 * log_std).exp())
        return out

    def sample(self, x: DesignBatch, rows: "RandomRows | None" = None) -> torch.Tensor:
        """``x_i^T A`` for every row of the batch under ONE draw ``A ~ q(A)``, reparameterised: [B, L].

        The shared rows of ``A`` are drawn once; a random-effect row once per level present in the
        batch, so that two rows of one subject read the same row of ``A`` (SPEC 4: ``A`` is drawn
        outside the per-row log-mean-exp). Only the gathered rows are drawn (cost O(batch), SPEC 1).
        With a point estimate, ``x_i^T M`` (for the shared rows or the random rows alone, their ``M``).
        """
        rows = rows or self.gather(x)
        if not (self.gaussian or self.random_gaussian):
            return self.mean(x, rows)
        shared = self.shared_mean  # [Q_s, L]
        if self.gaussian:
            shared = shared + self.shared_log_std.exp() * torch.randn_like(shared)
        out = x.shared @ shared  # [B, L]
        for levels, (values, seen, mean, log_std) in zip(x.levels, self._terms(x, rows)):
            coef = mean  # [B, F, L]
            if log_std is not None:
                present, level_of_row = torch.unique(levels, return_inverse=True)  # one draw per level
                noise = torch.randn(present.shape[0], *mean.shape[1:], dtype=mean.dtype,
                                    device=mean.device)  # [levels in batch, F, L]
                coef = mean + log_std.exp() * noise[level_of_row]  # [B, F, L]
            out = out + torch.einsum("bf,bfl->bl", values * seen.unsqueeze(-1), coef)
        return out

    # -- KL(q(A) || p(A)) -----------------------------------------------------------------
    def _kl_rows(self, mean: torch.Tensor, log_std: torch.Tensor | None, tau: torch.Tensor) -> torch.Tensor:
        """Sum over the last dim of ``KL(N(M, S²) || N(0, τ²))``; for a point estimate, ``M²/(2τ²)``."""
        if log_std is None:
            return 0.5 * (mean.square() / tau.square()).sum(-1)
        var_ratio = (2 * log_std).exp() / tau.square()
        return 0.5 * (var_ratio + mean.square() / tau.square() - 1 - var_ratio.log()).sum(-1)

    def kl_shared(self, tau: torch.Tensor) -> torch.Tensor:
        """KL of the shared rows (a global term, computed whole each step: Q_s x L is small)."""
        log_std = self.shared_log_std if self.gaussian else None
        return self._kl_rows(self.shared_mean, log_std, tau).sum()

    def kl_random_rows(self, x: DesignBatch, tau: "torch.Tensor | list[torch.Tensor]",
                       rows: "RandomRows | None" = None) -> torch.Tensor:
        """Per-row share of the random-effect KL: ``sum_t KL(level of row i) * weights[t][i]``: [B].

        ``tau``: the prior std, one scalar, or a list with one ``[F_t*L]`` tensor per term (a std per
        column of ``f`` and latent dimension).

        With ``weights[t][i] = 1 / n_p`` (``n_p`` = training rows of row i's level, from
        ``level_counts``), the sum over the training set equals ``sum_p KL_p`` exactly, so the objective's minibatch scaling gives an
        unbiased estimate whose gradient touches only the gathered rows.
        """
        rows = rows or self.gather(x)
        out = x.shared.new_zeros(x.n_rows)
        for t, levels in enumerate(x.levels):
            w = getattr(self, f"inv_count_{t}")[levels.clamp(min=0)]  # [B], 1/n_p
            log_std = rows.log_std[t] if rows.log_std is not None else None
            tau_t = tau[t] if isinstance(tau, (list, tuple)) else tau  # a scalar, or one per [F_t*L]
            out = out + self._kl_rows(rows.mean[t], log_std, tau_t) * w * rows.seen[t]
        return out

    def sparse_parameters(self) -> list[nn.Parameter]:
        params = list(self.random_mean)
        if self.random_gaussian:
            params += list(self.random_log_std)
        return params
