"""The ``wespe`` command end to end: configs, training length, checkpoints, validate/test."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import CONFIGS, tiny_overrides
from jsonargparse import ArgumentParser
from PIL import Image

from wespe.cli import cli_main
from wespe.data import FolderDataModule
from wespe.module import WESPE


def run_dir_of(cli) -> Path:
    return Path(cli.trainer.log_dir)


@pytest.mark.slow
def test_fit_writes_run_folder_and_can_be_validated_tested_and_predicted(
    tmp_path, quickstart_args, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # relative paths in the config (predictions/) land here
    cli = cli_main(["fit", *quickstart_args])
    trainer = cli.trainer
    run = run_dir_of(cli)
    assert run.parent.parent == tmp_path  # <save_dir>/quickstart/version_0
    # Three iterations, each a generator and a discriminator optimizer step.
    assert trainer.global_step == 6 and cli.model.iteration == 3

    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k for row in rows for k, v in row.items() if v}
    for key in (
        "train/content",
        "train/tv",
        "train/color_g",
        "train/texture_g",
        "train/color_d",
        "train/texture_d",
        "train/color_d_acc",
        "train/texture_d_acc",
        "val/psnr",
        "val/ssim",
        "val/psnr_input",
        "val/entropy",
        "val/jpeg_bpp",
        "val/ciede2000",
        "val/contrast_ratio",
        "val/colorfulness_ratio",
    ):
        assert key in logged, key
    for row in rows:
        for key in ("train/content", "train/generator", "train/color_d"):
            if row.get(key):
                assert math.isfinite(float(row[key]))

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["max_iterations"] == 3 and config["trainer"]["max_steps"] == 6
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    samples = sorted((run / "samples").glob("val_iter*.png"))
    assert samples, "no sample grid written"
    # The config's SampleGrids: four 192-px panels and padding.
    assert Image.open(samples[-1]).size[0] == 4 * 192 + 5 * 2

    # The checkpoint rebuilds the model from its saved configuration, without the CLI.
    restored = WESPE.load_from_checkpoint(last, map_location="cpu")
    for name, value in cli.model.generator.state_dict().items():
        assert torch.equal(restored.generator.state_dict()[name], value)

    # The final weights' own figures, to compare the evaluation from the checkpoint with:
    # `wespe validate` reports the validation photos, `wespe test` the test photos.
    (final_val,) = trainer.validate(cli.model, cli.datamodule, verbose=False)
    (final_test,) = trainer.test(cli.model, cli.datamodule, verbose=False)
    for subcommand, stage, final in (("validate", "val", final_val), ("test", "test", final_test)):
        evaluated = cli_main([subcommand, "-c", str(run / "config.yaml"), f"--ckpt_path={last}"])
        metrics = evaluated.trainer.callback_metrics
        for name in ("psnr", "ssim", "ciede2000", "contrast_ratio", "colorfulness_ratio"):
            assert math.isfinite(float(metrics[f"{stage}/{name}"])), name
            assert float(metrics[f"{stage}/{name}"]) == pytest.approx(
                final[f"{stage}/{name}"], abs=1e-4
            ), name
    assert final_val["val/psnr_input"] != pytest.approx(final_test["test/psnr_input"], abs=1e-2)

    # Without predict_dir, `wespe predict` enhances the degraded test photos.
    cli_main(["predict", "-c", str(run / "config.yaml"), f"--ckpt_path={last}"])
    # Beside the logger's runs: <save_dir>/<name>/predictions.
    written = sorted((tmp_path / "quickstart" / "predictions").glob("*.png"))
    assert [p.stem for p in written] == sorted(cli.datamodule.test_photos)
    enhanced = torchvision.io.read_image(str(written[0]))
    source = cli.datamodule.test_set[cli.datamodule.test_photos.index(written[0].stem)]["source"]
    assert enhanced.shape == source.shape  # full test image (eval_crop applied), not a patch

    # Your own photos: every image below predict_dir, full size, the folder layout kept.
    photos = tmp_path / "my_photos"
    (photos / "trip").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    inputs = {"a": (37, 52), "trip/b": (45, 31)}
    for name, (height, width) in inputs.items():
        array = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(array.numpy()).save(photos / f"{name}.png")
    output = tmp_path / "enhanced"
    predicted = cli_main(
        [
            "predict", "-c", str(run / "config.yaml"), f"--ckpt_path={last}",
            f"--data.init_args.predict_dir={photos}",
            "--trainer.callbacks=wespe.callbacks.EnhancedImageWriter",
            f"--trainer.callbacks.output_dir={output}",
            "--trainer.callbacks.tile_size=24",  # several tiles per photo
            "--trainer.callbacks.tile_overlap=6",
        ]
    )  # fmt: skip
    # Written as each batch ended; none kept in memory.
    assert predicted.trainer.predict_loop.predictions == []
    for name in inputs:
        source = torchvision.io.read_image(str(photos / f"{name}.png")).float()[None] / 255
        expected = (restored.enhance(source)[0] * 255).round()
        written = torchvision.io.read_image(str(output / f"{name}.png")).float()
        assert written.shape == expected.shape, name
        assert (written - expected).abs().max() <= 1, name  # save_image rounds to 8 bits


def test_max_iterations_conflicting_with_max_steps_is_refused(quickstart_args):
    with pytest.raises(ValueError, match="set only one"):
        cli_main([*quickstart_args, "--trainer.max_steps=5"], run=False)


def test_max_iterations_sets_max_steps(quickstart_args):
    cli = cli_main([*quickstart_args, "--max_iterations=7"], run=False)
    assert cli.trainer.max_steps == 7 * WESPE.OPTIMIZER_STEPS_PER_ITERATION


def test_print_config_reproduces_itself(tmp_path, quickstart_args, capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", *quickstart_args, "--print_config"])
    printed = capsys.readouterr().out
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    with pytest.raises(SystemExit):
        cli_main(["fit", "-c", str(saved), "--print_config"])
    assert capsys.readouterr().out == printed
    config = yaml.safe_load(printed)
    assert config["model"]["init_args"]["generator"]["init_args"]["channels"] == 4


def write_dped_tree(root: Path, phone: str) -> None:
    generator = torch.Generator().manual_seed(0)
    for folder, count in (("training_data", 4), ("test_data/patches", 2)):
        for camera in (phone, "canon"):
            target = root / phone / folder / camera
            target.mkdir(parents=True)
            for i in range(count):
                array = torch.randint(0, 256, (100, 100, 3), generator=generator, dtype=torch.uint8)
                Image.fromarray(array.numpy()).save(target / f"{i}.jpg")


def _is_piece(config: Path) -> bool:
    """A config that only changes a full one (``configs/benchmark.yaml``, ``paper.yaml``,
    ``dped/<phone>.yaml``): it names no data class."""
    return "class_path" not in (yaml.safe_load(config.read_text()).get("data") or {})


def _base_of(piece: Path) -> Path:
    """The full config a piece goes after, as the README uses it."""
    return CONFIGS / "dped.yaml" if piece.parent.name == "dped" else CONFIGS / "quickstart.yaml"


#: Every full config alone, and every piece in configs/ and configs/dped/ on top of its full
#: config, as the README uses them (configs/logger/ and configs/trainer/ pieces have tests of
#: their own).
CONFIG_COMBINATIONS = [
    (config,) for config in sorted(CONFIGS.glob("*.yaml")) if not _is_piece(config)
] + [
    (_base_of(piece), piece)
    for piece in sorted([*CONFIGS.glob("*.yaml"), *CONFIGS.glob("dped/*.yaml")])
    if _is_piece(piece)
]


@pytest.mark.parametrize(
    "configs", CONFIG_COMBINATIONS, ids=lambda configs: "+".join(c.name for c in configs)
)
def test_every_config_builds(configs, tmp_path, monkeypatch, vgg19_torch_home):
    """Each YAML config parses and instantiates its model, data and trainer.

    The DPED configs get a DPED-shaped folder tree and a VGG-19 state dict written here, in the
    places the configs' documentation tells users to put the real ones.
    """
    monkeypatch.setenv("TORCH_HOME", str(vgg19_torch_home))
    args = [arg for config in configs for arg in ("-c", str(config))]
    args += [
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    sources = [yaml.safe_load(config.read_text()) for config in configs]
    data_class = sources[0]["data"]["class_path"]
    if data_class.endswith("DPEDDataModule"):
        phones = [((s.get("data") or {}).get("init_args") or {}).get("phone") for s in sources]
        phone = next((p for p in reversed(phones) if p), "iphone")  # the last one given wins
        write_dped_tree(tmp_path / "dped", phone)
        args.append(f"--data.init_args.root={tmp_path / 'dped'}")
    cli = cli_main(args, run=False)
    if data_class.endswith("DPEDDataModule"):
        assert cli.datamodule.phone == phone
        # The run is named once, by the logger; the phone's piece names it after the phone.
        loggers = [((s.get("trainer") or {}).get("logger") or {}) for s in sources]
        names = [logger["init_args"]["name"] for logger in loggers if logger]
        assert cli.trainer.logger.name == names[-1]
    cli.datamodule.setup("fit")
    batch = next(iter(cli.datamodule.train_dataloader()))
    patch = cli.datamodule.patch_size
    assert batch["source"].shape[-2:] == (patch, patch)
    iterations = [source["max_iterations"] for source in sources if "max_iterations" in source]
    if iterations and iterations[-1] is None:  # unset by a piece (trained for max_time)
        assert cli.trainer.max_steps == -1 and cli.config["trainer"]["max_time"] is not None
    elif iterations:  # the last config that sets it wins
        steps_per_iteration = type(cli.model).OPTIMIZER_STEPS_PER_ITERATION
        assert cli.trainer.max_steps == steps_per_iteration * iterations[-1]
    with torch.no_grad():
        assert cli.model.generator(batch["source"][:1]).shape == batch["source"][:1].shape


def test_the_paper_piece_reverts_every_departure_of_the_quickstart(tmp_path):
    def build(*configs: str):
        args = [arg for config in configs for arg in ("-c", str(CONFIGS / config))]
        return cli_main([*args, f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)

    quickstart = build("quickstart.yaml").model
    paper = build("quickstart.yaml", "paper.yaml").model
    assert quickstart.generator.output == "residual" and paper.generator.output == "dped"
    assert paper.inverse_generator.output == "dped"
    for name in ("texture_discriminator", "color_discriminator"):
        assert (
            getattr(quickstart, name).input_statistics and not getattr(paper, name).input_statistics
        )
        norms = {type(m).__name__ for m in getattr(paper, name).modules()}
        assert "InstanceNorm2d" in norms
    assert paper.tv_loss.loss_weight == 10.0
    for loss in (paper.color_loss, paper.texture_loss):
        assert loss.kind == "vanilla" and loss.loss_weight == 5e-3
    assert paper.generator_ema is None and quickstart.generator_ema is not None
    for optimizer in paper.configure_optimizers()[0]:
        assert optimizer.defaults["lr"] == 5e-4 and tuple(optimizer.defaults["betas"]) == (
            0.9,
            0.999,
        )
    # The data and network sizes stay the quickstart's.
    assert paper.generator.head[0].out_channels == quickstart.generator.head[0].out_channels


def test_the_dped_recipe_piece_brings_the_quickstarts_departures_at_the_papers_size(
    tmp_path, vgg19_torch_home, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(vgg19_torch_home))
    write_dped_tree(tmp_path / "dped", "iphone")

    def build(*configs: str):
        args = [arg for config in configs for arg in ("-c", str(CONFIGS / config))]
        args += [f"--trainer.logger.init_args.save_dir={tmp_path}"]
        if configs[0] == "dped.yaml":
            args.append(f"--data.init_args.root={tmp_path / 'dped'}")
        return cli_main(args, run=False).model

    quickstart = build("quickstart.yaml")
    paper = build("dped.yaml", "dped/iphone.yaml")
    recipe = build("dped.yaml", "dped/iphone.yaml", "dped/recipe.yaml")
    # Every setting the quickstart departs from the paper with, the recipe piece sets the same.
    assert recipe.generator.output == quickstart.generator.output == "residual"
    assert recipe.inverse_generator.output == "residual"
    for name in ("texture_discriminator", "color_discriminator"):
        assert getattr(recipe, name).input_statistics
        norms = {type(m).__name__ for m in getattr(recipe, name).modules()}
        assert "InstanceNorm2d" not in norms
    assert recipe.tv_loss.loss_weight == quickstart.tv_loss.loss_weight
    for ours, theirs in ((recipe.color_loss, quickstart.color_loss),
                         (recipe.texture_loss, quickstart.texture_loss)):  # fmt: skip
        assert (ours.kind, ours.loss_weight) == (theirs.kind, theirs.loss_weight)
    assert recipe.generator_ema is not None
    ours = [o.defaults for o in recipe.configure_optimizers()[0]]
    theirs = [o.defaults for o in quickstart.configure_optimizers()[0]]
    assert [(d["lr"], tuple(d["betas"])) for d in ours] == [
        (d["lr"], tuple(d["betas"])) for d in theirs
    ]
    # The paper's sizes and content loss stay.
    assert recipe.generator.head[0].out_channels == paper.generator.head[0].out_channels == 64
    assert type(recipe.content_loss).__name__ == "PerceptualLoss"


def build_dped_config_with_vgg_weights(tmp_path: Path, weights: str):
    """The DPED config on the embedded data, its content loss given whole with these weights."""
    return cli_main(
        [
            "-c", str(CONFIGS / "dped.yaml"),
            "--model.init_args.content_loss="
            f"{{class_path: wespe.losses.PerceptualLoss, init_args: {{weights: {weights}}}}}",
            "--data=wespe.data.EmbeddedSampleDataModule",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ],
        run=False,
    )  # fmt: skip


def test_null_on_the_command_line_gives_none_for_optional_paths(tmp_path):
    # With os.PathLike in an optional path's type, jsonargparse read "null" as the string
    # "None" (and VGG19Features then looked for a weights file named None).
    parser = ArgumentParser()
    parser.add_class_arguments(FolderDataModule)
    parsed = parser.parse_args(
        ["--source_dir=a", "--target_dir=b", "--eval_source_dir=null", "--eval_clean_dir=null"]
    )
    assert parsed.eval_source_dir is None and parsed.eval_clean_dir is None

    # Two subclass levels down, jsonargparse 4.53 still turns a lone
    # "--model.init_args.content_loss.init_args.weights=null" into "None"; replacing the whole
    # loss, as the README shows, gives None.
    cli = build_dped_config_with_vgg_weights(tmp_path, "null")
    assert cli.config.model.init_args.content_loss.init_args.weights is None
    assert cli.model.content_loss.vgg.features[0].weight.requires_grad is False


def test_a_failing_constructor_is_reported_with_its_own_error(tmp_path):
    # jsonargparse wraps it in nested "Does not validate against any of the Union subtypes"
    # errors; the CLI raises the constructor's own one, here the message naming the argument.
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer; got 4"):
        cli_main(
            ["-c", str(CONFIGS / "quickstart.yaml"), f"--trainer.default_root_dir={tmp_path}",
             "--model.init_args.color_loss.init_args.kernel_size=4"],
            run=False,
        )  # fmt: skip


def test_a_missing_vgg_weights_file_stops_fit_before_the_first_step(tmp_path):
    # The weights are read when training starts (evaluation never needs them).
    missing = tmp_path / "vgg19.pth"
    cli = build_dped_config_with_vgg_weights(tmp_path, str(missing))
    with pytest.raises(FileNotFoundError, match="VGG-19 weights file .*vgg19.pth does not exist"):
        cli.model.setup("fit")


def test_config_errors_name_the_field_before_training(tmp_path, capsys):
    base = ["fit", "-c", str(CONFIGS / "quickstart.yaml"), *tiny_overrides(tmp_path)]
    with pytest.raises(ValueError, match=r"generator_optimizer: Invalid learning rate: -0.1"):
        cli_main([*base, "--model.init_args.generator_optimizer.init_args.lr=-0.1"])
    assert not list(tmp_path.rglob("*.ckpt"))  # stopped before any training step
    with pytest.raises(SystemExit):
        cli_main([*base, "--model.init_args.no_such_setting=1"])
    assert "no_such_setting" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown VGG-19 layer 'relu9_9'; choose from .*relu5_4"):
        cli_main(
            [*base, "--model.init_args.content_loss="
             "{class_path: wespe.losses.PerceptualLoss, init_args: {layer: relu9_9, weights: null}}"],
        )  # fmt: skip


#: Every YAML file under configs/, pieces in subfolders included.
EVERY_CONFIG = sorted(CONFIGS.rglob("*.yaml"))


def test_every_yaml_under_configs_parses(tmp_path):
    """Each full config alone and each piece (benchmark.yaml, paper.yaml, logger/, trainer/) on
    top of the quickstart parses and validates against the classes it names. (Building them
    is tested above and in the DDP and logging tests; trainer/ddp.yaml asks for GPUs.)"""
    assert {p.relative_to(CONFIGS).as_posix() for p in EVERY_CONFIG} >= {
        "logger/wandb.yaml", "trainer/ddp.yaml", "trainer/ddp_cpu.yaml", "benchmark.yaml",
    }  # fmt: skip
    parser = cli_main(
        ["-c", str(CONFIGS / "quickstart.yaml"), f"--trainer.default_root_dir={tmp_path}"],
        run=False,
    ).parser
    for config in EVERY_CONFIG:
        first = [] if not _is_piece(config) else ["-c", str(_base_of(config))]
        parsed = parser.parse_args([*first, "-c", str(config)])
        piece = yaml.safe_load(config.read_text())
        for section in ("trainer", "model", "data"):
            for key, value in (piece.get(section) or {}).items():
                if not isinstance(value, dict | list):  # a plain setting arrives as written
                    assert parsed[section][key] == value, (config.name, section, key)


def test_a_run_is_named_once_and_the_saved_config_holds_the_defaults_used(tmp_path):
    from wespe.data.degrade import DEGRADATIONS, PhoneDegradation

    def strings(tree: object) -> list[str]:
        if isinstance(tree, dict):
            return [s for value in tree.values() for s in strings(value)]
        if isinstance(tree, list):
            return [s for value in tree for s in strings(value)]
        return [tree] if isinstance(tree, str) else []

    for config in sorted(CONFIGS.rglob("*.yaml")):
        loaded = yaml.safe_load(config.read_text())
        logger = (loaded.get("trainer") or {}).get("logger") or {}
        name = (logger.get("init_args") or {}).get("name")
        # The logger's name, and no folder or output path that spells it again.
        paths = [s for s in strings(loaded) if "/" in s]
        assert not [p for p in paths if name and name in p.split("/")], config.name
    cli = cli_main(
        ["-c", str(CONFIGS / "quickstart.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"],
        run=False,
    )
    saved = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    degradation = saved["data"]["init_args"]["degradation"]
    # The values used, not null; a saved range is a list and parses back to the same degradation.
    assert degradation["gamma"] == list(DEGRADATIONS["phone"].gamma)
    assert degradation["jpeg_quality"] == list(DEGRADATIONS["phone"].jpeg_quality)
    assert PhoneDegradation(**degradation) == DEGRADATIONS["phone"]
