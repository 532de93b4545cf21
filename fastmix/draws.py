"""From uniforms to plans: what every sampler computes, written once for torch and for numpy.

A step draws its randomness in one call, ``torch.rand(n, generator=...)``: ``n`` float32
uniforms laid out per *unit* (the batch, a pair or a sample, by ``mode``). Everything after
that is a pure function of those uniforms, and this module is its specification:

- on CUDA the Triton kernels of ``kernels/sample.py`` compute it in one launch (and are tested
  against this module on the same uniforms, under the interpreter);
- on CPU tensors it runs with numpy (:data:`NUMPY`): the host *is* the device there, and a
  numpy op on a few hundred numbers costs a third of a torch op;
- anywhere else (and under ``FASTMIX_BACKEND=reference``) with torch ops (:data:`TORCH`), on the
  batch's device, reading nothing back to the host.

Beta(α, α) draws come from two Gamma(α) draws in log space, each by Marsaglia and Tsang's
method on Gamma(α + 1) with the boost Gamma(α) = Gamma(α + 1) U^(1/α), in float64, with
``GAMMA_TRIES`` tries from fixed uniforms: the acceptance rate is at least 95% at any α, so all
tries fail with probability below 6e-6 (then the mode of the proposal is taken). The normal
variates come from Box-Muller with a polynomial cosine, the same in every backend. λ is rounded
to the 2**-24 grid (exact in float32, with an exact complement), so boxes, which are computed
from λ with correctly rounded operations only, come out equal in every backend.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
import torch

from .layout import FULL
from .plan import CUTMIX, ERASE, MIXUP, NONE

GAMMA_TRIES = 4
GAMMA_UNIFORMS = 2 * GAMMA_TRIES + 1          # normals (Box-Muller pairs), acceptance tests, the boost
# a Mixup/CutMix unit: two gammas, switch, prob, four box uniforms
MIX_GAMMA_A, MIX_GAMMA_B = 0, GAMMA_UNIFORMS
MIX_SWITCH, MIX_PROB, MIX_BOX = 2 * GAMMA_UNIFORMS, 2 * GAMMA_UNIFORMS + 1, 2 * GAMMA_UNIFORMS + 2
MIX_UNIFORMS = MIX_BOX + 4
TWO_THIRDS = 0.6666666666666667               # 1 - 1/3, written out: kernels/sample.py uses the same literal
# Taylor coefficients of cos on [0, pi/2] in float64 (to x**22): |error| < 1e-16
COS_COEFFS_F64 = tuple((-1) ** k / math.factorial(2 * k) for k in range(11, -1, -1))


class _Torch:
    """The array operations the samplers use, on torch tensors (any device)."""

    where, clip, stack = staticmethod(torch.where), staticmethod(torch.clamp), staticmethod(torch.stack)
    log, exp, sqrt, floor = staticmethod(torch.log), staticmethod(torch.exp), staticmethod(torch.sqrt), staticmethod(torch.floor)
    minimum, maximum = staticmethod(torch.minimum), staticmethod(torch.maximum)

    @staticmethod
    def arange(n, like):
        return torch.arange(n, device=like.device)

    @staticmethod
    def f64(x):
        return x.double()

    @staticmethod
    def cast(x, dtype: str):
        return x.to(getattr(torch, dtype))


class _Numpy:
    """The same operations on numpy arrays (the CPU path's host-side sampler)."""

    where, clip = staticmethod(np.where), staticmethod(np.clip)
    log, exp, sqrt, floor = staticmethod(np.log), staticmethod(np.exp), staticmethod(np.sqrt), staticmethod(np.floor)
    minimum, maximum = staticmethod(np.minimum), staticmethod(np.maximum)

    @staticmethod
    def stack(arrays, dim=0):
        return np.stack(arrays, axis=dim)

    @staticmethod
    def arange(n, like):
        return np.arange(n)

    @staticmethod
    def f64(x):
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def cast(x, dtype: str):
        return np.asarray(x).astype(dtype)


TORCH, NUMPY = _Torch(), _Numpy()


def units(mode: str, batch: int) -> int:
    """How many independent draws a Mixup/CutMix step makes."""
    return {"batch": 1, "pair": (batch + 1) // 2, "elem": batch}[mode]


def unit_of_row(mode: str, rows, batch: int, ops):
    """The draw each row uses: the batch's, its flip pair's (rows ``i`` and ``B-1-i``), or its own."""
    if mode == "batch":
        return rows * 0
    if mode == "pair":
        return ops.minimum(rows, batch - 1 - rows)
    return rows


def rotated(u, offset: float, ops):
    """Uniforms in float64, rotated by ``offset`` on the circle (a bijection that keeps them
    uniform): how each rank of a distributed job draws its own plans from a shared seed."""
    u = ops.f64(u)
    return (u + offset) % 1.0 if offset else u


def cos_2pi(u, ops):
    """cos(2 pi u) in float64 by a polynomial on [0, pi/2] (libdevice's cos keeps its argument
    reduction table in local memory; ``kernels/sample.py`` uses the same polynomial)."""
    r = abs(u - ops.floor(u + 0.5))
    flip = r > 0.25
    x = 2.0 * math.pi * ops.where(flip, 0.5 - r, r)
    x2 = x * x
    p = x2 * 0.0 + COS_COEFFS_F64[0]
    for coeff in COS_COEFFS_F64[1:]:
        p = p * x2 + coeff
    return ops.where(flip, -p, p)


def log_gamma(u, alpha, ops):
    """log of Gamma(alpha) draws, one per row of ``u[..., :GAMMA_UNIFORMS]`` (float64; ``alpha``
    broadcasts against ``u[..., 0]``). Vectorised over the tries: a few dozen array operations
    whatever the number of draws (the CPU path's sampler is bound by the count of operations)."""
    d = u[..., 0] * 0.0 + alpha + TWO_THIRDS      # Marsaglia-Tsang on Gamma(alpha + 1), as an array
    c = 1.0 / ops.sqrt(9.0 * d)
    # Box-Muller: uniforms (0, 1) give the normals r0 cos, r0 sin, and (2, 3) the next two
    radius = ops.sqrt(-2.0 * ops.log(1.0 - u[..., 0:GAMMA_TRIES:2]))
    angle = u[..., 1:GAMMA_TRIES:2]
    z = (ops.stack([radius, radius], -1) * cos_2pi(ops.stack([angle, angle - 0.25], -1), ops))
    z = z.reshape(z.shape[:-2] + (GAMMA_TRIES,))
    t = 1.0 + c[..., None] * z
    v = t * t * t                                  # not ** 3: every backend multiplies the same way
    safe = ops.where(v > 0.0, v, 1.0)
    test = ops.log(1.0 - u[..., GAMMA_TRIES:2 * GAMMA_TRIES])
    dd = d[..., None]
    accept = (v > 0.0) & (test < 0.5 * z * z + dd - dd * safe + dd * ops.log(safe))
    chosen = d * 0.0 + 1.0                         # no try accepted (p < 6e-6): the proposal's mode
    for k in range(GAMMA_TRIES - 1, -1, -1):       # the first accepted try wins
        chosen = ops.where(accept[..., k], safe[..., k], chosen)
    return ops.log(d) + ops.log(chosen) + ops.log(1.0 - u[..., 2 * GAMMA_TRIES]) / alpha


def beta(u_a, u_b, alpha, ops):
    """Beta(alpha, alpha) as sigmoid(log G_a - log G_b), float64."""
    lg = log_gamma(ops.stack([u_a, u_b], -2), alpha[..., None] if hasattr(alpha, "shape") else alpha, ops)
    return 1.0 / (1.0 + ops.exp(lg[..., 1] - lg[..., 0]))


def on_grid(lam, ops):
    """λ on the 2**-24 grid, where both λ and 1 - λ are exact float32 values (so a Mixup row is a
    true convex combination in every backend and precision)."""
    return ops.floor(ops.clip(lam, 0.0, 1.0) * 2.0**24 + 0.5) / 2.0**24


def round_half_even(v, ops):
    """Nearest integer, ties to even (Python's ``round``, torchvision's rule), for 0 <= v < 2**51."""
    return (v + 6755399441055744.0) - 6755399441055744.0


class PlanRows(NamedTuple):
    """A plan as per-row arrays (torch tensors or numpy arrays), before it becomes a Plan."""

    partner: object      # (B,) int64
    lam_self: object     # (B,) float32
    lam_partner: object  # (B,) float32
    box: object          # (B, N, 4) int32
    label_lam: object    # (B,) float32
    kind: object         # (B,) int8


def partner_rows(pairing: str, rows, batch: int):
    """timm's flip (``B-1-i``) or torchvision's roll (``i-1``), as arrays."""
    return batch - 1 - rows if pairing == "flip" else (rows + batch - 1) % max(batch, 1)


def mixup_rows(spec, u, batch: int, size: Optional[tuple], prob: float, offset: float, ops) -> PlanRows:
    """The Mixup/CutMix plan (timm's semantics, torchvision's with ``roll``) from ``u``: ``(units, MIX_UNIFORMS)``."""
    count = units(spec.mode, batch)
    u = rotated(u, offset, ops)[:count * MIX_UNIFORMS].reshape(count, MIX_UNIFORMS)
    # -- per draw: kind, λ, box --
    mixup_on, cutmix_on = spec.mixup_alpha > 0, spec.cutmix_on
    if mixup_on and cutmix_on:
        use_cut = u[:, MIX_SWITCH] < spec.switch_prob
    else:
        use_cut = u[:, MIX_SWITCH] < (1.0 if cutmix_on else 0.0)
    # as float64 arrays: torch.where of two Python floats would give float32 and round alpha
    zero = u[:, MIX_SWITCH] * 0.0
    alpha = ops.where(use_cut, zero + (spec.cutmix_alpha if cutmix_on else 1.0), zero + (spec.mixup_alpha if mixup_on else 1.0))
    lam = beta(u[:, MIX_GAMMA_A:MIX_GAMMA_A + GAMMA_UNIFORMS], u[:, MIX_GAMMA_B:MIX_GAMMA_B + GAMMA_UNIFORMS],
               alpha, ops)
    lam = on_grid(ops.where(u[:, MIX_PROB] < prob, lam, 1.0), ops)
    if cutmix_on:
        height, width = size
        box = _cut_box(spec, lam, u[:, MIX_BOX:MIX_BOX + 4], height, width, ops)
        kept = 1.0 - ((box[1] - box[0]) * (box[3] - box[2])) / float(height * width)
        label_cut = kept if (spec.correct_lam or spec.cutmix_minmax is not None) else lam
    # -- per draw: what its rows get --
    active = lam < 1.0
    mix = active & ~use_cut
    if cutmix_on:
        cut = active & use_cut
        live = cut & (box[0] < box[1]) & (box[2] < box[3])
        region = ops.stack([ops.where(mix, full, ops.where(live, side, 0.0))
                            for side, full in zip(box, (0.0, FULL, 0.0, FULL))], 1)
        label = ops.where(mix, lam, ops.where(cut, label_cut, 1.0))
    else:
        live = mix & False
        region = ops.stack([ops.where(mix, full, 0.0) for full in (0.0, FULL, 0.0, FULL)], 1)
        label = ops.where(mix, lam, 1.0)
    lam_self = ops.where(mix, lam, ops.where(live, 0.0, 1.0))
    kind = ops.where(mix, float(MIXUP), ops.where(live, float(CUTMIX), float(NONE)))
    # -- per row: its draw's values; a row that is its own partner (the middle of an odd flipped
    #    batch, a batch of one) is left alone --
    rows = ops.arange(batch, u)
    unit = unit_of_row(spec.mode, rows, batch, ops)
    partner = partner_rows(spec.pairing, rows, batch)
    lam_self, label, kind, region = lam_self[unit], label[unit], kind[unit], region[unit]
    if batch == 1 or (spec.pairing == "flip" and batch % 2):
        alone = partner == rows
        lam_self, label = ops.where(alone, 1.0, lam_self), ops.where(alone, 1.0, label)
        kind, region = ops.where(alone, float(NONE), kind), ops.where(alone[:, None], 0.0, region)
    return PlanRows(ops.cast(partner, "int64"), ops.cast(lam_self, "float32"), ops.cast(1.0 - lam_self, "float32"),
                    ops.cast(region, "int32").reshape(batch, 1, 4), ops.cast(label, "float32"), ops.cast(kind, "int8"))


def _cut_box(spec, lam, u, height: int, width: int, ops):
    """``[y0, y1, x0, x1]`` float64 arrays: timm's ``rand_bbox``, torchvision's rule, or
    ``cutmix_minmax`` (side uniform in [lo, hi) pixels, the box inside the image)."""
    if spec.cutmix_minmax is not None:
        lo, hi = spec.cutmix_minmax
        lo_h, hi_h, lo_w, hi_w = int(height * lo), int(height * hi), int(width * lo), int(width * hi)
        cut_h = lo_h + ops.minimum(ops.floor(u[:, 0] * (hi_h - lo_h)), hi_h - lo_h - 1.0 + 0.0 * u[:, 0])
        cut_w = lo_w + ops.minimum(ops.floor(u[:, 1] * (hi_w - lo_w)), hi_w - lo_w - 1.0 + 0.0 * u[:, 1])
        y0 = ops.minimum(ops.floor(u[:, 2] * (height - cut_h + 1)), height - cut_h)
        x0 = ops.minimum(ops.floor(u[:, 3] * (width - cut_w + 1)), width - cut_w)
        return y0, y0 + cut_h, x0, x0 + cut_w
    ratio = ops.sqrt(ops.clip(1.0 - lam, 0.0, 1.0))
    sides = []
    for extent, centre_u in ((height, u[:, 0]), (width, u[:, 1])):
        centre = ops.clip(ops.floor(centre_u * extent), 0.0, extent - 1.0)
        if spec.box_style == "timm":
            cut = ops.floor(ratio * extent)
            low, high = ops.floor(cut * 0.5), ops.floor((cut + 1.0) * 0.5)
        else:
            low = high = ops.floor(ratio * (extent * 0.5))
        sides += [ops.clip(centre - low, 0.0, extent), ops.clip(centre + high, 0.0, extent)]
    return tuple(sides)


def cutout_rows(spec, u, batch: int, size: tuple, ops) -> PlanRows:
    """Cutout: ``n_holes`` squares of side ``length`` around uniform centres, clipped, each sample with
    probability ``p``; ``u`` is ``(B, 2 * n_holes + 1)``."""
    height, width = size
    u = ops.f64(u)[:batch * (2 * spec.n_holes + 1)].reshape(batch, 2 * spec.n_holes + 1)
    half = spec.length // 2
    apply = u[:, 2 * spec.n_holes] < spec.p
    holes = []
    for k in range(spec.n_holes):
        cy = ops.clip(ops.floor(u[:, 2 * k] * height), 0.0, height - 1.0)
        cx = ops.clip(ops.floor(u[:, 2 * k + 1] * width), 0.0, width - 1.0)
        sides = [ops.clip(cy - half, 0.0, height), ops.clip(cy + half, 0.0, height),
                 ops.clip(cx - half, 0.0, width), ops.clip(cx + half, 0.0, width)]
        holes.append(ops.stack([ops.where(apply, side, 0.0) for side in sides], 1))
    return _erase_rows(ops.stack(holes, 1), batch, u, ops)


def erasing_rows(spec, u, batch: int, size: tuple, ops) -> PlanRows:
    """Random Erasing (torchvision's draws): up to ``attempts`` (area, aspect) draws, the first
    that fits wins, then a uniform position; ``u`` is ``(B, 2 * attempts + 3)``."""
    height, width = size
    per = 2 * spec.attempts + 3
    u = ops.f64(u)[:batch * per].reshape(batch, per)
    lo, hi = spec.scale
    log_lo, log_hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
    h = w = found = None
    for k in range(spec.attempts):
        area = height * width * (lo + (hi - lo) * u[:, 2 * k])
        aspect = ops.exp(log_lo + (log_hi - log_lo) * u[:, 2 * k + 1])
        h_k = round_half_even(ops.sqrt(area * aspect), ops)
        w_k = round_half_even(ops.sqrt(area / aspect), ops)
        fits = (h_k < height) & (w_k < width) & (h_k > 0) & (w_k > 0)
        if h is None:
            h, w, found = ops.where(fits, h_k, 0.0), ops.where(fits, w_k, 0.0), fits
        else:
            take = fits & ~found
            h, w, found = ops.where(take, h_k, h), ops.where(take, w_k, w), found | fits
    found = found & (u[:, 2 * spec.attempts + 2] < spec.p)
    y0 = ops.minimum(ops.floor(u[:, 2 * spec.attempts] * (height - h + 1)), height - h)
    x0 = ops.minimum(ops.floor(u[:, 2 * spec.attempts + 1] * (width - w + 1)), width - w)
    sides = [y0, y0 + h, x0, x0 + w]
    box = ops.stack([ops.where(found, side, 0.0) for side in sides], 1)
    return _erase_rows(box.reshape(batch, 1, 4), batch, u, ops)


def noise_seed(u, ops):
    """A 48-bit Philox key from the last two uniforms (float32 ones hold 24 random bits each)."""
    bits = ops.floor(ops.f64(u[-2:]) * 2.0**24)
    return ops.cast(bits[0:1] * 2.0**24 + bits[1:2], "int64")


def _erase_rows(box, batch: int, u, ops) -> PlanRows:
    rows = ops.arange(batch, u)
    live = ((box[..., 0] < box[..., 1]) & (box[..., 2] < box[..., 3])).any(1)
    zero = rows * 0.0
    return PlanRows(ops.cast(rows, "int64"), ops.cast(zero, "float32"), ops.cast(zero, "float32"),
                    ops.cast(box, "int32"), ops.cast(zero + 1.0, "float32"),
                    ops.cast(ops.where(live, float(ERASE), float(NONE)), "int8"))
