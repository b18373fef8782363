"""Tests for wespe.losses.

Fast CPU tests on tiny tensors. The VGG-19 tests never download anything: they build a randomly
initialised torchvision VGG-19 under a fixed seed, save its state dict, and compare
``VGG19Features``/``PerceptualLoss`` with that same torchvision network. Building a VGG-19 costs
a few seconds on CPU, so the weights file and the shared feature extractors are built once.
"""

from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import kornia
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import IMAGENET_VGG19_FILE
from torch import nn
from torch.testing import assert_close

from wespe.losses import (
    VGG19_LAYER_INDEX,
    AdversarialLoss,
    ColorLoss,
    GaussianBlur,
    PerceptualLoss,
    TextureLoss,
    TVLoss,
    VGG19Features,
    adversarial_loss,
    discriminator_accuracy,
    gaussian_blur,
    to_grayscale,
    total_variation,
)

# --------------------------------------------------------------------------------------------
# Total variation
# --------------------------------------------------------------------------------------------

# x = [[0, 1],
#      [2, 4]]
# vertical differences:   2 - 0 = 2,  4 - 1 = 3
# horizontal differences: 1 - 0 = 1,  4 - 2 = 2
# p=1: 2 + 3 + 1 + 2 = 8
# p=2: 4 + 9 + 1 + 4 = 18
HAND_X = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])

# Test tensor and expected per-image L1 total variation from kornia's own test suite
# (tests/losses/test_total_variation.py); e.g. image 0: vertical |0.4569-0.1104| + |0.1906-0.2284|
# + |0.8035-0.4371| = 0.7507, horizontal 0.1180 + 0.2087 + 0.2663 + 0.6129 = 1.2059, total 1.9566.
KORNIA_X = torch.tensor(
    [
        [[[0.1104, 0.2284, 0.4371], [0.4569, 0.1906, 0.8035]]],
        [[[0.0552, 0.6831, 0.8310], [0.3589, 0.5044, 0.0802]]],
        [[[0.5078, 0.5703, 0.9110], [0.4765, 0.8401, 0.2754]]],
    ]
)
KORNIA_EXPECTED = torch.tensor([1.9566, 2.5787, 2.2682])


class SeedTVLoss(nn.Module):
    """The seed blog post's TVLoss, transcribed verbatim."""

    def forward(self, x):
        b, c, h, w = x.size()
        h_tv = torch.pow(x[:, :, 1:, :] - x[:, :, : h - 1, :], 2).sum()
        w_tv = torch.pow(x[:, :, :, 1:] - x[:, :, :, : w - 1], 2).sum()
        return (h_tv + w_tv) / (b * c * h * w)


@pytest.mark.parametrize(("p", "expected"), [(1, 8.0), (2, 18.0)])
def test_total_variation_hand_values(p, expected):
    assert total_variation(HAND_X, p=p, reduction="sum").item() == expected
    none = total_variation(HAND_X, p=p, reduction="none")
    assert none.shape == (1,)
    assert none.item() == expected
    # "mean" divides the batch sum by B*C*H*W = 4.
    assert total_variation(HAND_X, p=p, reduction="mean").item() == expected / 4


@pytest.mark.parametrize("p", [1, 2])
def test_total_variation_reductions_on_a_batch(p):
    torch.manual_seed(0)
    x = torch.rand(3, 2, 5, 4)
    none = total_variation(x, p=p, reduction="none")
    assert none.shape == (3,)
    assert_close(total_variation(x, p=p, reduction="sum"), none.sum())
    assert_close(total_variation(x, p=p, reduction="mean"), none.sum() / (3 * 2 * 5 * 4))
    assert total_variation(x, p=p, reduction="sum").shape == ()
    assert total_variation(x, p=p).shape == ()  # default reduction is "mean"


def test_total_variation_kornia_test_tensor():
    out = total_variation(KORNIA_X, p=1, reduction="none")
    assert out.shape == (3,)
    assert_close(out, KORNIA_EXPECTED, atol=1e-4, rtol=0)


def test_total_variation_matches_kornia():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 7, 9)
    reference = kornia.losses.total_variation(x, reduction="sum")
    assert reference.shape == (2, 3)
    assert_close(total_variation(x, p=1, reduction="none"), reference.sum(dim=1))


def test_total_variation_p2_mean_matches_seed_blog_tvloss():
    torch.manual_seed(2)
    x = torch.rand(2, 3, 6, 5)
    assert_close(total_variation(x, p=2, reduction="mean"), SeedTVLoss()(x))


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_total_variation_of_constant_image_is_zero(p, reduction):
    x = torch.full((2, 3, 5, 6), 0.7)
    assert torch.count_nonzero(total_variation(x, p=p, reduction=reduction)) == 0


@pytest.mark.parametrize("p", [1, 2])
def test_total_variation_batched_equals_unbatched(p):
    torch.manual_seed(3)
    x = torch.rand(4, 3, 6, 7)
    batched = total_variation(x, p=p, reduction="none")
    alone = torch.cat([total_variation(x[i : i + 1], p=p, reduction="none") for i in range(4)])
    assert_close(batched, alone)
    # The images differ, so their values must too (guards against a batch-wide sum).
    assert len(set(batched.tolist())) == 4


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_tvloss_module_is_weighted_functional(p, reduction):
    torch.manual_seed(4)
    x = torch.rand(2, 3, 5, 5)
    loss = TVLoss(p=p, reduction=reduction, loss_weight=2.5)
    assert_close(loss(x), 2.5 * total_variation(x, p=p, reduction=reduction))
    assert_close(TVLoss(p=p, reduction=reduction)(x), total_variation(x, p=p, reduction=reduction))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_total_variation_gradcheck_p2(reduction):
    torch.manual_seed(5)
    x = torch.rand(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: total_variation(t, p=2, reduction=reduction), (x,))


def test_total_variation_gradcheck_p1_without_ties():
    torch.manual_seed(6)
    x = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    # |d| is not differentiable at d = 0: make sure no neighbouring pixels are (nearly) tied,
    # so the finite differences of gradcheck (eps 1e-6) never cross a kink.
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    assert min(dy.abs().min().item(), dx.abs().min().item()) > 1e-3
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: total_variation(t, p=1, reduction="none"), (x,))


def test_total_variation_bad_input_raises():
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        total_variation(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="p must be one of"):
        total_variation(torch.rand(1, 1, 4, 4), p=3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        total_variation(torch.rand(1, 1, 4, 4), reduction="avg")
    with pytest.raises(ValueError, match="p must be one of"):
        TVLoss(p=3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        TVLoss(reduction="avg")


# --------------------------------------------------------------------------------------------
# Gaussian blur and grayscale
# --------------------------------------------------------------------------------------------


def gaussian_kernel1d(kernel_size: int, sigma: float, dtype=torch.float64) -> torch.Tensor:
    """exp(-k^2 / (2 sigma^2)) for k = -(n//2) .. n//2, normalised to sum 1."""
    k = torch.arange(kernel_size, dtype=dtype) - kernel_size // 2
    g = torch.exp(-(k**2) / (2 * sigma**2))
    return g / g.sum()


@pytest.mark.parametrize(("kernel_size", "sigma"), [(21, 3.0), (5, 1.0), (13, 3**0.5)])
def test_gaussian_blur_keeps_constant_image(kernel_size, sigma):
    x = torch.full((2, 3, 24, 24), 0.37)
    y = gaussian_blur(x, kernel_size, sigma)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert_close(y, x, atol=1e-6, rtol=0)


def test_gaussian_blur_of_impulse_is_normalised_gaussian():
    x = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    x[0, 0, 20, 20] = 1.0
    y = gaussian_blur(x, kernel_size=21, sigma=3.0)
    g = gaussian_kernel1d(21, 3.0)
    expected = torch.zeros(41, 41, dtype=torch.float64)
    # The impulse is 20 px from every border, so the 21 x 21 kernel (radius 10) fits inside the
    # image and reflect padding never mirrors it back in.
    expected[10:31, 10:31] = torch.outer(g, g)
    assert_close(y.sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0)
    assert_close(y[0, 0], expected, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize(("kernel_size", "sigma"), [(21, 3.0), (5, 1.0)])
def test_gaussian_blur_matches_separable_convolution_in_the_interior(kernel_size, sigma):
    torch.manual_seed(7)
    x = torch.rand(2, 3, 40, 40)
    g = gaussian_kernel1d(kernel_size, sigma, dtype=torch.float32)
    c = x.shape[1]
    # Valid (unpadded) convolution: output pixel (i, j) is centred on input pixel (i+r, j+r).
    reference = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    reference = F.conv2d(reference, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    r = kernel_size // 2
    ours = gaussian_blur(x, kernel_size, sigma)
    assert reference.shape == (2, 3, 40 - 2 * r, 40 - 2 * r)
    assert_close(ours[:, :, r:-r, r:-r], reference, atol=1e-5, rtol=1e-5)


def test_gaussian_blur_default_is_kernel_21_sigma_3():
    torch.manual_seed(8)
    x = torch.rand(1, 3, 32, 32)
    assert_close(gaussian_blur(x), gaussian_blur(x, 21, 3.0))
    assert not torch.allclose(gaussian_blur(x), gaussian_blur(x, 21, 2.0))


def test_gaussian_blur_gradient_flows_to_input():
    torch.manual_seed(9)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    weights = torch.randn(2, 3, 16, 16)
    (gaussian_blur(x, 5, 1.0) * weights).sum().backward()
    assert x.grad is not None
    assert torch.count_nonzero(x.grad) > 0


@pytest.mark.parametrize(("kernel_size", "sigma"), [(21, 3.0), (5, 1.0)])
def test_gaussian_blur_module_equals_functional(kernel_size, sigma):
    torch.manual_seed(10)
    x = torch.rand(2, 3, 24, 24)
    assert_close(GaussianBlur(kernel_size, sigma)(x), gaussian_blur(x, kernel_size, sigma))


def test_gaussian_blur_module_defaults_equal_functional_defaults():
    torch.manual_seed(11)
    x = torch.rand(1, 3, 24, 24)
    assert_close(GaussianBlur()(x), gaussian_blur(x))


@pytest.mark.parametrize("kernel_size", [0, 4, 20, -3])
def test_gaussian_blur_bad_kernel_size_raises(kernel_size):
    x = torch.rand(1, 3, 24, 24)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer"):
        gaussian_blur(x, kernel_size=kernel_size)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer"):
        GaussianBlur(kernel_size=kernel_size)(x)


@pytest.mark.parametrize("sigma", [0.0, -1.0])
def test_gaussian_blur_bad_sigma_raises(sigma):
    x = torch.rand(1, 3, 24, 24)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_blur(x, sigma=sigma)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        GaussianBlur(sigma=sigma)(x)


def test_gaussian_blur_image_smaller_than_padding_raises_clearly():
    # Reflect padding mirrors kernel_size // 2 = 10 pixels: 10 px is too small, 11 px works.
    with pytest.raises(ValueError, match=r"needs H and W > 10"):
        gaussian_blur(torch.rand(1, 3, 10, 40))
    assert gaussian_blur(torch.rand(1, 3, 11, 11)).shape == (1, 3, 11, 11)


def test_gaussian_blur_bad_shape_raises():
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        gaussian_blur(torch.rand(3, 24, 24))


def test_to_grayscale_weights():
    torch.manual_seed(12)
    x = torch.rand(2, 3, 4, 5)
    y = to_grayscale(x)
    assert y.shape == (2, 1, 4, 5)
    expected = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    assert_close(y, expected)
    # Pure channels give the weights themselves.
    for channel, weight in enumerate((0.299, 0.587, 0.114)):
        pure = torch.zeros(1, 3, 2, 2)
        pure[:, channel] = 1.0
        assert_close(to_grayscale(pure), torch.full((1, 1, 2, 2), weight))


@pytest.mark.parametrize("channels", [1, 4])
def test_to_grayscale_wrong_channel_count_raises(channels):
    with pytest.raises(ValueError, match="must have 3 channels"):
        to_grayscale(torch.rand(1, channels, 4, 4))


# --------------------------------------------------------------------------------------------
# VGG-19 features and perceptual loss (no downloads: random weights saved locally)
# --------------------------------------------------------------------------------------------

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def vgg_reference(vgg19_torch_home):
    """A random torchvision VGG-19 (eval mode) and the path of its saved state dict.

    The state dict is the session's one copy (conftest's ``vgg19_torch_home``), since building
    and saving a VGG-19 (~550 MB) takes seconds on CPU.
    """
    path = vgg19_torch_home / "hub" / "checkpoints" / IMAGENET_VGG19_FILE
    ref = torchvision.models.vgg19(weights=None)
    ref.load_state_dict(torch.load(path, weights_only=True))
    return ref.eval(), path


@pytest.fixture(scope="module")
def vgg_features(vgg_reference):
    _, path = vgg_reference
    return VGG19Features(layers=("conv5_4", "relu5_4", "relu2_2"), weights=path)


def reference_features(ref: nn.Module, x: torch.Tensor, stop: int) -> torch.Tensor:
    """torchvision's ``ref.features[:stop]`` on the ImageNet-normalised input."""
    with torch.no_grad():
        return ref.features[:stop]((x - MEAN) / STD)


def test_vgg19_layer_index():
    assert VGG19_LAYER_INDEX["conv5_4"] == 34
    assert VGG19_LAYER_INDEX["relu5_4"] == 35
    assert VGG19_LAYER_INDEX["relu2_2"] == 8
    assert VGG19_LAYER_INDEX["conv1_1"] == 0
    assert VGG19_LAYER_INDEX["pool5"] == 36
    assert len(VGG19_LAYER_INDEX) == 37


def test_vgg19_layer_index_matches_torchvision_layer_types(vgg_reference):
    ref, _ = vgg_reference
    assert len(ref.features) == len(VGG19_LAYER_INDEX)
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, index in VGG19_LAYER_INDEX.items():
        assert isinstance(ref.features[index], kinds[name[:4]]), name


def test_vgg19_features_equal_torchvision(vgg_reference, vgg_features):
    ref, _ = vgg_reference
    torch.manual_seed(13)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = vgg_features(x)
    assert set(out) == {"conv5_4", "relu5_4", "relu2_2"}
    assert out["relu2_2"].shape == (1, 128, 16, 16)
    assert out["conv5_4"].shape == (1, 512, 2, 2)
    # Pre-activation conv5_4 must keep its negative entries: an in-place ReLU (torchvision's
    # default) running afterwards for relu5_4 would have clipped them.
    assert out["conv5_4"].min() < 0
    assert out["relu5_4"].max() > 0
    assert_close(out["conv5_4"], reference_features(ref, x, 35), rtol=1e-5, atol=1e-7)
    assert_close(out["relu5_4"], reference_features(ref, x, 36), rtol=1e-5, atol=1e-7)
    assert_close(out["relu2_2"], reference_features(ref, x, 9), rtol=1e-5, atol=1e-7)
    assert_close(out["relu5_4"], out["conv5_4"].clamp(min=0))


def test_vgg19_features_frozen_but_input_gets_gradient(vgg_features):
    assert all(not p.requires_grad for p in vgg_features.parameters())
    torch.manual_seed(14)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = vgg_features(x)
    sum(f.sum() for f in out.values()).backward()
    assert all(p.grad is None for p in vgg_features.parameters())
    assert x.grad is not None
    assert torch.count_nonzero(x.grad) > 0


def test_vgg19_features_stay_in_eval_mode_inside_training_parent(vgg_features):
    parent = nn.ModuleDict({"vgg": vgg_features, "head": nn.Linear(2, 2)})
    parent.train()
    assert parent.training
    assert parent["head"].training
    assert not vgg_features.training
    assert all(not m.training for m in vgg_features.modules())
    vgg_features.train(True)
    assert not vgg_features.training


def test_vgg19_features_random_weights_warn_and_keep_only_needed_layers():
    with pytest.warns(UserWarning, match="randomly initialised"):
        vgg = VGG19Features(layers=("relu2_2",), weights=None)
    assert len(vgg.features) == 9
    assert isinstance(vgg.features[-1], nn.ReLU)
    assert not vgg.features[-1].inplace
    assert vgg(torch.rand(1, 3, 8, 8))["relu2_2"].shape == (1, 128, 4, 4)


def test_vgg19_features_unknown_layer_raises():
    with pytest.raises(ValueError, match="unknown VGG-19 layer 'relu6_1'"):
        VGG19Features(layers=("relu6_1",), weights=None)


def test_vgg19_features_missing_weights_file_raises_when_the_weights_are_needed(tmp_path):
    vgg = VGG19Features(layers=("relu1_1",), weights=tmp_path / "missing.pth")  # builds
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vgg.load_weights()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vgg(torch.rand(1, 3, 8, 8))


def first_conv_weights(seed: int) -> dict[str, torch.Tensor]:
    """What ``relu1_1`` needs of a torchvision-layout VGG-19 state dict."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=generator),
        "features.0.bias": torch.randn(64, generator=generator),
    }


def test_vgg19_weights_are_not_state(tmp_path):
    torch.save(first_conv_weights(0), tmp_path / "vgg.pth")
    vgg = VGG19Features(layers=("relu1_1",), weights=str(tmp_path / "vgg.pth"))
    vgg.load_weights()
    assert vgg.state_dict() == {}
    loss = PerceptualLoss("relu1_1", weights=str(tmp_path / "vgg.pth"))
    assert not any("features" in key for key in loss.state_dict())
    # A state dict that holds VGG weights (an older checkpoint) loads, strictly, and leaves
    # the configured weights in place.
    vgg.load_state_dict({f"features.{k}": v for k, v in vgg.features.state_dict().items()} | {
        "features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)
    })  # fmt: skip
    assert_close(vgg.features[0].weight, first_conv_weights(0)["features.0.weight"])


def test_vgg19_weights_of_another_layout_are_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision-layout VGG-19 state dict"):
        VGG19Features(layers=("relu1_1",), weights=str(tmp_path / "other.pth")).load_weights()


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME and a downloader that records calls and fails like a missing network."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert Path(torch.hub.get_dir()) == home / "hub"
    calls = []

    def no_network(*args, **kwargs):
        calls.append((args, kwargs))
        raise urllib.error.URLError("no network")

    # torchvision's WeightsEnum.get_state_dict calls the name imported into _api.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return home, calls


def test_vgg19_features_imagenet_without_cache_or_network_raises_clearly(offline_torch_home):
    home, calls = offline_torch_home
    vgg = VGG19Features(layers=("relu1_1",), weights="imagenet")
    assert calls == []  # building reads nothing
    with pytest.raises(RuntimeError) as info:
        vgg.load_weights()
    message = str(info.value)
    assert IMAGENET_VGG19_FILE in message
    assert str(home / "hub" / "checkpoints") in message
    assert "no network" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert len(calls) == 1  # the download was attempted through the patched function


def test_vgg19_features_imagenet_reads_hub_cache_without_network(offline_torch_home, vgg_reference):
    home, calls = offline_torch_home
    ref, path = vgg_reference
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # A link to the saved random state dict rather than a second 550 MB copy.
    (checkpoints / IMAGENET_VGG19_FILE).symlink_to(path)
    vgg = VGG19Features(layers=("relu2_2",), weights="imagenet")
    assert calls == []
    torch.manual_seed(15)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        out = vgg(x)["relu2_2"]
    assert_close(out, reference_features(ref, x, 9), rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def weighted_perceptual(vgg_reference):
    _, path = vgg_reference
    return PerceptualLoss(
        layer=["relu1_2", "relu2_2"], weights=path, layer_weights=[1.0, 0.5], loss_weight=2.5
    )


def test_perceptual_loss_keeps_layers_up_to_the_deepest(weighted_perceptual):
    assert len(weighted_perceptual.vgg.features) == VGG19_LAYER_INDEX["relu2_2"] + 1 == 9


def test_perceptual_loss_zero_for_identical_images(weighted_perceptual):
    torch.manual_seed(16)
    x = torch.rand(2, 3, 16, 16)
    loss = weighted_perceptual(x, x.clone())
    assert loss.shape == ()
    assert_close(loss, torch.tensor(0.0))


def test_perceptual_loss_is_weighted_sum_of_layer_mse(
    vgg_reference, vgg_features, weighted_perceptual
):
    ref, _ = vgg_reference
    torch.manual_seed(17)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        # relu2_2 through VGG19Features, relu1_2 (not among its layers) through torchvision.
        mse_2_2 = F.mse_loss(vgg_features(x)["relu2_2"], vgg_features(y)["relu2_2"])
    mse_1_2 = F.mse_loss(reference_features(ref, x, 4), reference_features(ref, y, 4))
    assert mse_1_2 > 0 and mse_2_2 > 0
    # loss_weight 2.5 times (layer weight 1 * relu1_2 + layer weight 0.5 * relu2_2).
    assert_close(weighted_perceptual(x, y), 2.5 * (1.0 * mse_1_2 + 0.5 * mse_2_2))


def test_perceptual_loss_gradient_to_input_not_target(weighted_perceptual):
    torch.manual_seed(18)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    y = torch.rand(1, 3, 16, 16, requires_grad=True)
    weighted_perceptual(x, y).backward()
    assert y.grad is None
    assert x.grad is not None
    assert torch.count_nonzero(x.grad) > 0
    assert all(p.grad is None for p in weighted_perceptual.parameters())


def test_perceptual_loss_mismatched_shapes_raise(weighted_perceptual):
    with pytest.raises(ValueError, match="same shape"):
        weighted_perceptual(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 8))


def test_perceptual_loss_l1_criterion(vgg_reference):
    ref, path = vgg_reference
    loss = PerceptualLoss(layer="relu1_2", weights=path, criterion="l1")
    torch.manual_seed(20)
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    difference = reference_features(ref, x, 4) - reference_features(ref, y, 4)
    l1, mse = difference.abs().mean(), difference.square().mean()
    assert not torch.allclose(l1, mse)
    assert_close(loss(x, y), l1)


def test_perceptual_loss_bad_arguments_raise():
    with pytest.raises(ValueError, match="criterion must be one of"):
        PerceptualLoss(criterion="l2", weights=None)
    with pytest.raises(ValueError, match="one weight per layer"):
        PerceptualLoss(layer=["relu1_2", "relu2_2"], weights=None, layer_weights=[1.0])


# --------------------------------------------------------------------------------------------
# Adversarial losses
# --------------------------------------------------------------------------------------------

LOGITS = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0])


def softplus_by_hand(z: torch.Tensor) -> torch.Tensor:
    # log(1 + exp(z)) computed naively in float64; fine for the moderate logits above.
    return torch.log1p(torch.exp(z.double())).float()


def test_vanilla_real_on_zero_logits_is_log_2():
    # sigmoid(0) = 1/2, so -log(1/2) = log 2 for both labels.
    assert_close(adversarial_loss(torch.zeros(4), target_is_real=True), torch.tensor(math.log(2)))
    assert_close(adversarial_loss(torch.zeros(4), target_is_real=False), torch.tensor(math.log(2)))


def test_vanilla_is_binary_cross_entropy_on_logits():
    # real: -log sigmoid(l) = log(1 + exp(-l)); fake: -log(1 - sigmoid(l)) = log(1 + exp(l)).
    real = adversarial_loss(LOGITS, target_is_real=True, kind="vanilla")
    fake = adversarial_loss(LOGITS, target_is_real=False, kind="vanilla")
    assert_close(real, softplus_by_hand(-LOGITS).mean())
    assert_close(fake, softplus_by_hand(LOGITS).mean())
    # Same as torch's BCE with logits (an independent implementation).
    assert_close(real, F.binary_cross_entropy_with_logits(LOGITS, torch.ones(5)))
    assert_close(fake, F.binary_cross_entropy_with_logits(LOGITS, torch.zeros(5)))


@pytest.mark.parametrize(
    ("logit", "target_is_real", "expected"),
    [
        # log(1 + exp(-100)) ~ 4e-44 ~ 0; log(1 + exp(100)) = 100 + log(1 + exp(-100)) ~ 100.
        (100.0, True, 0.0),
        (-100.0, True, 100.0),
        (100.0, False, 100.0),
        (-100.0, False, 0.0),
    ],
)
def test_vanilla_is_numerically_stable(logit, target_is_real, expected):
    logits = torch.tensor([logit], requires_grad=True)
    loss = adversarial_loss(logits, target_is_real, kind="vanilla")
    assert torch.isfinite(loss)
    assert_close(loss.detach(), torch.tensor(expected), atol=1e-6, rtol=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_lsgan_values():
    # real: (l - 1)^2, fake: l^2, averaged.
    assert_close(adversarial_loss(LOGITS, True, kind="lsgan"), ((LOGITS - 1) ** 2).mean())
    assert_close(adversarial_loss(LOGITS, False, kind="lsgan"), (LOGITS**2).mean())
    # l = 3: real (3-1)^2 = 4, fake 9.
    assert adversarial_loss(torch.tensor([3.0]), True, kind="lsgan").item() == 4.0
    assert adversarial_loss(torch.tensor([3.0]), False, kind="lsgan").item() == 9.0


def test_hinge_values():
    # LOGITS = [-2, -0.5, 0, 0.7, 3]
    # discriminator real relu(1 - l) = [3, 1.5, 1, 0.3, 0]  -> mean 5.8 / 5 = 1.16
    # discriminator fake relu(1 + l) = [0, 0.5, 1, 1.7, 4]  -> mean 7.2 / 5 = 1.44
    # generator -l                   = [2, 0.5, 0, -0.7, -3] -> mean -1.2 / 5 = -0.24
    assert_close(adversarial_loss(LOGITS, True, kind="hinge"), torch.tensor(1.16))
    assert_close(adversarial_loss(LOGITS, False, kind="hinge"), torch.tensor(1.44))
    assert_close(
        adversarial_loss(LOGITS, True, kind="hinge", for_discriminator=False), torch.tensor(-0.24)
    )


@pytest.mark.parametrize("kind", ["vanilla", "lsgan"])
def test_for_discriminator_only_matters_for_hinge(kind):
    for real in (True, False):
        assert_close(
            adversarial_loss(LOGITS, real, kind, for_discriminator=False),
            adversarial_loss(LOGITS, real, kind, for_discriminator=True),
        )


def test_hinge_generator_with_fake_target_raises():
    with pytest.raises(ValueError, match="target_is_real=True only"):
        adversarial_loss(LOGITS, target_is_real=False, kind="hinge", for_discriminator=False)


def test_bad_adversarial_kind_raises():
    with pytest.raises(ValueError, match="kind must be one of"):
        adversarial_loss(LOGITS, True, kind="wgan")
    with pytest.raises(ValueError, match="kind must be one of"):
        AdversarialLoss(kind="wgan")
    with pytest.raises(ValueError, match="kind must be one of"):
        ColorLoss(kind="wgan")


def hand_generator_loss(kind: str, logits: torch.Tensor) -> torch.Tensor:
    if kind == "vanilla":
        return softplus_by_hand(-logits).mean()
    if kind == "lsgan":
        return ((logits - 1) ** 2).mean()
    return -logits.mean()


def hand_discriminator_side(kind: str, logits: torch.Tensor, real: bool) -> torch.Tensor:
    if kind == "vanilla":
        return softplus_by_hand(-logits if real else logits).mean()
    if kind == "lsgan":
        return ((logits - 1) ** 2).mean() if real else (logits**2).mean()
    return F.relu(1 - logits).mean() if real else F.relu(1 + logits).mean()


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "hinge"])
def test_adversarial_loss_module_weights_generator_side_only(kind):
    real_logits = torch.tensor([1.5, -0.3, 2.0])
    fake_logits = torch.tensor([-1.0, 0.4, 0.0, -2.5])
    module = AdversarialLoss(kind=kind, loss_weight=0.25)
    assert_close(module.generator_loss(fake_logits), 0.25 * hand_generator_loss(kind, fake_logits))
    expected_d = 0.5 * (
        hand_discriminator_side(kind, real_logits, real=True)
        + hand_discriminator_side(kind, fake_logits, real=False)
    )
    assert_close(module.discriminator_loss(real_logits, fake_logits), expected_d)
    assert_close(
        AdversarialLoss(kind=kind, loss_weight=7.0).discriminator_loss(real_logits, fake_logits),
        expected_d,
    )
    # forward: the discriminator side is unweighted, the generator side weighted.
    assert_close(module(fake_logits, True), hand_discriminator_side(kind, fake_logits, real=True))
    assert_close(
        module(fake_logits, True, for_discriminator=False),
        0.25 * hand_generator_loss(kind, fake_logits),
    )


def test_discriminator_accuracy_known_logits():
    # real > 0 correct: 1.0, 0.5 (2 of 3; 0.0 is not > 0); fake < 0 correct: -3.0 (1 of 2).
    acc = discriminator_accuracy(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([-3.0, 2.0]))
    assert_close(acc, torch.tensor(3 / 5))
    assert discriminator_accuracy(torch.ones(4), -torch.ones(2)).item() == 1.0
    assert discriminator_accuracy(-torch.ones(4), torch.ones(2)).item() == 0.0
    # Fake 0.0 is not < 0 either.
    assert discriminator_accuracy(torch.ones(1), torch.zeros(1)).item() == 0.5
    # LSGAN's boundary: real 0.7 and fake 0.3 are right at 0.5, half wrong at 0.
    real, fake = torch.tensor([0.7]), torch.tensor([0.3])
    assert discriminator_accuracy(real, fake, threshold=0.5).item() == 1.0
    assert discriminator_accuracy(real, fake).item() == 0.5


# --------------------------------------------------------------------------------------------
# WESPE color and texture losses
# --------------------------------------------------------------------------------------------


class RecordingDiscriminator(nn.Module):
    """Records what it sees and returns ``scale * mean`` per image as the logit."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        return self.scale * x.mean(dim=(1, 2, 3))


def color_view(x: torch.Tensor) -> torch.Tensor:
    return gaussian_blur(x, 5, 1.0)


VIEW_LOSSES = [
    pytest.param(lambda **kw: ColorLoss(kernel_size=5, sigma=1.0, **kw), color_view, 3, id="color"),
    pytest.param(lambda **kw: TextureLoss(**kw), to_grayscale, 1, id="texture"),
]


@pytest.mark.parametrize(("make_loss", "view", "channels"), VIEW_LOSSES)
def test_view_loss_generator_side(make_loss, view, channels):
    torch.manual_seed(21)
    fake = torch.rand(2, 3, 16, 16, requires_grad=True)
    discriminator = RecordingDiscriminator()
    loss = make_loss(loss_weight=5e-3).generator_loss(discriminator, fake)
    (seen,) = discriminator.inputs
    assert seen.shape == (2, channels, 16, 16)
    assert_close(seen, view(fake))
    # vanilla generator loss: log(1 + exp(-logit)), weighted.
    assert_close(loss, 5e-3 * softplus_by_hand(-seen.mean(dim=(1, 2, 3))).mean())
    loss.backward()
    assert fake.grad is not None
    assert torch.count_nonzero(fake.grad) > 0


@pytest.mark.parametrize(("make_loss", "view", "channels"), VIEW_LOSSES)
def test_view_loss_discriminator_side(make_loss, view, channels):
    torch.manual_seed(22)
    real = torch.rand(2, 3, 16, 16)
    fake = torch.rand(2, 3, 16, 16, requires_grad=True)
    discriminator = RecordingDiscriminator()
    loss, accuracy = make_loss(loss_weight=5e-3).discriminator_loss(discriminator, real, fake)
    (seen,) = discriminator.inputs
    assert seen.shape == (4, channels, 16, 16)
    assert_close(seen, torch.cat([view(real), view(fake)]))
    assert not seen.requires_grad  # the fake half was detached
    logits = seen.mean(dim=(1, 2, 3))
    # unweighted: 0.5 * (log(1 + exp(-real)) + log(1 + exp(fake)))
    expected = 0.5 * (softplus_by_hand(-logits[:2]).mean() + softplus_by_hand(logits[2:]).mean())
    assert_close(loss, expected)
    # Images in [0, 1] give positive mean logits: reals are right, fakes wrong -> 2 / 4.
    assert accuracy.shape == ()
    assert 0.0 <= accuracy.item() <= 1.0
    assert accuracy.item() == 0.5
    loss.backward()
    assert fake.grad is None
    assert discriminator.scale.grad is not None


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "hinge"])
def test_texture_loss_kinds(kind):
    torch.manual_seed(23)
    real, fake = torch.rand(3, 3, 8, 8), torch.rand(2, 3, 8, 8)
    discriminator = RecordingDiscriminator()
    loss, accuracy = TextureLoss(kind=kind).discriminator_loss(discriminator, real, fake)
    logits = discriminator.inputs[0].mean(dim=(1, 2, 3))
    assert logits.shape == (5,)  # unequal batch sizes split correctly
    expected = 0.5 * (
        hand_discriminator_side(kind, logits[:3], real=True)
        + hand_discriminator_side(kind, logits[3:], real=False)
    )
    assert_close(loss, expected)
    # The accuracy's decision boundary is the loss's: 0.5 between LSGAN's targets 0 and 1.
    threshold = 0.5 if kind == "lsgan" else 0.0
    correct = (logits[:3] > threshold).sum() + (logits[3:] < threshold).sum()
    assert_close(accuracy, correct.float() / 5)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ColorLoss(kernel_size=4),
        lambda: ColorLoss(sigma=0.0),
        lambda: GaussianBlur(kernel_size=0),
    ],
)
def test_blur_arguments_are_checked_when_built(build):
    with pytest.raises(ValueError, match="kernel_size|sigma"):
        build()


def test_a_crafted_vgg_weights_file_cannot_run_code(tmp_path, monkeypatch):
    import pickle

    from test_resume import WritesAFile

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "code_ran"
    torch.save({"features.0.weight": WritesAFile(marker)}, tmp_path / "vgg.pth")
    vgg = VGG19Features(layers=("relu1_1",), weights=str(tmp_path / "vgg.pth"))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        vgg.load_weights()
    assert not marker.exists()


def test_the_loss_library_and_the_networks_import_without_lightning():
    # Other projects borrow the losses: importing them must not pull in the training stack.
    # In a fresh interpreter, since this one has imported everything already.
    import subprocess
    import sys

    heavy = ("pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics", "wandb")
    heavy += ("jsonargparse", "matplotlib", "wespe.module", "wespe.cli", "wespe.data.datamodule")
    code = (
        "import sys, wespe.losses, wespe.networks, wespe.inference, wespe.enhance\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_view_losses_are_built_on_an_adversarial_loss_not_substituted_for_one():
    # Their methods take (discriminator, images), not logits: they must not pose as one.
    from wespe.losses import ColorLoss, TextureLoss

    for loss in (
        ColorLoss(kind="lsgan", loss_weight=0.5),
        TextureLoss(kind="lsgan", loss_weight=0.5),
    ):
        assert not isinstance(loss, AdversarialLoss)
        assert isinstance(loss.adversarial, AdversarialLoss)
        assert (loss.kind, loss.loss_weight) == ("lsgan", 0.5)
        discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
        fake = torch.rand(2, 3, 24, 24)
        expected = loss.adversarial.generator_loss(discriminator(loss.view(fake)))
        torch.testing.assert_close(loss.generator_loss(discriminator, fake), expected)
        torch.testing.assert_close(loss(discriminator, fake), expected)


# --------------------------------------------------------------------------- texture left free


def test_low_pass_loss_compares_coarse_content_and_leaves_fine_texture_free():
    from wespe.losses import LowPassLoss, gaussian_blur

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loss = LowPassLoss(kernel_size=9, sigma=2.0, loss_weight=3.0)
    assert loss(x, x) == 0
    blurred = gaussian_blur(x, 9, 2.0)
    other = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = 3.0 * torch.nn.functional.mse_loss(blurred, gaussian_blur(other, 9, 2.0))
    torch.testing.assert_close(loss(x, other), expected)
    # A pixel checkerboard (the finest texture) costs next to nothing; a brightness offset
    # costs what it costs in MSE.
    checker = 0.1 * (2 * (torch.arange(32).view(-1, 1) + torch.arange(32)).remainder(2).float() - 1)
    plain = LowPassLoss(kernel_size=9, sigma=2.0)
    assert plain(x + checker, x) < 0.01 * torch.nn.functional.mse_loss(x + checker, x)
    torch.testing.assert_close(plain(x + 0.1, x), torch.tensor(0.01), atol=1e-6, rtol=0)
    # Any loss on the blurred images, e.g. L1.
    assert LowPassLoss(torch.nn.L1Loss(), 9, 2.0)(x + 0.1, x) == pytest.approx(0.1, abs=1e-5)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer"):
        LowPassLoss(kernel_size=4)


def test_texture_loss_high_pass_view_sees_detail_not_brightness():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5
    high_pass = TextureLoss(high_pass_sigma=1.5)
    # A brightness change moves the paper's gray view, not the high-pass one.
    assert (TextureLoss().view(x + 0.2) - TextureLoss().view(x)).abs().mean() > 0.19
    torch.testing.assert_close(high_pass.view(x + 0.2), high_pass.view(x), atol=1e-5, rtol=0)
    # Noise moves it.
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert (high_pass.view(x + noise) - high_pass.view(x)).std() > 0.02
    # No new weights: state dicts of the paper's form load into the high-pass one.
    assert TextureLoss().state_dict().keys() == high_pass.state_dict().keys()
