"""``A^T x_i`` with shared and sparse random-effect rows of ``A`` (SPEC 1, 2.1-2.2).

:class:`MixedEffects` holds the coefficients ``A`` of the linear mixed model in latent space, as a
dense block for the shared columns and one embedding table per random-effect term ``(f | g)``.
Random-effect rows are *gathered* for the subjects of a batch (``F.embedding(..., sparse=True)``),
so the cost of a step and the gradient it produces are O(batch), whatever the number of subjects.

With ``q(A)`` mean-field Gaussian (``posterior="gaussian"``) each table has a mean ``M`` and a
log standard deviation ``log S``; with ``posterior="point"`` only ``M``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lmmvae.batch import DesignBatch

_INIT_LOG_STD = math.log(0.05)


class MixedEffects(nn.Module):
    """Coefficients ``A`` [Q, L] split into shared rows and random-effect tables."""

    def __init__(self, n_shared: int, random_terms: list[tuple[int, int]], latent_dim: int,
                 posterior: str = "gaussian"):
        """``random_terms``: one ``(n_levels, n_columns)`` per random-effect term ``(f | g)``."""
        super().__init__()
        if posterior not in ("gaussian", "point"):
            raise ValueError(f"posterior must be 'gaussian' or 'point', got {posterior!r}")
        self.latent_dim = latent_dim
        self.gaussian = posterior == "gaussian"
        self.term_shapes = [(int(p), int(f)) for p, f in random_terms]
        self.shared_mean = nn.Parameter(torch.zeros(n_shared, latent_dim))  # [Q_s, L]
        # each table row holds the F_t x L coefficients of one level, flattened for F.embedding
        self.random_mean = nn.ParameterList(
            [nn.Parameter(torch.zeros(p, f * latent_dim)) for p, f in self.term_shapes]  # [P_t, F_t*L]
        )
        if self.gaussian:
            self.shared_log_std = nn.Parameter(torch.full((n_shared, latent_dim), _INIT_LOG_STD))
            self.random_log_std = nn.ParameterList(
                [nn.Parameter(torch.full((p, f * latent_dim), _INIT_LOG_STD)) for p, f in self.term_shapes]
            )

    # -- gathers --------------------------------------------------------------------------
    def _gather(self, table: torch.Tensor, levels: torch.Tensor, n_columns: int) -> torch.Tensor:
        """Rows ``table[levels]`` as [B, F, L]; rows of unseen levels (-1) are zero."""
        seen = levels >= 0  # [B]
        rows = F.embedding(levels.clamp(min=0), table, sparse=True)  # [B, F*L]
        rows = rows * seen.unsqueeze(-1).to(rows.dtype)
        return rows.view(levels.shape[0], n_columns, self.latent_dim)

    def mean(self, x: DesignBatch) -> torch.Tensor:
        """``x_i^T M`` for every row of the batch: [B, L]."""
        out = x.shared @ self.shared_mean  # [B, L]
        for (_, n_cols), table, levels, values in zip(self.term_shapes, self.random_mean, x.levels, x.values):
            rows = self._gather(table, levels, n_cols)  # [B, F, L]
            out = out + torch.einsum("bf,bfl->bl", values, rows)
        return out

    def variance(self, x: DesignBatch) -> torch.Tensor:
        """``(x_i ⊙ x_i)^T (S ⊙ S)``, the variance of ``x_i^T a_l`` under ``q(A)``: [B, L]."""
        if not self.gaussian:
            return x.shared.new_zeros(x.n_rows, self.latent_dim)
        out = x.shared.square() @ (2 * self.shared_log_std).exp()
        for (_, n_cols), table, levels, values in zip(self.term_shapes, self.random_log_std, x.levels, x.values):
            log_std = self._gather(table, levels, n_cols)  # [B, F, L]; unseen rows -> exp(0)=1 masked below
            var = (2 * log_std).exp() * (levels >= 0).view(-1, 1, 1).to(log_std.dtype)
            out = out + torch.einsum("bf,bfl->bl", values.square(), var)
        return out

    # -- KL(q(A) || p(A)) -----------------------------------------------------------------
    def _kl_rows(self, mean: torch.Tensor, log_std: torch.Tensor | None, tau: torch.Tensor) -> torch.Tensor:
        """Sum over entries of ``KL(N(M, S²) || N(0, τ²))``; for a point estimate, ``M²/(2τ²)``."""
        if log_std is None:
            return 0.5 * (mean.square() / tau.square()).sum(-1)
        var_ratio = (2 * log_std).exp() / tau.square()
        return 0.5 * (var_ratio + mean.square() / tau.square() - 1 - var_ratio.log()).sum(-1)

    def kl_shared(self, tau: torch.Tensor) -> torch.Tensor:
        """KL of the shared rows (a global term, computed whole each step: Q_s x L is small)."""
        log_std = self.shared_log_std if self.gaussian else None
        return self._kl_rows(self.shared_mean, log_std, tau).sum()

    def kl_random_rows(self, x: DesignBatch, tau: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """Per-row share of the random-effect KL: ``sum_t KL(level of row i) * weights[t][i]``: [B].

        With ``weights[t][i] = 1 / n_p`` (``n_p`` = training rows of row i's level), the sum over the
        training set equals ``sum_p KL_p`` exactly, so the objective's minibatch scaling gives an
        unbiased estimate whose gradient touches only the gathered rows.
        """
        out = x.shared.new_zeros(x.n_rows)
        for t, (levels, w) in enumerate(zip(x.levels, weights)):
            seen = levels >= 0
            idx = levels.clamp(min=0)
            mean = F.embedding(idx, self.random_mean[t], sparse=True)  # [B, F*L]
            log_std = F.embedding(idx, self.random_log_std[t], sparse=True) if self.gaussian else None
            out = out + self._kl_rows(mean, log_std, tau) * w * seen.to(out.dtype)
        return out

    def sparse_parameters(self) -> list[nn.Parameter]:
        params = list(self.random_mean)
        if self.gaussian:
            params += list(self.random_log_std)
        return params
