"""The CUDA path, skipped where CUDA is absent; `benchmarks/gpu_check.sh` runs them on a GPU.

- one training step on CUDA gives the loss and gradients of the same step on the CPU (same initial
  weights, same batch, the same standard-normal draws), for the MLP and the conv networks;
- the data set, the model, the batches and the optimiser state live on the device;
- ``precision: bfloat16``: a step within bf16 rounding of the float32 step;
- host synchronisations: none per training step for the VAE and CVAE (counted with
  ``torch.cuda.set_sync_debug_mode("warn")`` as the growth from a 2-step to a 6-step pass, so the
  once-per-pass reads do not count); the per-step count of every variant is printed for the record.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import pytest
import torch

from benchmarks import harness
from benchmarks.data import design_formula, health_mnist, simulate

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run benchmarks/gpu_check.sh on a GPU)"),
]

MLP = {"network": "mlp", "likelihood": "gaussian", "latent_dim": 4, "batch_size": 64}
VARIANTS = {
    "vae": {"variant": "vae"},
    "cvae": {"variant": "cvae", "design": "~ time + x0 + x1"},
    "olmm": {"variant": "olmm", "design": design_formula(2)},
    "slmm": {"variant": "slmm", "design": "~ time + x0 + x1"},
}


@contextmanager
def noise_from_cpu(seed: int):
    """Standard-normal draws of ``torch.distributions`` come from one CPU generator and are copied to
    the device, so the CPU and CUDA runs of a step see the same reparameterisation noise."""
    import torch.distributions.normal as normal_module

    generator = torch.Generator().manual_seed(seed)
    original = normal_module._standard_normal

    def draw(shape, dtype, device):
        return torch.randn(shape, generator=generator, dtype=dtype).to(device)

    normal_module._standard_normal = draw
    try:
        yield
    finally:
        normal_module._standard_normal = original


def one_step_gradients(data, device: str, settings: dict) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients (on the CPU, dense) of the first training batch of a fresh model."""
    bench = harness.prepare("step", data, device, seed=0, **settings)
    generator = torch.Generator().manual_seed(3)
    batch = next(bench.tensors.batches("train", bench.config.batch_size, by=bench.model.prior.batching,
                                       shuffle=True, generator=generator))
    bench.model.train(True)
    with noise_from_cpu(11):
        terms = bench.trainer.objective(bench.model, batch, bench.trainer.n_train, **bench.trainer.objective_kwargs)
        terms.loss.backward()
    grads = {name: (p.grad.to_dense() if p.grad.is_sparse else p.grad).cpu()
             for name, p in bench.model.named_parameters() if p.grad is not None}
    return terms.loss.item(), grads


@pytest.mark.parametrize("variant", ["vae", "olmm", "slmm"])
def test_one_training_step_on_cuda_equals_the_cpu_step_mlp(variant):
    data = simulate(600, 30, n_covariates=2, data_dim=16, seed=0)
    settings = {**MLP, **VARIANTS[variant]}
    loss_cpu, grads_cpu = one_step_gradients(data, "cpu", settings)
    loss_gpu, grads_gpu = one_step_gradients(data, "cuda", settings)
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-4)
    assert grads_cpu.keys() == grads_gpu.keys() and grads_cpu
    for name, g in grads_cpu.items():
        scale = g.abs().max().item() + 1e-12
        torch.testing.assert_close(grads_gpu[name], g, rtol=1e-3, atol=1e-4 * scale, msg=name)


def test_one_training_step_on_cuda_equals_the_cpu_step_conv():
    """Health MNIST conv encoder/decoder, TF32 off (cuDNN convolutions default to TF32 on Ampere and
    later, about 1e-3 relative error, which is a precision choice, not a bug)."""
    data = health_mnist(6, 20)
    settings = {"network": "health_mnist", "likelihood": "gaussian", "latent_dim": 8, "batch_size": 32,
                "variant": "olmm", "design": "~ age + (1 | id)"}
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        loss_cpu, grads_cpu = one_step_gradients(data, "cpu", settings)
        loss_gpu, grads_gpu = one_step_gradients(data, "cuda", settings)
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-4)
    for name, g in grads_cpu.items():
        scale = g.abs().max().item() + 1e-12
        torch.testing.assert_close(grads_gpu[name], g, rtol=2e-3, atol=1e-4 * scale, msg=name)


def test_data_model_batches_and_optimiser_state_live_on_the_device():
    data = simulate(400, 20, n_covariates=2, data_dim=8, seed=1)
    bench = harness.prepare("olmm", data, "cuda", **MLP, **VARIANTS["olmm"])
    tensors = bench.tensors
    on_device = [tensors.y, tensors.mask, tensors.split, tensors.subject, *tensors.covariates.values()]
    assert all(t.is_cuda for t in on_device)
    assert all(p.is_cuda for p in bench.model.parameters())
    batch = next(tensors.batches("train", 64, generator=torch.Generator().manual_seed(0)))
    assert batch.y.is_cuda and batch.mask.is_cuda and batch.index.is_cuda and batch.subject.is_cuda
    harness.time_steps(bench, 2)
    states = [v for opt in bench.trainer.optimizers for s in opt.state.values() for v in s.values()
              if torch.is_tensor(v) and v.dim() > 0]
    assert states and all(v.is_cuda for v in states)


def syncs_in_pass(bench, steps: int) -> int:
    """Host synchronisations that ``torch.cuda.set_sync_debug_mode('warn')`` reports during one
    training pass limited to ``steps`` batches."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            harness.time_steps(bench, steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def per_step_syncs(variant: str) -> float:
    data = simulate(4000, 100, n_covariates=2, data_dim=16, seed=2)
    bench = harness.prepare(variant, data, "cuda", **MLP, **VARIANTS[variant])
    harness.time_steps(bench, 2)  # optimiser state created, allocator warm
    return (syncs_in_pass(bench, 6) - syncs_in_pass(bench, 2)) / 4


@pytest.mark.parametrize("variant", ["vae", "cvae"])
def test_no_host_synchronisation_per_step(variant):
    assert per_step_syncs(variant) == 0


def test_report_host_synchronisations_per_step_of_every_variant(capsys):
    """The record (printed, not asserted): oLMM-VAE's SparseAdam coalesce and sLMM-VAE's
    torch.unique / whole-subject batching synchronise per step (BENCHMARKS.md, "On a GPU")."""
    counts = {variant: per_step_syncs(variant) for variant in VARIANTS}
    with capsys.disabled():
        print("\nhost synchronisations per training step:",
              ", ".join(f"{v} {c:g}" for v, c in counts.items()))
    assert counts["vae"] == 0


def test_bf16_step_on_cuda_matches_the_float32_step():
    """``precision: bfloat16`` on CUDA (Health MNIST conv networks, oLMM-VAE; tests/test_precision.py
    has the CPU twin): the loss within one bf16 roundoff ``u = 2^-8`` of the float32 step's, the
    whole gradient vector within ``8 u`` in norm (the CPU measured 0.7 %: roundings along the
    backward pass through both networks), and every gradient float32."""
    u = 2.0 ** -8
    data = health_mnist(6, 20)
    settings = {"network": "health_mnist", "likelihood": "gaussian", "latent_dim": 8, "batch_size": 32,
                "variant": "olmm", "design": "~ age + (1 | id)"}
    loss_32, grads_32 = one_step_gradients(data, "cuda", settings)
    loss_16, grads_16 = one_step_gradients(data, "cuda", {**settings, "precision": "bfloat16"})
    assert loss_16 == pytest.approx(loss_32, rel=u)
    assert grads_16.keys() == grads_32.keys() and all(g.dtype == torch.float32 for g in grads_16.values())
    flat_32 = torch.cat([grads_32[name].flatten() for name in grads_32])
    flat_16 = torch.cat([grads_16[name].flatten() for name in grads_32])
    assert 0 < ((flat_16 - flat_32).norm() / flat_32.norm()).item() <= 8 * u
