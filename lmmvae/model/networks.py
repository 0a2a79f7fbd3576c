"""Encoders and decoders of the paper's appendix J (SPEC 7), chosen by name (SPEC 0: ``μ_φ, s_φ², g_ψ``).

``build_networks(name, data_dim, latent_dim, image_shape=None, condition_dim=0, **options)`` returns
``(encoder, decoder)``:

* ``encoder(y_masked [B, D], cond [B, C] | None) -> (mean [B, L], var [B, L])`` with
  ``var = softplus(·) + min_var > 0``; the encoder sees ``ỹ = y ⊙ m`` (SPEC 2.2). Its last layer
  outputs the ``2L`` numbers (mean and variance) from the last listed hidden width.
* ``decoder(z [..., B, L], cond [B, C] | None) -> params [..., B, D]``, **unconstrained**: the
  likelihood (:mod:`lmmvae.model.likelihoods`) applies the sigmoid of the tables' "sigmoid output". The
  image networks declare ``bounded_output`` (:func:`bounded_output`), so that
  :func:`lmmvae.training.assemble.build_model` makes a Gaussian likelihood on them bounded (``μ = sigmoid``) unless
  the config sets ``likelihood_options.bounded``; Bernoulli reads the output as logits. Leading Monte
  Carlo sample dims are flattened, run and restored.

``cond`` is the CVAE conditioning (the design row; ``condition_dim=0`` means none and ``cond`` must
be ``None``). It is concatenated to the flattened input of the encoder's dense part and to ``z``
(broadcast over sample dims) at the decoder's input.

Images come flattened row-major and are reshaped to ``[B, 1, H, W]``. "conv k s" is a convolution with
a ``k×k`` kernel and stride ``s``. The paper gives neither channel counts nor paddings; those below
are **choices** (the reference code the tables come from is named where we follow it), every other
width is the table's. Architectures (SPEC 7 table):

* ``health_mnist`` (Table 9; 36×36, D = 1296; ReLU). Encoder: conv 3 s2 pad 1 (1→16), conv 3 s2
  pad 1 (16→32), 2×2 max-pool stride 2 (36 → 18 → 9 → 4), flatten (32·4·4), [+cond], FC 300, FC 30,
  FC 2L. Decoder: [z; cond] → FC 30, FC 300, FC 32·9·9 (the feature map), transposed conv 4 s2 pad 1
  (32→16), transposed conv 4 s2 pad 1 (16→1): 9 → 18 → 36, exactly, with no cropping (the max-pool
  is not mirrored: the decoder starts at the map size before the pool, as L-VAE's ConvVAE does;
  channels 16, 32 as there). Other sizes: ``H``, ``W`` divisible by ``2**len(channels)`` and at
  least ``2**(len(channels) + 1)``.
* ``rotating_mnist`` (Table 10; 28×28, D = 784; ELU). Encoder: 3 × conv 3 s2 pad 1 (1→8→8→8, the
  channel count of SVGP-VAE's network): 28 → 14 → 7 → 4, flatten (8·4·4), [+cond], FC 128, FC 2L.
  Decoder: [z; cond] → FC 128, FC 8·22·22, then 3 × transposed conv 3 s1 **without padding**
  (8→8→8→1); each grows the map by 2, so the decoder starts at ``(H − 6) × (W − 6)`` = 22×22 and
  lands on 28×28 exactly, with no upsampling or cropping. Other sizes: ``H``, ``W`` > ``2·n``.
* ``health_mnist_mlp`` (Table 13; Health MNIST identifiability): the encoder of ``health_mnist``
  (ReLU); decoder [z; cond] → FC 30, 300, 1000, 1200 → D with ELU between (no activation after the
  last layer; the sigmoid is the likelihood's).
* ``physionet`` (Table 11; ELU): encoder D → 64 → 32 → 2L, decoder L → 32 → 64 → D.
* ``trial`` (Table 12; ELU): encoder D → 25 → 23 → 2L, decoder L → 23 → 25 → D.
* ``mlp`` (ours, for users' tabular data; ELU): encoder D → 256 → 128 → 2L, decoder L → 128 → 256 → D.

The tabular networks take whatever ``D`` the data have (the paper's PhysioNet has 37 features, its
trial 30). Options (config ``network_options``): ``hidden`` (the encoder's listed FC widths, an int or
a list; decoders mirror them, except ``health_mnist_mlp``'s ``decoder_hidden``), ``channels`` (image
networks: one conv per entry), ``min_var=1e-6`` (floor of the encoder variance): the fields of
each architecture's options dataclass. Registry: :data:`NETWORKS` (:mod:`lmmvae.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmmvae.errors import ConfigError
from lmmvae.registry import Registry, parse_options


def _dense(sizes: Sequence[int], activation: type[nn.Module], last_activation: bool) -> nn.Sequential:
    """Linear layers ``sizes[0] → … → sizes[-1]`` with ``activation`` between (and after, if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if last_activation or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _sizes(option: str, value) -> list[int]:
    """Validate a layer-size option from a config: a positive int or a non-empty list of them."""
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    ok = isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok:
        raise ConfigError(f"networks: option {option} must be a positive integer or a non-empty list of them, got {value!r}")
    return list(values)


def _floor(option: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"networks: option {option} must be a number >= 0, got {value!r}")
    return float(value)


# -- options (config `network_options:`) --------------------------------------------------------
@dataclass
class DenseOptions:
    """``mlp`` (ours, for users' tabular data): the encoder's FC widths (the decoder mirrors them)."""

    hidden: Sequence[int] | int = (256, 128)
    min_var: float = 1e-6  # floor of the encoder variance

    def __post_init__(self) -> None:
        self.hidden = _sizes("hidden", self.hidden)
        self.min_var = _floor("min_var", self.min_var)


@dataclass
class PhysioNetOptions(DenseOptions):
    """Table 11."""

    hidden: Sequence[int] | int = (64, 32)


@dataclass
class TrialOptions(DenseOptions):
    """Table 12."""

    hidden: Sequence[int] | int = (25, 23)


@dataclass
class HealthMNISTOptions:
    """Table 9: one conv per entry of ``channels``, then FC ``hidden``."""

    channels: Sequence[int] = (16, 32)
    hidden: Sequence[int] | int = (300, 30)
    min_var: float = 1e-6

    def __post_init__(self) -> None:
        self.channels = _sizes("channels", self.channels)
        self.hidden = _sizes("hidden", self.hidden)
        self.min_var = _floor("min_var", self.min_var)


@dataclass
class HealthMNISTMLPOptions(HealthMNISTOptions):
    """Table 13: Table 9's encoder and a dense decoder of widths ``decoder_hidden``."""

    decoder_hidden: Sequence[int] | int = (30, 300, 1000, 1200)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.decoder_hidden = _sizes("decoder_hidden", self.decoder_hidden)


@dataclass
class RotatingMNISTOptions(HealthMNISTOptions):
    """Table 10."""

    channels: Sequence[int] = (8, 8, 8)
    hidden: Sequence[int] | int = 128


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


# -- image encoders ---------------------------------------------------------------------------------
def _conv_encoder(image_shape: tuple[int, int], channels: list[int], hidden: list[int], activation: type[nn.Module],
                  pool: bool, latent_dim: int, condition_dim: int, min_var: float) -> Encoder:
    """``len(channels)`` × (conv 3 s2 pad 1, activation), [2×2 max-pool s2], flatten, FC ``hidden``, FC 2L."""
    height, width = image_shape
    chans = [1, *channels]
    down: list[nn.Module] = [nn.Unflatten(1, (1, height, width))]  # [B, D] -> [B, 1, H, W]
    for c_in, c_out in zip(chans[:-1], chans[1:]):
        down += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), activation()]  # size -> ceil(size / 2)
    if pool:
        down.append(nn.MaxPool2d(2, stride=2))  # size -> floor(size / 2)
    down.append(nn.Flatten())  # [B, F]
    features = nn.Sequential(*down)
    with torch.no_grad():
        n_features = features(torch.zeros(1, height * width)).shape[1]
    return Encoder(
        features=features,
        trunk=_dense([n_features + condition_dim, *hidden], activation, last_activation=True),
        n_hidden=hidden[-1],
        latent_dim=latent_dim,
        condition_dim=condition_dim,
        min_var=min_var,
    )


def _conv_decoder(start: tuple[int, int], channels: list[int], hidden: list[int], activation: type[nn.Module],
                  conv: dict, latent_dim: int, condition_dim: int) -> Decoder:
    """[z; cond] → FC ``hidden`` reversed → FC to a ``channels[-1] × start`` map, then one transposed
    conv (``conv``: kernel, stride, padding) per channel, mirrored, down to one channel."""
    h0, w0 = start
    rev = [*channels[::-1], 1]
    up: list[nn.Module] = [nn.Unflatten(1, (channels[-1], h0, w0))]
    for i, (c_in, c_out) in enumerate(zip(rev[:-1], rev[1:])):
        up.append(nn.ConvTranspose2d(c_in, c_out, **conv))
        if i < len(channels) - 1:
            up.append(activation())
    up.append(nn.Flatten())  # [N, 1, H, W] -> [N, D]
    return Decoder(
        trunk=_dense([latent_dim + condition_dim, *hidden[::-1], channels[-1] * h0 * w0], activation, last_activation=True),
        body=nn.Sequential(*up),
        latent_dim=latent_dim,
        condition_dim=condition_dim,
    )


def _image_shape(name: str, image_shape, smallest: int, multiple: int = 1) -> tuple[int, int]:
    height, width = image_shape
    if height % multiple or width % multiple or min(height, width) < smallest:
        need = f"divisible by {multiple} and at least {smallest}" if multiple > 1 else f"at least {smallest}"
        raise ConfigError(f"networks {name!r}: image_shape {tuple(image_shape)} does not fit; height and width must be {need}")
    return height, width


def _health_mnist(options: HealthMNISTOptions, data_dim: int, latent_dim: int, image_shape: tuple[int, int],
                  condition_dim: int) -> tuple[Encoder, Decoder]:
    """Table 9 (module docstring)."""
    channels, hidden, min_var = options.channels, options.hidden, options.min_var
    n = len(channels)
    height, width = _image_shape("health_mnist", image_shape, smallest=2 ** (n + 1), multiple=2**n)
    encoder = _conv_encoder((height, width), channels, hidden, nn.ReLU, True, latent_dim, condition_dim, min_var)
    h0, w0 = height // 2**n, width // 2**n  # the map before the encoder's max-pool
    # transposed conv 4 s2 pad 1: size -> 2 · size
    decoder = _conv_decoder((h0, w0), channels, hidden, nn.ReLU, dict(kernel_size=4, stride=2, padding=1),
                            latent_dim, condition_dim)
    return encoder, decoder


def _health_mnist_mlp(options: HealthMNISTMLPOptions, data_dim: int, latent_dim: int,
                      image_shape: tuple[int, int], condition_dim: int) -> tuple[Encoder, Decoder]:
    """Table 13: the encoder of Table 9, a dense ELU decoder (module docstring)."""
    encoder, _ = _health_mnist(options, data_dim, latent_dim, image_shape, condition_dim)
    decoder = Decoder(
        trunk=_dense([latent_dim + condition_dim, *options.decoder_hidden, data_dim], nn.ELU, last_activation=False),
        body=nn.Identity(),
        latent_dim=latent_dim,
        condition_dim=condition_dim,
    )
    return encoder, decoder


def _rotating_mnist(options: RotatingMNISTOptions, data_dim: int, latent_dim: int, image_shape: tuple[int, int],
                    condition_dim: int) -> tuple[Encoder, Decoder]:
    """Table 10 (module docstring)."""
    channels, hidden, min_var = options.channels, options.hidden, options.min_var
    n = len(channels)
    height, width = _image_shape("rotating_mnist", image_shape, smallest=2 * n + 1)
    encoder = _conv_encoder((height, width), channels, hidden, nn.ELU, False, latent_dim, condition_dim, min_var)
    h0, w0 = height - 2 * n, width - 2 * n  # each unpadded stride-1 transposed conv 3 adds 2
    decoder = _conv_decoder((h0, w0), channels, hidden, nn.ELU, dict(kernel_size=3, stride=1, padding=0),
                            latent_dim, condition_dim)
    return encoder, decoder


# -- tabular ---------------------------------------------------------------------------------------
def _dense_networks(options: DenseOptions, data_dim: int, latent_dim: int, image_shape,
                    condition_dim: int) -> tuple[Encoder, Decoder]:
    """``mlp``, ``physionet`` (Table 11), ``trial`` (Table 12): a dense ELU encoder
    ``D → hidden → 2L`` and its mirror ``L → hidden[::-1] → D``; only the default widths differ."""
    hidden, min_var = options.hidden, options.min_var
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
    """A registry entry: ``build(options, data_dim, latent_dim, image_shape, condition_dim)``.

    ``bounded_output``: the data are images in [0, 1] and the table ends in a sigmoid, which the
    likelihood applies (a Gaussian likelihood on this network is bounded by default).
    """

    name: str
    options: type  # a dataclass: the valid keys of `network_options:` and their defaults
    build: Callable[..., tuple[Encoder, Decoder]]
    default_shape: tuple[int, int] | None = None  # images: (height, width)
    bounded_output: bool = False


NETWORKS: Registry[Architecture] = Registry("network")
NETWORKS.register(Architecture("health_mnist", HealthMNISTOptions, _health_mnist, (36, 36), bounded_output=True))
NETWORKS.register(Architecture("rotating_mnist", RotatingMNISTOptions, _rotating_mnist, (28, 28), bounded_output=True))
NETWORKS.register(Architecture("health_mnist_mlp", HealthMNISTMLPOptions, _health_mnist_mlp, (36, 36),
                               bounded_output=True))
NETWORKS.register(Architecture("physionet", PhysioNetOptions, _dense_networks))
NETWORKS.register(Architecture("trial", TrialOptions, _dense_networks))
NETWORKS.register(Architecture("mlp", DenseOptions, _dense_networks))


def is_image_network(name: str) -> bool:
    """Whether the network ``name`` reads images (convolutions): it gets more torch threads
    (:func:`lmmvae.training.runtime.set_threads`). An unknown name counts as dense."""
    return name in NETWORKS and NETWORKS.get(name).default_shape is not None


def network_options(name: str, values: dict[str, Any]):
    """The options dataclass of network ``name`` from the config's ``network_options:``."""
    return parse_options(NETWORKS.get(name).options, values, f"networks {name!r}")


def bounded_output(name: str) -> bool:
    """Whether network ``name`` models images in [0, 1] whose mean is a sigmoid of its output."""
    return NETWORKS.get(name).bounded_output


def build_networks(
    name: str,
    data_dim: int,
    latent_dim: int,
    image_shape: Sequence[int] | None = None,
    condition_dim: int = 0,
    **kwargs,
) -> tuple[Encoder, Decoder]:
    """``(encoder, decoder)`` of architecture ``name`` (module docstring); ``kwargs`` are its
    options (the config's ``network_options:``, :func:`network_options`)."""
    arch = NETWORKS.get(name)
    shape = image_shape if image_shape is not None else arch.default_shape
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or shape[0] * shape[1] != data_dim:
            raise ConfigError(
                f"networks {name!r}: image_shape {shape} does not match data_dim={data_dim} "
                f"(need height*width == data_dim)"
            )
    options = network_options(name, kwargs)
    if latent_dim < 1 or condition_dim < 0:
        raise ConfigError(f"networks {name!r}: need latent_dim >= 1 and condition_dim >= 0")
    return arch.build(options, data_dim, latent_dim, shape, condition_dim)
