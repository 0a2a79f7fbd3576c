"""Hashes for determinism tests: of a data set's arrays, and of every file under a directory."""

import hashlib

import numpy as np


def data_hash(data) -> str:
    """sha256 of y, mask, split, y_full, latent_truth and every covariate's values."""
    h = hashlib.sha256()
    for array in (data.y, data.mask, data.split, data.y_full, data.latent_truth):
        if array is not None:
            h.update(np.ascontiguousarray(array).tobytes())
    for name in sorted(data.covariates):
        h.update(name.encode() + data.covariates[name].values.tobytes())
    return h.hexdigest()


def tree_hash(root) -> str:
    """sha256 of the relative paths and bytes of every file under ``root``."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()
