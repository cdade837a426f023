"""Pictures of SNIP masks: per-layer density, the first layer's mask as an image, and a slider.

Why these pictures. A SNIP mask of LeNet-300-100 has 266,200 entries, far too many to look at.
Two summaries tell most of the story:

- the **kept fraction per layer** (bar plot): one global threshold gives every layer its own
  density, and the layers end up very differently pruned;
- the **first layer's mask as an image**: the (hidden units x pixels) mask of the first Linear
  layer averaged over the hidden units and reshaped to the input image, i.e. for every pixel the
  fraction of hidden units that still read it. It shows *where* SNIP keeps connections.

Connection scores are computed once; changing the sparsity only moves the global threshold
(:func:`snip_lib.snip.masks_from_scores`), so :func:`sparsity_explorer` draws every stop of its
slider up front, and with ipywidgets 8 the browser switches between them even without a kernel.
Plotting functions draw into a given ``ax`` (or a new figure) and return what they drew, so a
notebook cell only calls them and ends with ``plt.show()``. ``ipywidgets`` is imported only when
the slider is built.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from snip_lib.snip import masks_from_scores

__all__ = [
    "DEFAULT_SPARSITIES",
    "first_layer_mask_image",
    "layer_densities",
    "plot_layer_density",
    "plot_mask_image",
    "draw_sparsity_panels",
    "static_sparsity_grid",
    "sparsity_explorer",
]

#: Slider stops of :func:`sparsity_explorer`: dense-ish to extreme, finer where SNIP is used.
DEFAULT_SPARSITIES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995)

MaskLike = torch.Tensor | np.ndarray
Masks = Mapping[str, MaskLike]


# ----------------------------------------------------------------------------- input checks

def _check_image_shape(image_shape: Any) -> tuple[int, ...]:
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 2
        or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in image_shape)
    ):
        raise ValueError(f"image_shape must be two positive ints (height, width), got {image_shape!r}")
    return (int(image_shape[0]), int(image_shape[1]))


def _as_float_array(mask: Any, where: str) -> np.ndarray:
    """A 0/1 mask (bool or numeric tensor/array) as a float64 NumPy array."""
    if isinstance(mask, torch.Tensor):
        array = mask.detach().cpu().to(torch.float64).numpy()
    elif isinstance(mask, np.ndarray):
        array = mask.astype(np.float64)
    else:
        raise TypeError(f"{where} must be a torch.Tensor or numpy array, got {type(mask).__name__}")
    if array.size and not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{where} must hold only 0/1 (or False/True), got values such as {array[~np.isin(array, (0.0, 1.0))][:3]}")
    return array


def _masks_dict(masks_or_model: nn.Module | Masks) -> dict[str, Any]:
    """``{name: mask}`` from a dict of masks or a model masked by :func:`snip_lib.masking.apply_masks`."""
    if isinstance(masks_or_model, nn.Module):
        from snip_lib import masking  # local import: only this input form needs it

        masks = masking.get_masks(masks_or_model)
        if not masks:
            raise ValueError("the model has no masks; apply them first with snip_lib.masking.apply_masks")
        return dict(masks)
    if isinstance(masks_or_model, Mapping):
        if not masks_or_model:
            raise ValueError("masks is empty; expected {parameter name: bool Tensor}")
        return dict(masks_or_model)
    raise TypeError(
        f"expected a dict {{parameter name: mask}} or a masked nn.Module, got {type(masks_or_model).__name__}"
    )


def _check_scores(scores: Any) -> dict[str, torch.Tensor]:
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"scores must be a non-empty dict of name -> Tensor (from connection_sensitivity), got {scores!r:.80}")
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"scores[{name!r}] must be a torch.Tensor, got {type(s).__name__}")
    return dict(scores)


def _check_sparsities(sparsities: Any) -> tuple[float, ...]:
    if isinstance(sparsities, (str, bytes)) or not isinstance(sparsities, Sequence) or len(sparsities) == 0:
        raise ValueError(f"sparsities must be a non-empty sequence of numbers in [0, 1), got {sparsities!r}")
    values = []
    for s in sparsities:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0.0 <= float(s) < 1.0:
            raise ValueError(f"every sparsity must be a number in [0, 1), got {s!r} in {list(sparsities)!r}")
        values.append(float(s))
    return tuple(values)


def _check_first_layer(scores: Mapping[str, torch.Tensor], shape: tuple[int, ...], who: str) -> None:
    """The first scored tensor must be a Linear weight with one input per pixel of ``shape``."""
    first = next(iter(scores.values()))
    if first.dim() != 2 or first.shape[1] != shape[0] * shape[1]:
        raise ValueError(
            f"the first scored tensor has shape {tuple(first.shape)}; {who} needs a first Linear "
            f"layer with {shape[0] * shape[1]} inputs for image_shape {shape}"
        )


def _short_name(name: str) -> str:
    """``fc1.weight`` -> ``fc1``: bar labels stay readable; biases keep their suffix."""
    return name[: -len(".weight")] if name.endswith(".weight") else name


def _percent(x: float) -> str:
    """0.98 -> '98%', 0.995 -> '99.5%' (no float noise)."""
    return f"{100 * x:.4g}%"


def _density_label(x: float) -> str:
    """Bar labels: two decimals below 1 % (0.86%), one above (47.0%)."""
    return f"{100 * x:.2f}%" if x < 0.01 else f"{100 * x:.1f}%"


# ----------------------------------------------------------------------------- data

def first_layer_mask_image(mask: MaskLike | Masks, image_shape: Sequence[int] = (28, 28)) -> np.ndarray:
    """Per input pixel, the fraction of the first Linear layer's units that keep a connection to it.

    ``mask`` is the (out_features, in_features) mask of the first Linear layer, or a dict of masks
    (its first entry is used: ``named_parameters`` order puts the first layer first). The mean over
    the output units is reshaped to ``image_shape``; values lie in [0, 1] (1: every hidden unit
    still reads that pixel, 0: the pixel is cut off). Raises ValueError when in_features is not
    height x width.
    """
    shape = _check_image_shape(image_shape)
    where = "mask"
    if isinstance(mask, Mapping):
        if not mask:
            raise ValueError("masks is empty; expected {parameter name: bool Tensor}")
        name, mask = next(iter(mask.items()))
        where = f"mask {name!r}"
    array = _as_float_array(mask, where)
    if array.ndim != 2:
        raise ValueError(
            f"{where} must be the 2-D (out_features, in_features) mask of a Linear layer, "
            f"got shape {tuple(array.shape)}"
        )
    if array.shape[1] != shape[0] * shape[1]:
        raise ValueError(
            f"{where} has shape {tuple(array.shape)}: its {array.shape[1]} inputs cannot be reshaped to "
            f"image_shape {shape} ({shape[0] * shape[1]} pixels)"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{where} has shape {tuple(array.shape)}: no output units to average over")
    return array.mean(axis=0).reshape(shape)


def layer_densities(masks_or_model: nn.Module | Masks) -> dict[str, float]:
    """Kept fraction of every masked tensor, ``{name: density}``, in the masks' order."""
    masks = _masks_dict(masks_or_model)
    out = {}
    for name, mask in masks.items():
        array = _as_float_array(mask, f"mask {name!r}")
        out[str(name)] = float(array.mean()) if array.size else math.nan
    return out


# ----------------------------------------------------------------------------- plots

def plot_layer_density(masks_or_model: nn.Module | Masks, ax: Axes | None = None, *,
                       title: str | None = None) -> Axes:
    """Bar plot of the kept fraction per layer, each bar labelled, global density as a dashed line.

    Accepts a dict of masks or a masked model. Returns the Axes (one bar per masked tensor).
    """
    masks = _masks_dict(masks_or_model)
    density = layer_densities(masks)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    names = [_short_name(n) for n in density]
    values = list(density.values())
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[_density_label(v) for v in values], fontsize=8, padding=2)
    total = sum(_as_float_array(m, "mask").size for m in masks.values())
    kept = sum(_as_float_array(m, "mask").sum() for m in masks.values())
    if total:
        ax.axhline(kept / total, color="tab:red", linestyle="--", linewidth=1,
                   label=f"global {_percent(kept / total)}")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("kept fraction of the layer")
    ax.set_xlabel("layer")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_mask_image(mask: MaskLike | Masks, image_shape: Sequence[int] = (28, 28), ax: Axes | None = None, *,
                    title: str | None = None, colorbar: bool = True) -> Axes:
    """Show :func:`first_layer_mask_image` of ``mask`` (one image; the colour scale ends at its maximum).

    The scale runs from 0 to the image's own maximum, so sparse masks stay visible; the colour bar
    gives the actual fraction of hidden units. Returns the Axes.
    """
    image = first_layer_mask_image(mask, image_shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3.0))
    vmax = float(image.max()) if image.max() > 0 else 1.0
    shown = ax.imshow(image, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        bar = ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("fraction of units kept", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if title is not None:
        ax.set_title(title)
    return ax


def draw_sparsity_panels(scores: Mapping[str, torch.Tensor], sparsity: float, axes: Sequence[Axes], *,
                         image_shape: Sequence[int] = (28, 28), colorbar: bool = True) -> dict[str, torch.Tensor]:
    """Threshold ``scores`` at ``sparsity`` and draw density bars in ``axes[0]``, the image in ``axes[1]``.

    Only the global top-κ selection runs here (no forward or backward pass). Returns the masks.
    """
    scores = _check_scores(scores)
    if len(axes) != 2:
        raise ValueError(f"axes must be two Axes (density bars, mask image), got {len(axes)}")
    masks = masks_from_scores(scores, sparsity)
    plot_layer_density(masks, ax=axes[0], title=f"sparsity {_percent(sparsity)}")
    plot_mask_image(masks, image_shape, ax=axes[1], colorbar=colorbar,
                    title=f"first layer, {_percent(sparsity)}")
    return masks


def static_sparsity_grid(scores: Mapping[str, torch.Tensor], sparsities: Sequence[float] = (0.5, 0.9, 0.95, 0.98, 0.99),
                         *, image_shape: Sequence[int] = (28, 28)) -> Figure:
    """Small multiples for readers without a kernel: one column per sparsity, bars above, image below.

    The static counterpart of :func:`sparsity_explorer`. Returns the Figure (2 x len(sparsities) axes
    plus one colour bar per image).
    """
    scores = _check_scores(scores)
    values = _check_sparsities(sparsities)
    shape = _check_image_shape(image_shape)
    _check_first_layer(scores, shape, "the grid")  # before a figure exists: a refusal leaves none open
    n = len(values)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.2), squeeze=False)
    try:
        for j, sparsity in enumerate(values):
            draw_sparsity_panels(scores, sparsity, (axes[0, j], axes[1, j]), image_shape=shape)
            if j > 0:
                axes[0, j].set_ylabel("")
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _panel_html(fig: Figure, alt: str) -> str:
    """The figure as an ``<img>`` with a description: what a widget shows, even in a static page."""
    import base64
    import html
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}" style="max-width: 100%">'


def _panel_alt(masks: Mapping[str, torch.Tensor], sparsity: float, image_shape: Sequence[int]) -> str:
    """Alt text of one slider panel: the sparsity, each layer's kept fraction, and what the image is."""
    density = ", ".join(f"{_short_name(n)} {_density_label(v)}" for n, v in layer_densities(masks).items())
    first = _short_name(next(iter(masks)))
    return (f"Sparsity {_percent(sparsity)}: bars of the kept fraction of each layer ({density}) and a "
            f"{image_shape[0]} by {image_shape[1]} image of the fraction of {first} units that read each input pixel.")


def sparsity_explorer(scores: Mapping[str, torch.Tensor], sparsities: Sequence[float] = DEFAULT_SPARSITIES, *,
                      initial: float | None = None, image_shape: Sequence[int] = (28, 28)) -> Any:
    """An ipywidgets slider over ``sparsities`` that shows the two panels of :func:`draw_sparsity_panels`.

    Scores are thresholded once per stop, nothing is re-scored: the panels of every stop are drawn
    when the explorer is built (a fraction of a second each), so moving the slider is
    instant. With ipywidgets 8 the browser itself switches panels (a ``Stack`` linked to the slider
    by ``jslink``), so the slider also works in the published HTML book, where no kernel runs;
    with ipywidgets 7 (Colab) the kernel switches them. Each panel is an image with a description
    (alt text) naming the sparsity and each layer's kept fraction.

    Returns an ``ipywidgets.VBox`` (slider above the panels) with extra attributes for scripts and
    tests: ``slider``, ``panels`` (one ``ipywidgets.HTML`` per stop), ``view`` (the widget that
    shows one of them), ``link`` (the slider-to-view ``jslink``, None on ipywidgets 7), ``figures`` (one closed Figure per stop), and ``figure`` and ``masks``,
    those of the slider's current stop. ``initial`` defaults to 0.98 when offered, else the middle stop.
    """
    import ipywidgets as widgets  # lazy: only the interactive view needs it

    scores = _check_scores(scores)
    values = _check_sparsities(sparsities)
    shape = _check_image_shape(image_shape)
    _check_first_layer(scores, shape, "the explorer")
    if initial is None:
        initial = 0.98 if 0.98 in values else values[len(values) // 2]
    if initial not in values:
        raise ValueError(f"initial={initial!r} must be one of the slider stops {list(values)!r}")

    figures, panels, stop_masks = [], [], []
    for sparsity in values:
        fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4))
        try:
            masks = draw_sparsity_panels(scores, sparsity, axes, image_shape=shape)
            stop_masks.append(masks)
            fig.tight_layout()
            panels.append(widgets.HTML(_panel_html(fig, _panel_alt(masks, sparsity, shape))))
        finally:
            plt.close(fig)  # shown through its panel only, never again by the notebook
        figures.append(fig)

    slider = widgets.SelectionSlider(
        options=[(_percent(v), v) for v in values], value=initial, description="sparsity",
        continuous_update=True, layout=widgets.Layout(width="420px"),
    )
    index = values.index(initial)
    if hasattr(widgets, "Stack"):  # ipywidgets >= 8: linked in the browser, no kernel needed
        view = widgets.Stack(panels, selected_index=index)
        link = widgets.jslink((slider, "index"), (view, "selected_index"))
    else:  # ipywidgets 7 has no Stack: the kernel swaps the panel
        view, link = widgets.Box([panels[index]]), None
        slider.observe(lambda change: setattr(view, "children", (panels[change["new"]],)), names="index")
    box = widgets.VBox([slider, view])

    def follow(sparsity: float) -> None:
        box.figure, box.masks = figures[values.index(sparsity)], stop_masks[values.index(sparsity)]

    slider.observe(lambda change: follow(change["new"]), names="value")
    box.slider, box.panels, box.view, box.link, box.figures = slider, panels, view, link, figures
    follow(initial)
    return box
