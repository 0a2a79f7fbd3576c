"""Metrics (SPEC 6): MSE, MCC, log-mean-exp, mean ± std over seeds, bold entries."""

import itertools
import math

import numpy as np
import pytest
import torch

from lmmvae.answers.metrics import abs_correlation, bold_best, log_mean_exp, mcc, mean_std, mse


def test_mse_hand_computed_with_mask():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    y_hat = np.array([[0.0, 0.0], [5.0, np.nan]])  # NaN where not scored
    mask = np.array([[1, 1], [1, 0]])
    # scored errors: (1-0)^2 = 1, (2-0)^2 = 4, (3-5)^2 = 4 -> mean 3
    assert mse(y, y_hat, mask) == pytest.approx(3.0)
    assert mse(torch.tensor(y), torch.tensor(y_hat), torch.tensor(mask)) == pytest.approx(3.0)


def test_mse_rejects_empty_mask_and_shape_mismatch():
    with pytest.raises(ValueError, match="no entries"):
        mse(np.ones((2, 2)), np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shapes differ"):
        mse(np.ones((2, 2)), np.ones((2, 3)), np.ones((2, 2)))


def test_mcc_is_one_for_permuted_rescaled_sign_flipped_copy():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(200, 4))
    v = u[:, [2, 0, 3, 1]] * np.array([3.0, -0.5, 10.0, -2.0]) + np.array([1.0, 2.0, -3.0, 0.0])
    assert mcc(u, v) == pytest.approx(1.0)
    assert mcc(torch.tensor(u), torch.tensor(v)) == pytest.approx(1.0)


def test_mcc_hand_computed_2x2():
    # N = 4. Centred columns and their squared norms:
    #   u1 = [1,2,3,4] -> [-1.5,-.5,.5,1.5] (5);  u2 = [1,0,0,1] -> [.5,-.5,-.5,.5] (1)
    #   v1 = [1,2,4,3] -> [-1.5,-.5,1.5,.5] (5);  v2 = [1,1,0,0] -> [.5,.5,-.5,-.5] (1)
    # |corr|: (u1,v1) = 4/5 = 0.8, (u1,v2) = 2/sqrt5, (u2,v1) = 1/sqrt5, (u2,v2) = 0.
    # Matching u1-v1, u2-v2 sums to 0.8; u1-v2, u2-v1 to 3/sqrt5 = 1.342 -> the best.
    # MCC = 3 / (2 sqrt5) = 0.6708 (the unmatched diagonal mean would be 0.4).
    u = np.array([[1, 1], [2, 0], [3, 0], [4, 1]], dtype=float)
    v = np.array([[1, 1], [2, 1], [4, 0], [3, 0]], dtype=float)
    expected_corr = np.array([[0.8, 2 / math.sqrt(5)], [1 / math.sqrt(5), 0.0]])
    np.testing.assert_allclose(abs_correlation(u, v), expected_corr, atol=1e-12)
    assert mcc(u, v) == pytest.approx(3 / (2 * math.sqrt(5)))


def test_mcc_matches_brute_force_best_permutation():
    """Hungarian matching = the best of all L! one-to-one matchings (greedy would not always be)."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        u = rng.normal(size=(12, 4))
        v = u @ rng.normal(size=(4, 4)) + 0.5 * rng.normal(size=(12, 4))  # mixed, noisy
        corr = abs_correlation(u, v)
        best = max(np.mean([corr[i, p[i]] for i in range(4)]) for p in itertools.permutations(range(4)))
        assert mcc(u, v) == pytest.approx(best)


def test_mcc_independent_noise_is_small():
    rng = np.random.default_rng(2)
    value = mcc(rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3)))
    assert 0.0 < value < 0.1  # |r| of independent columns is about sqrt(2 / (pi N)) = 0.018


def test_mcc_different_widths_and_constant_columns():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(100, 3))
    assert mcc(u, -2 * u[:, [2, 0]]) == pytest.approx(1.0)  # L1=3, L2=2: match 2 columns
    assert mcc(u[:, [1]], u) == pytest.approx(1.0)
    v = np.column_stack([u[:, 0], np.full(100, 0.1)])  # second column constant -> correlation 0
    corr = abs_correlation(u[:, :2], v)
    assert np.all(np.isfinite(corr)) and np.all(corr[:, 1] == 0)
    assert mcc(u[:, :2], v) == pytest.approx(0.5)  # (1 + 0) / 2


def test_mcc_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="same N"):
        mcc(np.ones((3, 2)), np.ones((4, 2)))


def test_log_mean_exp_is_exact_and_stable():
    x = torch.log(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))  # [2, 2]
    torch.testing.assert_close(log_mean_exp(x, dim=1), torch.log(torch.tensor([2.0, 2.0])))
    big = torch.tensor([[1000.0, 1000.0], [-1000.0, -1000.0 + math.log(3.0)]])
    torch.testing.assert_close(
        log_mean_exp(big, dim=-1), torch.tensor([1000.0, -1000.0 + math.log(2.0)]), rtol=0, atol=1e-4
    )
    assert log_mean_exp(torch.zeros(3, 5, 2), dim=1, keepdim=True).shape == (3, 1, 2)


def test_mean_std_uses_ddof_one_and_zero_for_one_seed():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std(np.array([5.0])) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_bold_best_within_one_std_of_best():
    means, stds = [1.0, 1.2, 1.5], [0.3, 0.1, 0.1]
    assert bold_best(means, stds) == [True, True, False]  # best 1.0 +- 0.3
    assert bold_best(means, stds, lower_is_better=False) == [False, False, True]  # best 1.5 +- 0.1
    assert bold_best([0.5, 0.5, 0.7], [0.0, 0.0, 0.0]) == [True, True, False]  # ties
    assert bold_best([np.nan, 2.0, 2.05], [0.0, 0.1, 0.0]) == [False, True, True]
