"""How long SNIP's scoring takes, relative to one training step of the same model on the same batch.

SNIP's whole cost is one forward and one backward pass over a mini-batch (plus a global top-k),
so it should cost about one training step, and it is paid once, before training. Measured:

- ``train_step``  forward, cross-entropy, backward and an SGD step (momentum 0.9, weight decay),
  model in training mode (the baseline);
- ``snip_scores`` :func:`snip_lib.snip.connection_sensitivity` (gradients with respect to the
  indicator variables through ``torch.func``; model in eval mode);
- ``snip_masks``  :func:`snip_lib.snip.snip_masks`, scores plus the global top-k.

MNIST models use real images; VGG-D uses random inputs of CIFAR-10's shape (CIFAR-10 is not
available offline, and timing a dense network does not depend on the pixel values).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Settings, fake_batch, mnist_batch
from snip_lib import benchmarking, experiments, init, models, snip


def _cases(settings: Settings) -> list[dict[str, Any]]:
    return [
        {"arch": "lenet300", "batch": settings.pick(100, 20), "sparsity": 0.98, "data": "mnist"},
        {"arch": "lenet5", "batch": settings.pick(100, 20), "sparsity": 0.99, "data": "mnist"},
        {"arch": "vgg-d", "batch": settings.pick(16, 2), "sparsity": 0.95, "data": "random, CIFAR-10 shape"},
    ]


def run(settings: Settings) -> tuple[dict, dict, dict]:
    repeats = settings.pick(30, 3)
    rows, summaries = [], {}
    for case in _cases(settings):
        arch = case["arch"]
        model = init.apply(models.build(arch), experiments.DEFAULT_INIT, seed=settings.seed)
        if case["data"] == "mnist":
            x, y = mnist_batch(case["batch"], seed=settings.seed)
        else:
            x, y = fake_batch(models.input_shape(arch), case["batch"], seed=settings.seed)
        trained = copy.deepcopy(model).train()
        # lr only sets the size of the update, not the work; a small one keeps the weights sane
        # over hundreds of steps on one batch
        optimizer = torch.optim.SGD(trained.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        scored = copy.deepcopy(model)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(trained(x), y).backward()
            optimizer.step()

        timings = benchmarking.time_interleaved(
            {
                "train_step": train_step,
                "snip_scores": lambda: snip.connection_sensitivity(scored, x, y, normalize=False),
                "snip_masks": lambda: snip.snip_masks(scored, x, y, case["sparsity"]),
            },
            repeats=repeats, warmup=settings.pick(3, 1), min_sample_time=settings.pick(0.05, 0.0),
        )
        summary = benchmarking.summarize(timings, "train_step")
        summaries[arch] = summary.reset_index().to_dict(orient="records")
        rows.append({
            "arch": arch, "batch": case["batch"], "data": case["data"],
            "train_step_ms": 1e3 * summary.loc["train_step", "median_s"],
            "snip_scores_ms": 1e3 * summary.loc["snip_scores", "median_s"],
            "snip_masks_ms": 1e3 * summary.loc["snip_masks", "median_s"],
            "scores_over_step": summary.loc["snip_scores", "ratio"],
            "scores_over_step_iqr": [summary.loc["snip_scores", "ratio_p25"], summary.loc["snip_scores", "ratio_p75"]],
            "masks_over_step": summary.loc["snip_masks", "ratio"],
            "masks_over_step_iqr": [summary.loc["snip_masks", "ratio_p25"], summary.loc["snip_masks", "ratio_p75"]],
        })
    config = {"cases": _cases(settings), "repeats": repeats, "optimizer": "SGD momentum 0.9, weight decay 5e-4",
              "init": experiments.DEFAULT_INIT}
    return config, {"rows": rows}, {"summaries": summaries}
