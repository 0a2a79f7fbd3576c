"""A design formula read as a GP kernel (SPEC 5, docs/baselines.md), built from gpytorch kernels.

The LMM ↔ GP correspondence of SPEC 5 lets one experiment config declare both models: each term of
the formula becomes one additive *component* of the kernel,

* a continuous or time covariate → an RBF kernel on its standardised value (``fourier(v, K,
  period=T)`` → a periodic kernel with that period; ``rff(v, M, lengthscale=ℓ)`` → RBF with initial
  lengthscale ``ℓ``; ``poly(v, k)`` → RBF);
* a binary, categorical or id covariate → the categorical kernel ``k(a, b) = 1[a = b]``;
* ``a:b`` → the product of the factors' kernels; ``+`` → the sum of the components;
* a random effect ``(1 + f | g)`` → the components ``g`` and ``g:f`` (an intercept and a slope per
  level of ``g``); the shared intercept ``1`` carries no component (the GPs have zero mean).

Every component is ``ScaleKernel(∏ factors)`` with ``batch_shape=[L]``: each latent dimension has
its own variances and lengthscales (docs/baselines.md). Kernels select their input columns with
``active_dims`` from the input matrix that :class:`KernelInputs` builds from ``batch.covariates``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable

import gpytorch
import torch
from gpytorch.kernels import Kernel, LinearKernel, PeriodicKernel, ProductKernel, RBFKernel, ScaleKernel
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import nn

from lmmvae.data.h5 import Covariate
from lmmvae.errors import ConfigError, DesignError

KINDS = ("rbf", "periodic", "categorical")
CODED = ("binary", "categorical", "id")


@dataclass(frozen=True)
class KernelFactor:
    """One covariate's kernel inside a component: ``kind`` ∈ rbf | periodic | categorical."""

    covariate: str
    kind: str
    period: float | None = None  # periodic: period in the covariate's own units (fixed)
    lengthscale: float | None = None  # rbf: initial lengthscale in the covariate's own units

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert (self.period is not None) == (self.kind == "periodic"), self


@dataclass(frozen=True)
class Component:
    """A product of factor kernels: one additive term of the GP prior (e.g. ``id×age``)."""

    factors: tuple[KernelFactor, ...]

    @property
    def covariates(self) -> tuple[str, ...]:
        return tuple(f.covariate for f in self.factors)

    def involves(self, covariate: str) -> bool:
        return covariate in self.covariates

    def __str__(self) -> str:
        return "×".join(self.covariates)


def components_to_json(components: list[Component]) -> list[list[dict]]:
    return [[dataclasses.asdict(f) for f in c.factors] for c in components]


def components_from_json(record: list[list[dict]]) -> list[Component]:
    return [Component(tuple(KernelFactor(**f) for f in factors)) for factors in record]


class CategoricalKernel(Kernel):
    """``k(a, b) = 1[a = b]`` on integer codes (a fixed kernel: no hyper-parameters of its own)."""

    has_lengthscale = False

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params) -> torch.Tensor:
        a, b = x1[..., 0], x2[..., 0]  # [..., n], [..., m]
        if diag:
            return (a == b).to(x1.dtype)  # [..., n]
        return (a.unsqueeze(-1) == b.unsqueeze(-2)).to(x1.dtype)  # [..., n, m]


def fit_inputs(factors: Iterable[KernelFactor], covariates: dict[str, Covariate]) -> dict:
    """What :class:`KernelInputs` needs from the training split, as JSON: the input columns, their
    kinds, and the standardisation of RBF columns (training mean and standard deviation, SPEC 1)."""
    kinds: dict[str, str] = {}
    for factor in factors:
        if factor.covariate not in covariates:
            raise DesignError(f"kernel term names covariate {factor.covariate!r}, which the data lack; "
                              f"available: {', '.join(sorted(covariates))}")
        if kinds.setdefault(factor.covariate, factor.kind) != factor.kind:
            raise DesignError(f"covariate {factor.covariate!r} is used both as {kinds[factor.covariate]} "
                              f"and as {factor.kind} in the kernel")
    shift, scale = [], []
    for name in kinds:
        values = covariates[name].values.astype("float64")
        if kinds[name] == "rbf" and len(values):
            shift.append(float(values.mean()))
            scale.append(float(values.std()) or 1.0)
        else:
            shift.append(0.0)
            scale.append(1.0)
    return {"columns": list(kinds), "kinds": kinds, "shift": shift, "scale": scale}


class KernelInputs(nn.Module):
    """Raw covariates by name → the kernels' input matrix ``[B, C]``, from :func:`fit_inputs`' record.

    RBF columns are standardised with the training mean and standard deviation (as the design
    does, SPEC 1); periodic columns stay in their own units (their period is declared in them);
    categorical columns hold the integer codes (``-1`` for a level unseen in training).
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.columns = list(spec["columns"])
        self.kinds = dict(spec["kinds"])
        self.register_buffer("shift", torch.tensor(spec["shift"], dtype=torch.float32))  # [C]
        self.register_buffer("scale", torch.tensor(spec["scale"], dtype=torch.float32))  # [C]

    def index(self, covariate: str) -> int:
        return self.columns.index(covariate)

    def forward(self, covariates: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [c for c in self.columns if c not in covariates]
        if missing:
            raise DesignError(f"the kernel needs covariate(s) {', '.join(missing)}, absent from the batch")
        raw = torch.stack([covariates[c].to(self.shift.dtype) for c in self.columns], dim=-1)  # [B, C]
        return (raw - self.shift) / self.scale


def kernel_diag(kernel: Kernel, x: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """``k(x_i, x_i)`` for ``x [n, C]``: ``[L, n]``.

    The inputs get an explicit batch dimension of size ``L``: gpytorch 1.15 takes the diagonal of a
    ``diag=True`` result once more when it looks square, which silently breaks ``n == L``.
    """
    return kernel(x.expand(latent_dim, *x.shape), diag=True)


def factor_kernel(factor: KernelFactor, column: int, latent_dim: int, scale: float = 1.0) -> Kernel:
    """The gpytorch kernel of one factor on input ``column``; ``scale``: the column's standardisation."""
    batch = torch.Size([latent_dim])
    if factor.kind == "categorical":
        return CategoricalKernel(active_dims=[column])
    if factor.kind == "periodic":
        kernel = PeriodicKernel(active_dims=[column], batch_shape=batch)
        kernel.period_length = torch.full_like(kernel.period_length, factor.period)
        kernel.raw_period_length.requires_grad_(False)  # the formula declares the period
        kernel.lengthscale = torch.full_like(kernel.lengthscale, 1.0)
        return kernel
    kernel = RBFKernel(active_dims=[column], batch_shape=batch)
    init = 1.0 if factor.lengthscale is None else factor.lengthscale / scale
    kernel.lengthscale = torch.full_like(kernel.lengthscale, init)
    return kernel


def component_kernel(component: Component, inputs: KernelInputs, latent_dim: int,
                     outputscale: float = 1.0) -> ScaleKernel:
    """``ScaleKernel(∏ factors)`` with per-dimension variance (``batch_shape=[L]``)."""
    parts = [factor_kernel(f, inputs.index(f.covariate), latent_dim,
                           float(inputs.scale[inputs.index(f.covariate)])) for f in component.factors]
    base = parts[0] if len(parts) == 1 else ProductKernel(*parts)
    kernel = ScaleKernel(base, batch_shape=torch.Size([latent_dim]))
    kernel.outputscale = torch.full_like(kernel.outputscale, outputscale)
    return kernel


# -- reading a fitted design -----------------------------------------------------------------


def _term_factors(term, covariates: dict[str, Covariate]) -> tuple[KernelFactor, ...]:
    """The factors of one parsed design term (a product of basis expansions of covariates)."""
    factors = []
    for name, basis, args in _term_parts(term):
        if name not in covariates:
            raise DesignError(f"design term {term!r} names covariate {name!r}, which the data lack")
        kind = covariates[name].kind
        if kind in CODED or basis == "categorical":
            factors.append(KernelFactor(name, "categorical"))
        elif basis == "fourier" and args.get("period") is not None:
            factors.append(KernelFactor(name, "periodic", period=float(args["period"])))
        elif basis == "rff" and args.get("lengthscale") is not None:
            factors.append(KernelFactor(name, "rbf", lengthscale=float(args["lengthscale"])))
        else:
            factors.append(KernelFactor(name, "rbf"))
    return tuple(factors)


def _term_parts(term) -> list[tuple[str, str, dict]]:
    """``(covariate, basis, args)`` of each factor of a design term (see lmmvae.model.design)."""
    parts = getattr(term, "factors", None)
    if parts is None:
        parts = [term]
    out = []
    for part in parts:
        name = getattr(part, "covariate", None) or getattr(part, "name", None)
        basis = getattr(part, "basis", None) or "linear"
        args = dict(getattr(part, "args", None) or {})
        out.append((name, basis, args))
    return out


def components_from_design(design, covariates: dict[str, Covariate]) -> list[Component]:
    """The kernel components of a fitted design's formula (the reading of SPEC 5 above)."""
    components: list[Component] = []
    for term in design.terms:
        if getattr(term, "is_intercept", False):
            continue
        group = getattr(term, "group", None)
        if group is None:
            components.append(Component(_term_factors(term, covariates)))
            continue
        # random effect (f | g): g for the intercept, g × t for every term t of f
        grouping = KernelFactor(group, "categorical")
        for inner in getattr(term, "terms", []):
            if getattr(inner, "is_intercept", False):
                components.append(Component((grouping,)))
            else:
                components.append(Component((grouping,) + _term_factors(inner, covariates)))
    unique = list(dict.fromkeys(components))
    if not unique:
        raise ConfigError(f"design {getattr(design, 'formula', '')!r} has no term to read as a kernel "
                          "(GP priors need at least one covariate)")
    return unique


def view_factor(components: list[Component], variant: str, view: str | None = None) -> KernelFactor:
    """The view factor of GPPVAE's / SVGP-VAE's object × view kernel: the formula's continuous
    covariate (``view`` names it when there are several)."""
    continuous = {f.covariate: f for c in components for f in c.factors if f.kind != "categorical"}
    if view is not None:
        if view not in continuous:
            raise ConfigError(f"{variant}: prior.view = {view!r} is not a continuous term of the design "
                              f"(continuous terms: {', '.join(continuous) or 'none'})")
        return continuous[view]
    if len(continuous) != 1:
        raise ConfigError(f"{variant}: the object × view kernel needs one continuous view covariate; the design has "
                          f"{len(continuous)} ({', '.join(continuous) or 'none'}): name one with prior.view")
    return next(iter(continuous.values()))


class ObjectViewKernel(nn.Module):
    """GPPVAE's kernel (Casale et al. 2018, eq. 7): ``K[(p,v),(p',v')] = w_pᵀ w_p' · k_view(v, v')``.

    ``w_p ∈ R^H`` are learned object vectors, one per subject (``nn.Embedding``); an unseen subject
    (code ``-1``) has ``w = 0``, so its prediction is the prior mean. The object part is gpytorch's
    ``LinearKernel`` (its variance per latent dimension), the view part an RBF or periodic kernel;
    their product is evaluated on the inputs ``[w_p(i) ; v_i]``.
    """

    def __init__(self, n_objects: int, object_dim: int, view: KernelFactor, view_inputs: KernelInputs,
                 latent_dim: int):
        super().__init__()
        self.object_dim = object_dim
        self.latent_dim = latent_dim
        self.view_inputs = view_inputs
        self.objects = nn.Embedding(n_objects, object_dim)
        nn.init.normal_(self.objects.weight, std=1.0 / math.sqrt(object_dim))
        self.object_kernel = LinearKernel(active_dims=list(range(object_dim)), batch_shape=torch.Size([latent_dim]))
        self.view_kernel = factor_kernel(view, object_dim, latent_dim, float(view_inputs.scale[0]))
        self.kernel = ProductKernel(self.object_kernel, self.view_kernel)

    def object_vectors(self, subject: torch.Tensor) -> torch.Tensor:
        seen = (subject >= 0).unsqueeze(-1)
        return self.objects(subject.clamp(min=0)) * seen  # [B, H]

    def view(self, covariates: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.view_inputs(covariates)  # [B, 1]

    def inputs(self, subject: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.object_vectors(subject), view], dim=-1)  # [B, H + 1]

    def view_covariance(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """``k_view`` between view values ``[n, 1]`` and ``[m, 1]``: ``[L, n, m]``."""
        pad = lambda v: torch.cat([v.new_zeros(v.shape[0], self.object_dim), v], dim=-1)  # noqa: E731
        return self.view_kernel(pad(v1), pad(v2)).to_dense()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None, diag: bool = False) -> torch.Tensor:
        x2 = x1 if x2 is None else x2
        if diag:
            return kernel_diag(self.kernel, x1, self.latent_dim)  # [L, n]
        return self.kernel(x1, x2).to_dense()  # [L, n, m]


def positive(value: float | torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Raw value of a gpytorch ``Positive`` (softplus) constraint initialised at ``value``."""
    constraint = gpytorch.constraints.Positive()
    return constraint.inverse_transform(torch.full(shape, float(value)))


def joint_prior_sample(cov: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Draws from ``N(0, cov)`` per latent dimension (``cov [L, B, B]``): ``[S, B, L]`` (GSNN, SPEC 4)."""
    chol = psd_safe_cholesky(cov)  # [L, B, B]
    eps = torch.randn(n_samples, cov.shape[0], cov.shape[-1], 1, dtype=cov.dtype, device=cov.device)
    return (chol @ eps).squeeze(-1).transpose(-1, -2)
