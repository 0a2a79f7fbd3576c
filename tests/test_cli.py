"""The command line the workflow calls: fit / evaluate / predict / mcc, resume after a kill, and
one-line errors for bad input."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import lmmvae
from lmmvae.cli import main
from lmmvae.data.h5 import write_h5
from lmmvae.model.priors.olmm import OLMMPrior
from simulate import simulate_lmm

MODEL_YAML = """\
variant: olmm
design: "~ time + sex + (1 | id)"
latent_dim: 2
network: mlp
epochs: {epochs}
batch_size: 64
lr: 0.005
"""


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_h5(simulate_lmm(n_subjects=20, n_times=6, n_future=2), tmp_path_factory.mktemp("d") / "sim.h5")


def write_model(tmp_path, epochs=3, text=MODEL_YAML):
    path = tmp_path / "model.yaml"
    path.write_text(text.format(epochs=epochs))
    return path


def test_fit_evaluate_predict_mcc(tmp_path, data_file, capsys):
    model = write_model(tmp_path)
    for seed in (0, 1):
        assert main(["fit", "--data", str(data_file), "--model", str(model), "--seed", str(seed),
                     "--out", str(tmp_path / f"run{seed}"), "--quiet"]) == 0
    run = tmp_path / "run0"
    assert {"config.json", "design.json", "history.csv", "checkpoint.pt", "model.pt"} <= {p.name for p in run.iterdir()}
    assert main(["evaluate", "--run", str(run), "--data", str(data_file), "--out", str(tmp_path / "m.json"),
                 "--predictions", str(tmp_path / "p.h5")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    # no /y_full -> no imputation; the estimators' Monte Carlo errors and the collapse diagnostics
    assert set(metrics["metrics"]) == {"mse_test", "mse_test_mc_se", "nll_test", "nll_test_se", "nll_test_half",
                                       "nll_importance", "nll_draws", "mcc_truth", "active_dims", "explained_share"}
    assert metrics["variant"] == "olmm" and metrics["seed"] == 0 and metrics["latent_dim"] == 2
    history = pd.read_csv(run / "history.csv")  # 3 epochs, patience 50: the run hit its budget
    assert (metrics["epochs_run"], metrics["epoch_budget"], metrics["stopped_early"]) == (3, 3, False)
    after = history[history["warmup"] == 0] if (history["warmup"] == 0).any() else history.tail(1)  # warm-up
    assert metrics["best_epoch"] == after["epoch"][after["val_loss"].idxmin()]
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["y_pred"].shape == (120, 12) and f["z_mean"].shape == (120, 2)

    pd.DataFrame({"time": [0.0, 2.0], "sex": [1, 0], "id": ["s3", "never-seen"]}).to_csv(tmp_path / "c.csv", index=False)
    assert main(["predict", "--run", str(run), "--covariates", str(tmp_path / "c.csv"), "--out", str(tmp_path / "pred.h5")]) == 0
    with h5py.File(tmp_path / "pred.h5") as f:
        assert f["y_pred"].shape == (2, 12)
        assert np.all(f["z_var"][()] > 0)

    assert main(["mcc", str(run), str(tmp_path / "run1"), "--data", str(data_file), "--out", str(tmp_path / "mcc.json")]) == 0
    assert 0.0 <= json.loads((tmp_path / "mcc.json").read_text())["mcc"] <= 1.0


def test_unknown_key_lists_valid_ones(tmp_path, data_file, capsys):
    model = write_model(tmp_path, text=MODEL_YAML + "learning_rate: 0.1\n")
    assert main(["fit", "--data", str(data_file), "--model", str(model), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown key(s) learning_rate" in err and "valid: variant, objective, design" in err
    assert not (tmp_path / "r").exists()


def test_missing_covariate_is_one_line(tmp_path, data_file, capsys):
    model = write_model(tmp_path, text=MODEL_YAML.replace("time + sex", "time + age"))
    assert main(["fit", "--data", str(data_file), "--model", str(model), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "age" in err


def test_unknown_prior_option(tmp_path, data_file, capsys):
    model = write_model(tmp_path, text=MODEL_YAML + "prior:\n  q_a: point\n")
    assert main(["fit", "--data", str(data_file), "--model", str(model), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key(s) q_a; valid: q_A" in capsys.readouterr().err


def test_killed_training_resumes_to_the_same_weights(tmp_path, data_file, monkeypatch):
    """A job killed after epoch 2 of 4 and resumed (on another device setting) ends with the weights of
    an uninterrupted run."""
    settings = dict(variant="olmm", design="~ time + sex + (1 | id)", latent_dim=2, network="mlp",
                    epochs=4, batch_size=64, progress=False)
    whole = lmmvae.fit(data_file, out=tmp_path / "whole", seed=3, **settings)

    calls = {"n": 0}
    original = OLMMPrior.on_epoch_start

    def killed_at_third_epoch(self, model, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(self, model, data)

    monkeypatch.setattr(OLMMPrior, "on_epoch_start", killed_at_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        lmmvae.fit(data_file, out=tmp_path / "killed", seed=3, **settings)
    assert not (tmp_path / "killed" / "model.pt").exists()  # never taken as finished
    monkeypatch.setattr(OLMMPrior, "on_epoch_start", original)
    # resumed under another device spelling (auto -> cpu): the device is where a run trains, not what
    resumed = lmmvae.fit(data_file, out=tmp_path / "killed", seed=3, resume=True, **settings, device="cpu")
    assert len((tmp_path / "killed" / "history.csv").read_text().splitlines()) == 5
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
