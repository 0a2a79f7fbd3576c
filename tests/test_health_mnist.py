"""Health MNIST (docs/data_format.md; paper E): the rotation schedule, the shift, missingness, split, determinism."""


import numpy as np
import pytest

from lmmvae.data.sets import health_mnist
from lmmvae.data.sets.splits import TEST, TRAIN
from datahash import data_hash


@pytest.fixture(scope="module")
def data():
    return health_mnist(n_instances=40, n_timepoints=20, seed=11)


def test_shapes_and_covariates(data):
    assert data.y.shape == (800, 36 * 36) and data.image_shape == (36, 36)
    kinds = {name: cov.kind for name, cov in data.covariates.items()}
    assert kinds == {"age": "time", "id": "id", "sex": "binary", "diseasePresence": "binary",
                     "diseaseAge": "continuous", "location": "binary"}
    age, diseased = data.covariates["age"].values, data.covariates["diseasePresence"].values
    np.testing.assert_array_equal(data.covariates["diseaseAge"].values, np.where(diseased == 1, age - 9, 0))
    np.testing.assert_array_equal(data.latent_truth[:, [0, 2, 3]],
                                  np.stack([age, data.covariates["sex"].values, diseased], 1))
    assert data.covariates["sex"].values.sum() == 400  # 20 '6' instances x 20 time points
    assert 0.0 <= data.y_full.min() and data.y_full.max() <= 1.0


def test_diseased_rotation_follows_the_sigmoid_and_healthy_stays_near_5_degrees(data):
    angle = data.latent_truth[:, 1]  # degrees
    age = data.covariates["age"].values
    diseased = data.covariates["diseasePresence"].values == 1
    assert 0 < diseased.mean() < 1
    residual = angle[diseased] - 45.0 / (1.0 + np.exp(-(age[diseased] - 9)))
    assert abs(residual.mean()) < 0.4 and 1.6 < residual.std() < 2.4  # only the N(0, 2 deg) jitter left
    # the schedule itself: early ages near 0, late ages near 45 degrees
    assert abs(angle[diseased & (age <= 3)].mean()) < 1.0
    assert abs(angle[diseased & (age >= 16)].mean() - 45.0) < 1.0
    healthy = angle[~diseased]
    assert abs(healthy.mean() - 5.0) < 0.4 and 1.6 < healthy.std() < 2.4


def test_images_shift_a_tenth_of_a_pixel_per_age_down_and_right(data):
    pixels = data.y_full.reshape(-1, 36, 36)
    grid = np.arange(36)
    mass = pixels.sum(axis=(1, 2))
    row = (pixels.sum(axis=2) * grid).sum(axis=1) / mass
    col = (pixels.sum(axis=1) * grid).sum(axis=1) / mass
    age = data.covariates["age"].values
    healthy = data.covariates["diseasePresence"].values == 0  # small rotations: the centre stays put
    for centre in (row, col):
        slope = np.polyfit(age[healthy], centre[healthy], 1)[0]
        assert abs(slope - 0.1) < 0.02, slope


def test_missing_rate_and_masked_values(data):
    assert abs((1 - data.mask.mean()) - 0.25) < 0.005
    assert (data.y[data.mask == 0] == 0).all()
    np.testing.assert_array_equal(data.y[data.mask == 1], data.y_full[data.mask == 1])


def test_split_test_subjects_keep_first_five_time_points_in_train(data):
    subject, age, split = data.covariates["id"].values, data.covariates["age"].values, data.split
    test_subjects = np.unique(subject[split == TEST])
    assert len(test_subjects) == 8  # 20 % of 40
    for s in test_subjects:
        rows = subject == s
        assert (split[rows & (age < 5)] == TRAIN).all() and (split[rows & (age >= 5)] == TEST).all()
    for s in np.unique(subject):  # no test observation of a subject precedes its training ones
        rows = subject == s
        if (split[rows] == TEST).any():
            assert age[rows & (split == TEST)].min() > age[rows & (split == TRAIN)].max()
    other = ~np.isin(subject, test_subjects)
    assert 0.15 < (split[other] == 1).mean() < 0.25


def test_same_seed_same_arrays_other_seed_other_arrays():
    first = health_mnist(n_instances=6, n_timepoints=8, seed=4)
    again = health_mnist(n_instances=6, n_timepoints=8, seed=4)
    other = health_mnist(n_instances=6, n_timepoints=8, seed=5)
    assert data_hash(first) == data_hash(again)
    assert data_hash(first) != data_hash(other)
    assert first.attrs["args"]["instances"] == 6 and first.attrs["seed"] == 4
