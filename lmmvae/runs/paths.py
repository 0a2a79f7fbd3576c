"""Where a command reads and writes: the one check of every path the command line is given.

Anchor: coreutils refusing ``cp a a``. Before a command runs, :func:`check_command` resolves each
output path (symlinks and ``..`` too, :func:`os.path.realpath`) and refuses, in one line,

- an output that is also an input of the same command (``predict --out`` = its ``--covariates``),
  or a second output of it (``effects --png`` = ``--csv``);
- an output that is a file of a run directory (``model.pt``, ``config.json``, … :data:`RUN_NAMES`),
  unless the command owns that run (``fit --out`` writes its own run files);
- an output that is an existing directory or a non-regular file (a FIFO, a device).

Inputs must be regular files (a FIFO given as a table would block the read forever; ``/dev/zero``
as a model YAML would never end), and a run directory must be a directory whose run files are
regular files. The command line's table of each command's paths is lmmvae.cli.PATHS.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

from lmmvae.errors import ConfigError

#: the advisory lock file of a run directory (hidden: not a run file, ignored by lmmvae.runs.rundir)
LOCK_NAME = ".lmmvae.lock"
#: the files of a run directory, which :mod:`lmmvae.runs.rundir` writes and reads; named here, below it,
#: so that the path checks know a run's own files without importing the run code
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
PRIOR_FILE = "prior.json"
COVARIATES_FILE = "covariates.json"
RUN_FILES = ("config.json", "design.json", PRIOR_FILE, COVARIATES_FILE, "history.csv", CHECKPOINT_FILE, MODEL_FILE)


class PathError(ConfigError):
    """An output path would overwrite an input or a run's own file, or an input is not a regular file."""


def run_names() -> tuple[str, ...]:
    """Names of the files a run directory holds (:data:`RUN_FILES`) and its lock file."""
    return (*RUN_FILES, LOCK_NAME)


def resolve(path: str | os.PathLike) -> Path:
    """``path`` with ``~``, symlinks and ``..`` resolved (its missing tail kept as written)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_input(path: str | os.PathLike, flag: str) -> Path:
    """``path`` resolved; missing is FileNotFoundError, anything but a regular file a PathError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{flag} {path}: no such file") from None
    except OSError as err:
        raise PathError(f"{flag} {path}: cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(mode):
        raise PathError(f"{flag} {path}: is {_kind(mode)}, not a regular file")
    return resolve(path)


def check_run(path: str | os.PathLike, flag: str) -> Path:
    """A run directory given as input: a directory whose present run files are regular files
    (a FIFO as ``prior.json`` would block the read)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{flag} {path}: no such run directory; train one with `lmmvae fit`") from None
    if not stat.S_ISDIR(mode):
        raise PathError(f"{flag} {path}: is {_kind(mode) if not stat.S_ISREG(mode) else 'a file'}, not a run directory")
    for name in run_names()[:-1]:
        file = Path(path) / name
        if os.path.lexists(file):
            check_input(file, f"{flag}")
    return resolve(path)


def run_of(path: Path) -> Path | None:
    """The run directory that ``path`` (resolved) is a run file of, or None."""
    if path.name not in run_names():
        return None
    parent = path.parent
    markers = ("config.json", MODEL_FILE, "checkpoint.pt", "history.csv")
    return parent if any((parent / m).exists() for m in markers) or path.name == LOCK_NAME else None


def check_outputs(outputs: dict[str, str], inputs: dict[str, Path], owned: Iterable[Path] = ()) -> dict[str, Path]:
    """Each output (flag -> path) resolved and checked (module docstring); ``inputs`` are resolved
    input files (flag -> path), ``owned`` the run directories the command itself writes."""
    owned = {resolve(p) for p in owned}
    seen: dict[Path, str] = {path: flag for flag, path in inputs.items()}
    done: dict[str, Path] = {}
    for flag, given in outputs.items():
        path = resolve(given)
        if path in seen:
            other = seen[path]
            role = "input" if other in inputs else "output"
            raise PathError(f"{flag} {given}: is also this command's {role} {other}; write to another file")
        run = run_of(path)
        if run is not None and run not in owned:
            raise PathError(f"{flag} {given}: is the file {path.name} of the run directory {run}; "
                            "write outputs outside run directories")
        if os.path.lexists(path):
            mode = os.stat(path).st_mode if path.exists() else stat.S_IFREG
            if not stat.S_ISREG(mode):
                raise PathError(f"{flag} {given}: is {_kind(mode)}; give a file name to write")
        seen[path] = flag
        done[flag] = path
    return done


def _values(args, dests: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for dest in dests:
        value = getattr(args, dest, None)
        for item in (value if isinstance(value, list) else [value]):
            if item is not None:
                pairs.append((_flag(dest), os.fspath(item)))
    return pairs


def _flag(dest: str) -> str:
    if dest in ("runs", "run_dir"):
        return "RUN"
    return dest.upper() if dest in ("file", "files") else "--" + dest.replace("_", "-")


def check_command(args) -> None:
    """The path checks of a parsed command line (``args._paths``: the dest names of its input files,
    output files, input run directories and the run it writes); a one-line error if any fails."""
    spec = getattr(args, "_paths", None)
    if not spec:
        return
    inputs: dict[str, Path] = {}
    for flag, value in _values(args, spec["inputs"]):
        inputs[f"{flag} {value}" if flag in inputs else flag] = check_input(value, flag)
    runs = {flag: check_run(value, flag) for flag, value in _values(args, spec["runs"])}
    owned = _values(args, (spec["writes_run"],)) if spec["writes_run"] else []
    for flag, out in owned:
        target = resolve(out)
        clash = [f for f, p in inputs.items() if p == target or target in p.parents]
        if clash:
            raise PathError(f"{flag} {out}: holds this command's input {clash[0]}; write the run elsewhere")
    outputs = dict(_values(args, spec["outputs"]))
    check_outputs(outputs, {**inputs, **runs}, owned=[v for _, v in owned])
