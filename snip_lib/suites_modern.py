"""The long runs of chapter 6 ("Modern models"): Table 2 and the recurrent columns of Table 3.

Importing this module registers the suites in :data:`snip_lib.experiments.SUITES`; they run
from the ordinary command line and write into ``results/<suite>/``::

    python -m snip_lib reproduce table2-rnn --out results/table2-rnn --threads 1
    python -m snip_lib reproduce table2-rnn --arch lstm-b gru-b --seeds 0 --out results/table2-rnn
    python -m snip_lib reproduce table3-rnn --out results/table3-rnn --threads 1
    python -m snip_lib reproduce table2-cifar --out results/table2-cifar        # needs CIFAR-10 and a GPU

Recipes (what the paper leaves open is chosen here and said):

- ``table2-rnn``: LSTM-s/b and GRU-s/b on sequential MNIST (28 steps of 28 pixels), dense and
  SNIP at 95 %, with the paper's MNIST recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4,
  batch 100, x0.1 decay) plus the book's 500-iteration warm-up and **gradient-norm clipping at
  5** (standard for recurrent nets; not in the paper, which gives no RNN details). The budget is
  **shortened** because a CPU is all this book may assume: one epoch costs about 25 s for the
  small (h=128) and 95 s for the big (h=256) models on one core, so the small models train
  :data:`SMALL_EPOCHS` and the big ones :data:`BIG_EPOCHS` epochs, with the decay moved to the
  same fraction of the run as in the LeNet recipe (25k of 27k iterations).
- ``table3-rnn``: LSTM-s and GRU-s at 90 %, the *scoring* initialisation RN, TN, VS-X or VS-H,
  the trained network always from VS-X, Adam lr 1e-3 without weight decay (the paper's Table 3
  setting), clipping at 5, :data:`TABLE3_EPOCHS` epochs.
- ``table2-cifar``: AlexNet-s/b at 90 %, VGG-C/D/like at 95/95/97 %, WRN-16-8/16-10/22-8 at 95 %
  with the official code's piecewise schedule (``schedule="official"``) and the paper's
  augmentation; a GPU job (hours per run), not run on CPU.

The rest of the module serves the chapter (``book/06_modern_models.ipynb``): the parameter table
of the twelve networks, a SNIP mask of each on one batch (:func:`snip_architecture`), its layer
densities and layer collapse (:func:`density_frame`, :func:`collapse_table`), a few training steps
of each masked network (:func:`train_check`), what the recurrent cells keep gate by gate
(:func:`gate_table`), a timing of one training epoch dense vs masked
(:func:`time_epochs`, for a GPU), and the recorded runs of the suites above
(:func:`recorded_results`, :func:`run_status`, :func:`summarize_table2`, :func:`summarize_table3`).
Where CIFAR-10 cannot be had, the CIFAR helpers fall back to random FakeData and say so
(``smoke=True``): such a run exercises the code path and is never a result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snip_lib import experiments

if TYPE_CHECKING:  # only for annotations: importing torch here would slow down `import snip_lib`
    import pandas as pd
    import torch

__all__ = [
    "BIG_EPOCHS",
    "FULL_RNN_EPOCHS",
    "CIFAR_SPARSITY",
    "PAPER_PARAMS",
    "PAPER_TABLE2",
    "PAPER_TABLE3_RNN",
    "RNN_ARCHS",
    "SMALL_EPOCHS",
    "SUITE_NAMES",
    "TABLE2_ARCHS",
    "TABLE3_EPOCHS",
    "TABLE3_SPARSITY",
    "TABLE3_SCHEMES",
    "ArchitectureMask",
    "collapse_table",
    "decay_for",
    "density_frame",
    "gate_table",
    "history_frame",
    "parameter_table",
    "recorded_results",
    "run_status",
    "scoring_batch",
    "snip_architecture",
    "summarize_table2",
    "summarize_table3",
    "time_epochs",
    "train_check",
]

#: Epochs of the shortened recurrent budgets (one epoch = 540 iterations of batch 100).
SMALL_EPOCHS = 10
#: Epochs of the big recurrent models (h = 256) in ``table2-rnn``: about 95 s each on one core.
BIG_EPOCHS = 3
#: Epochs of each run of ``table3-rnn`` (LSTM-s and GRU-s, Adam).
TABLE3_EPOCHS = 3
#: Sparsity of the paper's Table 3 (κ̄ = 90).
TABLE3_SPARSITY = 0.9
#: Gradient-norm clipping of every recurrent run (not in the paper).
RNN_CLIP = 5.0
WARMUP_ITERATIONS = 500
#: The recurrent networks of Table 2, small (h = 128) and big (h = 256).
RNN_ARCHS: tuple[str, ...] = ("lstm-s", "lstm-b", "gru-s", "gru-b")
#: The book's full MNIST budget (chapter 5), used by ``table2-rnn-small-50ep``.
FULL_RNN_EPOCHS = experiments.FAMILY_DEFAULTS["rnn"]["full_epochs"]

#: Sparsity of each convolutional row of Table 2.
CIFAR_SPARSITY: dict[str, float] = {
    "alexnet-s": 0.9, "alexnet-b": 0.9, "vgg-c": 0.95, "vgg-d": 0.95, "vgg-like": 0.97,
    "wrn-16-8": 0.95, "wrn-16-10": 0.95, "wrn-22-8": 0.95,
}

#: Table 2 of the paper: arch -> (sparsity, reference error %, SNIP error %).
PAPER_TABLE2: dict[str, tuple[float, float, float]] = {
    "alexnet-s": (0.9, 14.12, 14.99), "alexnet-b": (0.9, 13.92, 14.50),
    "vgg-c": (0.95, 6.82, 7.27), "vgg-d": (0.95, 6.76, 7.09), "vgg-like": (0.97, 8.26, 8.00),
    "wrn-16-8": (0.95, 6.21, 6.63), "wrn-16-10": (0.95, 5.91, 6.43), "wrn-22-8": (0.95, 6.14, 5.85),
    "lstm-s": (0.95, 1.88, 1.57), "lstm-b": (0.95, 1.15, 1.35),
    "gru-s": (0.95, 1.87, 2.41), "gru-b": (0.95, 1.71, 1.52),
}

#: Table 3 of the paper, recurrent columns: arch -> scoring init -> (mean, std) error % at 90 %.
PAPER_TABLE3_RNN: dict[str, dict[str, tuple[float, float]]] = {
    "lstm-s": {"RN": (2.93, 0.20), "TN": (3.03, 0.17), "VS-X": (1.48, 0.09), "VS-H": (1.47, 0.08)},
    "gru-s": {"RN": (47.61, 20.49), "TN": (46.48, 22.25), "VS-X": (1.80, 0.10), "VS-H": (1.80, 0.14)},
}
_TABLE3_SCHEMES = {"RN": "random_normal", "TN": "truncated_normal", "VS-X": "glorot_uniform", "VS-H": "he_normal"}


def decay_for(epochs: int, iterations_per_epoch: int = 540) -> int:
    """The x0.1 decay point of a shortened MNIST run (see :func:`snip_lib.experiments.shortened_decay_every`)."""
    return experiments.shortened_decay_every(epochs, iterations_per_epoch)


def _rnn_run(arch: str, sparsity: float) -> dict:
    epochs = SMALL_EPOCHS if arch.endswith("-s") else BIG_EPOCHS
    return {"arch": arch, "sparsity": sparsity, "epochs": epochs,
            "train_options": {"decay_every": decay_for(epochs), "warmup_iterations": WARMUP_ITERATIONS,
                              "clip_grad_norm": RNN_CLIP}}


_SUITES = (
    experiments.Suite(
        name="table2-rnn",
        description=f"Table 2, recurrent rows: LSTM-s/b, GRU-s/b on sequential MNIST, dense and SNIP 95 %; "
                    f"SHORTENED ({SMALL_EPOCHS} epochs small, {BIG_EPOCHS} big), warm-up, clipping at {RNN_CLIP:g}",
        runs=tuple(_rnn_run(a, s) for a in RNN_ARCHS for s in (0.0, 0.95)),
        seeds=(0, 1),
    ),
    experiments.Suite(
        name="table3-rnn",
        description="Table 3, recurrent columns: LSTM-s and GRU-s at 90 % by scoring initialisation; trained from "
                    f"VS-X with Adam lr 1e-3, {TABLE3_EPOCHS} epochs, clipping at {RNN_CLIP:g}",
        runs=tuple(
            {"arch": arch, "sparsity": TABLE3_SPARSITY, "init": "glorot_uniform", "scoring_init": scheme,
             "optimizer": "adam",
             "schedule": "constant", "epochs": TABLE3_EPOCHS, "train_options": {"clip_grad_norm": RNN_CLIP}}
            for arch in ("lstm-s", "gru-s") for scheme in _TABLE3_SCHEMES.values()
        ),
        seeds=(0, 1),
    ),
    experiments.Suite(
        name="table2-rnn-small-50ep",
        description="Table 2, the small recurrent rows pruned by SNIP (LSTM-s, GRU-s at 95 %) with the FULL book "
                    f"MNIST budget: {FULL_RNN_EPOCHS} epochs, x0.1 at 25k iterations, warm-up, clipping at "
                    f"{RNN_CLIP:g} (is the gap of the {SMALL_EPOCHS}-epoch rows the budget?)",
        runs=tuple({"arch": a, "sparsity": 0.95, "epochs": FULL_RNN_EPOCHS,
                    "train_options": {"warmup_iterations": WARMUP_ITERATIONS, "clip_grad_norm": RNN_CLIP}}
                   for a in ("lstm-s", "gru-s")),
        seeds=(0,),
    ),
    experiments.Suite(
        name="table2-cifar",
        description="Table 2, convolutional rows on CIFAR-10 (dense and SNIP at the paper's sparsity), official "
                    "schedule and augmentation; needs CIFAR-10 and a GPU",
        runs=tuple({"arch": a, "sparsity": s} for a, sp in CIFAR_SPARSITY.items() for s in (0.0, sp)),
        seeds=(0,),
    ),
)
#: The suites this module registers with :data:`snip_lib.experiments.SUITES`.
SUITE_NAMES: tuple[str, ...] = tuple(s.name for s in _SUITES)

for _suite in _SUITES:
    if _suite.name not in experiments.SUITES:
        experiments.register_suite(_suite)


# ============================================================================= chapter 6 helpers

#: The twelve networks of Table 2, in the paper's order.
TABLE2_ARCHS: tuple[str, ...] = tuple(PAPER_TABLE2)
#: Table 3's scoring initialisations: the paper's label -> snip_lib scheme.
TABLE3_SCHEMES: dict[str, str] = dict(_TABLE3_SCHEMES)
#: Table 2's "# Params" column as printed: arch -> (dense network, kept by SNIP).
PAPER_PARAMS: dict[str, tuple[str, str]] = {
    "alexnet-s": ("5.1m", "507k"), "alexnet-b": ("8.5m", "849k"), "vgg-c": ("10.5m", "526k"),
    "vgg-d": ("15.2m", "762k"), "vgg-like": ("14.9m", "449k"), "wrn-16-8": ("10.0m", "548k"),
    "wrn-16-10": ("17.1m", "856k"), "wrn-22-8": ("17.2m", "858k"), "lstm-s": ("137k", "6.8k"),
    "lstm-b": ("536k", "26.8k"), "gru-s": ("104k", "5.2k"), "gru-b": ("404k", "20.2k"),
}
#: Suites whose result files live in ``results/<suite>/``.
RECORDED_SUITES: tuple[str, ...] = SUITE_NAMES
_SMOKE_DATASET = "cifar10-fake"
_PROTOCOLS = {
    "final": "metrics.final_test_error",
    "at_best_val": "metrics.test_error_at_best_val",
    "best_test": "metrics.best_test_error",
}


def _paper_count(text: str) -> float:
    """A count as Table 2 prints it ('5.1m', '6.8k') as a number."""
    return float(text[:-1]) * {"k": 1e3, "m": 1e6}[text[-1]]


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# ----------------------------------------------------------------------------- the twelve networks


def parameter_table(built: Mapping[str, torch.nn.Module] | None = None) -> pd.DataFrame:
    """Parameter counts of Table 2's twelve networks, ours next to the paper's.

    One row per network, in the paper's order: ``arch``; ``params`` (ours,
    :func:`snip_lib.models.count_parameters`: weights and biases, batch norm left out, as the
    paper counts); ``paper`` (Table 2, as printed) and ``difference %`` (ours against it);
    ``prunable`` (the weights SNIP scores: no biases, no batch norm); ``sparsity`` (%, Table 2);
    ``kept`` (what SNIP keeps of the prunable weights at that sparsity) and ``paper kept``.
    ``built`` (name -> model) reuses networks already built; the others are built here.
    """
    import pandas as pd

    from snip_lib import models, snip

    built = dict(built or {})
    rows = []
    for arch in TABLE2_ARCHS:
        model = built.get(arch)
        if model is None:
            model = models.build(arch)
        prunable = sum(p.numel() for p in snip.prunable_parameters(model).values())
        params = models.count_parameters(model)
        paper, paper_kept = PAPER_PARAMS[arch]
        sparsity = PAPER_TABLE2[arch][0]
        rows.append({
            "arch": arch, "params": params, "paper": paper,
            "difference %": round(100 * (params - _paper_count(paper)) / _paper_count(paper), 2),
            "prunable": prunable, "sparsity": round(100 * sparsity, 1),
            "kept": int(round((1 - sparsity) * prunable)), "paper kept": paper_kept,
        })
    return pd.DataFrame(rows)


@dataclass
class ArchitectureMask:
    """One network pruned by SNIP on one batch, before any training (see :func:`snip_architecture`).

    ``model`` carries the masks (:func:`snip_lib.masking.apply_masks`); ``masks`` are the same
    masks as bool tensors on the CPU. ``dataset`` is ``"mnist"``, ``"cifar10"`` or
    ``"cifar10-fake"`` (random FakeData: a smoke run, the mask means nothing).
    """

    arch: str
    model: torch.nn.Module
    masks: dict[str, torch.Tensor]
    sparsity: float
    dataset: str
    batch_size: int
    seconds: float

    @property
    def smoke(self) -> bool:
        """True when the batch was random FakeData (CIFAR-10 not available)."""
        return self.dataset == _SMOKE_DATASET


def scoring_batch(arch: str, n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` clean training examples for scoring ``arch``, and the name of where they came from.

    MNIST networks get MNIST (rows as time steps for the recurrent ones); CIFAR networks get
    CIFAR-10 where it is available and otherwise random FakeData, named ``"cifar10-fake"`` so
    that every caller can label what it shows as a smoke run.
    """
    import torch

    from snip_lib import data, models

    _check_positive_int("n", n)
    name = models.dataset_for(arch)
    if name == "cifar10" and not data.available("cifar10"):
        x, y = data.fake_cifar10(n, seed=seed).get_batch(torch.arange(n))
        return x, y, _SMOKE_DATASET
    x, y = data.first_batch(name, n, split="train", seed=seed, sequential=experiments.family_of(arch) == "rnn")
    return x, y, name


def snip_architecture(
    arch: str,
    *,
    sparsity: float | None = None,
    n: int | None = None,
    seed: int = 0,
    init: str = experiments.DEFAULT_INIT,
    bn_mode: str = "eval",
    device: str | torch.device | None = None,
) -> ArchitectureMask:
    """Build ``arch``, initialise it, prune it with SNIP on one batch of ``n`` examples.

    The recipe of :func:`snip_lib.experiments.prune_and_train` (same initialisation, batch
    norm in eval mode while scoring, as the official code), without the training.
    ``sparsity`` defaults to Table 2's for the network, ``n`` to the paper's scoring batch
    (100 MNIST, 128 CIFAR). ``device=None`` picks the fastest one available.
    """
    from snip_lib import init as init_mod
    from snip_lib import masking, models, snip
    from snip_lib.train import resolve_device, seed_everything

    model = models.build(arch)
    arch = model.snip_arch
    if sparsity is None:
        if arch not in PAPER_TABLE2:
            raise ValueError(f"{arch!r} is not in Table 2; pass sparsity explicitly")
        sparsity = PAPER_TABLE2[arch][0]
    n = experiments.defaults_for(arch)["saliency_batch"] if n is None else _check_positive_int("n", n)
    dev = resolve_device(device)
    seed_everything(seed)
    init_mod.apply(model, init, seed=seed)
    x, y, dataset = scoring_batch(arch, n, seed=seed)
    model.to(dev)
    start = time.perf_counter()
    masks = snip.snip_masks(model, x.to(dev), y.to(dev), sparsity, bn_mode=bn_mode)
    seconds = time.perf_counter() - start
    masking.apply_masks(model, masks)
    return ArchitectureMask(arch=arch, model=model, masks={k: v.cpu() for k, v in masks.items()},
                            sparsity=float(sparsity), dataset=dataset, batch_size=n, seconds=seconds)


def _masks_of(value: Any) -> dict[str, torch.Tensor]:
    if isinstance(value, ArchitectureMask):
        return value.masks
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"expected an ArchitectureMask or a dict of masks, got {type(value).__name__}")


def _layer_kind(name: str, shape: Sequence[int]) -> str:
    if len(shape) == 4:
        return "shortcut (1x1)" if "shortcut" in name else "conv"
    return "recurrent" if name.startswith("cell.") else "fc"


def density_frame(masks_by_arch: Mapping[str, Any]) -> pd.DataFrame:
    """Kept fraction of every masked layer of every network, in long form for plotting.

    ``masks_by_arch`` maps a name to an :class:`ArchitectureMask` or a dict of bool masks.
    Columns: ``arch``, ``position`` (1-based, in the network's parameter order, i.e. from
    input to output), ``layer`` (parameter name without ``.weight``), ``kind`` (conv,
    shortcut (1x1), fc, recurrent), ``weights``, ``kept`` and ``density``.
    """
    import pandas as pd

    if not isinstance(masks_by_arch, Mapping) or not masks_by_arch:
        raise ValueError("masks_by_arch must be a non-empty dict of name -> masks")
    rows = []
    for arch, value in masks_by_arch.items():
        for position, (name, mask) in enumerate(_masks_of(value).items(), start=1):
            weights, kept = mask.numel(), int(mask.sum())
            rows.append({"arch": arch, "position": position, "layer": name.removesuffix(".weight"),
                         "kind": _layer_kind(name, tuple(mask.shape)), "weights": weights, "kept": kept,
                         "density": kept / weights if weights else math.nan})
    return pd.DataFrame(rows)


def collapse_table(masks_by_arch: Mapping[str, Any]) -> pd.DataFrame:
    """Layer collapse per network: which layers lost every connection, and the sparsest layer.

    One row per network: ``arch``, ``layers`` (masked), ``sparsity %`` (achieved),
    ``collapsed`` (names, :func:`snip_lib.masking.layer_collapse`; empty list if none),
    ``sparsest layer`` with its ``sparsest density`` and ``sparsest kept`` (connections), and
    ``densest layer`` with its ``densest density``. A collapsed layer disconnects the network:
    nothing reaches the output.
    """
    import pandas as pd

    from snip_lib import masking

    frame = density_frame(masks_by_arch)
    rows = []
    for arch, value in masks_by_arch.items():
        g = frame[frame["arch"] == arch]
        low, high = g.loc[g["density"].idxmin()], g.loc[g["density"].idxmax()]
        rows.append({
            "arch": arch, "layers": len(g), "sparsity %": round(100 * (1 - g["kept"].sum() / g["weights"].sum()), 2),
            "collapsed": [n.removesuffix(".weight") for n in masking.layer_collapse(_masks_of(value))],
            "sparsest layer": low["layer"], "sparsest density": low["density"], "sparsest kept": int(low["kept"]),
            "densest layer": high["layer"], "densest density": high["density"],
        })
    return pd.DataFrame(rows)


_GATES = {"lstm": ("input gate i", "forget gate f", "candidate g", "output gate o"),
          "gru": ("reset gate r", "update gate u")}


def gate_table(masks_by_arch: Mapping[str, Any]) -> pd.DataFrame:
    """What a mask keeps *inside* each recurrent cell: per gate, from the input and from the state.

    Why: SNIP prunes globally, and a layer-level density hides that one gate of a cell can lose
    every connection while the cell's matrix as a whole keeps many. The LSTM's
    ``cell.gates.weight`` stacks the rows of gates i, f, g, o; the GRU's stacks r and u and its
    ``cell.candidate.weight`` holds the candidate (see :mod:`snip_lib.models`). Their columns
    read the projected input x_t first, then the previous state h_{t-1}.

    ``masks_by_arch`` as in :func:`density_frame`; networks without a recurrent cell are left
    out. Columns: ``arch``, ``gate``, ``reads`` ("input x_t" or "state h_t-1"), ``weights``,
    ``kept``, ``density``.
    """
    import pandas as pd

    rows = []
    for arch, value in masks_by_arch.items():
        masks = _masks_of(value)
        gates = masks.get("cell.gates.weight")
        if gates is None:
            continue
        kind = "gru" if "cell.candidate.weight" in masks else "lstm"
        names = _GATES[kind]
        hidden = gates.shape[0] // len(names)
        inputs = gates.shape[1] - hidden
        blocks = [(name, gates[k * hidden:(k + 1) * hidden]) for k, name in enumerate(names)]
        if kind == "gru":
            blocks.append(("candidate c", masks["cell.candidate.weight"]))
        for gate, block in blocks:
            for reads, part in (("input x_t", block[:, :inputs]), ("state h_t-1", block[:, inputs:])):
                kept = int(part.sum())
                rows.append({"arch": arch, "gate": gate, "reads": reads, "weights": part.numel(), "kept": kept,
                             "density": kept / part.numel()})
    if not rows:
        raise ValueError("no recurrent network (a cell.gates.weight mask) among the masks given")
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- training


def training_data(arch: str, n_train: int, n_test: int, *, seed: int = 0):
    """``(train, test, dataset)``: ``n_train`` training and ``n_test`` test examples for ``arch``.

    The paper's data and preprocessing (CIFAR-10 training examples augmented); where CIFAR-10
    is not available, random FakeData of the same format and ``dataset="cifar10-fake"``.
    """
    from snip_lib import data, models

    _check_positive_int("n_train", n_train)
    _check_positive_int("n_test", n_test)
    name = models.dataset_for(arch)
    if name == "cifar10" and not data.available("cifar10"):
        return (data.fake_cifar10(n_train, seed=seed, augment=True), data.fake_cifar10(n_test, seed=seed + 2),
                _SMOKE_DATASET)
    sequential = experiments.family_of(arch) == "rnn"
    train = data.load_dataset(name, "train", augment=name == "cifar10", sequential=sequential, limit=n_train)
    test = data.load_dataset(name, "test", sequential=sequential, limit=n_test)
    return train, test, name


def _train_config(arch: str, *, epochs: int, batch_size: int, amp: bool, channels_last: bool):
    from snip_lib.train import TrainConfig

    rnn = experiments.family_of(arch) == "rnn"
    return TrainConfig(epochs=epochs, batch_size=batch_size, schedule="constant",
                       clip_grad_norm=RNN_CLIP if rnn else None, amp=amp, channels_last=channels_last)


def _revived(model: torch.nn.Module, masks: Mapping[str, torch.Tensor]) -> int:
    """Pruned weights that are not zero (should stay 0 through training)."""
    params = dict(model.named_parameters())
    return sum(int((params[name].detach()[~mask.to(params[name].device)] != 0).sum()) for name, mask in masks.items())


def train_check(
    model: torch.nn.Module,
    *,
    batches: int,
    batch_size: int | None = None,
    test_examples: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Train a network of the book for ``batches`` mini-batches and check that its mask holds.

    Why: a mask is only useful if the pruned network trains, and stays pruned while it does.
    This runs the library's training loop (:func:`snip_lib.train.fit`, the paper's SGD: lr 0.1,
    momentum 0.9, weight decay 5e-4, constant; gradient clipping at 5 for the recurrent
    networks, as in the suites) for one short epoch on ``training_data``. ``model`` must
    come from :func:`snip_lib.models.build` (it carries ``snip_arch``), masked or not.

    Returns ``arch``, ``dataset`` (``"cifar10-fake"``: smoke run), ``iterations``,
    ``train_loss`` (mean over the epoch), ``test_error`` (%, on ``test_examples``),
    ``kept`` (connections, None when unmasked), ``revived`` (pruned weights that became
    non-zero: 0 when masking works) and ``seconds``.
    """
    from snip_lib import data, masking
    from snip_lib.train import fit, resolve_device, seed_everything

    arch = getattr(model, "snip_arch", None)
    if arch is None:
        raise ValueError("model must be built by snip_lib.models.build (it needs the snip_arch attribute)")
    _check_positive_int("batches", batches)
    batch_size = experiments.defaults_for(arch)["batch_size"] if batch_size is None else batch_size
    _check_positive_int("batch_size", batch_size)
    test_examples = batch_size if test_examples is None else _check_positive_int("test_examples", test_examples)
    dev = resolve_device(device)
    masks = masking.get_masks(model) if masking.is_masked(model) else {}
    train_ds, test_ds, dataset = training_data(arch, batches * batch_size, test_examples, seed=seed)
    seed_everything(seed)
    loader_device = dev if dev.type != "cpu" else None
    history = fit(model, data.make_loader(train_ds, batch_size, shuffle=True, seed=seed, device=loader_device),
                  data.make_loader(test_ds, batch_size, shuffle=False, device=loader_device),
                  _train_config(arch, epochs=1, batch_size=batch_size, amp=amp, channels_last=channels_last),
                  device=dev, progress=False)
    return {"arch": arch, "dataset": dataset, "iterations": history.iterations,
            "train_loss": history.train_loss[-1], "test_error": history.test_error[-1],
            "kept": sum(int(m.sum()) for m in masks.values()) if masks else None,
            "revived": _revived(model, masks) if masks else 0, "seconds": history.wall_time}


def time_epochs(
    archs: Sequence[str] = ("vgg-d", "wrn-16-8"),
    *,
    device: str | torch.device | None = None,
    n_examples: int = 45_000,
    batch_size: int = 128,
    epochs: int = 2,
    settings: Sequence[tuple[bool, bool]] = ((False, False), (True, True)),
    seed: int = 0,
) -> pd.DataFrame:
    """Seconds per training epoch of each network dense and SNIP-pruned (Table 2's sparsity), side by side.

    Each (network, dense or pruned, ``(amp, channels_last)`` setting) trains ``epochs`` epochs
    of ``n_examples`` (default: one CIFAR-10 training split) through :func:`snip_lib.train.fit`;
    the last epoch is timed (the first warms up cuDNN's algorithm search), including its test
    pass over a single batch. The data are CIFAR-10 where available and FakeData otherwise
    (the time of an epoch does not depend on the pixel values; ``dataset`` says which).
    Meant for a GPU: masks are kept by zeroed weights and gradient hooks, so the pruned network
    does the dense network's arithmetic and the interesting number is the hooks' overhead.

    Columns: ``arch``, ``variant`` ("dense" or "SNIP NN %"), ``amp``, ``channels_last``,
    ``seconds per epoch``, ``images/s``, ``vs dense`` (ratio to the dense run with the same
    setting), ``device``, ``dataset``.
    """
    import pandas as pd
    import torch

    from snip_lib import data, masking
    from snip_lib import init as init_mod
    from snip_lib import models, snip
    from snip_lib.train import fit, resolve_device, seed_everything

    if isinstance(archs, str) or not archs:
        raise ValueError(f"archs must be a non-empty sequence of network names, got {archs!r}")
    for arch in archs:  # each must have a Table 2 sparsity, before anything trains
        if models.build(arch).snip_arch not in PAPER_TABLE2:
            raise ValueError(f"time_epochs times the networks of Table 2 at its sparsity; {arch!r} is not one of "
                             f"{', '.join(PAPER_TABLE2)}")
    for name, value in (("n_examples", n_examples), ("batch_size", batch_size), ("epochs", epochs)):
        _check_positive_int(name, value)
    settings = [tuple(s) for s in settings]
    if not settings or any(len(s) != 2 or not all(isinstance(b, bool) for b in s) for s in settings):
        raise ValueError(f"settings must be (amp, channels_last) pairs of bools, got {settings!r}")
    dev = resolve_device(device)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    loader_device = dev if dev.type != "cpu" else None
    rows = []
    for arch in archs:
        train_ds, test_ds, dataset = training_data(arch, n_examples, batch_size, seed=seed)
        x, y, _ = scoring_batch(arch, batch_size, seed=seed)
        sparsity = PAPER_TABLE2[models.build(arch).snip_arch][0]
        for amp, channels_last in settings:
            for pruned in (False, True):
                seed_everything(seed)
                model = init_mod.apply(models.build(arch), experiments.DEFAULT_INIT, seed=seed).to(dev)
                if pruned:
                    masking.apply_masks(model, snip.snip_masks(model, x.to(dev), y.to(dev), sparsity))
                history = fit(model, data.make_loader(train_ds, batch_size, shuffle=True, seed=seed,
                                                      device=loader_device),
                              data.make_loader(test_ds, batch_size, shuffle=False, device=loader_device),
                              _train_config(arch, epochs=epochs, batch_size=batch_size, amp=amp,
                                            channels_last=channels_last),
                              device=dev, progress=False)
                seconds = history.epoch_times[-1]
                rows.append({"arch": arch, "variant": f"SNIP {100 * sparsity:g} %" if pruned else "dense",
                             "amp": amp, "channels_last": channels_last, "seconds per epoch": seconds,
                             "images/s": len(train_ds) / seconds, "device": device_name, "dataset": dataset})
                del model
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
    frame = pd.DataFrame(rows)
    dense = frame[frame["variant"] == "dense"].set_index(["arch", "amp", "channels_last"])["seconds per epoch"]
    frame["vs dense"] = [r["seconds per epoch"] / dense[(r["arch"], r["amp"], r["channels_last"])]
                         for _, r in frame.iterrows()]
    return frame


# ----------------------------------------------------------------------------- recorded runs


def results_dir() -> Path:
    """The repository's ``results/`` folder (see :func:`snip_lib.results.results_dir`)."""
    from snip_lib import results

    return results.results_dir()


def _check_suite(suite: Any) -> str:
    if suite not in RECORDED_SUITES:
        raise ValueError(f"suite must be one of {', '.join(RECORDED_SUITES)}, got {suite!r}")
    return suite


def recorded_results(suite: str, *, mode: str | None = "full") -> pd.DataFrame:
    """The recorded runs of ``suite`` (``results/<suite>/*.json``) as a DataFrame, one row per run.

    Columns as in :func:`snip_lib.results.load_results`. ``mode`` keeps only runs made in
    that mode (default ``"full"``: a quick run is not a result); ``None`` keeps all. Raises
    ``FileNotFoundError`` with the command that produces the files when there are none (on
    Colab, where only the notebook is fetched: clone the repository).
    """
    from snip_lib import results

    _check_suite(suite)
    how = (f"clone the book's repository (the files are in results/{suite}/) and run the notebook there, or "
           f"produce them with `python -m snip_lib reproduce {suite} --out results/{suite} --threads 1` "
           "from the repository root")
    return results.load_recorded(results_dir() / suite, label=f"runs of {suite!r}", how=how,
                                 kind="prune_and_train", mode=mode, noun=f"runs of {suite!r}")


def _label_of(scheme: Any) -> str:
    labels = {v: k for k, v in TABLE3_SCHEMES.items()}
    return "-" if scheme is None else labels.get(scheme, str(scheme))


def run_status(suite: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every run a suite asks for, and whether it is recorded: what a table built now is missing.

    One row per (run, seed) of the suite, in the suite's order: ``file`` (its result file
    name), ``arch``, ``sparsity`` (%), ``scoring init`` (Table 3 label, "-" when the trained
    weights are scored), ``seed`` and ``recorded`` (a full-mode file is in ``frame``, default
    :func:`recorded_results`).
    """
    import pandas as pd

    _check_suite(suite)
    if frame is None:
        try:
            frame = recorded_results(suite)
        except FileNotFoundError:
            frame = None
    have = set() if frame is None or len(frame) == 0 else {Path(p).name for p in frame["path"]}
    spec = experiments.SUITES[suite]
    rows = []
    for run, seed in experiments.planned_runs(spec):  # a run's own seeds count, as reproduce runs them
        name = experiments.result_name(spec, run, seed)
        rows.append({"file": name, "arch": run["arch"], "sparsity": round(100 * run["sparsity"], 2),
                     "scoring init": _label_of(run.get("scoring_init")), "seed": seed, "recorded": name in have})
    return pd.DataFrame(rows)


def _check_frame(frame: Any, needed: set[str]) -> None:
    if frame is None or len(frame) == 0:
        raise ValueError("the summary needs a non-empty results frame (see recorded_results)")
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"results frame lacks columns {sorted(missing)}; load prune_and_train results")


def _group_summary(g: pd.DataFrame, include_smoke: bool = False) -> dict[str, Any]:
    """Seeds, epochs, mean/std of each error protocol and provenance of one group of runs.

    With ``include_smoke`` (smoke runs kept on request), ``smoke`` says whether the group's runs
    are smoke runs on FakeData, so that such a row cannot pass for a result.
    """
    epochs = sorted({t["epochs"] for t in g["config.train"]})
    row: dict[str, Any] = {"n": len(g), "seeds": sorted(int(s) for s in g["seed"]),
                           "epochs": epochs[0] if len(epochs) == 1 else epochs}
    for name, col in _PROTOCOLS.items():
        row[f"{name}_mean"] = float(g[col].mean())
        row[f"{name}_std"] = float(g[col].std(ddof=1)) if len(g) > 1 else math.nan
    row["wall_time_mean"] = float(g["wall_time"].mean())
    row["wall_time_min"], row["wall_time_max"] = float(g["wall_time"].min()), float(g["wall_time"].max())
    names = g["provenance.device_name"] if "provenance.device_name" in g else g["config.device"]
    row["device"] = ", ".join(sorted({str(d) for d in names}))
    from snip_lib.results import _date_range, _machine_names, commit_label

    platforms = [p for p in g["provenance.platform"] if isinstance(p, str)] if "provenance.platform" in g else []
    row["machine"] = ", ".join(_machine_names(platforms)) or "?"

    dirty = g["provenance.git_dirty"] if "provenance.git_dirty" in g else [None] * len(g)
    row["commit"] = ", ".join(sorted({commit_label(c, d) for c, d in
                                      zip(g.get("provenance.git_commit", [None] * len(g)), dirty)}))
    stamps = g["provenance.timestamp_utc"] if "provenance.timestamp_utc" in g else []
    row["recorded"] = _date_range(stamps) if len(stamps) else ""
    if include_smoke:
        from snip_lib.results import smoke_rows

        row["smoke"] = bool(smoke_rows(g).any())
    return row


def _arch_order(arch: str) -> int:
    return TABLE2_ARCHS.index(arch) if arch in TABLE2_ARCHS else len(TABLE2_ARCHS)


def summarize_table2(frame: pd.DataFrame, *, include_smoke: bool = False) -> pd.DataFrame:
    """One row per (network, sparsity) of a Table 2 results frame, with the paper's error.

    A row whose runs differ in any recorded setting (epochs, training set, mode, ...), or that
    holds a seed twice, is refused with a ``ValueError`` naming it
    (:func:`snip_lib.results.check_one_recipe`): a mean is over seeds of one recipe. Smoke runs on
    FakeData (``metrics.smoke``, a ``'-fake'`` dataset: CIFAR-10 was missing) are no results and
    are left out; ``include_smoke=True`` keeps them and adds a ``smoke`` column (True for a row of
    smoke runs). ``ValueError`` if the frame holds only smoke runs and they are not asked for.

    Columns: ``arch``, ``sparsity`` (%; 0 = dense reference), ``paper`` (Table 2's error for
    that row, None if the row is not in Table 2), ``n`` and ``seeds``, ``epochs``, then mean and
    sample std over seeds (NaN for one seed) of the ``final``, ``at_best_val`` (honest) and
    ``best_test`` (official ``test.py``, optimistic) test errors, ``wall_time_mean``,
    ``wall_time_min`` and ``wall_time_max`` (s), ``device``, ``machine`` (kernel build),
    ``commit`` (every commit the runs were recorded at; ``+dirty``: uncommitted changes) and
    ``recorded`` (UTC dates, first to last).
    """
    import pandas as pd

    _check_frame(frame, {"config.arch", "config.sparsity", "config.train", "seed", "wall_time", *_PROTOCOLS.values()})
    from snip_lib.results import check_one_recipe, drop_smoke

    frame = drop_smoke(frame, include_smoke, what="the Table 2 frame")
    rows = []
    for (arch, sparsity), g in frame.groupby(["config.arch", "config.sparsity"], sort=False):
        check_one_recipe(g, f"{arch} at {100 * sparsity:g} %")
        sp, paper = PAPER_TABLE2.get(arch, (None, None, None))[0], None
        if arch in PAPER_TABLE2:
            paper = PAPER_TABLE2[arch][1] if sparsity == 0 else (PAPER_TABLE2[arch][2] if abs(sparsity - sp) < 1e-9
                                                                  else None)
        rows.append({"arch": arch, "sparsity": round(100 * sparsity, 2), "paper": paper,
                     **_group_summary(g, include_smoke)})
    out = pd.DataFrame(rows)
    order = sorted(range(len(out)), key=lambda i: (_arch_order(out["arch"][i]), out["sparsity"][i]))
    return out.iloc[order].reset_index(drop=True)


def summarize_table3(frame: pd.DataFrame, *, include_smoke: bool = False) -> pd.DataFrame:
    """One row per (network, scoring initialisation, sparsity) of a Table 3 results frame, with the paper's.

    Columns: ``arch``, ``scoring init`` (RN, TN, VS-X, VS-H), ``sparsity`` (%), ``paper_mean`` and
    ``paper_std`` (Table 3, 20 runs; None away from its 90 %), then as :func:`summarize_table2` (``n``, ``seeds``, ``epochs``, the
    three error protocols, the wall times, ``device``, ``machine``, ``commit``, ``recorded``).
    Rows of one recipe only, and smoke runs left out unless ``include_smoke``, as in :func:`summarize_table2`.
    """
    import pandas as pd

    _check_frame(frame, {"config.arch", "config.scoring_init", "config.train", "seed", "wall_time",
                         *_PROTOCOLS.values()})
    from snip_lib.results import check_one_recipe, drop_smoke

    frame = drop_smoke(frame, include_smoke, what="the Table 3 frame")
    rows = []
    for (arch, scheme, sparsity), g in frame.groupby(["config.arch", "config.scoring_init", "config.sparsity"],
                                                     sort=False, dropna=False):
        label = _label_of(scheme)
        check_one_recipe(g, f"{arch} scored under {label} at {100 * sparsity:g} %")
        at_table3 = abs(sparsity - TABLE3_SPARSITY) < 1e-9  # the paper's numbers are for 90 % only
        paper = PAPER_TABLE3_RNN.get(arch, {}).get(label, (None, None)) if at_table3 else (None, None)
        rows.append({"arch": arch, "scoring init": label, "sparsity": round(100 * sparsity, 2),
                     "paper_mean": paper[0], "paper_std": paper[1], **_group_summary(g, include_smoke)})
    out = pd.DataFrame(rows)
    labels = list(TABLE3_SCHEMES)
    order = sorted(range(len(out)), key=lambda i: (_arch_order(out["arch"][i]), out["sparsity"][i],
                                                  labels.index(out["scoring init"][i])
                                                  if out["scoring init"][i] in labels else len(labels)))
    return out.iloc[order].reset_index(drop=True)


def history_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch test and validation error of every recorded run, in long form for seaborn.

    :func:`snip_lib.suites_lenet.history_frame` with a ``scoring init`` column (Table 3 label or "-")
    after ``sparsity``.
    """
    from snip_lib import suites_lenet

    return suites_lenet.history_frame(frame, extra={"scoring init": lambda r: _label_of(r.get("config.scoring_init"))})
