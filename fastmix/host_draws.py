"""The batch-mode Mixup/CutMix draw on Python floats: :func:`fastmix.draws.mixup_rows` for one unit.

In ``mode="batch"`` a step draws one λ, one switch, one prob decision and one box from the
``MIX_UNIFORMS`` uniforms of its single ``torch.rand``. On CPU tensors the spec computes that with
numpy ufuncs on one-element arrays (0.1-0.3 ms a call, all of it per-op overhead); the same
float64 arithmetic on Python floats with :mod:`math` costs 4-8 us. The project allows it: a plan
drawn once per batch on CPU may come from here, on the same uniforms, as long as it is the spec's
plan at the fused sampler's tolerance (partners, kinds and boxes equal, weights within one 2**-24
step: ``tests/test_host_draws.py``, the check ``tests/test_fused_sampling.py`` makes).

Every step below is the spec's, in the spec's order, with its constants (``fastmix/draws.py`` is
the specification; read the two side by side), so the draw is the numpy spec's bit for bit
wherever ``math.log``/``exp`` (glibc) agree with numpy's to the last bit. Where they do not, λ
moves by ~1e-16 before it is rounded to the 2**-24 grid: one grid step in the rare draw that
lands on a rounding boundary, and nothing otherwise (an acceptance test sitting within rounding of
its bound could flip too: a chance of ~1e-16 a draw).

No numpy and no torch op in the arithmetic. The caller broadcasts the draw to the batch and leaves
alone the row that is its own partner (:func:`alone_row`); :func:`batch_rows` does both and builds
the spec's ``PlanRows`` tensors (one ``torch.full`` per field: ~20 us for B up to 1024).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch

from .draws import (COS_COEFFS_F64, GAMMA_TRIES, MIX_BOX, MIX_GAMMA_A, MIX_GAMMA_B, MIX_PROB,
                    MIX_SWITCH, MIX_UNIFORMS, TWO_THIRDS, PlanRows)
from .layout import FULL
from .partners import PARTNERS
from .plan import CUTMIX, MIXUP, NONE

_TWO_PI = 2.0 * math.pi               # the spec's ``2.0 * math.pi * r``, evaluated left to right
_COS_HEAD, _COS_TAIL = COS_COEFFS_F64[0], COS_COEFFS_F64[1:]
_GRID = 2.0**24
_EMPTY = (0, 0, 0, 0)
_WHOLE = (0, FULL, 0, FULL)           # a Mixup row's region: the whole sample


class BatchDraw(NamedTuple):
    """What every row of a batch-mode step gets, before the rule for rows that are their own partner."""

    kind: int           # NONE, MIXUP or CUTMIX
    lam_self: float     # weight of a row itself in its region (1.0: nothing mixed, 0.0: a CutMix box)
    label_lam: float    # weight of its own label (float64: rounds to the spec's float32 when stored)
    box: tuple          # (y0, y1, x0, x1) ints: the spec's ``box`` row (FULL ends for Mixup, zeros for none)


def _cos_2pi(x: float) -> float:
    """``draws.cos_2pi`` on one float: the same reduction and the same polynomial (Horner, no FMA)."""
    r = abs(x - math.floor(x + 0.5))
    flip = r > 0.25
    y = _TWO_PI * (0.5 - r if flip else r)
    y2 = y * y
    p = _COS_HEAD
    for coeff in _COS_TAIL:
        p = p * y2 + coeff
    return -p if flip else p


def _log_gamma(u: Sequence[float], start: int, alpha: float) -> float:
    """``draws.log_gamma`` of the ``GAMMA_UNIFORMS`` uniforms at ``u[start:]``. The spec evaluates
    every try and keeps the first accepted one; here the tries stop at it (same value)."""
    d = alpha + TWO_THIRDS
    c = 1.0 / math.sqrt(9.0 * d)
    log = math.log
    chosen = 1.0                      # no try accepted (p < 6e-6): the proposal's mode, as the spec
    for k in range(GAMMA_TRIES):
        # Box-Muller pair k // 2: uniforms (2j, 2j+1) give r cos (even k) and r cos(. - 1/4) (odd k)
        pair = start + (k & ~1)
        angle = u[pair + 1]
        z = math.sqrt(-2.0 * log(1.0 - u[pair])) * _cos_2pi(angle - 0.25 if k & 1 else angle)
        t = 1.0 + c * z
        v = t * t * t
        if v > 0.0 and log(1.0 - u[start + GAMMA_TRIES + k]) < 0.5 * z * z + d - d * v + d * log(v):
            chosen = v
            break
    return log(d) + log(chosen) + log(1.0 - u[start + 2 * GAMMA_TRIES]) / alpha


def beta(u: Sequence[float], alpha: float, start_a: int = MIX_GAMMA_A, start_b: int = MIX_GAMMA_B) -> float:
    """``draws.beta``: sigmoid(log G_a - log G_b) of the Gammas at ``u[start_a:]`` and
    ``u[start_b:]`` (by default a Mixup unit's). Where ``math.exp`` overflows (numpy's gives inf:
    a tiny alpha) the spec's ``1 / (1 + inf)`` is 0."""
    diff = _log_gamma(u, start_b, alpha) - _log_gamma(u, start_a, alpha)
    try:
        return 1.0 / (1.0 + math.exp(diff))
    except OverflowError:
        return 0.0


def _cut_box(spec, lam: float, u: Sequence[float], height: int, width: int) -> tuple:
    """``draws._cut_box`` on floats, as ints (every value there is an integer-valued float64 < 2**53)."""
    floor = math.floor
    if spec.cutmix_minmax is not None:
        lo, hi = spec.cutmix_minmax
        lo_h, hi_h, lo_w, hi_w = int(height * lo), int(height * hi), int(width * lo), int(width * hi)
        cut_h = lo_h + min(floor(u[MIX_BOX] * (hi_h - lo_h)), hi_h - lo_h - 1)
        cut_w = lo_w + min(floor(u[MIX_BOX + 1] * (hi_w - lo_w)), hi_w - lo_w - 1)
        y0 = min(floor(u[MIX_BOX + 2] * (height - cut_h + 1)), height - cut_h)
        x0 = min(floor(u[MIX_BOX + 3] * (width - cut_w + 1)), width - cut_w)
        return y0, y0 + cut_h, x0, x0 + cut_w
    ratio = math.sqrt(min(max(1.0 - lam, 0.0), 1.0))
    sides = []
    for extent, centre_u in ((height, u[MIX_BOX]), (width, u[MIX_BOX + 1])):
        centre = min(max(floor(centre_u * extent), 0), extent - 1)
        if spec.box_style == "timm":
            cut = floor(ratio * extent)
            low, high = cut // 2, (cut + 1) // 2
        else:
            low = high = floor(ratio * (extent * 0.5))
        sides += [min(max(centre - low, 0), extent), min(max(centre + high, 0), extent)]
    return tuple(sides)


def mixup_batch_draw(spec, u: Sequence[float], size: Optional[tuple], prob: float, offset: float) -> BatchDraw:
    """The draw of a ``mode="batch"`` step from its first ``MIX_UNIFORMS`` uniforms (Python floats:
    ``torch.rand(...).tolist()``), equal to the spec's row for every row that is not its own
    partner. The caller applies the rule for those (:func:`batch_rows` does): they get
    ``NONE``, weight 1, label 1 and an empty box."""
    if offset:                        # the spec's rotation: float64, floor-mod as numpy's and torch's %
        u = [(x + offset) % 1.0 for x in u[:MIX_UNIFORMS]]
    mixup_on, cutmix_on = spec.mixup_alpha > 0, spec.cutmix_on
    if mixup_on and cutmix_on:
        use_cut = u[MIX_SWITCH] < spec.switch_prob
    else:
        use_cut = u[MIX_SWITCH] < (1.0 if cutmix_on else 0.0)
    if use_cut:
        alpha = spec.cutmix_alpha if cutmix_on else 1.0
    else:
        alpha = spec.mixup_alpha if mixup_on else 1.0
    lam = beta(u, alpha) if u[MIX_PROB] < prob else 1.0
    lam = math.floor(min(max(lam, 0.0), 1.0) * _GRID + 0.5) / _GRID      # draws.on_grid
    if lam >= 1.0:
        return BatchDraw(NONE, 1.0, 1.0, _EMPTY)
    if not use_cut:
        return BatchDraw(MIXUP, lam, lam, _WHOLE)
    height, width = size
    box = _cut_box(spec, lam, u, height, width)
    y0, y1, x0, x1 = box
    if spec.correct_lam or spec.cutmix_minmax is not None:
        label = 1.0 - ((y1 - y0) * (x1 - x0)) / float(height * width)
    else:
        label = lam
    if y0 < y1 and x0 < x1:
        return BatchDraw(CUTMIX, 0.0, label, box)
    # a CutMix draw whose box is empty mixes nothing, but keeps its label weight (the spec's rule)
    return BatchDraw(NONE, 1.0, label, _EMPTY)


def alone_row(pairing: str, batch: int) -> Optional[int]:
    """The row that is its own partner (left alone), or None: the middle of an odd flipped batch,
    the only row of a batch of one."""
    if batch == 1 or (pairing == "flip" and batch % 2):
        return batch // 2
    return None


def batch_rows(draw: BatchDraw, batch: int, pairing: str) -> PlanRows:
    """``draws.PlanRows`` (CPU tensors, the spec's dtypes and shapes) of ``draw`` broadcast to
    ``batch`` rows, with the alone row (:func:`alone_row`) left alone: one fill per field, and the
    alone row patched only when the draw mixes or relabels it."""
    partner = PARTNERS[pairing](batch)
    lam_self = torch.full((batch,), draw.lam_self, dtype=torch.float32)
    lam_partner = torch.full((batch,), 1.0 - draw.lam_self, dtype=torch.float32)
    label = torch.full((batch,), draw.label_lam, dtype=torch.float32)
    kind = torch.full((batch,), draw.kind, dtype=torch.int8)
    if draw.box == _EMPTY:
        box = torch.zeros((batch, 1, 4), dtype=torch.int32)
    else:
        box = torch.tensor(draw.box, dtype=torch.int32).expand(batch, 1, 4).contiguous()
    alone = alone_row(pairing, batch)
    if alone is not None and (draw.kind != NONE or draw.label_lam != 1.0):
        lam_self[alone], lam_partner[alone], label[alone], kind[alone] = 1.0, 0.0, 1.0, NONE
        box[alone] = 0
    return PlanRows(partner, lam_self, lam_partner, box, label, kind)


_partners: dict = {}


def _partner(batch: int, pairing: str) -> torch.Tensor:
    """The closed-form partner of ``batch`` rows, made once and reused while nothing writes to it
    (a plan's pairing is derived from the tensor's identity and version: a write makes it a new one)."""
    kept = _partners.get((batch, pairing))
    if kept is None or kept[0]._version != kept[1]:
        partner = PARTNERS[pairing](batch)
        kept = _partners[(batch, pairing)] = (partner, partner._version)
    return kept[0]


def expanded_rows(draw: BatchDraw, batch: int, pairing: str) -> PlanRows:
    """:func:`batch_rows` with each field one value expanded to every row (stride 0: a few small
    ops whatever ``batch``, and the form ``fastmix/cpu.py`` applies at once), when every row gets
    the draw, that is when no row is its own partner; otherwise :func:`batch_rows`. Every backend
    reads the expanded form as the dense one (the kernels make it dense first)."""
    if alone_row(pairing, batch) is not None or batch == 0:
        return batch_rows(draw, batch, pairing)
    weights = torch.tensor([draw.lam_self, 1.0 - draw.lam_self, draw.label_lam], dtype=torch.float32)
    box = torch.tensor(draw.box, dtype=torch.int32).expand(batch, 1, 4)
    kind = torch.tensor([draw.kind], dtype=torch.int8).expand(batch)
    return PlanRows(_partner(batch, pairing), weights[0].expand(batch), weights[1].expand(batch), box,
                    weights[2].expand(batch), kind)
