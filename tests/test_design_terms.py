"""Design terms users paste from lme4/patsy (SPEC 1): I(), log/exp/sqrt, scale(), ns(), (x || g),
C(v, Treatment('level')) and a data file's reference level, checked against patsy's own columns
(patsy ships with statsmodels), against hand-built bases, and through save/reload."""

import json

import numpy as np
import pandas as pd
import patsy
import pytest

from lmmvae.data.h5 import Covariate
from lmmvae.errors import DesignError
from lmmvae.model.design import Design, FittedDesign
from lmmvae.model.design.bases import natural_spline

N_TRAIN = 30


def frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.uniform(20, 80, n), "dose": rng.uniform(0.5, 3, n),
        "sex": rng.integers(0, 2, n),
        "arm": rng.choice(["placebo", "high", "low"], n),
        "site": rng.choice(["North clinic", "South clinic", "East"], n),
        "id": np.repeat(np.arange(n // 4), 4),
    })


def covariates(df):
    return {"age": Covariate(df.age.values, "continuous"), "dose": Covariate(df.dose.values, "time"),
            "sex": Covariate(df.sex.values, "binary"), "arm": Covariate(df.arm.values, "categorical"),
            "site": Covariate(df.site.values, "categorical"), "id": Covariate(df.id.values, "id")}


def fit_split(formula, df=None):
    """Fit on the first N_TRAIN rows; the design rows of the rest (new values, train statistics)."""
    df = frame() if df is None else df
    fitted = Design(formula).fit(covariates(df.iloc[:N_TRAIN]))
    return fitted, fitted.transform(covariates(df.iloc[N_TRAIN:]))


def reloaded(fitted):
    return FittedDesign.from_dict(json.loads(json.dumps(fitted.to_dict())))


# -- I(), log/exp/sqrt, scale(): patsy's names, patsy's values standardised with train statistics --


@pytest.mark.parametrize("ours, theirs", [
    ("I(age**2)", "I(age**2)"), ("I(age*dose)", "I(age*dose)"), ("I((age-1)**2/dose)", "I((age-1)**2/dose)"),
    ("I(-age + 2*sex)", "I(-age + 2*sex)"), ("I(age ** -1)", "I(age ** -1)"),
    ("np.log(age)", "np.log(age)"), ("log(age + 1)", "np.log(age + 1)"), ("sqrt(dose)", "np.sqrt(dose)"),
    ("exp(dose)", "np.exp(dose)"), ("I(log(age) * dose)", "I(np.log(age) * dose)"),
])
def test_transform_terms_match_patsy_then_standardised(ours, theirs):
    df = frame()
    fitted, x = fit_split(f"~ {ours}", df)
    train = patsy.dmatrix(f"0 + {theirs}", df.iloc[:N_TRAIN], return_type="dataframe").iloc[:, 0]
    test = patsy.dmatrix(f"0 + {theirs}", df.iloc[N_TRAIN:], return_type="dataframe").iloc[:, 0]
    expected = (test.values - train.mean()) / train.std(ddof=0)
    np.testing.assert_allclose(x.shared[:, 1], expected, rtol=1e-5, atol=1e-5)
    assert fitted.shared_columns[1] == (train.name if "np." in ours else train.name.replace("np.", ""))
    np.testing.assert_array_equal(reloaded(fitted).transform(covariates(df)).shared, fitted.transform(
        covariates(df)).shared)


def test_scale_is_patsys_scale_and_the_default_standardisation():
    df = frame().iloc[:N_TRAIN]
    fitted = Design("~ 0 + scale(age) + age").fit(covariates(df))
    x = fitted.transform(covariates(df)).shared
    theirs = patsy.dmatrix("0 + scale(age)", df, return_type="dataframe")
    assert fitted.shared_columns == ["scale(age)", "age"] and list(theirs.columns) == ["scale(age)"]
    np.testing.assert_allclose(x[:, 0], theirs.values[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x[:, 0], x[:, 1])


@pytest.mark.parametrize("formula, covariate", [("~ log(age)", "age"), ("~ sqrt(dose - 0.2)", "dose"),
                                                ("~ I(age / (dose - 0.1))", "dose")])
def test_out_of_domain_value_is_one_line_error_naming_covariate_and_row(formula, covariate):
    df = frame()
    df.loc[3, "age"], df.loc[3, "dose"] = -2.0, 0.1
    for fit_rows in (df, frame()):  # at fit time; and at transform time on rows the fit never saw
        with pytest.raises(DesignError) as err:
            Design(formula).fit(covariates(fit_rows)).transform(covariates(df))
        message = str(err.value)
        assert "\n" not in message and "row 3" in message and repr(covariate) in message, message


def test_expressions_cannot_run_code_and_check_their_inputs():
    covs = covariates(frame())
    for formula in ("~ I(__import__('os').system('true'))", "~ I(age.__class__)", "~ I(open('x'))",
                    "~ I(2 * 3)", "~ I(arm * 2)", "~ log(age, 2)", "~ I(age" + " + age" * 300 + ")"):
        with pytest.raises(DesignError) as err:
            Design(formula).fit(covs)
        assert "\n" not in str(err.value)
    with pytest.raises(DesignError, match="'arm' is categorical"):
        Design("~ I(age * arm)").fit(covs)
    # unary minus binds looser than **, as in Python and patsy: -age**2 is -(age**2)
    fitted = Design("~ 0 + I(-age**2) + I(age**2)").fit(covs)
    x = fitted.transform(covs).shared
    np.testing.assert_allclose(x[:, 0], -x[:, 1], atol=1e-6)


# -- C(v, Treatment('level')) and the data file's reference ---------------------------------------


@pytest.mark.parametrize("ours", ["C(arm, Treatment('placebo'))", 'C(arm,Treatment(reference="placebo"))',
                                  "C(site, Treatment('North clinic'))", "C(site, Treatment(\"North clinic\"))"])
def test_treatment_reference_matches_patsy(ours):
    df = frame()
    fitted, x = fit_split(f"~ {ours} + age", df)
    theirs = patsy.dmatrix(f"{ours} + age", df, return_type="dataframe").iloc[N_TRAIN:]
    names = [c.replace("[T.", "[") for c in theirs.columns[1:-1]]  # patsy marks treatment columns T.
    assert fitted.shared_columns[1:-1] == names
    np.testing.assert_array_equal(x.shared[:, 1:-1], theirs.values[:, 1:-1])
    dropped = "placebo" if "arm" in ours else "North clinic"
    assert not any(c.endswith(f"[{dropped}]") for c in fitted.shared_columns)
    np.testing.assert_array_equal(reloaded(fitted).transform(covariates(df)).dense(),
                                  fitted.transform(covariates(df)).dense())


def test_reference_without_intercept_keeps_every_level_in_level_order():
    fitted, _ = fit_split("~ 0 + C(arm, Treatment('placebo'))")
    theirs = patsy.dmatrix("0 + C(arm, Treatment('placebo'))", frame(), return_type="dataframe")
    assert fitted.shared_columns == list(theirs.columns)


def test_numeric_reference_and_unknown_reference_and_unseen_level():
    covs = {"dose_group": Covariate(np.array([1, 2, 3, 2, 1, 3]), "categorical")}
    fitted = Design("~ C(dose_group, Treatment(2))").fit(covs)
    assert fitted.shared_columns == ["(Intercept)", "C(dose_group, Treatment(2))[1]",
                                     "C(dose_group, Treatment(2))[3]"]
    with pytest.raises(DesignError, match=r"reference level 'none' .*levels: 'high', 'low', 'placebo'"):
        Design("~ C(arm, Treatment('none'))").fit(covariates(frame()))
    with pytest.raises(DesignError, match="accepts only Treatment"):
        Design("~ C(arm, Sum)")
    fitted = Design("~ C(arm, Treatment('placebo'))").fit(covariates(frame()))
    with pytest.raises(DesignError, match=r"level 'medium' \(row 1\) that was not seen in training"):
        fitted.transform({"arm": np.array(["high", "medium"])})


def test_data_file_reference_drops_that_level_unless_the_formula_names_another():
    covs = covariates(frame())
    covs["arm"].reference = "placebo"
    for formula in ("~ arm", "~ C(arm)"):
        cols = Design(formula).fit(covs).shared_columns
        assert [c.split("[")[1] for c in cols[1:]] == ["high]", "low]"], cols
    cols = Design("~ C(arm, Treatment('low'))").fit(covs).shared_columns
    assert [c.split("[")[1] for c in cols[1:]] == ["high]", "placebo]"]
    # the random-effect grouping keeps every level, whatever the reference
    assert Design("~ (1 | arm)").fit(covs).random_terms[0].n_levels == 3


# -- ns(v, df): R's natural cubic spline family --------------------------------------------------


def truncated_power_ncs(x, knots):
    """The natural cubic spline basis of The Elements of Statistical Learning (eq. 5.4-5.5):
    1, x, d_k - d_{K-1} with d_k = ((x - xi_k)^3_+ - (x - xi_K)^3_+) / (xi_K - xi_k); defined for
    every x (linear beyond the outer knots)."""
    cube = lambda u: np.maximum(u, 0.0) ** 3  # noqa: E731
    d = [(cube(x - k) - cube(x - knots[-1])) / (knots[-1] - k) for k in knots[:-1]]
    return np.column_stack([np.ones_like(x), x] + [d[k] - d[-1] for k in range(len(knots) - 2)])


def residual(a, b):
    """Largest relative residual of projecting the columns of ``a`` onto the span of ``b``."""
    coef, *_ = np.linalg.lstsq(b, a, rcond=None)
    return float(np.abs(a - b @ coef).max() / np.abs(a).max())


def test_ns_spans_patsy_cr_and_the_truncated_power_natural_spline():
    df = frame()
    train = df.age.values[:N_TRAIN]
    fitted, x = fit_split("~ ns(age, 4)", df)
    assert fitted.shared_columns == ["(Intercept)"] + [f"ns(age, 4)[{j}]" for j in range(1, 5)]
    knots = np.quantile(train, [0, 0.25, 0.5, 0.75, 1.0])
    inside = np.linspace(train.min(), train.max(), 50)
    ours = fitted.transform({"age": inside}).shared.astype(np.float64)  # [50, 5], intercept first
    # patsy's cr() with df+1 knots at the same quantiles is the same space (its columns sum to 1)
    theirs = patsy.dmatrix("0 + cr(age, df=5)", pd.DataFrame({"age": train}), return_type="dataframe")
    cr_inside = patsy.build_design_matrices([theirs.design_info], {"age": inside})[0]
    assert residual(ours, np.asarray(cr_inside)) < 1e-5 and residual(np.asarray(cr_inside), ours) < 1e-5
    # the textbook basis, also outside the training range (both are linear there)
    wide = np.linspace(train.min() - 30, train.max() + 30, 80)
    ours_wide = fitted.transform({"age": wide}).shared.astype(np.float64)
    textbook = truncated_power_ncs(wide, knots)
    assert residual(ours_wide, textbook) < 1e-5 and residual(textbook, ours_wide) < 1e-5
    # R's intercept=FALSE convention: every column is 0 at the lower boundary knot
    np.testing.assert_allclose(natural_spline(np.array([train.min()]), list(knots[1:-1]), [knots[0], knots[-1]]),
                               0.0, atol=1e-12)
    assert np.isfinite(x.shared).all()
    np.testing.assert_array_equal(reloaded(fitted).transform({"age": wide}).shared,
                                  fitted.transform({"age": wide}).shared)


def test_ns_is_linear_beyond_the_boundary_knots_and_needs_enough_values():
    fitted = Design("~ 0 + ns(t, 3)").fit({"t": Covariate(np.linspace(0, 1, 20), "time")})
    for far in (np.linspace(-3, -1, 9), np.linspace(2, 5, 9)):  # equally spaced: 2nd differences 0
        cols = fitted.transform({"t": far}).shared.astype(np.float64)
        np.testing.assert_allclose(np.diff(cols, 2, axis=0), 0.0, atol=1e-4)
    with pytest.raises(DesignError, match="3 distinct training values; ns\\(v, 3\\) needs at least 4"):
        Design("~ ns(t, 3)").fit({"t": Covariate(np.array([0.0, 1, 2, 1, 0]), "time")})


# -- (x || g), a left-hand side --------------------------------------------------------------------


def test_double_bar_is_separate_random_terms_with_the_same_columns():
    covs = covariates(frame())
    split = Design("~ age + (1 + dose || id)").fit(covs)
    explicit = Design("~ age + (1 | id) + (0 + dose | id)").fit(covs)
    assert [r.name for r in split.random_terms] == ["(1 | id)", "(0 + dose | id)"]
    assert [r.columns for r in split.random_terms] == [["(Intercept)"], ["dose"]]
    np.testing.assert_array_equal(split.transform(covs).dense(), explicit.transform(covs).dense())
    assert [r.name for r in Design("~ (0 + age + dose || id)").fit(covs).random_terms] == [
        "(0 + age | id)", "(0 + dose | id)"]
    np.testing.assert_array_equal(reloaded(split).transform(covs).dense(), split.transform(covs).dense())


@pytest.mark.parametrize("formula, rhs", [("y ~ day", "~ day"), ("crp ~ month + (1|id)", "~ month + (1|id)"),
                                          ("log(crp) ~ 1", "~ 1")])
def test_left_hand_side_says_the_features_are_the_responses(formula, rhs):
    with pytest.raises(DesignError) as err:
        Design(formula)
    assert "no response" in str(err.value) and f"write '{rhs}'" in str(err.value) and "\n" not in str(err.value)


def test_from_table_reference_is_stored_in_the_data_file_and_read_by_designs(tmp_path, capsys):
    import h5py

    from lmmvae.cli import main
    from lmmvae.data.h5 import read_h5, write_h5

    df = frame()
    df["crp"] = np.arange(len(df), dtype=float)
    df.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "t.h5"
    assert main(["data", "from-table", "--table", str(tmp_path / "t.csv"), "--subject", "id", "--time", "age",
                 "--features", "crp", "--covariates", "site,arm", "--reference", "site=North clinic",
                 "--out", str(out)]) == 0
    with h5py.File(out) as f:
        assert json.loads(f["covariates/site"].attrs["reference"]) == "North clinic"
        assert "reference" not in f["covariates/arm"].attrs
    data = read_h5(out)
    cols = Design("~ site + C(arm)").fit(data.covariates).shared_columns
    assert cols == ["(Intercept)", "site[East]", "site[South clinic]", "C(arm)[low]", "C(arm)[placebo]"]
    write_h5(data, tmp_path / "again.h5")  # the reference survives a rewrite
    assert read_h5(tmp_path / "again.h5").covariates["site"].reference == "North clinic"
    with h5py.File(tmp_path / "again.h5", "a") as f:
        f["covariates/site"].attrs["reference"] = json.dumps("West")
    with pytest.raises(ValueError, match=r"/covariates/site attribute reference: reference level 'West' is not one"):
        read_h5(tmp_path / "again.h5")
    capsys.readouterr()
    for bad, says in (("site=West", "reference level 'West' is not one of the levels ('East', 'North clinic'"),
                      ("age=3", "a reference level is for categorical covariates, this one is time"),
                      ("site", "expected COLUMN=LEVEL")):
        assert main(["data", "from-table", "--table", str(tmp_path / "t.csv"), "--subject", "id", "--time", "age",
                     "--features", "crp", "--covariates", "site", "--reference", bad,
                     "--out", str(tmp_path / "x.h5")]) != 0
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.h5").exists()
