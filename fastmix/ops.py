"""The operations as ``torch.library`` ops, and the one place that picks a backend.

- ``fastmix::blend_``      mutates ``x``: the in-place pass (no autograd; the data-loader case).
- ``fastmix::blend``       functional, with a registered backward (``fastmix::blend_grad``,
                           itself differentiable: the blend is linear, so double backward works).
- ``fastmix::mix_targets`` the soft targets.

A mutating op cannot carry an autograd formula, hence the in-place/out-of-place pair. The blend
ops' schema is built from :class:`~fastmix.plan.PlanArgs`, so their plan arguments are written
once; every op has a fake (meta) implementation, so ``torch.compile(fullgraph=True)`` sees one
opaque op and never traces into a kernel.

Backends (:func:`backend_for`): CUDA tensors run the Triton kernels when Triton imports
(``fastmix.kernels``); CPU tensors run the CPU fast path (``fastmix.cpu``); anything else runs
the reference (``fastmix.reference``). ``FASTMIX_BACKEND`` = ``reference``, ``cpu`` or ``triton``
forces one (``triton`` on CPU tensors needs ``TRITON_INTERPRET=1``, which the tests use); it is
read once, at import: in-process, :func:`set_backend` (``fastmix.set_backend``) changes it.
"""
from __future__ import annotations

import functools
import os
from typing import get_type_hints

import torch
from torch import Tensor

from . import cpu, reference
from .layout import Layout, describe
from .plan import Plan, PlanArgs, plan_args

BACKEND_ENV = "FASTMIX_BACKEND"
BACKENDS = ("triton", "cpu", "reference")


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


# The backend choice: FASTMIX_BACKEND as it was when fastmix was imported, or what set_backend()
# chose since. Read once (the environment was read six times a step); every per-signature cache
# in fastmix keys on `generation`, which set_backend() advances, so a change takes effect at once.
_choice = os.environ.get(BACKEND_ENV, "auto").lower()
_interpreted = os.environ.get("TRITON_INTERPRET") == "1"   # Triton reads it once at import too
_by_device_type: dict = {}
generation = 0


def set_backend(name=None) -> None:
    """Force a backend for this process: ``"triton"``, ``"cpu"``, ``"reference"``, or ``None`` /
    ``"auto"`` for the default (CUDA tensors: Triton, CPU tensors: the CPU path, others: the
    reference). ``FASTMIX_BACKEND`` gives the choice a process starts with; it is read once, at
    import, so changing the environment later has no effect: call this instead."""
    global _choice, generation
    choice = "auto" if name is None else str(name).lower()
    if choice != "auto" and choice not in BACKENDS:
        raise ValueError(f"name: expected 'auto', 'triton', 'cpu', 'reference' or None, got {name!r}")
    _choice = choice
    _by_device_type.clear()
    generation += 1


def backend() -> str:
    """The forced backend's name, or ``"auto"``."""
    return _choice


def backend_for(t) -> str:
    """``"triton"``, ``"cpu"`` or ``"reference"`` for a tensor on ``t``'s device, or for the device
    ``t`` (see the module docstring); known once per device type."""
    device_type = (t if isinstance(t, torch.device) else t.device).type
    name = _by_device_type.get(device_type)
    if name is None:
        name = _by_device_type[device_type] = _choose(device_type)
    return name


def _choose(device_type: str) -> str:
    choice = _choice
    if choice == "auto":
        if device_type == "cuda" and triton_available():
            return "triton"
        return "cpu" if device_type == "cpu" else "reference"
    if choice not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}: expected 'auto', 'triton', 'cpu' or 'reference', got {choice!r}")
    if choice == "triton":
        if not triton_available():
            raise RuntimeError(f"{BACKEND_ENV}=triton but triton does not import: {_kernels()}")
        if device_type != "cuda" and not _interpreted:
            raise RuntimeError(f"{BACKEND_ENV}=triton on {device_type} tensors needs TRITON_INTERPRET=1")
    if choice == "cpu" and device_type != "cpu":
        raise RuntimeError(f"{BACKEND_ENV}=cpu on a {device_type} tensor")
    return choice


def _backend_module(t: Tensor):
    return _module(backend_for(t))


def _module(name: str):
    return _kernels()[0] if name == "triton" else cpu if name == "cpu" else reference


def _is_dense(x: Tensor) -> bool:
    return (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
            or x.is_contiguous(memory_format=torch.channels_last_3d))


def _empty_like_dense(x: Tensor) -> Tensor:
    """What the out-of-place ops return: ``x``'s layout when it is dense, else contiguous."""
    return torch.empty_like(x) if _is_dense(x) else torch.empty_like(x, memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------------------------
# the ops: one schema for the plan arguments
# --------------------------------------------------------------------------------------------

_SCHEMA_TYPES = {Tensor: "Tensor", bool: "bool", str: "str"}


def _schema_type(hint) -> str:
    if hint in _SCHEMA_TYPES:
        return _SCHEMA_TYPES[hint]
    return _SCHEMA_TYPES[next(h for h in hint.__args__ if h is not type(None))] + "?"   # Optional[...]


PLAN_SCHEMA = ", ".join(f"{_schema_type(hint)} {name}" for name, hint in get_type_hints(PlanArgs).items())
_lib = torch.library.Library("fastmix", "DEF")
_lib.define(f"blend_(Tensor(a!) x, {PLAN_SCHEMA}) -> ()")
_lib.define(f"blend(Tensor x, {PLAN_SCHEMA}) -> Tensor")
_lib.define(f"blend_grad(Tensor grad, {PLAN_SCHEMA}) -> Tensor")
_lib.define("mix_targets(Tensor labels, Tensor partner, Tensor label_lam, int num_classes, float smoothing) -> Tensor")


def _blend_impl_(x: Tensor, *plan) -> None:
    args = PlanArgs(*plan)
    if x.numel() == 0:
        return
    layout = describe(x, args.spatial)
    if layout is None:  # strides with no planes x rows x lanes description: blend a dense copy
        dense = x.contiguous()
        _backend_module(x).blend_(dense, describe(dense, args.spatial), args)
        x.copy_(dense)
        return
    _backend_module(x).blend_(x, layout, args)


def _out_of_place(what: str, x: Tensor, *plan) -> Tensor:
    """``blend`` or ``blend_grad`` into a new tensor with ``x``'s (dense) layout."""
    args = PlanArgs(*plan)
    if x.numel() == 0:
        return torch.empty_like(x)
    if not _is_dense(x):
        x = x.contiguous()
    layout: Layout = describe(x, args.spatial)
    return getattr(_backend_module(x), what)(x, layout, args)


def _mix_targets_impl(labels: Tensor, partner: Tensor, label_lam: Tensor, num_classes: int,
                      smoothing: float) -> Tensor:
    name = backend_for(partner)
    if name == "triton":
        return _kernels()[1].mix_targets(labels, partner, label_lam, num_classes, smoothing)
    return (cpu if name == "cpu" else reference).mix_targets(labels, partner, label_lam, num_classes, smoothing)


# every op's implementation by name (fastmix.apps.bench.launches looks inside them)
IMPLEMENTATIONS = {"blend_": _blend_impl_, "blend": functools.partial(_out_of_place, "blend"),
                   "blend_grad": functools.partial(_out_of_place, "blend_grad"), "mix_targets": _mix_targets_impl}
_lib.impl("blend_", _blend_impl_, "CompositeExplicitAutograd")
_lib.impl("blend", functools.partial(_out_of_place, "blend"), "CompositeExplicitAutograd")
_lib.impl("blend_grad", functools.partial(_out_of_place, "blend_grad"), "CompositeExplicitAutograd")
_lib.impl("mix_targets", _mix_targets_impl, "CompositeExplicitAutograd")
torch.library.register_fake("fastmix::blend_", lambda x, *plan: None, lib=_lib)
torch.library.register_fake("fastmix::blend", lambda x, *plan: _empty_like_dense(x), lib=_lib)
torch.library.register_fake("fastmix::blend_grad", lambda grad, *plan: _empty_like_dense(grad), lib=_lib)
torch.library.register_fake("fastmix::mix_targets", lambda labels, partner, label_lam, num_classes, smoothing:
                            partner.new_empty((partner.shape[0], num_classes), dtype=torch.float32), lib=_lib)

_NO_PLAN_GRADS = (None,) * len(PlanArgs._fields)


def _keep_plan(ctx, inputs, output):
    ctx.plan = PlanArgs(*inputs[1:])


def _blend_backward(ctx, grad):
    return (torch.ops.fastmix.blend_grad(grad, *ctx.plan),) + _NO_PLAN_GRADS


def _blend_grad_backward(ctx, grad_grad):
    # blend_grad is the transpose of the (linear, fill-free) blend: its own transpose is that blend
    return (torch.ops.fastmix.blend(grad_grad, *ctx.plan._replace(fill=None, noise_seed=None)),) + _NO_PLAN_GRADS


torch.library.register_autograd("fastmix::blend", _blend_backward, setup_context=_keep_plan, lib=_lib)
torch.library.register_autograd("fastmix::blend_grad", _blend_grad_backward, setup_context=_keep_plan, lib=_lib)


# --------------------------------------------------------------------------------------------
# plan-level entry points
# --------------------------------------------------------------------------------------------

def _plain_eager(*tensors) -> bool:
    """True when nothing but plain tensors in eager mode is involved: no tracing, no dispatch or
    function modes, no subclasses. Then calling an op's implementation directly is exactly what
    the dispatcher would do, minus ~0.2 ms of Python in torch.library's layers (which dominates
    a step on small batches). Anything else goes through the registered op."""
    if torch.compiler.is_compiling():  # first: dynamo cannot trace the two mode queries below
        return False
    if torch._C._len_torch_dispatch_stack() or torch._C._is_torch_function_mode_enabled():
        return False
    return not tensors or all(type(t) is torch.Tensor for t in tensors if t is not None)


def grad_wanted(x: Tensor) -> bool:
    """Whether mixing ``x`` must be out of place and differentiable (it requires grad, grad mode on)."""
    return x.requires_grad and torch.is_grad_enabled()


def apply_known(x: Tensor, plan: Plan, known, inplace: bool) -> Tensor:
    """The transforms' apply: ``x`` checked once by :func:`fastmix.known.batch` (its facts in
    ``known``) and a plan fastmix drew for it, so nothing is checked or derived again. In place
    (``x`` returned) or out of place and differentiable (``inplace`` False, the caller's choice)."""
    args = plan_args(plan, with_cycles=known.backend == "triton")
    if not inplace:
        return torch.ops.fastmix.blend(x, *args)
    if type(x) is torch.Tensor and _plain_eager():
        layout = known.boxed if args.spatial else known.flat
        if layout is not None:
            known.module.blend_(x, layout, args)    # the op's implementation, x not described again
        elif x.numel():
            _blend_impl_(x, *args)                             # strides with no description: a dense copy
        return x
    torch.ops.fastmix.blend_(x, *args)
    return x


def targets_of(labels: Tensor, plan: Plan, num_classes: int, smoothing: float) -> Tensor:
    args = (labels, plan.partner, plan.label_lam, num_classes, smoothing)
    if _plain_eager(*args[:3]):
        return _mix_targets_impl(*args)
    return torch.ops.fastmix.mix_targets(*args)


# --------------------------------------------------------------------------------------------
# the piece pass (fastmix/pieces.py: RICAP, DirichletMixup, ResizeMix), issue 18
# --------------------------------------------------------------------------------------------
# ``fastmix::apply_pieces`` is the out-of-place pass of a checked piece plan (its pieces; the label
# pieces are the targets' business). Its implementation is fastmix.pieces.run_fields (the backend
# chosen there, by backend_for); the fake one allocates the output as the pass does, so a family
# step under torch.compile(fullgraph=True) is one graph with one opaque op in it. No autograd
# formula: a batch that requires grad takes the differentiable reference instead (pieces.apply_known).

PIECES_SCHEMA = "Tensor x, Tensor src, Tensor weight, Tensor dst_box, Tensor src_box, str resize"
_lib.define(f"apply_pieces({PIECES_SCHEMA}) -> Tensor")


def _pieces_impl(x: Tensor, src: Tensor, weight: Tensor, dst_box: Tensor, src_box: Tensor, resize: str) -> Tensor:
    from .pieces import run_fields
    return run_fields(x, src, weight, dst_box, src_box, resize)


def _pieces_fake(x: Tensor, src: Tensor, weight: Tensor, dst_box: Tensor, src_box: Tensor, resize: str) -> Tensor:
    from .pieces import empty_out
    return empty_out(x)


IMPLEMENTATIONS["apply_pieces"] = _pieces_impl
_lib.impl("apply_pieces", _pieces_impl, "CompositeExplicitAutograd")
torch.library.register_fake("fastmix::apply_pieces", _pieces_fake, lib=_lib)
