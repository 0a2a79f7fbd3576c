"""The one way files are written: to a temporary name beside the target, renamed when complete.

A killed job or a failed write never leaves a half-written file under the final name, so neither a
user nor Snakemake can take a partial output for a finished one. HDF5 files are built in memory
and written as bytes (:func:`hdf5_output`): HDF5's C library, writing a file itself, could crash
the process on a full disk; a Python write fails with an OSError, which the command line prints
as one line, and the old file stays.
"""

from __future__ import annotations

import io
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


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


@contextmanager
def hdf5_output(path: str | os.PathLike) -> Iterator:
    """An ``h5py.File`` open for writing in memory; its bytes become ``path`` only if the block succeeds."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        yield f
    write_bytes(buffer.getvalue(), path)
