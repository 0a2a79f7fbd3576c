"""The one seed helper and the one device chooser (``cuda:any``: :mod:`lmmvae.training.gpu_slots`)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from lmmvae.errors import ConfigError
from lmmvae.training import gpu_slots


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator for shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


ANY_GPU = "cuda:any"  # a free slot on the least-loaded visible GPU (lmmvae.training.gpu_slots)
_held_slot = None  # this process's slot, once `cuda:any` has claimed one (kept until exit)


def check_device(preference: str | None, where: str = "device") -> None:
    """A one-line ConfigError unless ``preference`` is ``auto``, ``cuda:any`` or a torch device."""
    if preference in (None, "", "auto", ANY_GPU):
        return
    try:
        torch.device(preference)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{where} {preference!r} is not a valid device (auto, cpu, cuda, cuda:N, cuda:any)") from None


def choose_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as asked; ``cuda:any``:
    the GPU of a free slot (least-loaded first) among the visible ones, held until the process ends
    (:func:`claim_gpu`)."""
    if preference in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(preference)
    if (preference == ANY_GPU or torch.device(preference).type == "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {preference!r} requested but CUDA is not available here; use --device cpu")
    if preference == ANY_GPU:
        return claim_gpu()
    return torch.device(preference)


def claim_gpu() -> torch.device:
    """``cuda:k`` for a slot of :mod:`lmmvae.training.gpu_slots` over ``torch.cuda.device_count()`` GPUs
    (those of CUDA_VISIBLE_DEVICES: under SLURM, the job's own), ``LMMVAE_JOBS_PER_GPU`` slots each,
    lock files in ``LMMVAE_GPU_LOCK_DIR``; one claim per process (later calls reuse it)."""
    global _held_slot
    if _held_slot is None:
        n = torch.cuda.device_count()
        per_device = gpu_slots.jobs_per_device_from_env()
        lock_dir = gpu_slots.lock_dir_from_env()
        _held_slot = gpu_slots.claim(n, per_device, lock_dir, names=[_gpu_name(k) for k in range(n)])
        index = _held_slot.device
        props = torch.cuda.get_device_properties(index)
        print(f"lmmvae: device cuda:any -> cuda:{index} ({props.name}; GPU {index + 1} of {n} visible, "
              f"slot {_held_slot.slot + 1} of {per_device}, {_held_slot.path})", flush=True)
    return torch.device("cuda", _held_slot.device)


def _gpu_name(index: int) -> str:
    """The lock-file name of a visible GPU: its UUID (the same physical GPU whatever
    CUDA_VISIBLE_DEVICES says), else ``cuda<index>``."""
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"gpu-{uuid}" if uuid else f"cuda{index}"


#: torch intra-op threads for a model by its networks (benchmarks/threads.py measured the choice):
#: dense (tabular) networks do small matrix products whose threads cost more in synchronisation than
#: they save, and stall each other on a machine shared with another process; convolutional image
#: networks gain from a second thread on a quiet machine.
DENSE_THREADS = 1
IMAGE_THREADS = 2


def default_threads(image: bool) -> int:
    """The thread count :func:`set_threads` uses when none is asked for (``image``: the network
    convolves images). Never more than the CPUs this process may run on."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(IMAGE_THREADS if image else DENSE_THREADS, available))


def set_threads(requested: int | None, image: bool) -> int:
    """Set torch's intra-op thread count: ``requested`` if given, else the ``OMP_NUM_THREADS`` the
    user exported, else :func:`default_threads`. Returns the count in force. The count depends on
    the model and the machine only, never on the load, so a run's numbers do not depend on what
    else was running."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= 1024:
            raise ConfigError(f"threads must be an integer from 1 to 1024, got {requested!r}")
        count = requested
    elif os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(os.environ["OMP_NUM_THREADS"]) >= 1:
        count = int(os.environ["OMP_NUM_THREADS"])
    else:
        count = default_threads(image)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
