"""Share the GPUs of one machine between training processes: ``--device cuda:any``.

Each GPU has ``jobs_per_device`` slots, one lock file each (``<lock_dir>/cuda<k>.slot<j>.lock``).
A process takes a slot with a non-blocking ``fcntl.flock`` and holds it through an open file
descriptor for its whole life: the operating system releases it when the process exits, also
when it is killed, so no stale state is ever left behind (the files themselves stay; they are
empty and reused). Claims are serialised by one more lock (``claim.lock``), so each process sees
the others' slots and goes to the least-loaded GPU (lowest index on a tie).

Snakemake's ``gpu`` resource normally keeps the number of trainings at or below the number of
slots; when every slot is taken anyway (another workflow on the same machine, or
``resources gpu=`` above GPUs × ``LMMVAE_JOBS_PER_GPU``), a claimant waits, saying so in its log.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from lmmvae.errors import ConfigError

JOBS_PER_GPU_ENV = "LMMVAE_JOBS_PER_GPU"
LOCK_DIR_ENV = "LMMVAE_GPU_LOCK_DIR"
DEFAULT_JOBS_PER_GPU = 8  # matches profiles/gpu's gpu=8 on one GPU
MAX_JOBS_PER_GPU = 1024  # one lock file per slot: more is a typo, not a plan
LOG_EVERY_S = 30.0  # while waiting for a slot, one log line this often
#: the claim lock is held for milliseconds; a holder stuck longer than this (a stopped process) is
#: named in a log line, and the claimant gives up with a one-line error after CLAIM_TIMEOUT_S
CLAIM_TIMEOUT_S = 300.0


@dataclass
class Slot:
    """A held slot: device ``device`` (index among the visible GPUs), slot ``slot`` of it, kept by
    the open descriptor ``fd`` until :meth:`release` or the end of the process."""

    device: int
    slot: int
    path: Path
    fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def jobs_per_device_from_env() -> int:
    """``LMMVAE_JOBS_PER_GPU`` (a positive integer), else :data:`DEFAULT_JOBS_PER_GPU`."""
    text = os.environ.get(JOBS_PER_GPU_ENV, "").strip()
    if not text:
        return DEFAULT_JOBS_PER_GPU
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_JOBS_PER_GPU:
        raise ConfigError(f"{JOBS_PER_GPU_ENV}={text!r}: expected a positive integer up to {MAX_JOBS_PER_GPU} "
                          "(training jobs per GPU)")
    return value


def lock_dir_from_env() -> Path:
    """``LMMVAE_GPU_LOCK_DIR``, else a per-user folder in the temporary directory."""
    text = os.environ.get(LOCK_DIR_ENV, "").strip()
    if text:
        return Path(text)
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"lmmvae-gpu-slots-{user}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _open(path: Path) -> int:
    # O_NOFOLLOW: a symlink planted in a shared lock directory is refused, not followed
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise ConfigError(f"{path}: a symlink where a GPU slot lock file belongs; not followed "
                          f"(set {LOCK_DIR_ENV} to a directory of your own)") from None


def _own_directory(lock_dir: Path) -> None:
    """Create ``lock_dir`` (0700) or check that an existing one is a directory of this user: the
    default lives in the shared temporary directory, where anyone could have made it first."""
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = lock_dir.lstat()
    if not lock_dir.is_dir() or lock_dir.is_symlink() or info.st_uid != os.getuid():
        raise ConfigError(f"{lock_dir}: GPU slot lock directory is not a directory of this user; "
                          f"set {LOCK_DIR_ENV} to one")


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None when someone holds it."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _hold_claim_lock(fd: int, path: Path, timeout_s: float, log: Callable[[str], None]) -> None:
    """Take the claim lock (one claimant at a time; held for milliseconds). A holder stuck longer
    is named in a log line every LOG_EVERY_S, and after ``timeout_s`` this is a one-line error."""
    started = time.monotonic()
    last_log = started
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # names this claimant to a waiting one
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - started
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        if waited >= timeout_s:
            raise ConfigError(f"{path}: held by process {holder} for {waited:.0f} s (claims take milliseconds); "
                              "stop that process or remove the lock directory's claim.lock")
        if time.monotonic() - last_log >= min(LOG_EVERY_S, timeout_s / 2):
            log(f"waiting for the GPU claim lock {path}, held by process {holder} for {waited:.0f} s")
            last_log = time.monotonic()
        time.sleep(min(0.05 + waited / 20, 1.0))


def try_claim(n_devices: int, jobs_per_device: int, lock_dir: str | os.PathLike,
              names: Sequence[str] | None = None, claim_timeout_s: float = CLAIM_TIMEOUT_S,
              log: Callable[[str], None] | None = None) -> Slot | None:
    """One free slot on the least-loaded device, or None when all are taken (never waits).

    ``names`` (one per device) name the lock files, ``<name>.slot<j>.lock``; default ``cuda<k>``.
    Naming a GPU by its UUID makes processes that see different ``CUDA_VISIBLE_DEVICES`` count
    the same physical GPU once.
    """
    if n_devices < 1 or jobs_per_device < 1:
        raise ValueError(f"need at least one device and one slot per device, got {n_devices} x {jobs_per_device}")
    names = [f"cuda{k}" for k in range(n_devices)] if names is None else [_safe_name(n) for n in names]
    if len(names) != n_devices:
        raise ValueError(f"{len(names)} device names for {n_devices} devices")
    lock_dir = Path(lock_dir)
    _own_directory(lock_dir)
    guard = _open(lock_dir / "claim.lock")
    try:
        _hold_claim_lock(guard, lock_dir / "claim.lock", claim_timeout_s, log or _log)
        free: dict[int, list[tuple[int, int, Path]]] = {}  # device -> its free slots, locked by us
        for k, name in enumerate(names):
            free[k] = []
            for j in range(jobs_per_device):
                path = lock_dir / f"{name}.slot{j}.lock"
                fd = _try_lock(path)
                if fd is not None:
                    free[k].append((j, fd, path))
        open_devices = [k for k in free if free[k]]
        chosen = None
        if open_devices:
            k = max(open_devices, key=lambda d: (len(free[d]), -d))  # most free slots = least loaded
            j, fd, path = free[k].pop(0)
            chosen = Slot(k, j, path, fd)
        for slots in free.values():
            for _, fd, _ in slots:
                os.close(fd)
        return chosen
    finally:
        os.close(guard)  # releases the claim lock


def claim(n_devices: int, jobs_per_device: int, lock_dir: str | os.PathLike, *,
          names: Sequence[str] | None = None, poll_s: float = 5.0, log_every_s: float = LOG_EVERY_S,
          log: Callable[[str], None] | None = None) -> Slot:
    """A slot on the least-loaded of ``n_devices`` devices (its ``device`` is the index), waiting
    (one log line every ``log_every_s`` seconds) while all ``n_devices × jobs_per_device`` are
    taken. The slot is held until ``slot.release()`` or the end of the process."""
    log = log or _log
    started = time.monotonic()
    last_log = None
    while True:
        slot = try_claim(n_devices, jobs_per_device, lock_dir, names, log=log)
        if slot is not None:
            return slot
        now = time.monotonic()
        if last_log is None or now - last_log >= log_every_s:
            log(f"all {jobs_per_device} slots of each of {n_devices} GPU(s) are taken (lock dir {lock_dir}); "
                f"waiting {now - started:.0f} s so far (raise {JOBS_PER_GPU_ENV} or lower Snakemake's gpu resource)")
            last_log = now
        time.sleep(poll_s)


def _log(message: str) -> None:
    print(f"lmmvae: {message}", file=sys.stderr, flush=True)
