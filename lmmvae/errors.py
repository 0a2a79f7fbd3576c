"""Errors a user can cause, raised at the boundary with a one-line message that names what and where.

The bottom floor of the package: it imports nothing of ours, so every module may import it.
"""

from __future__ import annotations


class DataFormatError(ValueError):
    """A file or array does not follow the longitudinal HDF5 format; the message says where."""


class ConfigError(ValueError):
    """A model/config file has an unknown key, a wrong value or a wrong type."""


class DesignError(ValueError):
    """A design formula does not parse, or names a covariate the data lack or of the wrong kind."""


class RunError(ValueError):
    """A run directory is missing or incomplete."""


class TrainingError(ValueError):
    """Training cannot go on (a non-finite loss): the data or the settings need a change."""


class LmmvaeWarning(UserWarning):
    """Something the user should know but that does not stop the command (the CLI prints it as
    one line, ``lmmvae: warning: ...``): a discarded checkpoint, subjects unseen in training."""


#: exceptions the CLI prints as one line instead of a traceback
USER_ERRORS = (ConfigError, DesignError, RunError, TrainingError, DataFormatError, FileNotFoundError)
