"""Inference without the training module: the generator out of a checkpoint, and tiled
enhancement that equals the untiled network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wespe.inference import (
    CheckpointError,
    TiledEnhancer,
    _spans,
    load_generator,
    receptive_radius,
)
from wespe.networks import Generator

# Tiled against untiled, on [0, 1]: float32 rounding only (measured about 3e-7).
TOLERANCE = 1e-4


def _network(output: str = "dped", seed: int = 0, channels: int = 6, blocks: int = 2) -> Generator:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = Generator(channels=channels, num_blocks=blocks, output=output, init="default")
    return network.eval()


def _photo(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A photo-like image: smooth gradients plus texture, so statistics vary across it."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    base = torch.stack(torch.broadcast_tensors(ys * xs, (1 - ys) * 0.8, xs**2))
    return (0.7 * base + 0.3 * torch.rand(3, height, width, generator=generator)).clamp(0, 1)


def _untiled(network: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return network(image[None])[0].clamp(0, 1)


@pytest.mark.parametrize("output", ["dped", "residual"])
@pytest.mark.parametrize(("tile", "overlap"), [(32, 0), (32, 8), (45, 16)])
def test_tiled_equals_untiled_on_an_image_several_tiles_wide(output, tile, overlap):
    network = _network(output)
    image = _photo(83, 131)  # odd sizes, 3 x 4 tiles and more
    tiled = TiledEnhancer(network, tile_size=tile, tile_overlap=overlap)
    difference = (tiled(image) - _untiled(network, image)).abs().max().item()
    assert difference <= TOLERANCE


def test_the_callers_network_keeps_its_mode_and_layers():
    network = _network().train()
    TiledEnhancer(network, tile_size=32, tile_overlap=8)(_photo(40, 40))
    assert network.training
    assert any(isinstance(m, nn.InstanceNorm2d) for m in network.modules())


def test_per_tile_statistics_disagree_with_the_untiled_network():
    # What naive tiling does: the reason whole-photo statistics are needed.
    network = _network()
    image = _photo(83, 131)
    naive = TiledEnhancer(network, tile_size=32, tile_overlap=8, statistics="tile")(image)
    assert (naive - _untiled(network, image)).abs().max().item() > 100 * TOLERANCE


def test_too_little_context_is_visible_and_the_default_pad_is_the_receptive_radius():
    network = _network()
    image = _photo(70, 90)
    untiled = _untiled(network, image)
    short = TiledEnhancer(network, tile_size=24, tile_overlap=0, tile_pad=2)(image)
    assert (short - untiled).abs().max().item() > 100 * TOLERANCE
    assert TiledEnhancer(network).tile_pad == receptive_radius(network) == 4 + 2 * 2 + 2 + 4


def test_uint8_and_uint16_photos_come_back_in_their_own_type():
    network = _network()
    image = _photo(50, 61)
    enhancer = TiledEnhancer(network, tile_size=24, tile_overlap=6)
    for dtype, scale in ((torch.uint8, 255), (torch.uint16, 65535)):
        quantised = (image * scale).round().to(torch.int32).to(dtype)
        result = enhancer(quantised)
        assert result.dtype == dtype and result.shape == image.shape
        reference = _untiled(network, quantised.to(torch.float32) / scale)
        assert (result.to(torch.float32) - (reference * scale).round()).abs().max() <= 1


def test_progress_counts_statistics_passes_and_tiles():
    network = _network(blocks=1)  # two instance norms
    calls = []
    TiledEnhancer(network, tile_size=30, tile_overlap=5)(
        _photo(50, 60), progress=lambda done, total: calls.append((done, total))
    )
    # statistics: 2 x 2 tiles of 30 (partitioning 50 x 60) per norm, 2 norms; output: 2 x 3
    # overlapping tiles of at most 30.
    assert calls == [(done, 8 + 6) for done in range(1, 15)]


def test_bf16_on_cpu_stays_close_to_float32():
    network = _network()
    image = _photo(40, 52)
    result = TiledEnhancer(network, tile_size=24, tile_overlap=4, precision="bf16")(image)
    assert (result - _untiled(network, image)).abs().mean().item() < 0.02


def test_blending_weights_sum_to_one_at_every_pixel():
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        length = int(torch.randint(1, 300, (1,), generator=generator))
        tile = int(torch.randint(0, 120, (1,), generator=generator))
        overlap = int(torch.randint(0, tile // 2 + 1, (1,), generator=generator))
        spans = _spans(length, tile, overlap, pad=3)
        total = torch.zeros(length)
        for span in spans:
            assert span.stop - span.start <= (tile if 0 < tile < length else length)
            total[span.start : span.stop] += span.weights
        torch.testing.assert_close(total, torch.ones(length))


def test_networks_tiling_cannot_reproduce_are_refused():
    strided = nn.Sequential(nn.Conv2d(3, 3, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="stride"):
        TiledEnhancer(strided)
    pooled = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.GroupNorm(1, 3))
    with pytest.raises(ValueError, match="GroupNorm"):
        TiledEnhancer(pooled)
    with pytest.raises(ValueError, match="half"):
        TiledEnhancer(_network(), tile_size=32, tile_overlap=17)
    with pytest.raises(ValueError, match="precision"):
        TiledEnhancer(_network(), precision="fp8")


# ---------------------------------------------------------------------------- checkpoints


def test_load_generator_takes_the_moving_average_and_needs_nothing_else(checkpoint):
    stored = torch.load(checkpoint, weights_only=True)["state_dict"]
    ema = load_generator(checkpoint)
    plain = load_generator(checkpoint, use_ema=False)
    assert isinstance(ema, Generator) and not ema.training
    assert ema.head[0].weight.shape[0] == 4  # built from the recorded configuration
    assert torch.equal(ema.head[0].weight, stored["generator_ema.module.head.0.weight"])
    assert torch.equal(plain.head[0].weight, stored["generator.head.0.weight"])
    assert not torch.equal(ema.head[0].weight, plain.head[0].weight)
    assert all(not p.requires_grad for p in ema.parameters())


def test_load_generator_refuses_other_files_with_a_message_that_says_what_to_do(
    tmp_path, checkpoint
):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"backbone.weight": torch.zeros(2)}}, other)
    with pytest.raises(CheckpointError, match="another model"):
        load_generator(other)
    weights_only = tmp_path / "weights.pt"
    torch.save({"head.0.weight": torch.zeros(2)}, weights_only)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_generator(weights_only)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_generator(text)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "missing.ckpt")
    # A different network than the one recorded: the shapes do not fit.
    with pytest.raises(CheckpointError, match="do not fit"):
        load_generator(checkpoint, generator=Generator(channels=8, num_blocks=1))


def test_a_checkpoint_names_only_network_classes(tmp_path, checkpoint):
    stored = torch.load(checkpoint, weights_only=True)
    for class_path, message in (("os.system", "not a torch.nn.Module"), ("nowhere.Net", "cannot")):
        stored["hyper_parameters"]["generator"] = {
            "class_path": class_path,
            "init_args": {"command": "false"},
        }
        forged = tmp_path / "forged.ckpt"
        torch.save(stored, forged)
        with pytest.raises(CheckpointError, match=message):
            load_generator(forged)
    # Built in Python with a network object: nothing recorded, so the caller passes it.
    del stored["hyper_parameters"]["generator"]
    stored["hyper_parameters"]["generator"] = "Generator(...)"
    torch.save(stored, forged)
    with pytest.raises(CheckpointError, match="generator=network"):
        load_generator(forged)
    network = Generator(channels=4, num_blocks=1, output="residual")
    assert load_generator(forged, generator=network) is network
