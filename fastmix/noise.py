"""Random-erasing noise as a pure function of (seed, element): the CPU side of the kernels' generator.

The kernels draw the fill of ``RandomErasing(value="random")`` with Triton's counter-based
Philox (``tl.randint4x``) and a Box-Muller transform; this module computes the same numbers with
torch ops, so every backend (and the tests' oracle) fills the same pixel with the same value::

    counter(sample, element) = sample * sample_numel + element's logical NC(T)HW index
    noise = sqrt(-2 log u1) * cos(2 pi u2),   (u1, u2) = uniforms from the first two Philox words

Because the counter is the logical index, the noise does not depend on the memory layout.
"""
from __future__ import annotations

from typing import Union

import torch

_MASK32 = 0xFFFFFFFF
# Philox4x32-10 constants (Salmon et al., 2011), as in Triton's tl.randint4x
_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
# Taylor coefficients of cos on [0, pi/2], highest power first (kernels/fill.py uses the same)
COS_COEFFS = (-1.1470745597729725e-11, 2.08767569878681e-09, -2.755731922398589e-07, 2.48015873015873e-05,
              -0.001388888888888889, 0.041666666666666664, -0.5, 1.0)


def philox(seed: Union[int, torch.Tensor], counter: torch.Tensor, rounds: int = 10):
    """Philox4x32 with key = seed (lo, hi) and counter = (lo, hi, 0, 0); uint32 words held in int64.

    Products of two uint32 values wrap in int64 to exactly their low 64 bits, which is all the
    ``mulhi``/``mullo`` pair needs.
    """
    seed = torch.as_tensor(seed, dtype=torch.int64, device=counter.device)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    c0, c1 = counter & _MASK32, (counter >> 32) & _MASK32
    c2 = c3 = torch.zeros_like(c0)
    for _ in range(rounds):
        p0, p2 = _PHILOX_M0 * c0, _PHILOX_M1 * c2
        c0, c1, c2, c3 = (((p2 >> 32) & _MASK32) ^ c1 ^ k0, p2 & _MASK32,
                          ((p0 >> 32) & _MASK32) ^ c3 ^ k1, p0 & _MASK32)
        k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float`` for 32 random bits held in int64: a float32 in [0, 1)."""
    signed = torch.where(bits >= 2**31, bits - 2**32, bits)
    signed = torch.where(signed < 0, -signed - 1, signed)
    return signed.to(torch.float32) * torch.tensor(4.6566127342e-10, dtype=torch.float32)


def cos_2pi(u: torch.Tensor) -> torch.Tensor:
    """cos(2 pi u) for float32 u in [0, 1), by the kernels' polynomial (libdevice's cosf keeps its
    argument-reduction table in local memory; this argument is never large)."""
    r = (u - torch.floor(u + 0.5)).abs()          # [0, 0.5]: cos is even and 1-periodic in u
    flip = r > 0.25
    x = 6.283185307179586 * torch.where(flip, 0.5 - r, r)   # [0, pi/2]; cos(pi - x) = -cos(x)
    x2 = x * x
    p = torch.full_like(x2, COS_COEFFS[0])
    for coeff in COS_COEFFS[1:]:
        p = p * x2 + coeff
    return torch.where(flip, -p, p)


def normal(seed, counter: torch.Tensor) -> torch.Tensor:
    """N(0, 1) float32 at each ``counter`` (int64), by Box-Muller from the first two Philox words."""
    r0, r1, _, _ = philox(seed, counter)
    u1 = uniform_from_bits(r0).clamp_min(1.0e-7)
    u2 = uniform_from_bits(r1)
    return torch.sqrt(-2.0 * torch.log(u1)) * cos_2pi(u2)
