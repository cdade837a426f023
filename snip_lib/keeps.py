"""What SNIP keeps: the measurements behind chapter 7 (the paper's Figures 2-4 and Table 3).

Four questions, one group of functions each:

- **Which inputs does the mask keep?** (Fig. 2) :func:`class_mask_images` scores one network on
  single-class mini-batches and returns the first layer's mask image for every (sparsity, class);
  :func:`class_mean_images` and :func:`correlation_matrix` say how much each mask image looks
  like the digits of its class.
- **How much does the mask depend on the scoring batch?** (Fig. 3) :func:`disjoint_batches`
  draws batches that share no example, and :func:`mask_stability` measures, for each batch size,
  how many kept connections two independent batches agree on. It needs no training, so it is
  cheap enough for every run of the book, unlike the error curve of Fig. 3.
- **Does the pruned network memorise?** (Fig. 4) :func:`shuffled_labels` gives a copy of a
  training set with its labels permuted, and :func:`label_fitting_run` trains a dense or
  SNIP-pruned network on true or shuffled labels (the scoring batch always has true labels)
  and returns the training-loss curve.
- **Does the scoring initialisation change the mask?** (Table 3)
  :func:`scoring_init_densities` gives the per-layer density of the masks scored under several
  initialisations.

:func:`recorded_results` loads result files written by the chapter's long runs
(``results/keeps/...`` in the repository), and says plainly when there are none.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from snip_lib.data import InMemoryImageDataset

__all__ = [
    "LABEL_KINDS",
    "RESULTS_SUBDIR",
    "chance_overlap",
    "class_mask_images",
    "class_mean_images",
    "correlation_matrix",
    "disjoint_batches",
    "label_fitting_run",
    "mask_overlap",
    "mask_stability",
    "plot_image_grid",
    "recorded_results",
    "results_dir",
    "scoring_init_densities",
    "shuffled_labels",
]

#: Training labels for :func:`label_fitting_run`: the real ones or a fixed permutation of them.
LABEL_KINDS: tuple[str, ...] = ("true", "shuffled")
#: Where the chapter's suites write their result files, under the repository's ``results/``.
RESULTS_SUBDIR = "keeps"
_SCORE_CHUNK = 5000  # examples per scoring pass when a big batch is scored (bounded memory)


# ----------------------------------------------------------------------------- input checks

def _check_sparsities(sparsities: Any) -> tuple[float, ...]:
    if isinstance(sparsities, (str, bytes)) or not isinstance(sparsities, Sequence) or not sparsities:
        raise ValueError(f"sparsities must be a non-empty sequence of numbers in [0, 1), got {sparsities!r}")
    out = []
    for s in sparsities:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0.0 <= float(s) < 1.0:
            raise ValueError(f"every sparsity must be a number in [0, 1), got {s!r} in {list(sparsities)!r}")
        out.append(float(s))
    return tuple(out)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_seed(seed: Any) -> int:
    from snip_lib.init import check_seed

    return check_seed(seed, allow_none=False)


def _check_classes(classes: Any, num_classes: int = 10) -> tuple[int, ...]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, range)) or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty sequence of labels in 0..{num_classes - 1}, got {classes!r}")
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c < num_classes:
            raise ValueError(f"every class must be a label in 0..{num_classes - 1}, got {c!r} in {list(classes)!r}")
        out.append(int(c))
    return tuple(out)


def _check_images(name: str, images: Any) -> np.ndarray:
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array of images (K, H, W), got dtype {array.dtype}")
    if array.ndim < 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty numeric array of images (K, H, W), got shape {array.shape}")
    array = array.reshape(array.shape[0], -1).astype(np.float64)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise ValueError(f"{name}[{bad}] has a NaN or infinite pixel; a correlation needs finite pixels")
    return array


def _centred(array: np.ndarray) -> np.ndarray:
    """Rows minus their means, with the rows of a constant image set to NaN.

    Why: subtracting the mean of a constant row leaves rounding residue (about 1e-16 for 0.3 or
    k/300), not zeros, and dividing by its tiny norm would give a correlation of about 0 instead
    of an undefined one. A row counts as constant when its spread is within rounding of its values.
    """
    centred = array - array.mean(axis=1, keepdims=True)
    rounding = 8 * np.finfo(np.float64).eps * np.abs(array).max(axis=1, initial=0.0)
    centred[np.abs(centred).max(axis=1) <= rounding] = np.nan
    return centred


# ----------------------------------------------------------------------------- Figure 2

def class_mask_images(
    model: torch.nn.Module,
    sparsities: Sequence[float],
    *,
    classes: Sequence[int] = tuple(range(10)),
    n: int = 100,
    seed: int = 0,
    dataset: str = "mnist",
) -> np.ndarray:
    """First-layer mask images of ``model`` scored on single-class batches (the paper's Fig. 2).

    For every class, ``n`` training examples of that class only (drawn with ``seed``) are scored
    once; every sparsity then only moves the global threshold. Entry ``[i, j]`` of the result,
    shape ``(len(sparsities), len(classes), 28, 28)``, is
    :func:`snip_lib.viz.first_layer_mask_image` of the mask at ``sparsities[i]`` scored on class
    ``classes[j]``: per pixel, the fraction of first-layer units that keep reading it. The model
    must start with a Linear layer over the 784 pixels (LeNet-300-100). Raises
    :class:`snip_lib.data.DatasetUnavailableError` when ``dataset`` cannot be loaded here.
    """
    from snip_lib import data, snip, viz

    values = _check_sparsities(sparsities)
    labels = _check_classes(classes)
    n = _check_positive_int("n", n)
    seed = _check_seed(seed)
    device = next(model.parameters()).device
    out = np.empty((len(values), len(labels), 28, 28))
    for j, c in enumerate(labels):
        x, y = data.first_batch(dataset, n, seed=seed, classes=[c])
        scores = snip.connection_sensitivity(model, x.to(device), y.to(device))
        for i, s in enumerate(values):
            out[i, j] = viz.first_layer_mask_image(snip.masks_from_scores(scores, s))
    return out


def class_mean_images(dataset: str = "mnist", *, split: str = "train",
                      classes: Sequence[int] = tuple(range(10))) -> np.ndarray:
    """Average image of every class, pixels in [0, 1], shape ``(len(classes), H, W)``.

    The raw pixel intensities (not the standardised inputs), so a bright pixel is ink.
    """
    from snip_lib import data

    labels = _check_classes(classes)
    ds = data.load_dataset(dataset, split)
    out = []
    for c in labels:
        chosen = ds.images[ds.targets == c]
        if len(chosen) == 0:
            raise ValueError(f"class {c} has no example in the {split!r} split of {dataset!r}")
        out.append(chosen.float().mean(dim=(0, 1)).numpy() / 255.0)
    return np.stack(out)


def correlation_matrix(images: Any, references: Any) -> np.ndarray:
    """Pearson correlation of every image with every reference, over pixels: shape ``(K, M)``.

    ``images`` is ``(K, H, W)`` (or ``(K, P)``), ``references`` ``(M, H, W)`` with the same
    number of pixels, all finite. A constant image (or reference) has no defined correlation: its
    row (column) is NaN, also when its pixels are a value like 0.3 whose mean is not exact.
    """
    a = _check_images("images", images)
    b = _check_images("references", references)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"images have {a.shape[1]} pixels but references have {b.shape[1]}")
    a, b = _centred(a), _centred(b)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a @ b.T) / (na * nb.T)


def plot_image_grid(images: Any, *, row_labels: Sequence[str] | None = None,
                    col_labels: Sequence[str] | None = None, cmap: str = "viridis",
                    cell_size: float = 0.95, title: str | None = None) -> Figure:
    """Small multiples of ``images`` (R, C, H, W), each on its own 0-to-max colour scale.

    Rows are labelled on the left, columns on top. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    array = np.asarray(images, dtype=float)
    if array.ndim != 4 or 0 in array.shape:
        raise ValueError(f"images must have shape (rows, cols, H, W), got {array.shape}")
    rows, cols = array.shape[:2]
    for what, labels, size in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{what} has {len(labels)} entries for {size} {what.split('_')[0]}s")
    fig, axes = plt.subplots(rows, cols, figsize=(cell_size * cols + 0.6, cell_size * rows + 0.4),
                             squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.05})
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            image = array[i, j]
            top = float(image.max()) if image.max() > 0 else 1.0
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=top, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and col_labels is not None:
                ax.set_title(str(col_labels[j]), fontsize=9)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[i]), fontsize=9, rotation=0, ha="right", va="center")
    if title is not None:
        height = fig.get_figheight()
        fig.suptitle(title, y=1.0 - 0.08 / height)
        fig.subplots_adjust(top=1.0 - 0.5 / height)
    return fig


# ----------------------------------------------------------------------------- Figure 3

def disjoint_batches(dataset: str, sizes: Sequence[int], *, seed: int = 0, split: str = "train") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of the given ``sizes`` drawn from ``split`` without replacement: no example twice.

    ``seed`` fixes one random permutation of the split; the batches are consecutive pieces of it,
    so they are independent draws of real (unaugmented) examples with their true labels.
    """
    from snip_lib import data

    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise ValueError(f"sizes must be a non-empty sequence of positive ints, got {sizes!r}")
    counts = [_check_positive_int("every size", s) for s in sizes]
    seed = _check_seed(seed)
    ds = data.load_dataset(dataset, split)
    if sum(counts) > len(ds):
        raise ValueError(f"batches of sizes {counts} need {sum(counts)} examples; the {split!r} split has {len(ds)}")
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    out, start = [], 0
    for count in counts:
        out.append(ds.get_batch(order[start:start + count]))
        start += count
    return out


def _kept_by_a(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> int:
    """Checks a pair of masks for the overlap functions; returns how many connections ``a`` keeps."""
    if not isinstance(a, Mapping) or not isinstance(b, Mapping) or not a:
        raise ValueError("a and b must be non-empty dicts {parameter name: bool Tensor}")
    if set(a) != set(b):
        raise ValueError(f"the masks cover different parameters: {sorted(a)} vs {sorted(b)}")
    for which, masks in (("a", a), ("b", b)):
        for k, m in masks.items():
            if not isinstance(m, torch.Tensor):
                raise TypeError(f"mask {which}[{k!r}] must be a Tensor, got {type(m).__name__}")
            if m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"mask {which}[{k!r}] must hold only 0 and 1 (a bool Tensor), got dtype "
                                 f"{m.dtype} with other values: scores are not masks (use snip.masks_from_scores)")
    for k in a:
        if a[k].shape != b[k].shape:
            raise ValueError(f"the masks of {k!r} have different shapes: {tuple(a[k].shape)} vs {tuple(b[k].shape)}")
    kept = sum(int(m.sum()) for m in a.values())
    if kept == 0:
        raise ValueError("mask a keeps no connection; the overlap is undefined")
    return kept


def mask_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Fraction of ``a``'s kept connections that ``b`` keeps too (symmetric when both keep κ)."""
    kept = _kept_by_a(a, b)
    both = sum(int((a[k].bool() & b[k].bool().to(a[k].device)).sum()) for k in a)
    return both / kept


def chance_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """The :func:`mask_overlap` of ``a`` and ``b`` expected by chance, given how much each layer keeps.

    It is the expected overlap if ``b`` kept the same number of connections in every tensor but
    chose them uniformly at random: sum over tensors of kept_a * density_b, over kept_a. This is
    the baseline to compare an overlap with. Two masks from one global threshold share their very
    uneven layer densities, so they agree by chance far more often than two uniformly random masks
    of the same overall density would (a 50 %-dense classifier alone contributes half its share).
    """
    kept = _kept_by_a(a, b)
    return sum(int(a[k].sum()) * int(b[k].sum()) / b[k].numel() for k in a) / kept


def _chunked(x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return list(x.split(_SCORE_CHUNK)), list(y.split(_SCORE_CHUNK))


def mask_stability(
    model: torch.nn.Module,
    batch_sizes: Sequence[int],
    sparsity: float,
    *,
    seed: int = 0,
    reference_size: int | None = None,
    dataset: str = "mnist",
) -> pd.DataFrame:
    """How much a SNIP mask depends on *which* examples were scored, for each batch size.

    For every size b, two batches of b examples that share no example (:func:`disjoint_batches`)
    are scored on ``model``; a third, disjoint ``reference`` batch (default: all training
    examples left over, about 34k for MNIST when b goes up to 10k) stands in for the whole
    training set. Returns a DataFrame with one row per b: ``overlap`` (fraction of connections kept
    by both masks of size b), ``overlap_chance`` (what the two masks would share by chance, given
    their layer densities: :func:`chance_overlap`), ``overlap_reference`` (mask A against the reference mask), and
    ``image_corr_reference`` (correlation of their first-layer images, when the first layer
    reads 28x28 images; NaN otherwise), plus the per-layer densities of mask A.
    """
    import pandas as pd

    from snip_lib import data, snip, viz

    sizes = [_check_positive_int("every batch size", b) for b in batch_sizes] if (
        isinstance(batch_sizes, Sequence) and not isinstance(batch_sizes, (str, bytes)) and batch_sizes
    ) else None
    if sizes is None:
        raise ValueError(f"batch_sizes must be a non-empty sequence of positive ints, got {batch_sizes!r}")
    (sparsity,) = _check_sparsities([sparsity])
    seed = _check_seed(seed)
    n_split = len(data.load_dataset(dataset, "train"))
    largest = max(sizes)
    left = n_split - 2 * largest
    if left < 1:
        raise ValueError(f"batch size {largest} is too large: two disjoint batches of it need {2 * largest} of the "
                         f"{n_split} training examples and leave none for the reference; at most "
                         f"{(n_split - 1) // 2} fits")
    if reference_size is None:
        reference_size = left
    reference_size = _check_positive_int("reference_size", reference_size)
    if reference_size > left:
        raise ValueError(f"reference_size={reference_size} does not fit: 2 x {largest} examples for the pairs "
                         f"leave {left} of {n_split}")
    pair_a, pair_b, reference = disjoint_batches(dataset, [largest, largest, reference_size], seed=seed)
    device = next(model.parameters()).device
    ref_mask = snip.snip_masks(model, *_chunked(reference[0].to(device), reference[1].to(device)), sparsity)

    def image(mask):
        try:
            return viz.first_layer_mask_image(mask)
        except ValueError:
            return None

    ref_image = image(ref_mask)
    rows = []
    for b in sizes:
        # Nested prefixes of two disjoint pools: the b-example batches of different sizes share examples,
        # the two batches of one size never do.
        xa, ya = pair_a[0][:b].to(device), pair_a[1][:b].to(device)
        xb, yb = pair_b[0][:b].to(device), pair_b[1][:b].to(device)
        mask_a = snip.snip_masks(model, *_chunked(xa, ya), sparsity)
        mask_b = snip.snip_masks(model, *_chunked(xb, yb), sparsity)
        img_a = image(mask_a)
        corr = (float(correlation_matrix(img_a[None], ref_image[None])[0, 0])
                if img_a is not None and ref_image is not None else math.nan)
        row = {"batch_size": b, "overlap": mask_overlap(mask_a, mask_b),
               "overlap_chance": chance_overlap(mask_a, mask_b),
               "overlap_reference": mask_overlap(mask_a, ref_mask), "image_corr_reference": corr}
        row.update({f"density {name}": d for name, d in snip.layerwise_density(mask_a).items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["reference_size"] = reference_size
    return frame


# ----------------------------------------------------------------------------- Figure 4

def shuffled_labels(dataset: InMemoryImageDataset, seed: int = 0) -> InMemoryImageDataset:
    """A copy of ``dataset`` whose labels are a fixed random permutation of its own labels.

    The images are shared, not copied; the label counts stay the same, but the link between an
    image and its label is gone, so the only way to fit the labels is to memorise them
    (Zhang et al., 2017). ``dataset`` must be a :class:`snip_lib.data.InMemoryImageDataset`
    (what :func:`snip_lib.data.load_dataset` returns).
    """
    from snip_lib import data

    if not isinstance(dataset, data.InMemoryImageDataset):
        raise TypeError(
            f"shuffled_labels needs a snip_lib.data.InMemoryImageDataset (from load_dataset), got {type(dataset).__name__}"
        )
    from snip_lib.init import check_seed

    seed = check_seed(seed, allow_none=False)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    copy = data.InMemoryImageDataset(
        dataset.images, dataset.targets[order], dataset.mean, dataset.std,
        name=dataset.name, split=dataset.split, augment=dataset.augment, sequential=dataset.sequential,
        is_smoke=dataset.is_smoke, num_classes=dataset.num_classes, source_indices=dataset.source_indices,
    )
    copy.labels_shuffled = True
    return copy


def label_fitting_run(
    arch: str,
    sparsity: float,
    labels: str,
    *,
    n_train: int,
    epochs: int,
    seed: int = 0,
    init: str = "glorot_uniform",
    optimizer: str = "adam",
    lr: float | None = None,
    weight_decay: float | None = None,
    batch_size: int = 100,
    saliency_batch: int = 100,
    n_test: int = 1000,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``arch`` (dense if ``sparsity == 0``, else SNIP-pruned) on true or shuffled labels.

    The set-up of the paper's Fig. 4, made small: ``n_train`` training examples (a fixed subset
    of the 90 % training split), with ``labels="true"`` or ``"shuffled"`` (:func:`shuffled_labels`,
    permutation seeded by ``seed``). The SNIP scoring batch always carries the **true** labels:
    ``saliency_batch`` training examples drawn with ``seed``. Training: ``optimizer`` with a
    constant learning rate (default Adam, lr 1e-3, no weight decay, the paper's Table 3 setting),
    batches of ``batch_size``, test error after every epoch on ``n_test`` test images (a fixed
    random subset drawn by :func:`snip_lib.data.load_dataset`, not the first ones).

    Returns a JSON-ready ``{"kind": "label_fitting", "seed", "config", "metrics", "wall_time"}``;
    ``metrics`` holds the per-epoch ``train_loss``, ``train_error`` and ``test_error`` curves and
    their final values. A dense run scores nothing and records ``saliency_batch`` and
    ``saliency_labels`` as ``None``.
    """
    from snip_lib import data, experiments, masking, models, snip
    from snip_lib import init as init_mod
    from snip_lib.train import TrainConfig, fit, resolve_device, seed_everything

    start = time.perf_counter()
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {', '.join(LABEL_KINDS)}, got {labels!r}")
    (sparsity,) = _check_sparsities([sparsity])
    for name, value in (("n_train", n_train), ("epochs", epochs), ("batch_size", batch_size),
                        ("saliency_batch", saliency_batch), ("n_test", n_test)):
        _check_positive_int(name, value)
    init_mod.canonical_scheme(init)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, schedule="constant")
    dev = resolve_device(device)

    seed_everything(seed)
    model = init_mod.apply(models.build(arch), init, seed=seed).to(dev)
    dataset = models.dataset_for(arch)
    sequential = experiments.family_of(arch) == "rnn"
    train_set = data.load_dataset(dataset, "train", limit=n_train, sequential=sequential)
    if len(train_set) < n_train:
        raise ValueError(f"n_train={n_train} exceeds the {len(train_set)} training examples")
    if labels == "shuffled":
        train_set = shuffled_labels(train_set, seed=seed)
    test_set = data.load_dataset(dataset, "test", limit=n_test, sequential=sequential)
    if len(test_set) < n_test:
        raise ValueError(f"n_test={n_test} exceeds the {len(test_set)} test examples")
    n_prunable = sum(p.numel() for p in snip.prunable_parameters(model).values())
    kept = n_prunable
    if sparsity > 0:
        x, y = data.first_batch(dataset, saliency_batch, seed=seed, sequential=sequential)  # true labels
        masks = snip.snip_masks(model, x.to(dev), y.to(dev), sparsity)
        masking.apply_masks(model, masks)
        kept = snip.kept_count(masks)
    loader_device = dev if dev.type != "cpu" else None
    history = fit(
        model,
        data.make_loader(train_set, batch_size, shuffle=True, seed=seed, device=loader_device),
        data.make_loader(test_set, 1000, shuffle=False, device=loader_device),
        config, device=dev, progress=progress,
    )
    metrics = {
        "train_loss": list(history.train_loss),
        "train_error": list(history.train_error),
        "test_error": list(history.test_error),
        "final_train_loss": history.train_loss[-1],
        "final_train_error": history.train_error[-1],
        "final_test_error": history.final_test_error,
        "kept_parameters": kept,
        "prunable_parameters": n_prunable,
        "iterations": history.iterations,
        "train_time": history.wall_time,
    }
    cfg = {
        "arch": getattr(model, "snip_arch", arch), "dataset": dataset, "sparsity": sparsity, "labels": labels,
        "seed": seed, "init": init, "n_train": n_train, "n_test": len(test_set),
        # a dense run scores nothing, so it records no scoring batch (as experiments.prune_and_train)
        "saliency_batch": saliency_batch if sparsity > 0 else None,
        "saliency_labels": "true" if sparsity > 0 else None, "device": str(dev), "train": config.to_dict(),
    }
    return {"kind": "label_fitting", "seed": seed, "config": cfg, "metrics": metrics,
            "wall_time": time.perf_counter() - start}


# ----------------------------------------------------------------------------- Table 3

def scoring_init_densities(
    arch: str,
    schemes: Sequence[str],
    sparsity: float,
    *,
    seeds: Sequence[int] = (0,),
    init: str = "glorot_uniform",
    n: int = 100,
) -> pd.DataFrame:
    """Per-layer density of SNIP masks when only the *scoring* initialisation changes.

    For each seed, a network initialised with ``init`` (the one that would be trained) is
    scored through ``snip_masks(..., scoring_init=scheme)`` on ``n`` training examples drawn
    with that seed, as in the paper's Table 3. Returns a long DataFrame with columns
    ``scheme``, ``seed``, ``layer`` (the parameter name without its ``.weight`` suffix: ``fc1``),
    ``density``.
    """
    import pandas as pd

    from snip_lib import data, experiments, models, snip
    from snip_lib import init as init_mod

    if isinstance(schemes, (str, bytes)) or not isinstance(schemes, Sequence) or not schemes:
        raise ValueError(f"schemes must be a non-empty sequence of scheme names, got {schemes!r}")
    for scheme in schemes:
        init_mod.canonical_scheme(scheme)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    seeds = [_check_seed(seed) for seed in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ (a repeated seed counts one draw twice in a mean), got {list(seeds)}")
    (sparsity,) = _check_sparsities([sparsity])
    sequential = experiments.family_of(arch) == "rnn"
    rows = []
    for seed in seeds:
        net = init_mod.apply(models.build(arch), init, seed=seed)
        x, y = data.first_batch(models.dataset_for(arch), n, seed=seed, sequential=sequential)
        for scheme in schemes:
            masks = snip.snip_masks(net, x, y, sparsity, scoring_init=scheme,
                                    seed=seed + experiments.SCORING_SEED_OFFSET)
            for layer, d in snip.layerwise_density(masks).items():
                rows.append({"scheme": scheme, "seed": seed, "layer": layer.removesuffix(".weight"), "density": d})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- recorded results

def results_dir() -> Path:
    """The repository's ``results/`` folder (see :func:`snip_lib.results.results_dir`)."""
    from snip_lib import results

    return results.results_dir()


def recorded_results(suite: str, kind: str | None = None, *, mode: str | None = "full") -> pd.DataFrame:
    """The result files of one of the chapter's suites, ``results/keeps/<suite>/``, as a DataFrame.

    One row per run (see :func:`snip_lib.results.load_results`). ``mode`` keeps only runs made
    in that mode (default ``"full"``: a quick smoke run of a suite is not a result); ``None``
    keeps all. Raises ``FileNotFoundError`` with the command that produces them when the folder
    is missing or holds no matching result.
    """
    from snip_lib import results

    if not isinstance(suite, str) or not suite or "/" in suite or suite.startswith("."):
        raise ValueError(f"suite must be a plain suite name such as 'figure3', got {suite!r}")
    how = (f"produce them with `python -m snip_lib.suites_keeps {suite} --threads 1` from the repository root "
           f"(written to results/{RESULTS_SUBDIR}/{suite}/)")
    return results.load_recorded(results_dir() / RESULTS_SUBDIR / suite, label=f"results for {suite!r}", how=how,
                                 kind=kind, mode=mode)
