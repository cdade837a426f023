"""SGD that keeps a masked network's pruned weights at zero inside its own update.

Why this exists. :func:`snip_lib.masking.apply_masks` keeps pruned weights at zero with a gradient
hook: after every backward pass it multiplies each masked gradient by its mask, one extra pass
over every weight-sized gradient (read it, read the mask, write it back). On a network whose
training step is dominated by its weights, LeNet-300-100 at batch 100, that pass costs about 5 %
of the step (``benchmarks/masked_overhead.py``). :class:`MaskedSGD` folds the mask into a pass
the optimizer makes anyway: SGD with momentum adds the (weight-decayed) gradient to the momentum
buffer, and here that addition is ``buffer += gradient * mask`` (one ``addcmul``) instead of
``buffer += gradient``. The only extra work is reading the mask. On the CPU, where a mask keeps
at most 1/16 of a tensor of at least 65,536 entries (SNIP's large layers), the addition is made
at the kept entries only (``index_add_`` of the gathered ones): it reads a sixteenth of the
tensor or less instead of three whole tensors, the same sums in the same rounding (for finite
gradients: a non-finite gradient of a pruned weight, which ``addcmul`` turns into NaN, is not
read at all), and the other entries of the buffer stay zero.

What it computes. Exactly ``torch.optim.SGD(lr, momentum, weight_decay)`` (no dampening, not
Nesterov) run on gradients masked by the model's masks: on the CPU the weights after any number
of steps are bit-for-bit those of ``torch.optim.SGD`` with the masks' gradient hooks
(``tests/test_optim.py`` checks it), and the momentum buffers are stored under the same state
key (``"momentum_buffer"``), so a ``state_dict`` loads into ``torch.optim.SGD``. Pruned weights
stay exactly zero as long as they are zero to begin with (``apply_masks`` zeroes them), because
both their gradient term and their momentum buffer are zero, and weight decay of a zero is zero.

With this optimizer the gradient hooks are redundant; :func:`snip_lib.masking.gradient_hooks_paused`
removes them (and their cost) for a training loop. :func:`snip_lib.train.fit` does both for SGD
on a masked model, unless it clips gradients or scales them for mixed precision (then the
gradients themselves must be masked, and the hooks stay).

The masks are read from the model's mask buffers at every step, so masks applied after the
optimizer was built, ``model.to(device)``, ``load_state_dict`` and re-applying masks are
honoured: the first step after a mask changes also clears the momentum buffer where the new mask
prunes, so that old momentum cannot move a newly pruned weight (``torch.optim.SGD`` with the
gradient hooks would). Parameters the model does not mask are updated as by plain SGD.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from snip_lib import masking

__all__ = ["MaskedSGD"]

#: A mask that keeps at most this fraction of a CPU tensor of at least SPARSE_UPDATE_MIN_NUMEL
#: entries gets the momentum addition at its kept entries only (measured crossover: between 1/10
#: and 1/5 for tensors of 0.27M and 2.4M entries; below 65,536 entries the indexing costs more).
SPARSE_UPDATE_MAX_DENSITY = 1 / 16
SPARSE_UPDATE_MIN_NUMEL = 65_536


# torch.optim.SGD's other settings, at the values MaskedSGD computes with; stored in every group
# so that a state_dict of MaskedSGD loads into torch.optim.SGD.
_SGD_FIXED: dict[str, Any] = {"dampening": 0.0, "nesterov": False, "maximize": False, "foreach": None,
                              "differentiable": False, "fused": None}


def _check_hyper(name: str, value: Any, *, below_one: bool = False) -> float:
    """``value`` as a float, if it is a real number (NumPy scalars too, as TrainConfig takes them) >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if below_one and not value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _checked_group(group: dict[str, Any], where: str = "") -> dict[str, float]:
    """The checks of the constructor on one complete group: its lr, momentum, weight_decay as floats.

    Raises ``ValueError`` (prefixed with ``where``) for a value MaskedSGD cannot compute with.
    """
    out: dict[str, float] = {}
    for key in ("lr", "momentum", "weight_decay"):
        if key not in group:
            raise ValueError(f"{where}has no {key!r}; a MaskedSGD group needs lr, momentum and weight_decay")
        try:
            out[key] = _check_hyper(key, group[key], below_one=key == "momentum")
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None
    for key, value in _SGD_FIXED.items():
        if key in group and group[key] != value:
            raise ValueError(f"{where}MaskedSGD supports {key}={value!r} only, got {key}={group[key]!r}")
    return out


class MaskedSGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay whose update multiplies each gradient by its mask.

    ``params`` are parameters or parameter groups, as for ``torch.optim.SGD``; ``model`` is the
    module whose masks (:func:`snip_lib.masking.apply_masks`) apply to them, looked up at every
    step (masks applied after the optimizer was built count). Per group: ``lr``, ``momentum`` (in
    [0, 1)) and ``weight_decay`` (real numbers, NumPy scalars included, stored as floats), checked
    here, in :meth:`add_param_group` and in :meth:`load_state_dict`. Dampening, Nesterov momentum
    and ``maximize`` are not offered. Without masks (``model`` unmasked) it is plain SGD.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        model: nn.Module,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be the torch.nn.Module whose masks apply, got {type(model).__name__}")
        defaults = {"lr": _check_hyper("lr", lr), "momentum": _check_hyper("momentum", momentum, below_one=True),
                    "weight_decay": _check_hyper("weight_decay", weight_decay), **_SGD_FIXED}
        self._model: nn.Module | None = model
        # id(parameter) -> (mask, version) its momentum buffer was last cleared with. The mask object
        # itself, not its id: a freed mask's id can come back as a new mask's, with version 0 again.
        self._mask_seen: dict[int, tuple[torch.Tensor, int]] = {}
        # id(parameter) -> flat indices of the entries its mask keeps, where the sparse update pays
        self._kept: dict[int, torch.Tensor | None] = {}
        super().__init__(params, defaults)  # validates each group through add_param_group

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group as ``torch.optim.SGD`` does, after the checks of the constructor (nothing added on error)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        checked = _checked_group({**self.defaults, **param_group})
        # stored as floats (a NumPy scalar given here is a Python float in the group)
        param_group.update({key: checked[key] for key in checked if key in param_group})
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load as ``torch.optim.SGD`` does, after the checks of the constructor on every saved group.

        A group saved by ``torch.optim.SGD`` with Nesterov momentum, ``maximize`` or dampening, or a
        hand-edited one (momentum 1.5, a negative lr) is refused before anything is loaded: this
        optimizer would silently compute something else with it.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict (from Optimizer.state_dict()), got {type(state_dict).__name__}")
        groups = state_dict.get("param_groups")
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ValueError("state_dict['param_groups'] must be a list of dicts (from Optimizer.state_dict()), got "
                             f"{type(groups).__name__}")
        for i, group in enumerate(groups):
            _checked_group(group, f"saved param group {i}: ")
        super().load_state_dict(state_dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Optimizer.load_state_dict ends here too, on this very optimizer: it keeps its model. A
        # copy or an unpickled one (Optimizer.__getstate__ leaves the model out) refuses to step.
        super().__setstate__(state)
        self._model = getattr(self, "_model", None)
        self._mask_seen = {}  # masks whose zeros the momentum buffers are known to share
        self._kept = {}

    def _masks(self) -> dict[int, torch.Tensor]:
        """id(parameter) -> its mask buffer, read from the model now (so later masks count)."""
        if self._model is None:
            raise RuntimeError("this MaskedSGD was copied or unpickled and no longer knows its model's masks; "
                               "build a new one with MaskedSGD(params, model, ...) and load_state_dict into it")
        return {id(param): module._buffers[f"{leaf}_mask"]
                for _, param, module, leaf in masking.masked_parameters(self._model)}

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update; ``closure`` (re-evaluates the loss) as in ``torch.optim.SGD``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        mask_of = self._masks()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("MaskedSGD does not support sparse gradients")
            grads = [p.grad for p in params]
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            # d = g + decay * w, in a new list as torch.optim.SGD does (the .grad tensors are not touched)
            steps = torch._foreach_add(grads, params, alpha=decay) if decay != 0 else grads
            masks = [mask_of.get(id(p)) for p in params]
            masked = [i for i, m in enumerate(masks) if m is not None]
            plain = [i for i, m in enumerate(masks) if m is None]
            if momentum != 0:
                steps = self._momentum(params, steps, masks, masked, plain, momentum)
            elif masked:
                steps = list(steps)
                for i, product in zip(masked, torch._foreach_mul([steps[i] for i in masked],
                                                                  [masks[i] for i in masked])):
                    steps[i] = product
            torch._foreach_add_(params, steps, alpha=-lr)
        return loss

    @staticmethod
    def _kept_indices(param: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Flat indices of the entries ``mask`` keeps, where adding there only is cheaper; else None."""
        if param.device.type != "cpu" or mask.numel() < SPARSE_UPDATE_MIN_NUMEL:
            return None
        kept = mask.reshape(-1).nonzero().squeeze(1)
        return kept if kept.numel() <= SPARSE_UPDATE_MAX_DENSITY * mask.numel() else None

    def _momentum(self, params, steps, masks, masked, plain, momentum) -> list[torch.Tensor]:
        """buffer = momentum * buffer + d * mask (d alone where unmasked); returns the buffers."""
        buffers: list[torch.Tensor | None] = [self.state[p].get("momentum_buffer") for p in params]
        for i in masked:  # a mask this buffer has not seen (re-applied masks, a loaded state):
            seen = self._mask_seen.get(id(params[i]))  # clear the buffer where it prunes, once
            if seen is None or seen[0] is not masks[i] or seen[1] != masks[i]._version:
                if buffers[i] is not None:
                    buffers[i].mul_(masks[i])
                self._mask_seen[id(params[i])] = (masks[i], masks[i]._version)
                self._kept[id(params[i])] = self._kept_indices(params[i], masks[i])
        old = [i for i, b in enumerate(buffers) if b is not None]
        if old:
            torch._foreach_mul_([buffers[i] for i in old], momentum)
        sparse = [i for i in masked if buffers[i] is not None and self._kept.get(id(params[i])) is not None
                  and buffers[i].is_contiguous() and steps[i].is_contiguous()]
        for i in sparse:  # the buffer is zero where the mask prunes: add d at the kept entries only
            kept = self._kept[id(params[i])]
            buffers[i].view(-1).index_add_(0, kept, steps[i].view(-1).index_select(0, kept))
        sparse_set = set(sparse)
        dense_masked = [i for i in masked if i not in sparse_set]
        for group_idx, fold in ((dense_masked, True), (plain, False)):
            kept_old = [i for i in group_idx if buffers[i] is not None]
            new = [i for i in group_idx if buffers[i] is None]
            if kept_old:
                if fold:
                    torch._foreach_addcmul_([buffers[i] for i in kept_old], [steps[i] for i in kept_old],
                                            [masks[i] for i in kept_old])
                else:
                    torch._foreach_add_([buffers[i] for i in kept_old], [steps[i] for i in kept_old])
            for i in new:  # first step: the buffer is the (masked) step itself, as in torch.optim.SGD
                buffers[i] = steps[i] * masks[i] if fold else torch.clone(steps[i]).detach()
                self.state[params[i]]["momentum_buffer"] = buffers[i]
        return buffers  # type: ignore[return-value]
