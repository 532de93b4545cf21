"""The region blend as one Triton kernel: in place, out of place, and its gradient.

    inside the region of sample i:  out[i] = a_i * x[i] + b_i * x[partner[i]] + (1 - a_i - b_i) * fill_i
    outside it:                     out[i] = x[i]

One program owns one tile (a block of rows × lanes of one plane) of one *cycle* of the partner
permutation and walks the cycle row by row: it loads the next row of the cycle before it
stores the current one, and keeps the cycle's first row in registers for the last step. So
every byte is read once and written once, no row is read after it was overwritten (any
permutation, in place), and no two programs touch the same byte. In place, a tile that no
region of its cycle touches returns after a scalar pre-walk, and inside a tile only region
pixels are loaded or stored. Flip, roll and identity cycles are computed in the kernel; other
permutations come as a table (``walk``, ``cycle_start``) from ``fastmix.plan.cycles_of``.

The sample layout (planes × rows × unit-stride lanes) is described in ``fastmix/layout.py``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# fill modes
NO_FILL, CONST_FILL, NOISE_FILL = 0, 1, 2


@triton.jit
def _region(box_ptr, row, rows, lanes, R, WB, K, NB: tl.constexpr, VEC: tl.constexpr):
    """Which elements of the tile lie in the union of ``row``'s NB boxes, as two masks.

    ``whole`` is the region; ``body`` is its part whose lane bounds are rounded inwards to
    multiples of VEC. ``body`` is constant over aligned runs of VEC lanes, which is what lets
    Triton issue 128-bit accesses for it; the ragged edges (``whole & ~body``, fewer than VEC
    lanes per box row) go element by element.
    """
    whole = (rows < 0) & (lanes < 0)
    body = whole
    for n in tl.static_range(NB):
        base = box_ptr + row * (NB * 4) + n * 4
        y0 = tl.minimum(tl.maximum(tl.load(base), 0), R)
        y1 = tl.minimum(tl.maximum(tl.load(base + 1), 0), R)
        x0 = tl.minimum(tl.maximum(tl.load(base + 2), 0), WB) * K
        x1 = tl.minimum(tl.maximum(tl.load(base + 3), 0), WB) * K
        in_rows = (rows >= y0) & (rows < y1)
        whole = whole | (in_rows & (lanes >= x0) & (lanes < x1))
        body = body | (in_rows & (lanes >= tl.cdiv(x0, VEC) * VEC) & (lanes < (x1 // VEC) * VEC))
    return whole, body


@triton.jit
def _row_region(box_ptr, row, rows, lanes, inside, R, WB, K, NB: tl.constexpr, VEC: tl.constexpr,
                WHOLE_ROWS: tl.constexpr):
    """``_region`` of one row; for plans whose regions are whole samples (or empty) it is just
    ``inside`` or nothing, decided by one scalar, and costs no per-element work."""
    if WHOLE_ROWS:
        live = tl.load(box_ptr + row * (NB * 4)) < tl.load(box_ptr + row * (NB * 4) + 1)
        reg = tl.where(live, inside, False)
        return reg, reg
    else:
        return _region(box_ptr, row, rows, lanes, R, WB, K, NB, VEC)


@triton.jit
def _load_split(ptr, body, edge):
    """Load where ``body | edge`` (disjoint): ``body`` vectorises, ``edge`` goes element-wise."""
    return tl.where(body, tl.load(ptr, mask=body), tl.load(ptr, mask=edge))


@triton.jit
def _gated(mask, weight):
    """``mask`` where ``weight != 0``, else all false. (Written with where, not ``&``: Triton
    3.6's interpreter mistypes a broadcast scalar float comparison.)"""
    return tl.where(weight != 0.0, mask, False)


@triton.jit
def _to_storage(val, dtype: tl.constexpr):
    """Cast the float32/64 result to the storage dtype, rounding to nearest even.

    bfloat16 is rounded with integer arithmetic: Triton 3.6's interpreter truncates in its
    float32 -> bfloat16 cast, and one code path for the GPU and the interpreter is the point.
    """
    if dtype == tl.bfloat16:
        bits = val.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return val.to(dtype)


@triton.jit
def _round_half_even(v):
    """Nearest integer, ties to even (torch.round's rule), for float32 0 <= v < 2**22.

    Adding 1.5 * 2**23 leaves no fraction bits, so the float32 add itself rounds to nearest
    even; subtracting it back is exact. Two instructions instead of a floor-and-compare chain.
    """
    return (v + 12582912.0) - 12582912.0


@triton.jit
def _cos_2pi(u):
    """cos(2*pi*u) for u in [0, 1) by a Taylor polynomial on [0, pi/2] (error < 1e-10).

    tl.cos would call libdevice's cosf, whose large-argument reduction keeps a 28-byte array in
    local memory; this argument is never large. Same coefficients as reference.cos_2pi.
    """
    r = tl.abs(u - tl.floor(u + 0.5))            # [0, 0.5]: cos is even and 1-periodic in u
    flip = r > 0.25
    x = 6.283185307179586 * tl.where(flip, 0.5 - r, r)   # [0, pi/2]; cos(pi - x) = -cos(x)
    x2 = x * x
    p = -1.1470745597729725e-11
    p = p * x2 + 2.08767569878681e-09
    p = p * x2 - 2.755731922398589e-07
    p = p * x2 + 2.48015873015873e-05
    p = p * x2 - 0.001388888888888889
    p = p * x2 + 0.041666666666666664
    p = p * x2 - 0.5
    p = p * x2 + 1.0
    return tl.where(flip, -p, p)


@triton.jit
def _normal(seed, counter):
    """N(0, 1) by Box-Muller from the first two Philox words at ``counter`` (see reference.normal_from_counter)."""
    r0, r1, _, _ = tl.randint4x(seed, counter)
    u1 = tl.maximum(tl.random.uint_to_uniform_float(r0), 1.0e-7)
    u2 = tl.random.uint_to_uniform_float(r1)
    return tl.sqrt(-2.0 * tl.log(u1)) * _cos_2pi(u2)


@triton.jit
def _walk_row(walk_ptr, start, j, k, B, WALK: tl.constexpr):
    """Row at position ``k`` of cycle ``j``. Flip, roll and self pairings are closed forms; any
    other permutation reads its cycles from the table (``walk``, ``cycle_start``)."""
    if WALK == 1:        # flip: cycle j is (j, B-1-j); the middle of an odd batch is alone
        return tl.where(k == 0, j, B - 1 - j)
    elif WALK == 2:      # roll by one: the single cycle 0, B-1, B-2, ..., 1
        return (B - k) % B
    elif WALK == 3:      # every row its own partner
        return j + k * 0
    else:
        return tl.load(walk_ptr + start + k)


@triton.jit
def _blend_kernel(
    src_ptr, dst_ptr,                       # dst == src in place
    walk_ptr, cycle_start_ptr,              # cycle table (WALK == 0 only)
    lam_self_ptr, lam_partner_ptr, box_ptr,
    fill_ptr, seed_ptr,
    B, P, R, L, WB, K, C, PPC,              # batch, planes, rows, lanes, box width, lane scale, channels, planes/channel
    stride_b, stride_p, stride_r, fill_stride_b, fill_stride_c, numel,
    n_cycles, grid_cycles,                  # cycles to walk; programs along grid axis 1
    NB: tl.constexpr,                       # boxes per sample
    FILL: tl.constexpr,                     # NO_FILL, CONST_FILL or NOISE_FILL
    WHOLE: tl.constexpr,                    # write every element (out of place, gradient), not only regions
    TRANSPOSE: tl.constexpr,                # gradient: walk the cycles backwards, gate by the sender's region
    BLEND: tl.constexpr,                    # False for integer masks: select instead of blend
    ROUND: tl.constexpr,                    # uint8: round half to even and clamp
    CH_IN_LANE: tl.constexpr,               # channels_last: channel = lane % C
    F64: tl.constexpr,
    WALK: tl.constexpr,                     # 0 table, 1 flip, 2 roll, 3 self
    WHOLE_ROWS: tl.constexpr,               # every region is a whole sample or empty (Mixup plans)
    VEC: tl.constexpr,                      # elements per 16 bytes
    BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
):
    # one tile per program along axis 0: (plane, row block, lane block) of the whole sample
    t = tl.program_id(0)
    n_rb = tl.cdiv(R, BLOCK_R)
    n_lb = tl.cdiv(L, BLOCK_L)
    plane = t // (n_rb * n_lb)
    rem = t % (n_rb * n_lb)
    row0 = (rem // n_lb) * BLOCK_R
    lane0 = (rem % n_lb) * BLOCK_L
    rows = row0 + tl.arange(0, BLOCK_R)[:, None]
    lanes = lane0 + tl.arange(0, BLOCK_L)[None, :]
    inside = (rows < R) & (lanes < L)    # VEC-constant when L is a multiple of VEC
    offs = plane.to(tl.int64) * stride_p + rows.to(tl.int64) * stride_r + lanes
    cdt = tl.float64 if F64 else tl.float32
    out_ty = dst_ptr.dtype.element_ty
    for j in range(tl.program_id(1), n_cycles, grid_cycles):
        if WALK == 0:
            start = tl.load(cycle_start_ptr + j)
            length = tl.load(cycle_start_ptr + j + 1) - start
        else:
            start = 0
            if WALK == 1:
                length = tl.where(2 * j + 1 < B, 2, 1)
            elif WALK == 2:
                length = B + j * 0
            else:
                length = 1 + j * 0
        if WHOLE:
            hit = length > 0
        else:
            # in place, a tile no region of the cycle touches has nothing to do: a scalar pre-walk
            hit = length < 0
            for k in range(0, length):
                row_k = _walk_row(walk_ptr, start, j, k, B, WALK)
                for n in tl.static_range(NB):
                    base = box_ptr + row_k * (NB * 4) + n * 4
                    x0 = tl.minimum(tl.load(base + 2), WB) * K      # clip before scaling: FULL * K overflows
                    x1 = tl.minimum(tl.load(base + 3), WB) * K
                    hit = hit | ((tl.load(base) < row0 + BLOCK_R) & (tl.load(base + 1) > row0)
                                 & (x0 < lane0 + BLOCK_L) & (x1 > lane0) & (x0 < x1))
        if hit:
            # the first row of the cycle stays in registers for the last step (its partner)
            row_first = _walk_row(walk_ptr, start, j, 0, B, WALK)
            reg_first, body_first = _row_region(box_ptr, row_first, rows, lanes, inside, R, WB, K, NB, VEC, WHOLE_ROWS)
            a_first = tl.load(lam_self_ptr + row_first)
            b_first = tl.load(lam_partner_ptr + row_first)
            ptr_first = src_ptr + row_first.to(tl.int64) * stride_b + offs
            if WHOLE:
                first = tl.load(ptr_first, mask=inside)
            else:
                # needed as itself (a != 0) or as the partner of the cycle's last row (b != 0);
                # in place is never the (backwards-walking) gradient, so the last row is w[L-1]
                row_last = _walk_row(walk_ptr, start, j, length - 1, B, WALK)
                reg_last, body_last = _row_region(box_ptr, row_last, rows, lanes, inside, R, WB, K, NB, VEC, WHOLE_ROWS)
                b_last = tl.load(lam_partner_ptr + row_last)
                body = _gated(body_first, a_first) | _gated(body_last, b_last)
                if WHOLE_ROWS:
                    first = tl.load(ptr_first, mask=body)
                else:
                    need = _gated(reg_first, a_first) | _gated(reg_last, b_last)
                    first = _load_split(ptr_first, body, need & ~body)

            cur, row, reg, body, a, b = first, row_first, reg_first, body_first, a_first, b_first
            for m in range(0, length):
                wrap = m + 1 == length
                if TRANSPOSE:
                    k_next = (length - (m + 1)) % length
                else:
                    k_next = (m + 1) % length
                row_n = _walk_row(walk_ptr, start, j, k_next, B, WALK)
                reg_n, body_n = _row_region(box_ptr, row_n, rows, lanes, inside, R, WB, K, NB, VEC, WHOLE_ROWS)
                a_n = tl.load(lam_self_ptr + row_n)
                b_n = tl.load(lam_partner_ptr + row_n)
                ptr_n = src_ptr + row_n.to(tl.int64) * stride_b + offs
                more = m + 1 < length
                if WHOLE:
                    nxt = tl.load(ptr_n, mask=inside & more)
                else:
                    # the next row is read once: as itself (a_n != 0) and as this row's partner (b != 0)
                    body_need = (_gated(body_n, a_n) | _gated(body, b)) & more
                    if WHOLE_ROWS:
                        nxt = tl.load(ptr_n, mask=body_need)
                    else:
                        need = (_gated(reg_n, a_n) | _gated(reg, b)) & more
                        nxt = _load_split(ptr_n, body_need, need & ~body_need)
                nxt = tl.where(wrap, first, nxt)

                if TRANSPOSE:
                    # dx[row] = g[row] * (a inside / 1 outside) + b_n * g[row_n] inside row_n's region
                    own = cur.to(cdt)
                    val = tl.where(reg, tl.where(a != 0.0, a.to(cdt) * own, 0.0), own)
                    val += tl.where(_gated(reg_n, b_n), b_n.to(cdt) * nxt.to(cdt), 0.0)
                    out = _to_storage(val, out_ty)
                elif BLEND:
                    val = tl.where(a != 0.0, a.to(cdt) * cur.to(cdt), 0.0)
                    val += tl.where(b != 0.0, b.to(cdt) * nxt.to(cdt), 0.0)
                    if FILL != 0:
                        c = 1.0 - a - b
                        if FILL == 1:
                            fill_row = fill_ptr + row * fill_stride_b
                            if CH_IN_LANE:
                                fill = tl.load(fill_row + (lanes % C) * fill_stride_c, mask=_gated(reg, c), other=0.0)
                            else:
                                fill = tl.load(fill_row + (plane // PPC) * fill_stride_c)
                            fill = fill.to(cdt)
                        else:
                            if CH_IN_LANE:
                                logical = (((lanes % C) * P + plane) * R + rows).to(tl.int64) * (L // C) + lanes // C
                            else:
                                logical = (plane.to(tl.int64) * R + rows) * L + lanes
                            fill = _normal(tl.load(seed_ptr), row.to(tl.int64) * numel + logical).to(cdt)
                        val += tl.where(c != 0.0, c.to(cdt) * fill, 0.0)
                    if ROUND:
                        val = tl.minimum(tl.maximum(_round_half_even(val), 0.0), 255.0)
                    out = tl.where(reg, _to_storage(val, out_ty), cur)
                else:
                    fill_v = tl.load(fill_ptr + row * fill_stride_b).to(out_ty)
                    out = tl.where(_gated(reg, b), nxt, tl.where(tl.where(a == 0.0, reg, False), fill_v, cur))
                ptr_out = dst_ptr + row.to(tl.int64) * stride_b + offs
                if WHOLE:
                    tl.store(ptr_out, out, mask=inside)
                else:
                    tl.store(ptr_out, out, mask=body)
                    if not WHOLE_ROWS:
                        tl.store(ptr_out, out, mask=reg & ~body)
                cur, row, reg, body, a, b = nxt, row_n, reg_n, body_n, a_n, b_n


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------

MAX_GRID_Y = 65535
WALKS = {"flip": 1, "roll": 2, "self": 3}   # closed-form cycles; anything else reads the table



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


def _fill_args(t, like):
    """(mode, fill tensor, seed tensor, fill row stride, fill channel stride); unused ones point at ``like``."""
    if t.noise_seed is not None:
        return NOISE_FILL, like, t.noise_seed, 0, 0
    if t.fill is not None:
        return CONST_FILL, t.fill, like, t.fill.stride(0), 0 if t.fill.shape[1] == 1 else t.fill.stride(1)
    return NO_FILL, like, like, 0, 0


def _launch(src, dst, layout, t, pairing: str, whole: bool, transpose: bool, whole_rows: bool) -> None:
    if layout.batch == 0 or layout.sample_numel == 0:
        return
    dtype = src.dtype
    block_r, block_l, num_warps = tile_shape(layout, src.element_size())
    fill_mode, fill, seed, fill_stride_b, fill_stride_c = (
        (NO_FILL, t.lam_self, t.lam_self, 0, 0) if transpose else _fill_args(t, t.lam_self))
    tiles = layout.planes * triton.cdiv(layout.rows, block_r) * triton.cdiv(layout.lanes, block_l)
    walk = WALKS.get(pairing, 0)
    n_cycles = {1: (layout.batch + 1) // 2, 2: 1}.get(walk, layout.batch)
    grid = (tiles, min(n_cycles, MAX_GRID_Y))
    blended = dtype.is_floating_point or dtype == torch.uint8
    _blend_kernel[grid](
        src, dst, t.walk, t.cycle_start, t.lam_self, t.lam_partner, t.box, fill, seed,
        layout.batch, layout.planes, layout.rows, layout.lanes, layout.width, layout.lane_scale,
        layout.channels, layout.planes_per_channel,
        layout.stride_batch, layout.stride_plane, layout.stride_row, fill_stride_b, fill_stride_c, layout.sample_numel,
        n_cycles, grid[1],
        NB=t.box.shape[1], FILL=fill_mode, WHOLE=whole, TRANSPOSE=transpose, BLEND=blended,
        ROUND=dtype == torch.uint8, CH_IN_LANE=layout.channel_in_lane, F64=dtype == torch.float64,
        WALK=walk, WHOLE_ROWS=whole_rows, VEC=max(1, 16 // src.element_size()),
        BLOCK_R=block_r, BLOCK_L=block_l, num_warps=num_warps,
    )


def blend_(x, layout, t, pairing: str, whole_rows: bool = False) -> None:
    """Apply plan tensors ``t`` to ``x`` in place, touching only region pixels (one launch).

    ``pairing`` names a closed-form partner permutation ("flip", "roll", "self") or "perm"
    (then ``t.walk``/``t.cycle_start`` hold the cycles); ``whole_rows`` promises that every
    region is a whole sample or empty (Mixup plans), which skips all per-pixel region tests.
    """
    _launch(x, x, layout, t, pairing, whole=False, transpose=False, whole_rows=whole_rows)


def blend(x, layout, t, pairing: str, whole_rows: bool = False):
    """Out of place: a new tensor with ``x``'s layout, every element written (one launch)."""
    out = torch.empty_like(x)
    _launch(x, out, layout, t, pairing, whole=True, transpose=False, whole_rows=whole_rows)
    return out


def blend_backward(grad, layout, t, pairing: str, whole_rows: bool = False):
    """Gradient of :func:`blend` w.r.t. ``x``: the transposed blend, out of place (one launch)."""
    out = torch.empty_like(grad)
    _launch(grad, out, layout, t, pairing, whole=True, transpose=True, whole_rows=whole_rows)
    return out
