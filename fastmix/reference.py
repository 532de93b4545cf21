"""The pure-PyTorch application of a plan: the CPU implementation and the kernels' oracle.

It computes exactly what the Triton kernels compute, element by element::

    inside the region of sample i:  out[i] = a_i * x[i] + b_i * x[partner[i]] + (1 - a_i - b_i) * fill_i
    outside it:                     out[i] = x[i]

(terms with a zero weight are left out, in float32 for 16-bit and uint8 inputs, uint8 rounded
half to even). It is vectorised over the batch and walks the batch in chunks of rows small
enough to stay in cache: the partner rows of a chunk are gathered before the chunk is
written, so any permutation is safe in place, and the only temporaries are a few chunks — never
a copy of the batch. Where the plan can be read for free (CPU tensors) two faster walks give
the same results bit for bit: flip pairs in blocks (one gather and one ``lerp`` a block; a batch
of small images is one block), and, for large samples in place, the partner cycles one sample
at a time (:func:`_walk_cycles`) — the only Python loop over samples, taken where a sample's
memory traffic dwarfs the loop's few microseconds.
"""
from __future__ import annotations

import threading
from typing import NamedTuple, Optional

import torch

from .layout import Layout

# Elements per chunk: a chunk and its partner rows (2 x 4 MiB in float32) stay in L3.
CHUNK_ELEMENTS = 1 << 20


_scratch_cache = threading.local()


def _scratch(numel: int, dtype: torch.dtype, device: torch.device, slot: str) -> torch.Tensor:
    """A reusable 1-d buffer of at least ``numel`` elements, one per thread, slot, dtype and device.

    The chunk buffers are a few MiB: allocated fresh on every call they come back as new pages,
    and faulting those in cost more than the blend itself on small batches (0.8 ms at 3 MiB).
    """
    key = (slot, dtype, device)
    cache = _scratch_cache.__dict__.setdefault("buffers", {})
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype, device=device)
        if device.type == "cpu":   # off the CPU the caching allocator already reuses memory
            cache[key] = buf
    return buf[:numel]


class PlanTensors(NamedTuple):
    """The plan as the ops see it: plain tensors, the only thing the two backends share."""

    partner: torch.Tensor       # (B,) int64
    walk: torch.Tensor          # (B,) int32, or empty: cycles as a table (kernels only)
    cycle_start: torch.Tensor   # (B + 1,) int32, or empty
    lam_self: torch.Tensor      # (B,) float32
    lam_partner: torch.Tensor   # (B,) float32
    box: torch.Tensor           # (B, N, 4) int32
    fill: Optional[torch.Tensor]        # (B, 1 | C) float32
    noise_seed: Optional[torch.Tensor]  # (1,) int64


def _is_blended(dtype: torch.dtype) -> bool:
    """Floats and uint8 images are blended; other integer tensors (masks) are only copied or filled."""
    return dtype.is_floating_point or dtype == torch.uint8


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _store(target: torch.Tensor, val: torch.Tensor, clamp: bool = False,
           int16_buffer: Optional[torch.Tensor] = None) -> None:
    """Write a blend computed in float (``val``, overwritten) into ``target`` of a narrower dtype.

    uint8 rounds half to even, and clamps to [0, 255] when ``clamp`` (weights that are not
    convex). On CPU a uint8 target goes through an int16 buffer: ``val`` holds integers in
    [0, 255] by then, so both steps are exact, and float32 -> uint8 is a slow scalar loop in
    aten (117 us for 3x224x224 in torch 2.13, 230 us in 2.14) where float32 -> int16 -> uint8
    takes 31 us."""
    if target.dtype == torch.uint8:
        val.round_()
        if clamp:
            val.clamp_(0, 255)
    if target.dtype == torch.uint8 and target.device.type == "cpu" and val.dtype != torch.uint8:
        staged = (int16_buffer if int16_buffer is not None and int16_buffer.shape == val.shape else
                  _scratch(val.numel(), torch.int16, val.device, "narrow")[:val.numel()].view(val.shape))
        target.copy_(staged.copy_(val))
    else:
        target.copy_(val)


def _view4(x: torch.Tensor, lay: Layout) -> torch.Tensor:
    return x.as_strided((lay.batch, lay.planes, lay.rows, lay.lanes),
                        (lay.stride_batch, lay.stride_plane, lay.stride_row, 1), x.storage_offset())


def _gather_rows(own: torch.Tensor, partner: torch.Tensor, lay: Layout, scratch: torch.Tensor) -> torch.Tensor:
    """``own[partner]`` for a ``(B, P, rows, lanes)`` chunk (``partner``: any row indices), written
    into (a prefix of) ``scratch``.

    Whole rows of a dense plane are gathered as one lane run, which lets ``index_select`` copy
    with ``memcpy`` instead of element by element (4-5x faster on CPU). Reusing one scratch
    buffer per call avoids fresh pages (and their faults) for every chunk.
    """
    shape = (partner.numel(),) + tuple(own.shape[1:])
    out = scratch[:shape[0] * own[0].numel()]
    if own.shape[-1] == lay.lanes and lay.stride_row == lay.lanes:
        merged = own.reshape(own.shape[0], own.shape[1], -1)   # a view: rows are contiguous
        return torch.index_select(merged, 0, partner, out=out.view(shape[:2] + (-1,))).view(shape)
    return torch.index_select(own, 0, partner, out=out.view(shape))


class _Facts(NamedTuple):
    """What the host may know of a plan without a device sync (all of it on CPU, none elsewhere)."""

    extent: tuple[int, int, int, int]   # rows [y0, y1) and lanes [x0, x1) any region touches
    row_uniform: bool                   # every region is the whole extent or empty
    has_partner: bool                   # some row draws from its partner
    lerp: str                           # "partner": a + b == 1 everywhere; "fill": a + c == 1; else ""
    convex: bool                        # every partner weight is in [0, 1] (uint8 results need no clamp)


def _facts(t: PlanTensors, lay: Layout, x: torch.Tensor, full_extent: bool, whole_rows: bool, boxes) -> _Facts:
    """What :class:`_Facts` says of this plan; ``boxes`` are its :func:`_clipped_boxes` (None with
    ``whole_rows``)."""
    whole = (0, lay.rows, 0, lay.lanes)
    if x.device.type != "cpu":
        return _Facts(whole, whole_rows, True, "", False)
    a, b = t.lam_self.double(), t.lam_partner.double()
    convex = ((b >= 0) & (b <= 1)).all().long()
    if whole_rows:  # every region is the whole sample or empty: only the weights need a look
        exact, convex = torch.stack([(a + b == 1).all().long(), convex]).tolist()
        return _Facts(whole, True, True, "partner" if exact else "", bool(convex))
    y0, y1, x0, x1 = (v[..., 0] for v in boxes)   # (B, N) each
    live = (y0 < y1) & (x0 < x1)
    row_live = live.any(1)
    y0_ext = torch.where(live, y0, lay.rows).amin()
    y1_ext = torch.where(live, y1, 0).amax()
    x0_ext = torch.where(live, x0, lay.lanes).amin()
    x1_ext = torch.where(live, x1, 0).amax()
    covers = (y0[:, 0] == y0_ext) & (y1[:, 0] == y1_ext) & (x0[:, 0] == x0_ext) & (x1[:, 0] == x1_ext)
    idle = ~row_live
    # one host read for everything (free on CPU): nothing here touches pixels
    facts = torch.stack([
        y0_ext, y1_ext, x0_ext, x1_ext, row_live.any().long(), (covers | idle).all().long(),
        ((b != 0) & row_live & (t.partner != torch.arange(lay.batch))).any().long(),
        ((a + b == 1) | idle).all().long(), ((b == 0) | idle).all().long(), convex]).tolist()
    extent = whole if full_extent else tuple(facts[:4]) if facts[4] else (0, 0, 0, 0)
    # rows are uniform over the walked extent only if each live box *is* that extent (out of
    # place walks the whole sample, so one shared box is not enough there)
    row_uniform = t.box.shape[1] == 1 and bool(facts[5]) and (not full_extent or tuple(facts[:4]) == whole
                                                               or not facts[4])
    has_fill = t.fill is not None or t.noise_seed is not None
    lerp = "partner" if facts[7] else ("fill" if has_fill and facts[8] else "")
    return _Facts(extent, row_uniform, bool(facts[6]), lerp, bool(facts[9]))


def _live_rows(t: PlanTensors, boxes) -> torch.Tensor:
    """``(B,)`` bool: which samples have a non-empty region. With ``boxes`` None (whole rows) a
    region is the whole sample or nothing, and the first coordinate pair of the box says which."""
    if boxes is None:
        return (t.box[:, :, 0] < t.box[:, :, 1]).any(1)
    y0, y1, x0, x1 = boxes
    return ((y0 < y1) & (x0 < x1)).any(1).view(-1)


def _clipped_boxes(box: torch.Tensor, lay: Layout):
    """Boxes clipped to the tensor, in row and lane units: four ``(B, N, 1)`` tensors."""
    y0 = box[..., 0].clamp(0, lay.rows).long()
    y1 = box[..., 1].clamp(0, lay.rows).long()
    x0 = box[..., 2].clamp(0, lay.width).long() * lay.lane_scale
    x1 = box[..., 3].clamp(0, lay.width).long() * lay.lane_scale
    return y0[..., None], y1[..., None], x0[..., None], x1[..., None]


def _region(boxes, rows: torch.Tensor, lanes: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """``(B, 1, rows, lanes)`` 0/1 of ``dtype``: which elements of a chunk lie in their sample's region."""
    y0, y1, x0, x1 = boxes
    row_in = ((rows >= y0) & (rows < y1)).to(dtype)          # (B, N, rows)
    lane_in = ((lanes >= x0) & (lanes < x1)).to(dtype)       # (B, N, lanes)
    inside = row_in[..., :, None] * lane_in[..., None, :]   # (B, N, rows, lanes)
    return (inside[:, :1] if inside.shape[1] == 1 else inside.amax(1, keepdim=True))


def _chunks(lay: Layout, extent):
    """Row ranges (or lane ranges when a sample is one long row) of about CHUNK_ELEMENTS."""
    y0, y1, x0, x1 = extent
    if y0 >= y1 or x0 >= x1:
        return
    per_row = lay.batch * lay.planes * (x1 - x0)
    if lay.rows > 1 or per_row <= CHUNK_ELEMENTS:
        step = max(1, CHUNK_ELEMENTS // max(per_row, 1))
        for r in range(y0, y1, step):
            yield r, min(r + step, y1), x0, x1
    else:
        step = max(1, CHUNK_ELEMENTS // (lay.batch * lay.planes))
        for c in range(x0, x1, step):
            yield y0, y1, c, min(c + step, x1)


def _fill(t: PlanTensors, lay: Layout, rows: torch.Tensor, lanes: torch.Tensor, region: torch.Tensor,
          dtype) -> torch.Tensor:
    """The fill of each element of a chunk, broadcastable to ``(B, P, rows, lanes)``."""
    if t.noise_seed is not None:
        # noise only where it lands: Philox costs ~100 tensor ops per element drawn
        shape = (lay.batch, lay.planes, rows.numel(), lanes.numel())
        where = region.expand(shape) != 0
        out = torch.zeros(shape, dtype=dtype, device=rows.device)
        counters = noise_counter(lay, rows, lanes).expand(shape)[where]
        out[where] = normal_from_counter(t.noise_seed.reshape(()), counters).to(dtype)
        return out
    fill = t.fill.to(dtype)
    if fill.shape[1] == 1:
        return fill[:, :, None, None]
    if lay.channel_in_lane:
        return fill[:, lanes % lay.channels][:, None, None, :]
    channel = torch.arange(lay.planes, device=fill.device) // lay.planes_per_channel
    return fill[:, channel][:, :, None, None]


def _apply(src: torch.Tensor, dst: torch.Tensor, lay: Layout, t: PlanTensors, full_extent: bool,
           whole_rows: bool = False, pairing: str = "perm") -> None:
    """Write the blend of ``src`` into ``dst`` chunk by chunk (``dst`` may be ``src``).

    Inside a sample's region ``val = a * own + b * other + c * fill`` (c = 1 - a - b), outside
    it ``own``. Each chunk's partner rows are gathered before the chunk is written, which makes
    any permutation safe in place. Where the host can see the plan (CPU tensors) the common
    cases take one fused pass: ``lerp(own, other, b)`` when ``a + b == 1`` (Mixup, CutMix) and
    ``lerp(own, fill, c)`` when ``b == 0`` (Cutout, Erasing); ``lerp`` returns its end points
    exactly, so copies and fills stay bit-exact. Weights are per row when every region covers
    the chunk, else per element.
    """
    boxes = None if whole_rows else _clipped_boxes(t.box, lay)
    facts = _facts(t, lay, src, full_extent, whole_rows, boxes)
    # partner blends (a + b == 1, nothing filled) have two faster walks where the plan is readable
    if (facts.lerp == "partner" and facts.has_partner and _is_blended(src.dtype) and t.fill is None
            and t.noise_seed is None):
        per_sample = _extent_numel(lay, facts)
        if (dst is src and t.box.shape[1] == 1 and per_sample >= WALK_ELEMENTS
                and _walk_cycles(src, lay, t, boxes, facts.convex)):
            return
        blocks = _pair_blocks(lay.batch, per_sample) if pairing == "flip" else []
        if len(blocks) > 1:   # a batch that fits one block is one chunk of the general path, in fewer ops
            _apply_flip_pairs(src, dst, lay, t, facts, boxes, blocks)
            return
    sv, dv = _view4(src, lay), _view4(dst, lay)
    device = src.device
    blended = _is_blended(src.dtype)
    cdt = _compute_dtype(src.dtype) if blended else torch.float32
    shape = (lay.batch, 1, 1, 1)
    has_fill = t.fill is not None or t.noise_seed is not None
    # only the weights this plan's formula uses (each is a few small ops: they add up on small batches)
    need_a = facts.lerp == "" or not blended
    need_b = facts.lerp != "fill" and facts.has_partner
    need_c = has_fill
    a = t.lam_self.view(shape).to(cdt) if need_a else None
    b = t.lam_partner.view(shape).to(cdt) if need_b else None
    c = (1.0 - t.lam_self - t.lam_partner).view(shape).to(cdt) if need_c else None
    if facts.row_uniform:
        live = _live_rows(t, boxes).view(shape).to(cdt)
        row_weights = (1.0 + live * (a - 1.0) if need_a else None, live * b if need_b else None,
                       live * c if need_c else None)
    chunks = list(_chunks(lay, facts.extent))
    largest = max(((r1 - r0) * (l1 - l0) for r0, r1, l0, l1 in chunks), default=0) * lay.batch * lay.planes
    gathered = _scratch(largest if facts.has_partner else 0, src.dtype, device, "gathered")
    staged = _scratch(largest if blended and src.dtype != cdt else 0, cdt, device, "staged")
    for r0, r1, l0, l1 in chunks:
        region_needed = not facts.row_uniform or has_fill
        rows = torch.arange(r0, r1, device=device) if region_needed else None
        lanes = torch.arange(l0, l1, device=device) if region_needed else None
        own = sv[:, :, r0:r1, l0:l1]
        out = dv[:, :, r0:r1, l0:l1]
        other = _gather_rows(own, t.partner, lay, gathered) if facts.has_partner else None  # before any write
        if facts.row_uniform:
            weight_a, weight_b, weight_c = row_weights
            region = None
        else:  # per-element weights: only the maps this chunk's formula uses
            region = _region(boxes, rows, lanes, cdt)
            weight_a = 1.0 + region * (a - 1.0) if need_a else None
            weight_b = region * b if need_b else None
            weight_c = region * c if need_c else None
        if not blended:
            _select(own, out, other, weight_a, weight_b, t)
            continue
        if src.dtype == cdt:
            if dst is not src:
                out.copy_(own)
            val = out
        else:
            val = staged[:own.numel()].view(own.shape).copy_(own)
        if other is not None and other.dtype != cdt:   # 16-bit and uint8: widen into a reused buffer
            other = _scratch(other.numel(), cdt, device, "other_staged").view(other.shape).copy_(other)
        fill = None
        if has_fill:
            if region is None:
                region = (weight_c != 0).to(cdt).expand(lay.batch, 1, r1 - r0, l1 - l0)
                weight_c = weight_c.expand_as(region)
            fill = _fill(t, lay, rows, lanes, region, cdt)
        if facts.lerp == "partner":
            if other is not None:
                val.lerp_(other, weight_b)
        elif facts.lerp == "fill":
            val.lerp_(fill.expand_as(val), weight_c)
        else:
            val.mul_(weight_a)
            if other is not None:
                val.addcmul_(other, weight_b)
            if fill is not None:
                val.addcmul_(fill, weight_c)
        if val is not out:   # a convex blend of 0..255 stays in range
            _store(out, val, clamp=facts.lerp != "partner" or not facts.convex)


# Elements of one pair block (both halves): a block, its gathered partners and their float32
# staging stay in L2/L3. Samples of WALK_ELEMENTS or more go one pair per block out of place,
# and in place are walked along the partner cycles one sample at a time (_walk_cycles).
PAIR_BLOCK_ELEMENTS = 1 << 19
WALK_ELEMENTS = 1 << 16


def _extent_numel(lay: Layout, facts: _Facts) -> int:
    y0, y1, x0, x1 = facts.extent
    return lay.planes * max(y1 - y0, 0) * max(x1 - x0, 0)


def _pair_blocks(batch: int, per_sample: int):
    """Blocks of flip pairs, each ``(i, k)``: samples ``i..i+k`` and their partners
    ``B-i-k..B-i``, about PAIR_BLOCK_ELEMENTS each; a batch that fits twice over is one block."""
    half = batch // 2
    if half == 0:
        return []
    if per_sample >= WALK_ELEMENTS:
        k = 1
    elif batch * per_sample <= 2 * PAIR_BLOCK_ELEMENTS:
        k = half
    else:
        k = max(1, PAIR_BLOCK_ELEMENTS // (2 * per_sample))
    return [(i, min(k, half - i)) for i in range(0, half, k)]


def _apply_flip_pairs(src: torch.Tensor, dst: torch.Tensor, lay: Layout, t: PlanTensors, facts: _Facts,
                      boxes, blocks) -> None:
    """Flip pairing (``partner[i] = B-1-i``) with ``a + b == 1``: Mixup and CutMix, every mode.

    Sample ``i`` and its partner ``j = B-1-i`` only read each other, so the batch is walked in
    blocks of pairs: samples ``i..i+k`` and ``j-k+1..j`` are one strided view ``(2, k, ...)``,
    their partners are gathered into a cached buffer with one ``index_select``, and one ``lerp``
    writes the block: two ops per block, and a batch of small images is one block. Each image
    is read from memory once and written once; the general path gathers into a separate pass.
    (Large samples in place take :func:`_walk_cycles` instead, before this is reached.)
    The middle sample of an odd batch is its own partner; ``lerp(x, x, w) == x``, so it is left.
    Results are the general path's, bit for bit (same ``lerp`` on the same weights).
    """
    y0, y1, x0, x1 = facts.extent
    rows, lanes = y1 - y0, x1 - x0
    per_sample = _extent_numel(lay, facts)
    order = []
    for i, k in blocks:   # block order: samples i..i+k, then B-i-k..B-i
        order.extend(range(i, i + k))
        order.extend(range(lay.batch - i - k, lay.batch - i))
    device = src.device
    order = torch.tensor(order, device=device)
    partners = (lay.batch - 1) - order
    cdt = _compute_dtype(src.dtype)
    b = t.lam_partner.to(cdt).index_select(0, order)
    if facts.row_uniform:
        weights = (b * _live_rows(t, boxes).index_select(0, order).to(cdt)).view(-1, 1, 1, 1)
        boxes = None
    else:
        boxes = tuple(v.index_select(0, order) for v in boxes)
        row_index = torch.arange(y0, y1, device=device)
        lane_index = torch.arange(x0, x1, device=device)
        b = b.view(-1, 1, 1, 1)
    largest = 2 * max(k for _, k in blocks) * per_sample
    gathered = _scratch(largest, src.dtype, device, "gathered")
    staged = _scratch(largest if src.dtype != cdt else 0, cdt, device, "staged")
    other_staged = _scratch(largest if src.dtype != cdt else 0, cdt, device, "other_staged")
    sample_shape = (lay.planes, rows, lanes)
    sample_strides = (lay.stride_plane, lay.stride_row, 1)
    own_all = _view4(src, lay)[:, :, y0:y1, x0:x1]
    start = 0
    for i, k in blocks:
        n = 2 * k
        gap = (lay.batch - 2 * i - k) * lay.stride_batch
        size = (2, k) + sample_shape
        strides = (gap, lay.stride_batch) + sample_strides
        offset = i * lay.stride_batch + y0 * lay.stride_row + x0
        own = src.as_strided(size, strides, src.storage_offset() + offset)
        out = own if dst is src else dst.as_strided(size, strides, dst.storage_offset() + offset)
        if boxes is None:
            weight = weights[start:start + n].view(2, k, 1, 1, 1)
        else:
            block_boxes = tuple(v[start:start + n] for v in boxes)
            weight = (_region(block_boxes, row_index, lane_index, cdt) * b[start:start + n]).view(2, k, 1, rows, lanes)
        other = _gather_rows(own_all, partners[start:start + n], lay, gathered).view(size)
        start += n
        if src.dtype == cdt:
            if out is own:
                own.lerp_(other, weight)
            else:
                torch.lerp(own, other, weight, out=out)
            continue
        val = staged[:own.numel()].view(size).copy_(own)
        val.lerp_(other_staged[:other.numel()].view(size).copy_(other), weight)
        _store(out, val, clamp=not facts.convex)
    if dst is not src and lay.batch % 2:   # out of place, the middle sample is copied
        mid = lay.batch // 2
        _view4(dst, lay)[mid].copy_(_view4(src, lay)[mid])


def _cycles_on_host(partner: list[int]) -> Optional[list[list[int]]]:
    """The cycles ``[s, partner[s], partner[partner[s]], ...]`` of a permutation; None if it is not one."""
    if sorted(partner) != list(range(len(partner))):
        return None
    seen = [False] * len(partner)
    cycles = []
    for start in range(len(partner)):
        cycle = []
        k = start
        while not seen[k]:
            seen[k] = True
            cycle.append(k)
            k = partner[k]
        if len(cycle) > 1:   # a sample that is its own partner keeps its values
            cycles.append(cycle)
    return cycles


def _walk_cycles(x: torch.Tensor, lay: Layout, t: PlanTensors, boxes, convex: bool) -> bool:
    """Large samples in place, one at a time along the partner cycles; False if ``partner`` is
    not a permutation (then nothing was written).

    Walking a cycle ``s -> partner[s] -> ...``, each sample ``k`` is blended as
    ``x[k][box_k].lerp_(x[partner[k]][box_k], b_k)`` while its partner is still unwritten; only
    the last sample reads a saved copy of ``s``'s box. One op a sample (timm's flip pairs: save,
    lerp, lerp), each reading its partner from memory while writing itself, and the next sample
    is the partner just read, still in cache: at 3x224x224 float32 1.5x one ``x.mul_(1)`` pass
    against 1.75x for gather-then-lerp (``benchmarks/cpu_floor.py``). Only boxes are touched:
    the weights, boxes and partners are read to the host once (free on CPU) and become Python
    scalars and views, so no per-pixel weight map is built. 16-bit and uint8 boxes are widened
    into float32 buffers, blended, rounded half to even (uint8; clamped unless every weight is
    convex) and narrowed back, a widened partner box reused as the next sample's own where the
    two boxes coincide. Same ``lerp``, same weights: the general path's results bit for bit.
    """
    cycles = _cycles_on_host(t.partner.tolist())
    if cycles is None:
        return False
    cdt = _compute_dtype(x.dtype)
    narrow = x.dtype != cdt
    if boxes is None:   # whole samples: a region is all of it or nothing
        live = _live_rows(t, None).long()
        y0, y1, x0, x1 = torch.zeros_like(live), live * lay.rows, torch.zeros_like(live), live * lay.lanes
    else:
        y0, y1, x0, x1 = (v[:, 0, 0] for v in boxes)
    weights = t.lam_partner.to(cdt).tolist()
    spans = torch.stack([y0, y1, x0, x1], 1).tolist()   # ints
    base = x.storage_offset()
    samples = _view4(x, lay).unbind(0)   # whole-sample views in one op (a Python-made view is ~5 us)
    whole = [0, lay.rows, 0, lay.lanes]
    whole_shape = (lay.planes, lay.rows, lay.lanes)
    slots = ("walk_saved", "walk_a", "walk_b") if narrow else ("walk_saved",)
    buffers = {slot: _scratch(lay.sample_numel, cdt, x.device, slot) for slot in slots}
    whole_buffers = {slot: buf.view(whole_shape) for slot, buf in buffers.items()}
    int16_whole = (_scratch(lay.sample_numel, torch.int16, x.device, "narrow").view(whole_shape)
                   if x.dtype == torch.uint8 else None)

    def region(sample: int, span) -> torch.Tensor:
        if span == whole:
            return samples[sample]
        y0, y1, x0, x1 = span
        return x.as_strided((lay.planes, y1 - y0, x1 - x0), (lay.stride_plane, lay.stride_row, 1),
                            base + sample * lay.stride_batch + y0 * lay.stride_row + x0)

    def staged(slot: str, like: torch.Tensor) -> torch.Tensor:
        """A ``cdt`` buffer shaped like ``like``, holding a copy of it (widened for narrow dtypes)."""
        if like.numel() == lay.sample_numel:
            return whole_buffers[slot].copy_(like)
        return buffers[slot][:like.numel()].view(like.shape).copy_(like)

    def live(k: int) -> bool:
        y0, y1, x0, x1 = spans[k]
        return weights[k] != 0 and y0 < y1 and x0 < x1

    for cycle in cycles:
        last = cycle[-1]
        saved = staged("walk_saved", region(cycle[0], spans[last])) if live(last) else None
        ahead = None   # narrow dtypes: (sample, span, widened box) read as a partner, still unwritten
        free = ["walk_a", "walk_b"]
        for step, k in enumerate(cycle):
            if not live(k):
                ahead = None
                continue
            span = spans[k]
            target = region(k, span)
            partner = cycle[step + 1] if step + 1 < len(cycle) else None
            if not narrow:
                target.lerp_(region(partner, span) if partner is not None else saved, weights[k])
                continue
            if ahead is not None and ahead[0] == k and ahead[1] == span:
                own, own_slot = ahead[2], ahead[3]
            else:
                own_slot = free[0]
                own = staged(own_slot, target)
            other_slot = "walk_b" if own_slot == "walk_a" else "walk_a"
            if partner is None:
                other, ahead = saved, None
            else:
                other = staged(other_slot, region(partner, span))
                ahead = (partner, span, other, other_slot)
            _store(target, own.lerp_(other, weights[k]), clamp=not convex, int16_buffer=int16_whole)
            free = [own_slot]
    return True


def _select(own, out, other, weight_a, weight_b, t) -> None:
    """Integer masks: inside a region copy the partner (b != 0), keep (a != 0) or fill; exact."""
    take_other = weight_b != 0 if weight_b is not None else torch.zeros((), dtype=torch.bool, device=own.device)
    keep = weight_a != 0
    fill = t.fill[:, :1].to(own.dtype).view(-1, 1, 1, 1) if t.fill is not None else own
    src_other = other if other is not None else own
    out.copy_(torch.where(take_other, src_other, torch.where(keep, own, fill)))


def blend_(x: torch.Tensor, lay: Layout, t: PlanTensors, whole_rows: bool = False, pairing: str = "perm") -> None:
    """Apply the plan to ``x`` in place. ``x`` is described by ``lay`` (see :mod:`fastmix.layout`);
    ``whole_rows`` promises every region is a whole sample or empty (plans without boxes)."""
    if lay.batch == 0 or lay.sample_numel == 0:
        return
    _apply(x, x, lay, t, full_extent=False, whole_rows=whole_rows, pairing=pairing)


def blend(x: torch.Tensor, lay: Layout, t: PlanTensors, whole_rows: bool = False, pairing: str = "perm") -> torch.Tensor:
    """Out-of-place blend: a new tensor (same layout as ``x``); ``x`` is not modified."""
    out = torch.empty_like(x)
    if lay.batch == 0 or lay.sample_numel == 0:
        return out
    _apply(x, out, lay, t, full_extent=True, whole_rows=whole_rows, pairing=pairing)
    return out


def blend_grad(grad: torch.Tensor, lay: Layout, t: PlanTensors, whole_rows: bool = False,
               pairing: str = "perm") -> torch.Tensor:
    """Gradient of :func:`blend` w.r.t. ``x`` (the transpose: each row gathers from the rows that drew from it).

    ``dx[j] = g[j] * (a_j inside j's region, 1 outside) + sum_{i: partner[i] = j} b_i * g[i] (inside i's region)``.
    ``pairing`` only keeps the backends' signatures alike: ``index_add_`` takes any permutation.
    """
    out = torch.empty_like(grad)
    if lay.batch == 0 or lay.sample_numel == 0:
        return out
    gv, ov = _view4(grad, lay), _view4(out, lay)
    boxes = _clipped_boxes(t.box, lay)
    shape = (lay.batch, 1, 1, 1)
    a, b = t.lam_self.view(shape), t.lam_partner.view(shape)
    a, b = a.to(grad.dtype), b.to(grad.dtype)
    for r0, r1, l0, l1 in _chunks(lay, (0, lay.rows, 0, lay.lanes)):
        region = _region(boxes, torch.arange(r0, r1, device=grad.device), torch.arange(l0, l1, device=grad.device),
                         grad.dtype)
        g = gv[:, :, r0:r1, l0:l1]
        own = g * (1.0 + region * (a - 1.0))
        ov[:, :, r0:r1, l0:l1] = own.index_add_(0, t.partner, g * (region * b))
    return out


# --------------------------------------------------------------------------------------------
# noise: Philox4x32-10 as Triton's tl.randint4x computes it, so both backends draw the same fill
# --------------------------------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF


def _philox(seed: int | torch.Tensor, counter: torch.Tensor, rounds: int = 10):
    """Philox4x32 with key = seed (lo, hi) and counter = (lo, hi, 0, 0); uint32 values held in int64.

    Products of two uint32 values wrap in int64 to exactly their low 64 bits, which is all the
    ``mulhi``/``mullo`` pair needs.
    """
    seed = torch.as_tensor(seed, dtype=torch.int64, device=counter.device)
    k0 = seed & _MASK32
    k1 = (seed >> 32) & _MASK32
    c0 = counter & _MASK32
    c1 = (counter >> 32) & _MASK32
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    for _ in range(rounds):
        p0 = 0xD2511F53 * c0
        p2 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (((p2 >> 32) & _MASK32) ^ c1 ^ k0, p2 & _MASK32,
                          ((p0 >> 32) & _MASK32) ^ c3 ^ k1, p0 & _MASK32)
        k0 = (k0 + 0x9E3779B9) & _MASK32
        k1 = (k1 + 0xBB67AE85) & _MASK32
    return c0, c1, c2, c3


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float`` for 32 random bits held in int64: a float32 in [0, 1)."""
    signed = torch.where(bits >= 2**31, bits - 2**32, bits)
    signed = torch.where(signed < 0, -signed - 1, signed)
    return signed.to(torch.float32) * torch.tensor(4.6566127342e-10, dtype=torch.float32)


_COS_COEFFS = (-1.1470745597729725e-11, 2.08767569878681e-09, -2.755731922398589e-07, 2.48015873015873e-05,
               -0.001388888888888889, 0.041666666666666664, -0.5, 1.0)


def cos_2pi(u: torch.Tensor) -> torch.Tensor:
    """cos(2*pi*u) for float32 u in [0, 1), by the kernel's polynomial (kernels/blend.py: _cos_2pi)."""
    r = (u - torch.floor(u + 0.5)).abs()
    flip = r > 0.25
    x = 6.283185307179586 * torch.where(flip, 0.5 - r, r)
    x2 = x * x
    p = torch.full_like(x2, _COS_COEFFS[0])
    for coeff in _COS_COEFFS[1:]:
        p = p * x2 + coeff
    return torch.where(flip, -p, p)


def normal_from_counter(seed, counter: torch.Tensor) -> torch.Tensor:
    """N(0, 1) float32 by Box-Muller from the first two Philox words at ``counter``."""
    r0, r1, _, _ = _philox(seed, counter)
    u1 = uniform_from_bits(r0).clamp_min(1.0e-7)
    u2 = uniform_from_bits(r1)
    return torch.sqrt(-2.0 * torch.log(u1)) * cos_2pi(u2)


def noise_counter(lay: Layout, rows: torch.Tensor, lanes: torch.Tensor) -> torch.Tensor:
    """``(B, P, rows, lanes)`` int64 counters: sample * numel + the element's NC(T)HW logical index."""
    device = rows.device
    sample = torch.arange(lay.batch, device=device).view(-1, 1, 1, 1) * lay.sample_numel
    plane = torch.arange(lay.planes, device=device).view(1, -1, 1, 1)
    r = rows.view(1, 1, -1, 1)
    lane = lanes.view(1, 1, 1, -1)
    if lay.channel_in_lane:
        width = lay.width
        logical = (((lane % lay.channels) * lay.planes + plane) * lay.rows + r) * width + lane // lay.channels
    else:
        logical = (plane * lay.rows + r) * lay.lanes + lane
    return sample + logical


# --------------------------------------------------------------------------------------------
# soft targets
# --------------------------------------------------------------------------------------------

def mix_targets(labels: torch.Tensor, partner: torch.Tensor, label_lam: torch.Tensor, num_classes: int,
                smoothing: float, checked: bool = False) -> torch.Tensor:
    """``label_lam * s(y) + (1 - label_lam) * s(y[partner])`` as ``(B, K)`` float32.

    ``s`` smooths with timm's values (off = smoothing / K, on = 1 - smoothing + off); soft
    ``(B, K)`` labels are smoothed as ``y * (1 - smoothing) + off``. A class index outside
    ``[0, K)`` is never used as an address: its row (and any row drawing from it with a
    non-zero weight) comes out NaN. ``checked`` says the indices were validated already.
    """
    off = smoothing / num_classes
    lam = label_lam.float()
    other = 1.0 - lam
    if labels.dim() == 1:
        # off + (on - off) * (lam * onehot(y) + other * onehot(y[partner])): two scatters, no (B, K) where
        safe = (labels if checked else labels.clamp(0, max(num_classes - 1, 0)))[:, None]
        out = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
        out.scatter_add_(1, safe, ((1.0 - smoothing) * lam)[:, None])
        out.scatter_add_(1, safe.index_select(0, partner), ((1.0 - smoothing) * other)[:, None])
        if not checked:
            valid = (labels >= 0) & (labels < num_classes)
            bad = ~valid | (~valid.index_select(0, partner) & (other != 0))
            if labels.device.type != "cpu" or bool(bad.any()):   # a host read only where it is free
                out.masked_fill_(bad[:, None], float("nan"))
        return out
    target = labels.float() * (1.0 - smoothing) + off
    mixed = target * lam[:, None]
    sent = target.index_select(0, partner).mul_(other[:, None])
    return mixed.add_(sent.masked_fill_((other == 0)[:, None], 0.0))
