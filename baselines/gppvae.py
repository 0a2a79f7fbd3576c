"""GPPVAE (Casale et al. 2018, "Gaussian Process Prior Variational Autoencoders"), docs/baselines.md.

Implemented, in the paper's numbering:

* eq. 7, the object × view kernel ``K = K_object ⊙ K_view``: a linear kernel on learned object
  vectors ``w_p ∈ R^H`` (one per subject) times an RBF or periodic kernel on the view covariate,
  read from the design formula (:func:`baselines.kernels.view_factor`); one set of kernel
  hyper-parameters and one noise ``σ_l²`` per latent dimension, ``Z_{:,l} ~ N(0, K + σ_l² I)``.
* eq. 8–9, the ELBO ``Σ_n E_q log p(y_n|z_n) + E_q log N(Z | 0, K + σ²I) + H[q(Z)]`` over all ``N``
  training points, with ``E_q log N(Z|0,Σ) = log N(μ|0,Σ) − ½ tr(Σ⁻¹ diag s²)``.
* section 3.3, the low-rank form ``K = V Vᵀ``: ``V_n = √var · w_p(n) ⊗ u(v_n)`` where ``u`` are
  view features with ``u(v) u(v')ᵀ = k_view(v, v')`` (a Cholesky root on the distinct training
  views); the Woodbury identity and the matrix determinant lemma then give the GP term in
  ``O(N R²)``, ``R = H × (number of distinct views)``, so the cost of a step grows linearly in ``N``.
* section 3.4, pseudo-minibatches with a first-order Taylor expansion: a cache holds the latent
  means and variances of every training point; each step, the gradient of the GP term with respect
  to the batch's latents is ``Σ⁻¹μ`` (and ``½ diag Σ⁻¹`` for ``s²``) computed from the whole cache,
  back-propagated into the encoder through the batch only; the GP parameters (kernel, object
  vectors, noise) get the exact gradient of the GP term on the full cache; then the batch's cache
  entries are refreshed.

Deviations, with reasons:

* The cache is refreshed from the encodings of the whole training split at the start of every
  epoch (``epoch_encodings``: the model encodes them and hands them to ``on_epoch_start``), and
  batch entries after every step (inside ``infer``, in training mode only); the paper's code
  recomputes the GP gradient once per epoch. Per-step recomputation is the more exact Taylor point.
* View features come from a Cholesky root on at most ``max_view_rank`` grid views (the distinct
  training views, or their quantiles when there are more): exact when views are discrete (Rotating
  MNIST's 16 angles, Health MNIST's 20 ages), a Nyström approximation otherwise. Views between grid
  points at prediction time use the same Nyström features.
* The paper is silent on validation: a held-out row's KL is taken against the GP predictive of its
  latent given the training cache (a proper held-out score; no cache entry is created for it).
* An unseen subject has object vector 0: its prediction is the prior mean.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import nn
from torch.distributions import Normal

from lmmvae.data.batch import Batch
from lmmvae.errors import ConfigError, RunError
from lmmvae.model.priors.base import Encoded, Inference, KLTerms, Prior

from baselines.kernels import (KernelFactor, KernelInputs, ObjectViewKernel, components_from_design, fit_inputs,
                               joint_prior_sample, positive, view_factor)

LOG_2PI = math.log(2 * math.pi)


@dataclass
class GPPVAEOptions:
    """Options of GPPVAE (the YAML's ``prior:`` mapping)."""

    object_dim: int = 8  # H, length of the learned object vectors
    view: str | None = None  # view covariate; default: the design's one continuous term
    max_view_rank: int = 64  # at most this many grid views for the view features
    noise: float = 0.1  # initial σ_l² of Z ~ N(0, K + σ² I)

    def check(self) -> None:
        for key in ("object_dim", "max_view_rank"):
            if getattr(self, key) < 1:
                raise ConfigError(f"gppvae: prior.{key} must be at least 1, got {getattr(self, key)}")
        if self.noise <= 0:
            raise ConfigError(f"gppvae: prior.noise must be positive, got {self.noise}")


class LowRankGaussian:
    """``Σ = V Vᵀ + σ² I`` per latent dimension (``V [L, N, R]``, ``σ² [L]``), by Woodbury.

    One Cholesky factor ``C`` of ``A = σ² I_R + VᵀV`` gives ``Σ⁻¹x = (x − V A⁻¹ Vᵀ x)/σ²``,
    ``log|Σ| = (N − R) log σ² + log|A|`` and ``diag Σ⁻¹ = (1 − ‖C⁻¹ v_n‖²)/σ²``; cost ``O(N R²)``.
    """

    def __init__(self, V: torch.Tensor, noise: torch.Tensor):
        self.V, self.noise = V, noise  # [L, N, R], [L]
        eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device)
        self.chol = psd_safe_cholesky(noise[:, None, None] * eye + V.transpose(-1, -2) @ V)  # [L, R, R]

    def solve(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ⁻¹ x`` for ``x [L, N]``."""
        vtx = (self.V.transpose(-1, -2) @ x.unsqueeze(-1))  # [L, R, 1]
        return (x - (self.V @ torch.cholesky_solve(vtx, self.chol)).squeeze(-1)) / self.noise[:, None]

    def logdet(self) -> torch.Tensor:
        n, r = self.V.shape[-2:]
        return (n - r) * self.noise.log() + 2 * self.chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # [L]

    def diag_inverse(self) -> torch.Tensor:
        w = torch.linalg.solve_triangular(self.chol, self.V.transpose(-1, -2), upper=False)  # [L, R, N]
        return (1 - w.square().sum(-2)) / self.noise[:, None]  # [L, N]

    def weight_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean of ``β`` in ``f = Vβ``, ``β ~ N(0, I)``, given ``x = f + ε``: ``A⁻¹Vᵀx``."""
        return torch.cholesky_solve(self.V.transpose(-1, -2) @ x.unsqueeze(-1), self.chol).squeeze(-1)  # [L, R]


class GPPVAEPrior(Prior):
    """The GP prior of GPPVAE with the pseudo-minibatch surrogate KL (module docstring)."""

    epoch_encodings = True  # the cache: every training row's encoding, refreshed each epoch

    def __init__(self, latent_dim: int, kernel: ObjectViewKernel, view_grid: torch.Tensor, n_train: int,
                 options: GPPVAEOptions):
        super().__init__(latent_dim)
        self.options = options
        self.kernel = kernel
        self.raw_noise = nn.Parameter(positive(options.noise, (latent_dim,)))  # [L]
        self.register_buffer("view_grid", view_grid)  # [G, 1]
        n_features = options.object_dim * view_grid.shape[0]
        # the cache of latent means/variances of all training points, and their kernel inputs
        self.register_buffer("cache_mean", torch.zeros(n_train, latent_dim))  # [N, L]
        self.register_buffer("cache_var", torch.ones(n_train, latent_dim))  # [N, L]
        self.register_buffer("train_subject", torch.full((n_train,), -1, dtype=torch.long))  # [N]
        self.register_buffer("train_view", torch.zeros(n_train, 1))  # [N, 1]
        # posterior of the feature weights given the cache, for predictions (condition / refresh)
        self.register_buffer("post_mean", torch.zeros(latent_dim, n_features))  # [L, R]
        eye = torch.eye(n_features).expand(latent_dim, n_features, n_features)
        self.register_buffer("post_chol", eye.clone())  # [L, R, R], Cholesky of A = σ²I + VᵀV
        self._row_of: torch.Tensor | None = None  # data row -> cache row (-1: not a training row)
        self._stale = False  # post_* lag behind the cache

    @property
    def noise(self) -> torch.Tensor:
        return F.softplus(self.raw_noise)  # [L]

    # -- the low-rank kernel ----------------------------------------------------------------
    def features(self, subject: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """``V [L, n, R]`` with ``V Vᵀ = K`` (exactly on grid views; Nyström between them)."""
        k_vg = self.kernel.view_covariance(view, self.view_grid)  # [L, n, G]
        chol_g = psd_safe_cholesky(self.kernel.view_covariance(self.view_grid, self.view_grid))  # [L, G, G]
        u = torch.linalg.solve_triangular(chol_g, k_vg.transpose(-1, -2), upper=False).transpose(-1, -2)  # [L, n, G]
        w = self.kernel.object_vectors(subject)  # [n, H]
        scale = self.kernel.object_kernel.variance.sqrt()  # [L, 1, 1]
        v = torch.einsum("nh,lng->lnhg", w, u).reshape(u.shape[0], u.shape[1], -1)  # [L, n, H·G]
        return scale * v

    def _lowrank(self) -> LowRankGaussian:
        V = self.features(self.train_subject, self.train_view).double()  # [L, N, R]
        return LowRankGaussian(V, self.noise.double())

    # -- the cache ------------------------------------------------------------------------
    @torch.no_grad()
    def _fill_cache(self, encoded: Encoded, batch: Batch) -> None:
        if batch.size != self.cache_mean.shape[0]:
            raise RunError(f"gppvae: the training split has {batch.size} rows, the model was built for "
                           f"{self.cache_mean.shape[0]}")
        self.cache_mean.copy_(encoded.mean)
        self.cache_var.copy_(encoded.var)
        self.train_subject.copy_(batch.subject)
        self.train_view.copy_(self.kernel.view(batch.covariates))
        self._stale = True

    @torch.no_grad()
    def on_epoch_start(self, encoded: Encoded | None, batch: Batch | None) -> None:
        """The cache from the encodings of the whole training split ``batch`` (section 3.4)."""
        rows = batch.index  # data rows of the training split, in cache order
        self._row_of = torch.full((int(rows.max()) + 1 if rows.numel() else 0,), -1, dtype=torch.long,
                                  device=rows.device)
        self._row_of[rows] = torch.arange(rows.shape[0], device=rows.device)
        self._fill_cache(encoded, batch)

    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """Store the training latents and the GP posterior that predictions use."""
        self._fill_cache(encoded, batch)
        self._refresh()

    @torch.no_grad()
    def _refresh(self) -> None:
        lowrank = self._lowrank()
        self.post_mean.copy_(lowrank.weight_mean(self.cache_mean.T.double()))
        self.post_chol.copy_(lowrank.chol)
        self._stale = False

    def _cache_rows(self, index: torch.Tensor) -> torch.Tensor:
        """Cache row of each data row (``-1``: not a training row of the current epoch)."""
        if self._row_of is None or not self._row_of.numel():
            return torch.full_like(index, -1)
        inside = index < self._row_of.shape[0]
        return torch.where(inside, self._row_of[index.clamp(max=self._row_of.shape[0] - 1)], -1)

    # -- the seam -------------------------------------------------------------------------
    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        """``q(z_i)`` is the encoder's Gaussian; the KL is the surrogate below for rows with a cache
        entry and a held-out KL for the others. In training mode the batch's cache entries are refreshed."""
        q_z = encoded.as_normal()
        if not kl:
            return Inference(q_z, None)
        mu, s2 = q_z.mean, q_z.variance  # [B, L]
        rows = self._cache_rows(batch.index)
        cached = rows >= 0
        zero = mu.new_zeros(())
        local, global_ = zero, zero
        if cached.any():
            terms = self._pseudo_minibatch_kl(mu[cached], s2[cached], rows[cached])
            local, global_ = local + terms.local, global_ + terms.global_
        if (~cached).any():
            local = local + self._held_out_kl(mu[~cached], s2[~cached], batch.subject[~cached],
                                              {k: v[~cached] for k, v in batch.covariates.items()})
        return Inference(q_z, KLTerms(local=local, global_=global_))

    def _pseudo_minibatch_kl(self, mu: torch.Tensor, s2: torch.Tensor, rows: torch.Tensor) -> KLTerms:
        """Surrogate with the gradient of section 3.4 and the value of ``KL(q(Z) ‖ p(Z))`` on the cache.

        ``global_`` is ``−E_q log N(Z|0,Σ)`` on the cache (the batch's rows replaced by the current
        encodings, detached): exact gradient for the GP parameters. ``local`` is ``−Σ_b H[q(z_b)]``
        plus ``Σ_b [(Σ⁻¹μ)_b·μ_b + ½ (diag Σ⁻¹)_b·s²_b]`` with the coefficients detached and the value
        removed, so the encoder receives the Taylor gradient through the batch only.
        """
        mu_all = self.cache_mean.clone()
        s2_all = self.cache_var.clone()
        mu_all[rows] = mu.detach()
        s2_all[rows] = s2.detach()
        lowrank = self._lowrank()
        n = mu_all.shape[0]
        alpha = lowrank.solve(mu_all.T.double())  # [L, N]
        dinv = lowrank.diag_inverse()  # [L, N]
        gp = 0.5 * ((mu_all.T.double() * alpha).sum() + lowrank.logdet().sum()
                    + n * self.latent_dim * LOG_2PI + (dinv * s2_all.T.double()).sum())
        grad_mu = alpha[:, rows].T.detach().to(mu.dtype)  # [B, L]
        grad_s2 = 0.5 * dinv[:, rows].T.detach().to(mu.dtype)  # [B, L]
        taylor = (grad_mu * (mu - mu.detach())).sum() + (grad_s2 * (s2 - s2.detach())).sum()
        entropy = 0.5 * (s2.log() + LOG_2PI + 1).sum()
        if self.training:
            with torch.no_grad():
                self.cache_mean[rows] = mu.detach()
                self.cache_var[rows] = s2.detach()
            self._stale = True
        return KLTerms(local=taylor - entropy, global_=gp.to(mu.dtype))

    def _held_out_kl(self, mu, s2, subject, covariates) -> torch.Tensor:
        """``Σ KL(q(z_i) ‖ p(z_i | training cache))`` for rows without a cache entry."""
        pred = self._predictive(subject, covariates)
        m, v = pred.mean, pred.variance
        return (0.5 * (v.log() - s2.log() - 1 + (s2 + (mu - m).square()) / v)).sum()

    def _predictive(self, subject: torch.Tensor, covariates: dict[str, torch.Tensor]) -> Normal:
        """GP predictive of ``z*``: mean ``v*ᵀA⁻¹Vᵀμ``, variance ``σ²‖C⁻¹v*‖² + k** − ‖v*‖² + σ²``."""
        if self._stale:
            self._refresh()
        view = self.kernel.view(covariates)  # [B, 1]
        v_star = self.features(subject, view).double()  # [L, B, R]
        mean = (v_star @ self.post_mean.double().unsqueeze(-1)).squeeze(-1)  # [L, B]
        noise = self.noise.double()[:, None]
        w = torch.linalg.solve_triangular(self.post_chol.double(), v_star.transpose(-1, -2), upper=False)  # [L, R, B]
        prior_diag = self.kernel(self.kernel.inputs(subject, view), diag=True).double()  # [L, B]
        var = noise * w.square().sum(-2) + (prior_diag - v_star.square().sum(-1)).clamp_min(0) + noise
        dtype = self.cache_mean.dtype
        return Normal(mean.T.to(dtype), var.T.sqrt().to(dtype))

    def predict(self, batch: Batch) -> Normal:
        """GP posterior of ``z*`` at the batch covariates given the training latent means."""
        return self._predictive(batch.subject, batch.covariates)

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """Joint draws from ``N(0, K_B + σ² I)`` over the batch rows: ``[S, B, L]``."""
        x = self.kernel.inputs(batch.subject, self.kernel.view(batch.covariates))  # [B, H + 1]
        cov = self.kernel(x) + torch.diag_embed(self.noise[:, None].expand(-1, batch.size))  # [L, B, B]
        return joint_prior_sample(cov, n_samples)

    def train(self, mode: bool = True):
        self._stale = self._stale or mode
        return super().train(mode)


def view_grid(inputs: KernelInputs, values, max_rank: int) -> torch.Tensor:
    """Grid views for the view features: the distinct training views, or ``max_rank`` quantiles."""
    view = inputs({inputs.columns[0]: torch.as_tensor(values)})[:, 0]  # [N]
    grid = torch.unique(view)
    if grid.shape[0] > max_rank:
        grid = torch.quantile(view, torch.linspace(0, 1, max_rank, dtype=view.dtype))
    return grid.unsqueeze(-1)  # [G, 1]


def subject_levels(covariates, subject: str, variant: str) -> int:
    cov = covariates.get(subject)
    if cov is None or cov.levels is None:
        raise ConfigError(f"{variant} needs a subject covariate of kind id/categorical named {subject!r} "
                          f"(config key `subject`); the data have: {', '.join(covariates)}")
    return len(cov.levels)


def summarise_gppvae(options: GPPVAEOptions, design, covariates, subject: str) -> dict:
    """Subjects, training rows, the view factor, its standardisation and the grid views (JSON)."""
    options.check()
    components = components_from_design(design, covariates)
    view = view_factor(components, "gppvae", options.view)
    spec = fit_inputs([view], covariates)
    grid = view_grid(KernelInputs(spec), covariates[view.covariate].values, options.max_view_rank)
    return {"n_subjects": subject_levels(covariates, subject, "gppvae"), "n_train": len(covariates[view.covariate].values),
            "view": dataclasses.asdict(view), "inputs": spec, "view_grid": grid[:, 0].tolist()}


def build_gppvae(options: GPPVAEOptions, summary: dict, latent_dim: int) -> GPPVAEPrior:
    view = KernelFactor(**summary["view"])
    kernel = ObjectViewKernel(summary["n_subjects"], options.object_dim, view, KernelInputs(summary["inputs"]),
                              latent_dim)
    grid = torch.tensor(summary["view_grid"], dtype=torch.float32).unsqueeze(-1)  # [G, 1]
    return GPPVAEPrior(latent_dim, kernel, grid, summary["n_train"], options)
