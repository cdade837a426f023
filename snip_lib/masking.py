"""Keep pruned weights at exactly zero while a network trains, and report, save and convert masks.

A mask is a dict ``{parameter name (as in model.named_parameters()): BoolTensor of its shape}``;
``True`` keeps a connection, ``False`` prunes it.

How a masked model is kept sparse
---------------------------------
:func:`apply_masks` does three things per masked parameter ``p`` of module ``mod``:

1. zero the pruned entries of ``p`` in place (and of ``p.grad`` if it already holds a gradient,
   so that an ``optimizer.step()`` right after :func:`apply_masks` cannot revive them);
2. store the mask as a persistent buffer ``mod.<leaf>_mask`` (e.g. ``fc1.weight_mask``), so
   ``state_dict()`` carries it, ``.to(device)`` moves it and :func:`get_masks` can read it back;
3. register a post-accumulate-grad hook on ``p`` that multiplies ``p.grad`` by the mask in place,
   once per backward, right after autograd has written it (and before any optimizer sees it).

Pruned entries then have weight 0 *and* gradient 0. Every element-wise optimizer in
``torch.optim`` (SGD with momentum, Nesterov and weight decay, Adam, AdamW, RMSprop, Adagrad, ...)
maps (weight 0, gradient 0, state 0) to weight 0, so they stay exactly zero without further help.
The alternatives cost more or break:

* masking only the gradient of non-zeroed weights, or zeroing weights once without masking the
  gradient, lets momentum and weight decay revive pruned weights (the bug reported against several
  pruning repositories; see ``test_zeroing_once_without_gradient_mask_revives_pruned_weights``
  in ``tests/test_masking.py``);
* a ``weight * mask`` product in every forward pass (``torch.nn.utils.prune``, Synaptic-Flow,
  OpenLTH) adds an extra op per layer per forward, and per *time step* in the recurrent models,
  where the hook runs once per backward on the accumulated gradient. Forward cost here is exactly
  the dense one, and the in-place multiply allocates nothing.

Gradients taken with ``torch.autograd.grad`` never reach ``.grad`` and so are not masked: the hook
guards training (``backward`` + optimizer), which is where revival happens.

The hook's pass over every masked gradient is the whole cost of masking (a few percent of a
training step where the step is dominated by its weights, as in LeNet-300-100). An optimizer can
fold the mask into a pass it makes anyway: :class:`snip_lib.optim.MaskedSGD` adds
``gradient * mask`` to its momentum buffer, and :func:`gradient_hooks_paused` removes the then
redundant hooks for the duration of a training loop. :func:`snip_lib.train.fit` does that for SGD.

The mask buffer holds 0./1. in the parameter's dtype (like ``torch.nn.utils.prune``), not bool:
on CPU, ``float * bool`` takes a slow type-promotion path (measured 25-80x slower than
``float * float`` with torch 2.14), and this multiply sits on the hot path of every backward.
:func:`get_masks` returns bool tensors.

Safety net. Optimizers that are not element-wise (``torch.optim.Muon`` orthogonalises the whole
update matrix) or that carry non-zero state for pruned entries (state loaded from a dense run) can
still move pruned weights. :func:`enforce_masks` re-zeroes them with one in-place multiply per
parameter; call it after every ``optimizer.step()`` in a loop that uses such an optimizer.
:func:`snip_lib.train.fit` builds a fresh SGD or Adam optimizer, so it does not pay for the net on
every step; it checks with :func:`pruned_nonzero` before training and after every epoch that no
pruned weight moved, and raises if one did.

Copies. ``copy.deepcopy`` and pickling drop tensor hooks (``Parameter.__deepcopy__`` builds a new
Parameter without them). Each masked module therefore also carries a tiny forward pre-hook (a
``_MaskGuard``, which *is* copied with the module) that re-installs the gradient hooks on the
module's current parameter objects the first time a copy runs forward; it also repairs hooks after
a parameter is replaced (``load_state_dict(assign=True)``) or swapped (``module.to()`` with
``torch.__future__.set_swap_module_params_on_conversion(True)``). It only ever adds hooks (a
``Parameter`` swapped in by ``torch.func.functional_call`` is hooked too, and the module's own
weight keeps its hook); :func:`remove_masks` and :func:`gradient_hooks_paused` take them off.
DataParallel replicas share the guard but own no parameter, and their forward leaves the real
parameters' hooks alone. The guard does no tensor work:
per forward it costs one identity check per masked parameter plus the hook dispatch (about a
microsecond per masked module on CPU). The parent of each masked module carries a ``_ParentGuard``
that runs the same check from the parent's forward, for modules whose weight is read without
calling them (``nn.MultiheadAttention`` reads ``out_proj.weight`` directly).

Mixing with ``torch.nn.utils.prune``. Both use a buffer named ``<leaf>_mask``; pruning a masked
module with torch afterwards replaces this library's mask. Every function here then stops with an
error that says so (convert with :func:`to_torch_prune` first), instead of working on torch's mask.
The reports warn when pruned entries are no longer zero (weights re-initialised or loaded behind
the masks' back), since they count the masks, not the weights.

Export. ``torch.compile``, ``torch.export`` and ``torch.jit.trace`` work on a masked model;
``torch.jit.script`` cannot compile the Python guards, so call :func:`remove_masks` first (the
pruned weights stay zero) when scripting a trained model for deployment.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.hooks import RemovableHandle

__all__ = [
    "FORMAT",
    "apply_masks",
    "enforce_masks",
    "get_masks",
    "gradient_hooks_paused",
    "is_masked",
    "masked_parameters",
    "pruned_nonzero",
    "remove_masks",
    "sparsity_report",
    "global_sparsity",
    "layer_collapse",
    "save_pruned",
    "load_pruned",
    "load_masked_state_dict",
    "to_torch_prune",
    "from_torch_prune",
]

FORMAT = "snip_lib.pruned/1"
"""Format tag written by :func:`save_pruned` and checked by :func:`load_pruned`."""

_MAX_NAMES_IN_ERROR = 40
_EXTRA_STATE = torch.nn.modules.module._EXTRA_STATE_KEY_SUFFIX  # "_extra_state"


# --------------------------------------------------------------------------------------------
# hooks
# --------------------------------------------------------------------------------------------


class _GradMask:
    """Post-accumulate-grad hook: multiply ``module.<leaf>.grad`` by ``module.<leaf>_mask`` in place.

    It runs once per backward, after autograd has accumulated the parameter's gradient into
    ``.grad`` (a layer reused across time steps is masked once, not per use). Masking ``.grad`` in
    place allocates nothing; a classic tensor hook (``grad * mask``) allocates a new gradient per
    parameter per backward. What the pass costs per training step is measured by
    ``benchmarks/masked_overhead.py`` (about 1 % on the LeNet-5-Caffe and VGG-D steps, 5 to 7 % on
    the short LeNet-300-100 step); :class:`snip_lib.optim.MaskedSGD` avoids it.

    The mask is read from the module's buffer at call time, so ``.to(device)``, ``.half()`` and
    ``load_state_dict`` (which update the buffer) are always honoured. The module is held weakly
    to avoid a parameter -> hook -> module reference cycle, and so is the :class:`_MaskGuard` that
    installed it (``guard_ref``), which holds the parameter: the two are freed without the cyclic
    garbage collector. ``guard_ref`` and ``cdata`` (the address of the C++ tensor it was attached
    to) let the guard recognise its own hook on a parameter and see that
    ``torch.utils.swap_tensors`` detached it.
    """

    __slots__ = ("module_ref", "mask_name", "guard_ref", "cdata")

    def __init__(self, module: nn.Module, leaf: str, guard: _MaskGuard, cdata: int) -> None:
        self.module_ref = weakref.ref(module)
        self.mask_name = f"{leaf}_mask"
        self.guard_ref = weakref.ref(guard)
        self.cdata = cdata

    def __call__(self, param: torch.Tensor) -> None:
        module = self.module_ref()
        mask = None if module is None else module._buffers.get(self.mask_name)
        if mask is not None:
            _mask_grad(param, mask)


def _mask_grad(param: torch.Tensor, mask: torch.Tensor) -> None:
    """Multiply ``param.grad`` (if any) by ``mask``, in place where it is not part of a graph."""
    grad = param.grad
    if grad is None:
        return
    if grad.requires_grad:  # backward(create_graph=True): keep the gradient differentiable
        param.grad = grad * mask
    else:
        grad.mul_(mask)


class _MaskGuard:
    """Forward pre-hook on a module that owns masked parameters; also the registry of them.

    ``leaves`` names the masked parameters of the module (``("weight",)``). On each forward,
    :meth:`ensure` makes sure that the ``Parameter`` now in each slot carries this guard's
    :class:`_GradMask` hook, once: after ``copy.deepcopy``/unpickling (hooks are not copied), after
    a parameter was replaced (``load_state_dict(assign=True)``) or swapped
    (``torch.utils.swap_tensors``, which detaches the hook from the tensor: it is re-attached), or
    after ``requires_grad`` was switched back on. Copies of the guard start with no hooks.

    What it never does is take a hook off: only :meth:`release` removes hooks (``remove_masks``,
    ``gradient_hooks_paused``). So a ``Parameter`` that ``torch.func.functional_call`` swaps in for
    one call (an EMA or teacher copy's) gets the hook too, and its gradient is masked by this
    module's mask if it takes part in a backward, while the module's own weight keeps its hook for
    the backward of a forward made before the call. A tensor that is not a ``Parameter`` (SNIP's
    scoring pass, MAML-style fast weights) is not hooked: it is not what an optimizer updates. The
    guard holds the hooks' handles, which reference a parameter's hook dict only weakly, and the
    parameter of its last check: a parameter the model no longer uses is freed with its hook.

    DataParallel replicas (``module._is_replica``) share this guard with the real module but own
    no ``Parameter``; their forward checks nothing (the gradient flows back to the real, hooked
    parameter). The real module's hooks come from :func:`apply_masks` or its last forward: a copy
    made since then should run :func:`enforce_masks` (which checks them) before being wrapped.
    """

    def __init__(self, leaves: tuple[str, ...] = ()) -> None:
        self.leaves: tuple[str, ...] = tuple(leaves)
        # handles of every hook installed (each references its parameter's hook dict weakly)
        self._handles: list[RemovableHandle] = []
        # leaf -> (the Parameter of the last check, its hook): the fast path of a forward. A strong
        # reference, not a weakref: torch.utils.swap_tensors (module.to() in swap mode) refuses
        # weakly referenced tensors.
        self._current: dict[str, tuple[torch.Tensor, _GradMask]] = {}
        # True while gradient_hooks_paused is active: no hook is installed
        self.paused = False

    def __call__(self, module: nn.Module, args: Any) -> None:
        self.ensure(module)

    def ensure(self, module: nn.Module) -> None:
        """Hook the Parameter now in each masked slot of ``module`` if it lacks this guard's hook."""
        # module.__dict__, not getattr: nn.Module.__getattr__ raises for a missing name (slow, every forward)
        if self.paused or module.__dict__.get("_is_replica", False):
            return
        for leaf in self.leaves:
            if _taken_by_torch_prune(module, leaf):
                raise RuntimeError(_mixed_pruning_message(type(module).__name__, leaf))
            param = module._parameters.get(leaf)
            if not isinstance(param, nn.Parameter):
                # None, or a computed tensor that torch.func.functional_call swapped in for one call:
                # nothing to hook, and the hooks of the real Parameter stay where they are
                continue
            current = self._current.get(leaf)
            if current is not None and current[0] is param and current[1].cdata == param._cdata:
                continue
            hook = self._hook_on(param, leaf)
            if hook is not None and hook.cdata != param._cdata:
                # Same Parameter object, new C++ tensor: torch.utils.swap_tensors (module.to() in swap
                # mode) left the hook dict detached from the tensor; re-attach it.
                param._post_accumulate_grad_hooks = param._post_accumulate_grad_hooks
                hook.cdata = param._cdata
            if hook is None and param.requires_grad:
                hook = _GradMask(module, leaf, self, param._cdata)
                self._handles = [h for h in self._handles if h.hooks_dict_ref() is not None]
                self._handles.append(param.register_post_accumulate_grad_hook(hook))
            if hook is None:
                self._current.pop(leaf, None)
            else:
                self._current[leaf] = (param, hook)

    def _hook_on(self, param: torch.Tensor, leaf: str) -> _GradMask | None:
        """This guard's hook for ``leaf`` among ``param``'s hooks, if it has one."""
        mask_name = f"{leaf}_mask"
        for hook in (param._post_accumulate_grad_hooks or {}).values():
            if type(hook) is _GradMask and hook.guard_ref() is self and hook.mask_name == mask_name:
                return hook
        return None

    def release(self) -> None:
        """Remove every gradient hook this guard installed."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._current.clear()

    def __deepcopy__(self, memo: dict) -> _MaskGuard:
        return _MaskGuard(self.leaves)

    def __getstate__(self) -> dict:
        return {"leaves": self.leaves}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["leaves"])

    def __repr__(self) -> str:
        return f"_MaskGuard(leaves={self.leaves!r})"


class _ParentGuard:
    """Forward pre-hook on the parent of masked modules: runs their guards from the parent's forward.

    Some modules never call a child's forward but read its weight directly: ``nn.MultiheadAttention``
    uses ``out_proj.weight`` inside ``F.multi_head_attention_forward``. The child's own guard would
    then never run, and a copy of the model would train without its gradient hooks. ``children``
    are the local names of the masked children.
    """

    def __init__(self, children: tuple[str, ...] = ()) -> None:
        self.children: tuple[str, ...] = tuple(children)

    def __call__(self, module: nn.Module, args: Any) -> None:
        for name in self.children:
            child = module._modules.get(name)
            found = None if child is None else _find_guard(child)
            if found is not None:
                found[1].ensure(child)

    def __repr__(self) -> str:
        return f"_ParentGuard(children={self.children!r})"


def _taken_by_torch_prune(module: nn.Module, leaf: str) -> bool:
    """Whether ``torch.nn.utils.prune`` replaced the masked parameter ``leaf`` by ``<leaf>_orig``."""
    return module._parameters.get(leaf) is None and f"{leaf}_orig" in module._parameters


def _mixed_pruning_message(where: str, leaf: str) -> str:
    return (f"{where}: '{leaf}' was pruned with torch.nn.utils.prune after snip_lib's masks were applied "
            f"(it is now '{leaf}_orig' times torch's '{leaf}_mask', which replaced snip_lib's mask); the two "
            "mechanisms cannot be mixed on one model. To prune further with torch, convert first with "
            "snip_lib.masking.to_torch_prune(model); to keep snip_lib's masks, start again from the model "
            "before torch's pruning")


def _find_guard(module: nn.Module, kind: type = _MaskGuard) -> tuple[int, Any] | None:
    """(hook key, hook) of the ``kind`` guard (``_MaskGuard`` or ``_ParentGuard``) on ``module``, if any."""
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, kind):
            return key, hook
    return None


def _masked_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, _MaskGuard]]:
    """Yield (module name, module, guard) for every module owning masked parameters.

    Raises a clear error where ``torch.nn.utils.prune`` (or a hand edit) has since taken a masked
    parameter or its mask buffer away, instead of a ``KeyError`` deep inside.
    """
    for prefix, module in model.named_modules():
        found = _find_guard(module)
        if found is not None and found[1].leaves:
            for leaf in found[1].leaves:
                if _taken_by_torch_prune(module, leaf):
                    raise RuntimeError(_mixed_pruning_message(f"module {prefix or '<root>'!r}", leaf))
                if f"{leaf}_mask" not in module._buffers or module._parameters.get(leaf) is None:
                    raise RuntimeError(
                        f"module {prefix or '<root>'!r}: the mask buffer or the parameter of its masked '{leaf}' "
                        "is gone (removed by torch.nn.utils.prune.remove or by hand); call "
                        "snip_lib.masking.apply_masks again with the masks you want"
                    )
            yield prefix, module, found[1]


def _qualify(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


def _torch_prune_hooks(module: nn.Module) -> list[tuple[int, prune.BasePruningMethod]]:
    return [(k, h) for k, h in module._forward_pre_hooks.items() if isinstance(h, prune.BasePruningMethod)]


def _torch_pruned_modules(model: nn.Module) -> list[str]:
    """Names of the modules carrying ``torch.nn.utils.prune`` pruning ("<root>" for the model itself)."""
    return [p or "<root>" for p, mod in model.named_modules() if _torch_prune_hooks(mod)]


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _check_module(model: Any, what: str = "model") -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module, got {type(model).__name__}")


def _names_for_error(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_NAMES_IN_ERROR])
    more = len(names) - _MAX_NAMES_IN_ERROR
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _as_bool_mask(name: str, mask: Any) -> torch.Tensor:
    """Return ``mask`` as a BoolTensor; numeric masks are accepted only if every value is 0 or 1."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask for {name!r} must be a torch.Tensor (bool), got {type(mask).__name__}")
    # refused up front: a sparse mask buffer breaks every later read of it, a meta one has no values
    if mask.layout != torch.strided:
        raise TypeError(f"mask for {name!r} is a sparse tensor (layout {mask.layout}); a mask must be a dense "
                        "(strided) tensor: pass mask.to_dense()")
    if mask.device.type == "meta":
        raise ValueError(f"mask for {name!r} is on the meta device and has no values; a mask must be a tensor "
                         "with data (on the CPU or the parameter's device)")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex():
        raise TypeError(f"mask for {name!r} has dtype {mask.dtype}; a mask must be a bool tensor")
    bad = (mask != 0) & (mask != 1)
    if bool(bad.any()):
        example = mask[bad].flatten()[0].item()
        raise TypeError(
            f"mask for {name!r} has dtype {mask.dtype} and a value {example!r} that is neither 0 nor 1; "
            "a mask must be a bool tensor (numeric masks are accepted only when every entry is exactly 0 or 1)"
        )
    return mask != 0


def _validated(model: nn.Module, masks: Mapping[str, Any]) -> dict[str, tuple[str, str, torch.Tensor]]:
    """Check every mask against ``model``; return name -> (module name, leaf, bool mask)."""
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a dict {{parameter name: BoolTensor}}, got {type(masks).__name__}")
    pruned_by_torch = _torch_pruned_modules(model)
    if pruned_by_torch:
        # one mask mechanism per model: mixing the two would leave masks that get_masks cannot see
        raise ValueError(
            f"modules {pruned_by_torch} carry torch.nn.utils.prune pruning; convert the model first "
            "with snip_lib.masking.from_torch_prune(model)"
        )
    params = dict(model.named_parameters())
    out: dict[str, tuple[str, str, torch.Tensor]] = {}
    for name, mask in masks.items():
        if not isinstance(name, str):
            raise TypeError(f"mask keys must be parameter names (str), got {name!r} ({type(name).__name__})")
        if name not in params:
            raise ValueError(
                f"unknown parameter name {name!r} in masks; valid names (model.named_parameters()) are: "
                f"{_names_for_error(list(params))}"
            )
        bool_mask = _as_bool_mask(name, mask)
        shape = tuple(params[name].shape)
        if tuple(bool_mask.shape) != shape:
            raise ValueError(
                f"mask for {name!r} has shape {tuple(bool_mask.shape)} but the parameter has shape {shape}"
            )
        prefix, _, leaf = name.rpartition(".")
        module = model.get_submodule(prefix)
        guard = _find_guard(module)
        ours = guard is not None and leaf in guard[1].leaves
        if not ours and (f"{leaf}_mask" in module.__dict__ or f"{leaf}_mask" in module._buffers
                         or f"{leaf}_mask" in module._parameters or f"{leaf}_mask" in module._modules):
            raise ValueError(
                f"cannot mask {name!r}: module {prefix or '<root>'!r} already has an attribute "
                f"{leaf + '_mask'!r} that snip_lib did not create"
            )
        out[name] = (prefix, leaf, bool_mask)
    return out


# --------------------------------------------------------------------------------------------
# applying, enforcing, reading and removing masks
# --------------------------------------------------------------------------------------------


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Prune ``model`` in place with ``masks`` and keep the pruned weights at zero during training.

    ``masks`` maps parameter names (as in ``model.named_parameters()``) to bool tensors of the
    parameter's shape (numeric 0/1 tensors are accepted and converted; masks on another device are
    moved). Everything is validated before anything changes; an empty ``masks`` is refused
    (``ValueError``), as by the reports, since it would mask nothing. A gradient already in ``p.grad``
    is masked too, so pruned entries have weight 0 and gradient 0 from here on.

    Re-applying replaces the mask of each named parameter (it is not combined with the old one) and
    never stacks hooks; parameters not named in ``masks`` keep their current mask. Use
    :func:`remove_masks` to drop masks. Returns ``model``.

    Example: the pruned weights stay exactly zero under SGD with momentum and weight decay.

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from snip_lib import init, masking, models, snip
    >>> net = init.apply(models.build("lenet300"), "glorot_uniform", seed=0)
    >>> x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    >>> masks = snip.snip_masks(net, x, y, sparsity=0.98)
    >>> masking.apply_masks(net, masks) is net
    True
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9,
    ...                       weight_decay=5e-4)
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     F.cross_entropy(net(x), y).backward()
    ...     opt.step()
    >>> masking.pruned_nonzero(net), round(masking.global_sparsity(net), 6)
    ({}, 0.98)
    """
    _check_module(model)
    checked = _validated(model, masks)
    if not checked:
        raise ValueError("masks is empty; expected {parameter name: BoolTensor} with at least one entry "
                         "(to drop masks, use snip_lib.masking.remove_masks)")
    for prefix, leaf, bool_mask in checked.values():
        module = model.get_submodule(prefix)
        param = module._parameters[leaf]
        stored = bool_mask.to(device=param.device, dtype=param.dtype)
        with torch.no_grad():
            param.mul_(stored)
        module.register_buffer(f"{leaf}_mask", stored, persistent=True)
        _mask_grad(param, stored)  # a gradient already in .grad must not revive pruned weights
        found = _find_guard(module)
        if found is None:
            guard = _MaskGuard((leaf,))
            module.register_forward_pre_hook(guard)
        else:
            guard = found[1]
            if leaf not in guard.leaves:
                guard.leaves = guard.leaves + (leaf,)
        guard.ensure(module)
        if prefix:  # the parent's forward runs the guard too (see _ParentGuard)
            parent_name, _, child = prefix.rpartition(".")
            parent = model.get_submodule(parent_name)
            found = _find_guard(parent, _ParentGuard)
            if found is None:
                parent.register_forward_pre_hook(_ParentGuard((child,)))
            elif child not in found[1].children:
                found[1].children = found[1].children + (child,)
    return model


def enforce_masks(model: nn.Module) -> None:
    """Re-zero every pruned weight in place (call after each ``optimizer.step()``).

    A safety net for training loops of your own: with the gradient hooks, element-wise optimizers
    already keep pruned weights at zero, but non-element-wise ones (``torch.optim.Muon``) or
    optimizer state carried over from a dense run can move them. (:func:`snip_lib.train.fit`
    builds a fresh element-wise optimizer and does not need it; it checks with
    :func:`pruned_nonzero` instead.) Also re-installs gradient hooks lost by copying. One in-place
    multiply per masked parameter; a no-op for an unmasked model.
    """
    _check_module(model)
    with torch.no_grad():
        for _, module, guard in _masked_modules(model):
            guard.ensure(module)
            for leaf in guard.leaves:
                module._parameters[leaf].mul_(module._buffers[f"{leaf}_mask"])


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's masks, ``{parameter name: BoolTensor}``, read from the mask buffers.

    Returns fresh bool tensors (editing them does not change the model). Reflects masks loaded with
    ``load_state_dict``. Empty for an unmasked model.
    """
    _check_module(model)
    return {
        _qualify(prefix, leaf): module._buffers[f"{leaf}_mask"] != 0
        for prefix, module, guard in _masked_modules(model)
        for leaf in guard.leaves
    }


def pruned_nonzero(model: nn.Module) -> dict[str, int]:
    """Pruned entries that are not zero, ``{parameter name: count}``, for the parameters where any is.

    Empty when the model is exactly as sparse as its masks say (and for an unmasked model). The
    check that training kept the pruning: :func:`snip_lib.train.fit` runs it before training and
    after every epoch.
    """
    _check_module(model)
    out: dict[str, int] = {}
    with torch.no_grad():
        for prefix, module, guard in _masked_modules(model):
            for leaf in guard.leaves:
                param, mask = module._parameters[leaf], module._buffers[f"{leaf}_mask"]
                count = int(torch.count_nonzero(param[mask == 0]))
                if count:
                    out[_qualify(prefix, leaf)] = count
    return out


def is_masked(model: nn.Module) -> bool:
    """Whether :func:`apply_masks` has masked at least one parameter of ``model``."""
    _check_module(model)
    return any(True for _ in _masked_modules(model))


def masked_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter, nn.Module, str]]:
    """``(name, parameter, owning module, leaf)`` of every masked parameter; its mask is ``module.<leaf>_mask``.

    For code that applies the masks itself, such as :class:`snip_lib.optim.MaskedSGD`. Empty for
    an unmasked model.
    """
    _check_module(model)
    return [(_qualify(prefix, leaf), module._parameters[leaf], module, leaf)
            for prefix, module, guard in _masked_modules(model) for leaf in guard.leaves]


@contextmanager
def gradient_hooks_paused(model: nn.Module) -> Iterator[nn.Module]:
    """Remove the masks' gradient hooks for the duration of a ``with`` block; re-install them after.

    For a training loop whose optimizer applies the masks in its own update
    (:class:`snip_lib.optim.MaskedSGD`): the hooks' pass over every masked gradient is then
    redundant work. Inside the block ``.grad`` of a masked parameter is **not** masked, so nothing
    in the loop may read it (gradient clipping, a gradient scaler for mixed precision or a second
    optimizer would see the pruned entries' gradients), and the pruned weights stay zero only
    because the optimizer keeps them so. The hooks come back when the block ends, also on an
    exception, and a gradient the block leaves in ``.grad`` is masked then, so that after the
    block the gradient of a pruned weight is zero again; copies made inside the block get their
    hooks at their first forward pass. Nested blocks are allowed. Yields ``model``.
    """
    _check_module(model)
    guards = [(module, guard, guard.paused) for _, module, guard in _masked_modules(model)]
    for _, guard, _ in guards:
        guard.paused = True
        guard.release()
    try:
        yield model
    finally:
        for module, guard, was_paused in guards:
            guard.paused = was_paused
            guard.ensure(module)
            if not was_paused:
                for leaf in guard.leaves:
                    _mask_grad(module._parameters[leaf], module._buffers[f"{leaf}_mask"])


def remove_masks(model: nn.Module) -> nn.Module:
    """Drop the gradient hooks, guards and mask buffers; pruned weights stay zero but can train again.

    Returns ``model`` (changed in place). A no-op for an unmasked model.
    """
    _check_module(model)
    for _, module, guard in list(_masked_modules(model)):
        guard.release()
        key, _ = _find_guard(module)
        del module._forward_pre_hooks[key]
        for leaf in guard.leaves:
            module._buffers.pop(f"{leaf}_mask", None)
        guard.leaves = ()
    for module in model.modules():
        found = _find_guard(module, _ParentGuard)   # apply_masks puts at most one on a module
        if found is not None:
            del module._forward_pre_hooks[found[0]]
    return model


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------


def _masks_of(model_or_masks: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model_or_masks, nn.Module):
        masks = get_masks(model_or_masks)
        if not masks:
            raise ValueError("the model has no masks; apply them first with snip_lib.masking.apply_masks")
        moved = pruned_nonzero(model_or_masks)
        if moved:
            warnings.warn(
                f"{sum(moved.values()):,} pruned entries are not zero ({', '.join(f'{k}: {v:,}' for k, v in moved.items())}): "
                "the weights changed outside the optimizer (re-initialised, loaded or edited), so the model is "
                "denser than its masks, which this report counts; snip_lib.masking.enforce_masks(model) re-zeroes them",
                UserWarning, stacklevel=3,
            )
        return masks
    if isinstance(model_or_masks, Mapping):
        if not model_or_masks:
            raise ValueError("masks is empty; expected {parameter name: BoolTensor}")
        return {str(name): _as_bool_mask(str(name), mask) for name, mask in model_or_masks.items()}
    raise TypeError(
        f"expected an nn.Module or a dict {{parameter name: BoolTensor}}, got {type(model_or_masks).__name__}"
    )


def sparsity_report(model_or_masks: nn.Module | Mapping[str, torch.Tensor]) -> pd.DataFrame:
    """One row per masked parameter plus a final ``"total"`` row.

    Columns: ``layer`` (parameter name), ``shape`` (tuple; None for the total), ``total``
    (entries), ``kept`` (True entries), ``density`` (kept/total) and ``sparsity`` (1 - density).
    Only masked parameters are counted (unmasked biases or BN parameters are not).
    """
    masks = _masks_of(model_or_masks)
    rows = []
    for name, mask in masks.items():
        total, kept = mask.numel(), int(mask.sum())
        density = kept / total if total else 0.0
        rows.append({"layer": name, "shape": tuple(mask.shape), "total": total, "kept": kept,
                     "density": density, "sparsity": 1.0 - density})
    total = sum(r["total"] for r in rows)
    kept = sum(r["kept"] for r in rows)
    density = kept / total if total else 0.0
    rows.append({"layer": "total", "shape": None, "total": total, "kept": kept,
                 "density": density, "sparsity": 1.0 - density})
    return pd.DataFrame(rows, columns=["layer", "shape", "total", "kept", "density", "sparsity"])


def global_sparsity(model_or_masks: nn.Module | Mapping[str, torch.Tensor]) -> float:
    """Fraction of pruned entries over all masked parameters, in [0, 1]."""
    masks = _masks_of(model_or_masks)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


def layer_collapse(model_or_masks: nn.Module | Mapping[str, torch.Tensor]) -> list[str]:
    """Names of masked weights with no kept entry: a layer that disconnects the network.

    Biases (a last name component starting with ``bias``, e.g. ``fc1.bias``, ``bias_ih_l0``) are
    not counted: with every bias pruned, as the official code's scoring often does, the layer's
    weights still carry the signal.
    """
    return [name for name, mask in _masks_of(model_or_masks).items()
            if not name.rsplit(".", 1)[-1].startswith("bias") and not bool(mask.any())]


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------

_PLAIN_SCALARS = (type(None), bool, int, float, str)


def _check_plain(value: Any, where: str) -> None:
    """Reject values that ``torch.load(weights_only=True)`` could not read back."""
    if type(value) in _PLAIN_SCALARS or isinstance(value, torch.Tensor):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{where} has a non-str key {key!r}; use str keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r}); only None, bool, int, float, str, tensors "
        "and lists/tuples/dicts of them can be saved"
    )


def save_pruned(model: nn.Module, path: str | os.PathLike, **metadata: Any) -> Path:
    """Save a model built by ``snip_lib.models.build`` with its masks, so :func:`load_pruned` can rebuild it.

    Writes ``{"format", "arch", "options", "state_dict", "masks", "metadata"}`` with ``torch.save``.
    ``state_dict`` is the model's state *without* the mask buffers (so it also loads into a plain
    ``build(arch, **options)`` model); ``masks`` holds the bool masks. An unmasked model is saved with
    ``masks == {}``. ``metadata`` must be plain data (numbers, strings, lists, dicts, tensors).

    Only models with ``snip_arch``/``snip_options`` can be saved this way; for any other model save
    ``model.state_dict()`` with ``torch.save`` (it includes the ``*_mask`` buffers) and load it into
    a fresh model with :func:`load_masked_state_dict`. Returns the path.
    """
    _check_module(model)
    arch = getattr(model, "snip_arch", None)
    options = getattr(model, "snip_options", None)
    if not isinstance(arch, str):
        raise ValueError(
            "model has no 'snip_arch' attribute: it was not built by snip_lib.models.build, so "
            "load_pruned could not rebuild it; save model.state_dict() with torch.save instead"
        )
    pruned_by_torch = _torch_pruned_modules(model)
    if pruned_by_torch:
        raise ValueError(
            f"modules {pruned_by_torch} carry torch.nn.utils.prune pruning, which load_pruned could not "
            "rebuild; convert the model first with snip_lib.masking.from_torch_prune(model)"
        )
    options = {} if options is None else options
    _check_plain(options, "model.snip_options")
    _check_plain(metadata, "metadata")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a directory; give a file path such as {str(path / 'model.pt')!r}")
    masks = get_masks(model)
    mask_buffers = {f"{_qualify(p, leaf)}_mask" for p, _, g in _masked_modules(model) for leaf in g.leaves}
    state = {k: v for k, v in model.state_dict().items() if k not in mask_buffers}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "arch": arch, "options": dict(options), "state_dict": state,
                "masks": masks, "metadata": dict(metadata)}, path)
    return path


def _check_loadable(model: nn.Module, state_dict: Mapping[str, Any], masks: Mapping[str, Any], strict: bool) -> None:
    """Raise where ``model.load_state_dict(state_dict)`` would, once ``masks`` are applied, before anything changes.

    ``load_state_dict`` reports its errors only after copying every entry it could, so calling it
    to find out would leave the model half-loaded. The checks are its own: keys (with ``strict``),
    tensor values and shapes (always).
    """
    params = dict(model.named_parameters())
    expected = dict(model.state_dict(keep_vars=True))
    expected.update({f"{name}_mask": params[name] for name in masks})
    torch_pruned = sorted(key for key in state_dict
                          if key.endswith("_orig") and key not in expected and key.removesuffix("_orig") in params)
    if torch_pruned:
        raise ValueError(
            f"state_dict comes from a model pruned with torch.nn.utils.prune (it has {_names_for_error(torch_pruned)} "
            "instead of the weights), which load_masked_state_dict does not read. Load it into a model pruned the same "
            "way (e.g. torch.nn.utils.prune.identity(module, 'weight') on each pruned layer, then "
            "model.load_state_dict(state_dict)) and convert that model with snip_lib.masking.from_torch_prune(model)"
        )
    errors = []
    if strict:
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]
        if missing:
            errors.append(f"Missing key(s) in state_dict: {_names_for_error(missing)}.")
        if unexpected:
            errors.append(f"Unexpected key(s) in state_dict: {_names_for_error(unexpected)}.")
    for key, target in expected.items():
        if key not in state_dict or key.endswith(_EXTRA_STATE):  # extra state is any object
            continue
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            errors.append(f"{key!r} must be a torch.Tensor, got {type(value).__name__}.")
            continue
        if nn.parameter.is_lazy(target) or value.shape == target.shape:
            continue
        if target.dim() == 0 and value.dim() == 1 and value.numel() == 1:  # accepted by load_state_dict
            continue
        errors.append(f"size mismatch for {key!r}: the state_dict has shape {tuple(value.shape)}, "
                      f"the model {tuple(target.shape)}.")
    if errors:
        raise RuntimeError(f"Error(s) in loading state_dict for {type(model).__name__} (the model was not changed):\n\t"
                           + "\n\t".join(errors))


def load_masked_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True) -> nn.Module:
    """Load a masked model's ``state_dict()`` into a fresh, unmasked ``model``: masks first, then the state.

    A plain ``model.load_state_dict(state_dict)`` fails on the ``*_mask`` buffers
    (``Unexpected key(s)``), and ``strict=False`` would silently drop them, leaving a model that
    trains its pruned weights back. Every ``<parameter>_mask`` entry becomes a mask
    (:func:`apply_masks`), then the whole state is loaded (``strict`` as in
    ``load_state_dict``), then the pruned weights are zeroed (:func:`enforce_masks`): weights saved
    non-zero where their mask prunes (re-initialised or edited after masking, or masks and weights
    from different runs) would otherwise make the model denser than its masks. A consistent
    checkpoint loads unchanged. Masks, keys and shapes are all checked first, so a call that raises
    leaves ``model`` as it was. A state dict of ``torch.nn.utils.prune`` (``<name>_orig`` keys) is
    refused with a pointer to :func:`from_torch_prune`. Returns ``model``.
    """
    _check_module(model)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of name -> Tensor, got {type(state_dict).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    params = dict(model.named_parameters())
    masks = {key.removesuffix("_mask"): value for key, value in state_dict.items()
             if key.endswith("_mask") and key.removesuffix("_mask") in params}
    _validated(model, masks)  # mask values and shapes
    _check_loadable(model, state_dict, masks, strict)
    if masks:
        apply_masks(model, masks)
    model.load_state_dict(state_dict, strict=strict)
    enforce_masks(model)  # the loaded weights may be non-zero where the masks prune
    return model


def load_pruned(path: str | os.PathLike, map_location: Any = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_pruned`: same architecture, weights and (active) masks.

    The model is rebuilt on ``map_location`` (a device or its name; the default is the CPU) in
    the floating-point dtype it was saved in. The saved metadata is attached as
    ``model.snip_metadata``. Loads with ``weights_only=True``.
    """
    try:
        blob = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # a pickle that is not a weights-only file
        raise ValueError(f"{str(path)!r} is not a snip_lib pruned-model file ({FORMAT}): {err}") from err
    tag = blob.get("format") if isinstance(blob, dict) else None
    if tag != FORMAT:
        raise ValueError(f"{str(path)!r} has format tag {tag!r}; load_pruned reads {FORMAT!r} files "
                         "written by save_pruned")
    from snip_lib import models  # late import: models is optional for the rest of this module

    model = models.build(blob["arch"], **blob["options"])
    floats = {v.dtype for v in blob["state_dict"].values() if torch.is_floating_point(v)}
    if len(floats) == 1:  # a float64 (or half) model comes back in its own precision
        model.to(floats.pop())
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        model.to(map_location)
    model.load_state_dict(blob["state_dict"])
    if blob["masks"]:
        apply_masks(model, blob["masks"])
    model.snip_metadata = blob["metadata"]
    return model


# --------------------------------------------------------------------------------------------
# torch.nn.utils.prune interoperability
# --------------------------------------------------------------------------------------------


def to_torch_prune(model: nn.Module) -> nn.Module:
    """Convert the masks to ``torch.nn.utils.prune`` form, in place: ``<leaf>_orig`` + ``<leaf>_mask``.

    Our hooks and buffers are removed and ``prune.custom_from_mask`` re-parametrises each masked
    parameter (the ``Parameter`` object moves to ``<leaf>_orig``). Outputs are unchanged.
    Note that in this form ``copy.deepcopy(model)`` fails (pytorch/pytorch#37322: the pruned tensor
    is a non-leaf attribute) and ``state_dict`` keys change; :func:`from_torch_prune` converts back.
    Returns ``model``.
    """
    _check_module(model)
    entries = [(module, leaf, module._buffers[f"{leaf}_mask"] != 0)
               for _, module, guard in _masked_modules(model) for leaf in guard.leaves]
    if not entries:
        raise ValueError("the model has no snip_lib masks to convert; apply them with apply_masks first")
    remove_masks(model)
    for module, leaf, mask in entries:
        prune.custom_from_mask(module, leaf, mask)
    return model


def from_torch_prune(model: nn.Module) -> nn.Module:
    """Convert ``torch.nn.utils.prune`` pruning (any method, including global_unstructured) to our form.

    Reads each pruned tensor's ``<leaf>_mask``, makes the pruning permanent with ``prune.remove``
    (the ``<leaf>_orig`` Parameter object becomes ``<leaf>`` again, holding ``orig * mask``) and
    applies the masks with :func:`apply_masks`. Outputs are unchanged (but see tied Parameters
    below). Returns ``model``.

    Each mask goes to the name ``model.named_parameters()`` gives its ``Parameter``: a pruned head
    whose weight is tied to an embedding is masked as ``'emb.weight'``. Torch pruned only the head's
    use of that Parameter; with one mask per Parameter (as after torch's own ``prune.remove``) every
    use is pruned, so the outputs change where the other names use it, and a ``UserWarning`` names
    them. Every mask is read and checked before torch's pruning is removed, so a call that raises
    leaves the model as it was.
    """
    _check_module(model)
    # (where, module, leaf, the <leaf>_orig Parameter, bool mask) of every pruned tensor
    pruned: list[tuple[str, nn.Module, str, torch.Tensor, torch.Tensor]] = []
    for prefix, module in model.named_modules():
        for _, hook in _torch_prune_hooks(module):
            leaf = hook._tensor_name
            where = _qualify(prefix, leaf)
            orig = module._parameters.get(f"{leaf}_orig")
            mask = module._buffers.get(f"{leaf}_mask")
            if orig is None or mask is None:
                raise ValueError(f"{where!r} has a torch.nn.utils.prune hook but no {leaf + '_orig'!r} parameter or "
                                 f"{leaf + '_mask'!r} buffer (removed by hand?); it cannot be converted")
            bool_mask = _as_bool_mask(where, mask)
            if bool_mask.shape != orig.shape:
                raise ValueError(f"mask for {where!r} has shape {tuple(bool_mask.shape)} but the parameter has "
                                 f"shape {tuple(orig.shape)}")
            pruned.append((where, module, leaf, orig, bool_mask.clone()))
    if not pruned:
        raise ValueError("the model carries no torch.nn.utils.prune pruning (no pruning forward pre-hooks)")
    # the names the Parameters will have once prune.remove has put each <leaf>_orig back as <leaf>
    back = {_qualify(where.rpartition(".")[0], f"{leaf}_orig"): where for where, _, leaf, _, _ in pruned}
    name_of = {id(p): back.get(n, n) for n, p in model.named_parameters()}
    masks: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for where, _, _, orig, bool_mask in pruned:
        name = name_of.get(id(orig))
        if name is None:
            raise ValueError(f"the pruned parameter {where!r} is not among model.named_parameters(); it cannot be "
                             "converted")
        if name in masks and not torch.equal(masks[name], bool_mask.to(masks[name].device)):
            raise ValueError(f"{source[name]!r} and {where!r} are the same Parameter ({name!r}, tied) but torch pruned "
                             "them with different masks: one mask per Parameter can be converted, and outputs "
                             "would change; prune the tied tensor in one place only")
        masks[name] = bool_mask
        source.setdefault(name, where)
    pruned_slots = set(back)
    unpruned_uses = {name: [n for n, p in model.named_parameters(remove_duplicate=False)
                            if p is orig and n not in pruned_slots]
                     for name, orig in {name_of[id(o)]: o for _, _, _, o, _ in pruned}.items()}
    # what apply_masks will check, checked now against the model as prune.remove will leave it
    torch_slots = {(id(module), leaf) for _, module, leaf, _, _ in pruned}
    for name in masks:
        prefix, _, leaf = name.rpartition(".")
        module = model.get_submodule(prefix)
        guard = _find_guard(module)
        ours = guard is not None and leaf in guard[1].leaves
        attr = f"{leaf}_mask"
        taken = (attr in module.__dict__ or attr in module._buffers or attr in module._parameters
                 or attr in module._modules)
        if taken and not ours and (id(module), leaf) not in torch_slots:
            raise ValueError(f"cannot mask {name!r} (pruned by torch as {source[name]!r}): module "
                             f"{prefix or '<root>'!r} already has an attribute {attr!r} that snip_lib did not create")
    for name, others in unpruned_uses.items():
        if others:
            warnings.warn(f"{source[name]!r} shares its Parameter with {_names_for_error(others)}, which torch did not "
                          f"prune; converted to one mask for {name!r}, so those uses now see the pruned weights too "
                          "(as after torch.nn.utils.prune.remove) and the outputs change there",
                          UserWarning, stacklevel=2)
    for _, module, leaf, _, _ in pruned:
        prune.remove(module, leaf)
    return apply_masks(model, masks)
