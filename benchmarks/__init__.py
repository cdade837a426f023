"""Benchmarks of snip_lib: measured speed and memory, recorded as JSON in ``benchmarks/results/``.

These are not tests: nothing here asserts a time. Each benchmark measures variants side by side
in one run (interleaved, medians, ratios; see :mod:`snip_lib.benchmarking`) and writes one result
file with provenance (commit, torch version, CPU, threads, machine load, date). One command runs
them all::

    python -m benchmarks                       # all, full settings, into benchmarks/results/
    python -m benchmarks --only sparse_inference --threads 2
    python -m benchmarks --mode quick          # small and fast (a smoke run), into benchmarks/out/
    make bench

The benchmarks (one module each):

- ``scoring_vs_step``  SNIP's scoring pass relative to one training step, same model and batch;
- ``masked_overhead``  a training step of a masked model relative to the dense one: our gradient
  hooks (with and without ``enforce_masks``) and ``torch.nn.utils.prune``, side by side;
- ``sparse_inference`` latency (batch 1 and 256) and memory of the sparse export
  (:mod:`snip_lib.sparse`) against the dense model, with the outputs checked;
- ``notebook_times``   execution time of each chapter of the book in quick and full mode (about an
  hour); written elsewhere than ``benchmarks/results/`` (``--out``, or ``--mode quick``) it runs
  quick mode only unless ``--notebook-modes`` says otherwise.
"""
