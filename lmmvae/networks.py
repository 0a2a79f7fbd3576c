"""Encoders and decoders of the paper's appendix J, chosen by name (SPEC 0: ``μ_φ, s_φ², g_ψ``).

``build_networks(name, data_dim, latent_dim, image_shape=None, condition_dim=0, **kwargs)`` returns
``(encoder, decoder)``:

* ``encoder(y_masked [B, D], cond [B, C] | None) -> (mean [B, L], var [B, L])`` with
  ``var = softplus(·) + min_var > 0``; the encoder sees ``ỹ = y ⊙ m`` (SPEC 2.2).
* ``decoder(z [..., B, L], cond [B, C] | None) -> params [..., B, D]``, unconstrained (logits or
  means; the likelihood, :mod:`lmmvae.likelihoods`, applies a sigmoid where needed). Leading Monte
  Carlo sample dims are flattened, run and restored.

``cond`` is the CVAE conditioning (the design row; ``condition_dim=0`` means none and ``cond`` must
be ``None``). It is concatenated to the flattened input of the encoder's dense part and to ``z``
(broadcast over sample dims) at the decoder's input.

Architectures (**choice**, in the spirit of appendix J and of the L-VAE / GPPVAE networks; kept
small so that an epoch is fast on a CPU):

* ``health_mnist`` (36×36, D=1296) and ``rotating_mnist`` (28×28, D=784): images come flattened
  row-major and are reshaped to ``[B, 1, H, W]``. Encoder: Conv 3×3 stride 2 (1→32), ReLU, Conv 3×3
  stride 2 (32→64), ReLU, flatten (64·H/4·W/4), [+cond], Dense 256, ReLU, Dense 2L. Decoder: the
  mirror, [z; cond] → Dense 256, ReLU, Dense 64·H/4·W/4, ReLU, ConvTranspose 3×3 stride 2 (64→32),
  ReLU, ConvTranspose 3×3 stride 2 (32→1). ``H`` and ``W`` must be multiples of 4. Options:
  ``channels=(32, 64)``, ``hidden=256``.
* ``mlp`` (tabular: D=37 PhysioNet, D=30 clinical trial): encoder D[+C] → 256 → 128 → 2L, decoder
  L[+C] → 128 → 256 → D, ELU activations. Option: ``hidden=(256, 128)``.

All: option ``min_var=1e-6`` (floor of the encoder variance). Registry: :data:`NETWORKS`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmmvae.errors import ConfigError


def _dense(sizes: Sequence[int], activation: type[nn.Module], last_activation: bool) -> nn.Sequential:
    """Linear layers ``sizes[0] → … → sizes[-1]`` with ``activation`` between (and after, if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if last_activation or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _positive_ints(option: str, value, single: bool = False) -> list[int]:
    """Validate a layer-size option from a config: a positive int, or a non-empty list of them."""
    values = [value] if single else value
    ok = isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok:
        kind = "a positive integer" if single else "a non-empty list of positive integers"
        raise ConfigError(f"networks: option {option} must be {kind}, got {value!r}")
    return list(values)


def _check_cond(cond: torch.Tensor | None, condition_dim: int) -> None:
    if condition_dim == 0 and cond is not None:
        raise ValueError("network built with condition_dim=0 was given a condition tensor")
    if condition_dim > 0 and (cond is None or cond.shape[-1] != condition_dim):
        got = None if cond is None else tuple(cond.shape)
        raise ValueError(f"network expects a condition [B, {condition_dim}], got {got}")


class Encoder(nn.Module):
    """``ỹ [B, D] (+ cond) -> (μ [B, L], s² [B, L])``: features, [concat cond], dense trunk, head."""

    def __init__(
        self,
        features: nn.Module,
        trunk: nn.Module,
        n_hidden: int,
        latent_dim: int,
        condition_dim: int = 0,
        min_var: float = 1e-6,
    ):
        super().__init__()
        self.features = features  # [B, D] -> [B, F]
        self.trunk = trunk  # [B, F + C] -> [B, n_hidden]
        self.head = nn.Linear(n_hidden, 2 * latent_dim)
        self.latent_dim = latent_dim
        self.condition_dim = condition_dim
        self.min_var = min_var

    def forward(
        self, y_masked: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_cond(cond, self.condition_dim)
        h = self.features(y_masked)  # [B, F]
        if cond is not None:
            h = torch.cat([h, cond.to(h.dtype)], dim=-1)  # [B, F + C]
        mean, raw_var = self.head(self.trunk(h)).chunk(2, dim=-1)  # [B, L] each
        return mean, F.softplus(raw_var) + self.min_var


class Decoder(nn.Module):
    """``z [..., B, L] (+ cond) -> params [..., B, D]``: dense trunk on ``[z; cond]``, then body."""

    def __init__(self, trunk: nn.Module, body: nn.Module, latent_dim: int, condition_dim: int = 0):
        super().__init__()
        self.trunk = trunk  # [N, L + C] -> [N, F]
        self.body = body  # [N, F] -> [N, D]
        self.latent_dim = latent_dim
        self.condition_dim = condition_dim

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        _check_cond(cond, self.condition_dim)
        lead = z.shape[:-1]  # (..., B)
        if cond is not None:
            cond = cond.to(z.dtype).expand(*lead, self.condition_dim)  # [..., B, C]
            z = torch.cat([z, cond], dim=-1)  # [..., B, L + C]
        out = self.body(self.trunk(z.reshape(-1, z.shape[-1])))  # [N, D]
        return out.reshape(*lead, out.shape[-1])  # [..., B, D]


def _conv_networks(
    data_dim: int,
    latent_dim: int,
    image_shape: tuple[int, int],
    condition_dim: int,
    channels: Sequence[int] = (32, 64),
    hidden: int = 256,
    min_var: float = 1e-6,
) -> tuple[Encoder, Decoder]:
    """Conv encoder / ConvTranspose decoder for ``H×W`` grey images (module docstring)."""
    channels = _positive_ints("channels", channels)
    (hidden,) = _positive_ints("hidden", hidden, single=True)
    height, width = image_shape
    n_down = len(channels)
    if height % 2**n_down or width % 2**n_down:
        raise ConfigError(
            f"networks: image_shape {image_shape} must be divisible by {2**n_down} "
            f"({n_down} stride-2 convolutions)"
        )
    h_small, w_small = height // 2**n_down, width // 2**n_down
    n_features = channels[-1] * h_small * w_small
    chans = [1, *channels]

    down: list[nn.Module] = [nn.Unflatten(1, (1, height, width))]  # [B, D] -> [B, 1, H, W]
    for c_in, c_out in zip(chans[:-1], chans[1:]):
        down += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
    down.append(nn.Flatten())  # [B, F]
    encoder = Encoder(
        features=nn.Sequential(*down),
        trunk=_dense([n_features + condition_dim, hidden], nn.ReLU, last_activation=True),
        n_hidden=hidden,
        latent_dim=latent_dim,
        condition_dim=condition_dim,
        min_var=min_var,
    )

    up: list[nn.Module] = [nn.Unflatten(1, (channels[-1], h_small, w_small))]
    rev = chans[::-1]
    for i, (c_in, c_out) in enumerate(zip(rev[:-1], rev[1:])):
        up.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1))
        if i < len(rev) - 2:
            up.append(nn.ReLU())
    up.append(nn.Flatten())  # [N, 1, H, W] -> [N, D]
    decoder = Decoder(
        trunk=_dense([latent_dim + condition_dim, hidden, n_features], nn.ReLU, last_activation=True),
        body=nn.Sequential(*up),
        latent_dim=latent_dim,
        condition_dim=condition_dim,
    )
    return encoder, decoder


def _mlp_networks(
    data_dim: int,
    latent_dim: int,
    image_shape: tuple[int, int] | None,
    condition_dim: int,
    hidden: Sequence[int] = (256, 128),
    min_var: float = 1e-6,
) -> tuple[Encoder, Decoder]:
    """Dense encoder/decoder for tabular data (module docstring)."""
    hidden = _positive_ints("hidden", hidden)
    encoder = Encoder(
        features=nn.Identity(),
        trunk=_dense([data_dim + condition_dim, *hidden], nn.ELU, last_activation=True),
        n_hidden=hidden[-1],
        latent_dim=latent_dim,
        condition_dim=condition_dim,
        min_var=min_var,
    )
    decoder = Decoder(
        trunk=_dense([latent_dim + condition_dim, *hidden[::-1], data_dim], nn.ELU, last_activation=False),
        body=nn.Identity(),
        latent_dim=latent_dim,
        condition_dim=condition_dim,
    )
    return encoder, decoder


@dataclass(frozen=True)
class Architecture:
    """A registry entry: ``build(data_dim, latent_dim, image_shape, condition_dim, **options)``."""

    build: Callable[..., tuple[Encoder, Decoder]]
    default_shape: tuple[int, int] | None = None  # images: (height, width)

    @property
    def options(self) -> set[str]:
        fixed = {"data_dim", "latent_dim", "image_shape", "condition_dim"}
        return set(inspect.signature(self.build).parameters) - fixed


NETWORKS: dict[str, Architecture] = {
    "health_mnist": Architecture(_conv_networks, default_shape=(36, 36)),
    "rotating_mnist": Architecture(_conv_networks, default_shape=(28, 28)),
    "mlp": Architecture(_mlp_networks),
}


def build_networks(
    name: str,
    data_dim: int,
    latent_dim: int,
    image_shape: Sequence[int] | None = None,
    condition_dim: int = 0,
    **kwargs,
) -> tuple[Encoder, Decoder]:
    """``(encoder, decoder)`` of architecture ``name`` (module docstring)."""
    if name not in NETWORKS:
        raise ConfigError(f"unknown networks {name!r}; valid: {', '.join(sorted(NETWORKS))}")
    arch = NETWORKS[name]
    shape = image_shape if image_shape is not None else arch.default_shape
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or shape[0] * shape[1] != data_dim:
            raise ConfigError(
                f"networks {name!r}: image_shape {shape} does not match data_dim={data_dim} "
                f"(need height*width == data_dim)"
            )
    valid = arch.options
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ConfigError(
            f"networks {name!r}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    if latent_dim < 1 or condition_dim < 0:
        raise ConfigError(f"networks {name!r}: need latent_dim >= 1 and condition_dim >= 0")
    return arch.build(data_dim, latent_dim, shape, condition_dim, **kwargs)
