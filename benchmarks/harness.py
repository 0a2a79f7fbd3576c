"""What every benchmark shares: a model built exactly as ``lmmvae.fit`` builds it, epochs timed
through the trainer's own training pass, peak memory, and tables (markdown + CSV).

One epoch = the model's ``start_epoch`` hook (the prior's per-epoch state) plus ``Trainer._pass("train", ...)`` (what
``Trainer.fit`` does per epoch, less the validation pass and the checkpoint). Where a whole epoch is
too dear to repeat, the first ``steps`` batches of an epoch are timed and the per-step time is
multiplied by the epoch's number of batches (the hook is timed whole and added once).

Peak memory is measured over the hook and one training step, as three numbers:

* ``resident``: bytes of the tensors alive before the step (the data on the device, parameters,
  buffers and caches of the model, gradients, optimiser state);
* ``step``: the peak of the bytes allocated on top of that during the step (activations,
  temporaries, new gradients);
* ``peak = resident + step``.

On CUDA these come from the caching allocator's counters (``torch.cuda.max_memory_allocated``); on
CPU from the allocation events of ``torch.profiler`` (``profile_memory=True``), which see every
tensor allocation and free, for the step, and from walking the bench's objects, for ``resident``.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from lmmvae.atomic import atomic_output
from lmmvae.config import ModelConfig
from lmmvae.data.h5 import LongitudinalData
from lmmvae.data.loader import TensorData
from lmmvae.training.assemble import assemble
from lmmvae.training.checks import config_from_dict
from lmmvae.training.runtime import choose_device
from lmmvae.training.train import Trainer

MB = 2**20
RESULTS = Path("results") / "benchmarks"


# -- devices -----------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_machine(device: torch.device) -> str:
    """One line: the processor (or GPU) the numbers were taken on, and the torch build."""
    if device.type == "cuda":
        what = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        what = f"CPU {_cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{what}; torch {torch.__version__}, Python {platform.python_version()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- building ----------------------------------------------------------------------------------
def registered(variant: str) -> bool:
    """Whether ``variant`` is in the registry (the baselines may be absent from a checkout)."""
    from lmmvae.model import variants

    return variant in variants.names()


@dataclass
class Bench:
    """One model on one data set, ready to train (no run directory, no progress bar)."""

    name: str
    model: nn.Module
    trainer: Trainer
    tensors: TensorData
    config: ModelConfig
    device: torch.device
    n_batches: int  # batches in one training epoch
    loader_seconds: float  # time to draw every batch of one epoch, nothing else
    extra: dict[str, Any] = field(default_factory=dict)


def prepare(name: str, data: LongitudinalData, device: str | torch.device = "cpu", seed: int = 0,
            **settings) -> Bench:
    """Build model, design and tensors with :func:`lmmvae.training.assemble.assemble`, as
    :func:`lmmvae.api.fit` does, for ``settings`` (model-config keys)."""
    device = choose_device(str(device))
    config = config_from_dict({**settings, "device": str(device)}, where=f"benchmark model {name}")
    built = assemble(config, data, seed=seed, device=device)
    trainer = Trainer(built.model, built.tensors, config, built.generator, progress=False)
    n_batches, loader_seconds = _draw_epoch(built.tensors, config, built.model, device)
    return Bench(name, built.model, trainer, built.tensors, config, device, n_batches, loader_seconds)


def _draw_epoch(tensors: TensorData, config: ModelConfig, model: nn.Module, device: torch.device):
    generator = torch.Generator().manual_seed(1)
    synchronize(device)
    start = time.perf_counter()
    n = 0
    for batch in tensors.batches("train", config.batch_size, by=model.prior.batching, shuffle=True,
                                 generator=generator):
        n += 1
    synchronize(device)
    return n, time.perf_counter() - start


class _FirstBatches:
    """The bench's :class:`TensorData`, whose ``batches`` stop after ``n`` batches, or earlier once
    ``budget`` seconds have passed (always at least one batch); ``drawn`` counts what was yielded."""

    def __init__(self, data: TensorData, n: int, budget: float | None = None):
        self._data, self._n, self._budget = data, n, budget
        self.drawn = 0

    def __getattr__(self, name: str):
        return getattr(self._data, name)

    def batches(self, *args, **kwargs):
        start = time.perf_counter()
        for batch in itertools.islice(self._data.batches(*args, **kwargs), self._n):
            if self.drawn and self._budget is not None and time.perf_counter() - start > self._budget:
                return
            self.drawn += 1
            yield batch


# -- timing ------------------------------------------------------------------------------------
def time_hook(bench: Bench) -> float:
    """Seconds of the model's ``start_epoch`` (GPPVAE refreshes its cache there)."""
    synchronize(bench.device)
    start = time.perf_counter()
    bench.model.start_epoch(bench.tensors)
    synchronize(bench.device)
    return time.perf_counter() - start


def time_steps(bench: Bench, steps: int | None, budget: float | None = None) -> float:
    """Seconds per training step over the first ``steps`` batches of an epoch (``None``: all), or as
    many as fit in ``budget`` seconds, through ``Trainer._pass`` itself."""
    trainer = bench.trainer
    n = bench.n_batches if steps is None else min(steps, bench.n_batches)
    limited = _FirstBatches(bench.tensors, n, budget)
    trainer.data = limited
    try:
        synchronize(bench.device)
        start = time.perf_counter()
        trainer._pass("train", train=True)
        synchronize(bench.device)
        bench.extra["steps_drawn"] = limited.drawn
        return (time.perf_counter() - start) / max(limited.drawn, 1)
    finally:
        trainer.data = bench.tensors


@dataclass
class EpochTiming:
    name: str
    epoch_seconds: float  # median hook + n_batches x median step
    step_seconds: float  # median over repeats
    hook_seconds: float  # median over repeats
    n_batches: int
    repeats: list[float]  # epoch estimate of each repeat
    steps_timed: int  # fewest steps timed in one repeat


def time_epochs(benches: list[Bench], steps: int | None, repeats: int, warmup: int = 2,
                budget: float | None = None) -> dict[str, EpochTiming]:
    """Interleaved timing: every repeat times each bench once, in a rotated order, so that a burst of
    load on a shared machine falls on all models alike; medians over repeats. ``budget`` caps the
    seconds of steps per repeat (slow baselines then time fewer steps)."""
    for bench in benches:
        time_hook(bench)
        time_steps(bench, warmup, budget)  # first steps: allocator warm-up, optimiser state creation
    hooks: dict[str, list[float]] = {b.name: [] for b in benches}
    step_times: dict[str, list[float]] = {b.name: [] for b in benches}
    drawn: dict[str, list[int]] = {b.name: [] for b in benches}
    for r in range(repeats):
        shift = r % len(benches)
        for bench in benches[shift:] + benches[:shift]:
            hooks[bench.name].append(time_hook(bench))
            step_times[bench.name].append(time_steps(bench, steps, budget))
            drawn[bench.name].append(bench.extra["steps_drawn"])
    out = {}
    for bench in benches:
        hook, step = statistics.median(hooks[bench.name]), statistics.median(step_times[bench.name])
        each = [h + s * bench.n_batches for h, s in zip(hooks[bench.name], step_times[bench.name])]
        out[bench.name] = EpochTiming(bench.name, hook + step * bench.n_batches, step, hook, bench.n_batches, each,
                                       min(drawn[bench.name]))
    return out


# -- memory ------------------------------------------------------------------------------------
def _storages(tensor: torch.Tensor) -> Iterable[tuple[int, int]]:
    """``(data_ptr, nbytes)`` of the storages behind ``tensor`` (both parts of a sparse tensor)."""
    if tensor.layout != torch.strided:
        if tensor.is_sparse:
            yield from _storages(tensor._indices())
            yield from _storages(tensor._values())
        return
    storage = tensor.untyped_storage()
    yield storage.data_ptr(), storage.nbytes()


def _walk(obj: Any, found: dict[int, int], depth: int = 0) -> None:
    if isinstance(obj, torch.Tensor):
        for ptr, size in _storages(obj):
            found[ptr] = size
        if isinstance(obj, nn.Parameter) and obj.grad is not None:
            _walk(obj.grad, found, depth + 1)
    elif depth > 4:
        return
    elif isinstance(obj, dict):
        for value in obj.values():
            _walk(value, found, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _walk(value, found, depth + 1)
    elif hasattr(obj, "__dataclass_fields__"):
        _walk(vars(obj), found, depth + 1)


def resident_bytes(bench: Bench) -> tuple[int, int]:
    """Bytes of the distinct tensor storages held by the bench: ``(data, model)``, where data is
    what :class:`TensorData` holds on the device and model is parameters, buffers, tensors kept as
    module attributes (caches), gradients and optimiser state."""
    data: dict[int, int] = {}
    _walk(vars(bench.tensors), data)
    model: dict[int, int] = {}
    for module in bench.model.modules():
        _walk(vars(module), model)
    for optimizer in bench.trainer.optimizers:
        _walk(list(optimizer.state.values()), model)
    return sum(data.values()), sum(size for ptr, size in model.items() if ptr not in data)


def measure_memory(bench: Bench) -> dict[str, float]:
    """``resident_mb`` (``data_mb`` + ``model_mb``), ``step_mb`` and ``peak_mb`` over the hook and
    one training step. Gradients are dropped first (as the step's ``zero_grad`` would): the step
    counts the ones it makes, and a CPU profile cannot see frees of blocks allocated before it."""
    for optimizer in bench.trainer.optimizers:
        optimizer.zero_grad(set_to_none=True)
    data, model = resident_bytes(bench)
    sizes = {"data_mb": data / MB, "model_mb": model / MB}
    if bench.device.type == "cuda":
        synchronize(bench.device)
        torch.cuda.reset_peak_memory_stats(bench.device)
        base = torch.cuda.memory_allocated(bench.device)
        bench.model.start_epoch(bench.tensors)
        time_steps(bench, 1)
        # other benches of the same run share the device: count this bench's own tensors only
        step = torch.cuda.max_memory_allocated(bench.device) - base
    else:
        step = _cpu_step_peak(bench)
    return {"resident_mb": (data + model) / MB, **sizes, "step_mb": step / MB, "peak_mb": (data + model + step) / MB}


def _cpu_step_peak(bench: Bench) -> float:
    """Peak of (allocated − freed) bytes during the hook and one step, from profiler events."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                         with_stack=True) as prof:
                bench.model.start_epoch(bench.tensors)
                time_steps(bench, 1)
            timeline = prof._memory_profile().timeline  # (time, action, key, bytes)
    except Exception as err:  # a private profiler API: report no number rather than a wrong one
        warnings.warn(f"CPU memory profile failed ({type(err).__name__}: {err}); reporting NaN")
        return math.nan
    current = peak = 0
    for _, action, _, size in sorted(timeline, key=lambda event: event[0]):
        if action.name == "CREATE":
            current += size
        elif action.name == "DESTROY":
            current -= size
        peak = max(peak, current)
    return float(peak)


# -- tables ------------------------------------------------------------------------------------
@dataclass
class Column:
    key: str
    header: str
    fmt: str | Callable[[Any], str] = "{}"

    def render(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return self.fmt(value) if callable(self.fmt) else self.fmt.format(value)


def markdown_table(rows: list[dict], columns: list[Column]) -> str:
    lines = ["| " + " | ".join(c.header for c in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(c.render(row.get(c.key)) for c in columns) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """All keys of all rows, written to a temporary name and renamed."""
    path = Path(path)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass
class Result:
    """What a benchmark script hands back: rows (CSV), the markdown table, and how it was made."""

    name: str
    rows: list[dict]
    table: str
    command: str
    machine: str
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"Command: `{self.command}`  ", f"Machine: {self.machine}", "", self.table]
        if self.notes:
            parts += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(parts)


def add_common_arguments(parser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per model (median reported)")
    parser.add_argument("--quick", action="store_true", help="toy sizes (seconds): a smoke run of the script")
    parser.add_argument("--out", default=None, help="CSV path (default: results/benchmarks/<name>[-cuda].csv)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core)")


def apply_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (on a machine shared with other jobs, 1 thread avoids the
    stalls of OpenMP barriers whose threads have been descheduled)."""
    if threads:
        torch.set_num_threads(threads)


def csv_path(name: str, device: torch.device, out: str | None) -> Path:
    if out:
        return Path(out)
    suffix = "" if device.type == "cpu" else f"-{device.type}"
    return RESULTS / f"{name}{suffix}.csv"
