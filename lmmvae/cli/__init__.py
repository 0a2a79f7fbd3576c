"""The ``lmmvae`` command line. Each sub-module adds its sub-commands with ``register(subparsers)``.

Errors a user can cause (bad config, missing covariate, corrupted file) are printed as one line,
``lmmvae: error: ...``, with exit status 2; tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-modules of lmmvae.cli that register commands, in help order
_COMMAND_MODULES = ("models", "answers", "data", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmmvae",
        description="LMM-VAE: VAEs with a linear-mixed-model prior for longitudinal data.",
    )
    from lmmvae import __version__

    parser.add_argument("--version", action="version", version=f"lmmvae {__version__}",
                        help="print the version and exit")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from lmmvae.errors import USER_ERRORS

    _one_line_warnings()
    try:
        result = args.handler(args)
    except (*USER_ERRORS, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"lmmvae: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmmvae: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
