"""Observation likelihoods ``p(y_i | z_i) = Π_{d : m_id = 1} p(y_id | g_ψ(z_i)_d)`` (SPEC 2.1).

The decoder outputs unconstrained parameters ``params [..., B, D]`` (leading Monte Carlo sample
dims allowed); a likelihood turns them into a log-density summed over the **observed** entries only
and into the predictive mean. Missing entries (``mask == 0``) never enter: their ``y`` is replaced
by 0 before any arithmetic, so NaN/inf garbage there changes neither the value nor the gradient.

Conventions (**choice**):

* ``gaussian``: ``y_id ~ N(μ_d, σ_d²)`` with ``μ = params`` (tabular data, standardised), or
  ``μ = sigmoid(params)`` with ``bounded=True`` (images in [0, 1]). ``σ_d² = exp(log_var_d) +
  min_variance``: a per-feature learned log-variance (``nn.Parameter [D]``) or, with
  ``learn_variance=False``, a fixed buffer. The floor ``min_variance`` keeps the density bounded on
  features that never vary (image background pixels).
* ``bernoulli``: ``params`` are logits, ``log p = −BCE_with_logits(params, y)``, mean ``sigmoid``.
  ``y`` may be any value in [0, 1] (grey-level images used as soft targets; not the normalised
  continuous Bernoulli).

Build by name with :func:`build_likelihood`; the registry is :data:`LIKELIHOODS`
(:mod:`lmmvae.registry`), each entry with its options dataclass (the config's ``likelihood_options:``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from lmmvae.errors import ConfigError
from lmmvae.registry import NoOptions, Registry, parse_options

_LOG_2PI = math.log(2.0 * math.pi)


def _observed(y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``y`` with unobserved entries set to 0 (garbage-safe) and the mask as a boolean."""
    observed = mask > 0  # [B, D]
    return torch.where(observed, y, torch.zeros((), dtype=y.dtype, device=y.device)), observed


def _sum_observed(log_p: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Sum ``log_p [..., B, D]`` over observed features -> ``[..., B]``."""
    return torch.where(observed, log_p, torch.zeros((), dtype=log_p.dtype, device=log_p.device)).sum(-1)


class Likelihood(nn.Module):
    """Base class: ``log_prob(y, mask, params) -> [..., B]`` and ``mean(params) -> [..., B, D]``."""

    def __init__(self, data_dim: int):
        super().__init__()
        self.data_dim = data_dim

    def log_prob(self, y: torch.Tensor, mask: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def initialise(self, y, mask) -> None:
        """Start from the training data's statistics (``y``, ``mask``: numpy ``[N, D]``). Default: nothing."""

    def initial_params(self, y, mask) -> torch.Tensor:
        """Parameters ``[D]`` whose mean is each feature's observed training mean (``mean`` inverted)."""
        return self.link(torch.as_tensor(_observed_mean(y, mask), dtype=torch.float32))

    def link(self, mean: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`mean`, feature-wise: ``[D] -> [D]``."""
        raise NotImplementedError

    #: warm-up length when the config's ``warmup_epochs`` is null (docs/model.md, "Warm-up and
    #: convergence"): none, unless the likelihood starts below the data's noise level
    @property
    def default_warmup_epochs(self) -> int:
        return 0

    def start_epoch(self, epoch: int, warmup_epochs: int) -> None:
        """Before training epoch ``epoch`` (0-based) of a run with a ``warmup_epochs`` warm-up: set
        the likelihood's scheduled state. Default: nothing."""


class GaussianLikelihood(Likelihood):
    """Independent Gaussian per feature, learned or fixed variance (SPEC 2.1)."""

    def __init__(
        self,
        data_dim: int,
        learn_variance: bool = True,
        init_variance: float | None = None,
        min_variance: float = 1e-4,
        bounded: bool = False,
        init_fraction: float | None = None,
    ):
        super().__init__(data_dim)
        self.init_fraction = init_fraction  # null: TABULAR_START_FRACTION, 1 for images (initialise)
        self.init_from_data = init_variance is None  # null: from the training data (initialise)
        init_variance = 1.0 if init_variance is None else float(init_variance)
        if init_variance <= min_variance:
            raise ConfigError(
                f"likelihood: init_variance={init_variance} must exceed min_variance={min_variance}"
            )
        self.bounded = bounded
        self.min_variance = float(min_variance)
        # warm-up (`start_epoch`): the share of the data's variance where the variance started (set
        # by `initialise`; None: not started from the data, no schedule), the data's variance and
        # the current ceiling of the variance. Not saved with the weights: after the warm-up the
        # ceiling is +inf, and a resumed run recomputes them from the training data.
        self.start_fraction: float | None = None
        self.register_buffer("data_variance", torch.ones(data_dim), persistent=False)  # [D]
        self.register_buffer("ceiling", torch.full((data_dim,), math.inf), persistent=False)  # [D]
        log_var = torch.full((data_dim,), math.log(init_variance - min_variance))  # [D]
        if learn_variance:
            self.log_var = nn.Parameter(log_var)
        else:
            self.register_buffer("log_var", log_var)

    @property
    def variance(self) -> torch.Tensor:
        """``σ_d² = min(exp(log_var_d) + min_variance, ceiling_d)``: [D] (the ceiling is +inf
        outside the warm-up)."""
        return torch.minimum(self.log_var.exp() + self.min_variance, self.ceiling)  # [D]

    @property
    def default_warmup_epochs(self) -> int:
        """``WARMUP_EPOCHS`` when the variance starts below the data's (tabular ELBO), else 0."""
        return WARMUP_EPOCHS if self.start_fraction is not None and self.start_fraction < 1 else 0

    @torch.no_grad()
    def start_epoch(self, epoch: int, warmup_epochs: int) -> None:
        """Set the variance ceiling of epoch ``epoch`` (:func:`variance_ceiling`) and project the
        learned variance under it, so that the variance follows the ceiling as it rises (instead of
        climbing from wherever it stalled, at Adam's pace of about ``lr`` per step in log space)."""
        if self.start_fraction is None:
            return
        ceiling = variance_ceiling(self.data_variance, self.start_fraction, epoch, warmup_epochs)  # [D]
        self.ceiling.copy_(ceiling)
        if isinstance(self.log_var, nn.Parameter) and epoch < warmup_epochs:
            bound = (ceiling - self.min_variance).clamp_min(1e-12).log()  # [D]
            self.log_var.copy_(torch.minimum(self.log_var, bound))

    @torch.no_grad()
    def initialise(self, y, mask) -> None:
        """Start each feature's variance from its observed training variance, floored at
        ``VARIANCE_FLOOR`` (features that never vary, such as image background pixels), unless the
        config sets ``init_variance``: at ``init_fraction`` of it, by default 1 for images
        (``bounded``; SPEC 7: not at 1 for images in [0, 1]) and ``TABULAR_START_FRACTION`` for
        tabular features (see there; GSNN models get 1 from :func:`lmmvae.training.assemble.build`)."""
        if self.init_from_data:
            var = _observed_variance(y, mask)  # [D]
            fraction = self.init_fraction
            if fraction is None:
                fraction = 1.0 if self.bounded else TABULAR_START_FRACTION
            floor = max(VARIANCE_FLOOR, 2 * self.min_variance)
            data_var = torch.as_tensor(var, dtype=self.log_var.dtype).clamp_min(floor)  # [D]
            var = (data_var * fraction).clamp_min(floor)
            self.log_var.copy_((var - self.min_variance).log())
            self.data_variance.copy_(data_var)
            self.start_fraction = float(fraction)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params) if self.bounded else params

    def link(self, mean: torch.Tensor) -> torch.Tensor:
        return torch.logit(mean.clamp(LINK_EPS, 1 - LINK_EPS)) if self.bounded else mean

    def log_prob(self, y: torch.Tensor, mask: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        y, observed = _observed(y, mask)  # [B, D]
        var = self.variance  # [D]
        log_p = -0.5 * (_LOG_2PI + var.log() + (y - self.mean(params)) ** 2 / var)  # [..., B, D]
        return _sum_observed(log_p, observed)  # [..., B]


#: smallest initial variance when starting from the data (a pixel that never varies)
VARIANCE_FLOOR = 1e-3
#: where a tabular (unbounded) feature's learned variance starts, as a share of its observed training
#: variance. Started at the data's variance, a few tabular features are "explained" by the noise
#: from the first step, the reconstruction term is too weak to pay the KL for using the latent, and
#: the ELBO settles with the latent near its prior (random effects never learned; predictions near
#: the feature means). Started below the residual variance, the decoder first uses the latent and the
#: variance then grows to the residual's. Chosen on validation rows (docs/recipe_study.md, "Tabular
#: likelihood variance": oLMM-VAE (ELBO) on the synthetic trial 0.675 -> 0.395, on
#: examples/visits.csv 0.34-0.39 -> 0.18, MixedLM 0.18; PhysioNet unchanged). Images keep the
#: observed variance (SPEC 7): hundreds of pixels outweigh the KL from the start. GSNN has no KL to
#: collapse onto (SPEC 4): there the small start was a wash on validation (trial better, PhysioNet
#: and the simulated LMM data worse) at about 3 x the epochs, so GSNN models start at the data's.
TABULAR_START_FRACTION = 0.01


#: epochs of the variance warm-up when the config's ``warmup_epochs`` is null and the variance starts
#: at TABULAR_START_FRACTION (docs/model.md, "Warm-up and convergence"). Adam moves a log-variance
#: by at most about ``lr`` per step, so at lr 1e-3 and ~100 steps per epoch the 4.6 nats from 1 %
#: to 100 % of the data's variance take >= 46 epochs: a ceiling rising over 50 epochs is one the
#: learned variance can follow, and 50 is the library's default patience. To be confirmed on
#: validation rows (docs/recipe_study.md).
WARMUP_EPOCHS = 50


def variance_ceiling(data_variance: torch.Tensor, start_fraction: float, epoch: int,
                     warmup_epochs: int) -> torch.Tensor:
    """The warm-up's variance ceiling at training epoch ``epoch`` (0-based): ``[D]``.

    ``data_variance · start_fraction^(1 − epoch / W)`` for ``epoch < W``: geometric from the start
    (``start_fraction`` of the data's variance, epoch 0) towards the data's variance at ``W``; +inf
    (free) from epoch ``W`` on. A known schedule in place of the slow, unscheduled climb of a
    variance started small, which acts as a KL annealing that early stopping used to cut off.
    """
    if epoch >= warmup_epochs:
        return torch.full_like(data_variance, math.inf)
    return data_variance * start_fraction ** (1.0 - epoch / warmup_epochs)


#: bounded means start no closer than this to 0 or 1 (a pixel that is always 0 starts at logit 1e-3)
LINK_EPS = 1e-3


def _observed_mean(y, mask):
    """Per-feature mean of the observed entries of ``y`` (0 where a feature is never observed)."""
    import numpy as np

    observed = np.asarray(mask) > 0
    values = np.where(observed, np.asarray(y, dtype=np.float64), 0.0)
    return values.sum(0) / np.maximum(observed.sum(0), 1)


def _observed_variance(y, mask):
    """Per-feature variance of the observed entries of ``y`` (1 where a feature has under 2)."""
    import numpy as np

    observed = np.asarray(mask) > 0
    count = observed.sum(0)
    deviation = np.where(observed, np.asarray(y, dtype=np.float64) - _observed_mean(y, mask), 0.0)
    var = (deviation ** 2).sum(0) / np.maximum(count - 1, 1)
    return np.where(count >= 2, var, 1.0)


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli per feature on logits; ``y`` in [0, 1] (SPEC 2.1)."""

    def __init__(self, data_dim: int):
        super().__init__(data_dim)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def link(self, mean: torch.Tensor) -> torch.Tensor:
        return torch.logit(mean.clamp(LINK_EPS, 1 - LINK_EPS))

    def log_prob(self, y: torch.Tensor, mask: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        y, observed = _observed(y, mask)  # [B, D]
        log_p = -F.binary_cross_entropy_with_logits(
            params, y.expand_as(params), reduction="none"
        )  # [..., B, D]
        return _sum_observed(log_p, observed)  # [..., B]


@dataclass
class GaussianOptions:
    """``likelihood: gaussian`` (module docstring)."""

    learn_variance: bool = True  # a learned per-feature variance (false: fixed at init_variance)
    init_variance: float | None = None  # null: from the observed training variance (init_fraction of it)
    min_variance: float = 1e-4  # floor of every variance
    bounded: bool = False  # μ = sigmoid(params) (images in [0, 1]); default true on image networks
    # share of the observed training variance where the variance starts (init_variance null); null:
    # TABULAR_START_FRACTION on tabular data trained by the ELBO, 1 on images and under GSNN
    init_fraction: float | None = None

    def __post_init__(self) -> None:
        for key in ("learn_variance", "bounded"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"likelihood 'gaussian': option {key} must be true or false, "
                                  f"got {getattr(self, key)!r}")
        for key in ("init_variance", "min_variance", "init_fraction"):
            value = getattr(self, key)
            if value is None and key in ("init_variance", "init_fraction"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"likelihood 'gaussian': option {key} must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class LikelihoodType:
    """A registry entry: ``build(options, data_dim) -> Likelihood``."""

    name: str
    options: type  # a dataclass: the valid keys of `likelihood_options:` and their defaults
    build: Callable[[Any, int], Likelihood]


LIKELIHOODS: Registry[LikelihoodType] = Registry("likelihood")
LIKELIHOODS.register(LikelihoodType("gaussian", GaussianOptions,
                                    lambda options, d: GaussianLikelihood(d, **dataclasses.asdict(options))))
LIKELIHOODS.register(LikelihoodType("bernoulli", NoOptions, lambda options, d: BernoulliLikelihood(d)))


def likelihood_options(name: str, values: dict[str, Any]):
    """The options dataclass of likelihood ``name`` from the config's ``likelihood_options:``."""
    return parse_options(LIKELIHOODS.get(name).options, values, f"likelihood {name!r}")


def build_likelihood(name: str, data_dim: int, **options) -> Likelihood:
    """The likelihood ``name`` (``gaussian`` | ``bernoulli``) for ``data_dim`` features; ``options``
    as in the config's ``likelihood_options:``."""
    return LIKELIHOODS.get(name).build(likelihood_options(name, options), data_dim)
