"""The draws' building blocks as Triton device functions: ``fastmix/draws.py`` on one value each.

Uniforms rotated by a rank's offset, the polynomial cosine, Marsaglia-Tsang Gamma variates in log
space and the CutMix box sides, in the specification's float64 arithmetic and order of operations,
so that every sampler kernel built from them (``kernels/sample.py`` and the family's) equals the
specification on the same uniforms. A float64 parameter reaches a kernel as its bits
(:func:`bits`): Triton passes Python floats as float32.
"""
from __future__ import annotations

import struct

import triton
import triton.language as tl

from fastmix import draws

GAMMA_TRIES = tl.constexpr(draws.GAMMA_TRIES)
BOX_TIMM, BOX_TORCHVISION, BOX_MINMAX = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)


def bits(value: float) -> int:
    """A float64 argument as its bits in an int64: Triton passes Python floats to a kernel as
    float32, and the samplers' parameters must reach it exactly (the spec computes in float64)."""
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


@triton.jit
def f64(bits):
    """The float64 whose bits :func:`bits` passed."""
    return tl.cast(tl.cast(bits, tl.int64), tl.float64, bitcast=True)


@triton.jit
def uniform(ptr, mask, offset):
    """A uniform as float64, rotated by ``offset`` (``draws.rotated``)."""
    u = tl.load(ptr, mask=mask, other=0.5).to(tl.float64)
    return u + offset - tl.floor(u + offset)


@triton.jit
def cos_2pi(u):
    """``draws.cos_2pi``: the float64 polynomial on [0, pi/2], highest power first."""
    r = tl.abs(u - tl.floor(u + 0.5))
    flip = r > 0.25
    x = 6.283185307179586 * tl.where(flip, 0.5 - r, r)
    x2 = x * x
    p = x2 * 0.0 - 8.896791392450574e-22
    p = p * x2 + 4.110317623312165e-19
    p = p * x2 - 1.5619206968586225e-16
    p = p * x2 + 4.779477332387385e-14
    p = p * x2 - 1.1470745597729725e-11
    p = p * x2 + 2.08767569878681e-09
    p = p * x2 - 2.755731922398589e-07
    p = p * x2 + 2.48015873015873e-05
    p = p * x2 - 0.001388888888888889
    p = p * x2 + 0.041666666666666664
    p = p * x2 - 0.5
    p = p * x2 + 1.0
    return tl.where(flip, -p, p)


@triton.jit
def log_gamma(base, mask, offset, alpha):
    """``draws.log_gamma`` for one Gamma(alpha) from the ``GAMMA_UNIFORMS`` uniforms at ``base``."""
    d = alpha + 0.6666666666666667              # draws.TWO_THIRDS
    c = 1.0 / tl.sqrt(9.0 * d)
    chosen = d * 0.0 + 1.0
    found = d < 0.0
    for k in tl.static_range(0, GAMMA_TRIES, 2):
        radius = tl.sqrt(-2.0 * tl.log(1.0 - uniform(base + k, mask, offset)))
        angle = uniform(base + k + 1, mask, offset)
        for j in tl.static_range(2):
            z = radius * cos_2pi(angle - 0.25 * j)
            t = 1.0 + c * z
            v = t * t * t
            safe = tl.where(v > 0.0, v, 1.0)
            test = tl.log(1.0 - uniform(base + GAMMA_TRIES + k + j, mask, offset))
            accept = (v > 0.0) & (test < 0.5 * z * z + d - d * safe + d * tl.log(safe))
            chosen = tl.where(accept & ~found, safe, chosen)
            found = found | accept
    return tl.log(d) + tl.log(chosen) + tl.log(1.0 - uniform(base + 2 * GAMMA_TRIES, mask, offset)) / alpha


@triton.jit
def cut_side(u_centre, lam, extent, BOX: tl.constexpr):
    """One axis of ``draws._cut_box`` for a λ-sized box: ``(start, end)`` float64."""
    ratio = tl.sqrt(tl.minimum(tl.maximum(1.0 - lam, 0.0), 1.0))
    centre = tl.minimum(tl.maximum(tl.floor(u_centre * extent), 0.0), extent - 1.0)
    if BOX == BOX_TIMM:
        cut = tl.floor(ratio * extent)
        low = tl.floor(cut * 0.5)
        high = tl.floor((cut + 1.0) * 0.5)
    else:
        low = tl.floor(ratio * (extent * 0.5))
        high = low
    return tl.minimum(tl.maximum(centre - low, 0.0), extent), tl.minimum(tl.maximum(centre + high, 0.0), extent)


@triton.jit
def minmax_side(u_side, u_start, lo, hi, extent):
    """One axis of ``draws._cut_box`` with ``cutmix_minmax``: side in [lo, hi), inside the image."""
    cut = lo + tl.minimum(tl.floor(u_side * (hi - lo)), hi - lo - 1.0)
    start = tl.minimum(tl.floor(u_start * (extent - cut + 1.0)), extent - cut)
    return start, start + cut
