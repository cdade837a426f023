"""Run a pruned network sparse: export to ``torch.sparse`` for inference, and count its bytes.

Why this exists. A network masked by :mod:`snip_lib.masking` is sparse only on paper: its
weights are dense tensors full of zeros, it stores every one of them (plus a mask of the same
size) and multiplies by every one of them. :func:`to_sparse` makes an inference-only copy in
which each masked ``nn.Linear`` becomes a :class:`SparseLinear` holding only the kept weights in
a ``torch.sparse`` matrix (CSR or COO), and optionally each masked ``nn.Conv2d`` a
:class:`SparseConv2d` (im2col with ``F.unfold``, then a sparse matrix product).
:func:`storage_bytes` counts what a model holds, dense or sparse, so the two can be compared.

When sparse wins on a CPU, and when it does not
-----------------------------------------------
The measured figures are in ``benchmarks/results/sparse_inference.json`` and the book's
performance appendix; the reasons are these.

* **Work.** A sparse product does work per stored non-zero (and per row), but each of those
  touches memory irregularly (an index load, then a gather), while a dense GEMM from oneDNN/MKL
  streams through contiguous memory with vector instructions, many multiply-adds per cycle. So a
  sparse product needs far fewer non-zeros to break even: a large layer at 1-2 % density (the
  first layer of LeNet-300-100 at 98 % sparsity) runs several times faster sparse; a layer at
  50 % density runs slower sparse, however it is stored.
* **Batch 1.** A single example makes each layer a matrix-vector product of a few microseconds,
  bound by reading the weights; reading 2 % of them is what sparse saves. But every sparse call
  also pays fixed costs (dispatch, checks, the transposes around ``addmm``) of the same size, so
  for networks as small as the LeNets those costs, not the arithmetic, decide, and the dense
  network is as fast or faster.
* **Convolutions.** PyTorch has no sparse convolution kernel for the CPU. Lowering a convolution
  to a matrix product (``F.unfold``) copies every input patch, ``k*k`` times the input, and that
  copy costs more than the dense convolution it replaces once the batch is large; only a very
  sparse convolution at batch 1 gains. Hence ``conv="dense"`` by default: convolutions stay dense
  (their weights keep their zeros) and only the linear layers go sparse.
* **Memory.** CSR stores a value and a column index per non-zero plus a row pointer per row; with
  int64 indices that is 12 bytes per kept weight instead of 4 bytes per weight dense, so CSR is
  smaller below 1/3 density (1/2 with ``index_dtype=torch.int32``). COO stores two int64 indices
  per non-zero (20 bytes per kept weight) and its products are slower on the CPU: CSR is the
  default.
* **Semi-structured sparsity** (``torch.sparse.to_sparse_semi_structured``, 2:4) needs an NVIDIA
  GPU (Ampere or newer) and exactly two non-zeros in every group of four weights; SNIP's masks are
  unstructured, so they do not have that pattern, and it is not offered here.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LAYOUTS", "CONV_MODES", "SparseLinear", "SparseConv2d", "to_sparse", "storage_bytes", "export_report"]

#: Sparse layouts :func:`to_sparse` can write: compressed rows (fast products on the CPU, MKL) or
#: coordinates (simplest, slower).
LAYOUTS: tuple[str, ...] = ("csr", "coo")
#: What :func:`to_sparse` does with masked ``nn.Conv2d`` layers: keep them dense (default, see
#: the module docstring) or lower them to ``F.unfold`` + a sparse product.
CONV_MODES: tuple[str, ...] = ("dense", "sparse")

_INDEX_DTYPES = (torch.int64, torch.int32)
# Parents that read a child Linear's weight directly instead of calling it (the reason for
# masking._ParentGuard): nn.MultiheadAttention its out_proj, and the fast path of
# nn.TransformerEncoderLayer its linear1/linear2. A SparseLinear there fails at forward time.
_READS_CHILD_WEIGHTS = (nn.MultiheadAttention, nn.TransformerEncoderLayer)
# On the CPU, torch's CSR products (MKL) have no float16/bfloat16 kernel; COO ones do.
_NO_CPU_CSR_DTYPES = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------
# sparse tensors
# --------------------------------------------------------------------------------------------


def _to_layout(matrix: torch.Tensor, layout: str, index_dtype: torch.dtype) -> torch.Tensor:
    """A dense 2-D matrix as a sparse CSR or (coalesced) COO tensor; zeros are not stored."""
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": known, and fine here
        warnings.simplefilter("ignore", UserWarning)
        if layout == "coo":
            return matrix.to_sparse_coo().coalesce()
        csr = matrix.to_sparse_csr()
        if index_dtype == torch.int64:
            return csr
        return torch.sparse_csr_tensor(
            csr.crow_indices().to(index_dtype), csr.col_indices().to(index_dtype), csr.values(), csr.shape
        )


def _sparse_parts(t: torch.Tensor) -> list[torch.Tensor]:
    """The dense arrays that hold a tensor: itself, or a sparse tensor's indices and values."""
    if t.layout == torch.strided:
        return [t]
    if t.layout == torch.sparse_coo:
        return [t._indices(), t._values()]
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return [t.crow_indices(), t.col_indices(), t.values()]
    if t.layout in (torch.sparse_csc, torch.sparse_bsc):
        return [t.ccol_indices(), t.row_indices(), t.values()]
    raise TypeError(f"cannot count the storage of a tensor with layout {t.layout}")


def _nnz(t: torch.Tensor) -> int:
    return int(t._nnz()) if t.layout != torch.strided else int(torch.count_nonzero(t))


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------


class _InferenceOnly(nn.Module):
    """Base of the sparse modules: they hold buffers, not parameters, and refuse training mode.

    Why: ``torch.sparse`` products have no fast backward on the CPU and an exported model has no
    masks, so an optimizer step could only make pruned weights reappear in a dense gradient.
    Train the masked dense model; export it when it is done.
    """

    def train(self, mode: bool = True) -> _InferenceOnly:
        if mode:
            raise RuntimeError(
                f"{type(self).__name__} is inference-only (exported by snip_lib.sparse.to_sparse); "
                "train the masked dense model and export it again"
            )
        return super().train(False)

    def _dense_weight(self) -> torch.Tensor:
        return self.weight.to_dense()

    def _check_runnable(self) -> None:
        """The clear error to_sparse gives, for a CSR module turned half precision after the export."""
        w = self.weight
        if w.layout == torch.sparse_csr and w.device.type == "cpu" and w.dtype in _NO_CPU_CSR_DTYPES:
            raise ValueError(f"{type(self).__name__}: a CSR weight in {w.dtype} cannot be multiplied on the CPU "
                             "(no kernel); export with layout='coo', or keep the exported model in float32")

    def __deepcopy__(self, memo: dict) -> _InferenceOnly:
        """A deep copy, as ``copy.deepcopy`` makes of any module.

        Why: torch cannot deep-copy a sparse CSR tensor (it has no storage to copy), so the
        default copy of a CSR module fails; its buffers are cloned instead (``clone`` keeps the
        layout), and everything else is deep-copied as usual.
        """
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        for key, value in self.__dict__.items():
            if key == "_buffers":
                value = {name: self._copied_buffer(buffer, memo) for name, buffer in value.items()}
            else:
                value = copy.deepcopy(value, memo)
            object.__setattr__(copied, key, value)
        return copied

    @staticmethod
    def _copied_buffer(buffer: torch.Tensor | None, memo: dict) -> torch.Tensor | None:
        if buffer is None or buffer.layout != torch.sparse_csr:
            return copy.deepcopy(buffer, memo)
        if id(buffer) not in memo:  # a tensor shared by two modules stays shared in the copy
            memo[id(buffer)] = buffer.clone()
        return memo[id(buffer)]


class SparseLinear(_InferenceOnly):
    """``y = x Wᵀ + b`` with ``W`` (out × in) stored as a sparse CSR or COO matrix.

    Computed as ``(W · xᵀ)ᵀ`` with ``torch.addmm``, since PyTorch multiplies a sparse matrix
    from the left. Accepts inputs of shape ``(..., in_features)`` like ``nn.Linear``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if weight.dim() != 2 or weight.layout not in (torch.sparse_csr, torch.sparse_coo):
            raise ValueError(f"weight must be a 2-D sparse CSR or COO matrix, got {weight.dim()}-D {weight.layout}")
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        super().train(False)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, layout: str = "csr", index_dtype: torch.dtype = torch.int64
    ) -> SparseLinear:
        """The sparse twin of ``linear``: its zero weights are not stored."""
        weight = _to_layout(linear.weight.detach(), layout, index_dtype)
        return cls(weight, None if linear.bias is None else linear.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As ``nn.Linear``: (..., in_features) -> (..., out_features), by a sparse matrix product."""
        self._check_runnable()
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected inputs with last dimension {self.in_features}, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat_t = x.reshape(-1, self.in_features).t()
        if self.bias is None:
            out = torch.sparse.mm(self.weight, flat_t)
        else:
            out = torch.addmm(self.bias.unsqueeze(1), self.weight, flat_t)
        return out.t().reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        layout = "csr" if self.weight.layout == torch.sparse_csr else "coo"
        density = self.weight._nnz() / max(1, self.in_features * self.out_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"layout={layout}, density={density:.4f}")


def _conv_unsupported(conv: nn.Conv2d) -> str | None:
    """Why ``conv`` cannot be lowered to unfold + sparse product (None when it can)."""
    if conv.groups != 1:
        return f"groups={conv.groups} (only groups=1 is lowered)"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (only 'zeros' is lowered)"
    if isinstance(conv.padding, str):
        return f"padding={conv.padding!r} (only explicit integer padding is lowered)"
    return None


class SparseConv2d(_InferenceOnly):
    """A 2-D convolution as im2col (``F.unfold``) followed by a sparse matrix product.

    The weight (out × in × kh × kw) is stored as a sparse (out × in·kh·kw) matrix. The product is
    taken one example at a time: the matrix of all patches of a large batch is so wide that a
    single sparse product over it runs out of cache (measured several times slower). Supports
    stride, padding, dilation and unbatched (C, H, W) inputs; groups must be 1.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        in_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        if weight.dim() != 2 or weight.layout not in (torch.sparse_csr, torch.sparse_coo):
            raise ValueError(f"weight must be a 2-D sparse CSR or COO matrix, got {weight.dim()}-D {weight.layout}")
        self.out_channels = weight.shape[0]
        self.in_channels = in_channels
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        expected = in_channels * self.kernel_size[0] * self.kernel_size[1]
        if weight.shape[1] != expected:
            raise ValueError(f"weight has {weight.shape[1]} columns; in_channels*kh*kw = {expected}")
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        super().train(False)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, layout: str = "csr", index_dtype: torch.dtype = torch.int64) -> SparseConv2d:
        """The sparse twin of ``conv``; raises ``ValueError`` for convolutions it cannot lower."""
        reason = _conv_unsupported(conv)
        if reason is not None:
            raise ValueError(f"cannot lower this convolution to unfold + sparse product: {reason}")
        matrix = conv.weight.detach().reshape(conv.out_channels, -1)
        return cls(
            _to_layout(matrix, layout, index_dtype), None if conv.bias is None else conv.bias.detach(),
            in_channels=conv.in_channels, kernel_size=conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation,
        )

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        sizes = []
        for n, k, s, p, d in zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation):
            sizes.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As ``nn.Conv2d``: (N, C, H, W) or (C, H, W) in, by ``unfold`` and a sparse matrix product."""
        self._check_runnable()
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        h_out, w_out = self._out_size(x.shape[2], x.shape[3])
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        if self.bias is None:
            outs = [torch.sparse.mm(self.weight, c) for c in cols]
        else:
            bias = self.bias.unsqueeze(1)
            outs = [torch.addmm(bias, self.weight, c) for c in cols]
        out = torch.stack(outs).reshape(x.shape[0], self.out_channels, h_out, w_out)
        return out[0] if unbatched else out

    def extra_repr(self) -> str:
        layout = "csr" if self.weight.layout == torch.sparse_csr else "coo"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}, layout={layout}")


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def _check_options(layout: Any, conv: Any, min_sparsity: Any, index_dtype: Any) -> None:
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if not isinstance(conv, str) or conv not in CONV_MODES:
        raise ValueError(f"unknown conv mode {conv!r}; allowed: {', '.join(CONV_MODES)}")
    if isinstance(min_sparsity, bool) or not isinstance(min_sparsity, numbers.Real) or not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(f"min_sparsity must be a number in [0, 1], got {min_sparsity!r}")
    if index_dtype not in _INDEX_DTYPES:
        raise ValueError(f"index_dtype must be torch.int64 or torch.int32, got {index_dtype!r}")
    if index_dtype == torch.int32 and layout != "csr":
        raise ValueError("index_dtype=torch.int32 needs layout='csr' (COO indices are always int64)")


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def to_sparse(
    model: nn.Module,
    layout: str = "csr",
    *,
    conv: str = "dense",
    min_sparsity: float = 0.0,
    index_dtype: torch.dtype = torch.int64,
) -> nn.Module:
    """An inference-only copy of a masked model whose masked layers store only their kept weights.

    ``model`` must carry masks from :func:`snip_lib.masking.apply_masks` (``ValueError``
    otherwise); convert a model pruned with ``torch.nn.utils.prune`` first with
    :func:`snip_lib.masking.from_torch_prune`.
    In a deep copy, the masks are removed (pruned weights set to exactly zero), then:

    * every masked ``nn.Linear`` whose own sparsity is at least ``min_sparsity`` becomes a
      :class:`SparseLinear` with its weight in ``layout`` ("csr" or "coo");
    * with ``conv="sparse"``, every such ``nn.Conv2d`` becomes a :class:`SparseConv2d` (those it
      cannot lower, e.g. grouped ones, stay dense); with ``conv="dense"`` (default) they stay
      dense, which is faster on the CPU at any batch size but the smallest (module docstring);
    * everything else (other layers, masked recurrent weights, BatchNorm) is kept as it is.

    The copy is in eval mode, has no trainable parameters (``requires_grad`` off), its sparse
    modules refuse ``.train()``, and it refuses to run while any of its modules is in training
    mode (a refused ``.train()`` has already switched the modules before the first sparse one). Its outputs equal the masked model's in eval mode up to
    floating-point rounding (sums are taken in another order). ``index_dtype=torch.int32``
    halves the index memory of CSR. The original model is not changed. Which layer became what is
    in ``export_report(copy)``, and why a masked weight stayed dense in ``copy.snip_export``.

    A Linear whose parent reads its weight without calling it (``out_proj`` of
    ``nn.MultiheadAttention``, ``linear1``/``linear2`` of ``nn.TransformerEncoderLayer``) stays
    dense, since a sparse one would break the parent's forward. On the CPU, CSR products have no
    float16/bfloat16 kernel, so such a model is refused with ``layout="csr"`` (``ValueError``):
    use ``layout="coo"`` or ``model.float()``.

    Example: the sparse copy computes what the masked network computes, in less memory.

    >>> import torch
    >>> from snip_lib import init, masking, models, snip, sparse
    >>> net = init.apply(models.build("lenet300"), "glorot_uniform", seed=0)
    >>> x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    >>> masks = snip.snip_masks(net, x, y, sparsity=0.98)
    >>> net = masking.apply_masks(net, masks).eval()
    >>> fast = sparse.to_sparse(net)
    >>> with torch.no_grad():
    ...     torch.allclose(fast(x), net(x), atol=1e-5)
    True
    >>> sparse.storage_bytes(fast) < sparse.storage_bytes(net) / 10
    True
    """
    from snip_lib import masking  # local: masking pulls in pandas

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_options(layout, conv, min_sparsity, index_dtype)
    masks = masking.get_masks(model)
    if not masks:
        raise ValueError(
            "the model carries no snip_lib masks, so there is nothing to make sparse; prune it first "
            "(snip_lib.masking.apply_masks(model, snip.snip_masks(...))), or convert a model pruned with "
            "torch.nn.utils.prune with snip_lib.masking.from_torch_prune(model)"
        )
    exported = copy.deepcopy(model)
    masking.remove_masks(exported)
    params = dict(exported.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():  # pruned weights that drifted (no enforce_masks) are zeroed
            params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))
    exported.eval()
    for p in exported.parameters():
        p.requires_grad_(False)

    decisions: dict[str, str] = {}
    # every module looked up before any is replaced, so a bias names its own layer's type
    owners = {name: exported.get_submodule(name.rpartition(".")[0]) if "." in name else exported for name in masks}
    root: nn.Module | None = None  # a masked root-level layer is replaced by returning its sparse form
    for name, mask in masks.items():
        module_name, _, leaf = name.rpartition(".")
        module = owners[name]
        sparsity = 1.0 - float(mask.float().mean()) if mask.numel() else 0.0
        if leaf != "weight" or not isinstance(module, (nn.Linear, nn.Conv2d)):
            decisions[name] = f"dense ({type(module).__name__}.{leaf} has no sparse form here)"
            continue
        parent_name, _, child = module_name.rpartition(".")
        parent = exported.get_submodule(parent_name) if module_name else None
        if isinstance(parent, _READS_CHILD_WEIGHTS):
            decisions[name] = f"dense ({type(parent).__name__} reads {child}.weight directly, not through its forward)"
            continue
        if sparsity < min_sparsity:
            decisions[name] = f"dense (sparsity {sparsity:.3f} < min_sparsity {min_sparsity:g})"
            continue
        if isinstance(module, nn.Conv2d):
            reason = "conv='dense'" if conv == "dense" else _conv_unsupported(module)
            if reason is not None:
                decisions[name] = f"dense ({reason})"
                continue
        dtype = module.weight.dtype
        if layout == "csr" and dtype in _NO_CPU_CSR_DTYPES and module.weight.device.type == "cpu":
            raise ValueError(
                f"layout='csr' cannot run {name!r} ({dtype}) on the CPU: torch has no CSR product for {dtype} "
                "there; export with layout='coo', or convert the model with model.float() first"
            )
        if isinstance(module, nn.Linear):
            new: nn.Module = SparseLinear.from_linear(module, layout, index_dtype)
        else:
            new = SparseConv2d.from_conv(module, layout, index_dtype)
        if not module_name:
            root = new
        else:
            _set_submodule(exported, module_name, new)
        decisions[name] = layout
    result = root if root is not None else exported
    result.snip_export = decisions
    # model.train() stops at the first sparse module, after switching the modules before it (a
    # BatchNorm, say) to training mode: the export then refuses to run until .eval() is called.
    result.register_forward_pre_hook(_refuse_training_mode)
    return result


def _refuse_training_mode(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook of an exported model: it computes nothing after a ``.train()`` call.

    Only the root's flag is read (one attribute per forward): ``Module.train`` sets it first, on
    the way to the children, whether it was called on this model or on one that contains it.
    """
    if module.training:
        raise RuntimeError(
            "this model was exported by snip_lib.sparse.to_sparse for inference, but .train() switched "
            "some of its modules to training mode; call .eval() on it (train the masked dense model instead)"
        )


# --------------------------------------------------------------------------------------------
# accounting
# --------------------------------------------------------------------------------------------


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer of ``model`` once (shared tensors are counted once)."""
    seen: set[int] = set()
    out = []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            out.append((name, t))
    return out


def storage_bytes(model: nn.Module, *, by_tensor: bool = False) -> int | dict[str, int]:
    """Bytes of every parameter and buffer ``model`` holds; a sparse tensor counts its index and value arrays.

    This is what the model costs in memory (and, saved with ``torch.save``, on disk, give or take
    the file's bookkeeping), not the activations of a forward pass. A masked model counts its mask
    buffers too: masking makes a model *bigger*. Each tensor is counted once even if shared.
    ``by_tensor=True`` returns ``{name: bytes}`` instead of the total.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    sizes = {name: sum(p.numel() * p.element_size() for p in _sparse_parts(t)) for name, t in _tensors(model)}
    return sizes if by_tensor else sum(sizes.values())


def export_report(model: nn.Module) -> list[dict[str, Any]]:
    """One row per weight of a model: its kind (dense/csr/coo), shape, stored non-zeros and bytes.

    Works on any model (dense, masked or exported by :func:`to_sparse`); use
    ``pandas.DataFrame(export_report(m))`` to show it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rows = []
    for name, t in _tensors(model):
        if not name.endswith("weight"):
            continue
        kind = {torch.strided: "dense", torch.sparse_csr: "csr", torch.sparse_coo: "coo"}.get(t.layout, str(t.layout))
        numel = t.numel() if t.layout == torch.strided else int(torch.Size(t.shape).numel())
        nnz = _nnz(t)
        rows.append({"weight": name, "kind": kind, "shape": tuple(t.shape), "non_zeros": nnz,
                     "density": nnz / numel if numel else 0.0,
                     "bytes": sum(p.numel() * p.element_size() for p in _sparse_parts(t))})
    return rows
