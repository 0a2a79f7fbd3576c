"""L-VAE (Ramchandran et al. 2021, "Longitudinal Variational Autoencoder"), docs/baselines.md.

Implemented, in the paper's numbering:

* section 3.1, the additive GP prior per latent dimension ``f = Σ_r f_r`` with one component per
  term of the experiment's formula (:mod:`baselines.kernels`: e.g. ``~ age + sex:age +
  diseasePresence:diseaseAge + (1 + age | id)`` gives ``age + sex×age + diseasePresence×diseaseAge
  + id + id×age``) plus noise ``σ_l²``. Components that involve the subject covariate are the
  *subject* components ``K_id`` (block-diagonal over subjects, exact); the others are *shared*
  ``K_s``, approximated through ``M`` inducing points: ``Σ = K_s + blockdiag_p K_id,p + σ² I``.
* section 3.3, ``u ~ N(0, K_mm)``, ``q(u) = N(m, S)`` (gpytorch's ``CholeskyVariationalDistribution``,
  ``batch_shape=[L]``, in whitened coordinates ``u = L_mm v``: ``m = L_mm m_v``, ``S = L_mm S_v L_mmᵀ``;
  the same family, better conditioned for first-order optimisers), conditional ``p(Z_p | u) = N(K_pm K_mm⁻¹ u, Σ_p)`` with
  ``Σ_p = K_id,p + diag(k̃_s) + σ² I`` and ``k̃_s = diag(K_s − K_pm K_mm⁻¹ K_mp)``.
* eq. 12–14, the KL upper bound that decomposes over subjects,
  ``KL(q(Z) ‖ p(Z)) ≤ Σ_p E_q(u) KL(q(Z_p) ‖ p(Z_p | u)) + KL(q(u) ‖ p(u))``, each subject term
  ``½[tr(Σ_p⁻¹(diag s_p² + K_pm K_mm⁻¹ S K_mm⁻¹ K_mp)) + r_pᵀ Σ_p⁻¹ r_p − n_p + log|Σ_p| − Σ log s_p²]``,
  ``r_p = μ_p − K_pm K_mm⁻¹ m``; minibatches are whole subjects (``batching = "subjects"``) and the
  subject sum is scaled by ``P/|B|`` in the objective. Subjects of a batch are computed together as
  padded blocks ``[subjects, L, T, T]`` (padding: unit diagonal, no coupling, no contribution).
* section 3.5, prediction for subject ``p`` at ``x*``: the shared part through ``q(u)``,
  ``k_*mᵀ K_mm⁻¹ m``, plus the subject part's GP posterior mean given the subject's training
  latents, ``K_id(*, p) Σ_p⁻¹ r_p``; an unseen subject gets the shared part only.

Deviations, with reasons:

* ``q(u)`` is trained with Adam on its Cholesky factor, not with the paper's natural gradients:
  one optimiser for every model of the benchmark (docs/baselines.md allows it when stated).
* Inducing points are learned in the continuous coordinates; categorical coordinates (e.g. sex)
  are fixed at the levels of the training rows they were initialised from (the categorical kernel
  has no gradient in them). Initialisation: ``M`` random training rows (fixed generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from gpytorch.kernels import AdditiveKernel
from gpytorch.variational import CholeskyVariationalDistribution
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import nn
from torch.distributions import Normal

from lmmvae.data.batch import Batch
from lmmvae.errors import ConfigError
from lmmvae.model.priors.base import Encoded, Inference, KLTerms, Prior

from baselines.gppvae import subject_levels
from baselines.kernels import (Component, KernelInputs, component_kernel, components_from_design,
                               components_from_json, components_to_json, fit_inputs, joint_prior_sample, kernel_diag,
                               positive)


@dataclass
class LVAEOptions:
    """Options of L-VAE (the YAML's ``prior:`` mapping)."""

    n_inducing: int = 32  # M, inducing points of the shared components
    noise: float = 0.1  # initial σ_l²

    def check(self) -> None:
        if self.n_inducing < 1:
            raise ConfigError(f"lvae: prior.n_inducing must be at least 1, got {self.n_inducing}")
        if self.noise <= 0:
            raise ConfigError(f"lvae: prior.noise must be positive, got {self.noise}")


@dataclass
class Blocks:
    """Rows grouped by subject, padded: ``rows [P_b, T]`` (positions; 0 in padding), ``mask``."""

    rows: torch.Tensor  # [P_b, T] int64
    mask: torch.Tensor  # [P_b, T] bool

    def gather(self, values: torch.Tensor, fill: float) -> torch.Tensor:
        """``values [L, B, ...]`` → ``[P_b, L, T, ...]`` with ``fill`` in the padding."""
        out = values[:, self.rows].movedim(0, 1)  # [P_b, L, T, ...]
        mask = self.mask[:, None].reshape(self.mask.shape[0], 1, self.mask.shape[1], *([1] * (out.dim() - 3)))
        return torch.where(mask, out, torch.full_like(out, fill))


def subject_blocks(subject: torch.Tensor) -> tuple[Blocks, torch.Tensor, torch.Tensor]:
    """Blocks of equal codes in ``subject [B]``; also each row's block and position in it."""
    _, block, counts = torch.unique(subject, return_inverse=True, return_counts=True)
    order = torch.argsort(block, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.empty_like(block)
    pos[order] = torch.arange(block.shape[0], device=block.device) - starts[block[order]]
    width = int(counts.max()) if counts.numel() else 1
    rows = torch.zeros(counts.shape[0], width, dtype=torch.long, device=block.device)
    mask = torch.zeros(counts.shape[0], width, dtype=torch.bool, device=block.device)
    rows[block, pos] = torch.arange(block.shape[0], device=block.device)
    mask[block, pos] = True
    return Blocks(rows, mask), block, pos


@dataclass
class SharedPart:
    """The shared components at some rows through ``q(u)``."""

    mean: torch.Tensor  # [L, n]  K_nm K_mm⁻¹ m
    residual_var: torch.Tensor  # [L, n]  k̃_s = diag(K_nn − K_nm K_mm⁻¹ K_mn)
    root: torch.Tensor  # [L, n, M]  K_nm K_mm⁻¹ L_S (its Gram matrix is K_nm K_mm⁻¹ S K_mm⁻¹ K_mn)


class LVAEPrior(Prior):
    """L-VAE's additive GP prior with the subject-decomposed KL bound (module docstring)."""

    batching = "subjects"

    def __init__(self, latent_dim: int, inputs: KernelInputs, shared: list[Component], subject: list[Component],
                 inducing: torch.Tensor, n_train: int, n_subjects: int, options: LVAEOptions):
        super().__init__(latent_dim)
        self.options = options
        self.inputs = inputs
        self.shared_components = [str(c) for c in shared]
        self.subject_components = [str(c) for c in subject]
        make = lambda comps: AdditiveKernel(*[component_kernel(c, inputs, latent_dim) for c in comps]) if comps else None  # noqa: E731
        self.shared_kernel = make(shared)
        self.subject_kernel = make(subject)
        self.raw_noise = nn.Parameter(positive(options.noise, (latent_dim,)))  # [L]
        # inducing points and q(u) of the shared components (none without shared components)
        self.inducing = nn.Parameter(inducing.clone()) if shared else None  # [M, C]
        self.q_u = CholeskyVariationalDistribution(inducing.shape[0], batch_shape=torch.Size([latent_dim])) if shared else None
        # the training split, for predictions (condition): latent means, inputs, rows by subject
        self.register_buffer("train_mean", torch.zeros(n_train, latent_dim))  # [N, L]
        self.register_buffer("train_x", torch.zeros(n_train, len(inputs.columns)))  # [N, C]
        self.register_buffer("train_order", torch.zeros(n_train, dtype=torch.long))  # [N]
        self.register_buffer("train_offsets", torch.zeros(n_subjects, dtype=torch.long))  # [P]
        self.register_buffer("train_counts", torch.zeros(n_subjects, dtype=torch.long))  # [P]

    @property
    def noise(self) -> torch.Tensor:
        return F.softplus(self.raw_noise)  # [L]

    def _q_v(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened ``q(v) = N(m_v, L_v L_vᵀ)``, ``u = L_mm v``: ``[L, M]``, ``[L, M, M]``."""
        return self.q_u.variational_mean, torch.tril(self.q_u.chol_variational_covar)

    def q_u_moments(self, chol_mm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``m = L_mm m_v`` and a Cholesky factor of ``S = L_mm S_v L_mmᵀ``."""
        m_v, chol_v = self._q_v()
        return (chol_mm @ m_v.unsqueeze(-1)).squeeze(-1), chol_mm @ chol_v

    # -- shared components through q(u) ------------------------------------------------------
    def _shared(self, x: torch.Tensor) -> tuple[SharedPart, torch.Tensor | None]:
        n = x.shape[0]
        if self.shared_kernel is None:
            zeros = x.new_zeros(self.latent_dim, n)
            return SharedPart(zeros, zeros, x.new_zeros(self.latent_dim, n, 0)), None
        chol_mm = psd_safe_cholesky(self.shared_kernel(self.inducing).to_dense())  # [L, M, M]
        k_nm = self.shared_kernel(x, self.inducing).to_dense()  # [L, n, M]
        b = torch.linalg.solve_triangular(chol_mm, k_nm.transpose(-1, -2), upper=False).transpose(-1, -2)  # K_nm L⁻ᵀ
        k_diag = kernel_diag(self.shared_kernel, x, self.latent_dim)  # [L, n]
        residual = (k_diag - b.square().sum(-1)).clamp_min(0)
        m_v, chol_v = self._q_v()  # K_nm K_mm⁻¹ m = b m_v, K_nm K_mm⁻¹ L_S = b L_v
        return SharedPart(mean=(b @ m_v.unsqueeze(-1)).squeeze(-1), residual_var=residual, root=b @ chol_v), chol_mm

    def kl_u(self, chol_mm: torch.Tensor | None) -> torch.Tensor:
        """``Σ_l KL(N(m_l, S_l) ‖ N(0, K_mm)) = Σ_l KL(N(m_v, S_v) ‖ N(0, I))`` (whitened)."""
        if chol_mm is None:
            return self.raw_noise.new_zeros(())
        m_v, chol_v = self._q_v()
        logdet_v = 2 * chol_v.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
        return 0.5 * (chol_v.square().sum((-2, -1)) + m_v.square().sum(-1) - m_v.shape[-1] - logdet_v).sum()

    # -- subject blocks ------------------------------------------------------------------------
    def _block_cov(self, x: torch.Tensor, blocks: Blocks, residual_var: torch.Tensor) -> torch.Tensor:
        """``Σ_p = K_id,p + diag(k̃_s + σ²)`` per block, padded with the identity: ``[P_b, L, T, T]``."""
        xb = x[blocks.rows]  # [P_b, T, C]
        pair = (blocks.mask.unsqueeze(-1) & blocks.mask.unsqueeze(-2)).unsqueeze(1)  # [P_b, 1, T, T]
        diag = blocks.gather(residual_var + self.noise[:, None], 1.0)  # [P_b, L, T]
        cov = torch.diag_embed(diag)
        if self.subject_kernel is not None:
            k_id = self.subject_kernel(xb.unsqueeze(1)).to_dense()  # [P_b, L, T, T]
            cov = cov + torch.where(pair, k_id, torch.zeros_like(k_id))
        return cov

    # -- the seam --------------------------------------------------------------------------
    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        """``q(z_i)`` is the encoder's Gaussian; KL local: the subject terms of the bound (eq. 14);
        global: ``KL(q(u) ‖ p(u))``."""
        q_z = encoded.as_normal()
        if not kl:
            return Inference(q_z, None)
        mu, s2 = q_z.mean, q_z.variance  # [B, L]
        x = self.inputs(batch.covariates)  # [B, C]
        blocks, _, _ = subject_blocks(batch.subject)
        shared, chol_mm = self._shared(x)
        chol = psd_safe_cholesky(self._block_cov(x, blocks, shared.residual_var))  # [P_b, L, T, T]
        resid = blocks.gather(mu.T - shared.mean, 0.0).unsqueeze(-1)  # [P_b, L, T, 1]
        s2_b = blocks.gather(s2.T, 1.0)  # [P_b, L, T]
        root = blocks.gather(shared.root, 0.0)  # [P_b, L, T, M]
        solve = lambda rhs: torch.linalg.solve_triangular(chol, rhs, upper=False).square().sum((-2, -1))  # noqa: E731
        trace = solve(torch.diag_embed(s2_b.sqrt())) + (solve(root) if root.shape[-1] else 0.0)
        logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        width = blocks.mask.shape[1]
        local = 0.5 * (trace + solve(resid) - width + logdet - s2_b.log().sum(-1)).sum()
        return Inference(q_z, KLTerms(local=local, global_=self.kl_u(chol_mm)))

    @torch.no_grad()
    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """Store the training latents and inputs grouped by subject (for :meth:`predict`)."""
        self.train_mean.copy_(encoded.mean)
        self.train_x.copy_(self.inputs(batch.covariates))
        subject = batch.subject.clamp(min=-1)
        self.train_order.copy_(torch.argsort(subject, stable=True))
        counts = torch.bincount(subject[subject >= 0], minlength=self.train_counts.shape[0])
        self.train_counts.copy_(counts[: self.train_counts.shape[0]])
        self.train_offsets.copy_(torch.cumsum(self.train_counts, 0) - self.train_counts + int((subject < 0).sum()))

    def predict(self, batch: Batch) -> Normal:
        """Shared part through ``q(u)`` plus the subject part given the subject's training latents."""
        x = self.inputs(batch.covariates)  # [B, C]
        shared, _ = self._shared(x)
        mean = shared.mean
        var = shared.residual_var + shared.root.square().sum(-1) + self.noise[:, None]  # [L, B]
        seen = batch.subject >= 0
        if self.subject_kernel is not None and seen.any():
            sub_mean, sub_var = self._subject_predictive(x[seen], batch.subject[seen])
            mean, var = mean.clone(), var.clone()
            mean[:, seen] = mean[:, seen] + sub_mean
            var[:, seen] = var[:, seen] + sub_var
        if self.subject_kernel is not None and (~seen).any():
            var[:, ~seen] = var[:, ~seen] + kernel_diag(self.subject_kernel, x[~seen], self.latent_dim)
        return Normal(mean.T, var.T.clamp_min(1e-10).sqrt())

    def _subject_predictive(self, x: torch.Tensor, subject: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``K_id(*, p) Σ_p⁻¹ r_p`` and ``k_id(*, *) − K_id(*, p) Σ_p⁻¹ K_id(p, *)`` per row: ``[L, n]`` each."""
        codes, row_block = torch.unique(subject, return_inverse=True)
        counts = self.train_counts[codes]  # [P_b]
        width = max(int(counts.max()), 1)
        within = torch.arange(width, device=x.device)
        mask = within.unsqueeze(0) < counts.unsqueeze(1)  # [P_b, T]
        rows = self.train_order[(self.train_offsets[codes].unsqueeze(1) + within).clamp(max=self.train_order.shape[0] - 1)]
        blocks = Blocks(rows=torch.where(mask, rows, torch.zeros_like(rows)), mask=mask)
        train_x = self.train_x  # [N, C]
        shared, _ = self._shared(train_x[blocks.rows[blocks.mask]])
        flat_resid = torch.zeros(self.latent_dim, self.train_x.shape[0], device=x.device, dtype=x.dtype)
        flat_var = torch.zeros_like(flat_resid)
        flat_resid[:, blocks.rows[blocks.mask]] = self.train_mean[blocks.rows[blocks.mask]].T - shared.mean
        flat_var[:, blocks.rows[blocks.mask]] = shared.residual_var
        chol = psd_safe_cholesky(self._block_cov(train_x, blocks, flat_var))  # [P_b, L, T, T]
        resid = blocks.gather(flat_resid, 0.0).unsqueeze(-1)  # [P_b, L, T, 1]
        alpha = torch.cholesky_solve(resid, chol)  # [P_b, L, T, 1]
        xb = train_x[blocks.rows][row_block]  # [n, T, C]
        k = self.subject_kernel(x[:, None, None, :], xb.unsqueeze(1)).to_dense()  # [n, L, 1, T]
        k = torch.where(mask[row_block][:, None, None, :], k, torch.zeros_like(k))
        mean = (k @ alpha[row_block]).squeeze(-1).squeeze(-1)  # [n, L]
        w = torch.linalg.solve_triangular(chol[row_block], k.transpose(-1, -2), upper=False)  # [n, L, T, 1]
        var = kernel_diag(self.subject_kernel, x, self.latent_dim).T - w.square().sum((-2, -1))  # [n, L]
        return mean.T, var.T.clamp_min(0)

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """Joint draws from ``N(0, K_s + K_id + σ² I)`` over the batch rows: ``[S, B, L]``."""
        x = self.inputs(batch.covariates)
        cov = torch.diag_embed(self.noise[:, None].expand(-1, batch.size))
        for kernel in (self.shared_kernel, self.subject_kernel):
            if kernel is not None:
                cov = cov + kernel(x).to_dense()
        return joint_prior_sample(cov, n_samples)


def initial_inducing(inputs: KernelInputs, x: torch.Tensor, n_inducing: int, shared: list[Component]) -> torch.Tensor:
    """Inducing inputs ``[M', C]``: the distinct training inputs of the shared components if there
    are at most ``M`` (then ``K_mm`` covers ``K_s`` exactly), else ``M`` of them spread out by
    farthest-point sampling (Euclidean in continuous columns, 0/1 mismatch in categorical ones)."""
    used = sorted({inputs.index(f.covariate) for c in shared for f in c.factors})
    distinct, first = np.unique(x[:, used].numpy(), axis=0, return_index=True)
    candidates = x[torch.as_tensor(np.sort(first))]  # [n_distinct, C]
    if candidates.shape[0] <= n_inducing:
        return candidates.clone()
    categorical = torch.tensor([inputs.kinds[inputs.columns[j]] == "categorical" for j in used])
    z = candidates[:, used]

    def dist(a: torch.Tensor) -> torch.Tensor:  # from one point to every candidate
        diff = z - a
        return torch.where(categorical, (diff != 0).to(z.dtype), diff.square()).sum(-1)

    chosen = [0]
    nearest = dist(z[0])
    for _ in range(n_inducing - 1):
        nxt = int(torch.argmax(nearest))
        chosen.append(nxt)
        nearest = torch.minimum(nearest, dist(z[nxt]))
    return candidates[torch.as_tensor(chosen)].clone()


def summarise_lvae(options: LVAEOptions, design, covariates, subject: str) -> dict:
    """Subjects, training rows, the kernel's components and inputs, and the initial inducing
    points (farthest-point sampling, run once here and saved), as JSON."""
    options.check()
    n_subjects = subject_levels(covariates, subject, "lvae")
    components = components_from_design(design, covariates)
    spec = fit_inputs([f for c in components for f in c.factors], covariates)
    inputs = KernelInputs(spec)
    shared = [c for c in components if not c.involves(subject)]
    per_subject = [c for c in components if c.involves(subject)]
    x = inputs({name: torch.as_tensor(covariates[name].values) for name in inputs.columns})
    inducing = initial_inducing(inputs, x, options.n_inducing, shared)
    return {"n_subjects": n_subjects, "n_train": int(x.shape[0]), "inputs": spec,
            "shared": components_to_json(shared), "per_subject": components_to_json(per_subject),
            "inducing": inducing.tolist()}


def build_lvae(options: LVAEOptions, summary: dict, latent_dim: int) -> LVAEPrior:
    inducing = torch.tensor(summary["inducing"], dtype=torch.float32)
    return LVAEPrior(latent_dim, KernelInputs(summary["inputs"]), components_from_json(summary["shared"]),
                     components_from_json(summary["per_subject"]), inducing, summary["n_train"],
                     summary["n_subjects"], options)
