"""The sweep behind ``many_subjects`` and ``many_covariates``: oLMM-VAE's epoch time and memory on
simulated data (:func:`benchmarks.data.simulate`) as one size grows, everything else fixed, with a
plain VAE (on the data of the first size; it ignores subjects and covariates) as the floor.

Networks: the ``mlp`` encoder/decoder on ``D = 32`` features, ``L = 16``, batches of 256, Gaussian
likelihood. A small network is the hard case for the claim: the prior's share of a step is largest.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import torch

from benchmarks import harness
from benchmarks.data import design_formula, simulate
from benchmarks.harness import Column
from lmmvae.training.runtime import choose_device

COMMON = {"network": "mlp", "likelihood": "gaussian", "latent_dim": 16, "batch_size": 256}
DATA_DIM = 32
TOLERANCE = 1.2  # the target: oLMM-VAE's epoch time and memory within 1.2x across the sweep


def columns(key: str, header: str) -> list[Column]:
    return [
        Column(key, header, "{:,}"),
        Column("model", "model"),
        Column("epoch_s", "s / epoch", "{:.3g}"),
        Column("ratio_first", "× first", "{:.2f}"),
        Column("ratio_vae", "× VAE", "{:.2f}"),
        Column("step_ms", "ms / step", "{:.2f}"),
        Column("step_mb", "step MB", "{:.1f}"),
        Column("model_mb", "model MB", "{:.1f}"),
        Column("data_mb", "data MB", "{:.1f}"),
        Column("peak_mb", "peak MB", "{:.1f}"),
    ]


def sweep(key: str, values: list[int], make_data: Callable[[int], object], design: Callable[[int], str],
          device: str, repeats: int, steps: int | None) -> list[dict]:
    """oLMM-VAE (and a VAE floor) at each value of ``key``; timings interleaved across all values."""
    device = choose_device(device)
    benches, meta = [], {}
    for value in values:
        data = make_data(value)
        models = [("oLMM-VAE", {"variant": "olmm", "design": design(value)})]
        # the VAE ignores subjects and covariates: one floor is enough
        if value == values[0] and harness.registered("vae"):
            models.append(("VAE", {"variant": "vae"}))
        for label, settings in models:
            name = f"{label}@{value}"
            benches.append(harness.prepare(name, data, device, **COMMON, **settings))
            meta[name] = (label, value, data.n_obs)
    timing = harness.time_epochs(benches, steps, repeats)
    floor = timing[f"VAE@{values[0]}"].epoch_seconds if f"VAE@{values[0]}" in timing else float("nan")
    rows = []
    for bench in benches:
        label, value, n_obs = meta[bench.name]
        t = timing[bench.name]
        first = timing[f"{label}@{values[0]}"].epoch_seconds
        rows.append({
            key: value, "model": label, "n_obs": n_obs, "epoch_s": t.epoch_seconds,
            "ratio_first": t.epoch_seconds / first, "ratio_vae": t.epoch_seconds / floor,
            "step_ms": 1000 * t.step_seconds, "n_batches": t.n_batches, "steps_timed": t.steps_timed,
            "repeats": repeats, "epoch_s_best": min(t.repeats),
            "epoch_s_repeats": " ".join(f"{x:.4g}" for x in t.repeats),
            **harness.measure_memory(bench), "device": str(device),
        })
    if device.type == "cuda":
        torch.cuda.empty_cache()
    first_mem = {r["model"]: r for r in rows if r[key] == values[0]}
    for row in rows:
        base = first_mem[row["model"]]
        row["ratio_step_mb"] = row["step_mb"] / base["step_mb"]
        row["ratio_peak_mb"] = row["peak_mb"] / base["peak_mb"]
    rows.sort(key=lambda r: (r["model"] != "oLMM-VAE", r[key]))
    return rows


def verdict(rows: list[dict], key: str, target: bool = True) -> list[str]:
    """oLMM-VAE's max/min over the sweep; with ``target``, against the issue's 1.2x."""
    lmm = [r for r in rows if r["model"] == "oLMM-VAE"]
    span = f"{lmm[0][key]:,} to {lmm[-1][key]:,} {key.replace('n_', '')}"

    def spread(field: str) -> float:
        vals = [r[field] for r in lmm]
        return max(vals) / min(vals)

    out = []
    measures = (("epoch_s", "epoch time"), ("step_mb", "step (working) memory"),
                ("peak_mb", "peak memory, model state included"))
    for field, what in measures:
        s = spread(field)
        status = f" (target ≤ {TOLERANCE}×: {'met' if s <= TOLERANCE else 'MISSED'})" if target else ""
        out.append(f"oLMM-VAE {what}, max/min over {span}: {s:.2f}×{status}")
    return out


def simulated(n_obs: int, n_subjects: int, n_covariates: int):
    return simulate(n_obs, n_subjects, n_covariates=n_covariates, data_dim=DATA_DIM, seed=0)


__all__ = ["sweep", "verdict", "columns", "simulated", "design_formula"]


def main(name: str, doc: str, run: Callable[..., harness.Result], quick: dict, argv=None) -> harness.Result:
    """The command line shared by the scaling scripts: common options, ``--steps``, and ``--quick``
    (toy sizes ``quick``, one repeat of two steps); prints the table and writes the CSV."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=0, help="steps timed per repeat (0: whole epochs)")
    args = parser.parse_args(argv)
    harness.apply_threads(args.threads)
    command = (f"python -m benchmarks.{name} " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    if args.quick:
        result = run(args.device, repeats=1, steps=2, command=command, **quick)
    else:
        result = run(args.device, repeats=args.repeats or 3, steps=args.steps or None, command=command)
    print(result.markdown())
    print(f"CSV: {harness.write_csv(result.rows, harness.csv_path(name, choose_device(args.device), args.out))}")
    return result
