"""``make bench``: run every benchmark, write its CSV, and regenerate the tables of BENCHMARKS.md.

    .venv/bin/python -m benchmarks.run_all [--device cuda] [--only epoch_cost many_subjects] [--quick]

Each benchmark's table replaces the block between ``<!-- BEGIN <name>[-cuda] -->`` and
``<!-- END <name>[-cuda] -->`` in BENCHMARKS.md (appended at the end when the file has no such
block), so the hand-written reading around the tables survives a re-run. ``--quick`` runs toy sizes
and leaves BENCHMARKS.md alone unless ``--markdown`` names a file.
"""

from __future__ import annotations

import argparse
import datetime
import re
import time
from pathlib import Path

import torch

from benchmarks import (accuracy, data_loading, epoch_cost, harness, many_covariates, many_subjects, profile_fit,
                        workflow_overhead)
from benchmarks import map as map_benchmark
from lmmvae.atomic import write_text
from lmmvae.training.runtime import choose_device

SCRIPTS = {module.NAME: module for module in (epoch_cost, many_subjects, many_covariates, data_loading, accuracy,
                                               workflow_overhead, profile_fit, map_benchmark)}
MARKDOWN = Path("BENCHMARKS.md")


def block_name(name: str, device: torch.device) -> str:
    return name if device.type == "cpu" else f"{name}-{device.type}"


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` holding ``body`` (appended as a new section if absent)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"


def update_markdown(path: Path, blocks: dict[str, str]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for name, body in blocks.items():
        text = replace_block(text, name, body)
    write_text(text, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS), help="benchmarks to run")
    parser.add_argument("--quick", action="store_true", help="toy sizes: a smoke run (seconds)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--markdown", default=None,
                        help="file whose tables to regenerate (default: BENCHMARKS.md; none with --quick)")
    args = parser.parse_args(argv)
    device = choose_device(args.device)
    markdown = Path(args.markdown) if args.markdown else (None if args.quick else MARKDOWN)
    common = ["--device", args.device] + (["--quick"] if args.quick else []) + \
        (["--threads", str(args.threads)] if args.threads else [])
    start = time.perf_counter()
    blocks = {}
    for name in args.only:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        result = SCRIPTS[name].main(common)
        minutes = (time.perf_counter() - t0) / 60
        stamp = datetime.date.today().isoformat()
        blocks[block_name(name, device)] = f"_Run {stamp}, {minutes:.1f} min._  \n" + result.markdown()
        print(f"({name}: {minutes:.1f} min)", flush=True)
    total = (time.perf_counter() - start) / 60
    print(f"\nall benchmarks: {total:.1f} min on {harness.describe_machine(device)}")
    if markdown is not None:
        if set(args.only) == set(SCRIPTS):
            command = ("python -m benchmarks.run_all " + " ".join(common)).strip()
            blocks[block_name("run_all", device)] = (
                f"`{command}` took {total:.1f} min on {harness.describe_machine(device)}, "
                f"{datetime.date.today().isoformat()}.")
        update_markdown(markdown, blocks)
        print(f"tables written to {markdown}")


if __name__ == "__main__":
    main()
