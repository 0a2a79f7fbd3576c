"""The one way files are written: to a temporary name beside the target, renamed when complete.

A killed job or a failed write never leaves a half-written file under the final name, so neither a
user nor Snakemake can take a partial output for a finished one.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it becomes ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
