"""The ``lmmvae`` command line. Each sub-module adds its sub-commands with ``register(subparsers)``.

Errors a user can cause (bad config, missing covariate, corrupted file, a full disk) are printed
as one line, ``lmmvae: error: ...``, with exit status 2. No traceback reaches a user: an unexpected
error is one line naming a log file that holds its traceback (exit status 1); ``--debug`` prints it.
Every path a command is given is checked first (:data:`PATHS`, :mod:`lmmvae.runs.paths`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: sub-modules of lmmvae.cli that register commands, in help order
_COMMAND_MODULES = ("models", "answers", "data", "report", "workflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmmvae",
        description="LMM-VAE: VAEs with a linear-mixed-model prior for longitudinal data.",
    )
    from lmmvae import __version__

    parser.add_argument("--version", action="version", version=f"lmmvae {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (anywhere on the line)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"lmmvae.cli.{name}")
        module.register(subparsers)
    return parser


def _one_line_warnings() -> None:
    """Print the project's warnings (lmmvae.errors.LmmvaeWarning) as ``lmmvae: warning: ...``."""
    import warnings

    from lmmvae.errors import LmmvaeWarning

    default = warnings.showwarning
    if getattr(default, "lmmvae", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LmmvaeWarning):
            text = str(message).strip().splitlines()
            print(f"lmmvae: warning: {text[0] if text else category.__name__}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show.lmmvae = True
    warnings.showwarning = show


#: the paths of each command (lmmvae.runs.paths.declare): input files, output files, input run
#: directories and the run directory it writes; one table, so no command escapes the checks
PATHS = {
    ("fit",): dict(inputs=("data", "model"), outputs=("evaluate_out", "predictions_out"), writes_run="out"),
    ("evaluate",): dict(inputs=("data",), outputs=("out", "predictions"), runs=("run_dir", "run")),
    ("mcc",): dict(inputs=("data",), outputs=("out",), runs=("runs",)),
    ("predict",): dict(inputs=("covariates",), outputs=("out",), runs=("run_dir", "run")),
    ("summary",): dict(outputs=("out",), runs=("run_dir", "run")),
    ("effects",): dict(outputs=("png", "csv"), runs=("run_dir", "run")),
    ("contrast",): dict(outputs=("csv",), runs=("run_dir", "run")),
    ("data", "from-table"): dict(inputs=("table",), outputs=("out",)),
    ("data", "show"): dict(inputs=("file",), outputs=("png",)),
    ("data", "example"): dict(outputs=("out", "csv")),
    ("report", "aggregate"): dict(inputs=("manifest",), outputs=("out",)),
    ("report", "table"): dict(inputs=("metrics",), outputs=("md", "tex", "html")),
    ("report", "claims"): dict(inputs=("metrics",), outputs=("md",)),
    ("report", "figure"): dict(inputs=("metrics",), outputs=("png", "pdf")),
    ("report", "trajectories"): dict(inputs=("data", "predictions"), outputs=("png", "pdf")),
    ("report", "grid"): dict(inputs=("data",), outputs=("out",)),
    ("report", "latent-effects"): dict(inputs=("grid", "latent"), outputs=("png", "pdf")),
    ("workflow", "check-config"): dict(inputs=("files",)),
}
#: every other command that writes one --out file (the data generators)
_DEFAULT_PATHS = dict(outputs=("out",))


def _paths(args) -> dict:
    key = tuple(k for k in (args.command, getattr(args, "data_command", None),
                            getattr(args, "report_command", None), getattr(args, "workflow_command", None)) if k)
    return PATHS.get(key, _DEFAULT_PATHS)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _os_error(err: OSError) -> str:
    """An OSError as one line: the file and the system's reason (a full disk, no permission)."""
    import errno

    where = f"{err.filename}: " if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"{where}no space left on the device; nothing was replaced (free some space and rerun)"
    return f"{where}{err.strerror or _first_line(err)}"


def _internal(err: BaseException) -> str:
    """An unexpected error: its traceback to a log file, and one line naming that file."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(err))
    try:
        fd, log = tempfile.mkstemp(prefix="lmmvae-error-", suffix=".log")
        with open(fd, "w") as f:
            f.write(f"lmmvae {' '.join(sys.argv[1:])}\n{text}")
    except OSError:
        log = None
    where = f"; traceback in {log}" if log else ""
    return f"internal error ({type(err).__name__}: {_first_line(err)[:200]}){where} (--debug prints it)"


def main(argv: list[str] | None = None) -> int:
    """Run one command. Known errors are one line with exit status 2; an unknown one is one line
    and a log file with its traceback (exit status 1), printed instead with ``--debug``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    from lmmvae.errors import USER_ERRORS
    from lmmvae.runs import paths

    _one_line_warnings()
    try:
        args._paths = {"inputs": (), "outputs": (), "runs": (), "writes_run": None, **_paths(args)}
        paths.check_command(args)
        result = args.handler(args)
    except (*USER_ERRORS, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        print(f"lmmvae: error: {_first_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmmvae: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped (`lmmvae summary RUN | head`): as `cat`, no error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 0
    except OSError as err:
        print(f"lmmvae: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("lmmvae: error: out of memory (the data or the model is too large for this machine)", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the one place a bug becomes a line and a log file
        if debug:
            raise
        print(f"lmmvae: error: {_internal(err)}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
