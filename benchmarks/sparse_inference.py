"""CPU inference of the sparse export (snip_lib.sparse) against the dense model: latency, memory, outputs.

The networks are LeNet-300-100 pruned to 98 % and LeNet-5-Caffe pruned to 99 % by SNIP (one
batch of 100 MNIST training images, the book's initialisation; the weights are not trained,
which changes no timing and no storage). Variants, all in eval mode under ``torch.inference_mode``:

- ``dense``              the masked model with its masks removed: plain ``nn.Linear``/``nn.Conv2d``
  holding the zeros (the baseline; what a pruned network costs without a sparse format);
- ``csr``                linear layers in CSR, convolutions dense (``to_sparse`` default);
- ``csr_int32``          the same with 32-bit indices;
- ``coo``                linear layers in COO, convolutions dense;
- ``csr_sparse_conv``    LeNet-5 only: convolutions too, as ``F.unfold`` + a CSR product.

Latency is the median time of one forward pass at batch 1 and at batch 256 (real MNIST test
images), interleaved; memory is :func:`snip_lib.sparse.storage_bytes` (weights, biases and
indices; activations are not counted). Every variant's outputs are compared with the dense
model's on the 256 images.
"""

from __future__ import annotations

import copy

import torch

from benchmarks.common import Settings, mnist_batch
from snip_lib import benchmarking, experiments, init, masking, models, snip, sparse

CASES = ({"arch": "lenet300", "sparsity": 0.98}, {"arch": "lenet5", "sparsity": 0.99})
BATCHES = (1, 256)
RTOL, ATOL = 1e-4, 1e-5


def _variants(masked: torch.nn.Module, arch: str) -> dict[str, torch.nn.Module]:
    out = {
        "dense": masking.remove_masks(copy.deepcopy(masked)).eval(),
        "csr": sparse.to_sparse(masked, "csr"),
        "csr_int32": sparse.to_sparse(masked, "csr", index_dtype=torch.int32),
        "coo": sparse.to_sparse(masked, "coo"),
    }
    if arch == "lenet5":
        out["csr_sparse_conv"] = sparse.to_sparse(masked, "csr", conv="sparse")
    for model in out.values():
        for p in model.parameters():
            p.requires_grad_(False)
    return out


def run(settings: Settings) -> tuple[dict, dict, dict]:
    repeats = settings.pick(40, 3)
    x_test, _ = mnist_batch(max(BATCHES), split="test", seed=settings.seed)
    x_score, y_score = mnist_batch(100, seed=settings.seed)
    rows, summaries, checks, layers = [], {}, {}, {}
    for case in CASES:
        arch, sparsity = case["arch"], case["sparsity"]
        model = init.apply(models.build(arch), experiments.DEFAULT_INIT, seed=settings.seed)
        masking.apply_masks(model, snip.snip_masks(model, x_score, y_score, sparsity))
        model.eval()
        variants = _variants(model, arch)
        layers[arch] = sparse.export_report(variants["csr_sparse_conv" if arch == "lenet5" else "csr"])
        with torch.inference_mode():
            reference = variants["dense"](x_test)
            for name, m in variants.items():
                out = m(x_test)
                checks[f"{arch}/{name}"] = {
                    "max_abs_diff": float((out - reference).abs().max()),
                    "allclose": bool(torch.allclose(out, reference, rtol=RTOL, atol=ATOL)),
                    "same_predictions": bool(torch.equal(out.argmax(1), reference.argmax(1))),
                }
        memory = {name: sparse.storage_bytes(m) for name, m in variants.items()}
        memory["masked_training_form"] = sparse.storage_bytes(model)
        for batch in BATCHES:
            xb = x_test[:batch].clone()

            calls = {}
            for name, m in variants.items():
                def call(m: torch.nn.Module = m) -> None:
                    with torch.inference_mode():
                        m(xb)
                calls[name] = call
            timings = benchmarking.time_interleaved(calls, repeats=repeats, warmup=settings.pick(5, 1),
                                                    min_sample_time=settings.pick(0.02, 0.0))
            summary = benchmarking.summarize(timings, "dense")
            summaries[f"{arch}/batch{batch}"] = summary.reset_index().to_dict(orient="records")
            for name in variants:
                rows.append({
                    "arch": arch, "sparsity": sparsity, "batch": batch, "variant": name,
                    "latency_us": 1e6 * summary.loc[name, "median_s"],
                    "latency_over_dense": summary.loc[name, "ratio"],
                    "latency_over_dense_iqr": [summary.loc[name, "ratio_p25"], summary.loc[name, "ratio_p75"]],
                    "storage_bytes": memory[name],
                    "storage_over_dense": memory[name] / memory["dense"],
                    "outputs_allclose": checks[f"{arch}/{name}"]["allclose"],
                })
        rows.append({"arch": arch, "sparsity": sparsity, "batch": None, "variant": "masked_training_form",
                     "latency_us": None, "latency_over_dense": None, "latency_over_dense_iqr": None,
                     "storage_bytes": memory["masked_training_form"],
                     "storage_over_dense": memory["masked_training_form"] / memory["dense"], "outputs_allclose": None})
    config = {"cases": list(CASES), "batches": list(BATCHES), "repeats": repeats, "rtol": RTOL, "atol": ATOL,
              "scoring": "SNIP on 100 MNIST training images, untrained weights", "init": experiments.DEFAULT_INIT}
    metrics = {"rows": rows, "output_checks": checks, "all_outputs_match": all(c["allclose"] for c in checks.values())}
    return config, metrics, {"summaries": summaries, "exported_layers": layers}
