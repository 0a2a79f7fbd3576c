"""Mixed precision and torch.compile: seconds per training epoch of the VAE and oLMM-VAE
on Health MNIST in float32 and bfloat16 (config ``precision``), each with and without
``compile: true``, interleaved in one run.

    .venv/bin/python -m benchmarks.precision [--device cuda] [--sizes 2000] [--models VAE oLMM-VAE]
        [--settings fp32 bf16 fp32+compile bf16+compile] [--repeats 3] [--steps 0] [--quick]

The networks, designs and batch size are those of :mod:`benchmarks.epoch_cost`. Before timing, every
model trains one whole epoch, whose time is reported as "first epoch s": for a compiled model it
holds the compilation (and the recompilation for the last, smaller batch), which a run pays once.
The ratio column is each setting's epoch time over the same model's float32 epoch in the same run.
A setting that fails (``torch.compile`` without a working C++ compiler, say) is reported as a note.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks import harness
from benchmarks.data import health_mnist
from benchmarks.epoch_cost import COMMON, MODELS, TIMEPOINTS
from benchmarks.harness import Column
from lmmvae.atomic import write_text
from lmmvae.training.runtime import choose_device

NAME = "precision"
SETTINGS = {
    "fp32": {"precision": "float32"},
    "bf16": {"precision": "bfloat16"},
    "fp32+compile": {"precision": "float32", "compile": True},
    "bf16+compile": {"precision": "bfloat16", "compile": True},
}
BASE = "fp32"

COLUMNS = [
    Column("n_obs", "N", "{:,}"),
    Column("model", "model"),
    Column("setting", "setting"),
    Column("epoch_s", "s / epoch", "{:.3g}"),
    Column("ratio_fp32", "× fp32", "{:.2f}"),
    Column("step_ms", "ms / step", "{:.1f}"),
    Column("images_s", "images / s", "{:,.0f}"),
    Column("first_epoch_s", "first epoch s", "{:.3g}"),
    Column("n_batches", "steps / epoch"),
    Column("steps_timed", "timed"),
]


def warm(bench: harness.Bench) -> float:
    """One whole training epoch (compilation included); its seconds."""
    harness.synchronize(bench.device)
    start = time.perf_counter()
    bench.model.start_epoch(bench.tensors)
    bench.trainer._pass("train", train=True)
    harness.synchronize(bench.device)
    return time.perf_counter() - start


def run(device: str = "cpu", sizes=(2_000,), models=("VAE", "oLMM-VAE"), settings=tuple(SETTINGS),
        repeats: int = 3, steps: int | None = None, budget: float | None = 20.0,
        cache=harness.RESULTS / "data", command: str = "") -> harness.Result:
    device = choose_device(device)
    rows, notes = [], []
    for n_obs in sizes:
        data = health_mnist(n_obs // TIMEPOINTS, TIMEPOINTS, cache=cache)
        benches, first = [], {}
        for model in models:
            for setting in settings:
                label = f"{model} [{setting}]"
                try:
                    bench = harness.prepare(label, data, device, **COMMON, **MODELS[model], **SETTINGS[setting])
                    first[label] = warm(bench)
                except Exception as err:  # noqa: BLE001 - a setting that cannot run here is a finding
                    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                    notes.append(f"N = {n_obs:,}, {label}: failed ({type(err).__name__}: {reason})")
                    continue
                bench.extra.update(model=model, setting=setting)
                benches.append(bench)
        timing = harness.time_epochs(benches, steps, repeats, warmup=1, budget=budget)
        base = {b.extra["model"]: timing[b.name].epoch_seconds for b in benches if b.extra["setting"] == BASE}
        for bench in benches:
            t, model = timing[bench.name], bench.extra["model"]
            rows.append({
                "n_obs": data.n_obs, "n_train": bench.trainer.n_train, "model": model,
                "setting": bench.extra["setting"], "epoch_s": t.epoch_seconds,
                "ratio_fp32": t.epoch_seconds / base.get(model, float("nan")),
                "step_ms": 1000 * t.step_seconds, "images_s": bench.trainer.n_train / t.epoch_seconds,
                "first_epoch_s": first[bench.name], "n_batches": t.n_batches, "steps_timed": t.steps_timed,
                "repeats": repeats, "epoch_s_repeats": " ".join(f"{x:.4g}" for x in t.repeats),
                "device": str(device),
            })
        del benches
        if device.type == "cuda":
            torch.cuda.empty_cache()
    timed = f"the first {steps} steps, scaled to all training batches" if steps else "whole training epochs"
    notes.append(f"Epoch = epoch-start hook + {timed}; median of {repeats} interleaved repeats after one "
                 "warm-up epoch (first epoch s: compilation included). bf16 = `precision: bfloat16` (the "
                 "networks under autocast, everything else float32); compile = `compile: true`.")
    return harness.Result(NAME, rows, harness.markdown_table(rows, COLUMNS), command,
                          harness.describe_machine(device), notes)


def main(argv=None) -> harness.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000], help="observations (multiples of 20)")
    parser.add_argument("--models", nargs="+", default=["VAE", "oLMM-VAE"], choices=list(MODELS))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=0, help="steps timed per repeat (0: whole epochs)")
    parser.add_argument("--budget", type=float, default=20.0, help="at most this many seconds of steps per repeat")
    parser.add_argument("--markdown", default=None, help="also write the table (with command and notes) here")
    args = parser.parse_args(argv)
    harness.apply_threads(args.threads)
    command = ("python -m benchmarks.precision " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    if args.quick:
        result = run(args.device, sizes=(40,), models=args.models, settings=args.settings, repeats=1, steps=1,
                     command=command)
    else:
        result = run(args.device, sizes=args.sizes, models=args.models, settings=args.settings,
                     repeats=args.repeats or 3, steps=args.steps or None, budget=args.budget, command=command)
    print(result.markdown())
    print(f"CSV: {harness.write_csv(result.rows, harness.csv_path(NAME, choose_device(args.device), args.out))}")
    if args.markdown:
        write_text(result.markdown() + "\n", Path(args.markdown))
    return result


if __name__ == "__main__":
    main()
