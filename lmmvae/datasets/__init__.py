"""The four data sets of the benchmark (docs/data_format.md), each a function returning
:class:`lmmvae.h5.LongitudinalData`, plus the raw-format synthetic stand-ins for PhysioNet and the
clinical trial. Each module registers its ``lmmvae data`` command (name, options, help) in
:mod:`lmmvae.datasets.generators`, which the command line and the workflow config's ``generator:``
are built from: a new data set is one module + one line there."""

from lmmvae.datasets.clinical_trial import clinical_trial
from lmmvae.datasets.clinical_trial_synthetic import clinical_trial_synthetic
from lmmvae.datasets.health_mnist import health_mnist
from lmmvae.datasets.physionet import physionet
from lmmvae.datasets.physionet_synthetic import physionet_synthetic
from lmmvae.datasets.rotating_mnist import rotating_mnist

__all__ = [
    "clinical_trial", "clinical_trial_synthetic", "health_mnist", "physionet", "physionet_synthetic",
    "rotating_mnist",
]
