"""Forward+backward time of each network of :mod:`lmmvae.model.networks` on one batch, on this CPU.

    .venv/bin/python -m benchmarks.network_timing [--batch 256] [--latent 16] [--repeats 20]

One step = encoder, reparameterised sample, decoder, squared-error loss, backward. Reports the
best and the median of ``repeats`` timed steps (after one warm-up step); the best is the least
disturbed by other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lmmvae.model.networks import build_networks

CASES = [("health_mnist", 1296), ("rotating_mnist", 784), ("mlp", 37), ("mlp", 30)]


def time_step(name: str, data_dim: int, batch: int, latent: int, repeats: int) -> list[float]:
    torch.manual_seed(0)
    encoder, decoder = build_networks(name, data_dim, latent)
    y = torch.rand(batch, data_dim)  # [batch, D]
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        mean, var = encoder(y)  # [batch, L] each
        out = decoder(mean + var.sqrt() * torch.randn_like(mean))  # [batch, D]
        (out - y).square().mean().backward()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, L={args.latent}")
    for name, dim in CASES:
        n_params = sum(p.numel() for net in build_networks(name, dim, args.latent) for p in net.parameters())
        times = time_step(name, dim, args.batch, args.latent, args.repeats)
        print(f"{name:15s} D={dim:5d} params={n_params:9d}  fwd+bwd best {1000 * min(times):6.1f} ms"
              f"  median {1000 * statistics.median(times):6.1f} ms")


if __name__ == "__main__":
    main()
