"""The contract every model of the benchmark honours, whatever its prior (LMM-VAE variants and the
five baselines), on one tiny data set: a finite loss whose gradients reach every trainable
parameter, the Prior seam of :mod:`lmmvae.model.priors.base` (``infer`` gives ``q(z)`` and the KL in one
call, with no state carried between calls), a JSON summary from which the prior is rebuilt alone,
a save/load round trip from the run's JSON files and weights alone (HDF5 files and checkpoint
removed) that predicts exactly the same, the same fit for the same seed, and predictions of the
right shape at unseen covariates (new times, an unseen subject)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import lmmvae
from lmmvae.model import variants
from lmmvae.model.priors.base import Inference, Prior
from lmmvae.training import assemble
from lmmvae.training.checks import config_from_dict, prior_options
from lmmvae.training.objectives import elbo, gsnn
from simulate import simulate_lmm

#: a design per variant; GP variants read it as a kernel (SPEC 5)
DESIGNS = {
    "olmm": "~ time + sex + (1 | id)",
    "slmm": "~ time + sex",
    "vae": "~ 1",
    "cvae": "~ time + sex",
    "gppvae": "~ time + (1 | id)",
    "svgpvae": "~ time + (1 | id)",
    "lvae": "~ time + sex:time + (1 + time | id)",
}
#: GSNN needs a prior whose per-observation marginal carries the covariates (SPEC 4)
SUPPORTS_GSNN = {"olmm", "slmm", "cvae"}
COMMON = dict(latent_dim=3, network="mlp", network_options={"hidden": [16, 8]}, epochs=2, batch_size=16,
              lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def data():
    return simulate_lmm(n_subjects=8, n_times=6, data_dim=5, n_future=2, seed=3)


def test_every_registered_variant_is_covered():
    # classical rows (mixedlm, mean) have no networks: tests/test_classical.py
    assert {n for n in variants.names() if not variants.get(n).classical} == set(DESIGNS)


def _model(variant, data, objective="elbo"):
    config = config_from_dict({k: v for k, v in dict(COMMON, variant=variant, design=DESIGNS[variant],
                                                           objective=objective).items() if k != "progress"})
    built = assemble.assemble(config, data, seed=0)
    return built.model, built.tensors


@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_finite_loss_and_gradients_reach_every_parameter(variant, data):
    model, tensors = _model(variant, data)
    model.train()
    model.start_epoch(tensors)
    batch = next(tensors.batches("train", 16, by=model.prior.batching, generator=torch.Generator().manual_seed(0)))
    terms = elbo(model, batch, int(tensors.indices("train").shape[0]))
    assert torch.isfinite(terms.loss), terms
    terms.loss.backward()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        assert param.grad is not None, f"{variant}: no gradient reaches {name}"
        grad = param.grad.coalesce().values() if param.grad.is_sparse else param.grad
        assert torch.isfinite(grad).all(), f"{variant}: non-finite gradient in {name}"
        assert grad.abs().sum() > 0, f"{variant}: zero gradient for {name}"


@pytest.mark.parametrize("variant", sorted(SUPPORTS_GSNN))
def test_gsnn_loss_is_finite(variant, data):
    model, tensors = _model(variant, data, objective="gsnn")
    batch = next(tensors.batches("train", 16, by=model.prior.batching, generator=torch.Generator().manual_seed(0)))
    terms = gsnn(model, batch, int(tensors.indices("train").shape[0]), n_samples=4)
    assert torch.isfinite(terms.loss)
    terms.loss.backward()


def test_gsnn_is_declared_by_the_variant_and_refused_elsewhere():
    assert {name for name in DESIGNS if variants.get(name).gsnn} == SUPPORTS_GSNN
    for name in set(DESIGNS) - SUPPORTS_GSNN:
        with pytest.raises(lmmvae.errors.ConfigError, match="cannot be trained by GSNN"):
            config_from_dict({"variant": name, "objective": "gsnn"})


def _unseen_covariates(data):
    """Two new time points of a training subject, and a subject never seen in training."""
    frame = data.covariate_frame()
    known = frame["id"].iloc[0]
    return pd.DataFrame({"time": [1.5, -0.2, 0.4], "sex": [0, 1, 1], "id": [known, known, "nobody"]})


@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_save_load_determinism_and_prediction_shapes(variant, data, tmp_path):
    first = lmmvae.fit(data, seed=7, out=tmp_path / "a", variant=variant, design=DESIGNS[variant], **COMMON)
    second = lmmvae.fit(data, seed=7, variant=variant, design=DESIGNS[variant], **COMMON)
    loaded = lmmvae.load(tmp_path / "a")
    new = _unseen_covariates(data)
    pred = first.predict_arrays(new)
    assert pred["y_pred"].shape == (3, data.n_features)
    assert pred["z_mean"].shape == (3, COMMON["latent_dim"]) and pred["z_var"].shape == (3, COMMON["latent_dim"])
    for key in ("y_pred", "z_mean", "z_var"):
        assert np.isfinite(pred[key]).all(), f"{variant}: non-finite {key}"
    assert (pred["z_var"] > 0).all()
    np.testing.assert_allclose(loaded.predict_arrays(new)["y_pred"], pred["y_pred"], atol=1e-5)
    np.testing.assert_allclose(second.predict_arrays(new)["y_pred"], pred["y_pred"], atol=1e-5)
    np.testing.assert_allclose(loaded.latent(data), first.latent(data), atol=1e-5)
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value, msg=f"{variant}: {key} differs")


# -- the Prior seam (lmmvae.model.priors.base) --------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_infer_gives_posterior_and_kl_in_one_call_without_memory(variant, data):
    """``infer`` returns ``q(z)`` [B, L] and finite scalar KL terms; ``kl=False`` gives the same
    ``q(z)`` and no KL; a second call (another batch in between) gives the same answer: nothing is
    remembered between calls. The seam has no ``posterior``/``kl`` pair to call in the wrong order."""
    model, tensors = _model(variant, data)
    model.start_epoch(tensors)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    first, second = list(tensors.batches("train", 16, by=model.prior.batching, generator=gen))[:2]
    with torch.no_grad():
        enc = model.encode(first)
        out = model.prior.infer(enc, first)
        model.prior.infer(model.encode(second), second)
        again = model.prior.infer(enc, first)
        alone = model.prior.infer(enc, first, kl=False)
    assert isinstance(out, Inference) and alone.kl is None
    assert out.q_z.mean.shape == (first.size, COMMON["latent_dim"]) == out.q_z.variance.shape
    for terms in (out.kl, again.kl):
        assert terms.local.shape == () and terms.global_.shape == ()
        assert torch.isfinite(terms.local) and torch.isfinite(terms.global_)
    torch.testing.assert_close(again.kl.local, out.kl.local)
    torch.testing.assert_close(again.kl.global_, out.kl.global_)
    for q in (again.q_z, alone.q_z):
        torch.testing.assert_close(q.mean, out.q_z.mean)
        torch.testing.assert_close(q.variance, out.q_z.variance)
    assert not hasattr(model.prior, "posterior") and not hasattr(model.prior, "kl")
    assert not [name for name in vars(model.prior) if "memo" in name]


@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_prior_is_built_from_options_json_summary_and_latent_size_alone(variant, data):
    """The variant's summary survives JSON exactly, and the prior built from it alone has the
    parameters and buffers (names, shapes, values of the data-dependent buffers) of the one fit built."""
    model, _ = _model(variant, data)
    config = config_from_dict({"variant": variant, "design": DESIGNS[variant], "latent_dim": 3})
    entry = variants.get(variant)
    train = data.subset(data.split_index("train"))
    from lmmvae.model.design import Design

    summary = assemble.summarise(config, Design(config.design).fit(train.covariates), train.covariates)
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    torch.manual_seed(0)
    rebuilt = entry.build_prior(prior_options(config, variant=entry), json.loads(text), 3)
    assert isinstance(rebuilt, Prior)
    fitted_state, rebuilt_state = model.prior.state_dict(), rebuilt.state_dict()
    assert set(rebuilt_state) == set(fitted_state)
    for key, value in fitted_state.items():
        assert rebuilt_state[key].shape == value.shape, f"{variant}: {key}"
    for key in ("effects.inv_count_0", "view_grid", "inputs.shift", "inputs.scale"):  # data-dependent buffers
        if key in fitted_state:
            torch.testing.assert_close(rebuilt_state[key], fitted_state[key])


def test_networks_are_conditioned_by_the_variant_declaration():
    assert {name for name in DESIGNS if variants.get(name).conditional} == {"cvae"}


@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_run_directory_loads_from_json_and_weights_alone(variant, data, tmp_path, monkeypatch):
    """With the HDF5 files and the checkpoint removed, a run loads without reading data or summarising
    anything again, and predicts (and for ELBO runs, embeds) exactly as the fitted model."""
    first = lmmvae.fit(data, seed=7, out=tmp_path / "run", variant=variant, design=DESIGNS[variant], **COMMON)
    for path in tmp_path.joinpath("run").iterdir():
        if path.suffix == ".h5" or path.name == "checkpoint.pt":
            path.unlink()
    # the hidden writer lock (lmmvae.runs.runlock) stays, empty of meaning once its holder is gone
    assert {p.name for p in (tmp_path / "run").iterdir() if not p.name.startswith(".")} == {
        "config.json", "design.json", "prior.json", "covariates.json", "history.csv", "model.pt"}

    def refuse(*args, **kwargs):
        raise AssertionError("load summarised the training data again")

    monkeypatch.setattr(assemble, "summarise", refuse)
    loaded = lmmvae.load(tmp_path / "run")
    new = _unseen_covariates(data)
    for key in ("y_pred", "z_mean", "z_var"):
        np.testing.assert_array_equal(loaded.predict_arrays(new)[key], first.predict_arrays(new)[key])
    np.testing.assert_array_equal(loaded.latent(data), first.latent(data))
    assert loaded.evaluate(data) == first.evaluate(data)
    assert set(loaded.train_covariates) == set(first.train_covariates)
    for name, cov in first.train_covariates.items():  # what prediction helpers read (grids, reference values)
        same = loaded.train_covariates[name]
        assert (same.kind, same.levels) == (cov.kind, cov.levels)
        np.testing.assert_array_equal(same.values, cov.values)


def test_an_olmm_summary_without_q_A_is_a_one_line_error(data, tmp_path):
    """A run of an earlier version, whose oLMM-VAE summary did not record q(A) (its default then
    differed), is refused with a one-line error, never loaded with today's default."""
    lmmvae.fit(data, seed=7, out=tmp_path / "run", variant="olmm", design=DESIGNS["olmm"], **COMMON)
    path = tmp_path / "run" / "prior.json"
    summary = json.loads(path.read_text())
    assert summary.pop("q_A") == "point"
    path.write_text(json.dumps(summary))
    with pytest.raises(lmmvae.errors.RunError, match=r"prior\.json: no q_A .*retrain") as err:
        lmmvae.load(tmp_path / "run")
    assert "\n" not in str(err.value)


def test_missing_prior_summary_is_a_one_line_error(data, tmp_path):
    lmmvae.fit(data, seed=7, out=tmp_path / "run", variant="olmm", design=DESIGNS["olmm"], **COMMON)
    (tmp_path / "run" / "prior.json").unlink()
    with pytest.raises(lmmvae.errors.RunError, match=r"prior\.json: missing .*retrain") as err:
        lmmvae.load(tmp_path / "run")
    assert "\n" not in str(err.value)
