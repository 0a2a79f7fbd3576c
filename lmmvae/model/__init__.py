"""What an LMM-VAE is (SPEC 1-3, 5, 7): the design of covariates (``design``), the latent
priors (``priors``), the encoder/decoder networks, the likelihoods, the latent-variable model that joins
them, and the registries a config names them from (``variants``, ``objective_kinds``: what each
objective implies, torch-free; the losses are ``training.objectives``).

Imports from lmmvae: ``data`` and the top-level errors/registry; nothing that trains, answers or runs.
"""
