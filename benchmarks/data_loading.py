"""Data loading: the share of a training epoch spent outside the model's forward/backward pass.

    .venv/bin/python -m benchmarks.data_loading [--device cuda] [--repeats 3] [--quick]

Each training step of ``Trainer._pass`` is split into its phases, timed with a device
synchronisation after each: *load* (the loader draws the batch: index operations on tensors that
already live on the device), *forward* (the objective: encoder, prior, decoder, likelihood),
*backward* (``zero_grad`` + ``loss.backward()``), *optimiser* (Adam and SparseAdam steps) and
*other* (adding the loss terms to the epoch's running sums, kept on the device). The ``check`` column compares the
instrumented step with the trainer's own, uninstrumented ``_pass`` over the same number of steps.

Two settings: Health MNIST at N = 20,000 (conv networks, the paper's setting) and the simulated
tabular data of ``many_subjects`` at 10⁴ subjects (an MLP, where any overhead shows most).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from benchmarks import harness, scaling
from benchmarks.data import health_mnist
from benchmarks.epoch_cost import COMMON as HM_COMMON, MODELS as HM_MODELS, TIMEPOINTS
from benchmarks.harness import Bench, Column
from lmmvae.training.runtime import choose_device

NAME = "data_loading"
PHASES = ("load", "forward", "backward", "optimizer", "other")
MODELS = ("oLMM-VAE", "sLMM-VAE", "VAE")

COLUMNS = [
    Column("data", "data"),
    Column("model", "model"),
    Column("step_ms", "ms / step", "{:.2f}"),
    *[Column(f"{p}_pct", f"{p} %", "{:.1f}") for p in PHASES],
    Column("outside_pct", "outside fwd/bwd %", "{:.1f}"),
    Column("check", "check", "{:.2f}"),
]


def phase_seconds(bench: Bench, steps: int) -> dict[str, float]:
    """Seconds per step in each phase of the trainer's step (mirrors ``Trainer._pass``)."""
    trainer, model, device = bench.trainer, bench.model, bench.device
    config = bench.config
    steps = min(steps, bench.n_batches)
    totals = dict.fromkeys(PHASES, 0.0)
    model.train(True)
    batches = bench.tensors.batches("train", config.batch_size, by=model.prior.batching, shuffle=True,
                                    generator=trainer.generator)
    running = torch.zeros(4, dtype=torch.float64, device=device)  # as the trainer: read once per pass
    for _ in range(steps):
        harness.synchronize(device)
        t0 = time.perf_counter()
        batch = next(batches)
        harness.synchronize(device)
        t1 = time.perf_counter()
        terms = trainer.objective(model, batch, trainer.n_train, **trainer.objective_kwargs)
        harness.synchronize(device)
        t2 = time.perf_counter()
        for opt in trainer.optimizers:
            opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        harness.synchronize(device)
        t3 = time.perf_counter()
        for opt in trainer.optimizers:
            opt.step()
        harness.synchronize(device)
        t4 = time.perf_counter()
        parts = torch.stack([terms.loss * trainer.n_train / batch.scale, terms.reconstruction,
                             terms.kl_local, terms.kl_global]).detach()
        running += parts.to(running.dtype)
        t5 = time.perf_counter()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            totals[phase] += seconds
    running.tolist()
    return {phase: seconds / steps for phase, seconds in totals.items()}


def measure(label: str, data_name: str, bench: Bench, steps: int, repeats: int) -> dict:
    harness.time_steps(bench, 2)  # warm-up
    phases = {p: [] for p in PHASES}
    plain = []
    for _ in range(repeats):
        for phase, seconds in phase_seconds(bench, steps).items():
            phases[phase].append(seconds)
        plain.append(harness.time_steps(bench, steps))
    per_phase = {p: statistics.median(v) for p, v in phases.items()}
    step = sum(per_phase.values())
    row = {"data": data_name, "model": label, "step_ms": 1000 * step, "n_batches": bench.n_batches,
           "steps_timed": min(steps, bench.n_batches), "repeats": repeats,
           "loader_epoch_s": bench.loader_seconds, "trainer_step_ms": 1000 * statistics.median(plain)}
    for p in PHASES:
        row[f"{p}_pct"] = 100 * per_phase[p] / step
    row["outside_pct"] = 100 - row["forward_pct"] - row["backward_pct"]
    row["check"] = row["trainer_step_ms"] / row["step_ms"]
    return row


def run(device: str = "cpu", hm_obs: int = 20_000, tab_obs: int = 200_000, tab_subjects: int = 10_000,
        repeats: int = 3, hm_steps: int = 8, tab_steps: int = 200, command: str = "") -> harness.Result:
    device = choose_device(device)
    rows, notes = [], []
    def tabular(label: str) -> dict:
        if label == "VAE":
            return {**scaling.COMMON, "variant": "vae"}
        if label == "sLMM-VAE":
            return {**scaling.COMMON, "variant": "slmm", "design": "~ time + x0 + x1"}
        return {**scaling.COMMON, "variant": "olmm", "design": scaling.design_formula(2)}

    settings = [
        (f"Health MNIST N={hm_obs:,}",
         lambda: health_mnist(hm_obs // TIMEPOINTS, TIMEPOINTS, cache=harness.RESULTS / "data"),
         lambda label: {**HM_COMMON, **HM_MODELS[label]}, hm_steps),
        (f"simulated N={tab_obs:,}, P={tab_subjects:,}", lambda: scaling.simulated(tab_obs, tab_subjects, 2),
         tabular, tab_steps),
    ]
    for data_name, make_data, model_settings, steps in settings:
        data = make_data()
        for label in MODELS:
            if not harness.registered(model_settings(label)["variant"]):
                notes.append(f"{label} on {data_name}: variant not registered in this checkout; not measured")
                continue
            bench = harness.prepare(label, data, device, **model_settings(label))
            rows.append({**measure(label, data_name, bench, steps, repeats), "device": str(device)})
            del bench
    notes.append(f"Per-step phase times, median of {repeats} repeats of {hm_steps} (Health MNIST) or "
                 f"{tab_steps} (simulated) steps. outside fwd/bwd = load + optimizer + other. "
                 "check = the trainer's uninstrumented step time / the instrumented one (≈ 1: the phases "
                 "account for the step).")
    return harness.Result(NAME, rows, harness.markdown_table(rows, COLUMNS), command,
                          harness.describe_machine(device), notes)


def main(argv=None) -> harness.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_arguments(parser)
    args = parser.parse_args(argv)
    harness.apply_threads(args.threads)
    command = ("python -m benchmarks.data_loading " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    if args.quick:
        result = run(args.device, hm_obs=40, tab_obs=400, tab_subjects=20, repeats=1, hm_steps=1, tab_steps=2,
                     command=command)
    else:
        result = run(args.device, repeats=args.repeats or 3, command=command)
    print(result.markdown())
    print(f"CSV: {harness.write_csv(result.rows, harness.csv_path(NAME, choose_device(args.device), args.out))}")
    return result


if __name__ == "__main__":
    main()
