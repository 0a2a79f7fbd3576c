"""Latents drawn from known GPs (plain torch formulas, independent of gpytorch) and the GP priors
of the baselines built directly on them, for tests/test_baselines_gp.py and test_baselines_lvae.py."""

import math

import numpy as np
import torch

from baselines.gppvae import GPPVAEOptions, GPPVAEPrior, view_grid
from baselines.kernels import Component, KernelFactor, KernelInputs, ObjectViewKernel, fit_inputs
from baselines.lvae import LVAEOptions, LVAEPrior
from baselines.lvae import initial_inducing as lvae_initial_inducing
from baselines.svgpvae import SVGPVAEOptions, SVGPVAEPrior, inducing_points
from baselines.svgpvae import inducing_rows as initial_rows
from lmmvae.data.batch import Batch, DesignBatch
from lmmvae.data.h5 import Covariate

TWO_PI = 2 * math.pi


def object_view_truth(seed=0, n_subjects=12, n_views=16, lengthscales=(0.8, 2.5), noise=0.01, object_dim=2):
    """``f_l ~ GP(0, (W Wᵀ)_{pp'} · exp(−2 sin²(π Δa / 2π) / ℓ_l))`` with plain torch formulas."""
    gen = torch.Generator().manual_seed(seed)
    angle = (torch.arange(n_views) * TWO_PI / n_views).repeat(n_subjects)  # [N]
    subject = torch.arange(n_subjects).repeat_interleave(n_views)  # [N]
    w = torch.randn(n_subjects, object_dim, generator=gen, dtype=torch.float64) / math.sqrt(object_dim)
    k_obj = (w @ w.T)[subject][:, subject]  # [N, N]
    diff = (angle[:, None] - angle[None, :]).double()
    f = []
    for ell in lengthscales:
        k = k_obj * torch.exp(-2 * torch.sin(math.pi * diff / TWO_PI).square() / ell)
        evals, evecs = torch.linalg.eigh(k)  # K has rank H × n_views: sample through its root
        root = evecs * evals.clamp_min(0).sqrt()
        f.append((root @ torch.randn(len(angle), 1, generator=gen, dtype=torch.float64)).squeeze(-1).float())
    f = torch.stack(f, dim=-1)  # [N, L]
    y = f + math.sqrt(noise) * torch.randn(f.shape, generator=gen)
    return angle, subject, f, y


def make_batch(index, subject, covariates, n_features=1, scale=1.0):
    n = index.shape[0]
    return Batch(index=index, y=torch.zeros(n, n_features), mask=torch.ones(n, n_features),
                 x=DesignBatch(shared=torch.zeros(n, 0)), covariates=covariates, subject=subject, scale=scale)


def gppvae_prior(angle, subject, n_train, latent_dim=2, object_dim=2, noise=0.1):
    covs = {"angle": Covariate(angle.numpy().astype(np.float64), "continuous")}
    factor = KernelFactor("angle", "periodic", period=TWO_PI)
    inputs = KernelInputs(fit_inputs([factor], covs))
    kernel = ObjectViewKernel(int(subject.max()) + 1, object_dim, factor, inputs, latent_dim)
    grid = view_grid(inputs, covs["angle"].values, max_rank=64)
    return GPPVAEPrior(latent_dim, kernel, grid, n_train, GPPVAEOptions(object_dim=object_dim, noise=noise))


def dense_kernel(prior: GPPVAEPrior, subject, angle):
    x = prior.kernel.inputs(subject, prior.kernel.view({"angle": angle}))
    return prior.kernel(x).double()  # [L, N, N]


def svgp_prior(angle, subject, n_inducing, latent_dim=2, object_dim=2, inducing_rows=None):
    covs = {"angle": Covariate(angle.numpy().astype(np.float64), "continuous")}
    factor = KernelFactor("angle", "periodic", period=TWO_PI)
    inputs = KernelInputs(fit_inputs([factor], covs))
    kernel = ObjectViewKernel(int(subject.max()) + 1, object_dim, factor, inputs, latent_dim)
    view = inputs({"angle": angle})
    if inducing_rows is None:
        rows, jitter = initial_rows(len(subject), n_inducing, object_dim + 1)
        inducing = inducing_points(kernel, subject[torch.as_tensor(rows)], view[torch.as_tensor(rows)],
                                   torch.as_tensor(jitter, dtype=torch.float32))
    else:
        with torch.no_grad():
            inducing = kernel.inputs(subject[inducing_rows], view[inducing_rows])
    return SVGPVAEPrior(latent_dim, kernel, inducing, SVGPVAEOptions(object_dim=object_dim, n_inducing=n_inducing))


def additive_truth(seed=0, n_subjects=40, n_times=10, ells=(2.0, 4.0), subject_var=0.5, noise=0.01):
    """``f_l = f_age + f_id×age``: one shared RBF curve in raw age (lengthscale 3) plus an independent
    RBF curve per subject (lengthscale ``ℓ_l``, variance ``subject_var``), plain torch formulas."""
    gen = torch.Generator().manual_seed(seed)
    age = torch.arange(n_times, dtype=torch.float64).repeat(n_subjects)
    subject = torch.arange(n_subjects).repeat_interleave(n_times)
    same = (subject[:, None] == subject[None, :]).double()
    sq = (age[:, None] - age[None, :]).square()
    f = []
    for ell in ells:
        k = torch.exp(-0.5 * sq / 3.0 ** 2) + subject_var * same * torch.exp(-0.5 * sq / ell ** 2)
        evals, evecs = torch.linalg.eigh(k)
        f.append((evecs * evals.clamp_min(0).sqrt()) @ torch.randn(len(age), generator=gen, dtype=torch.float64))
    f = torch.stack(f, -1).float()
    y = f + noise ** 0.5 * torch.randn(f.shape, generator=gen)
    return age.float(), subject, f, y


def lvae_prior(age, subject, n_train, n_inducing=10, latent_dim=2, components=None):
    covs = {"age": Covariate(age.numpy().astype(np.float64), "time"),
            "id": Covariate(subject.numpy(), "id", levels=list(range(int(subject.max()) + 1)))}
    age_f, id_f = KernelFactor("age", "rbf"), KernelFactor("id", "categorical")
    components = components or [Component((age_f,)), Component((id_f, age_f))]
    inputs = KernelInputs(fit_inputs([f for c in components for f in c.factors], covs))
    x = inputs({"age": age, "id": subject})
    shared = [c for c in components if not c.involves("id")]
    per_subject = [c for c in components if c.involves("id")]
    inducing = lvae_initial_inducing(inputs, x, n_inducing, shared)
    return LVAEPrior(latent_dim, inputs, shared, per_subject, inducing, n_train, int(subject.max()) + 1,
                     LVAEOptions(n_inducing=n_inducing))
