"""Counting what a call launches: the aten ops that would start a device kernel (views,
allocations and metadata reads excluded) and the Triton kernel launches, the same way for
fastmix and for the peers.

On a GPU in eager mode a mixing step costs what the host launches, so this count is the step's
budget (``tests/test_launches.py`` holds every transform to at most three). On a CPU machine the
CUDA path runs under the Triton interpreter (``TRITON_INTERPRET=1``, ``FASTMIX_BACKEND=triton``):
the same Python, the same launches.

    with count_launches() as launches:
        mixer(x, y)
    launches.aten, launches.triton, launches.total
"""
from __future__ import annotations

import collections
import contextlib
from dataclasses import dataclass, field

from torch.utils._python_dispatch import TorchDispatchMode

from .traffic import _NO_TRAFFIC

__all__ = ["Launches", "count_launches"]


@dataclass
class Launches:
    aten: collections.Counter = field(default_factory=collections.Counter)     # op name -> calls
    triton: collections.Counter = field(default_factory=collections.Counter)   # kernel name -> launches

    @property
    def total(self) -> int:
        return sum(self.aten.values()) + sum(self.triton.values())

    def __str__(self) -> str:
        ops = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted({**self.aten, **self.triton}.items()))
        return f"{self.total} ({ops or 'nothing'})"


class _Mode(TorchDispatchMode):
    def __init__(self, launches: Launches):
        super().__init__()
        self.launches = launches
        self.in_triton = 0   # the interpreter copies a launch's tensors to and from numpy: not the call's own ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "fastmix":   # look inside fastmix's own ops: what their implementations launch
            from fastmix import ops
            with self:
                return ops.IMPLEMENTATIONS[func._opname](*args, **kwargs)
        name = func.overloadpacket.__name__
        if name not in _NO_TRAFFIC and not self.in_triton:
            self.launches.aten[name] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_launches():
    """Count launches while the block runs (see the module docstring); yields a :class:`Launches`."""
    from triton.runtime import interpreter, jit

    launches = Launches()
    mode = _Mode(launches)
    patched = []
    for cls in (jit.JITFunction, interpreter.InterpretedFunction):
        original = cls.run

        def run(self, *args, _original=original, **kwargs):
            if not kwargs.get("warmup", False) and not mode.in_triton:
                launches.triton[getattr(self, "__name__", None) or self.fn.__name__] += 1
            mode.in_triton += 1
            try:
                return _original(self, *args, **kwargs)
            finally:
                mode.in_triton -= 1

        cls.run = run
        patched.append((cls, original))
    try:
        with mode:
            yield launches
    finally:
        for cls, original in patched:
            cls.run = original
