"""Export the trained generator alone, as ONNX or TorchScript, so that photos can be enhanced
without this package (``wespe export``).

The exported model is the checkpoint's generator (:func:`wespe.inference.load_generator`: the
moving average's weights where the run kept one) followed by clamping to [0, 1]. It maps a
float32 batch ``(N, 3, H, W)`` in [0, 1] to the enhanced batch of the same shape in [0, 1]; N,
H and W are dynamic. It runs the photo in one pass (no tiling): memory grows with H·W.

- **ONNX** (``.onnx``, one self-contained file): torch's dynamo-based exporter
  (``torch.onnx.export(..., dynamo=True)``: :func:`torch.export.export`, translated by
  onnxscript), torch's default and recommended exporter since 2.9. The legacy TorchScript-based
  one (``dynamo=False``) still runs in torch 2.14 but emits a ``DeprecationWarning`` that it
  will be removed. Input ``"image"``, output ``"enhanced"``, axes named ``batch``, ``height``,
  ``width``. Instance norm becomes ONNX ``InstanceNormalization``, which normalises over
  whatever H and W arrive. Runs with onnxruntime and numpy alone. Needs
  ``pip install "wespe[export]"``.
- **TorchScript** (``.pt``): :func:`torch.jit.script`, which compiles the forward code, so
  nothing depends on the example's shape. (:func:`torch.jit.trace` gives the same network here
  but records Python branches as constants and warns about instance norm's size check.) Loads
  with ``torch.jit.load`` and torch alone. torch 2.14 deprecates TorchScript in favour of
  :mod:`torch.export`: ``torch.jit.script``, ``torch.jit.save`` and ``torch.jit.load`` emit a
  ``FutureWarning``; the files still save and load.

Every export is checked before it replaces the target: the written file is loaded back and
run on a batch whose size it was not traced with (:data:`VERIFY_SHAPE`), and must match the
PyTorch generator within :data:`VERIFY_TOLERANCE` (the ONNX check needs onnxruntime, and is
skipped without it). Measured largest differences to PyTorch on [0, 1], torch 2.14 and
onnxruntime 1.32 on a CPU: ONNX about 3e-6 for the tests' tiny generator (4 channels, 1 block)
and 2e-5 (37×53) to 4e-5 (640×480) for a paper-size one (64 channels, 4 blocks), float32
rounding, far below one 8-bit level (3.9e-3); TorchScript exactly 0.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from wespe._checks import check_choice
from wespe._files import replacing
from wespe.inference import load_generator

__all__ = [
    "FORMATS",
    "VERIFY_SHAPE",
    "VERIFY_TOLERANCE",
    "ClampedGenerator",
    "export_generator",
    "export_main",
]

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript")
INPUT_NAME = "image"
OUTPUT_NAME = "enhanced"
# The largest difference (on [0, 1]) between the exported model and PyTorch that an export
# accepts: a quarter of an 8-bit level. Float32 rounding in another runtime's convolutions and
# norms stays far below it (see above); a wrong export (weights, shapes) goes far above.
VERIFY_TOLERANCE = 1e-3
# The check's batch: odd sizes, and not the example's, so a shape baked in at export shows.
VERIFY_SHAPE = (1, 3, 37, 53)
# The example the ONNX exporter traces with: a batch above 1 and height != width, so that
# torch.export neither specialises the batch to 1 nor takes height and width for one size.
_EXAMPLE_SHAPE = (2, 3, 64, 48)
_MISSING_ONNX = 'exporting to ONNX needs onnx and onnxscript: pip install "wespe[export]"'


class ClampedGenerator(nn.Module):
    """What is exported: ``generator`` followed by clamping to [0, 1], so that every output is
    a valid image (the "dped" and "residual" outputs can leave [0, 1]).

    Shape:
        input ``image`` ``(N, 3, H, W)``, float32 in [0, 1]; output ``(N, 3, H, W)`` in [0, 1].

    Example:
        >>> from wespe.networks import Generator
        >>> model = ClampedGenerator(Generator(channels=4, num_blocks=1))
        >>> output = model(torch.rand(2, 3, 17, 23))
        >>> output.shape, bool(output.min() >= 0 and output.max() <= 1)
        (torch.Size([2, 3, 17, 23]), True)
    """

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: Tensor) -> Tensor:
        # Static under torch.export (ONNX declares the shape instead); a clear error in
        # TorchScript, which checks nothing by itself.
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError("image must be a float32 (N, 3, H, W) batch in [0, 1]")
        return self.generator(image).clamp(0, 1)


def export_generator(
    ckpt_path: str | os.PathLike,
    format: Format,
    output: str | os.PathLike,
    use_ema: bool = True,
    opset: int | None = None,
    overwrite: bool = True,
    verify: bool = True,
) -> Path:
    """Export a checkpoint's generator, alone, as an ONNX or TorchScript file.

    The exported model maps a float32 ``(N, 3, H, W)`` batch in [0, 1] to the enhanced batch,
    clamped to [0, 1]; N, H and W are dynamic (see the module docstring for each format). The
    file is written atomically: into a temporary file beside ``output``, checked, then moved
    onto ``output``; on any failure nothing is left and an existing ``output`` is unchanged.
    Missing parent folders are created.

    Args:
        ckpt_path: a checkpoint ``wespe fit`` wrote.
        format: ``"onnx"`` or ``"torchscript"``.
        output: the file to write (conventionally ``.onnx`` or ``.pt``).
        use_ema: take the weights of G's moving average where the checkpoint has one
            (:func:`~wespe.inference.load_generator`); False: G's own.
        opset: the ONNX opset to target (default: the exporter's, 20 in torch 2.14; below 18
            torch converts down, which may fail). ONNX only.
        overwrite: replace an existing ``output``; False: refuse.
        verify: run the written file on a :data:`VERIFY_SHAPE` batch and require a match with
            PyTorch within :data:`VERIFY_TOLERANCE` (ONNX: only where onnxruntime is installed).

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an unknown ``format``, or ``opset`` with TorchScript.
        ImportError: ONNX without onnx or onnxscript installed (``pip install "wespe[export]"``).
        FileExistsError: ``output`` exists and not ``overwrite``.
        FileNotFoundError: no such checkpoint.
        CheckpointError: the file is not a checkpoint, or holds no wespe generator (e.g. a
            checkpoint of another model); the message says which.
        RuntimeError: the exported model does not match PyTorch (nothing is written).

    Warns:
        FutureWarning: TorchScript only: torch 2.14 deprecates ``torch.jit.script``,
            ``torch.jit.save`` and ``torch.jit.load`` (the file is still written and loads).
    """
    return _export(ckpt_path, format, output, use_ema, opset, overwrite, verify)[0]


def _export(
    ckpt_path: str | os.PathLike,
    format: Format,
    output: str | os.PathLike,
    use_ema: bool,
    opset: int | None,
    overwrite: bool,
    verify: bool,
) -> tuple[Path, float | None]:
    """:func:`export_generator`, also returning the verified difference (None: not checked)."""
    check_choice("format", format, FORMATS)
    if opset is not None and format != "onnx":
        raise ValueError(f"opset applies to ONNX only; got opset={opset} with format={format!r}")
    target = Path(output)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} already exists; choose another file or overwrite it")
    if format == "onnx":
        _require_onnx()  # before the checkpoint is read: fail in a second, not after the work
    model = ClampedGenerator(load_generator(ckpt_path, use_ema=use_ema)).eval()
    difference = None
    with replacing(target) as temporary:
        if format == "onnx":
            _write_onnx(model, temporary, opset)
        else:
            _write_torchscript(model, temporary)
        if verify:
            difference = _verify(model, temporary, format, target)
    return target, difference


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{_MISSING_ONNX} ({error})") from error


def _write_onnx(model: nn.Module, path: Path, opset: int | None) -> None:
    import onnx
    from torch.export import Dim

    example = torch.rand(_EXAMPLE_SHAPE, generator=torch.Generator().manual_seed(0))
    # Named dims: the file's axes read batch/height/width instead of torch's s0, s1, ...
    axes = {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_shapes={INPUT_NAME: axes},
        verbose=False,
    )
    # One self-contained file: external data would be a second file named after the temporary
    # one. (ONNX's protobuf limit, 2 GB, is far above any DPED generator.)
    program.save(path, external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def _write_torchscript(model: nn.Module, path: Path) -> None:
    torch.jit.save(torch.jit.script(model), str(path))


def _verify(model: nn.Module, path: Path, format: Format, target: Path) -> float | None:
    """The largest difference between the file's model and ``model`` on a seeded
    :data:`VERIFY_SHAPE` batch; raises RuntimeError above :data:`VERIFY_TOLERANCE`."""
    image = torch.rand(VERIFY_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(image)
    if format == "onnx":
        try:
            import onnxruntime
        except ImportError:
            return None  # documented: the check needs onnxruntime (in wespe[export])
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (result,) = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})
        result = torch.from_numpy(result)
    else:
        with torch.no_grad():
            result = torch.jit.load(str(path))(image)
    difference = (result - expected).abs().max().item() if result.shape == expected.shape else None
    if difference is None or not difference <= VERIFY_TOLERANCE:
        found = f"differs by {difference:.3g}" if difference is not None else "has another shape"
        raise RuntimeError(
            f"the exported {format} model {found} from the PyTorch generator on a "
            f"{'x'.join(map(str, VERIFY_SHAPE))} batch (tolerance {VERIFY_TOLERANCE}); "
            f"{target} was not written" + (": try another --opset" if format == "onnx" else "")
        )
    return difference


# ---------------------------------------------------------------------------- command


def _describe_onnx(path: Path) -> list[str]:
    """The opset and each input's and output's name, type and shape, as the file records them."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    lines = [f"  ONNX opset {opset}"]
    for kind, values in (("input ", model.graph.input), ("output", model.graph.output)):
        for value in values:
            tensor = value.type.tensor_type
            dims = ", ".join(d.dim_param or str(d.dim_value) for d in tensor.shape.dim)
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            lines.append(f"  {kind} {value.name!r}: {dtype} ({dims}) in [0, 1]")
    return lines


def export_main(args: list[str]) -> None:
    """``wespe export --ckpt_path CKPT --format onnx|torchscript -o FILE [--no_ema]
    [--opset N] [--overwrite]``: :func:`export_generator`, then a summary of what was written
    (path, size, input and output names and shapes, the verified difference to PyTorch).

    Refuses (exit status 2) to replace an existing FILE without ``--overwrite``. Errors of the
    export itself (:class:`~wespe.inference.CheckpointError`, a missing onnx) go through with
    their messages.
    """
    parser = argparse.ArgumentParser(
        prog="wespe export",
        description="Write a checkpoint's trained generator alone, as ONNX or TorchScript, to "
        "enhance photos without wespe: it maps a float32 (N, 3, H, W) batch in [0, 1] to the "
        "enhanced batch in [0, 1], any N, H, W. ONNX runs with onnxruntime and numpy; "
        "TorchScript with torch (torch.jit.load).",
    )
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint `wespe fit` wrote")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("-o", "--output", required=True, help="the file to write")
    parser.add_argument(
        "--no_ema", action="store_true", help="G's own weights instead of its moving average"
    )
    parser.add_argument(
        "--opset", type=int, default=None, help="ONNX opset (default: torch's, 20 in torch 2.14)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    options = parser.parse_args(args)
    if options.opset is not None and options.format != "onnx":
        parser.error("--opset applies to --format onnx only")
    if Path(options.output).exists() and not options.overwrite:
        parser.error(f"{options.output} already exists; pass --overwrite to replace it")
    path, difference = _export(
        options.ckpt_path,
        options.format,
        options.output,
        use_ema=not options.no_ema,
        opset=options.opset,
        overwrite=options.overwrite,
        verify=True,
    )
    size = path.stat().st_size
    size_text = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    weights = "G's own" if options.no_ema else "G's moving average where the run kept one"
    print(f"wrote {path} ({options.format}, {size_text}) from {options.ckpt_path} ({weights})")
    if options.format == "onnx":
        print("\n".join(_describe_onnx(path)))
    else:
        # TorchScript records no shapes; this is ClampedGenerator's contract.
        print(f"  input  {INPUT_NAME!r}: float32 (N, 3, H, W) in [0, 1]")
        print("  output: float32 (N, 3, H, W) in [0, 1]")
    if difference is None:
        print("  not verified (install onnxruntime to check the file against PyTorch)")
    else:
        shape = "x".join(map(str, VERIFY_SHAPE))
        print(f"  max difference to PyTorch on a {shape} batch: {difference:.2g}")
