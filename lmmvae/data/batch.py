"""What a model sees of the data: a :class:`Batch` of observations with their design rows.

The trainer keeps the whole data set as tensors on the training device and yields batches by
indexing them (no per-step host-to-device copies); see :mod:`lmmvae.data.loader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class DesignBatch:
    """Design rows ``x_i`` of a batch (SPEC 1), in the sparse form the LMM prior consumes.

    ``shared`` holds the dense shared-effect columns ``x^s``. Each random-effect term ``(f | g)`` is
    one entry of ``levels``/``values``: the code of the grouping factor ``g`` per row (``-1`` for a
    level unseen in training, which carries zero random effect) and the ``|f|`` values of ``f``.
    ``A^T x_i`` for such a term is ``sum_j values[i, j] * A_t[levels[i], j, :]``: a gather of rows,
    never a dense ``N x (P |f|)`` product.
    """

    shared: torch.Tensor  # [B, Q_s]
    levels: list[torch.Tensor] = field(default_factory=list)  # each [B], int64, -1 = unseen level
    values: list[torch.Tensor] = field(default_factory=list)  # each [B, F_t]

    @classmethod
    def from_matrix(cls, matrix, device: torch.device | str | None = None) -> "DesignBatch":
        """The tensors of a :class:`lmmvae.model.design.DesignMatrix` (numpy ``shared`` [N, Q_s]; per term
        ``levels`` [N] and ``values`` [N, F_t]), on ``device`` when given. Made here, not by the
        design, so that :mod:`lmmvae.model.design` imports no torch (the classical fits and run files use it)."""
        batch = cls(
            shared=torch.from_numpy(np.ascontiguousarray(matrix.shared)),
            levels=[torch.from_numpy(np.ascontiguousarray(lv)) for lv in matrix.levels],
            values=[torch.from_numpy(np.ascontiguousarray(v)) for v in matrix.values],
        )
        return batch.to(device) if device is not None else batch

    def __getitem__(self, index: torch.Tensor) -> "DesignBatch":
        return DesignBatch(
            shared=self.shared[index],
            levels=[lv[index] for lv in self.levels],
            values=[v[index] for v in self.values],
        )

    def to(self, device: torch.device | str) -> "DesignBatch":
        return DesignBatch(
            shared=self.shared.to(device),
            levels=[lv.to(device) for lv in self.levels],
            values=[v.to(device) for v in self.values],
        )

    @property
    def n_rows(self) -> int:
        return int(self.shared.shape[0])


@dataclass
class Batch:
    """A minibatch of observations.

    ``index`` are the rows in the full data set (priors that cache per-observation state, such as
    GPPVAE, key on it). ``covariates`` are the raw covariate values by name (float for continuous
    and time, int64 codes for binary/categorical/id), for priors that read covariates directly
    (the GP kernels of the baselines). ``subject`` holds the codes of the grouping factor of the
    model's subject-level structure (``-1`` where unknown). ``scale`` turns sums over the batch into
    unbiased estimates of sums over the training set: ``N/|B|`` for observation minibatches,
    ``P/|B_subjects|`` for subject minibatches (SPEC 2.3, 3.3).
    """

    index: torch.Tensor  # [B] int64
    y: torch.Tensor  # [B, D], 0 where missing
    mask: torch.Tensor  # [B, D] float, 1 = observed
    x: DesignBatch
    covariates: dict[str, torch.Tensor]  # name -> [B]
    subject: torch.Tensor  # [B] int64
    scale: float = 1.0

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    @property
    def y_masked(self) -> torch.Tensor:
        """``y ⊙ m``: what the encoder sees (SPEC 2.2)."""
        return self.y * self.mask
