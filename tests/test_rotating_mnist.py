"""Rotating MNIST (docs/data_format.md; paper F): angles, images, and the split."""

import numpy as np
import pytest

from lmmvae.data.sets import rotating_mnist
from lmmvae.data.sets.splits import TEST, TRAIN


@pytest.fixture(scope="module")
def data():
    return rotating_mnist(n_instances=30, n_angles=16, seed=2)


def test_angles_and_latent_truth(data):
    assert data.y.shape == (480, 784) and data.image_shape == (28, 28)
    angle = data.covariates["angle"].values
    assert data.covariates["angle"].kind == "continuous"
    np.testing.assert_allclose(np.unique(angle), 2 * np.pi * np.arange(16) / 16)
    np.testing.assert_allclose(data.latent_truth, np.stack([np.cos(angle), np.sin(angle)], 1), atol=1e-6)
    assert (data.mask == 1).all() and data.y_full is None
    assert 0.0 <= data.y.min() and data.y.max() <= 1.0


def test_images_rotate_by_their_angle(data):
    """A quarter turn (step 4 of 16) is exactly np.rot90 of the unrotated digit (step 0)."""
    subject, angle = data.covariates["id"].values, data.covariates["angle"].values
    for s in range(3):
        start = data.y[(subject == s) & (angle == 0)].reshape(28, 28)
        for turns in (1, 2, 3):
            rotated = data.y[(subject == s) & np.isclose(angle, turns * np.pi / 2)].reshape(28, 28)
            np.testing.assert_allclose(rotated, np.rot90(start, turns), atol=1e-5)


def test_split_windows_and_every_held_out_subject_in_train(data):
    subject, split = data.covariates["id"].values, data.split
    step = np.rint(data.covariates["angle"].values / (2 * np.pi / 16)).astype(int)
    test_subjects = np.unique(subject[split == TEST])
    assert len(test_subjects) == 3  # 10 % of 30
    for s in test_subjects:
        held = set(step[(subject == s) & (split == TEST)])
        assert any(held == {(k + j) % 16 for j in range(4)} for k in range(16)), held
    for s in np.unique(subject[split != TRAIN]):
        assert ((subject == s) & (split == TRAIN)).any(), f"subject {s} has no training image"
    assert 0.15 < (split[split != TEST] == 1).mean() < 0.25
