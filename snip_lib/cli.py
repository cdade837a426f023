"""Command line: ``python -m snip_lib {run,list,info,reproduce,verify}`` (also installed as ``snip``).

Examples::

    python -m snip_lib list
    python -m snip_lib info --arch lenet5 --sparsity 0.98 0.99
    python -m snip_lib run --arch lenet300 --sparsity 0.98 --seeds 0 1 2 --out runs/lenet300
    SNIP_QUICK=1 python -m snip_lib run --arch lenet5 --sparsity 0.99 --seeds 0 --epochs 1
    python -m snip_lib reproduce --list
    python -m snip_lib reproduce table1 --threads 1    # chapter 5's whole Table 1, then prints it
    python -m snip_lib verify results/lenet --epochs 1  # replay recorded runs and compare them

``run`` writes one JSON result file (with provenance, see :mod:`snip_lib.results`) per
(sparsity, seed); ``verify`` replays recorded result files (:mod:`snip_lib.replay`) and exits
with status 1 if one of them differs. Bad input exits with status 2 and a message naming the bad
value; a missing dataset or a diverged run exits with status 1. ``run`` writes under ``runs/`` (in the
current folder) unless ``--out`` says otherwise: ``results/`` holds the book's recorded runs only.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

#: The documented name (the book's reference page shows it); the parser uses the invoked name at run time.
PROG = "python -m snip_lib"
#: Ad-hoc runs go here, relative to the current folder: never into the recorded ``results/`` tree.
DEFAULT_OUT = "runs"
#: Training examples of each dataset before the 10 % validation hold-out (snip_lib.data's official split).
_FULL_TRAIN = {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000}
#: Figures the ``reproduce`` command does not run, and what does.
_ELSEWHERE = {
    "figure4": "figure4 (label fitting) is not a prune-and-train suite: run it with "
               "`python -m snip_lib.suites_keeps figure4 --threads 1`",
    "figure2": "figure2 (the mask images) has no suite: chapter 7's notebook (book/07_what_snip_keeps.ipynb) "
               "computes it",
}


def _version() -> str:
    """The installed distribution's version; the package's own where it is not installed (a bare checkout)."""
    from importlib import metadata

    try:
        return metadata.version("snip_lib")
    except metadata.PackageNotFoundError:
        from snip_lib import __version__

        return __version__


def _invoked_prog() -> str:
    """How the user called us: ``snip`` for the console script, PROG for ``python -m snip_lib``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return PROG if name in ("", "-c") or name.endswith(".py") else name


# --------------------------------------------------------------------------- argument types


def _arch(value: str) -> str:
    from snip_lib import models

    key = value.strip().lower().replace("_", "-")
    names = models.available_models()
    if key not in names:
        raise argparse.ArgumentTypeError(f"unknown architecture {value!r}; available: {', '.join(names)}")
    return key


def _scheme(value: str) -> str:
    from snip_lib import init

    try:
        init.canonical_scheme(value)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _sparsity(value: str) -> float:
    try:
        s = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"sparsity must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= s < 1.0:
        raise argparse.ArgumentTypeError(
            f"sparsity must be in [0, 1) (fraction of parameters pruned, e.g. 0.98; 0 = dense), got {value!r}"
        )
    return s


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _seed(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a non-negative integer, got {value!r}") from None
    if not 0 <= n < 2**31:  # far below 2**32, so seeds derived by adding an offset stay valid
        raise argparse.ArgumentTypeError(f"a seed is an integer in [0, 2**31), got {value!r}")
    return n


def _lr(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"learning rate must be a positive number, got {value!r}") from None
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"learning rate must be a positive number, got {value!r}")
    return x


def _tolerance(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        t = float("nan")
    if not (t >= 0 and t != float("inf")):
        raise argparse.ArgumentTypeError(f"tolerance must be a finite number >= 0 (percentage points), got {value!r}")
    return t


def _boundary(value: str) -> int | float:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a boundary is a fraction in (0, 1) or an iteration count, got {value!r}") from None


# --------------------------------------------------------------------------- parser


def _add_training_options(p: argparse.ArgumentParser) -> None:
    from snip_lib.experiments import BN_MODES, DEFAULT_INIT
    from snip_lib.init import BIAS_OPTIONS
    from snip_lib.pruners import METHODS
    from snip_lib.train import OPTIMIZERS, SCHEDULES

    g = p.add_argument_group("training (defaults: see `python -m snip_lib info --arch ARCH`)")
    g.add_argument("--epochs", type=_positive_int, help="training epochs (default: per architecture and mode)")
    g.add_argument("--limit-train", type=_positive_int, metavar="N",
                   help="train on the first N examples of the (shuffled) 90%% training split "
                        "(default: all in full mode, 5000 in quick mode)")
    g.add_argument("--batch-size", type=_positive_int, help="training batch size (default 100 MNIST, 128 CIFAR)")
    g.add_argument("--saliency-batch", type=_positive_int, metavar="N",
                   help="examples in SNIP's scoring mini-batch (default 100 MNIST, 128 CIFAR)")
    g.add_argument("--init", type=_scheme, default=DEFAULT_INIT,
                   help=f"initialisation of the trained network (default {DEFAULT_INIT}, the official code's 'vs'; "
                        "the paper's VS-X is 'vs-x')")
    g.add_argument("--scoring-init", type=_scheme, default=None,
                   help="score an independently initialised copy with this scheme (the official code's "
                        "two-initialisation variant); default: score the trained network's own weights")
    g.add_argument("--scoring-bias", choices=BIAS_OPTIONS, default="zeros",
                   help="biases of that copy (needs --scoring-init): zeros (default); scheme: drawn from the "
                        "scheme, as the first official code's scored network; default: PyTorch's rule")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd: momentum 0.9, lr 0.1, wd 5e-4 (paper); adam: lr 1e-3, no wd (Table 3)")
    g.add_argument("--lr", type=_lr, help="initial learning rate (default: 0.1 sgd, 1e-3 adam)")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="step: paper, x0.1 every 25k (MNIST) / 30k (CIFAR) iterations; official: README, "
                        "x0.2 at 20/40/60/80%% of the run; constant; cosine (default: step MNIST, official CIFAR)")
    g.add_argument("--decay-every", type=_positive_int, metavar="ITERS",
                   help="step schedule: iterations between x0.1 decays (default 25000 MNIST, 30000 CIFAR)")
    g.add_argument("--boundaries", type=_boundary, nargs="+", metavar="B",
                   help="official schedule: where the x0.2 steps fall, all fractions of the run (0.2 0.4 0.6 0.8, "
                        "the default) or all iteration counts (30000 60000 90000 120000)")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay (default 5e-4 sgd, 0 adam)")
    g.add_argument("--warmup-iterations", type=int, metavar="N",
                   help="linear learning-rate warm-up over the first N iterations (default 0, as in the paper; "
                        "the book's LeNet suites use 500)")
    g.add_argument("--include-bias", action="store_true",
                   help="biases are prunable too (the official code); default: weights only")
    g.add_argument("--method", choices=METHODS, default="snip",
                   help="pruning-at-initialisation method (default snip; see snip_lib.pruners)")
    g.add_argument("--bn-mode", choices=BN_MODES, default="eval",
                   help="batch-norm mode while scoring (default eval, as the official code)")
    g.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    g.add_argument("--channels-last", action="store_true", help="channels-last memory format (CUDA only)")
    g.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    g.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch CPU threads (default: torch's choice; use 1 when several runs share the cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--log-every", type=_positive_int, metavar="N", help="print the loss every N iterations")
    g.add_argument("--smoke-ok", action="store_true",
                   help="where CIFAR-10 is unavailable, run on random FakeData (labelled SMOKE, not a result)")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argparse parser of ``python -m snip_lib``; ``prog`` names it in usage and error lines."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="SNIP (Lee, Ajanthan & Torr, ICLR 2019): prune a network at initialisation, train it, "
                    "and record the result with provenance.",
        epilog="SNIP_QUICK=1 selects quick mode (fewer epochs, a training subset; same code path).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser(
        "run", help="prune with SNIP (or --method), train, write one JSON result per (sparsity, seed)",
        description="Prune ARCH with SNIP at each SPARSITY for each SEED, train it, and write one JSON result "
                    "file per run with provenance (git commit, versions, device, mode).",
    )
    run.add_argument("--arch", type=_arch, required=True, help="architecture (see `list`)")
    run.add_argument("--sparsity", type=_sparsity, nargs="+", required=True,
                     help="fraction of prunable parameters removed, in [0, 1); 0 trains the dense reference")
    run.add_argument("--seeds", type=_seed, nargs="+", default=[0], help="seeds (default 0)")
    run.add_argument("--out", default=DEFAULT_OUT,
                     help=f"a folder (files named ARCH-spS-seedN.json, ARCH-spS-mMETHOD-seedN.json for another "
                          f"--method) or a .json file name (suffixed -spS-seedN when there are several runs); "
                          f"default {DEFAULT_OUT}/")
    run.add_argument("--overwrite", action="store_true",
                     help="replace result files that exist (default: refuse, naming them, before running anything)")
    _add_training_options(run)
    run.set_defaults(subparser=run)  # its errors show `run`'s usage, not the top-level one

    sub.add_parser("list", help="list the architectures", description="List the architectures of the paper.")

    info = sub.add_parser("info", help="parameter counts and kept counts at given sparsities",
                          description="Print the prunable layers of ARCH, their sizes, and how many "
                                      "parameters SNIP keeps at each sparsity.")
    info.add_argument("--arch", type=_arch, required=True, help="architecture (see `list`)")
    info.add_argument("--sparsity", type=_sparsity, nargs="*", default=[], help="sparsities to show kept counts for")
    info.add_argument("--include-bias", action="store_true", help="count biases as prunable (official code)")

    rep = sub.add_parser("reproduce", help="run a named suite of experiments (a table of the paper)",
                         description="Run every run of a named suite for each seed, writing one result file each. "
                                     "A group (table1) runs several suites and then prints the table they make.")
    rep.add_argument("suite", nargs="?", help="suite or group name (see --list)")
    rep.add_argument("--list", action="store_true", help="list the suites and groups and exit")
    rep.add_argument("--seeds", type=_seed, nargs="+", help="override the suite's seeds")
    rep.add_argument("--out", help="output folder (default: the suite's folder under results/, see --list); "
                                   "for a group, the folder that holds its suites' folders (default: results)")
    rep.add_argument("--epochs", type=_positive_int, help="override the epochs of every run")
    rep.add_argument("--limit-train", type=_positive_int, metavar="N", help="train on N examples")
    rep.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    rep.add_argument("--threads", type=_positive_int, metavar="N", help="torch CPU threads")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.add_argument("--smoke-ok", action="store_true", help="allow FakeData smoke runs where CIFAR-10 is missing")
    rep.add_argument("--arch", type=_arch, nargs="+", help="only the runs of these architectures")
    rep.add_argument("--sparsity", type=_sparsity, nargs="+", metavar="S",
                     help="only the runs at these sparsities (e.g. one per process, to use several cores)")
    rep.add_argument("--overwrite", action="store_true",
                     help="rerun runs whose result file exists (default: skip it if it was recorded with these "
                          "settings, else stop and name it)")
    rep.set_defaults(subparser=rep)

    from snip_lib.replay import DEFAULT_TOLERANCE, REPLAYABLE_KINDS

    ver = sub.add_parser("verify", help="replay recorded results and compare them with the recording, epoch by epoch",
                         description="Rerun each recorded result from its own configuration (its first --epochs "
                                     "epochs) and compare the per-epoch errors, learning rates and mask with the "
                                     "recorded ones, and after a whole run the final, best and at-best-validation "
                                     "test errors. Exit status 1 if one differs by more than --tolerance.")
    ver.add_argument("results", nargs="+", metavar="RESULT", help="result files, or folders: every run inside (kinds "
                     f"{' and '.join(REPLAYABLE_KINDS)}; other .json files are skipped, with a note, but a file "
                     "named here must be a replayable result)")
    ver.add_argument("--epochs", type=_positive_int, help="replay only the first N epochs (default: all)")
    ver.add_argument("--tolerance", type=_tolerance, default=DEFAULT_TOLERANCE,
                     help=f"allowed error difference in percentage points (default {DEFAULT_TOLERANCE:g})")
    ver.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the recorded device if present, else cpu)")
    ver.add_argument("--threads", type=_positive_int, metavar="N",
                     help="torch CPU threads (default: the recorded count, needed for a bit-for-bit replay)")
    ver.add_argument("--progress", action="store_true", help="show progress bars")
    ver.add_argument("--report", metavar="FILE.json",
                     help="also write every verdict to one result file (kind 'replay_audit', with provenance)")
    ver.set_defaults(subparser=ver)
    return parser


# --------------------------------------------------------------------------- commands


def _out_path(out: str, arch: str, sparsity: float, seed: int, several: bool, method: str = "snip") -> Path:
    # SNIP keeps the short names; another method is tagged, so methods sharing a folder never collide.
    tag = f"sp{sparsity:g}-seed{seed}" if method == "snip" else f"sp{sparsity:g}-m{method}-seed{seed}"
    path = Path(out)
    if path.suffix.lower() == ".json":
        return path.with_name(f"{path.stem}-{tag}.json") if several else path
    return path / f"{arch}-{tag}.json"


def _run_one(kwargs: dict[str, Any], path: Path) -> None:
    from snip_lib import experiments, results

    started = results.git_state()  # the code this run starts with, not the code when its file is written
    res = experiments.prune_and_train(**kwargs)
    results.write_result(
        path, kind=res["kind"], config=res["config"], metrics=res["metrics"], seed=res["seed"],
        wall_time=res["wall_time"], device=res["config"]["device"], started=started,
    )
    m = res["metrics"]
    best_val = m["test_error_at_best_val"]
    smoke = "  [SMOKE RUN on FakeData: not a result]" if m["smoke"] else ""
    print(
        f"{res['config']['arch']} sparsity {res['config']['sparsity']:g} seed {res['seed']}: "
        f"final test error {m['final_test_error']:.2f}%, best {m['best_test_error']:.2f}% (epoch {m['best_epoch']}), "
        f"at best val {best_val:.2f}%; kept {m['kept_parameters']:,}/{m['prunable_parameters']:,}; "
        f"{res['wall_time']:.1f} s -> {path}{smoke}",
        flush=True,
    )


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    names = {"decay_every": args.decay_every, "boundaries": args.boundaries, "momentum": args.momentum,
             "weight_decay": args.weight_decay, "warmup_iterations": args.warmup_iterations}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in names.items() if v is not None}


def _run_paths(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[tuple[float, int], Path]:
    """The result file of each requested (sparsity, seed). Two runs writing one file would silently lose the
    first, so a repeated value, or two sparsities alike in a file name (6 significant digits), are refused."""
    several = len(args.sparsity) * len(args.seeds) > 1
    paths: dict[tuple[float, int], Path] = {}
    owner: dict[Path, tuple[float, int]] = {}  # the other way round: which run writes each file
    for sparsity in args.sparsity:
        for seed in args.seeds:
            key = (sparsity, seed)
            path = _out_path(args.out, args.arch, sparsity, seed, several, args.method)
            if key in paths:  # == also takes 0 and -0 for one sparsity
                option, values, value = (("--seeds", args.seeds, seed) if args.seeds.count(seed) > 1
                                         else ("--sparsity", args.sparsity, sparsity))
                parser.error(f"{option} {' '.join(map(repr, values))} gives {value!r} twice: both runs would write "
                             f"{paths[key]}; give each value once")
            if path in owner:
                parser.error(f"sparsities {owner[path][0]!r} and {sparsity!r} would both write {path} (a file name "
                             "keeps 6 significant digits of the sparsity): give sparsities that differ there, or run "
                             "them with different --out")
            paths[key], owner[path] = path, key
    return paths


def _check_writable(path: Path, flag: str, value: str, parser: argparse.ArgumentParser) -> None:
    """Refuse an output file that cannot be written, before any work: found after hours of training, it would
    lose the run. The folders it needs may be missing (they are made when it is written) but not be files."""
    if path.is_dir():
        parser.error(f"{flag} {value}: {path} is a folder, not a file that can be written")
    _check_can_make(path, path.parent, flag, value, parser)


def _check_writable_folder(folder: Path, value: str, parser: argparse.ArgumentParser) -> None:
    """Refuse a ``reproduce --out`` folder that cannot hold the suite's files, before any run: found
    after the first run's training, it would lose that run."""
    if folder.exists() and not folder.is_dir():
        parser.error(f"--out {value}: {folder} is a file, not a folder for the suite's results")
    _check_can_make(folder, folder, "--out", value, parser)


def _check_can_make(target: Path, start: Path, flag: str, value: str, parser: argparse.ArgumentParser) -> None:
    """Refuse ``target`` unless the nearest existing path at or above ``start`` is a writable folder
    (the missing folders between are made when the target is written)."""
    from snip_lib.experiments import _blocked_at

    blocked = _blocked_at(start)
    if blocked is not None and blocked[1] == "file":
        parser.error(f"{flag} {value}: {blocked[0]} is a file, so {target} cannot be written; give a path under a folder")
    if blocked is not None:
        parser.error(f"{flag} {value}: the folder {blocked[0]} is not writable, so {target} cannot be written")


def _resolved_schedule(args: argparse.Namespace) -> tuple[str, str]:
    """The schedule a run uses and where it comes from (for messages)."""
    from snip_lib import experiments

    if args.schedule is not None:
        return args.schedule, f"--schedule {args.schedule}"
    schedule = experiments.defaults_for(args.arch)["schedule"]
    return schedule, f"{args.arch}'s default schedule {schedule!r}"


def _check_run_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse, in terms of flags, the combinations the library would refuse in its own terms (or ignore)."""
    from snip_lib import models

    schedule, source = _resolved_schedule(args)
    if args.decay_every is not None and schedule != "step":
        parser.error(f"--decay-every {args.decay_every} applies to --schedule step only, but this run uses {source}; "
                     "leave --decay-every out or pass --schedule step")
    if args.boundaries is not None and schedule != "official":
        parser.error(f"--boundaries applies to --schedule official only, but this run uses {source}; "
                     "leave --boundaries out or pass --schedule official")
    if args.momentum is not None:
        if args.optimizer == "adam":
            parser.error(f"--momentum {args.momentum:g} is an SGD setting; --optimizer adam takes no --momentum "
                         "(leave it out, or use --optimizer sgd)")
        if not 0 <= args.momentum < 1:
            parser.error(f"--momentum must be a number in [0, 1), got {args.momentum:g}")
    if args.weight_decay is not None and not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        parser.error(f"--weight-decay must be a finite number >= 0, got {args.weight_decay:g}")
    if args.warmup_iterations is not None and args.warmup_iterations < 0:
        parser.error(f"--warmup-iterations must be >= 0 (0 = no warm-up), got {args.warmup_iterations}")
    if args.scoring_bias != "zeros" and args.scoring_init is None:
        parser.error(f"--scoring-bias {args.scoring_bias} sets the biases of the re-initialised scored copy, so it "
                     "needs --scoring-init SCHEME; without it the network's own biases are scored")
    if args.scoring_init is not None and args.method != "snip":
        parser.error(f"--scoring-init applies to --method snip only, got --method {args.method}")
    if args.saliency_batch is not None and any(s > 0 for s in args.sparsity):
        dataset = models.dataset_for(args.arch)
        n = _FULL_TRAIN.get(dataset)
        if n is not None:
            n -= int(n * 0.1)  # the validation hold-out (snip_lib.data's default val_fraction)
            if args.saliency_batch > n:
                parser.error(f"--saliency-batch {args.saliency_batch} exceeds the {n:,} examples of {args.arch}'s "
                             f"{dataset} training split (after the 10 % validation hold-out); give at most {n}")


def _cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from snip_lib.train import resolve_device

    from snip_lib import models, snip

    _check_run_options(args, parser)
    paths = _run_paths(args, parser)  # before anything runs: a clash would overwrite a run just trained
    for path in paths.values():  # an unwritable --out is found now, not after the runs were trained
        _check_writable(path, "--out", args.out, parser)
    resolve_device(args.device)  # fail on a missing device before loading anything
    m = sum(p.numel() for p in snip.prunable_parameters(models.build(args.arch),
                                                        include_bias=args.include_bias).values())
    for sparsity in args.sparsity:  # an empty mask fails here, not after the other runs were trained
        if sparsity > 0:
            snip.kept_for(sparsity, m)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"result file(s) exist: {', '.join(existing)}; pass --overwrite to replace them, "
                         "or --out for another place")
    for sparsity in args.sparsity:
        for seed in args.seeds:
            kwargs = dict(
                arch=args.arch, sparsity=sparsity, seed=seed, epochs=args.epochs,
                saliency_batch=args.saliency_batch, init=args.init, scoring_init=args.scoring_init,
                scoring_bias=args.scoring_bias, include_bias=args.include_bias, bn_mode=args.bn_mode,
                method=args.method, limit_train=args.limit_train,
                optimizer=args.optimizer, lr=args.lr, schedule=args.schedule, batch_size=args.batch_size,
                amp=args.amp, channels_last=args.channels_last, device=args.device,
                progress=not args.no_progress, log_every=args.log_every, smoke_ok=args.smoke_ok,
                train_options=_train_options(args),
            )
            _run_one(kwargs, paths[(sparsity, seed)])
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from snip_lib import experiments, models

    print(f"{'architecture':<12} {'dataset':<18} input")
    for name in models.available_models():
        family = experiments.family_of(name)
        dataset = "sequential MNIST" if family == "rnn" else models.dataset_for(name)
        print(f"{name:<12} {dataset:<18} {tuple(models.input_shape(name))}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from snip_lib import experiments, models, snip

    model = models.build(args.arch)
    prunable = snip.prunable_parameters(model, include_bias=args.include_bias)
    m = sum(p.numel() for p in prunable.values())
    d = experiments.defaults_for(args.arch)
    print(f"{args.arch}: {models.count_parameters(model):,} parameters (conv/linear weights and biases, BN excluded)")
    print(f"prunable ({'weights and biases' if args.include_bias else 'weights only'}): {m:,}")
    width = max(len(n) for n in prunable)
    for name, p in prunable.items():
        print(f"  {name:<{width}}  {str(tuple(p.shape)):<22} {p.numel():>12,}")
    for s in args.sparsity:
        try:
            kept = snip.kept_for(s, m)
        except ValueError:
            print(f"sparsity {s!r}: keeps 0 of {m:,}; refused (round((1 - s) * m) = 0 leaves no connection)")
            continue
        print(f"sparsity {s!r}: keeps {kept:,} of {m:,} ({100 * kept / m:.3g}%), prunes {m - kept:,}")
    print(
        f"defaults: dataset {models.dataset_for(args.arch)}, batch {d['batch_size']}, saliency batch "
        f"{d['saliency_batch']}, epochs {d['full_epochs']} full / {d['quick_epochs']} quick, schedule {d['schedule']}"
    )
    return 0


def _unknown_suite(name: str, parser: argparse.ArgumentParser) -> None:
    """Refuse a suite name, saying what runs it where another command does."""
    from snip_lib import experiments

    hint = f"; {_ELSEWHERE[name]}" if name in _ELSEWHERE else ""
    parser.error(f"unknown suite {name!r}{hint}; available: {', '.join([*experiments.SUITES, *experiments.GROUPS])}")


def _cmd_reproduce(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from snip_lib import config, experiments

    if args.list or args.suite is None:
        known = [*experiments.SUITES, *experiments.GROUPS]
        if args.suite is not None and args.suite not in known:
            _unknown_suite(args.suite, parser)
        for suite in experiments.SUITES.values():
            members = experiments.GROUPS[args.suite].members if args.suite in experiments.GROUPS else ()
            if args.suite is None or suite.name == args.suite or suite.name in members:
                print(f"{suite.name}: {suite.description} ({len(suite.runs)} runs x seeds {list(suite.seeds)}; "
                      f"-> results/{suite.results_folder}/)")
        for group in experiments.GROUPS.values():
            if args.suite is None or group.name == args.suite:
                print(f"{group.name}: {group.description} (group of {len(group.members)} suites: "
                      f"{', '.join(group.members)})")
        return 0
    options = dict(seeds=args.seeds, archs=args.arch, sparsities=args.sparsity, epochs=args.epochs,
                   limit_train=args.limit_train, device=args.device, progress=not args.no_progress,
                   smoke_ok=args.smoke_ok, overwrite=args.overwrite, log=lambda line: print(line, flush=True))
    if args.suite in experiments.GROUPS:
        group = experiments.GROUPS[args.suite]
        root = args.out or "results"
        _check_writable_folder(Path(root), root, parser)
        experiments.run_group(group.name, root, **options)
        if group.report is not None:
            print(group.report(Path(root), config.mode_name()), flush=True)
        return 0
    if args.suite not in experiments.SUITES:
        _unknown_suite(args.suite, parser)
    out = args.out or f"results/{experiments.SUITES[args.suite].results_folder}"
    _check_writable_folder(Path(out), out, parser)
    experiments.run_suite(args.suite, out, **options)
    return 0


def _result_files(targets: Sequence[str]) -> list[Path]:
    """The files to replay: each file named, and the replayable results inside each folder.

    A folder may hold other JSON (settings, notebooks' outputs): those that are not valid result files
    are skipped with a note on stderr naming each and why. A file named on its own is checked later
    and refused if invalid, since it was asked for.
    """
    from snip_lib import replay

    files: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            found, runs = [], []
            for p in sorted(p for p in path.rglob("*.json") if p.is_file()):
                try:
                    replayable = replay.is_replayable(p)
                except (ValueError, OSError) as exc:
                    reason = str(exc).removeprefix(f"{p}: ")
                    print(f"{PROG}: note: skipping {p}: not a valid result file: {reason}", file=sys.stderr,
                          flush=True)
                    continue
                found.append(p)
                if replayable:
                    runs.append(p)
            if not runs:
                raise ValueError(f"no replayable result files (*.json of kind "
                                 f"{' or '.join(replay.REPLAYABLE_KINDS)}) in the folder {target!r}")
            if len(runs) < len(found):
                print(f"{target}: skipping {len(found) - len(runs)} file(s) of other kinds (e.g. replay reports)",
                      flush=True)
            files.extend(runs)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"no result file or folder {target!r}")
    return files


def _cmd_verify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from snip_lib import replay

    if args.report is not None:
        if Path(args.report).suffix.lower() != ".json":
            parser.error(f"--report must name a .json file, got {args.report!r}")
        _check_writable(Path(args.report), "--report", args.report, parser)  # before the replays, not after
    files = _result_files(args.results)
    for path in files:  # every file checked before the first replay: a bad one fails fast, named
        try:
            replay.replay_arguments(path, epochs=args.epochs)
        except ValueError as exc:
            raise ValueError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    checks = []
    for path in files:
        v = replay.verify(path, epochs=args.epochs, tolerance=args.tolerance, device=args.device,
                          threads=args.threads, progress=args.progress)
        v.label = str(path)
        print(v.summary(), flush=True)
        checks.append(v)
    if args.report is not None:
        replay.write_report(checks, args.report, targets=args.results, epochs=args.epochs, tolerance=args.tolerance)
        print(f"report -> {args.report}", flush=True)
    counts = replay.count_verdicts(checks)
    print(f"{len(files)} result(s): {counts['exact']} exact, {counts['within tolerance']} within tolerance, "
          f"{counts['DIFFERS']} differ", flush=True)
    return 1 if counts["DIFFERS"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 run failed, 2 bad input).

    On the command line (``argv`` None) usage lines name the program as invoked (``snip`` for the
    console script); called with ``argv``, they name :data:`PROG`.
    """
    parser = build_parser(_invoked_prog() if argv is None else PROG)
    args = parser.parse_args(argv)
    prog = parser.prog
    sub = getattr(args, "subparser", parser)
    from snip_lib.data import DatasetUnavailableError

    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.command == "run":
            return _cmd_run(args, sub)
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "verify":
            return _cmd_verify(args, sub)
        return _cmd_reproduce(args, sub)
    except DatasetUnavailableError as exc:
        print(f"{prog}: dataset unavailable: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a missing input, or an output that cannot be written: one line, not a traceback
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"{prog}: training failed: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
