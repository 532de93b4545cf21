"""What one blended element becomes, as Triton device functions shared by the blend kernels
(``kernels/blend.py``) and the piece pass (``kernels/pieces.py``): the storage dtype's rounding,
the fill (a constant, one per channel, or counter-based noise), a plan's per-pixel region weight,
and the blend's terms, each with the hazard it avoids written beside it.
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import noise

# fill modes (constexpr globals: the kernels read them; the launchers pass their .value)
NO_FILL, CONST_FILL, NOISE_FILL = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)


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
def _mask_weight(mask_ptr, row, tile_rows, tile_lanes, reg, rows, box_width, lane_scale):
    """The plan's per-pixel region weight rho of ``row``'s tile (the mask is ``(B, H, W)``)."""
    pixel = (row.to(tl.int64) * rows + tile_rows) * box_width + tile_lanes // lane_scale
    return tl.load(mask_ptr + pixel, mask=reg, other=0.0)


@triton.jit
def _masked(mask_ptr, row, tile_rows, tile_lanes, reg, rows, box_width, lane_scale, a, b, c, BLEND: tl.constexpr,
            MASKED: tl.constexpr):
    """``(region, a, b, c)`` as they apply per pixel: with a mask, ``out = (1 - rho) x + rho blend``
    inside ``rho > 0`` (an integer map takes the larger share: ``rho >= 0.5``), else as given."""
    if MASKED:
        rho = _mask_weight(mask_ptr, row, tile_rows, tile_lanes, reg, rows, box_width, lane_scale)
        if BLEND:
            live = reg & (rho > 0.0)
        else:
            live = reg & (rho >= 0.5)
        return live, (1.0 - rho) + rho * a, rho * b, rho * c
    else:
        return reg, a, b, c


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
