"""Where a fit's time goes: one fit of each kind in the default run, its epochs split into phases.

    .venv/bin/python -m benchmarks.profile_fit [--epochs 12] [--repeats 2] [--compare] [--quick]

The five fits of config/default.yaml that stand for its 60 training jobs (a tabular ELBO, a tabular
GSNN, a Health MNIST conv, a GPPVAE, an L-VAE), on data built by ``lmmvae data`` with the config's
options, trained for ``--epochs`` epochs by ``lmmvae.fit`` (so by :class:`lmmvae.training.train.Trainer`,
with a run directory, checkpoints and all) with the model YAML the workflow writes for them. The
trainer is timed from outside: its methods, the objective, ``Tensor.backward``, the optimisers and
the batch iterator are wrapped (nothing in the library changes), and each second goes to the
innermost phase running (:class:`PhaseTimer`):

* ``hook``: the epoch-start hooks (the likelihood's warm-up ceiling, the prior's per-epoch state);
* ``batching``: drawing the training batches (``TensorData.batches``);
* ``forward``, ``backward``, ``optimiser`` (``zero_grad`` + ``step``) of the training steps;
* ``step rest``: the rest of the training pass, Python overhead per step (the loop, the sums);
* ``validation``: the whole validation pass (its batches and forwards included);
* ``best copy``: copying the best weights; ``checkpoint``: ``checkpoint.pt`` + ``history.csv``;
* ``other``: the rest of the epoch loop (learning-rate schedule, history row, progress).

Then the run is evaluated as the workflow's fit job does (:func:`lmmvae.answers.evaluate.evaluate`), its
cost split into the predictive draws, the posterior pass, the test NLL (importance-sampled) and the
rest, and given in epochs of the same fit (a ratio that a loaded machine changes less than seconds).
``--before`` profiles the trainer as it was before the profile's cuts (a checkpoint every epoch,
Adam's per-parameter loop on CPU: :func:`as_before`); ``--compare`` times the fits interleaved both
ways and reports s/epoch of each (the cuts keep every number: tests/test_train_checkpoints.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import statistics
import sys
import tempfile
import time
import types
from collections import defaultdict
from pathlib import Path

import torch
import yaml

from benchmarks import harness
from benchmarks.harness import Column
from lmmvae.training.runtime import choose_device

NAME = "profile_fit"
CONFIG = Path(__file__).resolve().parents[1] / "config" / "default.yaml"
DATA = harness.RESULTS / "profile_data"
#: label -> (dataset, model) of config/default.yaml: one fit of each kind of the default run
FITS = {
    "trial oLMM-VAE (ELBO)": ("clinical_trial", "olmm_latent_dim15"),
    "PhysioNet oLMM-VAE (GSNN)": ("physionet", "olmm_gsnn"),
    "Health MNIST oLMM-VAE (conv)": ("health_mnist", "lmm_disease"),
    "Rotating MNIST GPPVAE": ("rotating_mnist", "gppvae"),
    "PhysioNet L-VAE": ("physionet", "lvae"),
}
#: --quick: toy cohorts (instances) instead of the config's; the trial keeps its size (its design
#: names adverse events that a smaller cohort may lack, and it builds in seconds)
QUICK_INSTANCES = {"physionet": 30, "health-mnist": 6, "rotating-mnist": 6}
#: --quick: fewer Monte Carlo draws in the evaluation (the defaults are 1,000 NLL and 500 predictive draws)
QUICK_DRAWS = {"nll_samples": 20, "predict_samples": 10}
PHASES = ["hook", "batching", "forward", "backward", "optimiser", "step rest", "validation", "best copy",
          "checkpoint", "other"]
#: phases whose inner work counts for them (the validation pass's batches and forwards)
ABSORBING = {"validation", "checkpoint", "hook", "evaluation: predictive draws", "evaluation: posterior",
             "evaluation: NLL"}
EVAL_PHASES = ["evaluation: predictive draws", "evaluation: posterior", "evaluation: NLL", "evaluation: rest"]

COLUMNS = [Column("model", "fit"), Column("epochs", "epochs"), Column("epoch_s", "s / epoch", "{:.3g}"),
           *[Column(f"share_{p}", p, "{:.0%}") for p in PHASES],
           Column("eval_epochs", "evaluation (epochs)", "{:.1f}"),
           Column("eval_draws", "eval: draws", "{:.0%}"), Column("eval_nll", "eval: NLL", "{:.0%}")]
COMPARE_COLUMNS = [Column("model", "fit"), Column("epochs", "epochs"),
                   Column("before_s", "s / epoch before", "{:.3g}"),
                   Column("after_s", "s / epoch after", "{:.3g}"),
                   Column("ratio", "after / before", "{:.2f}"),
                   Column("writes", "checkpoints (before / after)")]


class PhaseTimer:
    """Exclusive wall time per phase: a second counts for the innermost phase open then (inside an
    ``ABSORBING`` phase, for that phase). ``wrap`` times a callable, ``batches`` an iterator's draws."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.stack = device, defaultdict(float), []
        self.mark = time.perf_counter()

    def _switch(self) -> None:
        harness.synchronize(self.device)
        now = time.perf_counter()
        if self.stack:
            self.seconds[self.stack[-1]] += now - self.mark
        self.mark = now

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.stack and self.stack[-1] in ABSORBING:
            yield
            return
        self._switch()
        self.stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self.stack.pop()

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)
        return timed

    def batches(self, iterator):
        iterator = iter(iterator)
        while True:
            with self.phase("batching"):
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
            yield batch


class _TimedData:
    """The trainer's TensorData whose ``batches`` draws are timed as ``batching``."""

    def __init__(self, data, timer: PhaseTimer):
        self._data, self._timer = data, timer

    def __getattr__(self, name: str):
        return getattr(self._data, name)

    def batches(self, *args, **kwargs):
        return self._timer.batches(self._data.batches(*args, **kwargs))


def instrument(trainer, timer: PhaseTimer, detail: bool = True) -> None:
    """Wrap one trainer's phases (module docstring) on the instance: the class is untouched.
    ``detail=False``: count the checkpoint writes and time ``fit`` whole, nothing else."""
    trainer.checkpoint_writes = 0
    save = trainer.save_checkpoint

    def counted_save():
        trainer.checkpoint_writes += 1
        save()

    trainer.fit = timer.wrap("other", trainer.fit)
    trainer.save_checkpoint = timer.wrap("checkpoint", counted_save) if detail else counted_save
    if not detail:
        return
    model = trainer.model
    trainer.data = _TimedData(trainer.data, timer)
    trainer.objective = timer.wrap("forward", trainer.objective)
    trainer._pass = timer.wrap("step rest", trainer._pass)
    trainer.validation_loss = timer.wrap("validation", trainer.validation_loss)
    model.start_epoch = timer.wrap("hook", model.start_epoch)
    model.likelihood.start_epoch = timer.wrap("hook", model.likelihood.start_epoch)
    for opt in trainer.optimizers:
        opt.zero_grad = timer.wrap("optimiser", opt.zero_grad)
        opt.step = timer.wrap("optimiser", opt.step)


@contextlib.contextmanager
def as_before(trainer) -> None:
    """The trainer as it was before the profile's cuts, on this instance: a checkpoint every epoch
    and Adam's ``foreach`` left to torch (the per-parameter loop on CPU)."""
    trainer.checkpoint_seconds = 0.0
    for opt in trainer.optimizers:
        if isinstance(opt, torch.optim.Adam):
            opt.defaults["foreach"] = None
            for group in opt.param_groups:
                group["foreach"] = None


@contextlib.contextmanager
def profiled(timer: PhaseTimer, before: bool = False, trainers: list | None = None, detail: bool = True):
    """While open, every Trainer that ``lmmvae.fit`` builds is instrumented (and, ``before``, set
    :func:`as_before`); ``Tensor.backward`` and the best-weights copy are timed.
    ``detail=False``: only ``Trainer.fit`` as a whole (no wrappers in the steps)."""
    from lmmvae import api
    from lmmvae.training import train

    real_trainer, real_backward, real_copy = api.Trainer, torch.Tensor.backward, train.copy

    def make(*args, **kwargs):
        trainer = real_trainer(*args, **kwargs)
        if before:
            as_before(trainer)
        instrument(trainer, timer, detail)
        if trainers is not None:
            trainers.append(trainer)
        return trainer

    api.Trainer = make
    if detail:
        torch.Tensor.backward = timer.wrap("backward", real_backward)
        train.copy = types.SimpleNamespace(deepcopy=timer.wrap("best copy", copy.deepcopy))
    try:
        yield
    finally:
        api.Trainer, torch.Tensor.backward, train.copy = real_trainer, real_backward, real_copy


# -- data and models ---------------------------------------------------------------------------
def _options(options: dict) -> list[str]:
    """{test-fraction: 0.2, quiet: true, mnist: null} -> ["--test-fraction=0.2", "--quiet"] (as the workflow)."""
    return [f"--{str(k).replace('_', '-')}" + ("" if v is True else f"={v}")
            for k, v in options.items() if v is not None and v is not False]


def build_data(spec, quick: bool = False, cache: Path = DATA) -> Path:
    """The data set of ``spec`` (a DatasetSpec of the plan) built by ``lmmvae data`` (its synthetic
    raw cohort first where it reads one), cached under a name that hashes the spec."""
    from lmmvae.cli import main as lmmvae_main

    synthetic, options = dict(spec.synthetic), dict(spec.options)
    if quick and spec.generator in QUICK_INSTANCES:
        (synthetic if spec.needs_raw else options)["instances"] = QUICK_INSTANCES[spec.generator]
    key = hashlib.sha256(repr((spec.generator, synthetic, options, spec.raw)).encode()).hexdigest()[:10]
    out = cache / f"{spec.name}-{key}.h5"
    if out.exists():
        return out
    raw = []
    if spec.needs_raw:
        raw_dir = Path(spec.raw) if spec.raw else cache / f"raw-{spec.name}-{key}"
        if not spec.raw and not raw_dir.exists():
            rc = lmmvae_main(["data", f"{spec.generator}-synthetic", *_options(synthetic), "--out-dir", str(raw_dir)])
            if rc:
                raise RuntimeError(f"lmmvae data {spec.generator}-synthetic failed ({rc})")
        raw = ["--raw", str(raw_dir)]
    if lmmvae_main(["data", spec.generator, *raw, *_options(options), "--out", str(out)]):
        raise RuntimeError(f"lmmvae data {spec.generator} failed")
    return out


def load_fits(config: Path = CONFIG, quick: bool = False, fits: dict | None = None) -> dict[str, tuple[Path, dict]]:
    """label -> (data file, model settings) of each profiled fit, from the workflow's plan of ``config``."""
    from lmmvae.reporting.experiments import load_plan

    plan = load_plan(yaml.safe_load(Path(config).read_text()))
    out = {}
    for label, (dataset, model) in (fits or FITS).items():
        settings = yaml.safe_load(plan.training_yaml(dataset, plan.training_names[(dataset, model)]))
        if quick:
            settings.update(QUICK_DRAWS)
        out[label] = (build_data(plan.datasets[dataset], quick), settings)
    return out


# -- timing ------------------------------------------------------------------------------------
def fit_once(data_path: Path, settings: dict, epochs: int, device: torch.device, threads: int = 1,
             before: bool = False, evaluate: bool = True, detail: bool = True) -> dict:
    """One instrumented fit of ``epochs`` epochs into a temporary run directory, then (``evaluate``)
    its evaluation: the phases' seconds, the epochs run and the checkpoint writes."""
    import lmmvae
    from lmmvae.data.h5 import read_h5

    timer = PhaseTimer(device)
    trainers: list = []
    with tempfile.TemporaryDirectory() as out, profiled(timer, before, trainers, detail):
        fitted = lmmvae.fit(str(data_path), out=Path(out) / "run", seed=0, progress=False, threads=threads,
                            **{**settings, "epochs": epochs, "device": str(device)})
        if evaluate:
            evaluate_timed(fitted, read_h5(str(data_path)), timer)
    trainer = trainers[-1]
    return {"seconds": dict(timer.seconds), "epochs": len(trainer.state.history),
            "writes": trainer.checkpoint_writes}


def evaluate_timed(fitted, data, timer: PhaseTimer) -> None:
    """:func:`lmmvae.answers.evaluate.evaluate`, its predictive draws, posterior pass and NLL timed apart."""
    from lmmvae.answers import evaluate as ev

    names = {"predict_rows": "evaluation: predictive draws", "posterior_rows": "evaluation: posterior",
             "nll_rows": "evaluation: NLL"}
    real = {name: getattr(ev, name) for name in names}
    for name, phase in names.items():
        setattr(ev, name, timer.wrap(phase, real[name]))
    try:
        with timer.phase("evaluation: rest"):
            ev.evaluate(fitted, data)
    finally:
        for name, fn in real.items():
            setattr(ev, name, fn)


def profile_row(label: str, runs: list[dict]) -> dict:
    """One table row from the repeats of one fit: phases summed over repeats, as shares of the epochs."""
    total = defaultdict(float)
    for run in runs:
        for phase, seconds in run["seconds"].items():
            total[phase] += seconds
    epochs = sum(r["epochs"] for r in runs)
    fit_s = sum(total[p] for p in PHASES)
    eval_s = sum(total[p] for p in EVAL_PHASES)
    row = {"model": label, "epochs": runs[0]["epochs"], "repeats": len(runs), "epoch_s": fit_s / epochs,
           "writes": runs[0]["writes"]}
    row.update({f"share_{p}": total[p] / fit_s for p in PHASES})
    row.update({f"seconds_{p}": total[p] / len(runs) for p in PHASES + EVAL_PHASES})
    row["eval_epochs"] = eval_s / (fit_s / epochs) / len(runs) if eval_s else float("nan")
    row["eval_draws"] = total["evaluation: predictive draws"] / eval_s if eval_s else float("nan")
    row["eval_nll"] = total["evaluation: NLL"] / eval_s if eval_s else float("nan")
    return row


def run(fits: dict[str, tuple[Path, dict]], epochs: int = 12, repeats: int = 2, device: str = "cpu",
        threads: int = 1, evaluate: bool = True, command: str = "",
        before: bool = False) -> harness.Result:
    """Profile each fit ``repeats`` times, interleaved (a rotated order per repeat); ``before``: the
    trainer as it was (:func:`as_before`)."""
    device = choose_device(device)
    labels = list(fits)
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    for r in range(repeats):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            path, settings = fits[label]
            runs[label].append(fit_once(path, settings, epochs, device, threads, before, evaluate))
    rows = [{**profile_row(label, runs[label]), "device": str(device)} for label in labels]
    from lmmvae.training.train import CHECKPOINT_SECONDS

    trainer = ("as before the cuts: a checkpoint every epoch, Adam's per-parameter loop" if before else
               f"checkpoints by time (every {CHECKPOINT_SECONDS:g} s: after epoch 1 and at the end in a run "
               "this short), Adam foreach")
    notes = [f"{epochs} epochs per fit, {repeats} interleaved repeats, {threads} torch thread(s), through "
             "`lmmvae.fit` (run directory, checkpoints); shares of the trainer's wall time, phases as in the "
             f"script's docstring. Trainer {trainer}.",
             "evaluation (epochs): `lmmvae.answers.evaluate.evaluate` of the run (nll_samples / predict_samples of its "
             "model YAML) in epochs of the same fit; eval: draws / NLL: the predictive draws' and the "
             "importance-sampled NLL's shares of it."]
    return harness.Result(NAME, rows, harness.markdown_table(rows, COLUMNS), command,
                          harness.describe_machine(device), notes)


def compare(fits: dict[str, tuple[Path, dict]], epochs: int = 30, repeats: int = 3, device: str = "cpu",
            threads: int = 1, command: str = "") -> harness.Result:
    """s/epoch of each fit with the trainer as before (:func:`as_before`) and as it is, interleaved:
    every repeat runs each fit both ways, in a rotated order; medians over repeats. ``Trainer.fit`` is
    timed whole, unwrapped."""
    device = choose_device(device)
    labels = list(fits)
    modes = {"before": True, "after": False}
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    writes: dict[tuple[str, str], int] = {}
    for r in range(repeats):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            path, settings = fits[label]
            for mode in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
                out = fit_once(path, settings, epochs, device, threads, modes[mode], evaluate=False, detail=False)
                times[label, mode].append(out["seconds"]["other"] / out["epochs"])
                writes[label, mode] = out["writes"]
    rows = []
    for label in labels:
        before, after = statistics.median(times[label, "before"]), statistics.median(times[label, "after"])
        rows.append({"model": label, "epochs": epochs, "repeats": repeats, "before_s": before, "after_s": after,
                     "ratio": after / before, "writes": f"{writes[label, 'before']} / {writes[label, 'after']}",
                     "before_repeats": " ".join(f"{x:.4g}" for x in times[label, "before"]),
                     "after_repeats": " ".join(f"{x:.4g}" for x in times[label, "after"]), "device": str(device)})
    notes = [f"{epochs} epochs per fit, median of {repeats} interleaved repeats, {threads} torch thread(s); "
             "`Trainer.fit` wall time over epochs, through `lmmvae.fit` with a run directory."]
    return harness.Result(f"{NAME}_compare", rows, harness.markdown_table(rows, COMPARE_COLUMNS), command,
                          harness.describe_machine(device), notes)


def main(argv=None) -> harness.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (default 12; --compare 30)")
    parser.add_argument("--config", default=str(CONFIG), help="the workflow config whose fits are profiled")
    parser.add_argument("--compare", action="store_true",
                        help="s/epoch of the trainer as before the cuts against as it is, interleaved")
    parser.add_argument("--before", action="store_true",
                        help="profile the trainer as before the cuts (a checkpoint every epoch, Adam's loop)")
    parser.add_argument("--no-evaluate", action="store_true", help="profile the training only")
    args = parser.parse_args(argv)
    threads = args.threads or 1  # one thread: the workflow's setting (OMP_NUM_THREADS=1 per job)
    torch.set_num_threads(threads)
    command = ("python -m benchmarks.profile_fit " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    fits = load_fits(Path(args.config), quick=args.quick)
    if args.compare:
        epochs, repeats = (2, 1) if args.quick else (args.epochs or 30, args.repeats or 3)
        result = compare(fits, epochs, repeats, args.device, threads, command)
    else:
        epochs, repeats = (2, 1) if args.quick else (args.epochs or 12, args.repeats or 2)
        result = run(fits, epochs, repeats, args.device, threads, not args.no_evaluate, command,
                     args.before)
    print(result.markdown())
    name = result.name
    print(f"CSV: {harness.write_csv(result.rows, harness.csv_path(name, choose_device(args.device), args.out))}")
    return result


if __name__ == "__main__":
    main()
