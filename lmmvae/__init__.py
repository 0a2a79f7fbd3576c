"""LMM-VAE: variational autoencoders whose prior is a linear mixed model over covariates.

The Python API mirrors the command line: ``lmmvae.fit``, ``lmmvae.load`` and the methods of the
returned :class:`~lmmvae.api.LMMVAE` (``predict``, ``impute``, ``latent``, ``save``).
"""

from lmmvae.data.h5 import Covariate, LongitudinalData, read_h5, write_h5

__version__ = "0.1.0"


def _from_frame(cls, frame, subject: str, time: str, features=None, covariates=None,
                **options) -> LongitudinalData:
    """A long-format pandas DataFrame (one row per visit) as data: kinds inferred, empty feature
    cells masked, a train/validation(/test) split; see :mod:`lmmvae.data.sets.table`."""
    from lmmvae.data.sets.table import from_frame  # lazy: `import lmmvae` loads no data-set module

    return from_frame(frame, subject=subject, time=time, features=features, covariates=covariates, **options)


# the public constructor `lmmvae.LongitudinalData.from_frame(...)`: defined here, at the top of the
# package, so that the in-memory format (lmmvae.data.longitudinal) does not import the table reader above it
LongitudinalData.from_frame = classmethod(_from_frame)

__all__ = ["Covariate", "LongitudinalData", "read_h5", "write_h5", "fit", "load"]


def __getattr__(name):  # lazy: importing lmmvae must not import torch
    if name in ("fit", "load", "LMMVAE"):
        from lmmvae import api

        return getattr(api, name)
    raise AttributeError(f"module 'lmmvae' has no attribute {name!r}")
