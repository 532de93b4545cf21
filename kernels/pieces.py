"""A piece plan (``fastmix/pieces.py``: RICAP, DirichletMixup, ResizeMix) as one out-of-place pass.

One program owns one tile (a block of rows x lanes of one plane) of one output sample. For every
piece of that sample whose destination box meets the tile (a scalar test: pieces elsewhere cost
nothing), it maps each covered pixel into the piece's source box (a translation, or a nearest /
bilinear resize), loads just the source elements with a non-zero weight, and accumulates
``weight * value``; pixels no piece covers load their own value. Each output element is stored
once, and no source element is loaded that the result does not depend on (bilinear edges whose
two taps coincide load one). Every index read from the plan is clamped into its tensor before it
is used as an address, so no plan, however built, makes the pass touch memory outside ``x`` and
the output. The specification is ``fastmix.pieces.apply_pieces_reference``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .blend import MAX_GRID_Y
from .launch import Bound, dense
from .values import _to_storage
from .walk import ceil_div, gated, pow2_at_least, tile


@triton.jit
def _clamp(v, lo, hi):
    return tl.minimum(tl.maximum(v, lo), hi)


@triton.jit
def _nearest(d, start, length_in, length_out, limit):
    """Source index of destination offsets ``d``: ``start + floor(d * in / out)`` in exact int32
    arithmetic (the launcher keeps sides below ``MAX_SIDE``, so ``d * in`` fits; a 64-bit
    division would be a call with a stack frame)."""
    return _clamp(start + (d * length_in) // tl.maximum(length_out, 1), 0, limit - 1)


@triton.jit
def _bilinear(d, start, length_in, length_out, limit):
    """``(i0, i1, l0, l1)``: ``F.interpolate``'s bilinear taps (``align_corners=False``); where the
    two taps coincide (the far edge) it is one tap of weight 1."""
    scale = tl.div_rn(length_in.to(tl.float32), tl.maximum(length_out, 1).to(tl.float32))
    s = tl.maximum((d.to(tl.float32) + 0.5) * scale - 0.5, 0.0)
    i0f = tl.floor(s)
    l1 = s - i0f
    i0 = i0f.to(tl.int32)
    one = i0 + 1 >= length_in
    l1 = tl.where(one, 0.0, l1)
    l0 = tl.where(one, 1.0, 1.0 - l1)
    i1 = tl.minimum(i0 + 1, length_in - 1)
    return _clamp(start + i0, 0, limit - 1), _clamp(start + i1, 0, limit - 1), l0, l1


@triton.jit
def _term(w, v, neg_zero, cdt: tl.constexpr):
    return tl.where(w != 0.0, w.to(cdt) * v.to(cdt), neg_zero)


@triton.jit
def _pieces_kernel(
    src_ptr, dst_ptr,                        # the batch (read) and the output (written once)
    row_ptr, weight_ptr, dbox_ptr, sbox_ptr,  # the plan: (B, S) rows and weights, (B, S, 4) boxes
    batch, rows, lanes, width, lane_scale,
    s_stride_batch, s_stride_plane, s_stride_row,
    d_stride_batch, d_stride_plane, d_stride_row,
    grid_samples,
    PIECES: tl.constexpr, BILINEAR: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """Grid: (tiles of a sample, samples); axis 1 strides over the batch when it exceeds the grid."""
    dtype: tl.constexpr = dst_ptr.dtype.element_ty
    cdt: tl.constexpr = tl.float64 if dtype == tl.float64 else tl.float32
    # the tile's offsets are computed where they are used, not kept live through the pieces
    plane, row0, lane0, r, ln, inside, unused_offs = tile(rows, lanes, s_stride_plane, s_stride_row, BLOCK_R,
                                                          BLOCK_L)
    col = ln // lane_scale
    chan = ln % lane_scale
    s_plane = plane.to(tl.int64) * s_stride_plane
    # -0.0 by its bits (Triton folds a literal -0.0 into +0.0): the sum's start, so a copy is exact
    if cdt == tl.float64:
        neg_zero = tl.full((), 0x8000000000000000, tl.uint64).to(tl.float64, bitcast=True)
    else:
        neg_zero = tl.full((), 0x80000000, tl.uint32).to(tl.float32, bitcast=True)
    zero64 = tl.full((), 0, tl.int64)
    for step in range(tl.program_id(1), batch, grid_samples):
        i = zero64 + step                                     # int64: row * stride stays exact
        if cdt == tl.float64:
            acc = tl.full([BLOCK_R, BLOCK_L], 0x8000000000000000, tl.uint64).to(tl.float64, bitcast=True)
        else:
            acc = tl.full([BLOCK_R, BLOCK_L], 0x80000000, tl.uint32).to(tl.float32, bitcast=True)
        covered = inside & False
        for j in tl.static_range(PIECES):
            piece = i * PIECES + j
            box = dbox_ptr + piece * 4
            dy0 = _clamp(tl.load(box), 0, rows)
            dy1 = _clamp(tl.load(box + 1), dy0, rows)
            dx0 = _clamp(tl.load(box + 2), 0, width)
            dx1 = _clamp(tl.load(box + 3), dx0, width)
            hit = (dy0 < row0 + BLOCK_R) & (dy1 > row0) & (dx0 * lane_scale < lane0 + BLOCK_L) \
                & (dx1 * lane_scale > lane0) & (dy0 < dy1) & (dx0 < dx1)
            if hit:
                sbox = sbox_ptr + piece * 4
                sy0 = _clamp(tl.load(sbox), 0, rows)
                sy1 = _clamp(tl.load(sbox + 1), sy0, rows)
                sx0 = _clamp(tl.load(sbox + 2), 0, width)
                sx1 = _clamp(tl.load(sbox + 3), sx0, width)
                w = tl.load(weight_ptr + piece)
                src_row = _clamp(tl.load(row_ptr + piece), 0, batch - 1)
                base = src_ptr + src_row * s_stride_batch + s_plane
                cov = inside & (r >= dy0) & (r < dy1) & (col >= dx0) & (col < dx1)
                covered = covered | cov
                need = gated(cov, w)
                if BILINEAR:
                    y0, y1, ly0, ly1 = _bilinear(r - dy0, sy0, sy1 - sy0, dy1 - dy0, rows)
                    x0, x1, lx0, lx1 = _bilinear(col - dx0, sx0, sx1 - sx0, dx1 - dx0, width)
                    ry0 = y0.to(tl.int64) * s_stride_row
                    ry1 = y1.to(tl.int64) * s_stride_row
                    cx0 = x0 * lane_scale + chan
                    cx1 = x1 * lane_scale + chan
                    top_need = need & (ly0 != 0.0)
                    bot_need = need & (ly1 != 0.0)
                    v00 = tl.load(base + ry0 + cx0, mask=top_need & (lx0 != 0.0), other=0.0)
                    v01 = tl.load(base + ry0 + cx1, mask=top_need & (lx1 != 0.0), other=0.0)
                    v10 = tl.load(base + ry1 + cx0, mask=bot_need & (lx0 != 0.0), other=0.0)
                    v11 = tl.load(base + ry1 + cx1, mask=bot_need & (lx1 != 0.0), other=0.0)
                    top = _term(lx0, v00, neg_zero, cdt) + _term(lx1, v01, neg_zero, cdt)
                    bottom = _term(lx0, v10, neg_zero, cdt) + _term(lx1, v11, neg_zero, cdt)
                    value = _term(ly0, top, neg_zero, cdt) + _term(ly1, bottom, neg_zero, cdt)
                else:
                    sr = _nearest(r - dy0, sy0, sy1 - sy0, dy1 - dy0, rows)
                    sc = _nearest(col - dx0, sx0, sx1 - sx0, dx1 - dx0, width)
                    value = tl.load(base + sr.to(tl.int64) * s_stride_row + sc * lane_scale + chan, mask=need,
                                    other=0.0).to(cdt)
                acc = tl.where(need, acc + w.to(cdt) * value, acc)
        # offsets computed here, not kept live through the pieces (ptxas spilled them on sm_80)
        own = tl.load(src_ptr + i * s_stride_batch + s_plane + r.to(tl.int64) * s_stride_row + ln,
                      mask=inside & ~covered)
        out = tl.where(covered, _to_storage(acc, dtype), own)
        dst_offs = plane.to(tl.int64) * d_stride_plane + r.to(tl.int64) * d_stride_row + ln
        tl.store(dst_ptr + i * d_stride_batch + dst_offs, out, mask=inside)


TILE_ELEMENTS, PER_THREAD = 1024, 4
MAX_SIDE = 46340            # largest H and W for which (offset * side) fits in int32


def tile_shape(layout) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_L, num_warps): whole rows up to 128 lanes (the gathers are element-wise
    whatever the alignment), about 1024 elements a tile, 4 a thread (each element carries its
    own source indices through every piece: more per thread spill on sm_80)."""
    block_l = min(128, pow2_at_least(layout.lanes))
    block_r = max(1, min(pow2_at_least(layout.rows), TILE_ELEMENTS // block_l))
    num_warps = max(1, min(8, block_r * block_l // (32 * PER_THREAD)))
    return block_r, block_l, num_warps


def apply_pieces(x: torch.Tensor, plan, out=None) -> torch.Tensor:
    """The plan's result for ``x`` as a new tensor in ``x``'s memory format (one launch); the
    same signature as ``fastmix.pieces.apply_pieces_reference``. ``out``: a tensor shaped like
    ``x`` to write instead (tests watch its memory), never ``x`` itself."""
    from fastmix.layout import describe
    from fastmix.pieces import check_for

    lay = check_for(x, plan)
    if out is not None:
        out_lay = describe(out, spatial=True)
        if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device or out_lay is None:
            raise ValueError("out: must be a dense tensor of x's shape, dtype and device")
        if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            raise ValueError("out: shares memory with x (the pass is out of place)")
    return apply_checked(x, plan, lay, out)


def apply_checked(x: torch.Tensor, plan, lay, out=None) -> torch.Tensor:
    """:func:`apply_pieces` for a checked plan and ``x``'s layout ``lay`` (the dispatch's call):
    one bound launch, its grid, scalars and constexprs derived once per (layouts, pieces, rule)."""
    from fastmix.layout import describe
    from fastmix.pieces import empty_out

    if max(lay.rows, lay.width) > MAX_SIDE:
        raise ValueError(f"x: images of {lay.rows}x{lay.width} pixels; the Triton pass takes sides up to {MAX_SIDE}")
    if out is None:
        out = empty_out(x)
    if not (lay.batch and lay.sample_numel and plan.pieces):
        return out.copy_(x)
    # an output made by empty_out from a dense x has x's strides, hence x's layout
    out_lay = lay if out.stride() == x.stride() else describe(out, spatial=True)
    key = (lay, out_lay, plan.pieces, plan.resize)
    launch = _passes.get(key)
    if launch is None:
        if len(_passes) >= 32:
            _passes.clear()
        launch = _passes[key] = _bind(lay, out_lay, plan.pieces, plan.resize == "bilinear")
    launch(x, out, dense(plan.src), dense(plan.weight), dense(plan.dst_box), dense(plan.src_box))
    return out


def _bind(lay, out_lay, pieces: int, bilinear: bool) -> Bound:
    block_r, block_l, num_warps = tile_shape(lay)
    tiles = lay.planes * ceil_div(lay.rows, block_r) * ceil_div(lay.lanes, block_l)
    grid = (tiles, min(lay.batch, MAX_GRID_Y))
    scalars = (lay.batch, lay.rows, lay.lanes, lay.width, lay.lane_scale,
               lay.stride_batch, lay.stride_plane, lay.stride_row,
               out_lay.stride_batch, out_lay.stride_plane, out_lay.stride_row, grid[1])
    return Bound(_pieces_kernel, grid, 6, scalars, dict(PIECES=pieces, BILINEAR=bilinear, BLOCK_R=block_r,
                                                        BLOCK_L=block_l, num_warps=num_warps))


_passes: dict = {}   # (layout, output layout, pieces, resize rule) -> its bound launch
