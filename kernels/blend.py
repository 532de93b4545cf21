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
table (``walk``, ``cycle_start``) from ``fastmix.plan.cycles_of``. The sample layout (planes x
rows x unit-stride lanes) is ``fastmix/layout.py``'s; the reference is ``fastmix/reference.py``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import noise
from .walk import WALK_FLIP, WALK_ROLL, WALK_TABLE, WALKS, cycle, gated, load_split, region, tile, walk_row

# fill modes (constexpr globals: the kernels read them; the launchers pass their .value)
NO_FILL, CONST_FILL, NOISE_FILL = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
MAX_GRID_Y = 65535


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------

@triton.jit
def _round_half_even(v):
    """Nearest integer, ties to even (torch.round's rule), for float32 0 <= v < 2**22: adding
    1.5 * 2**23 leaves no fraction bits, so the float32 add itself rounds to nearest even."""
    return (v + 12582912.0) - 12582912.0


@triton.jit
def _to_storage(val, dtype: tl.constexpr):
    """The float32/64 result in the storage dtype: uint8 rounds half to even and clamps;
    bfloat16 rounds to nearest even with integer arithmetic (Triton 3.6's interpreter truncates
    in its float32 -> bfloat16 cast, and one code path for the GPU and the interpreter is the point)."""
    if dtype == tl.uint8:
        return tl.minimum(tl.maximum(_round_half_even(val), 0.0), 255.0).to(tl.uint8)
    elif dtype == tl.bfloat16:
        bits = val.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return val.to(dtype)


@triton.jit
def _fill(fill_ptr, seed_ptr, row, plane, tile_rows, tile_lanes, mask, planes, rows, lanes, channels,
          planes_per_channel, sample_numel, fill_stride_batch, fill_stride_channel, FILL: tl.constexpr,
          CHANNEL_IN_LANE: tl.constexpr):
    """The fill of ``row``'s tile: its constant (per sample, or per channel) or counter-based noise
    indexed by the element's logical NC(T)HW position (``Layout.logical_index``)."""
    if FILL == NOISE_FILL:
        if CHANNEL_IN_LANE:
            logical = (((tile_lanes % channels) * planes + plane) * rows + tile_rows).to(tl.int64) \
                * (lanes // channels) + tile_lanes // channels
        else:
            logical = (plane.to(tl.int64) * rows + tile_rows) * lanes + tile_lanes
        return noise.normal(tl.load(seed_ptr), row.to(tl.int64) * sample_numel + logical)
    else:
        fill_row = fill_ptr + row * fill_stride_batch
        if CHANNEL_IN_LANE:
            return tl.load(fill_row + (tile_lanes % channels) * fill_stride_channel, mask=mask, other=0.0)
        else:
            return tl.load(fill_row + (plane // planes_per_channel) * fill_stride_channel)


@triton.jit
def _blend_terms(a, own, b, other, c, fill, cdt: tl.constexpr, FILL: tl.constexpr):
    """``a * own + b * other + c * fill`` in that order, leaving out zero-weight terms. An absent
    term adds -0.0, IEEE's exact additive identity (+0.0 would turn a copied -0.0 into +0.0), so a
    copy (``b == 1``) is exact; as ``reference._blend_terms``."""
    # -0.0 by its bits: Triton folds a literal -0.0 into the null constant, which is +0.0
    if cdt == tl.float64:
        neg_zero = tl.full((), 0x8000000000000000, tl.uint64).to(tl.float64, bitcast=True)
    else:
        neg_zero = tl.full((), 0x80000000, tl.uint32).to(tl.float32, bitcast=True)
    val = tl.where(a != 0.0, a.to(cdt) * own.to(cdt), neg_zero)
    val += tl.where(b != 0.0, b.to(cdt) * other.to(cdt), neg_zero)
    if FILL != NO_FILL:
        val += tl.where(c != 0.0, c.to(cdt) * fill.to(cdt), neg_zero)
    return val


# --------------------------------------------------------------------------------------------
# in place
# --------------------------------------------------------------------------------------------

@triton.jit
def _blend_inplace_kernel(
    x_ptr,                                   # the batch, written in place
    walk_ptr, cycle_start_ptr,               # cycle table (WALK_TABLE only)
    lam_self_ptr, lam_partner_ptr, box_ptr, fill_ptr, seed_ptr,
    # layout (fastmix/layout.py)
    batch, planes, rows, lanes, box_width, lane_scale, channels, planes_per_channel,
    stride_batch, stride_plane, stride_row, sample_numel,
    fill_stride_batch, fill_stride_channel,
    n_cycles, grid_cycles,                   # cycles to walk; programs along grid axis 1
    BOXES: tl.constexpr, FILL: tl.constexpr, WALK: tl.constexpr, WHOLE_ROWS: tl.constexpr,
    CHANNEL_IN_LANE: tl.constexpr, VEC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
):
    dtype: tl.constexpr = x_ptr.dtype.element_ty
    BLEND: tl.constexpr = dtype.is_floating() or dtype == tl.uint8    # else an integer mask: select
    cdt: tl.constexpr = tl.float64 if dtype == tl.float64 else tl.float32
    # -- map the program to a tile --
    plane, row0, lane0, tile_rows, tile_lanes, inside, offs = tile(rows, lanes, stride_plane, stride_row,
                                                                    BLOCK_R, BLOCK_L)
    for j in range(tl.program_id(1), n_cycles, grid_cycles):
        start, length = cycle(cycle_start_ptr, j, batch, WALK)
        # -- pre-walk: a tile that no region of the cycle touches has nothing to do --
        hit = length < 0
        for k in range(0, length):
            row_k = walk_row(walk_ptr, start, j, k, batch, WALK)
            for n in tl.static_range(BOXES):
                base = box_ptr + row_k * (BOXES * 4) + n * 4
                x0 = tl.minimum(tl.load(base + 2), box_width) * lane_scale      # clip before scaling: FULL * scale overflows
                x1 = tl.minimum(tl.load(base + 3), box_width) * lane_scale
                hit = hit | ((tl.load(base) < row0 + BLOCK_R) & (tl.load(base + 1) > row0)
                             & (x0 < lane0 + BLOCK_L) & (x1 > lane0) & (x0 < x1))
        if hit:
            # -- the cycle's first row stays in registers for the last step (its partner) --
            row_first = walk_row(walk_ptr, start, j, 0, batch, WALK)
            reg_first, body_first = region(box_ptr, row_first, tile_rows, tile_lanes, inside, rows, box_width,
                                            lane_scale, BOXES, VEC, WHOLE_ROWS)
            a_first = tl.load(lam_self_ptr + row_first)
            b_first = tl.load(lam_partner_ptr + row_first)
            # needed as itself (a != 0) or as the partner of the cycle's last row (b != 0)
            row_last = walk_row(walk_ptr, start, j, length - 1, batch, WALK)
            reg_last, body_last = region(box_ptr, row_last, tile_rows, tile_lanes, inside, rows, box_width,
                                          lane_scale, BOXES, VEC, WHOLE_ROWS)
            b_last = tl.load(lam_partner_ptr + row_last)
            ptr_first = x_ptr + row_first.to(tl.int64) * stride_batch + offs
            body = gated(body_first, a_first) | gated(body_last, b_last)
            if WHOLE_ROWS:
                first = tl.load(ptr_first, mask=body)
            else:
                need = gated(reg_first, a_first) | gated(reg_last, b_last)
                first = load_split(ptr_first, body, need & ~body)
            # -- walk the cycle: load the next row, blend this one, store it --
            cur, row, reg, body, a, b = first, row_first, reg_first, body_first, a_first, b_first
            for m in range(0, length):
                k_next = (m + 1) % length
                row_n = walk_row(walk_ptr, start, j, k_next, batch, WALK)
                reg_n, body_n = region(box_ptr, row_n, tile_rows, tile_lanes, inside, rows, box_width, lane_scale,
                                        BOXES, VEC, WHOLE_ROWS)
                a_n = tl.load(lam_self_ptr + row_n)
                b_n = tl.load(lam_partner_ptr + row_n)
                more = m + 1 < length
                # the next row is read once: as itself (a_n != 0) and as this row's partner (b != 0)
                ptr_n = x_ptr + row_n.to(tl.int64) * stride_batch + offs
                body_need = (gated(body_n, a_n) | gated(body, b)) & more
                if WHOLE_ROWS:
                    nxt = tl.load(ptr_n, mask=body_need)
                else:
                    need = (gated(reg_n, a_n) | gated(reg, b)) & more
                    nxt = load_split(ptr_n, body_need, need & ~body_need)
                nxt = tl.where(m + 1 == length, first, nxt)
                c = 1.0 - a - b
                if FILL != NO_FILL:
                    fill = _fill(fill_ptr, seed_ptr, row, plane, tile_rows, tile_lanes, gated(reg, c), planes, rows,
                                 lanes, channels, planes_per_channel, sample_numel, fill_stride_batch,
                                 fill_stride_channel, FILL, CHANNEL_IN_LANE)
                else:
                    fill = 0.0
                if BLEND:
                    out = tl.where(reg, _to_storage(_blend_terms(a, cur, b, nxt, c, fill, cdt, FILL), dtype), cur)
                else:
                    if FILL != NO_FILL:
                        filled = fill.to(dtype)
                    else:
                        filled = cur
                    out = tl.where(gated(reg, b), nxt, tl.where(tl.where(a == 0.0, reg, False), filled, cur))
                # -- write back: the vectorisable body, then the ragged edges --
                ptr_out = x_ptr + row.to(tl.int64) * stride_batch + offs
                tl.store(ptr_out, out, mask=body)
                if not WHOLE_ROWS:
                    tl.store(ptr_out, out, mask=reg & ~body)
                cur, row, reg, body, a, b = nxt, row_n, reg_n, body_n, a_n, b_n


# --------------------------------------------------------------------------------------------
# out of place, and the gradient
# --------------------------------------------------------------------------------------------

@triton.jit
def _blend_out_kernel(
    src_ptr, dst_ptr,
    walk_ptr, cycle_start_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, fill_ptr, seed_ptr,
    batch, planes, rows, lanes, box_width, lane_scale, channels, planes_per_channel,
    stride_batch, stride_plane, stride_row, sample_numel,
    fill_stride_batch, fill_stride_channel,
    n_cycles, grid_cycles,
    BOXES: tl.constexpr, FILL: tl.constexpr, WALK: tl.constexpr, WHOLE_ROWS: tl.constexpr,
    CHANNEL_IN_LANE: tl.constexpr, VEC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
):
    dtype: tl.constexpr = dst_ptr.dtype.element_ty
    cdt: tl.constexpr = tl.float64 if dtype == tl.float64 else tl.float32
    plane, row0, lane0, tile_rows, tile_lanes, inside, offs = tile(rows, lanes, stride_plane, stride_row,
                                                                    BLOCK_R, BLOCK_L)
    for j in range(tl.program_id(1), n_cycles, grid_cycles):
        start, length = cycle(cycle_start_ptr, j, batch, WALK)
        row = walk_row(walk_ptr, start, j, 0, batch, WALK)      # an empty table slot (length 0) is not read
        first = tl.load(src_ptr + row.to(tl.int64) * stride_batch + offs, mask=inside & (length > 0))
        cur = first
        for m in range(0, length):
            # -- every element of the row: its region blended, the rest copied --
            row_n = walk_row(walk_ptr, start, j, (m + 1) % length, batch, WALK)
            nxt = tl.load(src_ptr + row_n.to(tl.int64) * stride_batch + offs, mask=inside & (m + 1 < length))
            nxt = tl.where(m + 1 == length, first, nxt)
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
            out = tl.where(reg, _to_storage(_blend_terms(a, cur, b, nxt, c, fill, cdt, FILL), dtype), cur)
            tl.store(dst_ptr + row.to(tl.int64) * stride_batch + offs, out, mask=inside)
            cur, row = nxt, row_n


@triton.jit
def _blend_grad_kernel(
    grad_ptr, dst_ptr,
    walk_ptr, cycle_start_ptr, lam_self_ptr, lam_partner_ptr, box_ptr,
    batch, rows, lanes, box_width, lane_scale,
    stride_batch, stride_plane, stride_row,
    n_cycles, grid_cycles,
    BOXES: tl.constexpr, WALK: tl.constexpr, WHOLE_ROWS: tl.constexpr, VEC: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """``dx[row] = g[row] * (a inside / 1 outside) + b_s * g[s]`` inside the region of ``s``, the row
    that draws from ``row`` (its predecessor on the cycle: the walk goes backwards)."""
    dtype: tl.constexpr = dst_ptr.dtype.element_ty
    cdt: tl.constexpr = tl.float64 if dtype == tl.float64 else tl.float32
    plane, row0, lane0, tile_rows, tile_lanes, inside, offs = tile(rows, lanes, stride_plane, stride_row,
                                                                    BLOCK_R, BLOCK_L)
    for j in range(tl.program_id(1), n_cycles, grid_cycles):
        start, length = cycle(cycle_start_ptr, j, batch, WALK)
        row = walk_row(walk_ptr, start, j, 0, batch, WALK)
        first = tl.load(grad_ptr + row.to(tl.int64) * stride_batch + offs, mask=inside & (length > 0))
        cur = first
        for m in range(0, length):
            row_s = walk_row(walk_ptr, start, j, (length - (m + 1)) % length, batch, WALK)   # the sender
            sent = tl.load(grad_ptr + row_s.to(tl.int64) * stride_batch + offs, mask=inside & (m + 1 < length))
            sent = tl.where(m + 1 == length, first, sent)
            reg, _ = region(box_ptr, row, tile_rows, tile_lanes, inside, rows, box_width, lane_scale, BOXES, VEC,
                             WHOLE_ROWS)
            reg_s, _ = region(box_ptr, row_s, tile_rows, tile_lanes, inside, rows, box_width, lane_scale, BOXES,
                               VEC, WHOLE_ROWS)
            a = tl.load(lam_self_ptr + row)
            b_s = tl.load(lam_partner_ptr + row_s)
            own = cur.to(cdt)
            val = tl.where(reg, tl.where(a != 0.0, a.to(cdt) * own, 0.0), own)
            val += tl.where(gated(reg_s, b_s), b_s.to(cdt) * sent.to(cdt), 0.0)
            tl.store(dst_ptr + row.to(tl.int64) * stride_batch + offs, _to_storage(val, dtype), mask=inside)
            cur, row = sent, row_s


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------

def tile_shape(layout, element_size: int) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_L, num_warps): lane blocks divide the row when they can (no ragged
    128-bit accesses); tiles of about 8 KiB, rows dividing R where that keeps them >= 1024 elements."""
    target = max(256, 8192 // element_size)
    vec = max(1, 16 // element_size)
    if layout.rows == 1:
        block_l = min(triton.next_power_of_2(layout.lanes), target)
        block_r = 1
    else:
        block_l = 128
        while block_l > vec and layout.lanes % block_l:
            block_l //= 2
        if layout.lanes % block_l:
            block_l = min(128, triton.next_power_of_2(layout.lanes))
        block_r = max(1, min(triton.next_power_of_2(layout.rows), target // block_l))
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


def _walk_args(layout, args, element_size: int):
    """Grid and the walk's arguments and constexprs, shared by the three launchers."""
    block_r, block_l, num_warps = tile_shape(layout, element_size)
    walk = WALKS.get(args.pairing, WALK_TABLE.value)
    n_cycles = {WALK_FLIP.value: (layout.batch + 1) // 2, WALK_ROLL.value: 1}.get(walk, layout.batch)
    tiles = layout.planes * triton.cdiv(layout.rows, block_r) * triton.cdiv(layout.lanes, block_l)
    grid = (tiles, min(n_cycles, MAX_GRID_Y))
    meta = dict(BOXES=args.box.shape[1], WALK=walk, WHOLE_ROWS=not args.spatial, VEC=max(1, 16 // element_size),
                BLOCK_R=block_r, BLOCK_L=block_l, num_warps=num_warps)
    return grid, n_cycles, meta


def _launch_blend(kernel, src, dst, layout, args) -> None:
    grid, n_cycles, meta = _walk_args(layout, args, src.element_size())
    fill_mode, fill, seed, fill_stride_batch, fill_stride_channel = _fill_args(args, args.lam_self)
    kernel[grid](
        *((src,) if src is dst else (src, dst)), args.walk, args.cycle_start, args.lam_self, args.lam_partner,
        args.box, fill, seed,
        layout.batch, layout.planes, layout.rows, layout.lanes, layout.width, layout.lane_scale, layout.channels,
        layout.planes_per_channel, layout.stride_batch, layout.stride_plane, layout.stride_row, layout.sample_numel,
        fill_stride_batch, fill_stride_channel, n_cycles, grid[1],
        FILL=fill_mode, CHANNEL_IN_LANE=layout.channel_in_lane, **meta,
    )


def blend_(x, layout, args) -> None:
    """Apply the plan to ``x`` in place, touching only region pixels (one launch).

    ``args.pairing`` names a closed-form partner permutation ("flip", "roll", "self") or "perm"
    (then ``args.walk``/``args.cycle_start`` hold the cycles); without boxes (``args.spatial``
    False) every region is a whole sample or empty, which skips all per-pixel region tests.
    """
    if layout.batch and layout.sample_numel:
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
    grid, n_cycles, meta = _walk_args(layout, args, grad.element_size())
    _blend_grad_kernel[grid](
        grad, out, args.walk, args.cycle_start, args.lam_self, args.lam_partner, args.box,
        layout.batch, layout.rows, layout.lanes, layout.width, layout.lane_scale,
        layout.stride_batch, layout.stride_plane, layout.stride_row, n_cycles, grid[1], **meta,
    )
    return out
