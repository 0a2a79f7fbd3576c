"""Model configuration: one dataclass read from the model YAML, unknown keys rejected.

Common keys are the fields of :class:`ModelConfig`; the variant's own options live under
``prior:`` and are the fields of that variant's options dataclass (:mod:`lmmvae.model.variants`).
:class:`ModelConfig` is a typed record: it checks its keys, types and ranges and imports no model
code. The names it holds (variant, objective, network, likelihood, device) and their options are
checked against the registries by :mod:`lmmvae.training.checks`, whose ``config_from_dict`` /
``config_from_yaml`` every reader of user settings calls.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmmvae.errors import ConfigError
from lmmvae.runs.yamlio import read_yaml  # YAML 1.2 floats; duplicate keys, size and alias limits

PREDICTIONS = ("mean", "plugin")
#: arithmetic of the encoder and decoder forward passes (:meth:`lmmvae.model.latent.LatentVariableModel._network`)
PRECISIONS = ("float32", "bfloat16")
#: upper bounds of the size keys (others: 10**7): `latent_dim: 1000000000` is a one-line error
MAX_SIZES = {"latent_dim": 4096, "gsnn_samples": 10**5, "gsnn_val_samples": 10**5, "nll_samples": 10**5}


@dataclass
class ModelConfig:
    """Everything that defines a model and its training (the model YAML)."""

    variant: str = "olmm"  # olmm | slmm | vae | cvae | gppvae | svgpvae | lvae
    objective: str = "elbo"  # elbo | gsnn (SPEC 2.3, 4)
    design: str = "~ 1"  # design formula (SPEC 1); for GP variants read as a kernel (SPEC 5)
    latent_dim: int = 16
    network: str = "mlp"  # health_mnist | rotating_mnist | mlp
    likelihood: str = "gaussian"  # gaussian | bernoulli
    subject: str = "id"  # covariate that identifies subjects (sLMM-VAE, GP priors, subject batches)
    # The training recipe (SPEC 6: every default chosen on validation data; the evidence is
    # docs/recipe_study.md and benchmarks/recipe_study.py): a constant learning rate, early stopping
    # on the validation loss, and `epochs` as a budget that converged runs do not reach.
    epochs: int = 1000  # maximum number of epochs (a budget; `patience` ends a converged run earlier)
    batch_size: int = 64
    lr: float = 1e-3
    lr_decay: float = 1.0  # exponential decay of the learning rate per epoch (1: constant)
    # learning rate of the random-effect rows of A (SparseAdam); null: lmmvae.training.train.RANDOM_EFFECTS_LR_FACTOR × lr.
    # A subject's rows are updated only in the steps that contain the subject, far fewer than the
    # shared parameters.
    lr_random_effects: float | None = None
    # learning rate of the likelihood's own parameters (the per-feature Gaussian log-variance); null:
    # lmmvae.training.train.LIKELIHOOD_LR_FACTOR × lr. Adam moves a log-variance by about `lr` per step, so at
    # 1e-3 a variance needs thousands of steps to fall from the data's variance to the residual's.
    lr_likelihood: float | None = None
    patience: int = 50  # stop after this many epochs without validation improvement (0: never)
    # epochs of the likelihood's warm-up (docs/model.md, "Warm-up and convergence"): the tabular
    # Gaussian variance, started at a small share of the data's, is capped by a ceiling rising
    # geometrically to the data's variance at this epoch; early stopping and the kept (best) epoch
    # count only after it. null: lmmvae.model.likelihoods.WARMUP_EPOCHS where the variance starts small
    # (tabular data, ELBO), 0 otherwise (images, Bernoulli, GSNN)
    warmup_epochs: int | None = None
    gsnn_samples: int = 10  # S of SPEC 4
    # S of the GSNN loss on validation rows: more than training, so that early stopping reads the
    # loss and not the Monte Carlo noise of its estimate (the draws are also the same every epoch)
    gsnn_val_samples: int = 50
    nll_samples: int = 1000  # draws per row of the importance-sampled test NLL (SPEC 6)
    predict_samples: int = 500  # draws of the Monte Carlo predictive mean (SPEC 2.4)
    prediction: str = "mean"  # mean: Monte Carlo predictive mean (SPEC 2.4) | plugin: decode the mean latent
    device: str = "auto"  # auto | cpu | cuda | cuda:N | cuda:any (a free slot on the least-loaded GPU)
    # float32 | bfloat16: the encoder's and decoder's forward passes under bf16 autocast; likelihood,
    # KL, priors, loss and optimiser stay float32 (lmmvae.model.latent.LatentVariableModel._network says why)
    precision: str = "float32"
    compile: bool = False  # torch.compile the encoder and decoder (BENCHMARKS.md "On a GPU": measured)
    network_options: dict[str, Any] = field(default_factory=dict)
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    prior: dict[str, Any] = field(default_factory=dict)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "model config") -> "ModelConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
        hints = typing.get_type_hints(cls)
        checked = {k: _check_type(f"{where}: {k}", v, hints[k]) for k, v in values.items()}
        config = cls(**checked)
        config.validate(where)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ModelConfig":
        values = read_yaml(path, "model file") or {}
        return cls.from_dict(values, where=str(path))

    def validate(self, where: str = "model config") -> None:
        """The checks of the record itself: sizes, ranges and the closed sets of values named here.
        The names of the variant, objective, network, likelihood and device, and each one's own
        options, are checked against the registries by :func:`lmmvae.training.checks.check`."""
        for key in ("latent_dim", "epochs", "batch_size", "gsnn_samples", "gsnn_val_samples", "nll_samples",
                    "predict_samples"):
            most = MAX_SIZES.get(key, 10**7)  # an upper bound too: no allocation of absurd size
            if not 1 <= getattr(self, key) <= most:
                raise ConfigError(f"{where}: {key} must be between 1 and {most}, got {getattr(self, key)}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"{where}: lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"{where}: prediction must be one of {', '.join(PREDICTIONS)}, got {self.prediction!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.patience < 0:
            raise ConfigError(f"{where}: patience must be 0 (off) or positive, got {self.patience}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ConfigError(f"{where}: warmup_epochs must be 0 (none), positive or null, got {self.warmup_epochs}")
        if self.lr <= 0:
            raise ConfigError(f"{where}: lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def options_from_dict(cls: type, values: dict[str, Any], where: str):
    """Build the dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(fields) or 'none'}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _check_type(f"{where}.{k}", v, hints[k]) for k, v in values.items()})


def _check_type(where: str, value: Any, hint: Any) -> Any:
    """Light type check of YAML values (int accepted for float, a whole float such as 1e3 for int;
    lists for tuples)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check_type(where, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a valid {hint}")
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    base = origin or hint
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if base is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)  # epochs: 1e3 (YAML 1.2 reads it as a float) is the whole number 1000
    if base is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if base in (list, tuple) and isinstance(value, (list, tuple)):
        return base(value)
    if isinstance(base, type) and not isinstance(value, base):
        raise ConfigError(f"{where}: expected {base.__name__}, got {value!r}")
    return value
