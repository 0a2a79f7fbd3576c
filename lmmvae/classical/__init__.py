"""The classical family of the benchmark: a linear mixed model per output feature
(``mixedlm``) and the feature mean, fitted, saved, loaded and summarised like the neural models
(``family`` registers the variants and their fit/load hooks).

Imports from lmmvae: ``answers``, ``training`` (config checks), ``model``, ``data``, ``runs`` and the
top-level errors.
"""
