"""The simulator's latent-dimension and decoder options (benchmarks/simulate_lmm.py) and the deciding
rule of the multi-data-set recipe study (benchmarks/recipe_verdict.py), on hand-computed cases."""

import itertools
import math

import numpy as np
import pytest

from benchmarks import accuracy
from benchmarks.recipe_verdict import by_dataset, verdict
from benchmarks.simulate_lmm import decoder, shared_effect, simulate_lmm, truth_decoder


@pytest.mark.parametrize("kind", ["tanh32", "elu64x2"])
def test_three_dim_latent_is_inside_the_design_and_its_decoder_reproduces_y(kind):
    data = simulate_lmm(n_subjects=10, n_visits=8, seed=4, latent_dim=3, decoder_kind=kind)
    assert data.latent_truth.shape == (80, 3) and data.attrs["latent_dim"] == 3 and data.attrs["decoder"] == kind
    t, sex, subject = (data.covariates[k].values for k in ("time", "sex", "id"))
    onehot = np.eye(10)[subject]
    x = np.hstack([accuracy.fixed_design(t, sex), onehot, onehot * t[:, None]])
    coef, *_ = np.linalg.lstsq(x, data.latent_truth.astype(np.float64), rcond=None)
    assert np.abs(x @ coef - data.latent_truth).max() < 1e-4  # DESIGN contains the 3-d latent model
    np.testing.assert_allclose(truth_decoder(data)(data.latent_truth), data.y_full, atol=1e-5)
    np.testing.assert_allclose(shared_effect(np.array([0.5]), 3)[0], [0.0, 0.0, -1.0], atol=1e-12)  # sin π, cos π/2, cos π


def test_decoders_differ_and_default_attrs_are_unchanged():
    z = np.random.default_rng(0).normal(size=(50, 2))
    tanh, elu = decoder(6, 1234, 2, "tanh32")(z), decoder(6, 1234, 2, "elu64x2")(z)
    assert np.abs(tanh - elu).mean() > 0.1
    assert np.abs(tanh).max() < 1 + 0.2 * 4 + 6  # bounded: tanh hidden layer
    data = simulate_lmm(n_subjects=4, n_visits=5, seed=0)
    assert "latent_dim" not in data.attrs and "decoder" not in data.attrs  # files of the defaults as before
    np.testing.assert_allclose(truth_decoder(data)(data.latent_truth), data.y_full, atol=1e-5)
    with pytest.raises(ValueError, match="decoder"):
        simulate_lmm(n_subjects=4, n_visits=5, decoder_kind="relu")


def _rows(candidate):
    """4 data sets × 3 seeds, defaults at 1.0, candidate at ``candidate(model, dataset)``."""
    rows = []
    for d, s, m in itertools.product("abcd", [0, 1, 2], ["olmm", "slmm"]):
        rows.append(dict(dataset=d, model=m, setting="defaults", seed=s, val_mse=1.0, seconds=1.0))
        rows.append(dict(dataset=d, model=m, setting="lr=0.003", seed=s, val_mse=candidate(m, d), seconds=1.0))
        if m == "olmm":
            rows.append(dict(dataset=d, model=m, setting="prior.q_A=point", seed=s,
                             val_mse=1.05 if d == "b" else 0.95, seconds=1.0))
    return rows


def test_rule_geometric_mean_and_data_sets_won():
    rows = _rows(lambda m, d: 0.9 if (m == "olmm" or d != "a") else 1.2)
    out = {(r["model"], r["setting"]): r for r in verdict(rows, planned_pairs=12)}
    # sLMM lr: (3 ln 1.2 + 9 ln 0.9) / 12 → 0.9671 < 0.97, 3 of 4 data sets: passes
    slmm = out[("slmm", "lr=0.003")]
    assert slmm["geo_ratio"] == pytest.approx(math.exp((3 * math.log(1.2) + 9 * math.log(0.9)) / 12))
    assert slmm["wins"] == "3/4" and slmm["verdict"] == "replaces the default"
    assert out[("olmm", "lr=0.003")]["verdict"] == "replaces the default"
    # q_A: 9 ln 0.95 + 3 ln 1.05 → 0.9741 ≥ 0.97: fails although 3 of 4 data sets are better
    qa = out[("olmm", "prior.q_A=point")]
    assert qa["geo_ratio"] == pytest.approx(0.97407, abs=1e-5) and qa["wins"] == "3/4"
    assert qa["verdict"] == "default stays"
    table = {(r["dataset"], r["model"], r["setting"]): r for r in by_dataset(rows)}
    assert table[("a", "slmm", "lr=0.003")]["ratio"] == pytest.approx(1.2)


def test_rule_shared_key_needs_every_model_and_all_pairs():
    # sLMM better on only 2 of 4 data sets: lr stays for both, though oLMM alone would pass
    rows = _rows(lambda m, d: 0.8 if (m == "olmm" or d in "ab") else 1.05)
    out = {(r["model"], r["setting"]): r for r in verdict(rows, planned_pairs=12)}
    assert out[("slmm", "lr=0.003")]["verdict"] == "default stays"
    assert out[("olmm", "lr=0.003")]["verdict"].startswith("default stays (shared key")
    # a comparison with missing pairs is marked incomplete
    rows = [r for r in _rows(lambda m, d: 0.9) if not (r["dataset"] == "d" and r["setting"] != "defaults")]
    assert all("incomplete: 9 of 12" in r["verdict"] for r in verdict(rows, planned_pairs=12))


def test_elbo_defaults_to_a_point_q_A_gsnn_to_gaussian_and_old_runs_are_refused(tmp_path):
    """The study's verdict (docs/recipe_study.md, "Defaults that generalise"): ``q_A`` point under
    the ELBO; GSNN keeps the Gaussian; an asked value wins; a run whose prior.json predates the
    change (no ``q_A``) is refused (retrain it), never loaded with today's default."""
    import json

    import lmmvae
    from lmmvae.model.priors.olmm import OLMMOptions

    assert OLMMOptions().resolve("elbo").q_A == "point" and OLMMOptions().resolve("gsnn").q_A == "gaussian"
    assert OLMMOptions(q_A="gaussian").resolve("elbo").q_A == "gaussian"
    assert OLMMOptions(q_A="gaussian").resolve("elbo").learn_tau  # τ learned with the Gaussian q(A)
    data = simulate_lmm(n_subjects=6, n_visits=5, data_dim=3, seed=0)
    kw = dict(variant="olmm", design="~ time + (1 | id)", latent_dim=2, epochs=1, progress=False)
    model = lmmvae.fit(data, out=tmp_path / "new", **kw)
    assert not model.model.prior.effects.gaussian and json.loads((tmp_path / "new" / "prior.json").read_text())["q_A"] == "point"
    assert not lmmvae.load(tmp_path / "new").model.prior.effects.gaussian
    lmmvae.fit(data, out=tmp_path / "old", prior={"q_A": "gaussian"}, **kw)
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["model"]["prior"].pop("q_A")  # as written before q_A had an objective-dependent default
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    summary = json.loads((tmp_path / "old" / "prior.json").read_text())
    summary.pop("q_A")
    (tmp_path / "old" / "prior.json").write_text(json.dumps(summary))
    with pytest.raises(lmmvae.errors.RunError, match="no q_A"):
        lmmvae.load(tmp_path / "old")
