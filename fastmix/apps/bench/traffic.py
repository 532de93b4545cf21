"""Counting the bytes a call's aten ops read and write (a ``TorchDispatchMode``), for the peers'
column of ``fastmix bench`` (fastmix's own kernels are counted under the Triton interpreter by
``fastmix.kernels.traffic``)."""

from __future__ import annotations

import collections
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["count_traffic"]
# ---------------------------------------------------------------------------
# traffic counting
# ---------------------------------------------------------------------------

# ops that only make views or read metadata: they move no bytes
_NO_TRAFFIC = frozenset(
    """
    view _unsafe_view view_as _reshape_alias reshape expand expand_as slice select as_strided t
    permute transpose detach alias unsqueeze squeeze unfold diagonal narrow split split_with_sizes
    unbind chunk view_as_real view_as_complex real imag lift_fresh conj _conj _neg_view movedim
    numpy_T mT mH adjoint _nested_view_from_buffer unflatten flatten
    empty empty_like empty_strided new_empty new_empty_strided empty_permuted set_ resize_
    sym_size sym_stride sym_numel sym_storage_offset is_same_size is_nonzero
    """.split()
)

# in-place ops that overwrite ``self`` without reading it: self counts as written, not read
_OVERWRITE_SELF = frozenset(
    """
    copy_ fill_ zero_ index_put_ _index_put_impl_ masked_fill_ index_fill_
    normal_ uniform_ random_ bernoulli_ exponential_ geometric_ cauchy_ log_normal_
    """.split()
)


def _nbytes(t: torch.Tensor, collapse_broadcast: bool) -> int:
    """Bytes of the elements a (possibly view) tensor exposes, not its whole storage."""
    if collapse_broadcast:
        n = 1
        for size, stride in zip(t.shape, t.stride()):
            if stride != 0:
                n *= size
        if t.numel() == 0:
            n = 0
    else:
        n = t.numel()
    return n * t.element_size()


def _tensors(obj):
    return [a for a in tree_flatten(obj)[0] if isinstance(a, torch.Tensor)]


class _TrafficMode(TorchDispatchMode):
    def __init__(self, collapse_broadcast: bool):
        super().__init__()
        self.collapse = collapse_broadcast
        self.read = 0
        self.written = 0
        self.ops = 0
        self.counter: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)

        name = func.overloadpacket.__name__
        self.counter[str(func.overloadpacket)] += 1
        if name in _NO_TRAFFIC or getattr(func, "is_view", False):
            return out
        self.ops += 1

        schema = func._schema
        nb = lambda t: _nbytes(t, self.collapse)  # noqa: E731

        # per argument: written if the schema marks it (a!) (in-place self, out=); read unless it is an
        # out= buffer or the self of an op that overwrites without reading
        for i, arg in enumerate(schema.arguments):
            val = args[i] if i < len(args) and not arg.kwarg_only else kwargs.get(arg.name)
            ts = _tensors(val)
            if not ts:
                continue
            info = arg.alias_info
            writes = info is not None and info.is_write
            if writes:
                self.written += sum(nb(t) for t in ts)
            if not (writes and (arg.kwarg_only or name in _OVERWRITE_SELF)):
                self.read += sum(nb(t) for t in ts)

        # outputs: skip returns that alias an argument (in-place/out= results, views)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        rets = schema.returns
        for j, o in enumerate(outs):
            aliased = j < len(rets) and rets[j].alias_info is not None
            if not aliased:
                for t in _tensors(o):
                    self.written += nb(t)
        return out


def count_traffic(fn: Callable[[], object], *, collapse_broadcast: bool = False) -> dict:
    """Count the bytes that aten ops move during ONE call of ``fn``.

    Returns ``{'bytes_read', 'bytes_written', 'ops', 'aten_ops'}``:

    * bytes_read: sum over ops of the nbytes of its tensor inputs, counting a view's
      visible elements * itemsize (not its storage).  Out= buffers and the ``self`` of
      ops that overwrite it without reading (copy_, fill_, zero_, index_put_, RNG fills)
      are not counted as read.
    * bytes_written: nbytes of tensor outputs, plus the arguments the op mutates
      (schema alias ``(a!)``: in-place self, out=).  A mutated argument is counted whole
      even when the op writes only part of it (index_put_, masked_fill_).
    * ops: number of aten ops that move data; views, metadata ops and empty* allocations
      count 0 bytes and are not in ``ops``.
    * aten_ops: Counter of every aten op seen (views included), by overload packet name.

    ``collapse_broadcast=True`` counts a stride-0 (expanded) dimension once, i.e. distinct
    elements rather than visible ones.
    """
    mode = _TrafficMode(collapse_broadcast)
    with mode:
        fn()
    return {
        "bytes_read": mode.read,
        "bytes_written": mode.written,
        "ops": mode.ops,
        "aten_ops": mode.counter,
    }
