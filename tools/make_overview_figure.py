"""Draw "the paper in one picture" for the book's introduction: book/_static/snip_overview.png.

Why a script: the figure is schematic (synthetic numbers, fixed seed), so it is generated
rather than hand-drawn and can be regenerated identically after a wording change:

    python tools/make_overview_figure.py            # writes book/_static/snip_overview.png
    python tools/make_overview_figure.py --out x.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "book" / "_static" / "snip_overview.png"
SHAPE = (8, 10)      # a toy weight matrix
KEEP_FRACTION = 0.2  # 80% sparsity in the sketch


def _matrix(ax: plt.Axes, values: np.ndarray, cmap: str, vmin: float, vmax: float) -> None:
    ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.4")


def _batch(ax: plt.Axes, rng: np.random.Generator) -> None:
    """A stack of small noisy 'images' standing for one mini-batch."""
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 8)
    ax.axis("off")
    for i, (x, y) in enumerate([(0.4, 0.3), (1.6, 1.3), (2.8, 2.3), (4.0, 3.3)]):
        image = rng.random((6, 6)) * 0.5
        image[1:5, 2:4] += 0.5  # a faint stroke, so it reads as a digit-like picture
        ax.imshow(image, cmap="Greys", extent=(x, x + 5.2, y, y + 4.2), vmin=0, vmax=1, zorder=i)
        ax.add_patch(plt.Rectangle((x, y), 5.2, 4.2, fill=False, ec="0.3", lw=1, zorder=i + 0.5))


def draw(out: Path = DEFAULT_OUT) -> Path:
    """Draw the five-step overview and save it as a PNG at ``out``."""
    rng = np.random.default_rng(2019)
    weights = rng.normal(0.0, 1.0, SHAPE)
    grad_w = rng.normal(0.0, 1.0, SHAPE) * np.linspace(0.4, 1.6, SHAPE[1])
    saliency = np.abs(weights * grad_w)  # |g_j| = |w_j * dL/dw_j| at c = 1
    saliency /= saliency.sum()
    kappa = int(round(KEEP_FRACTION * saliency.size))
    threshold = np.sort(saliency.ravel())[-kappa]
    mask = saliency >= threshold
    trained = np.where(mask, weights + rng.normal(0.0, 0.6, SHAPE), 0.0)

    steps = [
        ("1  Initialise", "variance scaling\n(LeCun, Glorot or He)"),
        ("2  One mini-batch", "$D^b$: 100 images (MNIST)\nor 128 (CIFAR-10)"),
        ("3  Saliency", "$s_j = |g_j| \\,/\\, \\Sigma_k\\, |g_k|$\n$g_j = \\partial L / \\partial c_j$ at $c = 1$"),
        ("4  Keep the top $\\kappa$", "one global threshold,\nall layers at once"),
        ("5  Train the sparse net", "as usual; pruned\nweights stay at zero"),
    ]
    fig = plt.figure(figsize=(13.5, 3.6), dpi=150)
    width, gap, left = 0.158, 0.04, 0.019
    for i, (title, caption) in enumerate(steps):
        x0 = left + i * (width + gap)
        fig.patches.append(FancyBboxPatch(
            (x0, 0.04), width, 0.92, boxstyle="round,pad=0.004,rounding_size=0.015",
            transform=fig.transFigure, fc="#f4f6fb", ec="#9aa5c4", lw=1.2, zorder=-1))
        fig.text(x0 + width / 2, 0.89, title, ha="center", va="center", fontsize=11, weight="bold")
        fig.text(x0 + width / 2, 0.15, caption, ha="center", va="center", fontsize=9.5, linespacing=1.4)
        ax = fig.add_axes((x0 + 0.015, 0.30, width - 0.03, 0.50))
        if i == 0:
            _matrix(ax, weights, "RdBu_r", -2.5, 2.5)
            ax.set_title("weights $w$", fontsize=9)
        elif i == 1:
            _batch(ax, rng)
        elif i == 2:
            _matrix(ax, saliency, "viridis", 0.0, float(saliency.max()))
            ax.set_title("connection sensitivity", fontsize=9)
        elif i == 3:
            _matrix(ax, mask.astype(float), "Greys", 0.0, 1.0)
            ax.set_title(f"mask $c$: {mask.sum()} of {mask.size} kept", fontsize=9)
        else:
            _matrix(ax, trained, "RdBu_r", -2.5, 2.5)
            ax.set_title("$c \\odot w^*$", fontsize=9)
        if i < len(steps) - 1:
            fig.patches.append(FancyArrowPatch(
                (x0 + width + 0.006, 0.55), (x0 + width + gap - 0.006, 0.55), transform=fig.transFigure,
                arrowstyle="-|>", mutation_scale=18, lw=1.8, color="#3b4a7a"))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output PNG (default {DEFAULT_OUT})")
    print(f"wrote {draw(parser.parse_args().out)}")


if __name__ == "__main__":
    main()
