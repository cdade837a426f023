"""Run the benchmarks and write one JSON result per benchmark (see :mod:`benchmarks`).

    python -m benchmarks [--only NAME ...] [--mode quick|full] [--threads N] [--out DIR] [--note TEXT]
    python benchmarks/run.py ...          # the same
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAMES = ("scoring_vs_step", "masked_overhead", "sparse_inference", "notebook_times")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                        help=f"run only these ({', '.join(NAMES)}); default: all")
    parser.add_argument("--mode", choices=("quick", "full"), default="full",
                        help="full: the recorded settings (default); quick: few repeats, small sizes (a smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: benchmarks/results in full mode, benchmarks/out in quick mode)")
    parser.add_argument("--note", default=None, help="free text stored with the results (e.g. what else loads the machine)")
    parser.add_argument("--notebooks", nargs="+", type=Path, default=None,
                        help="notebooks for notebook_times (default: every chapter in book/)")
    parser.add_argument("--notebook-modes", nargs="+", choices=("quick", "full"), default=None,
                        help="modes to execute the notebooks in (default: quick and full when writing to "
                             "benchmarks/results, whose file feeds the book's time tables; otherwise quick)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    from benchmarks import common

    args.out = args.out or (common.RESULTS_DIR if args.mode == "full" else common.SCRATCH_DIR)
    recorded = args.out.resolve() == common.RESULTS_DIR.resolve()
    if args.notebook_modes is None:
        args.notebook_modes = ["quick", "full"] if recorded else ["quick"]
    if recorded and args.mode != "full":
        # The recorded files feed chapter 10 and the introduction as results: never a smoke run.
        parser.error(f"--mode {args.mode} is a smoke run and would replace the recorded results in "
                     f"{common.RESULTS_DIR.name}/; write it elsewhere (--out DIR, default benchmarks/out)")
    if recorded and "notebook_times" in (args.only or NAMES):
        # The recorded file feeds chapter 10 and the introduction's time table, which need both modes
        # and every chapter.
        if set(args.notebook_modes) != {"quick", "full"}:
            parser.error(f"--notebook-modes {' '.join(args.notebook_modes)} would replace {common.RESULTS_DIR.name}/"
                         "notebook_times.json without its other mode; record both (--notebook-modes quick full) "
                         "or write elsewhere (--out DIR)")
        if args.notebooks is not None:
            from benchmarks.notebook_times import default_notebooks

            wanted = {p.resolve() for p in default_notebooks()}
            if {p.resolve() for p in args.notebooks} != wanted:
                parser.error(f"--notebooks names {len(args.notebooks)} notebook(s); {common.RESULTS_DIR.name}/"
                             f"notebook_times.json holds every chapter ({len(wanted)}), which the book's time tables "
                             "read; time a subset elsewhere (--out DIR)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # torch is imported already (parse_args reads benchmarks.common), but its thread pool starts at
    # the first parallel op: set_num_threads below applies. The recorded provenance reads the mode
    # from SNIP_QUICK.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["SNIP_QUICK"] = "1" if args.mode == "quick" else "0"
    import torch

    from benchmarks import common, masked_overhead, notebook_times, scoring_vs_step, sparse_inference
    from snip_lib import benchmarking

    torch.set_num_threads(args.threads)
    modules = {"scoring_vs_step": scoring_vs_step, "masked_overhead": masked_overhead,
               "sparse_inference": sparse_inference, "notebook_times": notebook_times}
    settings = common.Settings(mode=args.mode, threads=args.threads, out=args.out, note=args.note,
                               notebooks=list(args.notebooks or []), notebook_modes=tuple(dict.fromkeys(args.notebook_modes)))
    for name in args.only or NAMES:
        print(f"=== {name} ({args.mode}, {args.threads} thread(s)), load {benchmarking.machine_load()['loadavg_1_5_15']}",
              flush=True)
        load = benchmarking.machine_load()
        start = time.perf_counter()
        config, metrics, extra = modules[name].run(settings)
        path = common.write(settings, name, config=config, metrics=metrics, extra=extra,
                            wall_time=time.perf_counter() - start, load_before=load)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
