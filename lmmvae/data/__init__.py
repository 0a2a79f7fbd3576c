"""The data format and the data sets (docs/data_format.md): the in-memory record and its
HDF5 file, levels of categorical covariates, CSV tables, tensors and batches for training, and the four
data sets of the benchmark with their generators (``sets``).

Imports from lmmvae: the top-level errors/atomic/progress/registry and nothing else, except
``sets.show`` (plots of examples), which uses ``lmmvae.reporting.subjects``.
"""
