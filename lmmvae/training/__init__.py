"""Building a model from a config and fitting it (SPEC 2.3, 3.3, 4, 7.1): the config
checks against the registries, assembling networks x likelihood x prior, the objectives (ELBO, GSNN),
the trainer with its checkpoints, and the machine (device, threads, GPU slots).

Imports from lmmvae: ``model``, ``data``, ``runs``, the top-level config/errors/atomic/progress/
registry, and ``answers.metrics`` (``objectives``: the log-mean-exp of importance weights).
"""
