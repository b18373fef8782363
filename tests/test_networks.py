"""The generator and discriminator: shapes, output maps, initialisation and DPED's geometry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from wespe.networks import Discriminator, Generator, ResidualBlock

TINY = {"channels": 8, "num_blocks": 1}
SMALL_WIDTHS = (4, 6, 8, 8, 6)


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


# --------------------------------------------------------------------------- Generator


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 3, 31, 9), (1, 3, 1, 5)])
@pytest.mark.parametrize("output", ["dped", "sigmoid", "residual"])
def test_generator_keeps_odd_sizes(shape, output):
    torch.manual_seed(0)
    g = Generator(**TINY, output=output)
    assert g(torch.rand(shape)).shape == shape


def test_generator_dped_output_range_and_formula():
    torch.manual_seed(0)
    g = Generator(**TINY, output="dped", init="default")
    # Large inputs saturate the tanh: the output still stays in 0.5 ± 0.58.
    y = g(torch.randn(2, 3, 19, 21) * 1000)
    assert y.min() >= 0.5 - 0.58 - 1e-6
    assert y.max() <= 0.5 + 0.58 + 1e-6
    # The map is exactly tanh(z) * 0.58 + 0.5: with a zeroed last conv, z is its bias.
    with torch.no_grad():
        g.to_image.weight.zero_()
        g.to_image.bias.copy_(torch.tensor([-10.0, 0.0, 0.7]))
    y = g(torch.rand(1, 3, 5, 7))
    expected = torch.tanh(torch.tensor([-10.0, 0.0, 0.7])) * 0.58 + 0.5
    torch.testing.assert_close(y[0, :, 2, 3], expected)
    # ... which leaves [0, 1] at both ends (DPED's range is about [-0.08, 1.08]).
    assert y[0, 0].max() < 0 and torch.allclose(y[0, 1], torch.full_like(y[0, 1], 0.5))


def test_generator_sigmoid_output_range_and_formula():
    torch.manual_seed(0)
    g = Generator(**TINY, output="sigmoid", init="default")
    y = g(torch.randn(2, 3, 13, 11) * 10)
    assert y.min() > 0 and y.max() < 1
    assert y.std() > 0  # not a constant map
    with torch.no_grad():
        g.to_image.weight.zero_()
        g.to_image.bias.copy_(torch.tensor([-2.0, 0.0, 3.0]))
    y = g(torch.rand(1, 3, 6, 6))
    torch.testing.assert_close(y[0, :, 1, 4], torch.sigmoid(torch.tensor([-2.0, 0.0, 3.0])))


def test_generator_residual_identity_init_is_exactly_identity():
    torch.manual_seed(0)
    g = Generator(**TINY, output="residual", init="identity")
    x = torch.rand(2, 3, 15, 12)
    y = g(x)
    assert torch.equal(y, x)
    # Training can still move it away from the identity: the last conv gets a gradient.
    target = torch.rand_like(x)
    ((y - target) ** 2).mean().backward()
    assert g.to_image.weight.grad is not None and g.to_image.weight.grad.abs().sum() > 0
    assert g.to_image.bias.grad is not None and g.to_image.bias.grad.abs().sum() > 0


def test_generator_residual_is_input_plus_correction():
    torch.manual_seed(0)
    g = Generator(**TINY, output="residual", init="default")
    with torch.no_grad():
        g.to_image.weight.zero_()
        g.to_image.bias.copy_(torch.tensor([0.25, -0.5, 2.0]))
    x = torch.rand(1, 3, 8, 9)
    y = g(x)
    torch.testing.assert_close(y, x + torch.tensor([0.25, -0.5, 2.0]).view(1, 3, 1, 1))
    assert y.max() > 1  # not clamped


@pytest.mark.parametrize("output", ["dped", "sigmoid"])
def test_generator_identity_init_needs_residual_output(output):
    with pytest.raises(ValueError, match="identity"):
        Generator(**TINY, output=output, init="identity")


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="output must be one of"):
        Generator(**TINY, output="tanh")
    with pytest.raises(ValueError, match="init must be one of"):
        Generator(**TINY, init="xavier")
    with pytest.raises(ValueError, match="channels"):
        Generator(channels=0)
    with pytest.raises(ValueError, match="num_blocks"):
        Generator(channels=4, num_blocks=-1)


def test_generator_dped_init_statistics():
    torch.manual_seed(0)
    g = Generator()  # init="dped" is the default
    layers = convs(g)
    assert len(layers) == 12
    for conv in layers:
        assert torch.equal(conv.bias, torch.full_like(conv.bias, 0.01))
        assert conv.weight.min() >= -0.02 and conv.weight.max() <= 0.02
    weights = torch.cat([conv.weight.detach().flatten() for conv in layers])
    # A normal of std 0.01 truncated at ±2 std has std ≈ 0.88 * 0.01.
    assert 0.007 < weights.std().item() < 0.0105
    assert abs(weights.mean().item()) < 5e-4
    # Not PyTorch's default (uniform with a bound depending on fan-in: much wider for the head).
    assert g.head[0].weight.abs().max() <= 0.02 < 1 / math.sqrt(3 * 81)


def test_generator_default_init_differs_from_dped_init():
    torch.manual_seed(0)
    g = Generator(**TINY, init="default")
    assert not torch.equal(g.head[0].bias, torch.full_like(g.head[0].bias, 0.01))
    assert g.head[0].weight.abs().max() > 0.02


def test_generator_default_is_the_papers_network():
    g = Generator()
    assert g.output == "dped"
    layers = convs(g)
    nine = [c for c in layers if c.kernel_size == (9, 9)]
    three = [c for c in layers if c.kernel_size == (3, 3)]
    assert len(nine) == 2 and len(three) == 10 and len(layers) == 12
    # First and last convs are the 9x9 ones: 3 -> 64 and 64 -> 3.
    assert layers[0] is g.head[0] and layers[-1] is g.to_image
    assert (layers[0].in_channels, layers[0].out_channels) == (3, 64)
    assert (g.to_image.in_channels, g.to_image.out_channels) == (64, 3)
    assert layers[0].padding == (4, 4) and g.to_image.padding == (4, 4)
    blocks = [m for m in g.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 4
    assert all((c.in_channels, c.out_channels, c.padding) == (64, 64, (1, 1)) for c in three)
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 8 and all(n.affine for n in norms)


def test_residual_block_is_skip_plus_body():
    torch.manual_seed(0)
    block = ResidualBlock(4)
    x = torch.randn(2, 4, 7, 5)
    torch.testing.assert_close(block(x), x + block.body(x))
    # The body ends with a ReLU (DPED's code), so the block never lowers its input.
    assert (block(x) >= x - 1e-6).all()


# --------------------------------------------------------------------------- Discriminator


@pytest.mark.parametrize("size", [100, 64, 37, 17])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_discriminator_one_logit_per_image(size, in_channels):
    torch.manual_seed(0)
    d = Discriminator(in_channels, widths=SMALL_WIDTHS, fc_features=16)
    out = d(torch.rand(3, in_channels, size, size))
    assert out.shape == (3,)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [16, 8])
@pytest.mark.parametrize("norm", ["batch", "spectral", "none"])
def test_discriminator_small_patches(size, norm):
    torch.manual_seed(0)
    d = Discriminator(1, widths=SMALL_WIDTHS, fc_features=16, norm=norm)
    out = d(torch.rand(2, 1, size, size))
    assert out.shape == (2,)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [16, 8])
def test_instance_norm_discriminator_refuses_too_small_patches_clearly(size):
    d = Discriminator(1, widths=SMALL_WIDTHS, fc_features=16, norm="instance")
    with pytest.raises(ValueError, match="at least 17 px"):
        d(torch.rand(2, 1, size, size))
    assert d(torch.rand(2, 1, 17, 17)).shape == (2,)


def test_discriminator_paper_size_default_network():
    torch.manual_seed(0)
    d = Discriminator(in_channels=1)
    assert d(torch.rand(2, 1, 100, 100)).shape == (2,)


def test_discriminator_non_square_input():
    torch.manual_seed(0)
    d = Discriminator(3, widths=SMALL_WIDTHS, fc_features=16)
    assert d(torch.rand(2, 3, 23, 57)).shape == (2,)


@pytest.mark.parametrize(
    ("in_channels", "shape"), [(1, (2, 3, 32, 32)), (3, (2, 1, 32, 32)), (3, (3, 32, 32))]
)
def test_discriminator_rejects_wrong_input_shape(in_channels, shape):
    d = Discriminator(in_channels, widths=SMALL_WIDTHS, fc_features=16)
    with pytest.raises(ValueError, match=rf"expects \(B, {in_channels}, H, W\)"):
        d(torch.rand(shape))


def test_discriminator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="norm must be one of"):
        Discriminator(norm="layer")
    with pytest.raises(ValueError, match="5 conv widths"):
        Discriminator(widths=(4, 4, 4, 4))


def test_discriminator_pool_is_identity_for_100px():
    torch.manual_seed(0)
    d = Discriminator(3, widths=SMALL_WIDTHS, fc_features=16)
    feat = d.features(torch.rand(2, 3, 100, 100))
    assert feat.shape == (2, SMALL_WIDTHS[-1], 7, 7)
    assert torch.equal(d.pool(feat), feat)
    # The classifier's FC layer sees DPED's 7x7x128 map with the default widths.
    assert Discriminator().classifier[1].in_features == 7 * 7 * 128


def test_discriminator_pool_is_identity_for_quickstart_patches():
    # configs/quickstart.yaml: 64 px patches with pooled_size 4.
    torch.manual_seed(0)
    d = Discriminator(3, widths=SMALL_WIDTHS, fc_features=16, pooled_size=4)
    feat = d.features(torch.rand(1, 3, 64, 64))
    assert feat.shape[-2:] == (4, 4)
    assert torch.equal(d.pool(feat), feat)


@pytest.mark.parametrize("norm", ["instance", "batch", "spectral", "none"])
def test_discriminator_norms(norm):
    torch.manual_seed(0)
    d = Discriminator(3, widths=SMALL_WIDTHS, fc_features=16, norm=norm)
    out = d(torch.rand(2, 3, 40, 40))
    assert out.shape == (2,) and torch.isfinite(out).all()
    instance = [m for m in d.modules() if isinstance(m, nn.InstanceNorm2d)]
    batch = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    parametrized = [m for m in convs(d) + linears if parametrize.is_parametrized(m, "weight")]
    assert len(instance) == (4 if norm == "instance" else 0)
    assert len(batch) == (4 if norm == "batch" else 0)
    assert len(parametrized) == (7 if norm == "spectral" else 0)
    # Never a norm right after the first conv (DPED): features = conv, lrelu, conv, ...
    assert isinstance(d.features[0], nn.Conv2d) and isinstance(d.features[1], nn.LeakyReLU)
    assert isinstance(d.features[2], nn.Conv2d)


def test_discriminator_spectral_norm_bounds_the_fc_layer():
    torch.manual_seed(0)
    d = Discriminator(3, widths=SMALL_WIDTHS, fc_features=16, norm="spectral")
    for _ in range(20):  # each training forward runs a power iteration
        d(torch.rand(2, 3, 32, 32))
    for linear in (m for m in d.modules() if isinstance(m, nn.Linear)):
        sigma = torch.linalg.matrix_norm(linear.weight.detach(), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


def test_discriminator_default_geometry():
    d = Discriminator()
    layers = convs(d)
    assert [c.kernel_size[0] for c in layers] == [11, 5, 3, 3, 3]
    assert [c.stride[0] for c in layers] == [4, 2, 1, 1, 2]
    assert [c.out_channels for c in layers] == [48, 128, 192, 192, 128]
    assert [c.in_channels for c in layers] == [3, 48, 128, 192, 192]
    assert all(c.kernel_size[0] == c.kernel_size[1] for c in layers)
    assert [c.padding[0] for c in layers] == [5, 2, 1, 1, 1]
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (128 * 7 * 7, 1024),
        (1024, 1),
    ]
    slopes = {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}
    assert len([m for m in d.modules() if isinstance(m, nn.LeakyReLU)]) == 6


# --------------------------------------------------------------------------- gradients


def test_gradient_reaches_generator_input():
    torch.manual_seed(0)
    g = Generator(**TINY, init="default")
    x = torch.rand(1, 3, 12, 12, requires_grad=True)
    g(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradient_reaches_generator_input_at_dped_init():
    torch.manual_seed(0)
    g = Generator(**TINY)
    x = torch.rand(1, 3, 12, 12, requires_grad=True)
    g(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("norm", ["instance", "batch", "spectral", "none"])
def test_gradient_reaches_discriminator_input(norm):
    torch.manual_seed(0)
    d = Discriminator(1, widths=SMALL_WIDTHS, fc_features=16, norm=norm)
    x = torch.rand(2, 1, 36, 36, requires_grad=True)
    d(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_discriminator_input_statistics_reach_the_classifier():
    """With ``input_statistics`` the FC layers see each input channel's mean and std: keep
    only their weights and the logit is a hand-computable function of them."""
    torch.manual_seed(0)
    d = Discriminator(3, widths=SMALL_WIDTHS, fc_features=4, input_statistics=True)
    hidden, output = d.classifier[1], d.classifier[3]
    conv_features = SMALL_WIDTHS[-1] * 7 * 7
    assert hidden.in_features == conv_features + 2 * 3
    x = torch.rand(2, 3, 40, 40) * torch.tensor([0.2, 0.5, 1.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden.weight[:, :conv_features] = 0
        std, mean = torch.std_mean(x.flatten(2), dim=2)
        expected = output(
            nn.functional.leaky_relu(
                hidden(torch.cat([torch.zeros(2, conv_features), mean, std], 1)), 0.2
            )
        )
        torch.testing.assert_close(d(x), expected.squeeze(1))


@pytest.mark.parametrize("norm", ["spectral", "instance"])
def test_discriminator_pickles_with_its_weights(norm):
    """ddp_spawn pickles the model; torch cannot pickle spectral norm's parametrized layers."""
    import pickle

    torch.manual_seed(0)
    d = Discriminator(3, widths=SMALL_WIDTHS, fc_features=8, norm=norm, input_statistics=True)
    d(torch.rand(2, 3, 40, 40))  # a training-mode pass moves spectral norm's power iteration
    d.eval()
    copy = pickle.loads(pickle.dumps(d))
    x = torch.rand(2, 3, 40, 40)
    assert not copy.training
    assert copy.state_dict().keys() == d.state_dict().keys()
    torch.testing.assert_close(copy(x), d(x), rtol=0, atol=0)
