"""Mixed precision (config ``precision: bfloat16``, :meth:`lmmvae.model.latent.LatentVariableModel._network`)
and the ``compile`` key, on the CPU (CPU autocast runs bf16 as CUDA's does; tests/test_cuda.py has
the CUDA twin).

Tolerance: bf16 keeps 8 significant bits, unit roundoff ``u = 2^-8 ≈ 3.9e-3``. The per-row loss of
a bf16 run must stay within one ``u`` (relative) of the float32 run for every epoch: the networks'
rounding errors are of order ``u`` per layer and largely average out in the loss (measured: about
4e-5 relative after 3 epochs), while a loss, likelihood or KL computed in bf16 itself would be
rounded to ``u`` of its value at least. Decoder outputs (pre-sigmoid) must be within ``8 u`` in norm
(a few roundings along 5 layers) and not equal (the networks did run in bf16).
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import harness
from benchmarks.data import design_formula, health_mnist, simulate
from lmmvae.config import ModelConfig
from lmmvae.errors import ConfigError
from lmmvae.training.checks import config_from_dict

U = 2.0 ** -8  # bf16 unit roundoff
MLP = {"network": "mlp", "likelihood": "gaussian", "latent_dim": 4, "batch_size": 64}
CONV = {"network": "health_mnist", "likelihood": "gaussian", "latent_dim": 8, "batch_size": 32}
DESIGNS = {"olmm": design_formula(2), "slmm": "~ time + x0 + x1", "vae": "~ 1"}


@pytest.fixture(scope="module")
def tabular():
    return simulate(600, 30, n_covariates=2, data_dim=16, seed=0)


@pytest.fixture(scope="module")
def images():
    return health_mnist(6, 20)


def first_batch(bench):
    generator = torch.Generator().manual_seed(3)
    return next(bench.tensors.batches("train", bench.config.batch_size, by=bench.model.prior.batching,
                                      shuffle=True, generator=generator))


# -- config --------------------------------------------------------------------------------------
def test_unknown_precision_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"precision": "float16"}, where="m.yaml")
    assert str(err.value) == "m.yaml: precision must be one of float32, bfloat16, got 'float16'"
    with pytest.raises(ConfigError, match=r"^m.yaml: compile: expected true or false, got 'yes'$"):
        config_from_dict({"compile": "yes"}, where="m.yaml")
    assert config_from_dict({"precision": "bfloat16", "compile": True}).precision == "bfloat16"
    assert ModelConfig().precision == "float32" and ModelConfig().compile is False


# -- what runs in which precision ------------------------------------------------------------------
def test_bf16_runs_the_networks_in_bf16_and_everything_after_them_in_float32(images):
    bench = harness.prepare("bf16", images, "cpu", seed=0, variant="olmm", design="~ age + (1 | id)",
                            precision="bfloat16", **CONV)
    model = bench.model
    inside, fed = [], []
    for network in (model.encoder, model.decoder):
        last = [m for m in network.modules() if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d))][-1]
        last.register_forward_hook(lambda m, i, out: inside.append(out.dtype))
    log_prob = model.likelihood.log_prob

    def spy(y, mask, params):  # the decoded means / parameters the likelihood receives
        fed.append(params.dtype)
        return log_prob(y, mask, params)

    model.likelihood.log_prob = spy
    encoded = model.encode(first_batch(bench))
    terms = bench.trainer.objective(model, first_batch(bench), bench.trainer.n_train)
    terms.loss.backward()
    assert inside == [torch.bfloat16] * 3  # encoder, decoder (by `encode`, then in the objective)
    assert fed == [torch.float32]
    assert encoded.mean.dtype == encoded.var.dtype == torch.float32
    for name in ("loss", "reconstruction", "kl_local", "kl_global"):
        assert getattr(terms, name).dtype == torch.float32, name
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32), name
    harness.time_steps(bench, 2)  # two optimiser steps: Adam's and SparseAdam's moments
    states = [v for opt in bench.trainer.optimizers for s in opt.state.values() for v in s.values()
              if torch.is_tensor(v) and v.is_floating_point()]
    assert states and all(v.dtype == torch.float32 for v in states)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_decoder_outputs_are_within_bf16_rounding_of_float32(images):
    bench = harness.prepare("dec", images, "cpu", seed=0, variant="vae", **CONV)
    model, batch = bench.model, first_batch(bench)
    z = torch.randn(batch.size, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = model.decode(z, batch) - model.output_bias
        model.precision = "bfloat16"
        mixed = model.decode(z, batch) - model.output_bias
    assert mixed.dtype == torch.float32
    error = ((mixed - exact).norm() / exact.norm()).item()
    assert 0 < error <= 8 * U, error


@pytest.mark.parametrize("variant,objective", [("olmm", "elbo"), ("olmm", "gsnn"), ("slmm", "elbo"), ("vae", "elbo")])
def test_bf16_training_losses_match_float32(tabular, variant, objective):
    """Three epochs from the same seed: every epoch's training loss within one bf16 roundoff."""
    losses = {}
    for precision in ("float32", "bfloat16"):
        bench = harness.prepare(precision, tabular, "cpu", seed=0, variant=variant, design=DESIGNS[variant],
                                objective=objective, epochs=3, patience=0, precision=precision, **MLP)
        losses[precision] = [h["train_loss"] for h in bench.trainer.fit().history]
    exact, mixed = losses["float32"], losses["bfloat16"]
    assert len(exact) == len(mixed) == 3
    assert exact[-1] < exact[0] and mixed[-1] < mixed[0]  # both train
    assert exact != mixed  # the networks did run in bf16
    for a, b in zip(exact, mixed):
        assert b == pytest.approx(a, rel=U), (exact, mixed)


# -- compile ---------------------------------------------------------------------------------------
def test_compile_keeps_the_state_dict_keys_so_checkpoints_load_either_way(tabular):
    """``compile: true`` compiles in place (``nn.Module.compile``, lazily at the first call): the
    parameter names, hence checkpoints and model.pt, are those of the uncompiled model."""
    plain = harness.prepare("plain", tabular, "cpu", seed=0, variant="vae", **MLP).model
    compiled = harness.prepare("compiled", tabular, "cpu", seed=0, variant="vae", compile=True, **MLP).model
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert compiled.encoder._compiled_call_impl is not None and plain.encoder._compiled_call_impl is None
    compiled.load_state_dict(plain.state_dict())


# -- the benchmark (benchmarks/gpu_check.sh runs it on CUDA) ---------------------------------------
def test_precision_benchmark_times_each_setting_against_float32(tmp_path, monkeypatch):
    from benchmarks import precision

    monkeypatch.chdir(tmp_path)  # its data cache and CSV
    result = precision.main(["--quick", "--models", "oLMM-VAE", "--settings", "fp32", "bf16",
                             "--out", "p.csv", "--markdown", "p.md"])
    assert [(r["model"], r["setting"]) for r in result.rows] == [("oLMM-VAE", "fp32"), ("oLMM-VAE", "bf16")]
    assert result.rows[0]["ratio_fp32"] == 1.0 and result.rows[1]["ratio_fp32"] > 0
    assert all(r["epoch_s"] > 0 and r["first_epoch_s"] > 0 for r in result.rows)
    assert "| 40 | oLMM-VAE | bf16 |" in (tmp_path / "p.md").read_text() and (tmp_path / "p.csv").exists()
