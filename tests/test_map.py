"""The map benchmark (benchmarks/map.py): its data, its per-cell scoring and its resume, at toy size.

What could silently be wrong: the truth row (the noise floor, computed here by hand from the data),
the ratio (per seed, oLMM-VAE's test MSE over MixedLM's), the choice of latent_dim (on validation
rows, never test), the decoders (a linear decoder of rank r gives noise-free data of rank r) and the
effective rank the real sets are placed by."""

import csv

import numpy as np
import pytest

from benchmarks import map as bmap
from benchmarks.map_real import effective_rank


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_linear_decoder_gives_rank_r_data_and_the_stated_noise(rank):
    data = bmap.simulate_map(12, rank, "linear", noise=0.3, seed=1)
    clean = data.y_full - data.y_full.mean(0)  # [N, D]
    singular = np.linalg.svd(clean, compute_uv=False)
    assert singular[rank - 1] > 1e-2 * singular[0] and (singular[rank:] < 1e-5 * singular[0]).all()  # float32 data
    assert np.var(data.y - data.y_full) == pytest.approx(0.3**2, rel=0.1)
    test = data.split == 2
    assert test.sum() == (bmap.SUBJECTS // 2) * bmap.FUTURE  # last 3 visits of every other subject


def test_tanh_decoder_is_not_linear_in_z():
    data = bmap.simulate_map(8, 2, "tanh32", noise=0.0, seed=0)
    z = np.column_stack([np.ones(data.n_obs), data.latent_truth])  # [N, 3]
    beta, *_ = np.linalg.lstsq(z, data.y_full, rcond=None)
    residual = data.y_full - z @ beta
    assert residual.var() > 0.05 * data.y_full.var()  # a linear fit in z leaves a clear share


def test_effective_rank_recovers_the_linear_rank_and_counts_independent_features():
    for rank in (1, 2):
        assert effective_rank(bmap.simulate_map(20, rank, "linear", noise=0.05, seed=0)) == rank
    independent = bmap.simulate_map(6, 6, "linear", noise=0.05, seed=0)
    independent.y_full = None
    rng = np.random.default_rng(0)  # every feature its own subject effect: no sharing
    subject = independent.covariates["id"].values
    independent.y = rng.normal(size=(60, 6))[subject] + 0.05 * rng.normal(size=independent.y.shape)
    assert effective_rank(independent) >= 5


def test_quick_run_scores_truth_ratio_and_validation_choice_and_resumes(tmp_path, monkeypatch):
    bmap.main(["--quick", "--out", str(tmp_path)])
    with open(tmp_path / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(bmap.QUICK_CELLS)
    for row in rows:
        data = bmap.simulate_map(int(row["D"]), int(row["r"]), row["decoder"], float(row["noise"]),
                                 int(row["seed"]), n_subjects=20)
        test = data.split == 2
        floor = np.mean((data.y[test] - data.y_full[test]) ** 2)  # the noise floor, by hand
        assert float(row["truth_mse"]) == pytest.approx(floor, rel=1e-9)
        assert float(row["ratio"]) == pytest.approx(float(row["olmm_mse"]) / float(row["mixedlm_mse"]))
        val = {int(k): float(v) for k, v in (p.split(":") for p in row["val_mse_by_latent"].split())}
        assert sorted(val) == bmap.latent_choices(int(row["r"]))
        assert int(float(row["latent_dim"])) == min(val, key=val.get)  # chosen on validation rows
        assert float(row["mixedlm_mse"]) > floor * 0.5
    assert "| ratio oLMM-VAE / MixedLM |" in (tmp_path / "table.md").read_text()

    def refit(*args, **kwargs):
        raise AssertionError("a cached cell was fitted again")

    monkeypatch.setattr(bmap, "run_cell", refit)
    bmap.main(["--quick", "--out", str(tmp_path)])  # every cell cached: nothing refitted


def test_slices_share_their_common_cell_once():
    cells = bmap.cells(["A", "B"])
    keys = [(c["D"], c["r"], c["decoder"], c["noise"]) for c in cells]
    assert len(keys) == len(set(keys))
    assert all(c["r"] <= c["D"] for c in cells)
    assert len(cells) == 7 + 9  # A: D in (1, 5, 20, 100) x r in (1, 5) capped at D; B: 3 x 3
    assert keys.count((20, 2, "tanh32", 0.2)) == 1  # slice B's cell, also drawn as slice A's r = 2 row
