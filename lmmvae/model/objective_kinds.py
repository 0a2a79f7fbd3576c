"""What each training objective implies for the rest of the package, torch-free (SPEC 2.3, 4).

The losses live in :mod:`lmmvae.training.objectives` (torch); this table holds the properties callers ask
about an objective (assembly, training, priors' defaults, the summary, the workflow's plan), so that
no caller compares an objective's name. Adding an objective = one :class:`ObjectiveKind` here and
its loss in :mod:`lmmvae.training.objectives`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmmvae.registry import Registry


@dataclass(frozen=True)
class ObjectiveKind:
    """The properties of one objective that callers outside its loss depend on."""

    name: str
    label: str  # how messages name it (``GSNN``)
    #: whether training fits the encoder, so that anything after training may read its posterior
    #: (imputation, MCC, active dimensions); GSNN samples the prior and trains none (SPEC 4)
    trains_encoder: bool
    #: whether z is drawn from the prior ``p(z | x, A)`` in the loss: the variant must be able to
    #: sample its prior, and the priors start their noise scales small and keep a Gaussian q(A)
    #: (the decoder must not see almost only noise, SPEC 4)
    samples_prior: bool
    #: whether the loss has a per-row ``KL(q(z_i) || p(z_i))`` the latents can collapse onto; without
    #: one a Gaussian likelihood's variances start at the data's variance (SPEC 4, SPEC 7)
    latent_kl: bool
    #: config keys of the draws per row in a training step and in a validation pass (None: the
    #: loss's own default, one draw for the ELBO)
    samples_key: str | None = None
    validation_samples_key: str | None = None
    #: what a Gaussian q(A) means after this objective, for the summary (None: a posterior
    #: approximation, nothing to add)
    q_A_note: str | None = None


OBJECTIVE_KINDS: Registry[ObjectiveKind] = Registry("objective")
OBJECTIVE_KINDS.register(ObjectiveKind("elbo", "ELBO", trains_encoder=True, samples_prior=False, latent_kl=True))
OBJECTIVE_KINDS.register(ObjectiveKind(
    "gsnn", "GSNN", trains_encoder=False, samples_prior=True, latent_kl=False,
    samples_key="gsnn_samples", validation_samples_key="gsnn_val_samples",
    q_A_note="trained by GSNN: q(A) is the variational factor of a lower bound in which y enters only "
             "through the decoder likelihood (SPEC 4), not a posterior of A given latent codes; its sd is "
             "not a standard error of the effects"))


def objective_kind(name: str) -> ObjectiveKind:
    """The :class:`ObjectiveKind` called ``name``; a one-line ConfigError listing the valid ones."""
    return OBJECTIVE_KINDS.get(name)


def sample_kwargs(config, validation: bool = False) -> dict[str, int]:
    """``{"n_samples": S}`` for the objective's loss from ``config`` (SPEC 4), or ``{}`` for its default."""
    kind = objective_kind(config.objective)
    key = kind.validation_samples_key if validation else kind.samples_key
    return {"n_samples": getattr(config, key)} if key is not None else {}
