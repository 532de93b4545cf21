"""The CPU fast path's walks: each applies a plan in place on a CPU tensor, as
``fastmix/reference.py`` specifies, in few large ops. Which one runs is ``fastmix/cpu.py``'s one
decision; the tests force each on the same plans and hold them to the reference and to each other.
Every walk gathers what it reads from a partner before writing it (or, walking cycles, reads a
partner while it is still unwritten), and leaves every element outside its sample's region bit for
bit as it was.
"""
from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from . import reference
from .layout import Layout
from .partners import FLIP, ROLL
from .plan import PlanArgs
from .reference import compute_dtype, is_blended, view4

if TYPE_CHECKING:
    from .cpu import Facts

# Samples of WALK_ELEMENTS or more (in place) walk the cycles; a flip-pair block holds about
# PAIR_BLOCK_ELEMENTS (a block, its partners and their float32 staging stay in L2/L3); a chunk
# of the general walk CHUNK_ELEMENTS (a chunk and its gathered partner rows stay in L3).
WALK_ELEMENTS = 1 << 16
PAIR_BLOCK_ELEMENTS = 1 << 19
CHUNK_ELEMENTS = 1 << 20
# A batch-mode plan's region of up to UNIFORM_ELEMENTS over the batch is blended at once (its
# gathered copy stays in cache); a larger one is walked, whose traffic is lower (no extra copy)
UNIFORM_ELEMENTS = 1 << 20

_scratch_cache = threading.local()


def scratch(numel: int, dtype: torch.dtype, slot: str) -> torch.Tensor:
    """A reusable 1-d CPU buffer of at least ``numel`` elements, one per thread, slot and dtype.

    Chunk buffers are a few MiB: allocated fresh on every call they come back as new pages, and
    faulting those in cost more than the blend itself on small batches (0.8 ms at 3 MiB).
    """
    cache = _scratch_cache.__dict__.setdefault("buffers", {})
    buf = cache.get((slot, dtype))
    if buf is None or buf.numel() < numel:
        buf = cache[(slot, dtype)] = torch.empty(numel, dtype=dtype)
    return buf[:numel]


def store(target: torch.Tensor, val: torch.Tensor, clamp: bool) -> None:
    """Write a float blend ``val`` (overwritten for uint8) into ``target``: uint8 rounds half to even (and
    clamps to [0, 255] unless every weight is convex) and goes through int16 (exact: the values
    are integers in range by then); other dtypes are a plain copy (round to nearest even)."""
    if target.dtype != torch.uint8:
        target.copy_(val)
        return
    val.round_()
    if clamp:
        val.clamp_(0, 255)
    target.copy_(scratch(val.numel(), torch.int16, "narrow").view(val.shape).copy_(val))


# --------------------------------------------------------------------------------------------
# UNIFORM: one draw for the whole batch, at once
# --------------------------------------------------------------------------------------------

def uniform_region(args: PlanArgs, lay: Layout, dtype: torch.dtype) -> Optional[tuple]:
    """``(rows, lanes, a, b)`` when the plan is one draw for the whole batch, applied at once: its
    per-row fields are one value expanded to every row (stride 0, as the batch-mode sampler on the
    host makes them), its partner a closed form with no row its own partner, no fill or mask, and
    the region of the batch fits in cache (:data:`UNIFORM_ELEMENTS`); else None."""
    lam_self, box = args.lam_self, args.box
    if (lam_self.stride(0) != 0 or args.lam_partner.stride(0) != 0 or box.stride(0) != 0 or box.shape[1] != 1
            or args.fill is not None or args.noise_seed is not None or not is_blended(dtype)):
        return None
    batch = lay.batch
    if args.pairing not in (FLIP, ROLL) or batch < 2 or (args.pairing == FLIP and batch % 2):
        return None
    y0, y1, x0, x1 = box[0, 0].tolist()
    y0, y1 = min(max(y0, 0), lay.rows), min(max(y1, 0), lay.rows)
    x0, x1 = min(max(x0, 0), lay.width) * lay.lane_scale, min(max(x1, 0), lay.width) * lay.lane_scale
    if batch * lay.planes * max(y1 - y0, 0) * max(x1 - x0, 0) > UNIFORM_ELEMENTS:
        return None
    a, b = float(lam_self[0]), float(args.lam_partner[0])
    if a + b != 1.0:          # a sampler's rows always mix to one; anything else takes the general walk
        return None
    return (y0, y1), (x0, x1), a, b


def walk_uniform(x: torch.Tensor, lay: Layout, args: PlanArgs) -> None:
    """One region and one weight for every row: the partners' region gathered in one op (a flip or
    a roll of the batch's region view: a copy, so every read precedes every write), then one
    ``lerp_`` (or, for a CutMix box, one copy) writes it. What lies outside the region is not
    touched; inside it, as every walk, ``lerp`` where the spec says ``a x + b y``."""
    (y0, y1), (x0, x1), a, b = uniform_region(args, lay, x.dtype)
    if y0 >= y1 or x0 >= x1 or b == 0.0:
        return            # an empty region, or weights (1, 0): nothing changes
    own = view4(x, lay)[:, :, y0:y1, x0:x1]
    other = own.flip(0) if args.pairing == FLIP else own.roll(1, 0)
    if a == 0.0 and b == 1.0:
        own.copy_(other)  # a copy is exact, NaN and -0.0 included
        return
    cdt = compute_dtype(x.dtype)
    if x.dtype == cdt:
        own.lerp_(other, b)
        return
    staged = scratch(own.numel(), cdt, "staged").view(own.shape).copy_(own)
    staged.lerp_(scratch(own.numel(), cdt, "other_staged").view(own.shape).copy_(other), b)
    store(own, staged, clamp=not 0.0 <= b <= 1.0)


# --------------------------------------------------------------------------------------------
# CHUNKS: the general walk
# --------------------------------------------------------------------------------------------

def _gather_rows(own: torch.Tensor, partner: torch.Tensor, lay: Layout, out: torch.Tensor) -> torch.Tensor:
    """``own[partner]`` for a ``(B, P, rows, lanes)`` chunk into (a prefix of) ``out``. Whole rows
    of a dense plane are gathered as one run, which lets ``index_select`` copy with ``memcpy``
    instead of element by element (4-5x faster)."""
    shape = (partner.numel(),) + tuple(own.shape[1:])
    out = out[:shape[0] * own[0].numel()]
    if own.shape[-1] == lay.lanes and lay.stride_row == lay.lanes:
        merged = own.reshape(own.shape[0], own.shape[1], -1)   # a view: rows are contiguous
        return torch.index_select(merged, 0, partner, out=out.view(shape[:2] + (-1,))).view(shape)
    return torch.index_select(own, 0, partner, out=out.view(shape))


def walk_chunks(x: torch.Tensor, lay: Layout, args: PlanArgs, facts: Facts) -> None:
    """In place over the extent, chunk by chunk: gather the partner rows, blend (``lerp`` when
    ``a + b == 1`` or ``b == 0``), and keep every element outside its live region as it was (the
    final select happens in the storage dtype, so even a NaN's payload survives narrowing)."""
    cdt = compute_dtype(x.dtype)
    shape = (lay.batch, 1, 1, 1)
    a = torch.from_numpy(facts.a).to(cdt).view(shape)
    b = torch.from_numpy(facts.b).to(cdt).view(shape)
    c = 1.0 - a - b
    has_fill = args.fill is not None or args.noise_seed is not None
    fill_only = facts.lerp == "fill" and bool((facts.a[facts.live] == 0).all())   # Cutout, Erasing: c == 1
    masked = not (facts.uniform and facts.live.all())      # some element of the extent stays as it is
    boxes = tuple(torch.from_numpy(facts.boxes[..., k:k + 1]) for k in range(4))
    xv = view4(x, lay)
    for r0, r1, l0, l1 in reference.chunks(lay, facts.extent, CHUNK_ELEMENTS):
        rows, lanes = torch.arange(r0, r1), torch.arange(l0, l1)
        own = xv[:, :, r0:r1, l0:l1]
        inside = reference.region(boxes, rows, lanes) if masked or has_fill else None
        if not is_blended(x.dtype):                         # masks: the spec's select
            other = own.index_select(0, args.partner)
            fill = args.fill[:, :1].to(x.dtype).view(shape) if args.fill is not None else own
            own.copy_(torch.where(inside, torch.where(b != 0, other, torch.where(a != 0, own, fill)), own))
            continue
        other = None
        if facts.draws:   # gathered before anything of the chunk is written
            other = _gather_rows(own, args.partner, lay, scratch(own.numel(), x.dtype, "gathered"))
            if other.dtype != cdt:
                other = scratch(own.numel(), cdt, "other_staged").view(own.shape).copy_(other)
        fill = None
        if has_fill:
            where = (inside & (c != 0)).expand(own.shape) if args.noise_seed is not None else None
            fill = reference._fill(args, lay, rows, lanes, where, cdt).expand(own.shape)
        if fill_only:                                       # a pure fill is exact, not a lerp
            val = fill
        elif not masked and x.dtype == cdt and facts.lerp == "partner":
            own.lerp_(other, b)                             # one op, in place
            continue
        else:
            val = scratch(own.numel(), cdt, "staged").view(own.shape).copy_(own)
            if facts.lerp == "partner":
                val.lerp_(other, b)
            elif facts.lerp == "fill":
                val.lerp_(fill, c)
            else:
                val = reference._blend_terms(val, val if other is None else other, fill, a, b, c)
        clamp = facts.lerp != "partner" or not facts.convex
        if not masked:
            store(own, val.clone() if val is fill else val, clamp)
            continue
        narrowed = scratch(own.numel(), x.dtype, "narrowed").view(own.shape)
        store(narrowed, val.clone() if val is fill else val, clamp)
        own.copy_(torch.where(inside, narrowed, own))


# --------------------------------------------------------------------------------------------
# SELECT: a batch that fits in cache, at once, selected bit for bit
# --------------------------------------------------------------------------------------------

_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _select_(target: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> None:
    """``target = mask ? value : target`` on the bits (``mask`` all ones or all zeros, broadcast):
    ``target ^= (target ^ value) & mask``. Exact for every value, NaN payloads and -0.0 included,
    and three vectorised integer passes, where ``torch.where`` on a broadcast mask is a slow loop."""
    bits = _BITS[target.element_size()]
    target_bits = target.view(bits)
    diff = scratch(target.numel(), bits, "select").view(target.shape)   # reused: fresh pages fault
    torch.bitwise_xor(target_bits, value.view(bits), out=diff)
    target_bits.bitwise_xor_(diff.bitwise_and_(mask))


def _ones_where(condition: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``condition`` as all-ones (-1) or zero integers of ``dtype``, for :func:`_select_`."""
    return condition.to(dtype).neg_()


def walk_select(x: torch.Tensor, lay: Layout, args: PlanArgs, facts: Facts) -> None:
    """Every row at once over the extent: the partners' rows gathered (one ``index_select``), the
    blend of every row (``lerp``: a + b == 1 on live rows), rows that copy their partner
    (a = 0, b = 1) given the gathered bits exactly, and the result selected into ``x`` inside each
    row's box by a bit mask built from two small per-row masks (rows, lanes). Nothing outside a
    box changes, not even a NaN's payload."""
    y0, y1, x0, x1 = facts.extent
    own = view4(x, lay)[:, :, y0:y1, x0:x1]
    other = _gather_rows(own, args.partner, lay, scratch(own.numel(), x.dtype, "gathered"))
    bits = _BITS[x.element_size()]
    live = facts.live
    copies = live & (facts.a == 0) & (facts.b == 1)
    whole = facts.uniform and bool(live.all())             # every row blends over the whole extent
    if whole and not copies.any() and x.dtype == compute_dtype(x.dtype):
        own.lerp_(other, torch.from_numpy(facts.b).to(x.dtype).view(lay.batch, 1, 1, 1))   # Mixup per sample
        return
    if bool(copies[live].all()):
        value = other                                      # CutMix: every live row copies
    else:
        cdt = compute_dtype(x.dtype)
        weight = torch.from_numpy(facts.b).to(cdt).view(lay.batch, 1, 1, 1)
        if x.dtype == cdt:
            value = torch.lerp(own, other, weight, out=scratch(own.numel(), cdt, "staged").view(own.shape))
        else:
            blended = scratch(own.numel(), cdt, "staged").view(own.shape).copy_(own)
            blended.lerp_(scratch(own.numel(), cdt, "other_staged").view(own.shape).copy_(other), weight)
            value = scratch(own.numel(), x.dtype, "narrowed").view(own.shape)
            store(value, blended, clamp=not facts.convex)
        if copies.any():                                   # switching: CutMix rows take the copy
            _select_(value, other, _ones_where(torch.from_numpy(copies), bits).view(lay.batch, 1, 1, 1))
    if whole:
        own.copy_(value)
        return
    if facts.uniform:                                      # one region: only whole rows differ
        _select_(own, value, _ones_where(torch.from_numpy(live), bits).view(lay.batch, 1, 1, 1))
        return
    boxes = torch.from_numpy(facts.boxes[:, 0])            # (B, 4) clipped, in rows and lanes
    rows, lanes = torch.arange(y0, y1), torch.arange(x0, x1)
    row_in = _ones_where((rows >= boxes[:, 0:1]) & (rows < boxes[:, 1:2]), bits)
    lane_in = _ones_where((lanes >= boxes[:, 2:3]) & (lanes < boxes[:, 3:4]), bits)
    _select_(own, value, row_in[:, None, :, None] & lane_in[:, None, None, :])


# --------------------------------------------------------------------------------------------
# FLIP_PAIRS: timm's pairing, blocks of pairs
# --------------------------------------------------------------------------------------------

def pair_blocks(facts: Facts, lay: Layout) -> list:
    """Blocks ``(i, k)`` of live flip pairs: samples ``i..i+k`` with partners ``B-i-k..B-i``,
    about PAIR_BLOCK_ELEMENTS each (a batch that fits twice over is one block). Empty when some
    pair has one live row and one untouched (a block writes both halves)."""
    half = lay.batch // 2
    live = facts.live[:half]
    if not (live == facts.live[::-1][:half]).all():
        return []
    per_sample = facts.numel(lay)
    k = half if lay.batch * per_sample <= 2 * PAIR_BLOCK_ELEMENTS else max(1, PAIR_BLOCK_ELEMENTS // (2 * per_sample))
    blocks, i = [], 0
    while i < half:
        if not live[i]:
            i += 1
            continue
        j = i
        while j < half and j - i < k and live[j]:
            j += 1
        blocks.append((i, j - i))
        i = j
    return blocks


def flip_pairs(x: torch.Tensor, lay: Layout, facts: Facts) -> None:
    """Sample ``i`` and ``j = B-1-i`` only read each other: samples ``i..i+k`` and ``j-k+1..j`` are
    one strided view ``(2, k, ...)``; their partners are gathered with one ``index_select`` and one
    ``lerp`` writes the block. Each image is read from memory once and written once."""
    y0, y1, x0, x1 = facts.extent
    blocks = pair_blocks(facts, lay)
    cdt = compute_dtype(x.dtype)
    per_sample = facts.numel(lay)
    largest = 2 * max(k for _, k in blocks) * per_sample
    sample_shape, sample_strides = (lay.planes, y1 - y0, x1 - x0), (lay.stride_plane, lay.stride_row, 1)
    own_all = view4(x, lay)[:, :, y0:y1, x0:x1]
    for i, k in blocks:
        order = np.concatenate([np.arange(i, i + k), np.arange(lay.batch - i - k, lay.batch - i)])
        size = (2, k) + sample_shape
        strides = ((lay.batch - 2 * i - k) * lay.stride_batch, lay.stride_batch) + sample_strides
        own = x.as_strided(size, strides, x.storage_offset() + i * lay.stride_batch + y0 * lay.stride_row + x0)
        other = _gather_rows(own_all, torch.from_numpy(facts.partner[order]), lay,
                             scratch(largest, x.dtype, "gathered")).view(size)
        weight = torch.from_numpy(facts.b[order]).to(cdt).view(2, k, 1, 1, 1)
        if x.dtype == cdt:
            own.lerp_(other, weight)
            continue
        val = scratch(largest, cdt, "staged")[:own.numel()].view(size).copy_(own)
        val.lerp_(scratch(largest, cdt, "other_staged")[:other.numel()].view(size).copy_(other), weight)
        store(own, val, clamp=not facts.convex)


# --------------------------------------------------------------------------------------------
# CYCLES: large samples in place, along the partner cycles
# --------------------------------------------------------------------------------------------

def cycles_on_host(partner: np.ndarray) -> list:
    """The cycles ``[s, partner[s], partner[partner[s]], ...]`` of length > 1 of a permutation."""
    seen = np.zeros(len(partner), dtype=bool)
    cycles = []
    for start in range(len(partner)):
        cycle = []
        k = start
        while not seen[k]:
            seen[k] = True
            cycle.append(k)
            k = int(partner[k])
        if len(cycle) > 1:   # a sample that is its own partner keeps its values
            cycles.append(cycle)
    return cycles


@contextlib.contextmanager
def one_thread():
    """Run the block's torch ops on one thread. A walk is one small op a sample: split over the
    pool, each op waits for its slowest thread, and beside a busy process that thread is often
    descheduled for a whole time slice (benchmarks/cpu_load.py: 0.36 s instead of 20 ms for a
    64x3x224x224 step with two threads on two busy cores); one memory-bound thread loses little."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def walk_cycles(x: torch.Tensor, lay: Layout, facts: Facts) -> None:
    """Walking a cycle ``s -> partner[s] -> ...``, sample ``k`` becomes
    ``x[k][box_k].lerp_(x[partner[k]][box_k], b_k)`` while its partner is still unwritten; only the
    last sample reads a saved copy of ``s``'s box. Each op reads its partner from memory while
    writing itself, and the next sample is the partner just read, still in cache: 1.5x one
    ``x.mul_(1)`` pass at 3x224x224 float32, against 1.75x for gather-then-lerp. 16-bit and uint8
    boxes are widened into float32 buffers, blended and narrowed; a widened partner box is reused
    as the next sample's own where the two boxes coincide."""
    cdt = compute_dtype(x.dtype)
    narrow = x.dtype != cdt
    weights = facts.b.tolist()
    spans = facts.boxes[:, 0].tolist()
    live = [bool(on) and w != 0 for on, w in zip(facts.live, weights)]
    samples = view4(x, lay).unbind(0)   # whole-sample views in one op (a Python-made view is ~5 us)
    whole = [0, lay.rows, 0, lay.lanes]

    def box_of(sample: int, span) -> torch.Tensor:
        if span == whole:
            return samples[sample]
        y0, y1, x0, x1 = span
        return x.as_strided((lay.planes, y1 - y0, x1 - x0), (lay.stride_plane, lay.stride_row, 1),
                            x.storage_offset() + sample * lay.stride_batch + y0 * lay.stride_row + x0)

    def staged(slot: str, like: torch.Tensor) -> torch.Tensor:
        return scratch(lay.sample_numel, cdt, slot)[:like.numel()].view(like.shape).copy_(like)

    for cycle in cycles_on_host(facts.partner):
        last = cycle[-1]
        saved = staged("walk_saved", box_of(cycle[0], spans[last])) if live[last] else None
        ahead = None   # narrow dtypes: (sample, span, widened box, slot) read as a partner, still unwritten
        for step, k in enumerate(cycle):
            if not live[k]:
                ahead = None
                continue
            span = spans[k]
            target = box_of(k, span)
            partner = cycle[step + 1] if step + 1 < len(cycle) else None
            if not narrow:
                target.lerp_(box_of(partner, span) if partner is not None else saved, weights[k])
                continue
            if ahead is not None and ahead[0] == k and ahead[1] == span:
                own, own_slot = ahead[2], ahead[3]
            else:
                own_slot = "walk_a"
                own = staged(own_slot, target)
            other_slot = "walk_b" if own_slot == "walk_a" else "walk_a"
            if partner is None:
                other, ahead = saved, None
            else:
                other = staged(other_slot, box_of(partner, span))
                ahead = (partner, span, other, other_slot)
            store(target, own.lerp_(other, weights[k]), clamp=not facts.convex)
