"""The samplers as Triton kernels: one launch turns a step's uniforms into its plan (and its soft
targets), so that a step on a GPU is one ``torch.rand``, this launch and the blend.

Each kernel computes, row by row, exactly what ``fastmix/draws.py`` specifies (the same float64
arithmetic, the same polynomial cosine, the same order of operations), so that under the
interpreter its plans equal the specification's on the same uniforms: partners, kinds and boxes
exactly, weights to rounding. A program owns ``BLOCK_B`` rows; with labels, grid axis 1 splits the
classes, every program recomputes its rows' plan (a few hundred flops a row) and the programs of
class block 0 store it.

Launch layout of the uniforms (``fastmix.draws``): Mixup/CutMix ``MIX_UNIFORMS`` per unit (the
batch, a flip pair, or a sample), Cutout ``2 n_holes + 1`` and Erasing ``2 attempts + 3`` per
sample, plus two for the noise seed.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from fastmix import draws
from fastmix.layout import FULL

from .draws import BOX_MINMAX, BOX_TIMM, BOX_TORCHVISION, bits, cut_side, f64, log_gamma, minmax_side, uniform
from .launch import Bound
from .targets import smoothing_terms
from .walk import ceil_div, pow2_at_least

MIX_UNIFORMS = tl.constexpr(draws.MIX_UNIFORMS)
MIX_GAMMA_B = tl.constexpr(draws.MIX_GAMMA_B)
MIX_SWITCH, MIX_PROB, MIX_BOX = tl.constexpr(draws.MIX_SWITCH), tl.constexpr(draws.MIX_PROB), tl.constexpr(draws.MIX_BOX)
NO_LABELS, INDEX_LABELS, SOFT_LABELS = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
FULL_END = tl.constexpr(FULL)
MODES = {"batch": 0, "pair": 1, "elem": 2}


@triton.jit
def _mixup_rows(u_ptr, rows, in_batch, batch, height, width, mixup_alpha, cutmix_alpha, prob, switch_prob, offset,
                lo_h, hi_h, lo_w, hi_w, MODE: tl.constexpr, ROLL: tl.constexpr, MIXUP_ON: tl.constexpr,
                CUTMIX_ON: tl.constexpr, BOX: tl.constexpr, CORRECT: tl.constexpr):
    """``draws.mixup_rows`` for ``rows``: (partner, lam_self, box y0, y1, x0, x1, label, kind)."""
    # -- the draw this row uses --
    if MODE == 0:
        unit = rows * 0
    elif MODE == 1:
        unit = tl.minimum(rows, batch - 1 - rows)
    else:
        unit = rows
    base = u_ptr + unit.to(tl.int64) * MIX_UNIFORMS
    switch = uniform(base + MIX_SWITCH, in_batch, offset)
    if MIXUP_ON and CUTMIX_ON:
        use_cut = switch < switch_prob
    else:
        use_cut = switch < (1.0 if CUTMIX_ON else 0.0)
    alpha = tl.where(use_cut, cutmix_alpha, mixup_alpha)
    lam = 1.0 / (1.0 + tl.exp(log_gamma(base + MIX_GAMMA_B, in_batch, offset, alpha)
                              - log_gamma(base, in_batch, offset, alpha)))
    lam = tl.where(uniform(base + MIX_PROB, in_batch, offset) < prob, lam, 1.0)
    lam = tl.floor(tl.minimum(tl.maximum(lam, 0.0), 1.0) * 16777216.0 + 0.5) / 16777216.0
    # -- the row --
    if ROLL:
        partner = (rows + batch - 1) % tl.maximum(batch, 1)
    else:
        partner = batch - 1 - rows
    active = (lam < 1.0) & (partner != rows)
    mix = active & ~use_cut
    if CUTMIX_ON:
        if BOX == BOX_MINMAX:
            y0, y1 = minmax_side(uniform(base + MIX_BOX, in_batch, offset),
                                  uniform(base + MIX_BOX + 2, in_batch, offset), lo_h, hi_h, height)
            x0, x1 = minmax_side(uniform(base + MIX_BOX + 1, in_batch, offset),
                                  uniform(base + MIX_BOX + 3, in_batch, offset), lo_w, hi_w, width)
        else:
            y0, y1 = cut_side(uniform(base + MIX_BOX, in_batch, offset), lam, height, BOX)
            x0, x1 = cut_side(uniform(base + MIX_BOX + 1, in_batch, offset), lam, width, BOX)
        cut = active & use_cut
        live = cut & (y0 < y1) & (x0 < x1)
        if CORRECT:
            label_cut = 1.0 - ((y1 - y0) * (x1 - x0)) / (height * width)
        else:
            label_cut = lam
        label = tl.where(mix, lam, tl.where(cut, label_cut, 1.0))
        y0 = tl.where(mix, 0.0, tl.where(live, y0, 0.0))
        y1 = tl.where(mix, FULL_END * 1.0, tl.where(live, y1, 0.0))
        x0 = tl.where(mix, 0.0, tl.where(live, x0, 0.0))
        x1 = tl.where(mix, FULL_END * 1.0, tl.where(live, x1, 0.0))
    else:
        live = mix & False
        label = tl.where(mix, lam, 1.0)
        y0 = lam * 0.0
        y1 = tl.where(mix, FULL_END * 1.0, 0.0)
        x0 = y0
        x1 = y1
    lam_self = tl.where(mix, lam, tl.where(live, 0.0, 1.0))
    kind = tl.where(mix, 1, tl.where(live, 2, 0))
    return partner, lam_self, y0, y1, x0, x1, label, kind


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------

@triton.jit
def _store_plan(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, mask,
                partner, lam_self, lam_partner, y0, y1, x0, x1, label, kind, hole: tl.constexpr,
                BOXES: tl.constexpr):
    """One box (``hole``) of each row; the rest of the row with the first box."""
    box = box_ptr + tl.cast(rows, tl.int64) * (BOXES * 4) + hole * 4
    tl.store(box, tl.cast(y0, tl.int32), mask=mask)
    tl.store(box + 1, tl.cast(y1, tl.int32), mask=mask)
    tl.store(box + 2, tl.cast(x0, tl.int32), mask=mask)
    tl.store(box + 3, tl.cast(x1, tl.int32), mask=mask)
    if hole == 0:
        tl.store(partner_ptr + rows, tl.cast(partner, tl.int64), mask=mask)
        tl.store(lam_self_ptr + rows, tl.cast(lam_self, tl.float32), mask=mask)
        tl.store(lam_partner_ptr + rows, tl.cast(lam_partner, tl.float32), mask=mask)
        tl.store(label_lam_ptr + rows, tl.cast(label, tl.float32), mask=mask)
        tl.store(kind_ptr + rows, tl.cast(kind, tl.int8), mask=mask)


@triton.jit
def _mixup_plan_kernel(
    u_ptr, labels_ptr,
    partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, target_ptr,
    batch, height, width, mixup_alpha, cutmix_alpha, prob, switch_prob, offset,
    lo_h, hi_h, lo_w, hi_w,                      # cutmix_minmax's side bounds, in pixels
    num_classes, label_stride, on, off, keep,    # targets: one-hot on/off, soft labels y * keep + off
    MODE: tl.constexpr, ROLL: tl.constexpr, MIXUP_ON: tl.constexpr, CUTMIX_ON: tl.constexpr, BOX: tl.constexpr,
    CORRECT: tl.constexpr, LABELS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # -- this program's rows, and their plan --
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    in_batch = rows < batch
    partner, lam_self, y0, y1, x0, x1, label, kind = _mixup_rows(
        u_ptr, rows, in_batch, batch, tl.cast(height, tl.float64), tl.cast(width, tl.float64), f64(mixup_alpha),
        f64(cutmix_alpha), f64(prob), f64(switch_prob), f64(offset),
        tl.cast(lo_h, tl.float64), tl.cast(hi_h, tl.float64), tl.cast(lo_w, tl.float64), tl.cast(hi_w, tl.float64),
        MODE, ROLL, MIXUP_ON, CUTMIX_ON, BOX, CORRECT)
    if tl.program_id(1) == 0:
        _store_plan(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, in_batch,
                    partner, lam_self, 1.0 - lam_self, y0, y1, x0, x1, label, kind, 0, 1)
    # -- the soft targets of these rows (kernels/targets.py's formula) --
    if LABELS != NO_LABELS:
        cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        tile = in_batch[:, None] & (cols < num_classes)[None, :]
        lam = label.to(tl.float32)[:, None]
        other_w = 1.0 - lam
        if LABELS == INDEX_LABELS:
            own_class = tl.load(labels_ptr + rows, mask=in_batch, other=0)[:, None]
            other_class = tl.load(labels_ptr + partner, mask=in_batch, other=0)[:, None]
            own = tl.where(cols[None, :] == own_class, on, off)
            own = tl.where((own_class >= 0) & (own_class < num_classes), own, float("nan"))
            other = tl.where(cols[None, :] == other_class, on, off)
            other = tl.where((other_class >= 0) & (other_class < num_classes), other, float("nan"))
        else:
            own = tl.load(labels_ptr + rows.to(tl.int64)[:, None] * label_stride + cols[None, :], mask=tile)
            own = own.to(tl.float32) * keep + off
            other = tl.load(labels_ptr + partner.to(tl.int64)[:, None] * label_stride + cols[None, :],
                            mask=tl.where(other_w != 0.0, tile, False))
            other = other.to(tl.float32) * keep + off
        val = lam * own + tl.where(other_w != 0.0, other_w * other, 0.0)
        tl.store(target_ptr + rows.to(tl.int64)[:, None] * num_classes + cols[None, :], val, mask=tile)


@triton.jit
def _cutout_plan_kernel(
    u_ptr, partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr,
    batch, height, width, half, p,
    HOLES: tl.constexpr, BLOCK_B: tl.constexpr,
):
    """``draws.cutout_rows``: ``HOLES`` squares of half-side ``half`` per sample, with probability ``p``."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    in_batch = rows < batch
    base = u_ptr + rows.to(tl.int64) * (2 * HOLES + 1)
    heights = tl.cast(height, tl.float64)
    widths = tl.cast(width, tl.float64)
    apply = uniform(base + 2 * HOLES, in_batch, 0.0) < f64(p)
    live = apply & False
    zero = tl.zeros([BLOCK_B], tl.float64)
    for k in tl.static_range(HOLES):
        cy = tl.minimum(tl.maximum(tl.floor(uniform(base + 2 * k, in_batch, 0.0) * heights), 0.0), heights - 1.0)
        cx = tl.minimum(tl.maximum(tl.floor(uniform(base + 2 * k + 1, in_batch, 0.0) * widths), 0.0), widths - 1.0)
        y0 = tl.where(apply, tl.minimum(tl.maximum(cy - half, 0.0), heights), 0.0)   # half: an int, exact
        y1 = tl.where(apply, tl.minimum(tl.maximum(cy + half, 0.0), heights), 0.0)
        x0 = tl.where(apply, tl.minimum(tl.maximum(cx - half, 0.0), widths), 0.0)
        x1 = tl.where(apply, tl.minimum(tl.maximum(cx + half, 0.0), widths), 0.0)
        live = live | ((y0 < y1) & (x0 < x1))
        _store_plan(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, in_batch,
                    rows, zero, zero, y0, y1, x0, x1, zero + 1.0, 0, k, HOLES)
    tl.store(kind_ptr + rows, tl.where(live, 3, 0).to(tl.int8), mask=in_batch)


@triton.jit
def _erasing_plan_kernel(
    u_ptr, partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, seed_ptr,
    batch, height, width, scale_lo, scale_hi, log_ratio_lo, log_ratio_hi, p,
    ATTEMPTS: tl.constexpr, SEED: tl.constexpr, BLOCK_B: tl.constexpr,
):
    """``draws.erasing_rows``: the first of ``ATTEMPTS`` (area, aspect) draws that fits, at a uniform
    position, with probability ``p``; ``SEED``: also the noise seed from the last two uniforms."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    in_batch = rows < batch
    base = u_ptr + rows.to(tl.int64) * (2 * ATTEMPTS + 3)
    heights = tl.cast(height, tl.float64)
    widths = tl.cast(width, tl.float64)
    lo, hi = f64(scale_lo), f64(scale_hi)
    log_lo, log_hi = f64(log_ratio_lo), f64(log_ratio_hi)
    h = tl.zeros([BLOCK_B], tl.float64)
    w = h
    found = h < 0.0
    for k in tl.static_range(ATTEMPTS):
        area = heights * widths * (lo + (hi - lo) * uniform(base + 2 * k, in_batch, 0.0))
        aspect = tl.exp(log_lo + (log_hi - log_lo) * uniform(base + 2 * k + 1, in_batch, 0.0))
        h_k = (tl.sqrt(area * aspect) + 6755399441055744.0) - 6755399441055744.0   # round half to even
        w_k = (tl.sqrt(area / aspect) + 6755399441055744.0) - 6755399441055744.0
        fits = (h_k < heights) & (w_k < widths) & (h_k > 0.0) & (w_k > 0.0)
        take = fits & ~found
        h = tl.where(take, h_k, h)
        w = tl.where(take, w_k, w)
        found = found | fits
    found = found & (uniform(base + 2 * ATTEMPTS + 2, in_batch, 0.0) < f64(p))
    y0 = tl.minimum(tl.floor(uniform(base + 2 * ATTEMPTS, in_batch, 0.0) * (heights - h + 1.0)), heights - h)
    x0 = tl.minimum(tl.floor(uniform(base + 2 * ATTEMPTS + 1, in_batch, 0.0) * (widths - w + 1.0)), widths - w)
    zero = tl.zeros([BLOCK_B], tl.float64)
    _store_plan(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, in_batch,
                rows, zero, zero, tl.where(found, y0, 0.0), tl.where(found, y0 + h, 0.0), tl.where(found, x0, 0.0),
                tl.where(found, x0 + w, 0.0), zero + 1.0, tl.where(found, 3, 0), 0, 1)
    if SEED:
        if tl.program_id(0) == 0:
            last = u_ptr + batch.to(tl.int64) * (2 * ATTEMPTS + 3)
            high = tl.floor(tl.load(last).to(tl.float64) * 16777216.0)
            low = tl.floor(tl.load(last + 1).to(tl.float64) * 16777216.0)
            tl.store(seed_ptr, (high * 16777216.0 + low).to(tl.int64))


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------

BLOCK_B = 128   # rows a program draws when it writes no targets


def _stream_of(device: torch.device) -> int:
    """The current stream's handle on ``device`` (0 off CUDA, where launches run in order anyway)."""
    return torch._C._cuda_getCurrentRawStream(device.index) if device.type == "cuda" else 0


class _Rows:
    """The plan rows a sampler writes. A step whose plan nobody keeps (a transform's own call, in
    place: the plan lives for that call only) writes into rows kept per device and stream instead
    of six new tensors: the launches of one stream run in order, so the next step's sampler writes
    after this step's blend has read. A plan that escapes (``plan()``, the functional API, an
    out-of-place call whose backward reads the plan later) always gets new rows."""

    def __init__(self, batch: int, boxes: int):
        self.batch, self.boxes = batch, boxes
        self.kept: dict = {}

    def __call__(self, device: torch.device, reuse: bool) -> draws.PlanRows:
        if not reuse:
            return _empty_rows(self.batch, self.boxes, device)
        key = (device, torch._C._cuda_getCurrentRawStream(device.index) if device.type == "cuda" else 0)
        rows = self.kept.get(key)
        if rows is None:
            rows = self.kept[key] = _empty_rows(self.batch, self.boxes, device)
        return rows


def _empty_rows(batch: int, boxes: int, device):
    return draws.PlanRows(torch.empty(batch, dtype=torch.int64, device=device),
                          torch.empty(batch, dtype=torch.float32, device=device),
                          torch.empty(batch, dtype=torch.float32, device=device),
                          torch.empty(batch, boxes, 4, dtype=torch.int32, device=device),
                          torch.empty(batch, dtype=torch.float32, device=device),
                          torch.empty(batch, dtype=torch.int8, device=device))


def label_output(labels, batch: int, num_classes: int, device):
    """(label mode, the targets to write or None, the labels' row stride) for a sampler that
    writes the soft targets in the launch that draws the plan."""
    if labels is None or num_classes == 0:
        return NO_LABELS.value, None, 0
    mode = SOFT_LABELS.value if labels.dim() == 2 else INDEX_LABELS.value
    return mode, torch.empty(batch, num_classes, dtype=torch.float32, device=device), \
        labels.stride(0) if labels.dim() == 2 else 1


def label_arguments(labels, num_classes: int, smoothing: float):
    """(label mode, label row stride, on, off, keep) of the targets' formula (``kernels/targets.py``)."""
    if labels is None or num_classes == 0:
        return NO_LABELS.value, 0, 1.0, 0.0, 1.0
    mode = SOFT_LABELS.value if labels.dim() == 2 else INDEX_LABELS.value
    return (mode, labels.stride(0) if labels.dim() == 2 else 1) + smoothing_terms(smoothing, num_classes)


def block_k(num_classes: int, rows: int) -> int:
    """Classes a program's targets tile spans: about 4096 elements with ``rows`` rows."""
    return max(16, min(pow2_at_least(max(num_classes, 1)), 4096 // rows))


class MixupSampler:
    """The Mixup/CutMix sampler launch of one spec for one (batch, size): ``(PlanRows, targets or
    None)`` from a step's uniforms ``u``, in one launch. ``labels`` (class indices ``(B,)`` or soft
    ``(B, K)``, already checked) also get their soft targets in the same launch. The launch's
    grid, scalars and constexprs are derived once per (prob, offset, labels' kind, classes,
    smoothing) and the launch is bound (``kernels/launch.py``)."""

    def __init__(self, spec, batch: int, size):
        self.spec, self.batch = spec, batch
        self.height, self.width = size if size is not None else (1, 1)
        self.bounds = (0, 0, 0, 0)
        self.box = BOX_TIMM.value if spec.box_style == "timm" else BOX_TORCHVISION.value
        if spec.cutmix_minmax is not None:
            lo, hi = spec.cutmix_minmax
            self.bounds = (int(self.height * lo), int(self.height * hi), int(self.width * lo), int(self.width * hi))
            self.box = BOX_MINMAX.value
        self._bound: dict = {}
        self.rows = _Rows(batch, 1)

    def _launch(self, prob: float, offset: float, label_mode: int, num_classes: int, smoothing: float,
                label_stride: int) -> Bound:
        spec, batch = self.spec, self.batch
        if label_mode == NO_LABELS.value:
            block_b, block_k, grid = BLOCK_B, 1, (ceil_div(batch, BLOCK_B), 1)
        else:
            # a program a row: its plan recomputed (a few hundred flops) beside a 1-d run of classes;
            # rows x classes tiles would spill the float64 plan arithmetic
            block_b, block_k = 1, min(1024, pow2_at_least(num_classes))
            grid = (batch, ceil_div(num_classes, block_k))
        scalars = (batch, self.height, self.width, bits(spec.mixup_alpha if spec.mixup_alpha > 0 else 1.0),
                   bits(spec.cutmix_alpha if spec.cutmix_on else 1.0), bits(prob), bits(spec.switch_prob),
                   bits(offset), *self.bounds, num_classes, label_stride, *smoothing_terms(smoothing, num_classes))
        meta = dict(MODE=MODES[spec.mode], ROLL=spec.pairing == "roll", MIXUP_ON=spec.mixup_alpha > 0,
                    CUTMIX_ON=spec.cutmix_on, BOX=self.box, CORRECT=spec.correct_lam or spec.cutmix_minmax is not None,
                    LABELS=label_mode, BLOCK_B=block_b, BLOCK_K=block_k, num_warps=4)
        return Bound(_mixup_plan_kernel, grid, 9, scalars, meta)

    def __call__(self, u: torch.Tensor, prob: float, offset: float, labels, num_classes: int, smoothing: float,
                 reuse: bool = False):
        batch = self.batch
        rows = self.rows(u.device, reuse)
        label_mode, targets, label_stride = label_output(labels, batch, num_classes, u.device)
        if batch == 0:
            return rows, targets
        key = (prob, offset, label_mode, num_classes, smoothing, label_stride)
        launch = self._bound.get(key)
        if launch is None:
            if len(self._bound) >= 8:
                self._bound.clear()
            launch = self._bound[key] = self._launch(prob, offset, label_mode, num_classes, smoothing, label_stride)
        launch(u, u if labels is None else labels, *rows, rows.lam_self if targets is None else targets)
        return rows, targets


def mixup_plan(spec, u: torch.Tensor, batch: int, size, prob: float, offset: float, labels, num_classes: int,
               smoothing: float):
    """``(PlanRows, targets or None)`` of a Mixup/CutMix step from its uniforms ``u``: one launch
    (:class:`MixupSampler` made for this one call)."""
    return MixupSampler(spec, batch, size)(u, prob, offset, labels, num_classes, smoothing)


class EraseSampler:
    """Cutout's (``spec.n_holes``) or Erasing's sampler launch for one (batch, size):
    ``(PlanRows, noise seed or None)`` from the uniforms, one bound launch."""

    def __init__(self, spec, batch: int, size, with_seed: bool):
        height, width = size
        self.batch, self.with_seed = batch, with_seed
        self.cutout = hasattr(spec, "n_holes")
        self.holes = spec.n_holes if self.cutout else 1
        self.rows = _Rows(batch, self.holes)
        self.seeds: dict = {}
        grid = (ceil_div(batch, BLOCK_B),)
        if self.cutout:
            self.launch = Bound(_cutout_plan_kernel, grid, 7, (batch, height, width, spec.length // 2, bits(spec.p)),
                                dict(HOLES=spec.n_holes, BLOCK_B=BLOCK_B, num_warps=1))
        else:
            self.launch = Bound(_erasing_plan_kernel, grid, 8,
                                (batch, height, width, bits(spec.scale[0]), bits(spec.scale[1]),
                                 bits(math.log(spec.ratio[0])), bits(math.log(spec.ratio[1])), bits(spec.p)),
                                dict(ATTEMPTS=spec.attempts, SEED=with_seed, BLOCK_B=BLOCK_B, num_warps=1))

    def __call__(self, u: torch.Tensor, reuse: bool = False):
        rows = self.rows(u.device, reuse)
        seed = None
        if self.with_seed:
            key = (u.device, _stream_of(u.device))
            seed = self.seeds.get(key) if reuse else None
            if seed is None:
                seed = torch.empty(1, dtype=torch.int64, device=u.device)
                if reuse:
                    self.seeds[key] = seed
        if self.batch == 0:
            if seed is not None:   # no program runs (and no pixel is filled): the spec's seed
                seed = draws.noise_seed(u, draws.TORCH)
            return rows, seed
        if self.cutout:
            self.launch(u, *rows)
        else:
            self.launch(u, *rows, seed if seed is not None else u)
        return rows, seed


def erase_plan(spec, u: torch.Tensor, batch: int, size, with_seed: bool):
    """``(PlanRows, noise seed or None)`` of Cutout (``spec.n_holes``) or Erasing: one launch."""
    return EraseSampler(spec, batch, size, with_seed)(u)
