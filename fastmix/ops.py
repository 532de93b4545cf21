"""The operations as ``torch.library`` custom ops, and the one place that picks a backend.

- ``fastmix::blend_``     mutates ``x``: the in-place pass (no autograd; the data-loader case).
- ``fastmix::blend``      functional, with a registered backward (``fastmix::blend_grad``).
- ``fastmix::mix_targets`` the soft targets.

A mutating custom op cannot carry an autograd formula, hence the in-place/out-of-place pair.
Each op has a fake (meta) implementation, so ``torch.compile(fullgraph=True)`` sees one opaque
op and never traces into a kernel.

Backends: CUDA tensors run the Triton kernels when Triton imports; everything else runs the
reference. ``FASTMIX_BACKEND=reference`` forces the reference anywhere; ``FASTMIX_BACKEND=triton``
forces the kernels (on CPU tensors this needs ``TRITON_INTERPRET=1``, which the tests use).
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import torch
from torch import Tensor

from . import reference
from .layout import Layout, describe
from .plan import Plan
from .reference import PlanTensors

BACKEND_ENV = "FASTMIX_BACKEND"
CLOSED_FORM_PAIRINGS = ("flip", "roll", "self")   # the kernels walk these cycles without a table


@functools.lru_cache(maxsize=None)
def _kernels():
    """The kernel modules, or the ImportError that keeps them away."""
    try:
        from .kernels import blend, targets
    except ImportError as err:  # no triton on this platform
        return err
    return blend, targets


def triton_available() -> bool:
    return not isinstance(_kernels(), ImportError)


def backend_for(t: Tensor) -> str:
    """``"triton"`` or ``"reference"`` for a tensor on ``t``'s device (see the module docstring)."""
    choice = os.environ.get(BACKEND_ENV, "auto").lower()
    if choice == "reference":
        return "reference"
    if choice == "triton":
        if not triton_available():
            raise RuntimeError(f"{BACKEND_ENV}=triton but triton does not import: {_kernels()}")
        if t.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(f"{BACKEND_ENV}=triton on {t.device.type} tensors needs TRITON_INTERPRET=1")
        return "triton"
    if choice != "auto":
        raise ValueError(f"{BACKEND_ENV}: expected 'auto', 'triton' or 'reference', got {choice!r}")
    return "triton" if t.device.type == "cuda" and triton_available() else "reference"


def _run(x: Tensor, layout: Layout, t: PlanTensors, pairing: str, what: str, spatial: bool):
    """Run ``blend_``, ``blend`` or ``blend_grad`` on the backend ``x`` gets.

    A plan without boxes (``spatial`` False) has only whole-sample or empty regions, which the
    kernels handle without per-pixel region tests.
    """
    if backend_for(x) == "triton":
        kernels = _kernels()[0]
        fn = kernels.blend_backward if what == "blend_grad" else getattr(kernels, what)
        return fn(x, layout, t, pairing, whole_rows=not spatial)
    return getattr(reference, what)(x, layout, t, whole_rows=not spatial, pairing=pairing)


def _is_dense(x: Tensor) -> bool:
    return (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
            or x.is_contiguous(memory_format=torch.channels_last_3d))


def _tensors(partner, walk, cycle_start, lam_self, lam_partner, box, fill, noise_seed) -> PlanTensors:
    return PlanTensors(partner, walk, cycle_start, lam_self, lam_partner, box, fill, noise_seed)


def plan_tensors(plan: Plan, with_cycles: bool = True) -> tuple:
    """The plan as the op arguments, in schema order (the pairing, a string, comes last).

    Only the kernels walk cycles, and only a permutation without a closed form (pairing
    ``"perm"``) needs them as a table; otherwise the table is left empty rather than computed.
    """
    if with_cycles and plan.pairing not in CLOSED_FORM_PAIRINGS:
        cyc = plan.cycles
        walk, cycle_start = cyc.walk, cyc.cycle_start
    else:
        walk = cycle_start = plan.partner.new_empty(0, dtype=torch.int32)
    return (plan.partner, walk, cycle_start, plan.lam_self, plan.lam_partner, plan.box, plan.fill, plan.noise_seed)


# --------------------------------------------------------------------------------------------
# in place
# --------------------------------------------------------------------------------------------

def _blend_impl_(x: Tensor, partner: Tensor, walk: Tensor, cycle_start: Tensor, lam_self: Tensor,
                 lam_partner: Tensor, box: Tensor, fill: Optional[Tensor], noise_seed: Optional[Tensor],
                 spatial: bool, pairing: str) -> None:
    t = _tensors(partner, walk, cycle_start, lam_self, lam_partner, box, fill, noise_seed)
    if x.numel() == 0:
        return
    layout = describe(x, spatial)
    if layout is None:  # strides with no planes x rows x lanes description: blend a dense copy
        dense = x.contiguous()
        _run(dense, describe(dense, spatial), t, pairing, "blend_", spatial)
        x.copy_(dense)
        return
    _run(x, layout, t, pairing, "blend_", spatial)


@torch.library.custom_op("fastmix::blend_", mutates_args={"x"})
def blend_(x: Tensor, partner: Tensor, walk: Tensor, cycle_start: Tensor, lam_self: Tensor, lam_partner: Tensor,
           box: Tensor, fill: Optional[Tensor], noise_seed: Optional[Tensor], spatial: bool, pairing: str) -> None:
    _blend_impl_(x, partner, walk, cycle_start, lam_self, lam_partner, box, fill, noise_seed, spatial, pairing)


@blend_.register_fake
def _(x, partner, walk, cycle_start, lam_self, lam_partner, box, fill, noise_seed, spatial, pairing):
    return None


# --------------------------------------------------------------------------------------------
# out of place, differentiable
# --------------------------------------------------------------------------------------------

def _out_of_place(x: Tensor, t: PlanTensors, spatial: bool, pairing: str, what: str) -> Tensor:
    """``blend`` or ``blend_grad`` into a new tensor with ``x``'s (dense) layout."""
    if x.numel() == 0:
        return torch.empty_like(x)
    if not _is_dense(x):
        x = x.contiguous()
    return _run(x, describe(x, spatial), t, pairing, what, spatial)


def _empty_like_dense(x: Tensor) -> Tensor:
    """What ``_out_of_place`` returns, without running it (the fake implementations)."""
    return torch.empty_like(x) if _is_dense(x) else torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("fastmix::blend", mutates_args=())
def blend(x: Tensor, partner: Tensor, walk: Tensor, cycle_start: Tensor, lam_self: Tensor, lam_partner: Tensor,
          box: Tensor, fill: Optional[Tensor], noise_seed: Optional[Tensor], spatial: bool, pairing: str) -> Tensor:
    t = _tensors(partner, walk, cycle_start, lam_self, lam_partner, box, fill, noise_seed)
    return _out_of_place(x, t, spatial, pairing, "blend")


@blend.register_fake
def _(x, partner, walk, cycle_start, lam_self, lam_partner, box, fill, noise_seed, spatial, pairing):
    return _empty_like_dense(x)


@torch.library.custom_op("fastmix::blend_grad", mutates_args=())
def blend_grad(grad: Tensor, partner: Tensor, walk: Tensor, cycle_start: Tensor, lam_self: Tensor,
               lam_partner: Tensor, box: Tensor, spatial: bool, pairing: str) -> Tensor:
    t = _tensors(partner, walk, cycle_start, lam_self, lam_partner, box, None, None)
    return _out_of_place(grad, t, spatial, pairing, "blend_grad")


@blend_grad.register_fake
def _(grad, partner, walk, cycle_start, lam_self, lam_partner, box, spatial, pairing):
    return _empty_like_dense(grad)


def _blend_setup(ctx, inputs, output):
    ctx.plan_args = inputs[1:7]          # partner, walk, cycle_start, lam_self, lam_partner, box
    ctx.spatial, ctx.pairing = inputs[9], inputs[10]


def _blend_backward(ctx, grad):
    dx = torch.ops.fastmix.blend_grad(grad, *ctx.plan_args, ctx.spatial, ctx.pairing)
    return (dx,) + (None,) * 10


torch.library.register_autograd("fastmix::blend", _blend_backward, setup_context=_blend_setup)


# --------------------------------------------------------------------------------------------
# soft targets
# --------------------------------------------------------------------------------------------

def _mix_targets_impl(labels: Tensor, partner: Tensor, label_lam: Tensor, num_classes: int, smoothing: float,
                      checked: bool) -> Tensor:
    if backend_for(partner) == "triton":
        return _kernels()[1].mix_targets(labels, partner, label_lam, num_classes, smoothing)
    return reference.mix_targets(labels, partner, label_lam, num_classes, smoothing, checked)


@torch.library.custom_op("fastmix::mix_targets", mutates_args=())
def mix_targets(labels: Tensor, partner: Tensor, label_lam: Tensor, num_classes: int, smoothing: float,
                checked: bool) -> Tensor:
    return _mix_targets_impl(labels, partner, label_lam, num_classes, smoothing, checked)


@mix_targets.register_fake
def _(labels, partner, label_lam, num_classes, smoothing, checked):
    return partner.new_empty((partner.shape[0], num_classes), dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# plan-level entry points
# --------------------------------------------------------------------------------------------

def _plain_eager(*tensors) -> bool:
    """True when nothing but plain tensors in eager mode is involved: no tracing, no dispatch or
    function modes, no subclasses. Then calling an op's implementation directly is exactly what
    the dispatcher would do, minus ~0.2 ms of Python in torch.library's custom-op layers (which
    dominates a step on small batches). Anything else goes through the registered op."""
    return (not torch.compiler.is_compiling() and _current_dispatch_mode() is None
            and not torch._C._is_torch_function_mode_enabled()
            and all(type(t) is torch.Tensor for t in tensors if t is not None))


def _current_dispatch_mode():
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    return _get_current_dispatch_mode()


def apply_plan_(x: Tensor, plan: Plan) -> None:
    args = (x, *plan_tensors(plan, backend_for(x) == "triton"), plan.size is not None, plan.pairing)
    if _plain_eager(*args[:9]) and not (x.requires_grad and torch.is_grad_enabled()):
        _blend_impl_(*args)
        return
    torch.ops.fastmix.blend_(*args)


def targets_of(labels: Tensor, plan: Plan, num_classes: int, smoothing: float, checked: bool) -> Tensor:
    args = (labels, plan.partner, plan.label_lam, num_classes, smoothing, checked)
    if _plain_eager(*args[:3]):
        return _mix_targets_impl(*args)
    return torch.ops.fastmix.mix_targets(*args)


def apply_plan(x: Tensor, plan: Plan) -> Tensor:
    return torch.ops.fastmix.blend(x, *plan_tensors(plan, backend_for(x) == "triton"), plan.size is not None,
                                   plan.pairing)
