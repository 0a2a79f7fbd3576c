"""The train / validation / test splits of the benchmark (docs/data_format.md; paper appendices E.1, F.1).

Two ways to hold out data, both keeping every held-out subject in train as well, so that a model
can estimate its random effect:

- :func:`withhold_late_split` (Health MNIST, PhysioNet, clinical trial): a fraction of subjects are
  test subjects; their observations before a cut (in time, or in visit number) stay in train, the
  rest go to test.
- :func:`cyclic_window_split` (Rotating MNIST): for a fraction of subjects, a run of consecutive
  time points (cyclic) goes to test.

All remaining observations are split at random into train and validation by observation
(:func:`train_validation_split`).
"""

from __future__ import annotations

import numpy as np

from lmmvae.data.h5 import SPLITS

TRAIN, VALIDATION, TEST = SPLITS["train"], SPLITS["validation"], SPLITS["test"]


def n_test_subjects(n_eligible: int, fraction: float) -> int:
    """``round(fraction * n)``, but at least one when the fraction is positive and someone is eligible."""
    if fraction <= 0 or n_eligible == 0:
        return 0
    return int(min(n_eligible, max(1, round(fraction * n_eligible))))


def train_validation_split(
    split: np.ndarray, pool: np.ndarray, subject: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Send a random ``fraction`` of the rows ``pool`` to validation, the others to train.

    Every subject keeps at least one training observation: when the draw leaves a subject none, its
    earliest pool row (in pool order) moves back to train.
    """
    split = split.copy()
    pool = np.asarray(pool, dtype=np.int64)
    n_validation = int(round(fraction * len(pool)))
    chosen = rng.permutation(len(pool))[:n_validation]
    split[pool] = TRAIN
    split[pool[chosen]] = VALIDATION
    has_train = np.zeros(subject.max() + 1 if len(subject) else 0, dtype=bool)
    has_train[subject[split == TRAIN]] = True
    for row in pool:  # pool order: the first row of a subject without train goes back to train
        if not has_train[subject[row]]:
            split[row] = TRAIN
            has_train[subject[row]] = True
    return split


def withhold_late_split(
    subject: np.ndarray,
    time: np.ndarray,
    cut: float,
    test_fraction: float,
    rng: np.random.Generator,
    validation_fraction: float = 0.2,
) -> np.ndarray:
    """Split codes [N] for the "withhold the late time points" design (paper E.1).

    ``subject`` are integer subject codes [N], ``time`` the time (or visit number) of each row [N].
    Test subjects are drawn among subjects with rows on both sides of ``cut``; their rows with
    ``time < cut`` go to train and the others to test. Every other row goes to train or validation
    at random (``validation_fraction`` to validation).
    """
    subject, time = np.asarray(subject), np.asarray(time, dtype=np.float64)
    subjects = np.unique(subject)
    early = np.isin(subjects, subject[time < cut])
    late = np.isin(subjects, subject[time >= cut])
    eligible = subjects[early & late]
    test_subjects = rng.choice(eligible, size=n_test_subjects(len(eligible), test_fraction), replace=False)
    is_test_subject = np.isin(subject, test_subjects)  # [N]
    split = np.full(len(subject), TRAIN, dtype=np.uint8)
    split[is_test_subject & (time >= cut)] = TEST
    pool = np.flatnonzero(~is_test_subject)
    return train_validation_split(split, pool, subject, validation_fraction, rng)


def cyclic_window_split(
    subject: np.ndarray,
    step: np.ndarray,
    n_steps: int,
    window: int,
    test_fraction: float,
    rng: np.random.Generator,
    validation_fraction: float = 0.2,
) -> np.ndarray:
    """Split codes [N] for Rotating MNIST (paper F.1).

    ``step`` is the index 0..n_steps-1 of each row's time point (angle). For a random
    ``test_fraction`` of subjects, a random run of ``window`` consecutive steps (cyclic, wrapping
    from the last step to the first) goes to test; every other row goes to train or validation.
    """
    if window >= n_steps:
        raise ValueError(f"test window ({window}) must be shorter than the series ({n_steps})")
    subject, step = np.asarray(subject), np.asarray(step)
    subjects = np.unique(subject)
    test_subjects = rng.choice(subjects, size=n_test_subjects(len(subjects), test_fraction), replace=False)
    split = np.full(len(subject), TRAIN, dtype=np.uint8)
    for s in np.sort(test_subjects):
        start = rng.integers(n_steps)
        steps = (start + np.arange(window)) % n_steps
        split[(subject == s) & np.isin(step, steps)] = TEST
    pool = np.flatnonzero(split != TEST)
    return train_validation_split(split, pool, subject, validation_fraction, rng)
