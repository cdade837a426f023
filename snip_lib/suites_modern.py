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
"""

from __future__ import annotations

from snip_lib import experiments

__all__ = [
    "BIG_EPOCHS",
    "CIFAR_SPARSITY",
    "PAPER_TABLE2",
    "PAPER_TABLE3_RNN",
    "RNN_ARCHS",
    "SMALL_EPOCHS",
    "SUITE_NAMES",
    "TABLE3_EPOCHS",
    "decay_for",
]

#: Epochs of the shortened recurrent budgets (one epoch = 540 iterations of batch 100).
SMALL_EPOCHS = 10
BIG_EPOCHS = 3
TABLE3_EPOCHS = 3
#: Gradient-norm clipping of every recurrent run (not in the paper).
RNN_CLIP = 5.0
WARMUP_ITERATIONS = 500
RNN_ARCHS: tuple[str, ...] = ("lstm-s", "lstm-b", "gru-s", "gru-b")

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
    """The x0.1 decay point of a shortened MNIST run: 25k/27k of its iterations, as in the LeNet recipe."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    return round(25_000 / 27_000 * epochs * iterations_per_epoch)


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
            {"arch": arch, "sparsity": 0.9, "init": "glorot_uniform", "scoring_init": scheme, "optimizer": "adam",
             "schedule": "constant", "epochs": TABLE3_EPOCHS, "train_options": {"clip_grad_norm": RNN_CLIP}}
            for arch in ("lstm-s", "gru-s") for scheme in _TABLE3_SCHEMES.values()
        ),
        seeds=(0, 1),
    ),
    experiments.Suite(
        name="table2-cifar",
        description="Table 2, convolutional rows on CIFAR-10 (dense and SNIP at the paper's sparsity), official "
                    "schedule and augmentation; needs CIFAR-10 and a GPU",
        runs=tuple({"arch": a, "sparsity": s} for a, sp in CIFAR_SPARSITY.items() for s in (0.0, sp)),
        seeds=(0,),
    ),
)
SUITE_NAMES: tuple[str, ...] = tuple(s.name for s in _SUITES)

for _suite in _SUITES:
    if _suite.name not in experiments.SUITES:
        experiments.register_suite(_suite)
