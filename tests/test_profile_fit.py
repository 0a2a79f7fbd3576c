"""benchmarks/profile_fit.py: its exclusive phase accounting (a fake clock), and that profiling a fit
neither changes what it computes nor loses time (the phases add up to the trainer's wall time)."""

import types

import pytest
import torch

import lmmvae
from benchmarks import profile_fit
from benchmarks.profile_fit import PHASES, PhaseTimer
from lmmvae.data.h5 import write_h5
from simulate import simulate_lmm

SETTINGS = dict(variant="olmm", design="~ time + sex + (1 | id)", latent_dim=2, network="mlp", batch_size=32,
                lr=0.005)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_h5(simulate_lmm(n_subjects=16, n_times=6, n_future=2), tmp_path_factory.mktemp("d") / "sim.h5")


def test_phase_timer_counts_each_second_for_the_innermost_phase(monkeypatch):
    now = {"t": 0.0}
    monkeypatch.setattr(profile_fit, "time", types.SimpleNamespace(perf_counter=lambda: now["t"]))
    timer = PhaseTimer(torch.device("cpu"))

    def tick(seconds):
        now["t"] += seconds

    with timer.phase("other"):
        tick(1)
        with timer.phase("forward"):
            tick(2)
            with timer.phase("backward"):
                tick(4)
            tick(8)
        with timer.phase("validation"):  # absorbing: its inner phases are the validation pass
            tick(16)
            with timer.phase("forward"):
                tick(32)
            for _ in timer.batches(iter([1, 2])):
                tick(64)
        tick(128)
    assert dict(timer.seconds) == {"other": 1 + 128, "forward": 2 + 8, "backward": 4,
                                   "validation": 16 + 32 + 64 * 2}
    # outside any phase, nothing is counted; a draw outside an absorbing phase is batching
    tick(1000)
    with timer.phase("step rest"):
        for _ in timer.batches(iter([1])):
            tick(3)
    assert timer.seconds["step rest"] == 3 and "batching" in timer.seconds


def test_profiled_fit_is_the_same_fit_and_its_phases_add_up(data_file, tmp_path):
    plain = lmmvae.fit(data_file, out=tmp_path / "plain", seed=0, epochs=4, progress=False, **SETTINGS)
    timer = PhaseTimer(torch.device("cpu"))
    trainers, backward = [], torch.Tensor.backward
    with profile_fit.profiled(timer, before=True, trainers=trainers):
        profiled = lmmvae.fit(data_file, out=tmp_path / "profiled", seed=0, epochs=4, progress=False, **SETTINGS)
    for (name, a), b in zip(plain.model.state_dict().items(), profiled.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert trainers[0].checkpoint_writes == 4  # every epoch, as before
    assert all(group["foreach"] is None for group in trainers[0].optimizers[0].param_groups)
    assert set(timer.seconds) <= set(PHASES) and all(timer.seconds[p] > 0 for p in
                                                      ("forward", "backward", "optimiser", "batching",
                                                       "validation", "checkpoint", "hook", "step rest"))
    # the library is as it was once the block ends
    assert lmmvae.api.Trainer is lmmvae.training.train.Trainer and torch.Tensor.backward is backward


def test_profile_rows_are_shares_that_sum_to_one(data_file):
    settings = {**SETTINGS, "nll_samples": 10, "predict_samples": 5}
    runs = [profile_fit.fit_once(data_file, settings, 3, torch.device("cpu")) for _ in range(2)]
    row = profile_fit.profile_row("sim", runs)
    assert sum(row[f"share_{p}"] for p in PHASES) == pytest.approx(1.0)
    assert row["epochs"] == 3 and row["writes"] == 2  # by time: after epoch 1 and at the end
    assert row["eval_epochs"] > 0 and 0 < row["eval_draws"] + row["eval_nll"] <= 1


def test_compare_times_the_trainer_before_and_after(data_file):
    result = profile_fit.compare({"sim": (data_file, SETTINGS)}, epochs=3, repeats=1)
    (row,) = result.rows
    assert row["writes"] == "3 / 2" and row["before_s"] > 0 and row["after_s"] > 0
    assert "| sim | 3 |" in result.table
