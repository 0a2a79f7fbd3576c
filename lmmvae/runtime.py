"""The one seed helper and the one device chooser."""

from __future__ import annotations

import random

import numpy as np
import torch

from lmmvae.errors import ConfigError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator for shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def choose_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as asked."""
    if preference in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise ConfigError(f"device {preference!r} is not a valid torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {preference!r} requested but CUDA is not available here; use --device cpu")
    return device
