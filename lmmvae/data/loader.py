"""The data set as tensors on the training device, and minibatches drawn from it.

:class:`TensorData` converts a :class:`~lmmvae.data.h5.LongitudinalData` once: observations, masks, the
design rows (sparse random-effect form, SPEC 1) and the raw covariates all live on the device, and a
batch is a handful of index operations, so training never waits on host-side loading. Batches are
either i.i.d. observations or whole subjects (SPEC 3.3), as the prior asks.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import torch

from lmmvae.data.batch import Batch, DesignBatch
from lmmvae.data.h5 import SPLITS, LongitudinalData
from lmmvae.data.levels import match_levels


def recode(data: LongitudinalData, reference_levels: dict[str, list]) -> dict[str, np.ndarray]:
    """Covariate values as arrays; codes of categorical/id covariates re-mapped onto the training
    levels ``reference_levels`` by value (``-1`` for a level training never saw).

    Levels match through :func:`lmmvae.data.levels.match_levels`, the one rule the design uses too:
    ``12``, ``12.0`` and ``"12"`` are one subject whatever the column's dtype.
    """
    out = {}
    for name, cov in data.covariates.items():
        if cov.levels is not None and name in reference_levels:
            mapping = match_levels(cov.levels, reference_levels[name])
            out[name] = mapping[cov.values] if len(mapping) else cov.values.copy()
        else:
            out[name] = cov.values
    return out


class RowsOf(Mapping):
    """``{name: source[name][index]}`` with each entry gathered on first access.

    Only priors that read raw covariates (the GP baselines) look at ``batch.covariates``, and they
    read a few by name; gathering every covariate eagerly cost one random-access index operation per
    covariate per step (with 1,000 covariates, most of a small model's step: BENCHMARKS.md §3).
    """

    def __init__(self, source: Mapping[str, torch.Tensor], index: torch.Tensor):
        self._source, self._index = source, index
        self._rows: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._rows:
            self._rows[name] = self._source[name][self._index]  # [B]
        return self._rows[name]

    def __iter__(self):
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)


class TensorData:
    """Whole data set on ``device``; ``batch(index)`` slices it into a :class:`Batch`."""

    def __init__(self, data: LongitudinalData, design, subject: str | None,
                 reference_levels: dict[str, list], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.n_obs = data.n_obs
        self.y = torch.as_tensor(data.y, device=self.device)  # [N, D]
        self.mask = torch.as_tensor(data.mask, device=self.device, dtype=torch.float32)  # [N, D]
        self.split = torch.as_tensor(data.split.astype(np.int64), device=self.device)  # [N]
        self.x = DesignBatch.from_matrix(design.transform(data.covariates), self.device)
        values = recode(data, reference_levels)
        self.covariates = {
            name: torch.as_tensor(v, device=self.device, dtype=torch.int64 if v.dtype.kind in "iu" else torch.float32)
            for name, v in values.items()
        }  # name -> [N]
        if subject is not None and subject in self.covariates:
            self.subject = self.covariates[subject].long()  # [N]
        else:
            self.subject = torch.full((self.n_obs,), -1, dtype=torch.int64, device=self.device)
        self._groups: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def indices(self, split: str | None) -> torch.Tensor:
        """Rows of ``split`` (``None``: all rows)."""
        if split is None:
            return torch.arange(self.n_obs, device=self.device)
        return torch.nonzero(self.split == SPLITS[split]).flatten()

    def batch(self, index: torch.Tensor, scale: float = 1.0) -> Batch:
        return Batch(
            index=index,
            y=self.y[index],
            mask=self.mask[index],
            x=self.x[index],
            covariates=RowsOf(self.covariates, index),
            subject=self.subject[index],
            scale=scale,
        )

    # -- minibatches ----------------------------------------------------------------------
    def _subject_groups(self, split: str | None):
        """Rows of ``split`` sorted by subject, with each subject's offset and count."""
        if split not in self._groups:
            rows = self.indices(split)
            order = rows[torch.argsort(self.subject[rows], stable=True)]
            _, counts = torch.unique_consecutive(self.subject[order], return_counts=True)
            offsets = torch.cumsum(counts, 0) - counts
            self._groups[split] = (order, offsets, counts)
        return self._groups[split]

    def batches(self, split: str | None, batch_size: int, by: str = "observations", shuffle: bool = True,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Minibatches of ``split``: i.i.d. rows (``scale = N/|B|``) or whole subjects, about
        ``batch_size`` rows at a time (``scale = P/|B_subjects|``, SPEC 3.3)."""
        if by == "observations":
            rows = self.indices(split)
            n = rows.shape[0]
            if shuffle:
                rows = rows[torch.randperm(n, generator=generator, device="cpu").to(self.device)]
            for start in range(0, n, batch_size):
                index = rows[start:start + batch_size]
                yield self.batch(index, scale=n / index.shape[0])
        elif by == "subjects":
            order, offsets, counts = self._subject_groups(split)
            n_subj = offsets.shape[0]
            if n_subj == 0:
                return
            per_batch = max(1, round(batch_size * n_subj / max(int(counts.sum()), 1)))
            subjects = torch.arange(n_subj, device=self.device)
            if shuffle:
                subjects = subjects[torch.randperm(n_subj, generator=generator, device="cpu").to(self.device)]
            for start in range(0, n_subj, per_batch):
                chosen = subjects[start:start + per_batch]
                lens = counts[chosen]
                segment = torch.repeat_interleave(torch.arange(chosen.shape[0], device=self.device), lens)
                within = torch.arange(int(lens.sum()), device=self.device) - (torch.cumsum(lens, 0) - lens)[segment]
                index = order[offsets[chosen][segment] + within]
                yield self.batch(index, scale=n_subj / chosen.shape[0])
        else:
            raise ValueError(f"unknown batching {by!r}")
