"""The answers of a fitted model (SPEC 2.4, 3.4, 6): predictions and their Monte Carlo
estimates, intervals, covariate effects, contrasts, the summary, the metrics and the evaluation, the
diagnostics of posterior collapse.

Imports from lmmvae: ``training`` (config checks), ``model``, ``data``, the top-level errors/atomic/
progress, and two edges into its neighbours: ``classical.mixedlm`` (contrast: the closed-form
interval of a mixed model) and ``reporting.figures`` / ``reporting.curves`` (effects, summary).
"""
