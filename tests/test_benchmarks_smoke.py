"""Benchmarks are not tests: this runs each script at toy size (smoke), and checks the pieces of the
harness whose numbers could silently be wrong (memory accounting, per-epoch scaling, BENCHMARKS.md
block replacement)."""

import csv
import math

import numpy as np
import pytest
import torch

from benchmarks import harness, run_all
from benchmarks.data import design_formula, simulate


def test_smoke_run_all_quick(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    markdown = tmp_path / "BENCH.md"
    markdown.write_text("# Benchmarks\n\nreading kept\n\n<!-- BEGIN many_subjects -->\nold\n<!-- END many_subjects -->\n")
    threads = torch.get_num_threads()
    try:
        run_all.main(["--quick", "--threads", "1", "--markdown", str(markdown)])
    finally:
        torch.set_num_threads(threads)  # the rest of the suite keeps its threads
    text = markdown.read_text()
    assert "reading kept" in text and "\nold\n" not in text
    for name in run_all.SCRIPTS:
        assert f"<!-- BEGIN {name} -->" in text
        with open(tmp_path / "results" / "benchmarks" / f"{name}.csv") as f:
            rows = list(csv.DictReader(f))
        assert rows, name
        for row in rows:
            if "epoch_s" in row:
                assert 0 < float(row["epoch_s"]) < 60
            if "peak_mb" in row:
                assert float(row["peak_mb"]) >= float(row["resident_mb"]) > 0
    assert text.count("<!-- BEGIN run_all -->") == 1


def test_replace_block_keeps_the_rest_and_appends_new_blocks():
    text = "intro\n<!-- BEGIN a -->\nx\n<!-- END a -->\noutro\n"
    out = run_all.replace_block(text, "a", "new table")
    assert out == "intro\n<!-- BEGIN a -->\nnew table\n<!-- END a -->\noutro\n"
    out = run_all.replace_block(out, "b", "t2")
    assert out.startswith("intro\n<!-- BEGIN a -->\nnew table") and out.endswith("<!-- BEGIN b -->\nt2\n<!-- END b -->\n")


@pytest.fixture(scope="module")
def bench():
    torch.manual_seed(0)
    data = simulate(600, 30, n_covariates=3, data_dim=8)
    return harness.prepare("olmm", data, "cpu", variant="olmm", design=design_formula(3), network="mlp",
                           latent_dim=4, batch_size=100)


def test_resident_bytes_count_data_and_model_state_exactly(bench):
    harness.time_steps(bench, 2)  # creates the optimiser state
    for opt in bench.trainer.optimizers:
        opt.zero_grad(set_to_none=True)
    data_bytes, model_bytes = harness.resident_bytes(bench)
    t = bench.tensors
    n, d = t.y.shape
    expected_data = (t.y.numel() * 4 + t.mask.numel() * 4 + t.split.numel() * 8 + t.x.shared.numel() * 4
                     + sum(v.numel() * 8 for v in t.x.levels) + sum(v.numel() * 4 for v in t.x.values)
                     + sum(v.numel() * v.element_size() for v in t.covariates.values()))
    # subject is the id covariate's storage (shared, counted once); sorted subject groups may be cached
    for order, offsets, counts in t._groups.values():
        expected_data += (order.numel() + offsets.numel() + counts.numel()) * 8
    assert data_bytes == expected_data
    params = sum(p.numel() * p.element_size() for p in bench.model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in bench.model.buffers())
    # Adam and SparseAdam keep two moments per parameter (+ a scalar step for Adam)
    moments = 2 * params
    steps = sum(s["step"].numel() * s["step"].element_size()
                for s in bench.trainer.optimizers[0].state.values() if torch.is_tensor(s.get("step")))
    assert model_bytes == params + buffers + moments + steps


def test_cpu_step_peak_sees_a_known_allocation():
    """A 'prior' hook that allocates 8 MB and keeps it for the step shows up in step_mb."""
    data = simulate(200, 10, n_covariates=1, data_dim=4)
    b = harness.prepare("olmm", data, "cpu", variant="olmm", design=design_formula(1), network="mlp",
                        latent_dim=2, batch_size=50)
    harness.time_steps(b, 1)
    base = harness.measure_memory(b)["step_mb"]
    kept = []
    b.model.prior.on_epoch_start = lambda model, tensors: kept.append(torch.ones(2 * 2**20))  # 8 MiB float32
    with_hook = harness.measure_memory(b)["step_mb"]
    assert with_hook - base == pytest.approx(8.0, abs=0.5)


def test_time_epochs_scales_steps_to_the_epoch(bench):
    timing = harness.time_epochs([bench], steps=2, repeats=1, warmup=1)[bench.name]
    assert timing.n_batches == math.ceil(600 / 100)
    assert timing.epoch_seconds == pytest.approx(timing.hook_seconds + timing.n_batches * timing.step_seconds)


def test_simulate_balances_subjects_and_runs_time_within_subject():
    data = simulate(1000, 300, n_covariates=2, data_dim=5)
    ids = data.covariates["id"].values
    counts = np.bincount(ids)
    assert counts.min() >= 3 and counts.max() <= 4 and len(counts) == 300
    time_ = data.covariates["time"].values
    first = np.r_[True, ids[1:] != ids[:-1]]
    last = np.r_[ids[1:] != ids[:-1], True]
    assert np.all(time_[first] == 0) and np.all(time_[last] == 1)
    assert data.y.shape == (1000, 5) and set(data.covariates) == {"time", "id", "x0", "x1"}


def test_batch_covariates_gather_on_access_and_equal_the_eager_rows(bench):
    """The loader's fix from the many-covariates benchmark: same values, gathered only when read."""
    t = bench.tensors
    index = torch.tensor([5, 0, 599, 17])
    batch = t.batch(index)
    assert len(batch.covariates._rows) == 0  # nothing gathered yet
    assert set(batch.covariates) == set(t.covariates) and len(batch.covariates) == len(t.covariates)
    assert torch.equal(batch.covariates["x1"], t.covariates["x1"][index])
    assert set(batch.covariates._rows) == {"x1"}
    eager = {k: v[index] for k, v in t.covariates.items()}
    assert all(torch.equal(batch.covariates[k], eager[k]) for k in eager)
    with pytest.raises(KeyError):
        batch.covariates["no_such_covariate"]
