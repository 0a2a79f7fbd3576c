"""Run directories and the files around them: the layout of a run, saving and loading a
fitted model, the lock one run holds, path checks, and the YAML reader.

Imports from lmmvae: ``model.design`` and ``data.h5`` (a run's design and covariates) and the
top-level errors/atomic; nothing that trains or answers.
"""
