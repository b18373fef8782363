"""``wespe export``: the generator alone as ONNX (run in onnxruntime) and TorchScript (run in a
Python without wespe), matching PyTorch at sizes it was not exported with."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import write_checkpoint
from PIL import Image

from wespe import export
from wespe.export import export_generator, export_main
from wespe.inference import CheckpointError, load_generator

# Largest accepted difference to PyTorch on [0, 1]: another runtime's float32 convolutions and
# instance norms round differently (measured: about 3e-6 for ONNX, 0 for TorchScript).
TOLERANCE = 1e-4
# Odd sizes, neither the ONNX exporter's example (2x3x64x48) nor square.
SHAPES = [(1, 3, 37, 53), (2, 3, 64, 41)]
JIT_DEPRECATED = "ignore:`torch.jit.*` is deprecated:FutureWarning"

# The README's examples (the same code): enhance photo.jpg into photo_enhanced.png.
ONNX_EXAMPLE = """\
import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession("wespe.onnx", providers=["CPUExecutionProvider"])
photo = Image.open("photo.jpg").convert("RGB")
# (H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]
image = np.asarray(photo, dtype=np.float32).transpose(2, 0, 1)[None] / 255
(enhanced,) = session.run(["enhanced"], {"image": np.ascontiguousarray(image)})
# (1, 3, H, W) in [0, 1] -> (H, W, 3) uint8
pixels = (enhanced[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
Image.fromarray(pixels).save("photo_enhanced.png")
"""
TORCHSCRIPT_EXAMPLE = """\
import torch
from PIL import Image

model = torch.jit.load("wespe.pt").eval()
photo = Image.open("photo.jpg").convert("RGB")
width, height = photo.size
# (H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]
pixels = torch.frombuffer(bytearray(photo.tobytes()), dtype=torch.uint8).view(height, width, 3)
image = pixels.permute(2, 0, 1)[None].float() / 255
with torch.no_grad():
    enhanced = model(image)
# (1, 3, H, W) in [0, 1] -> (H, W, 3) uint8
pixels = (enhanced[0] * 255).round().to(torch.uint8).permute(1, 2, 0)
Image.frombytes("RGB", (width, height), bytes(pixels.flatten().tolist())).save("photo_enhanced.png")
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """conftest's ``checkpoint`` (:func:`write_checkpoint`), written once for the module: the
    tests only read it, and writing it takes a LightningCLI build per test."""
    folder = tmp_path_factory.mktemp("checkpoint")
    return write_checkpoint(folder / "model.ckpt", folder / "runs")


@pytest.fixture(scope="module")
def onnx_file(ckpt, tmp_path_factory) -> Path:
    """The checkpoint exported to ONNX with the defaults, into a folder that does not exist yet."""
    target = tmp_path_factory.mktemp("onnx") / "out" / "wespe.onnx"
    assert export_generator(ckpt, "onnx", target) == target
    return target


def reference(ckpt: Path, image: torch.Tensor, use_ema: bool = True) -> torch.Tensor:
    """What the export must compute: the checkpoint's generator in PyTorch, clamped."""
    with torch.no_grad():
        return load_generator(ckpt, use_ema=use_ema)(image).clamp(0, 1)


def inputs() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(shape, generator=generator) for shape in SHAPES]


def run_onnx(path: Path, image: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["enhanced"], {"image": image.numpy()})[0])


def run_without(modules: list[str], code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh Python where importing any of ``modules`` fails."""
    blocker = "".join(f"sys.modules[{name!r}] = None\n" for name in modules)
    result = subprocess.run(
        [sys.executable, "-c", "import sys\n" + blocker + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def write_photo(path: Path, size: tuple[int, int] = (45, 31)) -> None:
    generator = torch.Generator().manual_seed(2)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), dtype=torch.uint8, generator=generator)
    Image.fromarray(pixels.numpy()).save(path)


def test_onnx_matches_pytorch_at_any_size_with_named_dynamic_axes(ckpt, onnx_file):
    model = onnx.load(str(onnx_file))
    (image,), (enhanced,) = model.graph.input, model.graph.output
    assert (image.name, enhanced.name) == ("image", "enhanced")
    for value in (image, enhanced):
        dims = value.type.tensor_type.shape.dim
        # Batch, height and width symbolic (no fixed size), 3 channels fixed.
        assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
        assert [d.dim_value for d in dims] == [0, 3, 0, 0]
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    for batch in inputs():
        result, expected = run_onnx(onnx_file, batch), reference(ckpt, batch)
        assert result.shape == batch.shape
        assert (result - expected).abs().max() <= TOLERANCE
        # Not a trivial comparison: the network changes the photo, and a good part of its
        # output is not clamped (random weights push about two thirds out of [0, 1]).
        assert (expected - batch).abs().max() > 0.05
        assert ((expected > 0) & (expected < 1)).float().mean() > 0.2


def test_onnx_uses_moving_average_weights_unless_told_otherwise(ckpt, onnx_file, tmp_path):
    plain = export_generator(ckpt, "onnx", tmp_path / "g.onnx", use_ema=False)
    batch = inputs()[0]
    plain_result = run_onnx(plain, batch)
    assert (plain_result - reference(ckpt, batch, use_ema=False)).abs().max() <= TOLERANCE
    # The fixture's checkpoint has different weights in G and its moving average.
    assert (plain_result - run_onnx(onnx_file, batch)).abs().max() > 1e-2


@pytest.mark.filterwarnings(JIT_DEPRECATED)
def test_torchscript_runs_without_wespe_at_any_size(ckpt, tmp_path):
    export_generator(ckpt, "torchscript", tmp_path / "wespe.pt")
    torch.save(inputs(), tmp_path / "inputs.pt")
    code = textwrap.dedent("""\
        import torch
        model = torch.jit.load("wespe.pt")
        with torch.no_grad():
            torch.save([model(batch) for batch in torch.load("inputs.pt")], "outputs.pt")
        """)
    # Any import of wespe fails there (and fails the run): the file must not need the package
    # that wrote it, nor its classes.
    run_without(["wespe"], code, tmp_path)
    outputs = torch.load(tmp_path / "outputs.pt")
    for batch, result in zip(inputs(), outputs, strict=True):
        assert result.shape == batch.shape
        assert (result - reference(ckpt, batch)).abs().max() <= TOLERANCE


@pytest.mark.filterwarnings(JIT_DEPRECATED)
def test_torchscript_checks_its_input_shape(ckpt, tmp_path):
    model = torch.jit.load(str(export_generator(ckpt, "torchscript", tmp_path / "g.pt")))
    with pytest.raises(torch.jit.Error, match=r"\(N, 3, H, W\)"):
        model(torch.rand(1, 4, 16, 16))


@pytest.mark.parametrize(
    ("format", "example", "blocked"),
    [
        ("onnx", ONNX_EXAMPLE, ["torch", "wespe"]),
        ("torchscript", TORCHSCRIPT_EXAMPLE, ["numpy", "wespe"]),
    ],
)
@pytest.mark.filterwarnings(JIT_DEPRECATED)
def test_readme_example_enhances_a_photo_with_only_its_runtime(
    ckpt, onnx_file, tmp_path, format, example, blocked
):
    if format == "onnx":
        shutil.copy(onnx_file, tmp_path / "wespe.onnx")
    else:
        export_generator(ckpt, format, tmp_path / "wespe.pt")
    write_photo(tmp_path / "photo.jpg")
    run_without(blocked, example, tmp_path)

    photo = np.array(Image.open(tmp_path / "photo.jpg").convert("RGB"))
    expected = reference(ckpt, torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255)
    expected = (expected[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    result = np.asarray(Image.open(tmp_path / "photo_enhanced.png"))
    assert result.shape == photo.shape
    # One level at most: a float32 difference can move a value across a rounding boundary.
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1


def test_export_main_refuses_to_overwrite_and_replaces_with_overwrite(ckpt, tmp_path, capsys):
    target = tmp_path / "wespe.onnx"
    target.write_bytes(b"an earlier export")
    args = ["--ckpt_path", str(ckpt), "--format", "onnx", "-o", str(target), "--opset", "18"]
    with pytest.raises(SystemExit) as exit_info:
        export_main(args)
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"an earlier export"

    export_main([*args, "--overwrite"])
    printed = capsys.readouterr().out
    assert f"wrote {target}" in printed
    assert "opset 18" in printed
    assert "'image': float32 (batch, 3, height, width)" in printed
    assert "'enhanced': float32 (batch, 3, height, width)" in printed
    assert "max difference to PyTorch" in printed
    assert next(o.version for o in onnx.load(str(target)).opset_import if o.domain == "") == 18
    batch = inputs()[0]
    assert (run_onnx(target, batch) - reference(ckpt, batch)).abs().max() <= TOLERANCE


@pytest.mark.filterwarnings(JIT_DEPRECATED)
def test_export_main_no_ema_exports_g_itself(ckpt, tmp_path, capsys):
    target = tmp_path / "wespe.pt"
    export_main(
        ["--ckpt_path", str(ckpt), "--format", "torchscript", "-o", str(target), "--no_ema"]
    )
    assert "G's own" in capsys.readouterr().out
    batch = inputs()[0]
    with torch.no_grad():
        result = torch.jit.load(str(target))(batch)
    assert (result - reference(ckpt, batch, use_ema=False)).abs().max() <= TOLERANCE
    assert (result - reference(ckpt, batch)).abs().max() > 1e-2


def test_export_main_rejects_opset_with_torchscript(ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_main(
            [
                "--ckpt_path",
                str(ckpt),
                "--format",
                "torchscript",
                "-o",
                str(tmp_path / "g.pt"),
            ]
            + ["--opset", "18"]
        )
    assert "--opset applies to --format onnx only" in capsys.readouterr().err
    assert not (tmp_path / "g.pt").exists()


def test_checkpoint_of_another_model_is_refused(tmp_path):
    foreign = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2, 2)}}, foreign)
    target = tmp_path / "wespe.onnx"
    with pytest.raises(CheckpointError, match=r"no wespe generator.*layer\.weight"):
        export_main(["--ckpt_path", str(foreign), "--format", "onnx", "-o", str(target)])
    assert list(tmp_path.iterdir()) == [foreign]


def test_unknown_format_is_refused(ckpt, tmp_path):
    with pytest.raises(
        ValueError, match="format must be one of 'onnx', 'torchscript'; got 'tflite'"
    ):
        export_generator(ckpt, "tflite", tmp_path / "g.tflite")


def test_missing_onnx_says_how_to_install(ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    with pytest.raises(ImportError, match=r'pip install "wespe\[export\]"'):
        export_generator(ckpt, "onnx", tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.filterwarnings(JIT_DEPRECATED)
def test_failure_while_writing_leaves_no_file(ckpt, tmp_path, monkeypatch, existing):
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "wespe.pt"
    if existing:
        target.write_bytes(b"an earlier export")

    def save_half_then_fail(module, path):
        Path(path).write_bytes(b"half a fi")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch.jit, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export_generator(ckpt, "torchscript", target)
    # No temporary file left beside the target; an earlier export is unchanged.
    assert list(folder.iterdir()) == ([target] if existing else [])
    if existing:
        assert target.read_bytes() == b"an earlier export"


def test_export_that_does_not_match_pytorch_is_not_written(ckpt, tmp_path, monkeypatch):
    # ONNX Runtime differs from PyTorch by float32 rounding (about 1e-6): a zero tolerance
    # fails the check, as a wrong export would.
    monkeypatch.setattr(export, "VERIFY_TOLERANCE", 0.0)
    with pytest.raises(RuntimeError, match=r"differs by .* was not written"):
        export_generator(ckpt, "onnx", tmp_path / "wespe.onnx")
    assert list(tmp_path.iterdir()) == []
