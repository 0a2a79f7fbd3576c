"""Argument types of the command line: numbers range-checked when parsed, so a bad value is
argparse's one-line usage error (``--samples 0``, ``--level 1.5``, ``--seed 2**70``) and never
reaches the code as a silent default or an overflow; and the run-directory argument, one form for
every command that reads a run (:func:`add_run`)."""

from __future__ import annotations

import argparse
import math

#: the largest seed numpy and torch accept (both take 32-bit seeds here)
MAX_SEED = 2**32 - 1


def integer(low: int, high: int):
    """An ``int`` type with ``low <= value <= high``. A whole number written as a float is one
    (``1e3``, ``500.0``: how counts are often typed); ``2.5`` or ``2**70`` is an error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = _whole(text)
            if value is None:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected {low} to {high}")
        return value

    parse.__name__ = "integer"
    return parse


def _whole(text: str) -> int | None:
    """``text`` as an int when it is a finite float with no fractional part (``1e3``), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def number(low: float = -math.inf, high: float = math.inf, *, open_low: bool = False, open_high: bool = False):
    """A finite ``float`` type within ``[low, high]`` (``open_low``/``open_high``: that end excluded)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = value <= low if open_low else value < low
        too_high = value >= high if open_high else value > high
        if too_low or too_high:
            left, right = "(" if open_low else "[", ")" if open_high else "]"
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected a number in {left}{low:g}, {high:g}{right}")
        return value

    parse.__name__ = "number"
    return parse


SEED = integer(0, MAX_SEED)
EPOCHS = integer(1, 10**7)
SAMPLES = integer(1, 100_000)  # Monte Carlo draws per row
POINTS = integer(2, 100_000)  # grid points
COUNT = integer(1, 100_000)  # subjects / steps / dims shown in a figure
SIZE = integer(1, 10**7)  # instances, time points of a generator
LEVEL = number(0, 1, open_low=True, open_high=True)  # coverage of an interval
FRACTION = number(0, 1)  # a fraction of subjects or rows
FINITE = number()
THREADS = integer(1, 1024)
WHOLE = integer(0, 10**7)  # a count or threshold of a data generator that may be 0


def add_run(parser) -> None:
    """The run directory, in one form for every command that reads one: ``RUN`` (positional) or
    ``--run RUN`` (dest ``run_dir`` and ``run``; :func:`run_dir` picks the one given)."""
    parser.add_argument("run_dir", nargs="?", metavar="RUN", help="run directory written by lmmvae fit (or --run)")
    parser.add_argument("--run", default=None, metavar="RUN", help="run directory (same as RUN)")


def run_dir(args, usage: str) -> str:
    """The run directory of :func:`add_run`'s arguments; ``usage`` shows the command when neither is given."""
    from lmmvae.errors import ConfigError

    if args.run_dir and args.run and args.run_dir != args.run:
        raise ConfigError(f"two run directories given ({args.run_dir} and --run {args.run}); give one")
    run = args.run_dir or args.run
    if not run:
        raise ConfigError(f"{args.command} needs a run directory: {usage}")
    return run


def pairs(items: list[str], option: str, form: str, example: str, need_value: bool = True) -> dict[str, str]:
    """Repeated ``NAME=VALUE`` options (``--kind``, ``--reference``, ``--at``) as a mapping; anything
    else is a one-line error naming the option, the expected ``form`` and an ``example``."""
    from lmmvae.errors import ConfigError

    mapping = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or (need_value and not value.strip()):
            raise ConfigError(f"{option} {item!r}: expected {form}, e.g. {option} {example}")
        mapping[name.strip()] = value.strip()
    return mapping


def add_threads(parser) -> None:
    """``--threads N``: torch's intra-op threads (lmmvae.training.runtime.set_threads)."""
    parser.add_argument("--threads", type=THREADS, default=None,
                        help="torch threads (default: 1 for tabular networks, 2 for image networks, "
                             "or OMP_NUM_THREADS if set)")
