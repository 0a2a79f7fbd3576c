"""The design of LMM-VAE: named covariates -> design rows ``x_i`` (SPEC 1), and the GP connection
of Fourier features (SPEC 5).

    design = Design("~ age + sex + sex:age + (1 | id)")
    fitted = design.fit(train.covariates)          # standardisation, levels, RFF frequencies
    x = fitted.transform(test.covariates)          # DesignMatrix: shared [N, Q_s] + sparse random effects
    DesignBatch.from_matrix(x, device)             # lmmvae.data.batch: tensors for the LMM prior

See docs/configuration.md, "Design formulas", for the syntax and the columns of each term.
"""

from lmmvae.model.design.fitted import Design, DesignMatrix, FittedDesign, RandomTermInfo
from lmmvae.model.design.formula import parse_formula
from lmmvae.model.design.terms import INTERCEPT, Factor, RandomTerm, Term
from lmmvae.model.design.spectral import (
    fourier_column_weights,
    fourier_features,
    kernel,
    rff_features,
    rff_frequencies,
    spectral_weights,
    weighted_fourier_features,
)

__all__ = [
    "INTERCEPT", "Design", "DesignMatrix", "Factor", "FittedDesign", "RandomTerm", "RandomTermInfo",
    "Term", "fourier_column_weights", "fourier_features", "kernel", "parse_formula", "rff_features",
    "rff_frequencies", "spectral_weights", "weighted_fourier_features",
]
