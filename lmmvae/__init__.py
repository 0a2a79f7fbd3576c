"""LMM-VAE: variational autoencoders whose prior is a linear mixed model over covariates.

The Python API mirrors the command line: ``lmmvae.fit``, ``lmmvae.load`` and the methods of the
returned :class:`~lmmvae.api.LMMVAE` (``predict``, ``impute``, ``latent``, ``save``).
"""

from lmmvae.h5 import Covariate, LongitudinalData, read_h5, write_h5

__version__ = "0.1.0"

__all__ = ["Covariate", "LongitudinalData", "read_h5", "write_h5", "fit", "load"]


def __getattr__(name):  # lazy: importing lmmvae must not import torch
    if name in ("fit", "load", "LMMVAE"):
        from lmmvae import api

        return getattr(api, name)
    raise AttributeError(f"module 'lmmvae' has no attribute {name!r}")
