"""The design (SPEC 1) and its GP connection (SPEC 5): columns checked against hand-computed values,
kernel approximations against the exact kernels, sparse random effects against the dense x_i."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch

from lmmvae.data.batch import DesignBatch
from lmmvae.model.design import (
    Design,
    FittedDesign,
    RandomTerm,
    Term,
    fourier_column_weights,
    kernel,
    spectral_weights,
    weighted_fourier_features,
)
from lmmvae.data.h5 import Covariate
from lmmvae.errors import DesignError


def health_covariates(n_subjects=6, n_times=4, seed=0):
    """Health-MNIST-like covariates: subjects x time points."""
    rng = np.random.default_rng(seed)
    n = n_subjects * n_times
    subject = np.repeat(np.arange(n_subjects), n_times)
    return {
        "age": Covariate(np.tile(np.arange(n_times), n_subjects), "time"),
        "sex": Covariate(subject % 2, "binary"),
        "diseasePresence": Covariate((subject // 2) % 2, "binary"),
        "diseaseAge": Covariate(rng.normal(size=n), "continuous"),
        "location": Covariate(rng.integers(0, 3, size=n), "categorical", levels=["north", "south", "west"]),
        "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)]),
    }


def kernel_error(features, x, k_exact):
    """Mean absolute error of features(x) features(x)ᵀ against the exact kernel matrix."""
    phi = features(x)  # [N, F]
    return float(np.abs(phi @ phi.T - k_exact).mean())


# -- SPEC 5: Fourier features approach their kernels --------------------------------------------


def test_rff_design_columns_approach_rbf_kernel_as_m_grows():
    x = np.linspace(-3, 3, 25)
    ell = 1.3
    k_exact = kernel("rbf", x[:, None] - x[None, :], lengthscale=ell)
    assert k_exact[0, 1] == pytest.approx(np.exp(-(x[1] - x[0]) ** 2 / (2 * ell**2)))
    train = {"t": Covariate(x, "continuous")}

    def error(m):
        errs = []
        for seed in range(5):
            fitted = Design(f"~ 0 + rff(t, {m}, lengthscale={ell}, seed={seed})").fit(train)
            errs.append(kernel_error(lambda v: fitted.transform({"t": v}).shared.astype(np.float64), x, k_exact))
        return np.mean(errs)

    # the columns themselves: omega ~ N(0, l^-2) from default_rng(seed), cos/sin interleaved, / sqrt(M)
    fitted = Design(f"~ 0 + rff(t, 4, lengthscale={ell}, seed=7)").fit(train)
    omega = np.random.default_rng(7).normal(0.0, 1 / ell, size=4)
    expected = np.stack([f(w * x) for w in omega for f in (np.cos, np.sin)], axis=1) / 2.0
    np.testing.assert_allclose(fitted.transform({"t": x}).shared, expected, atol=1e-6)

    err_10, err_1000 = error(10), error(1000)
    assert err_1000 < 0.04
    assert err_10 > 3 * err_1000  # Monte Carlo error ~ 1/sqrt(M)


def test_regular_fourier_features_approach_periodic_kernel():
    period, ell = 2 * np.pi, 0.7
    x = np.linspace(0, 3 * period, 40)  # wider than one period: the approximation is periodic too
    k_exact = kernel("periodic", x[:, None] - x[None, :], lengthscale=ell, period=period)
    assert k_exact[0, -1] == pytest.approx(np.exp(-2 * np.sin(np.pi * (x[-1] - x[0]) / period) ** 2 / ell**2))
    errs = {K: kernel_error(lambda v: weighted_fourier_features(v, spectral_weights("periodic", K, period, ell),
                                                                 period), x, k_exact) for K in (1, 3, 10)}
    assert errs[1] > errs[3] > errs[10]
    assert errs[10] < 1e-6
    assert errs[1] > 1e-2


def test_regular_fourier_features_approach_rbf_kernel():
    ell, period = 1.0, 20.0  # the period is many lengthscales wider than the data range
    x = np.linspace(0, 5, 30)
    k_exact = kernel("rbf", x[:, None] - x[None, :], lengthscale=ell, variance=2.0)
    errs = {K: kernel_error(lambda v: weighted_fourier_features(v, spectral_weights("rbf", K, period, ell, 2.0),
                                                                 period), x, k_exact) for K in (2, 8, 30)}
    assert errs[2] > errs[8] > errs[30]
    assert errs[30] < 1e-8
    assert errs[2] > 1e-2


def test_design_fourier_columns_with_spectral_weights_give_the_kernel():
    """The unweighted design columns of fourier(v, K, period=T), with prior variances w_k (SPEC 5)."""
    period, ell, K = 2 * np.pi, 0.8, 12
    v = np.linspace(0, 2 * np.pi, 17)
    fitted = Design(f"~ fourier(angle, {K}, period=2*pi)").fit({"angle": Covariate(v, "continuous")})
    x = fitted.transform({"angle": v}).shared.astype(np.float64)  # [N, 1 + 2K]
    w = spectral_weights("periodic", K, period, ell)
    variances = np.concatenate([[w[0]], fourier_column_weights(w)])  # intercept, then cos1, sin1, ...
    k_design = (x * variances) @ x.T
    k_exact = kernel("periodic", v[:, None] - v[None, :], lengthscale=ell, period=period)
    np.testing.assert_allclose(k_design, k_exact, atol=1e-5)


def test_fourier_columns_are_on_the_raw_covariate():
    v = np.array([0.0, 90.0, 45.0, 1000.0])  # mean 283.75: standardising would change every column
    fitted = Design("~ 0 + fourier(deg, 2, period=360)").fit({"deg": Covariate(v, "continuous")})
    assert fitted.shared_columns == ["fourier(deg, 2, period=360)[cos1]", "fourier(deg, 2, period=360)[sin1]",
                                     "fourier(deg, 2, period=360)[cos2]", "fourier(deg, 2, period=360)[sin2]"]
    x = fitted.transform({"deg": v}).shared
    expected = np.stack([np.cos(2 * np.pi * v / 360), np.sin(2 * np.pi * v / 360),
                         np.cos(4 * np.pi * v / 360), np.sin(4 * np.pi * v / 360)], axis=1)
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert x[1, 0] == pytest.approx(0.0, abs=1e-6) and x[1, 1] == pytest.approx(1.0)


# -- SPEC 1: columns ------------------------------------------------------------------------------


def test_standardisation_uses_train_statistics():
    train = {"age": Covariate([0.0, 1.0, 2.0, 3.0, 4.0], "time"), "dose": Covariate([5.0, 5.0, 5.0], "continuous")}
    fitted = Design("~ age + poly(age, 3)").fit({"age": train["age"]})
    x = fitted.transform({"age": np.array([10.0, 2.0])}).shared
    z = (np.array([10.0, 2.0]) - 2.0) / np.sqrt(2.0)  # train mean 2, population std sqrt(2)
    np.testing.assert_allclose(x[:, 1], z, rtol=1e-6)
    np.testing.assert_allclose(x[:, 2:], np.stack([z, z**2, z**3], axis=1), rtol=1e-6)
    # a Covariate whose numbers are stored as levels (e.g. read as categorical) gives its values, not codes
    as_levels = fitted.transform({"age": Covariate([1, 0], "categorical", levels=[2.0, 10.0])}).shared
    np.testing.assert_allclose(as_levels, x, rtol=1e-6)
    assert fitted.shared_columns == ["(Intercept)", "age", "poly(age, 3)[1]", "poly(age, 3)[2]", "poly(age, 3)[3]"]
    # a constant covariate: std 0 is replaced by 1, no division by zero
    const = Design("~ 0 + dose").fit({"dose": train["dose"]})
    np.testing.assert_allclose(const.transform({"dose": [7.0]}).shared, [[2.0]])


def test_binary_is_not_standardised_and_interactions_are_products():
    cov = health_covariates()
    fitted = Design("~ age + sex + sex:age + diseasePresence:diseaseAge + location + (1 | id)").fit(cov)
    assert fitted.shared_columns == ["(Intercept)", "age", "sex", "sex:age", "diseasePresence:diseaseAge",
                                     "location[south]", "location[west]"]
    x = fitted.transform(cov).shared
    age = cov["age"].values
    z_age = (age - age.mean()) / age.std()
    dz = (cov["diseaseAge"].values - cov["diseaseAge"].values.mean()) / cov["diseaseAge"].values.std()
    np.testing.assert_array_equal(x[:, 0], 1.0)
    np.testing.assert_array_equal(x[:, 2], cov["sex"].values)  # 0/1, not standardised
    np.testing.assert_allclose(x[:, 3], cov["sex"].values * z_age, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(x[:, 4], cov["diseasePresence"].values * dz, rtol=1e-6, atol=1e-7)
    loc = cov["location"].values
    np.testing.assert_array_equal(x[:, 5:], np.stack([loc == 1, loc == 2], axis=1))  # reference 'north' dropped


def test_categorical_coding_follows_the_intercept_and_marginality():
    cov = health_covariates()
    loc = cov["location"].values
    full = Design("~ 0 + location").fit(cov)  # no intercept: every level
    assert full.shared_columns == ["location[north]", "location[south]", "location[west]"]
    np.testing.assert_array_equal(full.transform(cov).shared, np.eye(3)[loc])
    # C(loc):age without an age main effect: one slope per level; with it, reference dropped
    z_age = (cov["age"].values - 1.5) / cov["age"].values.std()
    slopes = Design("~ C(location):age").fit(cov)
    assert slopes.shared_columns == ["(Intercept)", "C(location)[north]:age", "C(location)[south]:age",
                                     "C(location)[west]:age"]
    np.testing.assert_allclose(slopes.transform(cov).shared[:, 1:], np.eye(3)[loc] * z_age[:, None], atol=1e-6)
    nested = Design("~ age + C(location):age").fit(cov)
    assert nested.shared_columns == ["(Intercept)", "age", "C(location)[south]:age", "C(location)[west]:age"]


def test_interaction_of_two_blocks_is_the_rowwise_kronecker_product():
    cov = health_covariates()
    fitted = Design("~ 0 + C(location):fourier(age, 1, period=4)").fit(cov)
    x = fitted.transform(cov).shared  # [N, 3 * 2]
    onehot = np.eye(3)[cov["location"].values]
    four = np.stack([np.cos(np.pi * cov["age"].values / 2), np.sin(np.pi * cov["age"].values / 2)], axis=1)
    np.testing.assert_allclose(x, (onehot[:, :, None] * four[:, None, :]).reshape(len(x), 6), atol=1e-6)
    assert fitted.shared_columns[1] == "C(location)[north]:fourier(age, 1, period=4)[sin1]"


def test_star_expands_and_intercept_can_be_removed():
    assert [t.name for t in Design("~ a*b").terms] == ["1", "a", "b", "a:b"]
    assert [t.name for t in Design("~ a + b + b:a + a").terms] == ["1", "a", "b", "b:a"]  # duplicates dropped
    assert not Design("~ 0 + a").intercept and not Design("~ a - 1").intercept and Design("a").intercept
    cov = {"a": Covariate([1.0, 2.0, 3.0], "continuous")}
    assert Design("~ a - 1").fit(cov).shared_columns == ["a"]


def test_intercept_only_no_shared_columns_and_zero_rows_keep_consistent_shapes():
    cov = health_covariates(n_subjects=3, n_times=2)
    only = Design("~ 1").fit(cov)
    np.testing.assert_array_equal(only.transform(cov).shared, np.ones((6, 1)))  # rows from the data given
    none = Design("~ 0 + (0 + age | id)").fit(cov)
    x = none.transform(cov)
    assert none.n_shared == 0 and x.shared.shape == (6, 0) and x.dense().shape == (6, 3)
    fitted = Design("~ C(location):age + (1 + age | id)").fit(cov)
    n_seen = len(np.unique(cov["location"].values))
    assert fitted.n_shared == 1 + n_seen  # no age main effect: one slope per level seen in training
    empty = fitted.transform({k: [] for k in ("location", "age", "id")})
    assert empty.shared.shape == (0, 1 + n_seen) and empty.values[0].shape == (0, 2) and empty.levels[0].shape == (0,)


def test_parsed_terms_expose_factors_bases_and_args():
    design = Design("~ fourier(angle, 3, period=2*pi) + sex:rff(t, 5, lengthscale=pi/2, seed=4) "
                    "+ poly(time, 2) + C(icu) + (1 + time | id)")
    intercept, four, inter, poly, cat, rand = design.terms
    assert intercept.is_intercept
    (f,) = four.factors
    assert (f.covariate, f.basis, f.args) == ("angle", "fourier", {"n_frequencies": 3, "period": 2 * np.pi})
    assert [(g.covariate, g.basis) for g in inter.factors] == [("sex", "linear"), ("t", "rff")]
    assert inter.factors[1].args == {"n_features": 5, "lengthscale": np.pi / 2, "seed": 4}
    assert poly.factors[0].args == {"degree": 2} and cat.factors[0].basis == "categorical"
    assert isinstance(rand, RandomTerm) and rand.group == "id" and rand.name == "(1 + time | id)"
    assert [t.name for t in rand.terms] == ["1", "time"]
    assert design.covariate_names == {"angle", "sex", "t", "time", "icu", "id"}
    # after fitting, a bare categorical name resolves to the categorical basis and kinds are known
    fitted = Design("~ location + age + (1 | id)").fit(health_covariates())
    assert [(f.basis, f.kind) for t in fitted.terms if isinstance(t, Term) for f in t.factors] == [
        ("categorical", "categorical"), ("linear", "time")]


def test_arguments_are_evaluated_safely():
    period = lambda f: Design(f).terms[1].factors[0].args["period"]  # noqa: E731
    assert period("~ fourier(a, 1, period=2*pi)") == pytest.approx(2 * np.pi)
    assert period("~ fourier(a, 1, period=360)") == 360.0
    assert period("~ fourier(a, 1, period=pi/2)") == pytest.approx(np.pi / 2)
    assert period("~ fourier(a, 1, period=(1 + 2) * -(-pi) / 3)") == pytest.approx(np.pi)
    for bad in ("~ fourier(a, 1, period=__import__)", "~ fourier(a, 1, period=2**3)", "~ fourier(a, 1, period=1/0)",
                "~ fourier(a, 1, period=-1)", "~ rff(a, 0, lengthscale=1)", "~ fourier(a, 1, periodd=2)"):
        with pytest.raises(DesignError):
            Design(bad)


# -- SPEC 1: sparse random effects ------------------------------------------------------------------


def test_random_effects_gather_equals_dense_matmul_and_unseen_subject_is_zero():
    cov = health_covariates(n_subjects=5)
    fitted = Design("~ age + (1 + age | id) + (1 | location)").fit(cov)
    (rt, rl) = fitted.random_terms
    assert (rt.name, rt.group, rt.n_levels, rt.columns) == ("(1 + age | id)", "id", 5, ["(Intercept)", "age"])
    assert rt.levels == ["s0", "s1", "s2", "s3", "s4"] and rl.levels == ["north", "south", "west"]
    test = {"age": np.array([0.0, 3.0, 1.0, 2.0]), "id": np.array(["s3", "new", "s0", "s3"]),
            "location": pd.Series(["west", "north", "south", "east"])}
    x = fitted.transform(test)
    np.testing.assert_array_equal(x.levels[0], [3, -1, 0, 3])
    np.testing.assert_array_equal(x.levels[1], [2, 0, 1, -1])
    rng = np.random.default_rng(1)
    n_latent = 3
    tables = [rng.normal(size=(5, 2, n_latent)), rng.normal(size=(3, 1, n_latent))]  # A_t: [P_t, F_t, L]
    a_shared = rng.normal(size=(fitted.n_shared, n_latent))
    a_dense = np.concatenate([a_shared] + [t.reshape(-1, n_latent) for t in tables])  # [Q, L], level-major
    dense = x.dense()
    assert dense.shape == (4, fitted.n_shared + 5 * 2 + 3 * 1)
    gathered = x.shared @ a_shared
    for levels, values, table in zip(x.levels, x.values, tables):
        rows = table[np.clip(levels, 0, None)]  # [N, F_t, L]
        gathered = gathered + np.einsum("nf,nfl->nl", values, rows * (levels >= 0)[:, None, None])
    np.testing.assert_allclose(dense @ a_dense, gathered, rtol=1e-5)
    # hand-computed: row 0 is subject s3 at age 0 -> A_id[3, 0] + z_age * A_id[3, 1]
    z0 = (0.0 - 1.5) / cov["age"].values.std()
    np.testing.assert_allclose(x.values[0][0], [1.0, z0], rtol=1e-6)
    # unseen subject: zero random-effect columns in dense, zero values (a clamped gather adds nothing)
    np.testing.assert_array_equal(dense[1, fitted.n_shared: fitted.n_shared + 10], 0.0)
    np.testing.assert_array_equal(x.values[0][1], 0.0)
    batch = DesignBatch.from_matrix(x)
    assert isinstance(batch, DesignBatch) and batch.shared.dtype == torch.float32
    assert batch.levels[0].dtype == torch.int64 and torch.equal(batch.values[1], torch.from_numpy(x.values[1]))


def test_random_effects_memory_is_linear_in_observations_not_subjects():
    n_subjects, n_obs = 100_000, 200_000
    rng = np.random.default_rng(0)
    subject = rng.integers(0, n_subjects, size=n_obs)
    subject[:n_subjects] = np.arange(n_subjects)  # every subject seen
    cov = {"id": Covariate(subject, "id", levels=[f"p{p}" for p in range(n_subjects)]),
           "time": Covariate(rng.random(n_obs), "time")}
    start = time.perf_counter()
    fitted = Design("~ time + (1 + time | id)").fit(cov)
    x = fitted.transform(cov)
    elapsed = time.perf_counter() - start
    assert fitted.random_terms[0].n_levels == n_subjects
    # shared [N, 2] float32 + levels [N] int64 + values [N, 2] float32: 24 bytes per row, whatever P is
    assert x.nbytes == n_obs * (2 * 4 + 8 + 2 * 4)
    np.testing.assert_array_equal(x.levels[0], subject)
    assert elapsed < 5.0


def test_levels_match_by_value_across_types():
    train = {"id": Covariate([0, 1, 2, 2], "id", levels=[10, 11, 12]),
             "site": Covariate([0, 1, 1, 0], "categorical", levels=["12", "7"])}
    fitted = Design("~ C(site) + (1 | id)").fit(train)
    # ids read from CSV as ints or strings, a Covariate with another level order, a pandas Series
    for ids in (np.array([12, 10, 99]), np.array(["12", "10", "99"]), pd.Series([12.0, 10.0, 99.0]),
                Covariate([0, 1, 2], "id", levels=["12", "10", "99"]), pd.DataFrame({"i": [12, 10, 99]})["i"]):
        x = fitted.transform({"id": ids, "site": np.array([7, 12, 7])})
        np.testing.assert_array_equal(x.levels[0], [2, 0, -1])
        np.testing.assert_array_equal(x.shared[:, 1], [1, 0, 1])
    frame = pd.DataFrame({"id": [11, 11], "site": ["12", "7"], "unused": [0, 0]})  # a DataFrame works as a mapping
    np.testing.assert_array_equal(fitted.transform(frame).levels[0], [1, 1])


# -- errors: one line, naming term / covariate ---------------------------------------------------------


def _one_line_error(fn, *needles):
    with pytest.raises(DesignError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_user_errors_are_one_line_and_name_the_culprit():
    cov = health_covariates()
    _one_line_error(lambda: Design("~ age + sex:agee + (1 | id)").fit(cov),
                    "'sex:agee'", "'agee'", "available: age, diseaseAge, diseasePresence, id, location, sex")
    _one_line_error(lambda: Design("~ fourier(location, 2, period=3)").fit(cov),
                    "fourier(location, 2, period=3)", "categorical")
    _one_line_error(lambda: Design("~ poly(id, 2)").fit(cov), "poly(id, 2)", "is id")
    _one_line_error(lambda: Design("~ age + id").fit(cov), "'id'", "C(id)")
    _one_line_error(lambda: Design("~ (1 | diseaseAge)").fit(cov), "(1 | diseaseAge)", "continuous")
    _one_line_error(lambda: Design("~ age + (1 + age | id"), "unbalanced parenthesis", "position 8")
    _one_line_error(lambda: Design("~ poly(age, 2"), "unbalanced parenthesis", "poly()")
    _one_line_error(lambda: Design("~ age)"), "unbalanced parenthesis", "position 5")
    _one_line_error(lambda: Design("~ age + + sex"), "empty term", "position 8")
    _one_line_error(lambda: Design("~ age +"), "empty term at the end")
    _one_line_error(lambda: Design("~ age + (|id)"), "empty term")
    fitted = Design("~ age + location + (1 | id)").fit(cov)
    _one_line_error(lambda: fitted.transform({"age": [1.0], "location": ["east"], "id": ["s0"]}),
                    "'location'", "'east'", "not seen in training")
    _one_line_error(lambda: fitted.transform({"age": [1.0], "id": ["s0"]}), "covariate 'location' is missing")
    _one_line_error(lambda: fitted.transform({"age": [1.0, 2.0], "location": ["north"], "id": ["s0"]}), "rows")


# -- saving ---------------------------------------------------------------------------------------------


def test_to_dict_round_trip_gives_identical_transforms():
    cov = health_covariates()
    cov["angle"] = Covariate(np.linspace(0, 6, 24), "continuous")
    formula = ("~ poly(age, 2) + sex*age + location + rff(angle, 7, lengthscale=0.5, seed=3) "
               "+ (1 + fourier(angle, 2, period=2*pi) | id)")
    fitted = Design(formula).fit(cov)
    saved = json.loads(json.dumps(fitted.to_dict()))
    back = FittedDesign.from_dict(saved)
    test = {**cov, "id": np.array(["s1"] * 23 + ["unseen"])}
    a, b = fitted.transform(test), back.transform(test)
    np.testing.assert_array_equal(a.shared, b.shared)
    np.testing.assert_array_equal(a.levels[0], b.levels[0])
    np.testing.assert_array_equal(a.values[0], b.values[0])
    assert back.shared_columns == fitted.shared_columns and back.random_terms == fitted.random_terms
    assert back.terms == fitted.terms
    # the rff frequencies come from the saved state, not from re-drawing with the seed
    saved["factors"]["rff(angle, 7, lengthscale=0.5, seed=3)"]["state"]["omega"][0] += 1.0
    changed = FittedDesign.from_dict(saved).transform(test).shared
    assert not np.array_equal(changed, a.shared)
