"""Random-erasing noise inside the kernels: N(0, 1) from Philox by Box-Muller, as ``fastmix.noise`` computes it."""
import triton
import triton.language as tl


@triton.jit
def cos_2pi(u):
    """cos(2*pi*u) for u in [0, 1) by a Taylor polynomial on [0, pi/2] (error < 1e-10).

    tl.cos would call libdevice's cosf, whose large-argument reduction keeps a 28-byte array in
    local memory; this argument is never large. Same coefficients as ``fastmix.noise.COS_COEFFS``.
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
def normal(seed, counter):
    """N(0, 1) by Box-Muller from the first two Philox words at ``counter`` (``fastmix.noise.normal``)."""
    r0, r1, _, _ = tl.randint4x(seed, counter)
    u1 = tl.maximum(tl.random.uint_to_uniform_float(r0), 1.0e-7)
    u2 = tl.random.uint_to_uniform_float(r1)
    return tl.sqrt(-2.0 * tl.log(u1)) * cos_2pi(u2)
