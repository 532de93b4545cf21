"""Checked once, known once: what a batch tensor's signature tells the hot path.

A training loop calls a transform with batches of one shape, strides, dtype and device, step after
step. What those four determine is derived on the first call and kept, per signature, in a small
bounded cache: that the tensor passes the argument checks (rank, dtype, and for a tensor written in
place that its memory does not overlap itself, which can cost a host-side enumeration), the layout
the backends address it by (:func:`fastmix.layout.describe`), and the backend that runs it
(:func:`fastmix.ops.backend_for`). A later call with the same signature re-derives none of it.

The transforms check their input once through :func:`batch` and hand the :class:`Known` facts to
the internal apply; the public ``fastmix.functional.apply`` checks everything itself (it takes any
user's plan) and shares this cache for the tensor's part.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from . import _checks, ops
from .layout import Layout, describe

# signatures kept at once: a loop sees one or two (the last, smaller batch of an epoch), an
# evaluation pass a few more; beyond this the cache starts over rather than grow without bound
CACHE_SIZE = 64
_cache: dict = {}


class Known(NamedTuple):
    """What a checked batch's signature says."""

    backend: str              # "triton", "cpu" or "reference" (fastmix.ops.backend_for)
    module: object            # that backend's module: fastmix.kernels.blend, fastmix.cpu or fastmix.reference
    flat: Optional[Layout]    # the layout for whole-sample plans (every sample one row); None: densify first
    boxed: Optional[Layout]   # the layout for plans with boxes; None: densify first, or x cannot take boxes

    def layout(self, spatial: bool) -> Optional[Layout]:
        return self.boxed if spatial else self.flat


def batch(name: str, x, *, min_dim: int = 2, dims: Optional[Sequence[int]] = None,
          dtypes: Sequence[torch.dtype] = _checks.BLEND_DTYPES, writable: bool = True) -> Known:
    """``x`` checked as :func:`fastmix._checks.batch` checks it (a ValueError/TypeError naming
    ``name`` otherwise, before anything is written), and its :class:`Known` facts; both are kept
    per signature (a failing tensor is never kept, so its error is raised on every call)."""
    if not isinstance(x, torch.Tensor):
        _checks.tensor(name, x)
    key = (x.shape, x.stride(), x.dtype, x.device, min_dim, dims, dtypes, writable, ops.generation)
    known = _cache.get(key)
    if known is None:
        _checks.batch(name, x, min_dim=min_dim, dims=dims, dtypes=dtypes, writable=writable)
        dense = x.numel() > 0
        backend = ops.backend_for(x)
        known = Known(backend, ops._module(backend), describe(x, False) if dense else None,
                      describe(x, True) if dense and x.dim() in (3, 4, 5) else None)
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[key] = known
    return known
