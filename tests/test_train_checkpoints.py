"""What lmmvae.training.train does to save time without changing a number: checkpoints by time (when
checkpoint.pt and history.csv are written; the weights and the history of a run that checkpoints
every epoch, of one that checkpoints by time, and of one killed and resumed from an older checkpoint
are bit-identical, the history's wall-clock column aside) and Adam's multi-tensor steps (bit-identical
to its per-parameter loop)."""

import csv
import time
import types

import pytest
import torch

import lmmvae
from lmmvae.data.h5 import write_h5
from lmmvae.model.priors.olmm import OLMMPrior
from lmmvae.training import train
from lmmvae.training.train import Trainer
from simulate import simulate_lmm

SETTINGS = dict(variant="olmm", design="~ time + sex + (1 | id)", latent_dim=2, network="mlp", batch_size=32,
                lr=0.005, progress=False)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_h5(simulate_lmm(n_subjects=16, n_times=6, n_future=2), tmp_path_factory.mktemp("d") / "sim.h5")


@pytest.fixture
def clock(monkeypatch):
    """lmmvae.training.train's monotonic clock, ``seconds_per_epoch`` × the epochs completed so far (of the
    trainer being timed): the schedule of writes no longer depends on the machine's speed."""
    now = {"trainer": None, "seconds_per_epoch": 5.0}
    real_init = Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        now["trainer"] = self

    monkeypatch.setattr(Trainer, "__init__", init)
    fake = types.SimpleNamespace(perf_counter=time.perf_counter,
                                 monotonic=lambda: now["seconds_per_epoch"] * now["trainer"].state.epoch)
    monkeypatch.setattr(train, "time", fake)
    return now


@pytest.fixture
def writes(monkeypatch):
    """The epochs at whose end a checkpoint was written (this process)."""
    epochs = []
    real = Trainer.save_checkpoint

    def save(self):
        epochs.append(self.state.epoch)
        real(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    return epochs


def history(run):
    """history.csv without its wall-clock column."""
    with open(run / "history.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def assert_same_weights(a, b):
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name


def test_written_after_the_first_epoch_every_30_s_and_at_the_budget(data_file, tmp_path, clock, writes):
    assert train.CHECKPOINT_SECONDS == 30
    lmmvae.fit(data_file, out=tmp_path / "r", seed=0, epochs=14, patience=0, **SETTINGS)
    # 5 s an epoch: the first, then 30 s after each write (epochs 7, 13), and the last
    assert writes == [1, 7, 13, 14]
    assert len(history(tmp_path / "r")) == 14


def test_written_when_patience_ends_training(data_file, tmp_path, clock, writes, monkeypatch):
    monkeypatch.setattr(Trainer, "validation_loss", lambda self: 1.0)  # never improves after epoch 1
    fitted = lmmvae.fit(data_file, out=tmp_path / "r", seed=0, epochs=50, patience=3, warmup_epochs=0, **SETTINGS)
    assert writes == [1, 4]  # the first epoch, then the converged one (4 - 1 >= patience), before 30 s
    rows = history(tmp_path / "r")
    assert len(rows) == 4 and rows[-1]["stopped"] == train.CONVERGED
    assert fitted.run_dir is not None


@pytest.mark.parametrize("objective", ["elbo", "gsnn"])
def test_every_epoch_and_by_time_give_identical_runs(data_file, tmp_path, monkeypatch, objective):
    settings = dict(SETTINGS, objective=objective, epochs=6, seed=1)
    monkeypatch.setattr(Trainer, "checkpoint_seconds", 0.0)  # every epoch, as before
    every = lmmvae.fit(data_file, out=tmp_path / "every", **settings)
    monkeypatch.setattr(Trainer, "checkpoint_seconds", train.CHECKPOINT_SECONDS)
    timed = lmmvae.fit(data_file, out=tmp_path / "timed", **settings)
    assert_same_weights(every, timed)
    assert history(tmp_path / "every") == history(tmp_path / "timed")
    a = torch.load(tmp_path / "every" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "timed" / "checkpoint.pt", weights_only=True)
    assert torch.equal(a["torch_rng"], b["torch_rng"]) and torch.equal(a["generator"], b["generator"])


def test_killed_run_resumes_from_an_older_checkpoint_to_the_same_run(data_file, tmp_path, clock, writes,
                                                                    monkeypatch):
    """Killed during epoch 9, its last checkpoint at epoch 7 (5 s an epoch): the resumed run redoes
    epochs 8-10 with the random states of epoch 7 and ends where an uninterrupted run ends."""
    settings = dict(SETTINGS, epochs=10, patience=0, seed=2)
    whole = lmmvae.fit(data_file, out=tmp_path / "whole", **settings)
    writes.clear()
    original = OLMMPrior.on_epoch_start

    def killed_in_ninth_epoch(self, model, data):
        if clock["trainer"].state.epoch == 8:
            raise KeyboardInterrupt("killed")
        return original(self, model, data)

    monkeypatch.setattr(OLMMPrior, "on_epoch_start", killed_in_ninth_epoch)
    with pytest.raises(KeyboardInterrupt):
        lmmvae.fit(data_file, out=tmp_path / "killed", **settings)
    assert writes == [1, 7] and len(history(tmp_path / "killed")) == 7
    kept = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    monkeypatch.setattr(OLMMPrior, "on_epoch_start", original)
    resumed = lmmvae.fit(data_file, out=tmp_path / "killed", resume=True, **settings)
    assert writes == [1, 7, 8, 10]  # the resumed process writes its first epoch, then by time
    assert_same_weights(whole, resumed)
    assert history(tmp_path / "killed") == history(tmp_path / "whole")
    assert (tmp_path / "killed" / "history.csv").read_text().splitlines()[:8] == kept  # epochs 1-7 kept as written


@pytest.mark.parametrize("objective", ["elbo", "gsnn"])
def test_adam_foreach_steps_are_those_of_the_per_parameter_loop(data_file, tmp_path, monkeypatch, objective):
    """The dense parameters in two Adam groups (networks; the Gaussian's variances at their own lr)."""
    settings = dict(SETTINGS, objective=objective, epochs=5, seed=4, lr_likelihood=0.02)
    monkeypatch.setattr(train, "ADAM_FOREACH", None)  # torch's default on CPU: the loop
    loop = lmmvae.fit(data_file, out=tmp_path / "loop", **settings)
    monkeypatch.setattr(train, "ADAM_FOREACH", True)
    foreach = lmmvae.fit(data_file, out=tmp_path / "foreach", **settings)
    groups = torch.load(tmp_path / "foreach" / "checkpoint.pt", weights_only=True)["optimizers"][0]["param_groups"]
    assert len(groups) == 2 and all(group["foreach"] for group in groups)
    assert_same_weights(loop, foreach)
    assert history(tmp_path / "loop") == history(tmp_path / "foreach")
