"""The design: a formula (:class:`Design`), fitted on the train split (:class:`FittedDesign`), and
its output for some rows (:class:`DesignMatrix`) in the sparse form the LMM prior consumes (SPEC 1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from lmmvae.data.h5 import Covariate, _available_memory
from lmmvae.errors import DesignError, LmmvaeWarning
from lmmvae.model.design.bases import BASIS_CLASSES, CODED_KINDS, Basis, CovariateReader, resolve
from lmmvae.model.design.formula import parse_formula
from lmmvae.model.design.terms import INTERCEPT, ParsedFormula, RandomTerm, Term

DICT_VERSION = 1
#: most columns one term may have (a Kronecker product of bases grows fast: C(a):C(b):fourier(t, 50))
MAX_TERM_COLUMNS = 100_000


@dataclass
class DesignMatrix:
    """Design rows ``x_i = [x^s; x^r]`` of ``N`` observations, random effects kept sparse (SPEC 1).

    ``shared`` are the dense shared columns. Random-effect term ``t`` is ``levels[t]`` (code of
    the grouping factor per row, ``-1`` for a level unseen in training) and ``values[t]`` (the
    ``F_t`` columns of ``f``; zero on rows with level ``-1``, so a gather with clamped codes adds
    exactly nothing). Memory is O(N · (Q_s + Σ F_t)), independent of the number of subjects.
    """

    shared: np.ndarray  # [N, Q_s] float32
    levels: list[np.ndarray]  # each [N] int64, -1 = unseen
    values: list[np.ndarray]  # each [N, F_t] float32
    n_levels: list[int]  # P_t per term, levels seen in training

    @property
    def n_rows(self) -> int:
        return int(self.shared.shape[0])

    def __len__(self) -> int:
        return self.n_rows

    @property
    def nbytes(self) -> int:
        return int(self.shared.nbytes + sum(a.nbytes for a in self.levels) + sum(a.nbytes for a in self.values))

    def __getitem__(self, index) -> "DesignMatrix":
        return DesignMatrix(self.shared[index], [lv[index] for lv in self.levels],
                            [v[index] for v in self.values], list(self.n_levels))

    def dense(self) -> np.ndarray:
        """The dense ``x_i``: ``[N, Q_s + Σ_t P_t F_t]`` float32, for tests and small baselines only.

        Columns: shared, then per term level-major (level ``p``, column ``j`` at
        ``offset + p·F_t + j``); rows with level -1 are zero there.
        """
        n = self.n_rows
        widths = [p * v.shape[1] for p, v in zip(self.n_levels, self.values)]
        out = np.zeros((n, self.shared.shape[1] + sum(widths)), dtype=np.float32)  # [N, Q]
        out[:, : self.shared.shape[1]] = self.shared
        offset = self.shared.shape[1]
        for levels, values, width in zip(self.levels, self.values, widths):
            f_t = values.shape[1]
            rows = np.flatnonzero(levels >= 0)
            cols = offset + levels[rows, None] * f_t + np.arange(f_t)  # [n_seen, F_t]
            out[rows[:, None], cols] = values[rows]
            offset += width
        return out


@dataclass(frozen=True)
class RandomTermInfo:
    """A fitted random-effect term ``(f | group)``: ``n_levels`` groups seen in training (their
    values in code order in ``levels``) times the ``columns`` of ``f``."""

    name: str
    group: str
    n_levels: int
    columns: list[str]
    levels: list


class Design:
    """An lme4-style design formula (SPEC 1), parsed; :meth:`fit` learns it on the train split.

    ``terms`` lists the parsed terms, intercept (a :class:`Term` with no factors) first when
    present: :class:`Term` for shared terms (a product of :class:`Factor` s, each with
    ``covariate``, ``basis`` and ``args``), :class:`RandomTerm` for ``(f | group)`` (``terms`` of
    ``f``, and ``group``). Baselines read them as GP kernels (SPEC 5).
    """

    def __init__(self, formula: str):
        self.formula = formula
        self._parsed: ParsedFormula = parse_formula(formula)

    @property
    def terms(self) -> list:
        return list(self._parsed.terms)

    @property
    def intercept(self) -> bool:
        return self._parsed.intercept

    @property
    def covariate_names(self) -> set[str]:
        return _covariate_names(self._parsed.terms)

    def __repr__(self) -> str:
        return f"Design({self.formula!r})"

    def fit(self, covariates: Mapping[str, Covariate]) -> "FittedDesign":
        """Learn standardisations, category levels and RFF frequencies from ``covariates`` (the
        TRAIN split). Unknown names and wrong kinds are one-line :class:`DesignError` s."""
        if hasattr(covariates, "covariates") and not isinstance(covariates, Mapping):
            covariates = covariates.covariates  # a LongitudinalData
        def where(term) -> str:
            return f"design {self.formula!r}, term {term.name!r}"

        available = ", ".join(sorted(covariates)) or "none"
        for name in self.covariate_names:
            if name in covariates and not isinstance(covariates[name], Covariate):
                raise DesignError(f"design {self.formula!r}: fit needs lmmvae.data.h5.Covariate objects (with a "
                                  f"kind); {name!r} is a {type(covariates[name]).__name__}")
        sizes = {len(covariates[n].values) for n in self.covariate_names if n in covariates}
        if sizes == {0}:
            raise DesignError(f"design {self.formula!r}: cannot fit on 0 rows")

        def lookup(term, name):
            if name not in covariates:
                raise DesignError(f"{where(term)}: no covariate named {name!r}; available: {available}")
            return covariates[name]

        bases: dict[str, Basis] = {}

        def fit_term(term: Term) -> Term:
            factors = []
            for factor in term.factors:
                cov = lookup(term, factor.covariate)
                for name in factor.covariates[1:]:
                    resolve(factor, lookup(term, name), where(term), name)
                factor = resolve(factor, cov, where(term))
                if factor.label not in bases:
                    try:
                        bases[factor.label] = BASIS_CLASSES[factor.basis].fit(
                            factor, cov, CovariateReader(covariates, self.formula))
                    except DesignError as err:
                        if str(err).startswith("design "):
                            raise
                        raise DesignError(f"{where(term)}: {err}") from None
                factors.append(factor)
            return Term(tuple(factors))

        terms, groups = [], {}
        for term in self._parsed.terms:
            if isinstance(term, RandomTerm):
                cov = lookup(term, term.group)
                if cov.kind not in CODED_KINDS:
                    raise DesignError(f"{where(term)}: the grouping covariate {term.group!r} is {cov.kind}; "
                                      "it must be id, categorical or binary")
                seen = np.unique(cov.values)
                groups[term.name] = [cov.levels[c] for c in seen] if cov.levels is not None else [int(c) for c in seen]
                terms.append(RandomTerm(tuple(fit_term(t) for t in term.terms), term.group))
            else:
                terms.append(fit_term(term))
        return FittedDesign(self.formula, terms, bases, groups)


class FittedDesign:
    """A design fitted on the train split: re-applies the same columns to any covariates (SPEC 1).

    ``terms`` are the design's terms with each factor's covariate ``kind`` filled in and bare
    categorical names resolved to the ``categorical`` basis.
    """

    def __init__(self, formula: str, terms: list, bases: dict[str, Basis], groups: dict[str, list]):
        self.formula = formula
        self.terms = terms
        self._bases = bases
        self._groups = groups
        shared = [t for t in terms if isinstance(t, Term)]
        self._shared = _with_drops(shared)
        self._random = [(t, _with_drops(list(t.terms))) for t in terms if isinstance(t, RandomTerm)]
        self.shared_columns: list[str] = [c for term, drops in self._shared for c in self._names(term, drops)]
        self.random_terms: list[RandomTermInfo] = [
            RandomTermInfo(term.name, term.group, len(groups[term.name]),
                           [c for t, d in inner for c in self._names(t, d)], list(groups[term.name]))
            for term, inner in self._random
        ]

    @property
    def n_shared(self) -> int:
        return len(self.shared_columns)

    @property
    def intercept(self) -> bool:
        return any(isinstance(t, Term) and t.is_intercept for t in self.terms)

    @property
    def covariate_names(self) -> set[str]:
        return _covariate_names(self.terms)

    def __repr__(self) -> str:
        return (f"FittedDesign({self.formula!r}, n_shared={self.n_shared}, "
                f"random={[(r.name, r.n_levels) for r in self.random_terms]})")

    def _names(self, term: Term, drops: tuple[bool, ...]) -> list[str]:
        width = 1
        for factor, drop in zip(term.factors, drops):
            width *= len(self._bases[factor.label].columns(drop))
        if width > MAX_TERM_COLUMNS:
            raise DesignError(f"design {self.formula!r}: term {term.name!r} has {width} columns; "
                              f"at most {MAX_TERM_COLUMNS}")
        names = [""]
        for factor, drop in zip(term.factors, drops):
            cols = self._bases[factor.label].columns(drop)
            names = [f"{a}:{c}" if a else c for a in names for c in cols]
        return [INTERCEPT] if term.is_intercept else names

    def _block(self, term: Term, drops: tuple[bool, ...], reader: CovariateReader, n: int) -> np.ndarray:
        """Row-wise Kronecker product of the factors' column blocks: ``[N, Π k_f]``."""
        block = np.ones((n, 1))  # [N, 1]
        for factor, drop in zip(term.factors, drops):
            cols = self._bases[factor.label].evaluate(reader, drop)  # [N, k]
            block = (block[:, :, None] * cols[:, None, :]).reshape(n, block.shape[1] * cols.shape[1])
        return block

    def transform(self, covariates: Mapping[str, Any]) -> DesignMatrix:
        """Design rows for ``covariates`` (Covariate, numpy array or pandas Series by name).

        Unseen levels of a random-effect group give level -1 (zero random effect); an unseen
        level of a shared categorical, or a missing covariate, is a one-line DesignError.
        """
        if hasattr(covariates, "covariates") and not isinstance(covariates, Mapping):
            covariates = covariates.covariates  # a LongitudinalData
        reader = CovariateReader(covariates, self.formula)
        for name in sorted(self.covariate_names):
            reader._get(name)  # presence and equal lengths, before any work
        if reader.n_rows is None:  # a design that reads no covariate ("~ 1"): rows of whatever is given
            for name in list(covariates.keys())[:1]:
                reader._get(name)
        n = reader.n_rows or 0
        width = self.n_shared + sum(len(r.columns) for r in self.random_terms)
        needed = n * width * 8 * 2  # float64 blocks and their float32 copy
        if needed > 2**30 and needed > _available_memory():
            raise DesignError(f"design {self.formula!r}: {n} rows x {width} columns need "
                              f"{needed / 2**30:.3g} GiB, more than the memory available")
        blocks = [self._block(t, d, reader, n) for t, d in self._shared]
        shared = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
        levels, values = [], []
        for (term, inner), info in zip(self._random, self.random_terms):
            codes = reader.codes(term.group, info.levels, unseen="zero")  # [N]
            if (codes < 0).any():
                _warn_unseen(covariates[term.group], codes < 0, term)
            cols = [self._block(t, d, reader, n) for t, d in inner]
            vals = np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))  # [N, F_t]
            vals[codes < 0] = 0.0
            levels.append(codes.astype(np.int64))
            values.append(vals.astype(np.float32))
        return DesignMatrix(shared.astype(np.float32), levels, values, [r.n_levels for r in self.random_terms])

    # -- saving -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able state: the formula, each factor's fitted state (means, stds, levels, RFF
        frequencies) and each random term's group levels. :meth:`from_dict` inverts it exactly."""
        return {
            "version": DICT_VERSION,
            "formula": self.formula,
            "factors": {label: {"kind": b.factor.kind, "basis": b.factor.basis, "state": b.to_dict()}
                        for label, b in self._bases.items()},
            "groups": {name: list(levels) for name, levels in self._groups.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "FittedDesign":
        if d.get("version") != DICT_VERSION:
            raise DesignError(f"saved design has version {d.get('version')!r}, expected {DICT_VERSION}")
        parsed = parse_formula(d["formula"])
        states = d["factors"]

        def restore(term: Term) -> Term:
            factors = []
            for factor in term.factors:
                if factor.label not in states:
                    raise DesignError(f"saved design lacks the fitted state of {factor.label!r}")
                s = states[factor.label]
                factors.append(factor.with_kind(s["kind"], s["basis"]))
            return Term(tuple(factors))

        terms = [RandomTerm(tuple(restore(t) for t in term.terms), term.group) if isinstance(term, RandomTerm)
                 else restore(term) for term in parsed.terms]
        bases = {}
        for term in terms:
            for t in (term.terms if isinstance(term, RandomTerm) else (term,)):
                for f in t.factors:
                    bases[f.label] = BASIS_CLASSES[f.basis](f, dict(states[f.label]["state"]))
        return cls(d["formula"], terms, bases, {k: list(v) for k, v in d["groups"].items()})


def _warn_unseen(group: Any, unseen: np.ndarray, term: RandomTerm) -> None:
    """lme4's policy for new levels: allowed, with a zero random effect, and said so."""
    raw = group.values if isinstance(group, Covariate) else np.asarray(group)
    n_levels = len(pd.unique(raw[unseen]))
    warnings.warn(f"{n_levels} {term.group!r} level(s) ({int(unseen.sum())} row(s)) not seen in training: "
                  f"their random effect {term.name} is zero (population-level prediction)",
                  LmmvaeWarning, stacklevel=3)


def _with_drops(terms: list[Term]) -> list[tuple[Term, tuple[bool, ...]]]:
    """Per term, whether each categorical factor drops its reference level.

    A factor ``f`` of term ``T`` drops it when the rest of ``T`` is already in the model: the
    intercept for a main effect ``C(a)`` (so: reference dropped when the intercept is present),
    the term ``b`` for ``C(a):b``. Otherwise (no intercept; ``C(a):b`` without ``b``) all levels
    are kept, which keeps the columns full-rank in the usual cases.
    """
    keys = {t.key for t in terms}
    out = []
    for term in terms:
        drops = tuple(f.basis == "categorical" and (term.key - {f.label}) in keys for f in term.factors)
        out.append((term, drops))
    return out


def _covariate_names(terms) -> set[str]:
    names = set()
    for term in terms:
        if isinstance(term, RandomTerm):
            names.add(term.group)
            names |= _covariate_names(term.terms)
        else:
            names |= {c for f in term.factors for c in f.covariates}
    return names
