"""``lmmvae workflow check-config FILE``: a workflow config is data, checked before Snakemake reads it.

Snakemake evaluates a config file that sets ``__use_yte__: true`` as a YTE template: its ``?…``
values run as Python when the file is loaded, before the workflow's schema check and even on a dry
run. ``make reproduce`` runs this check first, so the documented entry point refuses such a file
(and any other top-level ``__…__`` directive) without evaluating it. The file is read with the
package's strict YAML loader (:func:`lmmvae.runs.yamlio.read_yaml`: no tags that construct objects, no
key given twice, at most 100 aliases, at most 1 MiB), so a "billion laughs" file is refused too.
"""

from __future__ import annotations


def register(subparsers) -> None:
    workflow = subparsers.add_parser("workflow", help="checks of the Snakemake workflow's inputs")
    commands = workflow.add_subparsers(dest="workflow_command", metavar="STEP", required=True)
    p = commands.add_parser("check-config", help="refuse a workflow config that is not plain data (YTE, tags)")
    p.add_argument("files", nargs="+", metavar="FILE", help="workflow config YAML file(s)")
    p.set_defaults(handler=_check_config)


def check_config(path: str) -> dict:
    """The workflow config ``path`` as plain data; a one-line ConfigError if it would be evaluated."""
    from lmmvae.errors import ConfigError
    from lmmvae.runs.yamlio import read_yaml

    config = read_yaml(path, "workflow config")
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a workflow config is a mapping of keys, got {type(config).__name__}")
    directives = sorted(str(k) for k in config if str(k).startswith("__"))
    if directives:
        raise ConfigError(f"{path}: key {directives[0]!r} asks Snakemake to evaluate the file as a template "
                          "(YTE runs its ?-values as Python); a workflow config must be plain data")
    return config


def _check_config(args) -> int:
    for path in args.files:
        check_config(path)
    print(f"lmmvae: {len(args.files)} workflow config(s) are plain data")
    return 0
