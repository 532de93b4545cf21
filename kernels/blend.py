"""The region blend as Triton kernels, one per role: in place, out of place, and the gradient.

    inside the region of sample i:  out[i] = a_i * x[i] + b_i * x[partner[i]] + (1 - a_i - b_i) * fill_i
    outside it:                     out[i] = x[i]

Every kernel walks the partner permutation's cycles. One program owns one tile (a block of rows
x lanes of one plane, the same in every sample) of one cycle and walks the cycle row by row: it
loads the next row of the cycle before it stores the current one, and keeps the cycle's first
row in registers for the last step. So every byte is read once and written once, no row is read
after it was overwritten (any permutation, in place), and no two programs touch the same byte.

- ``_blend_inplace_kernel`` touches only region pixels; a tile that no region of its cycle
  touches returns after a scalar pre-walk. Integer masks are selected, never blended (decided by
  the storage dtype).
- ``_blend_out_kernel`` writes every element of a new tensor.
- ``_blend_grad_kernel`` walks the cycles backwards: each row gathers from the row that drew
  from it (the transpose of the blend).

Flip, roll and identity cycles are closed forms (``WALK_FLIP``...); other permutations come as a
table (``walk``, ``Cycles.segments``) from ``fastmix.plan``. The sample layout (planes x
rows x unit-stride lanes) is ``fastmix/layout.py``'s; the reference is ``fastmix/reference.py``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import Bound, dense
from .values import CONST_FILL, NO_FILL, NOISE_FILL, _blend_terms, _fill, _masked, _to_storage
from .walk import (SEGMENT, ceil_div, pow2_at_least, WALK_TABLE, WALKS, dense_offsets, gated, handoff_slots, load_split, region, segment,
                   segment_count, tile, walk_row)

MAX_GRID_Y = 65535


# --------------------------------------------------------------------------------------------
# in place
# --------------------------------------------------------------------------------------------

@triton.jit
def _blend_inplace_kernel(
    x_ptr,                                   # the batch, written in place
    walk_ptr, seg_ptr,                       # cycles in walk order and their segments (WALK_TABLE only)
    lam_self_ptr, lam_partner_ptr, box_ptr, fill_ptr, seed_ptr, mask_ptr,
    scratch_ptr, counter_ptr,                # hand-offs between segments of one cycle
    # layout (fastmix/layout.py)
    batch, planes, rows, lanes, box_width, lane_scale, channels, planes_per_channel,
    stride_batch, stride_plane, stride_row, sample_numel,
    fill_stride_batch, fill_stride_channel,
    n_segments, grid_segments, reverse,      # segments to walk; programs along grid axis 1; walk order
    BOXES: tl.constexpr, FILL: tl.constexpr, WALK: tl.constexpr, WHOLE_ROWS: tl.constexpr,
    CHANNEL_IN_LANE: tl.constexpr, MASKED: tl.constexpr, VEC: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """In place, one segment of a cycle a program: each row blends with the next, which is loaded
    before the row is stored. A segment of a longer cycle also *hands off*: its first row is read
    by another segment (the one before it on the cycle), so it keeps that row's result in
    registers, writes it to its scratch row, and arrives at the pair's counter; the reader arrives
    after its last load. Whoever arrives second writes the row in place (the owner from registers,
    the reader from the scratch), so the row is never overwritten before it was read. Counters
    gain two a launch and are never reset: an odd count means "the other one has arrived"."""
    dtype: tl.constexpr = x_ptr.dtype.element_ty
    BLEND: tl.constexpr = dtype.is_floating() or dtype == tl.uint8    # else an integer mask: select
    cdt: tl.constexpr = tl.float64 if dtype == tl.float64 else tl.float32
    # -- map the program to a tile --
    plane, row0, lane0, tile_rows, tile_lanes, inside, offs = tile(rows, lanes, stride_plane, stride_row,
                                                                    BLOCK_R, BLOCK_L)
    for step in range(tl.program_id(1), n_segments, grid_segments):
        j = tl.where(reverse != 0, n_segments - 1 - step, step)
        start, length, nxt_pos, after, slot = segment(seg_ptr, j, batch, WALK)
        handoff = after != j
        # -- pre-walk: a tile that no region of the segment touches has nothing to do --
        hit = length < 0
        for k in range(0, length):
            row_k = walk_row(walk_ptr, j, start + k, batch, WALK)
            for n in tl.static_range(BOXES):
                base = box_ptr + row_k * (BOXES * 4) + n * 4
                x0 = tl.minimum(tl.load(base + 2), box_width) * lane_scale      # clip before scaling: FULL * scale overflows
                x1 = tl.minimum(tl.load(base + 3), box_width) * lane_scale
                hit = hit | ((tl.load(base) < row0 + BLOCK_R) & (tl.load(base + 1) > row0)
                             & (x0 < lane0 + BLOCK_L) & (x1 > lane0) & (x0 < x1))
        row_first = walk_row(walk_ptr, j, start, batch, WALK)
        reg_first = inside & False
        body_first = reg_first
        out_first = tl.zeros([BLOCK_R, BLOCK_L], dtype)
        if hit:
            reg_first, body_first = region(box_ptr, row_first, tile_rows, tile_lanes, inside, rows, box_width,
                                           lane_scale, BOXES, VEC, WHOLE_ROWS)
            a_first = tl.load(lam_self_ptr + row_first)
            b_first = tl.load(lam_partner_ptr + row_first)
            # needed as itself (a != 0, or any a with a mask: rho < 1 keeps a share of the row) or,
            # when the segment is its whole cycle, as the partner of the last row (b != 0); a
            # handed-off first row is read by its reader itself
            a_first_need = tl.where(MASKED, 1.0, a_first)
            row_last = walk_row(walk_ptr, j, start + length - 1, batch, WALK)
            reg_last, body_last = region(box_ptr, row_last, tile_rows, tile_lanes, inside, rows, box_width,
                                         lane_scale, BOXES, VEC, WHOLE_ROWS)
            b_last = tl.where(handoff, 0.0, tl.load(lam_partner_ptr + row_last))
            ptr_first = x_ptr + row_first.to(tl.int64) * stride_batch + offs
            body = gated(body_first, a_first_need) | gated(body_last, b_last)
            if WHOLE_ROWS:
                first = tl.load(ptr_first, mask=body)
            else:
                need = gated(reg_first, a_first_need) | gated(reg_last, b_last)
                first = load_split(ptr_first, body, need & ~body)
            # -- walk the segment: load the next row, blend this one, store it --
            cur, row, reg, body, a, b = first, row_first, reg_first, body_first, a_first, b_first
            for m in range(0, length):
                own_next = m + 1 < length
                position = tl.where(own_next, start + m + 1, tl.where(handoff, nxt_pos, start))
                row_n = walk_row(walk_ptr, j, position, batch, WALK)
                reg_n, body_n = region(box_ptr, row_n, tile_rows, tile_lanes, inside, rows, box_width, lane_scale,
                                       BOXES, VEC, WHOLE_ROWS)
                a_n = tl.load(lam_self_ptr + row_n)
                b_n = tl.load(lam_partner_ptr + row_n)
                # the next row is read once: as itself (a_n != 0, when it is this segment's) and as
                # this row's partner (b != 0); the whole cycle's wrap reads the first row's registers
                from_memory = own_next | handoff
                a_own = tl.where(own_next, tl.where(MASKED, 1.0, a_n), 0.0)
                ptr_n = x_ptr + row_n.to(tl.int64) * stride_batch + offs
                body_need = (gated(body_n, a_own) | gated(body, b)) & from_memory
                if WHOLE_ROWS:
                    nxt = tl.load(ptr_n, mask=body_need)
                else:
                    need = (gated(reg_n, a_own) | gated(reg, b)) & from_memory
                    nxt = load_split(ptr_n, body_need, need & ~body_need)
                nxt = tl.where(from_memory, nxt, first)
                c = 1.0 - a - b
                if FILL != NO_FILL:
                    fill = _fill(fill_ptr, seed_ptr, row, plane, tile_rows, tile_lanes, gated(reg, c), planes, rows,
                                 lanes, channels, planes_per_channel, sample_numel, fill_stride_batch,
                                 fill_stride_channel, FILL, CHANNEL_IN_LANE)
                else:
                    fill = 0.0
                live, wa, wb, wc = _masked(mask_ptr, row, tile_rows, tile_lanes, reg, rows, box_width, lane_scale,
                                           a, b, c, BLEND, MASKED)
                if BLEND:
                    out = tl.where(live, _to_storage(_blend_terms(wa, cur, wb, nxt, wc, fill, cdt, FILL), dtype), cur)
                else:
                    if FILL != NO_FILL:
                        filled = fill.to(dtype)
                    else:
                        filled = cur
                    out = tl.where(gated(live, wb), nxt, tl.where(tl.where(wa == 0.0, live, False), filled, cur))
                # -- write back: the vectorisable body, then the ragged edges (a handed-off first
                #    row waits in registers) --
                keep = (m > 0) | ~handoff
                out_first = tl.where(m == 0, out, out_first)
                ptr_out = x_ptr + row.to(tl.int64) * stride_batch + offs
                tl.store(ptr_out, out, mask=body & keep)
                if not WHOLE_ROWS:
                    tl.store(ptr_out, out, mask=reg & ~body & keep)
                cur, row, reg, body, a, b = nxt, row_n, reg_n, body_n, a_n, b_n
        # -- hand-offs: every program of a longer cycle's segment arrives, work or not --
        # the segment's scalars again, rather than kept live through the walk (ptxas spills them)
        j = tl.where(reverse != 0, n_segments - 1 - step, step)
        start, length, nxt_pos, after, slot = segment(seg_ptr, j, batch, WALK)
        if after != j:
            row_first = walk_row(walk_ptr, j, start, batch, WALK)
            scratch_offs = dense_offsets(plane, tile_rows, tile_lanes, rows, lanes)
            counters = counter_ptr + tl.program_id(0)
            tl.store(scratch_ptr + slot.to(tl.int64) * sample_numel + scratch_offs, out_first, mask=reg_first)
            tl.debug_barrier()                                        # this tile's loads and stores are done
            mine = tl.atomic_add(counters + slot * tl.num_programs(0), 1, sem="acq_rel")
            if mine % 2 == 1:                                         # the reader has read the original
                tl.store(x_ptr + row_first.to(tl.int64) * stride_batch + offs, out_first, mask=reg_first)
            if WALK == WALK_TABLE:
                reader_slot = tl.load(seg_ptr + 3 * (batch + 1) + after)
            else:
                reader_slot = after
            reader_slot = tl.minimum(tl.maximum(reader_slot, 0), 2 * tl.cdiv(batch, SEGMENT))
            theirs = tl.atomic_add(counters + reader_slot * tl.num_programs(0), 1, sem="acq_rel")
            if theirs % 2 == 1:                                       # the owner has left its result
                row_after = walk_row(walk_ptr, j, nxt_pos, batch, WALK)
                reg_after, _ = region(box_ptr, row_after, tile_rows, tile_lanes, inside, rows, box_width,
                                      lane_scale, BOXES, VEC, WHOLE_ROWS)
                handed = tl.load(scratch_ptr + reader_slot.to(tl.int64) * sample_numel + scratch_offs,
                                 mask=reg_after, cache_modifier=".cg")
                tl.store(x_ptr + row_after.to(tl.int64) * stride_batch + offs, handed, mask=reg_after)


# --------------------------------------------------------------------------------------------
# out of place, and the gradient
# --------------------------------------------------------------------------------------------

@triton.jit
def _blend_out_kernel(
    src_ptr, dst_ptr,
    walk_ptr, seg_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, fill_ptr, seed_ptr, mask_ptr,
    batch, planes, rows, lanes, box_width, lane_scale, channels, planes_per_channel,
    stride_batch, stride_plane, stride_row, sample_numel,
    fill_stride_batch, fill_stride_channel,
    n_segments, grid_segments,
    BOXES: tl.constexpr, FILL: tl.constexpr, WALK: tl.constexpr, WHOLE_ROWS: tl.constexpr,
    CHANNEL_IN_LANE: tl.constexpr, MASKED: tl.constexpr, VEC: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Out of place, one segment a program: every element of each row written, its region blended
    with the next row (read from the unchanged source, so segments need no hand-off)."""
    dtype: tl.constexpr = dst_ptr.dtype.element_ty
    cdt: tl.constexpr = tl.float64 if dtype == tl.float64 else tl.float32
    plane, row0, lane0, tile_rows, tile_lanes, inside, offs = tile(rows, lanes, stride_plane, stride_row,
                                                                    BLOCK_R, BLOCK_L)
    for j in range(tl.program_id(1), n_segments, grid_segments):
        start, length, nxt_pos, after, unused_slot = segment(seg_ptr, j, batch, WALK)
        row = walk_row(walk_ptr, j, start, batch, WALK)
        cur = tl.load(src_ptr + row.to(tl.int64) * stride_batch + offs, mask=inside & (length > 0))
        for m in range(0, length):
            position = tl.where(m + 1 < length, start + m + 1, tl.where(after != j, nxt_pos, start))
            row_n = walk_row(walk_ptr, j, position, batch, WALK)
            nxt = tl.load(src_ptr + row_n.to(tl.int64) * stride_batch + offs, mask=inside)
            reg, _ = region(box_ptr, row, tile_rows, tile_lanes, inside, rows, box_width, lane_scale, BOXES, VEC,
                            WHOLE_ROWS)
            a = tl.load(lam_self_ptr + row)
            b = tl.load(lam_partner_ptr + row)
            c = 1.0 - a - b
            if FILL != NO_FILL:
                fill = _fill(fill_ptr, seed_ptr, row, plane, tile_rows, tile_lanes, gated(reg, c), planes, rows,
                             lanes, channels, planes_per_channel, sample_numel, fill_stride_batch, fill_stride_channel,
                             FILL, CHANNEL_IN_LANE)
            else:
                fill = 0.0
            live, wa, wb, wc = _masked(mask_ptr, row, tile_rows, tile_lanes, reg, rows, box_width, lane_scale,
                                       a, b, c, True, MASKED)
            out = tl.where(live, _to_storage(_blend_terms(wa, cur, wb, nxt, wc, fill, cdt, FILL), dtype), cur)
            tl.store(dst_ptr + row.to(tl.int64) * stride_batch + offs, out, mask=inside)
            cur, row = nxt, row_n


@triton.jit
def _blend_grad_kernel(
    grad_ptr, dst_ptr,
    walk_ptr, seg_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, mask_ptr,
    batch, rows, lanes, box_width, lane_scale,
    stride_batch, stride_plane, stride_row,
    n_segments, grid_segments,
    BOXES: tl.constexpr, WALK: tl.constexpr, WHOLE_ROWS: tl.constexpr, MASKED: tl.constexpr, VEC: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """``dx[p] = g[p] * (a_p inside p's region, 1 outside) + b_r * g[r]`` inside the region of
    ``r``, the row whose partner is ``p``: walking a segment forwards, each step finishes the next
    row's gradient from this row's (every row is exactly one row's next)."""
    dtype: tl.constexpr = dst_ptr.dtype.element_ty
    cdt: tl.constexpr = tl.float64 if dtype == tl.float64 else tl.float32
    plane, row0, lane0, tile_rows, tile_lanes, inside, offs = tile(rows, lanes, stride_plane, stride_row,
                                                                    BLOCK_R, BLOCK_L)
    for j in range(tl.program_id(1), n_segments, grid_segments):
        start, length, nxt_pos, after, unused_slot = segment(seg_ptr, j, batch, WALK)
        row = walk_row(walk_ptr, j, start, batch, WALK)
        cur = tl.load(grad_ptr + row.to(tl.int64) * stride_batch + offs, mask=inside & (length > 0))
        for m in range(0, length):
            position = tl.where(m + 1 < length, start + m + 1, tl.where(after != j, nxt_pos, start))
            row_n = walk_row(walk_ptr, j, position, batch, WALK)
            nxt = tl.load(grad_ptr + row_n.to(tl.int64) * stride_batch + offs, mask=inside)
            reg, _ = region(box_ptr, row, tile_rows, tile_lanes, inside, rows, box_width, lane_scale, BOXES, VEC,
                            WHOLE_ROWS)
            reg_n, _ = region(box_ptr, row_n, tile_rows, tile_lanes, inside, rows, box_width, lane_scale, BOXES,
                              VEC, WHOLE_ROWS)
            live_n, wa_n, _, _ = _masked(mask_ptr, row_n, tile_rows, tile_lanes, reg_n, rows, box_width, lane_scale,
                                         tl.load(lam_self_ptr + row_n), 0.0, 0.0, True, MASKED)
            live, _, wb, _ = _masked(mask_ptr, row, tile_rows, tile_lanes, reg, rows, box_width, lane_scale,
                                     0.0, tl.load(lam_partner_ptr + row), 0.0, True, MASKED)
            own = nxt.to(cdt)
            val = tl.where(live_n, tl.where(wa_n != 0.0, wa_n.to(cdt) * own, 0.0), own)
            val += tl.where(gated(live, wb), wb.to(cdt) * cur.to(cdt), 0.0)
            tl.store(dst_ptr + row_n.to(tl.int64) * stride_batch + offs, _to_storage(val, dtype), mask=inside)
            cur, row = nxt, row_n


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------

def tile_shape(layout, element_size: int) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_L, num_warps): lane blocks divide the row when they can (no ragged
    128-bit accesses); tiles of about 8 KiB, rows dividing R where that keeps them >= 1024 elements."""
    target = max(256, 8192 // element_size)
    vec = max(1, 16 // element_size)
    if layout.rows == 1:
        block_l = min(pow2_at_least(layout.lanes), target)
        block_r = 1
    else:
        block_l = 128
        while block_l > vec and layout.lanes % block_l:
            block_l //= 2
        if layout.lanes % block_l:
            block_l = min(128, pow2_at_least(layout.lanes))
        block_r = max(1, min(pow2_at_least(layout.rows), target // block_l))
        while block_r > 1 and layout.rows % block_r and block_r * block_l > 1024:
            block_r //= 2
    # 8 elements per thread (16 for uint8: one 128-bit access), enough bytes in flight without
    # the register pressure of more (16 per thread spilled for bfloat16 on sm_80)
    per_thread = max(8, vec)
    num_warps = max(1, min(8, block_r * block_l // (32 * per_thread)))
    return block_r, block_l, num_warps


def _fill_args(args, like):
    """(mode, fill tensor, seed tensor, fill row stride, fill channel stride); unused ones point at ``like``."""
    if args.noise_seed is not None:
        return NOISE_FILL.value, like, args.noise_seed, 0, 0
    if args.fill is not None:
        return (CONST_FILL.value, args.fill, like, args.fill.stride(0),
                0 if args.fill.shape[1] == 1 else args.fill.stride(1))
    return NO_FILL.value, like, like, 0, 0


# walk the segments in reverse order (tests: under the interpreter, programs run one after the
# other, so this is how the owner-arrives-first side of a hand-off is exercised)
REVERSE_SEGMENTS = False
_counters: dict = {}


def _handoff_buffers(x, layout, walk: int, tiles: int):
    """(scratch, counters) for the hand-offs: scratch rows are allocated per call (the caching
    allocator: no launch); counters persist per device and stream, zeroed once, because every
    launch leaves each counter two higher (even) and never needs them reset."""
    slots = handoff_slots(walk, layout.batch)
    if slots == 0:
        return x, _no_counters(x.device)
    if layout.sample_numel >= 2**31:
        raise ValueError(f"x: samples of {layout.sample_numel} elements (2**31 or more) are not supported in place "
                         f"with this pairing")
    scratch = torch.empty(slots * layout.sample_numel, dtype=x.dtype, device=x.device)
    stream = torch.cuda.current_stream(x.device).stream_id if x.device.type == "cuda" else 0
    key = (x.device, stream)
    needed = slots * tiles
    counters = _counters.get(key)
    if counters is None or counters.numel() < needed:
        counters = _counters[key] = torch.zeros(max(needed, 2 * (0 if counters is None else counters.numel())),
                                                dtype=torch.int32, device=x.device)
    return scratch, counters


def _no_counters(device):
    key = (device, "none")
    if key not in _counters:
        _counters[key] = torch.zeros(1, dtype=torch.int32, device=device)
    return _counters[key]


def _walk_args(layout, args, element_size: int):
    """Grid and the walk's arguments and constexprs, shared by the three launchers."""
    block_r, block_l, num_warps = tile_shape(layout, element_size)
    walk = WALKS.get(args.pairing, WALK_TABLE.value)
    n_segments = segment_count(walk, layout.batch)
    tiles = layout.planes * ceil_div(layout.rows, block_r) * ceil_div(layout.lanes, block_l)
    grid = (tiles, min(n_segments, MAX_GRID_Y))
    meta = dict(BOXES=args.box.shape[1], WALK=walk, WHOLE_ROWS=not args.spatial, VEC=max(1, 16 // element_size),
                BLOCK_R=block_r, BLOCK_L=block_l, num_warps=num_warps)
    return grid, n_segments, meta


# (kernel, layout, dtype, the plan's structure) -> (bound launch, walk, tiles): what a launch of
# that signature needs is derived once; a training loop's later steps only gather their tensors
_prepared: dict = {}


def _prepare(kernel, layout, dtype, element_size: int, args, fill):
    fill_mode, fill_stride_batch, fill_stride_channel = fill
    key = (kernel, layout, dtype, args.pairing, args.box.shape[1], args.spatial, fill, args.mask is not None,
           REVERSE_SEGMENTS)
    prepared = _prepared.get(key)
    if prepared is None:
        grid, n_segments, meta = _walk_args(layout, args, element_size)
        in_place = kernel is _blend_inplace_kernel
        scalars = (layout.batch, layout.planes, layout.rows, layout.lanes, layout.width, layout.lane_scale,
                   layout.channels, layout.planes_per_channel, layout.stride_batch, layout.stride_plane,
                   layout.stride_row, layout.sample_numel, fill_stride_batch, fill_stride_channel, n_segments,
                   grid[1]) + ((int(REVERSE_SEGMENTS),) if in_place else ())
        tensors = 11 if in_place else 10
        bound = Bound(kernel, grid, tensors, scalars, dict(FILL=fill_mode, CHANNEL_IN_LANE=layout.channel_in_lane,
                                                           MASKED=args.mask is not None, **meta))
        if len(_prepared) >= 64:
            _prepared.clear()
        prepared = _prepared[key] = (bound, meta["WALK"], grid[0], handoff_slots(meta["WALK"], layout.batch) > 0)
    return prepared


_NO_FILL_ARGS = (NO_FILL.value, 0, 0)


def _launch_blend(kernel, src, dst, layout, args) -> None:
    lam_self, lam_partner, box = args.lam_self, args.lam_partner, args.box
    if args.fill is None and args.noise_seed is None:
        fill = seed = lam_self                  # unused by the kernel: any tensor of the plan
        fill_facts = _NO_FILL_ARGS
    else:
        fill_mode, fill, seed, fill_stride_batch, fill_stride_channel = _fill_args(args, lam_self)
        fill_facts = (fill_mode, fill_stride_batch, fill_stride_channel)
    bound, walk, tiles, handoff = _prepare(kernel, layout, src.dtype, src.element_size(), args, fill_facts)
    if not (lam_self.is_contiguous() and lam_partner.is_contiguous() and box.is_contiguous()):
        lam_self, lam_partner, box = dense(lam_self), dense(lam_partner), dense(box)
    plan = (args.walk, args.segments, lam_self, lam_partner, box, fill, seed,
            dense(args.mask) if args.mask is not None else lam_self)
    if src is dst:   # segments of long cycles hand rows over through scratch rows and counters
        bound(src, *plan, *(_handoff_buffers(src, layout, walk, tiles) if handoff else (src, _no_counters(src.device))))
    else:
        bound(src, dst, *plan)


def blend_(x, layout, args) -> None:
    """Apply the plan to ``x`` in place, touching only region pixels (one launch).

    ``args.pairing`` names a closed-form partner permutation ("flip", "roll", "self") or "perm"
    (then ``args.walk``/``args.segments`` hold the cycles); without boxes (``args.spatial``
    False) every region is a whole sample or empty, which skips all per-pixel region tests.
    """
    if layout.batch * layout.planes * layout.rows * layout.lanes:     # not empty
        _launch_blend(_blend_inplace_kernel, x, x, layout, args)


def blend(x, layout, args):
    """Out of place: a new tensor with ``x``'s layout, every element written (one launch)."""
    out = torch.empty_like(x)
    if layout.batch and layout.sample_numel:
        _launch_blend(_blend_out_kernel, x, out, layout, args)
    return out


def blend_grad(grad, layout, args):
    """Gradient of :func:`blend` w.r.t. ``x``: the transposed blend, out of place (one launch)."""
    out = torch.empty_like(grad)
    if not (layout.batch and layout.sample_numel):
        return out
    key = (_blend_grad_kernel, layout, grad.dtype, args.pairing, args.box.shape[1], args.spatial, args.mask is not None)
    prepared = _prepared.get(key)
    if prepared is None:
        grid, n_segments, meta = _walk_args(layout, args, grad.element_size())
        scalars = (layout.batch, layout.rows, layout.lanes, layout.width, layout.lane_scale, layout.stride_batch,
                   layout.stride_plane, layout.stride_row, n_segments, grid[1])
        prepared = _prepared[key] = (Bound(_blend_grad_kernel, grid, 8, scalars, dict(MASKED=args.mask is not None,
                                                                                     **meta)),)
    prepared[0](grad, out, args.walk, args.segments, dense(args.lam_self), dense(args.lam_partner), dense(args.box),
          dense(args.mask) if args.mask is not None else args.lam_self)
    return out
