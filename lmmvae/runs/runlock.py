"""One writer per run directory: an advisory ``fcntl.flock`` on ``RUN/.lmmvae.lock``.

``fit`` (and anything else that writes into a run) holds the lock from before it looks at the
directory until its last file is in place. The lock is an open file descriptor: the operating
system drops it when the process ends, killed or not, so a stale lock file never blocks (its
content, the holder's pid, is only read to name the holder). A second writer gets a one-line
:class:`RunError` naming that pid instead of mixing its files with the first writer's.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lmmvae.errors import RunError
from lmmvae.runs.paths import LOCK_NAME


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return "another process"
    return f"process {text}" if text.isdigit() else "another process"


def _acquire(run_dir: Path) -> int:
    """An open descriptor holding the exclusive lock of ``run_dir``; a RunError if it is held."""
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise RunError(f"{run_dir}: cannot create its lock file {LOCK_NAME} ({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _holder(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise RunError(f"{run_dir}: {holder} is writing this run directory (lock {LOCK_NAME}); "
                           "wait for it to finish, or use another --out") from None
        raise RunError(f"{run_dir}: cannot lock {LOCK_NAME} ({err.strerror})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextmanager
def hold(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the write lock of ``run_dir`` for the block (creating the directory if needed; a
    directory this call created and that holds nothing but the lock is removed afterwards)."""
    run_dir = Path(run_dir)
    created = False
    if not run_dir.exists():
        if run_dir.is_symlink():  # a dangling link: prepare() says what is wrong
            yield run_dir
            return
        try:
            run_dir.mkdir(parents=True)
            created = True
        except FileExistsError:
            pass
    if not run_dir.is_dir():  # a file: lmmvae.runs.rundir.prepare refuses it with its own message
        yield run_dir
        return
    fd = _acquire(run_dir)
    try:
        yield run_dir
    finally:
        lock = run_dir / LOCK_NAME
        if created and run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            lock.unlink(missing_ok=True)
            try:
                run_dir.rmdir()
            except OSError:
                pass
        os.close(fd)
