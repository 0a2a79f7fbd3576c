"""Networks (appendix J): shapes, conditioning, sample dims, gradients, configuration errors."""

import pytest
import torch

from lmmvae.errors import ConfigError
from lmmvae.networks import NETWORKS, build_networks

CASES = {  # name -> (data_dim, image_shape)
    "health_mnist": (1296, None),
    "rotating_mnist": (784, None),
    "mlp": (37, None),
}
B, L = 4, 3


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("condition_dim", [0, 5])
def test_shapes_with_and_without_cond_and_sample_dims(name, condition_dim):
    torch.manual_seed(0)
    data_dim, image_shape = CASES[name]
    encoder, decoder = build_networks(name, data_dim, L, image_shape, condition_dim=condition_dim)
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_condition_changes_outputs(name):
    torch.manual_seed(0)
    data_dim, _ = CASES[name]
    encoder, decoder = build_networks(name, data_dim, L, condition_dim=2)
    y, z = torch.rand(B, data_dim), torch.randn(B, L)
    c0, c1 = torch.zeros(B, 2), torch.ones(B, 2)
    assert not torch.allclose(encoder(y, c0)[0], encoder(y, c1)[0])
    assert not torch.allclose(decoder(z, c0), decoder(z, c1))


def test_image_is_read_row_major():
    """Flattened pixel ``r*W + c`` is image pixel ``(r, c)``: checked on a non-square image, where a
    column-major or transposed reshape would give different feature maps."""
    torch.manual_seed(0)
    height, width = 8, 12
    encoder, _ = build_networks("rotating_mnist", height * width, L, image_shape=(height, width))
    image = torch.zeros(1, 1, height, width)
    image[0, 0, 1, 2:7] = 1.0  # a horizontal bar in row 1
    conv = encoder.features[1]  # the first Conv2d, after the unflatten
    feat = encoder.features[:2](image.flatten(1))  # [1, 32, 4, 6]
    torch.testing.assert_close(feat, conv(image))
    assert not torch.allclose(feat, conv(image.flatten(1).reshape(1, 1, width, height).transpose(2, 3)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_reach_all_parameters(name):
    torch.manual_seed(0)
    data_dim, _ = CASES[name]
    encoder, decoder = build_networks(name, data_dim, L, condition_dim=2)
    y, cond = torch.rand(B, data_dim), torch.randn(B, 2)
    mean, var = encoder(y, cond)
    z = mean + var.sqrt() * torch.randn(3, B, L)  # [3, B, L]
    decoder(z, cond).square().mean().backward()
    for net in (encoder, decoder):
        for pname, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"


def test_image_shape_mismatch_is_config_error():
    with pytest.raises(ConfigError, match="does not match data_dim=784"):
        build_networks("health_mnist", 784, L)
    with pytest.raises(ConfigError, match="does not match data_dim=1296"):
        build_networks("rotating_mnist", 1296, L, image_shape=(28, 28))
    with pytest.raises(ConfigError, match="divisible by 4"):
        build_networks("rotating_mnist", 30 * 30, L, image_shape=(30, 30))
    encoder, _ = build_networks("health_mnist", 28 * 28, L, image_shape=(28, 28))  # override works
    assert encoder(torch.rand(2, 784))[0].shape == (2, L)


def test_unknown_name_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="valid: health_mnist, mlp, rotating_mnist"):
        build_networks("resnet", 10, L)
    with pytest.raises(ConfigError, match="unknown option"):
        build_networks("mlp", 10, L, hiden=(64,))
    with pytest.raises(ConfigError, match="hidden must be a positive integer"):
        build_networks("health_mnist", 1296, L, hidden=[256])
    with pytest.raises(ConfigError, match="channels must be a non-empty list"):
        build_networks("rotating_mnist", 784, L, channels=[])
    encoder, decoder = build_networks("mlp", 10, L, hidden=(16, 8, 4))
    assert decoder(encoder(torch.rand(2, 10))[0]).shape == (2, 10)


def test_cond_contract_is_enforced():
    encoder, decoder = build_networks("mlp", 10, L)
    with pytest.raises(ValueError, match="condition_dim=0"):
        encoder(torch.rand(2, 10), torch.rand(2, 1))
    encoder, decoder = build_networks("mlp", 10, L, condition_dim=2)
    with pytest.raises(ValueError, match="expects a condition"):
        decoder(torch.rand(2, L))


def test_registry_lists_the_three_architectures():
    assert set(NETWORKS) == {"health_mnist", "rotating_mnist", "mlp"}
