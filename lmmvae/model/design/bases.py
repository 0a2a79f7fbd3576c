"""Fitted basis functions of design factors (SPEC 1), and reading covariates for them.

Each basis is fitted on the train split (standardisation, category levels, RFF frequencies),
evaluates a factor's column block ``[N, k]`` from a covariate, and round-trips through a JSON-able
dict. Covariates arrive as :class:`lmmvae.data.h5.Covariate`, numpy arrays or pandas Series; coded ones
are matched to fitted levels by value through :func:`lmmvae.data.levels.match_levels` (``12``, ``12.0`` and
``"12"`` are one level), the rule the loader uses too.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from lmmvae.data.h5 import Covariate
from lmmvae.data.levels import match_levels, plain_value
from lmmvae.errors import DesignError
from lmmvae.model.design.expressions import evaluate as evaluate_expression
from lmmvae.model.design.spectral import fourier_features, rff_features, rff_frequencies
from lmmvae.model.design.terms import Factor

NUMERIC_KINDS = ("continuous", "time")
CODED_KINDS = ("binary", "categorical", "id")


class CovariateReader:
    """Reads named covariates for a transform, checking presence and a common length."""

    def __init__(self, covariates: Mapping[str, Any], formula: str):
        self.covariates = covariates
        self.formula = formula
        self.n_rows: int | None = None
        self._first: str | None = None

    def _get(self, name: str) -> Any:
        try:
            present = name in self.covariates
        except TypeError:
            present = False
        if not present:
            try:
                available = ", ".join(sorted(map(str, self.covariates.keys()))) or "none"
            except AttributeError:
                available = "?"
            raise DesignError(f"design {self.formula!r}: covariate {name!r} is missing (given: {available})")
        value = self.covariates[name]
        n = len(value.values) if isinstance(value, Covariate) else len(np.asarray(value))
        if self.n_rows is None:
            self.n_rows, self._first = n, name
        elif n != self.n_rows:
            raise DesignError(
                f"design {self.formula!r}: covariate {name!r} has {n} rows but {self._first!r} has {self.n_rows}"
            )
        return value

    def numbers(self, name: str) -> np.ndarray:
        """Float64 values ``[N]`` of a numeric covariate (a categorical/id Covariate gives its level
        values, which must then be numbers; a binary one its 0/1 codes)."""
        value = self._get(name)
        raw = value.values if isinstance(value, Covariate) else value
        if isinstance(value, Covariate) and value.kind in ("categorical", "id"):
            raw = np.asarray(value.levels, dtype=object)[value.values]  # numbers stored as levels
        try:
            out = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise DesignError(f"design {self.formula!r}: covariate {name!r} must be numeric") from None
        if out.ndim != 1:
            raise DesignError(f"design {self.formula!r}: covariate {name!r} must be 1-D, got shape {out.shape}")
        if not np.isfinite(out).all():
            row = int(np.flatnonzero(~np.isfinite(out))[0])
            raise DesignError(f"design {self.formula!r}: covariate {name!r} has a missing or non-finite value "
                              f"at row {row}")
        return out

    def codes(self, name: str, levels: list, unseen: str) -> np.ndarray:
        """Int64 codes ``[N]`` into ``levels``. Unseen values: ``unseen="error"`` raises a
        DesignError naming covariate and level; ``unseen="zero"`` gives code -1."""
        value = self._get(name)
        if isinstance(value, Covariate) and value.levels is not None:
            # map the covariate's own level list once, then index by its codes: O(P) string work
            table = match_levels(value.levels, levels)
            codes = table[value.values] if len(value.values) else np.zeros(0, np.int64)
            originals = np.asarray(value.levels, dtype=object)[value.values] if (codes < 0).any() else None
        else:
            raw = value.values if isinstance(value, Covariate) else value
            raw = np.asarray(raw)
            if raw.ndim != 1:
                raise DesignError(f"design {self.formula!r}: covariate {name!r} must be 1-D, got shape {raw.shape}")
            inverse, uniques = pd.factorize(raw, use_na_sentinel=True)
            table = np.append(match_levels(list(uniques), levels), -1)
            codes = table[inverse]  # sentinel -1 (missing) picks the trailing -1
            originals = raw
        if unseen == "error" and (codes < 0).any():
            row = int(np.flatnonzero(codes < 0)[0])
            shown = plain_value(originals[row])
            raise DesignError(
                f"design {self.formula!r}: covariate {name!r} has level {shown!r} (row {row}) that was not "
                f"seen in training (training levels: {_preview(levels)})"
            )
        return codes


def _preview(levels: list, n: int = 8) -> str:
    shown = ", ".join(repr(v) for v in levels[:n])
    return shown + (f", ... ({len(levels)} in all)" if len(levels) > n else "")


# -- bases ------------------------------------------------------------------------------------


class Basis:
    """A factor's fitted basis: ``columns(drop)`` names and ``evaluate(reader, drop)`` ``[N, k]``.

    ``drop`` (drop the reference level) matters only for categorical bases.
    """

    def __init__(self, factor: Factor, state: dict):
        self.factor = factor
        self.state = state

    @property
    def label(self) -> str:
        return self.factor.label

    def to_dict(self) -> dict:
        return dict(self.state)


class LinearBasis(Basis):
    """continuous/time: ``(v - mean) / std`` with train statistics (std 0 -> 1); binary: ``v`` (0/1)."""

    @classmethod
    def fit(cls, factor: Factor, cov: Covariate, reader: CovariateReader | None = None) -> "LinearBasis":
        if cov.kind == "binary":
            return cls(factor, {"mean": None, "std": None})
        return cls(factor, _standardiser(cov.values, factor.covariate))

    def columns(self, drop: bool = False) -> list[str]:
        return [self.label]

    def evaluate(self, reader: CovariateReader, drop: bool = False) -> np.ndarray:
        v = reader.numbers(self.factor.covariate)  # [N]
        if self.state["mean"] is None:
            if not np.isin(v, (0.0, 1.0)).all():
                raise DesignError(f"design {reader.formula!r}: binary covariate {self.factor.covariate!r} "
                                  "must contain only 0 and 1")
            return v[:, None]
        with np.errstate(over="ignore", invalid="ignore"):
            z = ((v - self.state["mean"]) / self.state["std"])[:, None]  # [N, 1]
        return _finite(z, reader, self.factor)


class CategoricalBasis(Basis):
    """One-hot of the levels seen in training (code order); ``drop`` removes the reference level:
    the one ``C(v, Treatment('level'))`` names, else the covariate's stored ``reference`` (the data
    file's), else the first level."""

    @classmethod
    def fit(cls, factor: Factor, cov: Covariate, reader: CovariateReader | None = None) -> "CategoricalBasis":
        seen = np.unique(cov.values)
        levels = [cov.levels[c] for c in seen] if cov.levels is not None else [int(c) for c in seen]
        levels = [plain_value(v) for v in levels]
        reference = factor.args.get("reference", getattr(cov, "reference", None))
        index = 0
        if reference is not None:
            index = int(match_levels([reference], levels)[0])
            if index < 0:
                raise DesignError(f"reference level {plain_value(reference)!r} is not a "
                                  f"level of {factor.covariate!r} in the training rows (levels: {_preview(levels)})")
        return cls(factor, {"levels": levels, "reference": index})

    def columns(self, drop: bool = False) -> list[str]:
        return [f"{self.label}[{v}]" for j, v in enumerate(self.state["levels"]) if not (drop and j == self._ref)]

    @property
    def _ref(self) -> int:
        return int(self.state.get("reference", 0))  # designs saved before references: the first level

    def evaluate(self, reader: CovariateReader, drop: bool = False) -> np.ndarray:
        levels = self.state["levels"]
        codes = reader.codes(self.factor.covariate, levels, unseen="error")  # [N]
        onehot = np.zeros((len(codes), len(levels)))  # [N, n_levels]
        onehot[np.arange(len(codes)), codes] = 1.0
        return np.delete(onehot, self._ref, axis=1) if drop else onehot


class PolyBasis(Basis):
    """``z, z², …, z^k`` of the standardised ``z = (v - mean) / std``."""

    @classmethod
    def fit(cls, factor: Factor, cov: Covariate, reader: CovariateReader | None = None) -> "PolyBasis":
        return cls(factor, _standardiser(cov.values, factor.covariate))

    def columns(self, drop: bool = False) -> list[str]:
        return [f"{self.label}[{j}]" for j in range(1, self.factor.args["degree"] + 1)]

    def evaluate(self, reader: CovariateReader, drop: bool = False) -> np.ndarray:
        z = (reader.numbers(self.factor.covariate) - self.state["mean"]) / self.state["std"]  # [N]
        with np.errstate(over="ignore"):
            block = z[:, None] ** np.arange(1, self.factor.args["degree"] + 1)  # [N, k]
        return _finite(block, reader, self.factor)


class FourierBasis(Basis):
    """``cos(2πk v/T), sin(2πk v/T)``, k = 1..K, interleaved, on the raw ``v`` (SPEC 1, 5)."""

    @classmethod
    def fit(cls, factor: Factor, cov: Covariate, reader: CovariateReader | None = None) -> "FourierBasis":
        return cls(factor, {})

    def columns(self, drop: bool = False) -> list[str]:
        return [f"{self.label}[{fn}{k}]" for k in range(1, self.factor.args["n_frequencies"] + 1)
                for fn in ("cos", "sin")]

    def evaluate(self, reader: CovariateReader, drop: bool = False) -> np.ndarray:
        v = reader.numbers(self.factor.covariate)
        return fourier_features(v, self.factor.args["n_frequencies"], self.factor.args["period"])  # [N, 2K]


class RFFBasis(Basis):
    """Random Fourier features of an RBF kernel on the raw ``v``; frequencies drawn once, stored."""

    @classmethod
    def fit(cls, factor: Factor, cov: Covariate, reader: CovariateReader | None = None) -> "RFFBasis":
        args = factor.args
        omega = rff_frequencies(args["n_features"], args["lengthscale"], args["seed"])
        return cls(factor, {"omega": [float(w) for w in omega]})

    def columns(self, drop: bool = False) -> list[str]:
        return [f"{self.label}[{fn}{m}]" for m in range(1, self.factor.args["n_features"] + 1)
                for fn in ("cos", "sin")]

    def evaluate(self, reader: CovariateReader, drop: bool = False) -> np.ndarray:
        v = reader.numbers(self.factor.covariate)
        return rff_features(v, np.asarray(self.state["omega"]))  # [N, 2M]


class TransformBasis(Basis):
    """``I(expr)``, ``scale(expr)``, ``log(expr)`` ...: the expression's values (SPEC 1), standardised
    like any continuous column with train statistics, so ``scale(v)`` is the column ``v``."""

    @classmethod
    def fit(cls, factor: Factor, cov: Covariate, reader: CovariateReader | None = None) -> "TransformBasis":
        return cls(factor, _standardiser(cls._values(factor, reader), factor.label))

    @staticmethod
    def _values(factor: Factor, reader: CovariateReader) -> np.ndarray:
        where = f"design {reader.formula!r}, term {factor.label!r}"
        return np.asarray(evaluate_expression(factor.args["expr"], reader.numbers, where), dtype=np.float64)  # [N]

    def columns(self, drop: bool = False) -> list[str]:
        return [self.label]

    def evaluate(self, reader: CovariateReader, drop: bool = False) -> np.ndarray:
        v = self._values(self.factor, reader)  # [N]
        with np.errstate(over="ignore", invalid="ignore"):
            z = ((v - self.state["mean"]) / self.state["std"])[:, None]  # [N, 1]
        return _finite(z, reader, self.factor)


class NaturalSplineBasis(Basis):
    """``ns(v, df)``: R's ``splines::ns`` natural cubic spline basis without intercept (SPEC 1):
    ``df - 1`` interior knots at the train quantiles ``k/df``, boundary knots at the train min and
    max (stored); linear beyond the boundary knots, as R extrapolates."""

    @classmethod
    def fit(cls, factor: Factor, cov: Covariate, reader: CovariateReader | None = None) -> "NaturalSplineBasis":
        v, df = np.asarray(cov.values, dtype=np.float64), factor.args["df"]
        if len(np.unique(v)) < df + 1:
            raise DesignError(f"{factor.covariate!r} has {len(np.unique(v))} distinct "
                              f"training values; ns(v, {df}) needs at least {df + 1}")
        interior = np.quantile(v, np.arange(1, df) / df)  # R's quantile type 7
        return cls(factor, {"knots": [float(k) for k in interior], "boundary": [float(v.min()), float(v.max())]})

    def columns(self, drop: bool = False) -> list[str]:
        return [f"{self.label}[{j}]" for j in range(1, self.factor.args["df"] + 1)]

    def evaluate(self, reader: CovariateReader, drop: bool = False) -> np.ndarray:
        v = reader.numbers(self.factor.covariate)  # [N]
        return _finite(natural_spline(v, self.state["knots"], self.state["boundary"]), reader, self.factor)


def natural_spline(x: np.ndarray, knots: list, boundary: list) -> np.ndarray:
    """R's ``ns(x, knots=, Boundary.knots=, intercept=FALSE)``: ``[N, len(knots) + 1]``.

    The cubic B-splines on the knots (boundary knots of multiplicity 4), first one dropped, times
    the null space (from a complete QR) of their second derivatives at the two boundary knots;
    outside ``[lo, hi]`` each column continues along its tangent at the nearer boundary.
    """
    from scipy.interpolate import BSpline

    lo, hi = boundary
    t = np.concatenate([[lo] * 4, knots, [hi] * 4])
    k = len(t) - 4  # number of cubic B-splines
    spline = BSpline(t, np.eye(k), 3, extrapolate=False)
    inside = np.clip(x, lo, hi)
    basis = np.nan_to_num(spline(inside))  # [N, k]
    slope = spline.derivative(1)(np.array([lo, hi]))  # [2, k]
    basis += np.where(x < lo, x - lo, 0.0)[:, None] * slope[0] + np.where(x > hi, x - hi, 0.0)[:, None] * slope[1]
    const = spline.derivative(2)(np.array([lo, hi]))[:, 1:]  # [2, k-1]
    q, _ = np.linalg.qr(const.T, mode="complete")  # [k-1, k-1]
    return basis[:, 1:] @ q[:, 2:]  # [N, k-3]


BASIS_CLASSES = {"linear": LinearBasis, "categorical": CategoricalBasis, "poly": PolyBasis,
                 "fourier": FourierBasis, "rff": RFFBasis, "transform": TransformBasis, "ns": NaturalSplineBasis}


def _standardiser(values: np.ndarray, name: str = "") -> dict:
    """Train mean and standard deviation (0 -> 1), computed on ``values / max|values|`` so that
    huge but finite values (1e300) neither overflow the sum of squares nor become a column of
    zeros; a result that still is not finite is a one-line DesignError, never ``Infinity``."""
    values = np.asarray(values, dtype=np.float64)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    if scale == 0.0 or not np.isfinite(scale):
        mean, std = (0.0, 0.0) if scale == 0.0 else (np.inf, np.inf)
    else:
        scaled = values / scale
        mean, std = float(np.mean(scaled)) * scale, float(np.std(scaled)) * scale
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise DesignError(f"covariate {name!r}: its mean or standard deviation overflows float64 "
                          f"(values up to {scale:.3g}); rescale it")
    return {"mean": mean, "std": std if std > 0 else 1.0}


def _finite(block: np.ndarray, reader: CovariateReader, factor: Factor) -> np.ndarray:
    """``block`` if finite in float32, the dtype the model reads it in (1e308 is finite in float64
    but inf in float32); else a one-line DesignError naming the covariate and the first row."""
    fits = np.isfinite(block) & (np.abs(block) <= np.finfo(np.float32).max)
    if not fits.all():
        row = int(np.flatnonzero(~fits.all(axis=1))[0])
        raise DesignError(f"design {reader.formula!r}: {factor.label} overflows at row {row} (covariate "
                          f"{factor.covariate!r} is too far outside its training range); rescale it")
    return block


def resolve(factor: Factor, cov: Covariate, where: str, name: str | None = None) -> Factor:
    """Check the factor's basis against the covariate's kind; a bare categorical name becomes a
    categorical factor. ``where`` names the term, ``name`` the covariate (default the factor's
    first) for the error message."""
    kind = cov.kind
    if factor.basis == "linear":
        if kind == "categorical":
            return factor.with_kind(kind, "categorical")
        if kind == "id":
            raise DesignError(f"{where}: id covariate {factor.covariate!r} can enter as a fixed effect only "
                              f"as C({factor.covariate}); as a random-effect group write (1 | {factor.covariate})")
        return factor.with_kind(kind)
    if factor.basis == "categorical":
        if kind not in CODED_KINDS:
            raise DesignError(f"{where}: C({factor.covariate}) needs a binary, categorical or id covariate, "
                              f"but {factor.covariate!r} is {kind}")
        return factor.with_kind(kind)
    if factor.basis == "transform":
        if kind not in NUMERIC_KINDS + ("binary",):
            raise DesignError(f"{where}: {factor.label} needs continuous, time or binary covariates, "
                              f"but {name or factor.covariate!r} is {kind}")
        return factor.with_kind("continuous")
    if kind not in NUMERIC_KINDS:
        raise DesignError(f"{where}: {factor.basis}() needs a continuous or time covariate, "
                          f"but {factor.covariate!r} is {kind}")
    return factor.with_kind(kind)
