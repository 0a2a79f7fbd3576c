"""A latent-variable model = networks × likelihood × prior."""

from __future__ import annotations

import torch
from torch import nn

from lmmvae.data.batch import Batch
from lmmvae.model.likelihoods import Likelihood
from lmmvae.model.priors.base import Encoded, Prior


class LatentVariableModel(nn.Module):
    """Encoder ``q(z|y)``, decoder ``p(y|z)``, and a swappable latent :class:`Prior`.

    The encoder sees ``y ⊙ m`` (SPEC 2.2). With ``conditional`` (declared by the variant: CVAE) both
    networks also receive the shared design columns ``x^s`` of the batch.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, prior: Prior,
                 conditional: bool = False, precision: str = "float32", compile: bool = False):
        super().__init__()
        self.conditional = conditional
        self.precision = precision  # config `precision`: float32 | bfloat16 (see `_network`)
        if compile:  # in place (`nn.Module.compile`): the state_dict keeps its keys, checkpoints load as before
            encoder.compile()
            decoder.compile()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        # per-feature offset of the decoder's output (the likelihood's parameters), started by
        # `initialise` at the training mean on the likelihood's link scale: the model starts at the
        # average training observation instead of at sigmoid(0) = 0.5 on every pixel (SPEC 7)
        self.output_bias = nn.Parameter(torch.zeros(likelihood.data_dim))  # [D]

    @torch.no_grad()
    def initialise(self, y, mask) -> None:
        """Start the likelihood (e.g. Gaussian variances) and the output offset from the training
        data (``y``, ``mask``: numpy ``[N, D]``)."""
        self.likelihood.initialise(y, mask)
        self.output_bias.copy_(self.likelihood.initial_params(y, mask).to(self.output_bias.dtype))

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    def _network(self, network: nn.Module, *inputs):
        """The one place where the encoder and decoder run: ``network(*inputs)``, in float32, or with
        ``precision: bfloat16`` under ``torch.autocast(device, bfloat16)`` with every output cast
        back to float32.

        Why only the networks. Their forward passes are the matmuls and convolutions that carry
        nearly all the step's arithmetic, and they tolerate bf16's 8-bit significand (unit roundoff
        ``2^-8 ≈ 0.4 %`` on the inputs of each product, accumulated in float32 by the kernels): the weights stay
        float32 masters that autocast casts per op, so gradients and Adam's moments are float32, and
        bf16 keeps float32's exponent range, so nothing overflows or underflows and no GradScaler is
        needed (float16 would need one; it is not offered). Everything after the networks stays
        float32 because it would not survive bf16: the likelihood's log-density sums ``D`` (up to
        1,296) per-pixel terms of ``(y − μ)² / σ²`` whose differences are below bf16's resolution
        once the fit is good; the KL terms and the priors hold log-determinants, Cholesky factors
        and the random-effect tables (gpytorch's GP baselines need float32 or better); and the
        loss is a sum over the batch scaled by ``N / |B|``. Casting the outputs here (decoded
        parameters, encoder mean and variance) is what keeps the likelihood, the KL and the loss
        float32 (SPEC 2.3) whatever runs inside the networks.
        """
        if self.precision == "float32":
            return network(*inputs)
        with torch.autocast(inputs[0].device.type, dtype=torch.bfloat16):
            out = network(*inputs)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()

    def _condition(self, batch: Batch) -> torch.Tensor | None:
        return batch.x.shared if self.conditional else None

    def encode(self, batch: Batch) -> Encoded:
        mean, var = self._network(self.encoder, batch.y_masked, self._condition(batch))  # [B, L] each
        return Encoded(mean, var)

    def encode_rows(self, data, rows: torch.Tensor, chunk: int = 512, chunks=None) -> Encoded:
        """Encoder outputs for ``rows`` of ``data`` (:class:`lmmvae.data.loader.TensorData`), in chunks
        (``chunks``: an iterable of row chunks to use instead, e.g. with a progress line)."""
        parts = [self.encode(data.batch(part)) for part in
                 (chunks if chunks is not None else rows.split(chunk))]
        if not parts:
            empty = torch.zeros(0, self.latent_dim, device=rows.device)
            return Encoded(empty, empty)
        return Encoded(torch.cat([p.mean for p in parts]), torch.cat([p.var for p in parts]))

    @torch.no_grad()
    def start_epoch(self, data) -> None:
        """Before each training epoch: the prior's per-epoch state (``Prior.epoch_encodings``: the
        encodings of every training row of ``data``, e.g. GPPVAE's cache)."""
        if not self.prior.epoch_encodings:
            self.prior.on_epoch_start(None, None)
            return
        rows = data.indices("train")
        self.prior.on_epoch_start(self.encode_rows(data, rows, chunk=1024), data.batch(rows))

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Likelihood parameters for latents ``z [..., B, L]``: ``[..., B, D]``."""
        return self._network(self.decoder, z, self._condition(batch)) + self.output_bias

    def log_likelihood(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``log p(y_i | z_i)`` over observed entries: ``[..., B]``."""
        return self.likelihood.log_prob(batch.y, batch.mask, self.decode(z, batch))

    def generate(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean of ``p(y | g_ψ(z))``: ``[..., B, D]``."""
        return self.likelihood.mean(self.decode(z, batch))
