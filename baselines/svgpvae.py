"""SVGP-VAE (Jazbec et al. 2021, "Scalable Gaussian Process Variational Autoencoders"), docs/baselines.md.

Implemented, in the paper's numbering:

* the GPPVAE kernel (object vectors × view, :class:`baselines.kernels.ObjectViewKernel`) with
  ``M`` inducing points ``Z ∈ R^{M × (H+1)}`` in the joint (object vector, view) space, learned and
  shared by the latent dimensions; kernel hyper-parameters per latent dimension.
* section 3.2, the encoder as a source of Gaussian pseudo-observations ``ỹ_i^l = μ_il`` with noise
  ``s_il²``; for a minibatch ``b`` with ``c = N/|b|`` the optimal inducing posterior (Titsias 2009)
  ``Σ_l = K_mm + c K_mb diag(s⁻²) K_bm``, ``m_l = c K_mm Σ_l⁻¹ K_mb diag(s⁻²) ỹ^l``,
  ``A_l = K_mm Σ_l⁻¹ K_mm``, and the latent posterior of the batch is the SVGP predictive
  ``q(z_i^l) = N(k_iᵀ K_mm⁻¹ m_l, k_ii − k_iᵀ K_mm⁻¹ k_i + k_iᵀ K_mm⁻¹ A_l K_mm⁻¹ k_i)``
  (``K_mm⁻¹ m_l = c Σ_l⁻¹ K_mb s⁻² ỹ^l`` and ``K_mm⁻¹ A_l K_mm⁻¹ = Σ_l⁻¹``, which is how it is computed).
* eq. 9–10, the ELBO ``c Σ_b E_q log p(y_i|z_i) − c Σ_b Σ_l E_q log N(ỹ_i^l | z_i^l, s_il²) + Σ_l L_H^l``
  with ``L_H^l`` the Hensman et al. (2013) bound of the batch's pseudo-observations scaled by ``c``.

Because ``q(z_i)`` *is* the SVGP predictive, ``E_q log N(ỹ_i | z_i, s_i²) = log N(ỹ_i | k_iᵀK_mm⁻¹m,
s_i²) − (k̃_ii + tr(K_mm⁻¹ A K_mm⁻¹ k_i k_iᵀ)) / (2 s_i²)``, the data term of ``L_H``: the second
term of the ELBO cancels against ``c Σ_i [·]`` inside ``Σ_l L_H^l`` exactly, in value and gradient,
and what is left is ``c Σ_b E_q log p(y_i|z_i) − Σ_l KL(q(u_l) ‖ N(0, K_mm))`` (the familiar SVGP fact
``KL(q(f) ‖ p(f)) = KL(q(u) ‖ p(u))``). :meth:`SVGPVAEPrior.infer` returns that KL as the global term
and zero as the local term, with ``q(z)`` from the same inducing posterior; ``tests/test_baselines_gp.py`` checks the identity numerically.

Deviations: none in the objective. Object vectors are learned per subject as in GPPVAE (the paper
also evaluates PCA-initialised ones); an unseen subject gets ``w = 0`` and hence the prior.
Predictions use ``m_l`` computed from the whole training split (``c = 1``) in ``condition``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import nn
from torch.distributions import Normal

from lmmvae.data.batch import Batch
from lmmvae.errors import ConfigError
from lmmvae.model.priors.base import Encoded, Inference, KLTerms, Prior

from baselines.gppvae import subject_levels
from baselines.kernels import (KernelFactor, KernelInputs, ObjectViewKernel, components_from_design, fit_inputs,
                               joint_prior_sample, view_factor)


@dataclass
class SVGPVAEOptions:
    """Options of SVGP-VAE (the YAML's ``prior:`` mapping)."""

    object_dim: int = 8  # H, length of the learned object vectors
    view: str | None = None  # view covariate; default: the design's one continuous term
    n_inducing: int = 32  # M

    def check(self) -> None:
        for key in ("object_dim", "n_inducing"):
            if getattr(self, key) < 1:
                raise ConfigError(f"svgpvae: prior.{key} must be at least 1, got {getattr(self, key)}")


@dataclass
class InducingPosterior:
    """``q(u_l)`` given pseudo-observations, in the factors the predictive needs.

    With ``K_mm = L Lᵀ``, ``Σ_l = L B_l Lᵀ`` where ``B_l = I + c L⁻¹ K_mb diag(s⁻²) K_bm L⁻ᵀ`` has
    eigenvalues ``≥ 1``: its Cholesky factor is stable in float32 even when ``c s⁻²`` is large.
    """

    chol_mm: torch.Tensor  # [L, M, M]  L, Cholesky of K_mm
    chol_b: torch.Tensor  # [L, M, M]  Cholesky of B_l
    weights: torch.Tensor  # [L, M]  Σ_l⁻¹ c K_mb s⁻² ỹ  (= K_mm⁻¹ m_l)

    def predictive(self, k_mx: torch.Tensor, k_xx_diag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``f`` at inputs with ``k_mx [L, M, n]`` and ``k_xx [L, n]``:
        ``k_xx − ‖L⁻¹k‖² + ‖L_B⁻¹L⁻¹k‖²`` (the last term is ``kᵀΣ⁻¹k = kᵀK_mm⁻¹AK_mm⁻¹k``)."""
        mean = (k_mx * self.weights.unsqueeze(-1)).sum(-2)  # [L, n]
        a = torch.linalg.solve_triangular(self.chol_mm, k_mx, upper=False)  # [L, M, n]
        b = torch.linalg.solve_triangular(self.chol_b, a, upper=False)  # [L, M, n]
        var = k_xx_diag - a.square().sum(-2) + b.square().sum(-2)  # [L, n]
        return mean, var.clamp_min(1e-8)

    def kl(self) -> torch.Tensor:
        """``Σ_l KL(N(m_l, A_l) ‖ N(0, K_mm))`` with ``A = K_mm Σ⁻¹ K_mm``, ``m = K_mm w``:
        ``½[tr(Σ⁻¹K_mm) + wᵀK_mm w − M + log|Σ| − log|K_mm|] = ½[tr(B⁻¹) + ‖Lᵀw‖² − M + log|B|]``."""
        n_inducing = self.chol_b.shape[-1]
        eye = torch.eye(n_inducing, dtype=self.chol_b.dtype, device=self.chol_b.device)
        trace = torch.linalg.solve_triangular(self.chol_b, eye, upper=False).square().sum((-2, -1))  # [L]
        lw = (self.chol_mm.transpose(-1, -2) @ self.weights.unsqueeze(-1)).squeeze(-1)  # [L, M]
        logdet_b = 2 * self.chol_b.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return 0.5 * (trace + lw.square().sum(-1) - n_inducing + logdet_b).sum()


class SVGPVAEPrior(Prior):
    """SVGP-VAE's sparse GP posterior and KL (module docstring)."""

    def __init__(self, latent_dim: int, kernel: ObjectViewKernel, inducing: torch.Tensor, options: SVGPVAEOptions):
        super().__init__(latent_dim)
        self.options = options
        self.kernel = kernel
        self.inducing = nn.Parameter(inducing)  # [M, H + 1]
        m = inducing.shape[0]
        # q(u) from the whole training split (condition), for predictions
        self.register_buffer("pred_weights", torch.zeros(latent_dim, m))  # [L, M]
        self.register_buffer("pred_chol_b", torch.eye(m).expand(latent_dim, m, m).clone())  # [L, M, M]

    def _inputs(self, batch: Batch) -> torch.Tensor:
        return self.kernel.inputs(batch.subject, self.kernel.view(batch.covariates))  # [B, H + 1]

    def inducing_posterior(self, x: torch.Tensor, mu: torch.Tensor, s2: torch.Tensor, c: float) -> InducingPosterior:
        """Titsias' optimal ``q(u_l)`` given pseudo-observations ``(μ, s²)`` at inputs ``x``."""
        chol_mm = psd_safe_cholesky(self.kernel(self.inducing))  # [L, M, M]
        a = torch.linalg.solve_triangular(chol_mm, self.kernel(self.inducing, x), upper=False)  # [L, M, B]
        prec = 1.0 / s2.T  # [L, B]
        eye = torch.eye(a.shape[-2], dtype=a.dtype, device=a.device)
        chol_b = torch.linalg.cholesky(eye + c * (a * prec.unsqueeze(-2)) @ a.transpose(-1, -2))  # [L, M, M]
        rhs = c * (a @ (prec * mu.T).unsqueeze(-1))  # [L, M, 1]  L⁻¹ c K_mb s⁻² ỹ
        inner = torch.cholesky_solve(rhs, chol_b)  # B⁻¹ L⁻¹ rhs
        weights = torch.linalg.solve_triangular(chol_mm.transpose(-1, -2), inner, upper=True).squeeze(-1)  # [L, M]
        return InducingPosterior(chol_mm, chol_b, weights)

    # -- the seam -------------------------------------------------------------------------
    def infer(self, encoded: Encoded, batch: Batch, kl: bool = True) -> Inference:
        """``q(z_i)``: the SVGP predictive at the batch inputs given the batch's pseudo-observations;
        KL: ``local = 0`` (the pseudo-likelihood terms cancel, module docstring), ``global = KL(q(u) ‖ p(u))``.
        Both from one inducing posterior."""
        x = self._inputs(batch)
        post = self.inducing_posterior(x, encoded.mean, encoded.var, batch.scale)
        mean, var = post.predictive(self.kernel(self.inducing, x), self.kernel(x, diag=True))
        q_z = Normal(mean.T, var.T.sqrt())
        if not kl:
            return Inference(q_z, None)
        return Inference(q_z, KLTerms(local=mean.new_zeros(()), global_=post.kl()))

    @torch.no_grad()
    def condition(self, encoded: Encoded, batch: Batch) -> None:
        """``q(u)`` from every training pseudo-observation (``c = 1``), for :meth:`predict`."""
        post = self.inducing_posterior(self._inputs(batch), encoded.mean, encoded.var, 1.0)
        self.pred_weights.copy_(post.weights)
        self.pred_chol_b.copy_(post.chol_b)

    def predict(self, batch: Batch) -> Normal:
        """``z* ~ N(k_*ᵀ K_mm⁻¹ m, k_** − k_*ᵀK_mm⁻¹k_* + k_*ᵀ Σ⁻¹ k_*)`` with ``q(u)`` from training."""
        x = self._inputs(batch)
        chol_mm = psd_safe_cholesky(self.kernel(self.inducing))
        post = InducingPosterior(chol_mm, self.pred_chol_b, self.pred_weights)
        mean, var = post.predictive(self.kernel(self.inducing, x), self.kernel(x, diag=True))
        return Normal(mean.T, var.T.sqrt())

    def sample(self, batch: Batch, n_samples: int) -> torch.Tensor:
        """Joint draws from the GP prior ``N(0, K_B)`` over the batch rows: ``[S, B, L]``."""
        return joint_prior_sample(self.kernel(self._inputs(batch)), n_samples)


def inducing_rows(n_rows: int, n_inducing: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``M`` training rows for the initial inducing points and a small jitter ``[M, width]`` that
    keeps them distinct, from a fixed generator (the same for every run)."""
    gen = np.random.default_rng(0)
    rows = gen.choice(n_rows, size=n_inducing, replace=n_rows < n_inducing)
    return rows, gen.standard_normal((n_inducing, width))


def inducing_points(kernel: ObjectViewKernel, subject: torch.Tensor, view: torch.Tensor,
                    jitter: torch.Tensor) -> torch.Tensor:
    """Inducing inputs ``[M, H + 1]`` at (object vector of ``subject``, ``view [M, 1]``) plus ``1e-3 · jitter``."""
    with torch.no_grad():
        x = kernel.inputs(subject, view)
    return x + 1e-3 * jitter.to(x.dtype)  # distinct points


def summarise_svgpvae(options: SVGPVAEOptions, design, covariates, subject: str) -> dict:
    """Subjects, the view factor and its standardisation, and the rows (subject code, view) and
    jitter of the initial inducing points (JSON)."""
    options.check()
    components = components_from_design(design, covariates)
    view = view_factor(components, "svgpvae", options.view)
    spec = fit_inputs([view], covariates)
    n_subjects = subject_levels(covariates, subject, "svgpvae")
    view_values = KernelInputs(spec)({view.covariate: torch.as_tensor(covariates[view.covariate].values)})  # [N, 1]
    rows, jitter = inducing_rows(len(view_values), options.n_inducing, options.object_dim + 1)
    return {"n_subjects": n_subjects, "view": dataclasses.asdict(view), "inputs": spec,
            "inducing_subject": covariates[subject].values[rows].tolist(),
            "inducing_view": view_values[torch.as_tensor(rows), 0].tolist(),
            "inducing_jitter": torch.as_tensor(jitter, dtype=torch.float32).tolist()}


def build_svgpvae(options: SVGPVAEOptions, summary: dict, latent_dim: int) -> SVGPVAEPrior:
    kernel = ObjectViewKernel(summary["n_subjects"], options.object_dim, KernelFactor(**summary["view"]),
                              KernelInputs(summary["inputs"]), latent_dim)
    inducing = inducing_points(kernel, torch.tensor(summary["inducing_subject"], dtype=torch.long),
                               torch.tensor(summary["inducing_view"], dtype=torch.float32).unsqueeze(-1),
                               torch.tensor(summary["inducing_jitter"], dtype=torch.float32))
    return SVGPVAEPrior(latent_dim, kernel, inducing, options)
