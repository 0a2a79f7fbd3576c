"""The terms a design formula parses into (SPEC 1): factors, their products, random terms.

:mod:`lmmvae.model.design.formula` builds them from text; :mod:`lmmvae.model.design.fitted` turns them into
columns; the GP baselines read them as kernels (SPEC 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

INTERCEPT = "(Intercept)"


@dataclass(frozen=True)
class Factor:
    """One covariate seen through one basis: ``age``, ``C(icu_type)``, ``fourier(angle, 3, period=2*pi)``.

    ``args`` holds the evaluated numeric arguments (``degree``; ``n_frequencies``, ``period``;
    ``n_features``, ``lengthscale``, ``seed``; ``df``; ``reference``; for ``transform`` factors the
    expression tree ``expr`` and its ``inputs``, the first of which is ``covariate``); ``label`` is the canonical text, used in column
    names. ``kind`` is the covariate's kind, known only after fitting (``None`` before).
    """

    covariate: str
    basis: str
    args: dict = field(default_factory=dict, compare=False)
    label: str = ""
    kind: str | None = None

    @property
    def covariates(self) -> tuple[str, ...]:
        """Every covariate the factor reads: one, or the inputs of an ``I(age * dose)`` expression."""
        return tuple(self.args.get("inputs", (self.covariate,)))

    def with_kind(self, kind: str, basis: str | None = None) -> "Factor":
        return replace(self, kind=kind, basis=basis or self.basis)


@dataclass(frozen=True)
class Term:
    """A product of factors (``a:b``); the empty product is the intercept (a column of ones).

    For a GP reading of the formula (SPEC 5, docs/baselines.md) a term is a product kernel of its
    factors' kernels, and the formula's ``+`` is a sum of the terms' kernels.
    """

    factors: tuple[Factor, ...] = ()

    @property
    def is_intercept(self) -> bool:
        return not self.factors

    @property
    def name(self) -> str:
        return ":".join(f.label for f in self.factors) if self.factors else "1"

    @property
    def key(self) -> frozenset:
        """Identity up to factor order (``a:b`` is ``b:a``)."""
        return frozenset(f.label for f in self.factors)


@dataclass(frozen=True)
class RandomTerm:
    """``(f | group)``: the columns of ``f`` (its ``terms``, the intercept among them unless
    ``0 +``/``- 1``) interacted with the one-hot of the grouping factor ``group`` (SPEC 1)."""

    terms: tuple[Term, ...]
    group: str

    @property
    def intercept(self) -> bool:
        return any(t.is_intercept for t in self.terms)

    @property
    def name(self) -> str:
        parts = [t.name for t in self.terms if not t.is_intercept]
        head = "1" if self.intercept else "0"
        return f"({' + '.join([head] + parts)} | {self.group})"


@dataclass(frozen=True)
class ParsedFormula:
    terms: tuple  # Term | RandomTerm, intercept first when present

    @property
    def intercept(self) -> bool:
        return any(isinstance(t, Term) and t.is_intercept for t in self.terms)
