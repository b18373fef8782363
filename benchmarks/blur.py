"""The color loss's blur: kornia against the seed blog's ``GaussianSmoothing`` and a two-pass blur.

WESPE's color discriminator sees images blurred with a 21 px Gaussian of std 3. Timed here,
forward and backward (the gradient reaches the generator through the blur), on the CPU:

- ``wespe``: :func:`wespe.losses.gaussian_blur`, kornia's ``gaussian_blur2d`` (separable,
  reflect padding), what the color loss runs;
- ``kornia 2-D``: the same with ``separable=False``, one 21x21 convolution;
- ``seed GaussianSmoothing``: the seed blog's module (the PyTorch forum's depthwise
  convolution with a 21x21 kernel built on a meshgrid), with reflect padding added so that
  it returns the same image;
- ``two-pass``: a hand-written separable blur: reflect padding once, then a 1x21 and a 21x1
  depthwise convolution.

All four return the same images (the largest difference to ``wespe`` is printed). Times are
the median of ``--repeats`` after a warm-up; ratios are against ``wespe``.

    python benchmarks/blur.py
    python benchmarks/blur.py --shapes 8x3x100x100 30x3x100x100 1x3x1000x1500

Writes ``<out>/blur.json`` (default ``runs/benchmark/performance``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import timings  # noqa: E402

from wespe.losses import gaussian_blur  # noqa: E402
from wespe.runs import markdown_table  # noqa: E402

KERNEL_SIZE, SIGMA = 21, 3.0


class GaussianSmoothing(nn.Module):
    """The seed blog's blur: a depthwise convolution with a 2-D Gaussian kernel (the product of
    1-D Gaussians over a meshgrid, normalised to sum 1). The blog's version pads nothing (the
    output shrinks by ``kernel_size - 1``); reflect padding is added here so that the output
    equals kornia's."""

    def __init__(self, channels: int, kernel_size: int, sigma: float) -> None:
        super().__init__()
        grids = torch.meshgrid(
            *(torch.arange(kernel_size, dtype=torch.float32) for _ in range(2)), indexing="ij"
        )
        kernel = torch.ones(())
        mean = (kernel_size - 1) / 2
        for grid in grids:
            kernel = (
                kernel
                * torch.exp(-(((grid - mean) / sigma) ** 2) / 2)
                / (sigma * math.sqrt(2 * math.pi))
            )
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, kernel_size, kernel_size).clone())
        self.groups = channels
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, [self.padding] * 4, mode="reflect")
        return F.conv2d(x, self.weight, groups=self.groups)


class TwoPassBlur(nn.Module):
    """Separable Gaussian blur: reflect padding once, then a row pass and a column pass."""

    def __init__(self, channels: int, kernel_size: int, sigma: float) -> None:
        super().__init__()
        line = kornia.filters.get_gaussian_kernel1d(kernel_size, sigma)[0]
        self.register_buffer("row", line.view(1, 1, 1, -1).expand(channels, 1, 1, -1).clone())
        self.register_buffer("column", line.view(1, 1, -1, 1).expand(channels, 1, -1, 1).clone())
        self.groups = channels
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, [self.padding] * 4, mode="reflect")
        return F.conv2d(F.conv2d(x, self.row, groups=self.groups), self.column, groups=self.groups)


def blurs(channels: int) -> dict[str, Callable[[Tensor], Tensor]]:
    return {
        "wespe (kornia, separable)": lambda x: gaussian_blur(x, KERNEL_SIZE, SIGMA),
        "kornia 2-D": lambda x: kornia.filters.gaussian_blur2d(
            x, (KERNEL_SIZE, KERNEL_SIZE), (SIGMA, SIGMA), border_type="reflect", separable=False
        ),
        "seed GaussianSmoothing": GaussianSmoothing(channels, KERNEL_SIZE, SIGMA),
        "two-pass": TwoPassBlur(channels, KERNEL_SIZE, SIGMA),
    }


def measure(shape: tuple[int, ...], repeats: int) -> list[dict]:
    torch.manual_seed(0)
    x = torch.rand(shape)
    gradient = torch.rand(shape)
    rows = []
    reference = None
    for name, blur in blurs(shape[1]).items():
        with torch.no_grad():
            output = blur(x)
        reference = output if reference is None else reference
        x_grad = x.clone().requires_grad_()

        def forward_backward(blur: Callable = blur, x_grad: Tensor = x_grad) -> None:
            torch.autograd.grad(blur(x_grad), x_grad, gradient)

        with torch.no_grad():
            forward = statistics.median(timings(lambda blur=blur: blur(x), repeats))
        rows.append(
            {
                "shape": "x".join(map(str, shape)),
                "blur": name,
                "forward_ms": 1000 * forward,
                "forward_backward_ms": 1000 * statistics.median(timings(forward_backward, repeats)),
                "max_difference": (output - reference).abs().max().item(),
            }
        )
    for row in rows:
        row["forward_ratio"] = row["forward_ms"] / rows[0]["forward_ms"]
        row["forward_backward_ratio"] = row["forward_backward_ms"] / rows[0]["forward_backward_ms"]
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        f"Gaussian blur {KERNEL_SIZE} px, std {SIGMA}, reflect padding; CPU, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, kornia {kornia.__version__}. "
        "Ratio: time / wespe's.",
        "",
        markdown_table(
            ["input", "blur", "forward ms", "ratio", "forward+backward ms", "ratio",
             "max difference"],
            [
                [r["shape"], r["blur"], f"{r['forward_ms']:.2f}", f"{r['forward_ratio']:.2f}",
                 f"{r['forward_backward_ms']:.2f}", f"{r['forward_backward_ratio']:.2f}",
                 f"{r['max_difference']:.1e}"]
                for r in rows
            ],
        ),
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["8x3x100x100", "30x3x100x100", "8x3x64x64"],
        help="input shapes BxCxHxW (the paper's batch, DPED's batch, the quickstart's)",
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmark" / "performance")
    args = parser.parse_args(argv)
    rows = [
        row
        for shape in args.shapes
        for row in measure(tuple(int(n) for n in shape.split("x")), args.repeats)
    ]
    results = {"threads": torch.get_num_threads(), "rows": rows, "table": table(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "blur.json").write_text(json.dumps(results, indent=2))
    print(results["table"])
    return results


if __name__ == "__main__":
    main()
