"""Networks (SPEC 7, appendix J): the tables' layers and widths, shapes, conditioning, sample dims,
gradients, bounded image means through the likelihood, configuration errors."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.errors import ConfigError
from lmmvae.model.design import Design
from lmmvae.model.networks import NETWORKS, bounded_output, build_networks
from lmmvae.training.assemble import build_model
from lmmvae.training.checks import config_from_dict, network_options

CASES = {  # name -> data_dim at the paper's data size
    "health_mnist": 1296,
    "rotating_mnist": 784,
    "health_mnist_mlp": 1296,
    "physionet": 37,
    "trial": 30,
    "mlp": 37,
}
B, L = 4, 3


def _layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if type(m) is kind]


def _linears(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in _layers(module, nn.Linear)]


def _convs(module: nn.Module, kind: type) -> list[tuple[int, int, int, int]]:
    return [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in _layers(module, kind)]


def _activations(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if isinstance(m, (nn.ReLU, nn.ELU, nn.Sigmoid, nn.Tanh))}


def test_registry_holds_the_paper_networks_and_mlp():
    assert set(NETWORKS) == set(CASES)
    assert {n for n in NETWORKS if bounded_output(n)} == {"health_mnist", "rotating_mnist", "health_mnist_mlp"}


def test_health_mnist_is_table_9():
    """2 × conv 3 s2, 2×2 max-pool s2, FC 300, 30 (ReLU); decoder FC 30, 300, 2 × transposed conv 4 s2."""
    encoder, decoder = build_networks("health_mnist", 1296, L)
    assert _convs(encoder, nn.Conv2d) == [(1, 16, 3, 2), (16, 32, 3, 2)]
    (pool,) = _layers(encoder, nn.MaxPool2d)
    assert (pool.kernel_size, pool.stride) == (2, 2)
    assert _linears(encoder) == [(32 * 4 * 4, 300), (300, 30), (30, 2 * L)]  # 36 -> 18 -> 9 -> pool 4
    assert _linears(decoder) == [(L, 30), (30, 300), (300, 32 * 9 * 9)]
    assert _convs(decoder, nn.ConvTranspose2d) == [(32, 16, 4, 2), (16, 1, 4, 2)]  # 9 -> 18 -> 36
    assert _activations(encoder) == _activations(decoder) == {nn.ReLU}


def test_rotating_mnist_is_table_10():
    """3 × conv 3 s2, FC 128 (ELU); decoder FC 128, 3 × transposed conv 3 s1 from 22×22 to 28×28."""
    encoder, decoder = build_networks("rotating_mnist", 784, L)
    assert _convs(encoder, nn.Conv2d) == [(1, 8, 3, 2), (8, 8, 3, 2), (8, 8, 3, 2)]
    assert not _layers(encoder, nn.MaxPool2d)
    assert _linears(encoder) == [(8 * 4 * 4, 128), (128, 2 * L)]  # 28 -> 14 -> 7 -> 4
    assert _linears(decoder) == [(L, 128), (128, 8 * 22 * 22)]
    assert _convs(decoder, nn.ConvTranspose2d) == [(8, 8, 3, 1), (8, 8, 3, 1), (8, 1, 3, 1)]
    assert all(m.padding == (0, 0) for m in _layers(decoder, nn.ConvTranspose2d))  # each adds 2 pixels
    assert not _layers(decoder, nn.Upsample)
    assert _activations(encoder) == _activations(decoder) == {nn.ELU}


def test_health_mnist_mlp_is_table_13():
    encoder, decoder = build_networks("health_mnist_mlp", 1296, L)
    reference, _ = build_networks("health_mnist", 1296, L)
    assert [type(m) for m in encoder.modules()] == [type(m) for m in reference.modules()]
    assert _linears(encoder) == _linears(reference)
    assert _linears(decoder) == [(L, 30), (30, 300), (300, 1000), (1000, 1200), (1200, 1296)]
    assert not _layers(decoder, nn.ConvTranspose2d)
    assert _activations(decoder) == {nn.ELU}
    assert not isinstance(list(decoder.trunk)[-1], nn.ELU)  # unconstrained output: the likelihood's sigmoid


@pytest.mark.parametrize("name, widths, data_dim", [
    ("physionet", (64, 32), 37), ("trial", (25, 23), 30), ("mlp", (256, 128), 37),
    ("physionet", (64, 32), 41), ("trial", (25, 23), 20),  # the data's own D, not the paper's
])
def test_tabular_networks_are_tables_11_and_12(name, widths, data_dim):
    encoder, decoder = build_networks(name, data_dim, L)
    a, b = widths
    assert _linears(encoder) == [(data_dim, a), (a, b), (b, 2 * L)]
    assert _linears(decoder) == [(L, b), (b, a), (a, data_dim)]
    assert _activations(encoder) == _activations(decoder) == {nn.ELU}
    assert decoder(encoder(torch.randn(B, data_dim))[0]).shape == (B, data_dim)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("condition_dim", [0, 5])
def test_shapes_with_and_without_cond_and_sample_dims(name, condition_dim):
    torch.manual_seed(0)
    data_dim = CASES[name]
    encoder, decoder = build_networks(name, data_dim, L, condition_dim=condition_dim)
    y = torch.rand(B, data_dim)  # [B, D]
    cond = torch.randn(B, condition_dim) if condition_dim else None  # [B, C]
    mean, var = encoder(y, cond)
    assert mean.shape == var.shape == (B, L)
    assert torch.all(var > 0)
    assert decoder(mean, cond).shape == (B, data_dim)
    z = torch.randn(2, 6, B, L)  # [S1, S2, B, L]
    out = decoder(z, cond)
    assert out.shape == (2, 6, B, data_dim)
    # each sample is decoded on its own: the flatten/reshape keeps samples and rows apart
    torch.testing.assert_close(out[1, 4], decoder(z[1, 4], cond), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["health_mnist", "rotating_mnist"])
def test_decoder_body_lands_exactly_on_the_image(name):
    """The transposed-conv stack itself produces ``[N, 1, H, W]`` (no reshape hides a wrong size)."""
    height = 36 if name == "health_mnist" else 28
    _, decoder = build_networks(name, height * height, L)
    image = decoder.body[:-1](decoder.trunk(torch.randn(2, L)))  # all but the final Flatten
    assert image.shape == (2, 1, height, height)


@pytest.mark.parametrize("name", sorted(CASES))
def test_condition_changes_outputs(name):
    torch.manual_seed(0)
    data_dim = CASES[name]
    encoder, decoder = build_networks(name, data_dim, L, condition_dim=2)
    y, z = torch.rand(B, data_dim), torch.randn(B, L)
    c0, c1 = torch.zeros(B, 2), torch.ones(B, 2)
    assert not torch.allclose(encoder(y, c0)[0], encoder(y, c1)[0])
    assert not torch.allclose(decoder(z, c0), decoder(z, c1))


@pytest.mark.parametrize("name", ["rotating_mnist", "health_mnist"])
def test_image_is_read_row_major(name):
    """Flattened pixel ``r*W + c`` is image pixel ``(r, c)``: checked on a non-square image, where a
    column-major or transposed reshape would give different feature maps."""
    torch.manual_seed(0)
    height, width = 8, 12
    encoder, decoder = build_networks(name, height * width, L, image_shape=(height, width))
    image = torch.zeros(1, 1, height, width)
    image[0, 0, 1, 2:7] = 1.0  # a horizontal bar in row 1
    conv = encoder.features[1]  # the first Conv2d, after the unflatten
    feat = encoder.features[:2](image.flatten(1))
    torch.testing.assert_close(feat, conv(image))
    assert not torch.allclose(feat, conv(image.flatten(1).reshape(1, 1, width, height).transpose(2, 3)))
    assert decoder(encoder(image.flatten(1))[0]).shape == (1, height * width)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_reach_all_parameters(name):
    torch.manual_seed(0)
    data_dim = CASES[name]
    encoder, decoder = build_networks(name, data_dim, L, condition_dim=2)
    y, cond = torch.rand(B, data_dim), torch.randn(B, 2)
    mean, var = encoder(y, cond)
    z = mean + var.sqrt() * torch.randn(3, B, L)  # [3, B, L]
    decoder(z, cond).square().mean().backward()
    for net in (encoder, decoder):
        for pname, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"


# -- bounded means through the likelihood (assemble.build_model) ------------------------------------------
def _image_data(data_dim: int, n: int = 12) -> LongitudinalData:
    rng = np.random.default_rng(0)
    return LongitudinalData(
        y=rng.random((n, data_dim)), mask=np.ones((n, data_dim)), split=np.zeros(n),
        covariates={"id": Covariate(np.repeat(np.arange(3), n // 3).astype(str), "id"),
                    "time": Covariate(np.tile(np.arange(n // 3), 3), "time")},
    )


def _model(network: str, data_dim: int, **settings):
    config = config_from_dict({"variant": "vae", "latent_dim": L, "network": network, **settings})
    train = _image_data(data_dim)
    side = int(round(data_dim ** 0.5))
    shape = (side, side) if side * side == data_dim else None
    return build_model(config, Design("~ 1").fit(train.covariates), train, data_dim, shape)


@pytest.mark.parametrize("name", ["health_mnist", "rotating_mnist", "health_mnist_mlp"])
def test_image_networks_make_the_gaussian_mean_a_sigmoid(name):
    torch.manual_seed(0)
    data_dim = CASES[name]
    model = _model(name, data_dim, likelihood="gaussian")
    lik = model.likelihood
    assert lik.bounded
    last = [m for m in model.decoder.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))][-1]
    with torch.no_grad():
        last.bias.fill_(50.0)  # an unbounded mean would be ~50
    params = model.decoder(torch.randn(5, L))  # [5, D]
    mean = lik.mean(params)
    assert params.min() > 10 and torch.all((mean >= 0) & (mean <= 1)) and mean.min() > 0.99
    y, mask = torch.rand(5, data_dim), torch.ones(5, data_dim)
    expected = torch.distributions.Normal(torch.sigmoid(params), lik.variance.sqrt()).log_prob(y).sum(-1)
    torch.testing.assert_close(lik.log_prob(y, mask, params), expected)


def test_bounded_default_only_for_gaussian_on_image_networks_and_overridable():
    assert not _model("physionet", 37).likelihood.bounded
    assert not _model("mlp", 784).likelihood.bounded  # images through the users' mlp: as configured
    assert not _model("rotating_mnist", 784, likelihood_options={"bounded": False}).likelihood.bounded
    assert _model("mlp", 784, likelihood_options={"bounded": True}).likelihood.bounded
    bernoulli = _model("rotating_mnist", 784, likelihood="bernoulli").likelihood  # logits: no `bounded` option
    torch.testing.assert_close(bernoulli.mean(torch.tensor([0.0, 50.0])), torch.tensor([0.5, 1.0]))


# -- configuration errors ----------------------------------------------------------------------------
def test_image_shape_mismatch_is_config_error():
    with pytest.raises(ConfigError, match="does not match data_dim=784"):
        build_networks("health_mnist", 784, L)
    with pytest.raises(ConfigError, match="does not match data_dim=1296"):
        build_networks("rotating_mnist", 1296, L, image_shape=(28, 28))
    with pytest.raises(ConfigError, match="divisible by 4"):
        build_networks("health_mnist", 30 * 30, L, image_shape=(30, 30))
    with pytest.raises(ConfigError, match="at least 7"):
        build_networks("rotating_mnist", 6 * 6, L, image_shape=(6, 6))
    encoder, decoder = build_networks("health_mnist", 28 * 28, L, image_shape=(28, 28))  # override works
    assert decoder(encoder(torch.rand(2, 784))[0]).shape == (2, 784)
    encoder, decoder = build_networks("rotating_mnist", 30 * 30, L, image_shape=(30, 30))
    assert decoder(encoder(torch.rand(2, 900))[0]).shape == (2, 900)


def test_unknown_name_is_one_line_config_error_listing_valid_names():
    with pytest.raises(ConfigError) as err:
        build_networks("resnet", 10, L)
    message = str(err.value)
    assert "\n" not in message and "'resnet'" in message
    assert message.endswith("valid: health_mnist, health_mnist_mlp, mlp, physionet, rotating_mnist, trial")
    with pytest.raises(ConfigError, match="unknown network 'resnet'"):
        _model("resnet", 37)


def test_options_and_their_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        build_networks("mlp", 10, L, hiden=(64,))
    with pytest.raises(ConfigError, match="hidden must be a positive integer or a non-empty list"):
        build_networks("health_mnist", 1296, L, hidden=[0])
    with pytest.raises(ConfigError, match="channels must be"):
        build_networks("rotating_mnist", 784, L, channels=[])
    with pytest.raises(ConfigError, match="unknown option.*decoder_hidden"):
        build_networks("health_mnist", 1296, L, decoder_hidden=[10])
    encoder, decoder = build_networks("mlp", 10, L, hidden=(16, 8, 4))
    assert decoder(encoder(torch.rand(2, 10))[0]).shape == (2, 10)
    encoder, decoder = build_networks("health_mnist", 1296, L, channels=[4, 8], hidden=16)  # small, as tests use
    assert _linears(encoder) == [(8 * 4 * 4, 16), (16, 2 * L)]
    assert decoder(encoder(torch.rand(2, 1296))[0]).shape == (2, 1296)
    encoder, decoder = build_networks("rotating_mnist", 784, L, channels=[4, 8])  # two convs: starts at 24×24
    assert _linears(decoder)[-1] == (128, 8 * 24 * 24)
    assert decoder(encoder(torch.rand(2, 784))[0]).shape == (2, 784)
    _, decoder = build_networks("health_mnist_mlp", 1296, L, decoder_hidden=64)
    assert _linears(decoder) == [(L, 64), (64, 1296)]


def test_cond_contract_is_enforced():
    encoder, decoder = build_networks("mlp", 10, L)
    with pytest.raises(ValueError, match="condition_dim=0"):
        encoder(torch.rand(2, 10), torch.rand(2, 1))
    encoder, decoder = build_networks("mlp", 10, L, condition_dim=2)
    with pytest.raises(ValueError, match="expects a condition"):
        decoder(torch.rand(2, L))


def test_config_checks_network_options_at_load_naming_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"network": "physionet", "network_options": {"hiden": 8}}, where="m.yaml")
    assert str(err.value) == "m.yaml: networks 'physionet': unknown option(s) hiden; valid: hidden, min_var"
    with pytest.raises(ConfigError, match=r"^m.yaml: unknown network 'resnet'; valid: health_mnist, .*, trial$"):
        config_from_dict({"network": "resnet"}, where="m.yaml")
    # typed options: each architecture's defaults are its table's widths, an int is a one-layer list
    assert network_options(config_from_dict({"network": "trial"})).hidden == [25, 23]
    assert network_options(config_from_dict({"network": "physionet", "network_options": {"hidden": 8}})).hidden == [8]


def test_registry_imports_its_providers_on_first_look_up(tmp_path, monkeypatch):
    """A registry lists entries registered by modules it imports lazily (as variants lists baselines)."""
    from lmmvae.registry import Registry

    registry = Registry("widget", providers=("widget_provider_for_test",))
    (tmp_path / "widget_provider_for_test.py").write_text(
        "from types import SimpleNamespace\nimport test_networks_registry_hook as hook\n"
        "hook.REGISTRY.register(SimpleNamespace(name='knob'))\n")
    hook = type(sys)("test_networks_registry_hook")
    hook.REGISTRY = registry
    monkeypatch.setitem(sys.modules, "test_networks_registry_hook", hook)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.get("knob").name == "knob" and registry.names() == ["knob"]
    with pytest.raises(ConfigError, match=r"^unknown widget 'dial'; valid: knob$"):
        registry.get("dial")
