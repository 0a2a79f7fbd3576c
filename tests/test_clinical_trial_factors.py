"""The synthetic trial's shared-factor setting (docs/data_format.md, "Synthetic clinical trial"):
with ``factors=K`` the tests' between-subject covariance has rank K, without it does not; the
independent setting is unchanged; bad options fail in one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmvae.data.sets.clinical_trial_synthetic import LABS, VITALS, clinical_trial_synthetic, loadings
from lmmvae.errors import ConfigError

from datahash import tree_hash

TESTS = {**LABS, **VITALS}


def baseline_residuals(raw) -> np.ndarray:
    """[S, 20] across subjects, each test's baseline value (mean of the screening and
    day-1 visits, on the generator's z scale), after regressing out age and sex. At baseline the time
    effects (random slope, drug) vanish, so what is left is the random intercept plus visit noise."""
    findings = pd.concat([pd.read_csv(raw / "lb.csv").rename(columns=lambda c: c.replace("LB", "")),
                          pd.read_csv(raw / "vs.csv").rename(columns=lambda c: c.replace("VS", ""))])
    findings = findings[findings["VISIT"].isin(["SCREENING", "DAY 1"])]
    spec = findings["TESTCD"].map(TESTS)
    centre, scale, log = (spec.str[i] for i in (2, 3, 4))
    value = findings["STRESN"].astype(float)
    findings["z"] = np.where(log.astype(bool), (np.log(value) - np.log(centre.astype(float))), value - centre) / scale
    wide = findings.pivot_table(index="USUBJID", columns="TESTCD", values="z", aggfunc="mean").dropna()
    dm = pd.read_csv(raw / "dm.csv").set_index("USUBJID").loc[wide.index]
    x = np.column_stack([np.ones(len(dm)), dm["AGE"], dm["SEX"] == "F"]).astype(float)  # [S, 3]
    y = wide.to_numpy()  # [S, 20]
    return y - x @ np.linalg.lstsq(x, y, rcond=None)[0]


def eigen_share(corr: np.ndarray) -> np.ndarray:
    """Cumulative share of the trace carried by the largest eigenvalues, largest first [20]."""
    eigenvalues = np.sort(np.linalg.eigvalsh(corr))[::-1]
    return np.cumsum(eigenvalues) / eigenvalues.sum()


@pytest.mark.parametrize("factors", [2, 3])
def test_shared_factors_make_the_between_subject_covariance_rank_k(tmp_path, factors):
    """Expected share of the top K eigenvalues: intercept variance 0.36 against visit noise
    0.35^2 / 2 = 0.06 averaged over two visits, i.e. ~0.85 (plus rounding), and nothing left for the
    (K+1)-th factor; independent effects spread the trace evenly: ~K/20 plus sampling noise."""
    clinical_trial_synthetic(tmp_path / "shared", n_subjects=300, seed=1, factors=factors)
    clinical_trial_synthetic(tmp_path / "indep", n_subjects=300, seed=1)
    shared = eigen_share(np.corrcoef(baseline_residuals(tmp_path / "shared"), rowvar=False))
    indep = eigen_share(np.corrcoef(baseline_residuals(tmp_path / "indep"), rowvar=False))
    assert shared[factors - 1] > 0.75, shared[:5]
    kth, next_one = shared[factors - 1] - shared[factors - 2], shared[factors] - shared[factors - 1]
    assert next_one < 0.05 and kth > 5 * next_one, shared[:5]  # K signal directions, then noise only
    assert indep[factors - 1] < 0.3, indep[:5]


def test_loadings_are_unit_norm_rank_k_and_keep_the_per_test_variances():
    """Unit rows: each test's random intercept keeps sd 0.6 (slope 0.8) as with independent effects."""
    for k in (1, 2, 3):
        w = np.stack(list(loadings(k).values()))  # [20, K]
        assert w.shape == (20, k)
        np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0)
        assert np.linalg.matrix_rank(w) == k
    w = loadings(2)
    assert w["ALT"] @ w["AST"] == pytest.approx(1.0) and w["ALT"] @ w["ALB"] == pytest.approx(-1.0)
    assert w["ALT"] @ w["HGB"] == pytest.approx(2 * 0.3 / 1.09)  # (1, .3).(.3, 1) / |(1, .3)|^2


def test_independent_setting_is_the_default_and_deterministic(tmp_path):
    clinical_trial_synthetic(tmp_path / "a", n_subjects=30, seed=4)
    clinical_trial_synthetic(tmp_path / "b", n_subjects=30, seed=4, factors=0, nonlinearity=0.0)
    clinical_trial_synthetic(tmp_path / "c", n_subjects=30, seed=4, factors=2)
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b") != tree_hash(tmp_path / "c")
    # the factor setting changes the labs, not who is in the trial
    assert (tmp_path / "a" / "dm.csv").read_bytes() == (tmp_path / "c" / "dm.csv").read_bytes()


def test_nonlinearity_saturates_the_random_part(tmp_path):
    """With nonlinearity 1 each test's baseline random part is tanh(u), u ~ N(0, 0.6^2): the total
    baseline residual variance falls from 0.36 + noise to Var(tanh u) + noise per test (noise: two
    visits' 0.35^2 / 2), a ratio computed here by quadrature, not read off the generator."""
    clinical_trial_synthetic(tmp_path / "lin", n_subjects=300, seed=3, factors=2)
    clinical_trial_synthetic(tmp_path / "sat", n_subjects=300, seed=3, factors=2, nonlinearity=1.0)
    total = {name: baseline_residuals(tmp_path / name).var(axis=0).sum() for name in ("lin", "sat")}
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    var_tanh = (weights * np.tanh(0.6 * nodes) ** 2).sum() / weights.sum()  # E tanh(u)^2, mean 0
    noise = 0.35**2 / 2
    expected = (var_tanh + noise) / (0.36 + noise)  # ~0.78
    assert total["sat"] / total["lin"] == pytest.approx(expected, abs=0.06), (total, expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(factors=4), "--factors must be at most 3"),
    (dict(factors=-1), "--factors must be an integer >= 0"),
    (dict(factors=2, nonlinearity=1.5), "--nonlinearity must be in [0, 1]"),
])
def test_bad_factor_options_fail_in_one_line(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        clinical_trial_synthetic(tmp_path, n_subjects=5, **kwargs)


def test_cli_passes_the_factor_options(tmp_path):
    from lmmvae.cli import main

    argv = ["data", "clinical-trial-synthetic", "--instances", "12", "--seed", "2", "--quiet"]
    assert main([*argv, "--factors", "2", "--nonlinearity", "0.5", "--out-dir", str(tmp_path / "cli")]) == 0
    clinical_trial_synthetic(tmp_path / "py", n_subjects=12, seed=2, factors=2, nonlinearity=0.5)
    assert tree_hash(tmp_path / "cli") == tree_hash(tmp_path / "py")
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error: 0 to 3
        main([*argv, "--factors", "4", "--out-dir", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and not (tmp_path / "bad").exists()
