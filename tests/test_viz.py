"""Behaviour of snip_lib.viz: mask images, density bars, the static grid and the sparsity slider."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from snip_lib import masking, snip, viz


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class TinyImageMLP(nn.Module):
    """A 4x3-pixel 'image' MLP: 12 -> 5 -> 3 (small enough to check by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def tiny_scores(seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct random scores with the shapes of TinyImageMLP's weights."""
    g = torch.Generator().manual_seed(seed)
    return {"fc1.weight": torch.rand(5, 12, generator=g), "fc2.weight": torch.rand(3, 5, generator=g)}


# ----------------------------------------------------------------------------- first_layer_mask_image

def test_mask_image_of_hand_made_mask():
    mask = torch.zeros(4, 6, dtype=torch.bool)  # 4 hidden units reading a 2x3 image
    mask[:, 0] = True          # pixel (0, 0): every unit
    mask[0, 4] = True          # pixel (1, 1): one unit in four
    mask[1:3, 5] = True        # pixel (1, 2): two units in four
    image = viz.first_layer_mask_image(mask, image_shape=(2, 3))
    expected = np.array([[1.0, 0.0, 0.0], [0.0, 0.25, 0.5]])
    assert image.shape == (2, 3)
    np.testing.assert_allclose(image, expected)


def test_mask_image_default_shape_and_range_for_mnist_layer():
    mask = torch.rand(300, 784, generator=torch.Generator().manual_seed(1)) < 0.1
    image = viz.first_layer_mask_image(mask)
    assert image.shape == (28, 28)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.mean() == pytest.approx(mask.float().mean().item())


def test_mask_image_takes_first_entry_of_a_dict_and_numeric_masks():
    first = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    masks = {"fc1.weight": first, "fc2.weight": torch.ones(3, 1)}
    np.testing.assert_allclose(viz.first_layer_mask_image(masks, (2, 2)), [[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(viz.first_layer_mask_image(first.numpy(), (2, 2)), [[1.0, 0.0], [1.0, 1.0]])


def test_mask_image_rejects_wrong_number_of_inputs_naming_shapes():
    with pytest.raises(ValueError, match=r"\(300, 100\).*\(28, 28\).*784"):
        viz.first_layer_mask_image(torch.ones(300, 100, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"'conv1.weight'.*\(20, 1, 5, 5\)"):
        viz.first_layer_mask_image({"conv1.weight": torch.ones(20, 1, 5, 5, dtype=torch.bool)})


@pytest.mark.parametrize("bad", [(28,), (0, 28), (28.0, 28), "28x28", (True, 2)])
def test_mask_image_rejects_bad_image_shape(bad):
    with pytest.raises(ValueError, match="image_shape"):
        viz.first_layer_mask_image(torch.ones(2, 784, dtype=torch.bool), bad)


def test_mask_image_rejects_non_binary_masks_and_other_types():
    with pytest.raises(ValueError, match="0/1"):
        viz.first_layer_mask_image(torch.full((2, 4), 0.5), (2, 2))
    with pytest.raises(TypeError, match="list"):
        viz.first_layer_mask_image([[1, 0, 1, 0]], (2, 2))
    with pytest.raises(ValueError, match="empty"):
        viz.first_layer_mask_image({}, (2, 2))


# ----------------------------------------------------------------------------- density bars

def test_layer_density_bars_match_masks():
    masks = snip.masks_from_scores(tiny_scores(), 0.75)
    ax = viz.plot_layer_density(masks)
    heights = [patch.get_height() for patch in ax.patches]
    expected = [m.float().mean().item() for m in masks.values()]
    assert len(ax.patches) == 2
    np.testing.assert_allclose(heights, expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fc1", "fc2"]
    global_line = ax.lines[0].get_ydata()[0]
    assert global_line == pytest.approx(1 - 0.75, abs=1 / 75)


def test_layer_density_reads_a_masked_model():
    model = TinyImageMLP()
    masks = snip.masks_from_scores(tiny_scores(), 0.5)
    masking.apply_masks(model, masks)
    ax = viz.plot_layer_density(model)
    np.testing.assert_allclose([p.get_height() for p in ax.patches],
                               list(viz.layer_densities(masks).values()))
    with pytest.raises(ValueError, match="no masks"):
        viz.plot_layer_density(TinyImageMLP())
    with pytest.raises(TypeError, match="dict"):
        viz.plot_layer_density([torch.ones(2, 2, dtype=torch.bool)])


def test_plot_mask_image_draws_one_image_into_given_axes():
    fig, ax = plt.subplots()
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, :6] = True
    returned = viz.plot_mask_image(mask, (4, 3), ax=ax)
    assert returned is ax
    assert len(ax.images) == 1
    np.testing.assert_allclose(ax.images[0].get_array(), viz.first_layer_mask_image(mask, (4, 3)))
    assert len(fig.axes) == 2  # the image and its colour bar


# ----------------------------------------------------------------------------- static grid

def test_static_grid_has_one_column_per_sparsity():
    sparsities = (0.5, 0.8, 0.9)
    fig = viz.static_sparsity_grid(tiny_scores(), sparsities, image_shape=(4, 3))
    image_axes = [ax for ax in fig.axes if ax.images]
    bar_axes = [ax for ax in fig.axes if len(ax.patches) == 2]
    assert len(image_axes) == 3 and len(bar_axes) == 3
    fc1_density = [ax.patches[0].get_height() for ax in bar_axes]
    # Higher sparsity keeps fewer fc1 connections (weakly monotone for nested top-k sets).
    assert fc1_density[0] >= fc1_density[1] >= fc1_density[2]
    kept = [masks_kept(ax) for ax in image_axes]
    assert kept[0] > kept[2]


def masks_kept(ax) -> float:
    return float(np.asarray(ax.images[0].get_array()).sum())


@pytest.mark.parametrize("bad", [(), (0.5, 1.0), (0.5, -0.1), "0.9", (0.5, True)])
def test_static_grid_rejects_bad_sparsities(bad):
    with pytest.raises(ValueError, match="sparsit"):
        viz.static_sparsity_grid(tiny_scores(), bad, image_shape=(4, 3))


def test_static_grid_refuses_before_drawing():
    """A first layer that is no image leaves no empty figure behind (a notebook would show it)."""
    open_before = plt.get_fignums()
    with pytest.raises(ValueError, match=r"\(5, 12\).*20 inputs"):
        viz.static_sparsity_grid(tiny_scores(), (0.5,), image_shape=(4, 5))
    assert plt.get_fignums() == open_before


def test_static_grid_rejects_bad_scores():
    with pytest.raises(ValueError, match="non-empty dict"):
        viz.static_sparsity_grid({}, (0.5,), image_shape=(4, 3))
    with pytest.raises(TypeError, match="fc1.weight"):
        viz.static_sparsity_grid({"fc1.weight": np.ones((5, 12))}, (0.5,), image_shape=(4, 3))


# ----------------------------------------------------------------------------- slider

def test_explorer_builds_and_redraws_on_slider_change():
    pytest.importorskip("ipywidgets")
    scores = tiny_scores()
    box = viz.sparsity_explorer(scores, (0.5, 0.75, 0.9), image_shape=(4, 3))
    assert box.slider.value == 0.75  # middle stop: 0.98 is not offered
    before_image = np.array(box.figure.axes[1].images[0].get_array())
    before_kept = snip.kept_count(box.masks)
    box.slider.value = 0.9
    after_image = np.array(box.figure.axes[1].images[0].get_array())
    assert snip.kept_count(box.masks) < before_kept
    assert snip.kept_count(box.masks) == round((1 - 0.9) * 75)
    assert not np.allclose(before_image, after_image)
    expected = snip.masks_from_scores(scores, 0.9)
    assert all(torch.equal(box.masks[k], expected[k]) for k in expected)


def test_explorer_panels_are_described_images_switched_in_the_browser():
    """Every stop is drawn up front as an <img> with alt text; with ipywidgets 8 a Stack linked to
    the slider by jslink switches them in the browser, so the published page's slider works."""
    widgets = pytest.importorskip("ipywidgets")
    import html
    import re

    open_before = plt.get_fignums()
    scores = tiny_scores()
    stops = (0.5, 0.75, 0.9)
    box = viz.sparsity_explorer(scores, stops, image_shape=(4, 3))
    assert plt.get_fignums() == open_before  # drawn, closed, shown through the panels only
    assert len(box.panels) == len(box.figures) == len(stops)
    for stop, panel in zip(stops, box.panels):
        match = re.fullmatch(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)" style="[^"]*">', panel.value)
        assert match, panel.value[:120]
        alt = html.unescape(match.group(2))
        density = snip.layerwise_density(snip.masks_from_scores(scores, stop))
        assert alt.startswith(f"Sparsity {100 * stop:g}%: ") and "4 by 3 image" in alt, alt
        assert f"fc2 {100 * density['fc2.weight']:.1f}%" in alt, alt
    assert box.panels[0].value != box.panels[2].value
    if not hasattr(widgets, "Stack"):
        return
    assert isinstance(box.view, widgets.Stack) and box.view.selected_index == 1
    assert box.link.source == (box.slider, "index") and box.link.target == (box.view, "selected_index")
    box.slider.value = 0.9  # what the browser does through the link, the kernel's attributes follow
    assert box.figure is box.figures[2] and snip.kept_count(box.masks) == round((1 - 0.9) * 75)


def test_explorer_defaults_to_98_percent_and_checks_inputs():
    pytest.importorskip("ipywidgets")
    g = torch.Generator().manual_seed(0)
    scores = {"fc1.weight": torch.rand(8, 784, generator=g), "fc2.weight": torch.rand(3, 8, generator=g)}
    box = viz.sparsity_explorer(scores)
    assert box.slider.value == 0.98
    with pytest.raises(ValueError, match=r"\(5, 12\).*784"):
        viz.sparsity_explorer(tiny_scores())  # default image_shape (28, 28) does not fit 12 inputs
    with pytest.raises(ValueError, match="initial"):
        viz.sparsity_explorer(scores, (0.5, 0.9), initial=0.7)


def test_glue_stores_numpy_scalars_as_python_numbers(monkeypatch):
    """MyST-NB formats a glued value from its repr, so np.float64(4.8) must arrive as 4.8."""
    import sys
    import types

    import numpy as np

    from snip_lib import display

    stored = {}
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: stored.update({name: value})
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    display.glue("x", np.float64(4.8))
    display.glue("n", np.int64(3))
    display.glue("s", "text")
    assert stored == {"x": 4.8, "n": 3, "s": "text"}
    assert type(stored["x"]) is float and type(stored["n"]) is int and repr(stored["x"]) == "4.8"
