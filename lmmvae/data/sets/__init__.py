"""The four data sets of the benchmark (docs/data_format.md), each a function returning
:class:`lmmvae.data.h5.LongitudinalData`, plus the raw-format synthetic stand-ins for PhysioNet and the
clinical trial. Each module registers its ``lmmvae data`` command (name, options, help) in
:mod:`lmmvae.data.sets.generators`, which the command line and the workflow config's ``generator:``
are built from: a new data set is one module + one line there."""

from lmmvae.data.sets.clinical_trial import clinical_trial
from lmmvae.data.sets.clinical_trial_synthetic import clinical_trial_synthetic
from lmmvae.data.sets.health_mnist import health_mnist
from lmmvae.data.sets.physionet import physionet
from lmmvae.data.sets.physionet_synthetic import physionet_synthetic
from lmmvae.data.sets.rotating_mnist import rotating_mnist

__all__ = [
    "clinical_trial", "clinical_trial_synthetic", "health_mnist", "physionet", "physionet_synthetic",
    "rotating_mnist",
]
