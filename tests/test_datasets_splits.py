"""The shared split logic (docs/data_format.md; paper E.1, F.1)."""

import numpy as np

from lmmvae.data.sets.splits import TEST, TRAIN, VALIDATION, cyclic_window_split, withhold_late_split


def assert_test_never_precedes_train(subject, time, split):
    for s in np.unique(subject[split == TEST]):
        rows = subject == s
        assert time[rows & (split == TEST)].min() > time[rows & (split != TEST)].max()


def test_withhold_late_split():
    rng = np.random.default_rng(0)
    # 50 subjects with irregular times 0..30; some subjects only before the cut
    subject = np.repeat(np.arange(50), 12)
    time = np.concatenate([np.sort(rng.choice(31 if s % 5 else 8, 12, replace=s % 5 == 0)) for s in range(50)]).astype(float)
    split = withhold_late_split(subject, time, cut=10, test_fraction=0.2, rng=np.random.default_rng(1))
    test_subjects = np.unique(subject[split == TEST])
    assert len(test_subjects) == 8  # round(0.2 * 40 eligible subjects)
    assert not np.isin(test_subjects, np.arange(0, 50, 5)).any()  # those never reach the cut
    for s in test_subjects:
        rows = subject == s
        np.testing.assert_array_equal(split[rows] == TEST, time[rows] >= 10)  # late -> test, early -> train
        assert (split[rows & (time < 10)] == TRAIN).all()
    assert_test_never_precedes_train(subject, time, split)
    pool = ~np.isin(subject, test_subjects)
    assert abs((split[pool] == VALIDATION).mean() - 0.2) < 0.01
    assert set(subject[split != TRAIN]) <= set(subject[split == TRAIN])


def test_every_subject_keeps_a_training_observation():
    subject = np.repeat(np.arange(200), 2)  # with 2 rows and 60 % validation, many draws leave none
    split = withhold_late_split(subject, np.tile([0.0, 1.0], 200), cut=1, test_fraction=0.0,
                                rng=np.random.default_rng(0), validation_fraction=0.6)
    assert set(subject) == set(subject[split == TRAIN])
    assert (split == VALIDATION).sum() > 100


def test_cyclic_window_split_holds_out_consecutive_angles_with_wraparound():
    n_subjects, n_steps = 60, 16
    subject = np.repeat(np.arange(n_subjects), n_steps)
    step = np.tile(np.arange(n_steps), n_subjects)
    split = cyclic_window_split(subject, step, n_steps, window=4, test_fraction=0.1, rng=np.random.default_rng(5))
    test_subjects = np.unique(subject[split == TEST])
    assert len(test_subjects) == 6
    for s in test_subjects:
        held = np.sort(step[(subject == s) & (split == TEST)])
        assert len(held) == 4
        start = next(h for h in held if (h - 1) % n_steps not in held)  # the run's first step
        np.testing.assert_array_equal(np.sort((start + np.arange(4)) % n_steps), held)
    assert set(subject[split != TRAIN]) <= set(subject[split == TRAIN])
    # all non-test rows (test subjects' other angles included) go to train/validation ~80:20
    assert abs((split[split != TEST] == VALIDATION).mean() - 0.2) < 0.01
    # wrap-around runs exist for some seed: check over several draws
    wraps = sum(
        (lambda sp: any(np.ptp(step[(subject == s) & (sp == TEST)]) > 3 for s in np.unique(subject[sp == TEST])))(
            cyclic_window_split(subject, step, n_steps, 4, 0.1, np.random.default_rng(seed))
        ) for seed in range(10)
    )
    assert wraps > 0
