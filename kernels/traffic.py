"""Count the bytes the kernels load and store, by instrumenting Triton's interpreter.

    with traffic.count(x) as t:
        fastmix.functional.apply(x, plan)        # under TRITON_INTERPRET=1, FASTMIX_BACKEND=triton
    t.bytes_loaded, t.bytes_stored, t.launches, t.reloaded_bytes, t.shared_bytes

Only accesses that fall inside the watched tensors' memory are counted (the plan's own small
tensors are not batch traffic). Every masked-in lane of every ``tl.load``/``tl.store`` counts,
so the numbers are what a GPU would move at element granularity (sector rounding aside).
Besides totals it records which program touched which byte, so it can tell whether any byte
was read twice (``reloaded_bytes``) and whether two programs touched a byte one of them wrote
(``shared_bytes``: a race on a real GPU, where programs run concurrently).

Every access is also checked against the storage of the launch's own tensor arguments: one that
falls outside all of them (an out-of-bounds access on a GPU) is recorded in ``strays``, and with
``count(..., strict=True)`` raises :class:`StrayAccess` *before* it is performed (so a fuzz test
reports it instead of crashing the interpreter).
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


class StrayAccess(AssertionError):
    """A kernel was about to load or store outside every tensor it was launched with."""


@dataclass
class Traffic:
    ranges: list
    bytes_loaded: int = 0
    bytes_stored: int = 0
    launches: Counter = field(default_factory=Counter)
    strict: bool = False
    strays: list = field(default_factory=list)     # (kernel, "load" | "store", first stray addresses)
    _loads: list = field(default_factory=list)
    _stores: list = field(default_factory=list)
    _launch_ranges: list = field(default_factory=list)
    _kernel: str = ""

    def _check_bounds(self, kind: str, addrs: np.ndarray, size: int) -> None:
        inside = np.zeros(addrs.shape, dtype=bool)
        for lo, hi in self._launch_ranges:
            inside |= (addrs >= lo) & (addrs + size <= hi)
        if inside.all():
            return
        stray = addrs[~inside][:8]
        self.strays.append((self._kernel, kind, stray.tolist()))
        if self.strict:
            raise StrayAccess(f"{self._kernel}: {kind} of {int((~inside).sum())} element(s) outside every tensor "
                              f"argument, first at {[hex(int(a)) for a in stray]}; arguments span "
                              f"{[(hex(lo), hex(hi)) for lo, hi in self._launch_ranges]}")

    def _check_atomic(self, ptrs, mask) -> None:
        """Bounds only (atomics are hand-off counters, not batch traffic: they are not counted)."""
        addrs = np.asarray(ptrs.data).reshape(-1)
        keep = np.asarray(mask.data, dtype=bool).reshape(-1) if mask is not None else np.ones(addrs.shape, bool)
        addrs = addrs[keep].astype(np.int64)
        if addrs.size:
            self._check_bounds("atomic", addrs, ptrs.get_element_ty().primitive_bitwidth // 8)

    def _record(self, kind: str, ptrs, mask, program: int) -> None:
        addrs = np.asarray(ptrs.data).reshape(-1)
        keep = np.asarray(mask.data, dtype=bool).reshape(-1) if mask is not None else np.ones(addrs.shape, bool)
        addrs = addrs[keep].astype(np.int64)
        if addrs.size == 0:
            return
        size = ptrs.get_element_ty().primitive_bitwidth // 8
        self._check_bounds(kind, addrs, size)
        inside = np.zeros(addrs.shape, dtype=bool)
        for lo, hi in self.ranges:
            inside |= (addrs >= lo) & (addrs < hi)
        addrs = addrs[inside]
        if addrs.size == 0:
            return
        nbytes = int(addrs.size) * size
        if kind == "load":
            self.bytes_loaded += nbytes
            self._loads.append((addrs, np.full(addrs.shape, program, np.int64), size))
        else:
            self.bytes_stored += nbytes
            self._stores.append((addrs, np.full(addrs.shape, program, np.int64), size))

    @staticmethod
    def _cat(records):
        if not records:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), 1
        return (np.concatenate([r[0] for r in records]), np.concatenate([r[1] for r in records]),
                records[0][2])

    @property
    def reloaded_bytes(self) -> int:
        """Bytes loaded more than once (counting each extra load)."""
        addrs, _, size = self._cat(self._loads)
        return int(addrs.size - np.unique(addrs).size) * size

    @property
    def rewritten_bytes(self) -> int:
        """Bytes stored more than once (counting each extra store)."""
        addrs, _, size = self._cat(self._stores)
        return int(addrs.size - np.unique(addrs).size) * size

    def longest_walk(self, tensor) -> int:
        """The most samples (rows of dim 0) of ``tensor`` that any one program loaded or stored:
        how long a chain of rows a program walks in a row."""
        records = self._loads + self._stores
        if not records:
            return 0
        addrs, progs, _ = self._cat(records)
        base, row_bytes = tensor.data_ptr(), tensor.stride(0) * tensor.element_size()
        mine = (addrs >= base) & (addrs < base + tensor.untyped_storage().nbytes())
        pairs = np.unique(np.stack([progs[mine], (addrs[mine] - base) // row_bytes], 1), axis=0)
        return int(np.unique(pairs[:, 0], return_counts=True)[1].max()) if len(pairs) else 0

    def shared_addresses(self) -> np.ndarray:
        """Addresses written by one program and loaded or stored by another."""
        s_addr, s_prog, _ = self._cat(self._stores)
        if s_addr.size == 0:
            return s_addr
        l_addr, l_prog, _ = self._cat(self._loads)
        pairs = np.unique(np.stack([np.concatenate([s_addr, l_addr]), np.concatenate([s_prog, l_prog])], 1), axis=0)
        touched_by, counts = np.unique(pairs[:, 0], return_counts=True)
        return touched_by[(counts > 1) & np.isin(touched_by, s_addr)]

    @property
    def shared_bytes(self) -> int:
        """Bytes written by one program and loaded or stored by another: races on a GPU."""
        s_addr, s_prog, size = self._cat(self._stores)
        if s_addr.size == 0:
            return 0
        l_addr, l_prog, _ = self._cat(self._loads)
        addrs = np.concatenate([s_addr, l_addr])
        progs = np.concatenate([s_prog, l_prog])
        pairs = np.unique(np.stack([addrs, progs], 1), axis=0)       # (addr, program) once each
        touched_by, counts = np.unique(pairs[:, 0], return_counts=True)
        written = np.isin(touched_by, s_addr)
        return int(((counts > 1) & written).sum()) * size


def _storage_range(t) -> tuple:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


@contextlib.contextmanager
def count(*tensors, strict: bool = False):
    """Instrument the interpreter while the block runs; yields a :class:`Traffic`. With
    ``strict``, an access outside the launch's tensor arguments raises :class:`StrayAccess`."""
    from triton.runtime import interpreter

    ranges = [(t.data_ptr(), t.data_ptr() + t.untyped_storage().nbytes()) for t in tensors]
    traffic = Traffic(ranges, strict=strict)
    builder_cls = interpreter.InterpreterBuilder
    builder = interpreter.interpreter_builder
    orig_load, orig_store = builder_cls.create_masked_load, builder_cls.create_masked_store
    orig_rmw, orig_cas = builder_cls.create_atomic_rmw, builder_cls.create_atomic_cas
    orig_call = interpreter.GridExecutor.__call__

    def program() -> int:
        x, y, z = builder.grid_idx
        gx, gy, _ = builder.grid_dim
        return (z * gy + y) * gx + x

    def load(self, ptrs, mask, other, *args):
        traffic._record("load", ptrs, mask, program())
        return orig_load(self, ptrs, mask, other, *args)

    def store(self, ptrs, value, mask, *args):
        traffic._record("store", ptrs, mask, program())
        return orig_store(self, ptrs, value, mask, *args)

    def rmw(self, op, ptr, val, mask, *args):
        traffic._check_atomic(ptr, mask)
        return orig_rmw(self, op, ptr, val, mask, *args)

    def cas(self, ptr, cmp, val, *args):
        traffic._check_atomic(ptr, None)
        return orig_cas(self, ptr, cmp, val, *args)

    def call(self, *args, **kwargs):
        traffic.launches[self.fn.__name__] += 1
        traffic._kernel = self.fn.__name__
        traffic._launch_ranges = [_storage_range(a) for a in (*args, *kwargs.values()) if hasattr(a, "data_ptr")]
        try:
            return orig_call(self, *args, **kwargs)
        except Exception as err:        # the interpreter wraps what a kernel raises: unwrap ours
            if isinstance(err.__cause__, StrayAccess):
                raise err.__cause__ from None
            raise

    builder_cls.create_masked_load, builder_cls.create_masked_store = load, store
    builder_cls.create_atomic_rmw, builder_cls.create_atomic_cas = rmw, cas
    interpreter.GridExecutor.__call__ = call
    try:
        yield traffic
    finally:
        builder_cls.create_masked_load, builder_cls.create_masked_store = orig_load, orig_store
        builder_cls.create_atomic_rmw, builder_cls.create_atomic_cas = orig_rmw, orig_cas
        interpreter.GridExecutor.__call__ = orig_call
