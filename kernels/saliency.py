"""SaliencyMix's sampler as Triton kernels around two batched FFTs: eight launches a step.

    torch.rand                  the step's uniforms (fastmix/family_draws.py)
    _gray_kernel                the grayscale of the images whose saliency is needed, as complex
                                values: every image in mode="elem", the partner of row 0 in "batch"
    torch.fft.fft2              F
    _residual_kernel            R = F exp(L - A) / |F|, L = log max(|F|, 1e-12), A its 3x3 mean
    torch.fft.ifft2
    _blur_rows_kernel           |ifft2(R)|**2 blurred along rows
    _peak_kernel                blurred along columns, its argmax, and the plan rows whose box is
                                centred there (each row with its partner's peak), with the soft
                                targets and the blend's cycle table
    the blend                   kernels/blend.py

``fastmix/saliency.py`` is the specification, in the same float32 order of operations where the
operations are elementwise; the FFTs are the same torch calls, so the saliency maps agree to float32
rounding (the logarithm and exponential of a library and of libdevice may differ in the last bit)
and the boxes agree wherever the peak is unique beyond that rounding.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmix import family_draws
from fastmix.saliency import FLOOR as _FLOOR, gaussian_taps

from .draws import bits, f64
from .launch import Bound
from .sample import block_k, label_arguments
from .sample_masks import (KIND_CUTMIX, KIND_NONE, NO_LABELS, PAIR_PERM, PAIRINGS,
                           mixed_rows, order_key, partner_of, plan_tensors, rotation, row_of_partner,
                           store_rotation_cycles, store_rows, store_targets)
from .walk import ceil_div, pow2_at_least

FLOOR = tl.constexpr(_FLOOR)     # the smallest amplitude whose log is taken


@triton.jit
def _frame(ptr, frames, stride_t, VIDEO: tl.constexpr, mask):
    """One channel of a pixel, float32; video: the mean of its frames (a sum in frame order)."""
    value = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
    if VIDEO:
        for t in range(1, frames):
            value += tl.load(ptr + t * stride_t, mask=mask, other=0.0).to(tl.float32)
        value = value / frames
    return value


@triton.jit
def _gray_kernel(x_ptr, u_ptr, out_ptr, batch, units, channels, frames, height, width,
                 stride_b, stride_c, stride_t, stride_h, stride_w, offset,
                 PAIRING: tl.constexpr, ELEM: tl.constexpr, LUMA: tl.constexpr, VIDEO: tl.constexpr,
                 BLOCK: tl.constexpr):
    """``saliency.grayscale`` of image ``m`` (elem) or of row 0's partner (batch), as complex ``(v, 0)``."""
    m = tl.program_id(0)
    if ELEM:
        image = m.to(tl.int64)
    else:
        image = partner_of(m * 0, batch, rotation(u_ptr, units, batch, f64(offset)), PAIRING)
    pixel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = pixel < height * width
    y = (pixel // width).to(tl.int64)
    x = (pixel % width).to(tl.int64)
    ptr = x_ptr + image * stride_b + y * stride_h + x * stride_w
    if LUMA:
        value = _frame(ptr, frames, stride_t, VIDEO, inside) * 0.299
        value = value + _frame(ptr + stride_c, frames, stride_t, VIDEO, inside) * 0.587
        value = value + _frame(ptr + 2 * stride_c, frames, stride_t, VIDEO, inside) * 0.114
    else:
        value = _frame(ptr, frames, stride_t, VIDEO, inside)
        for c in range(1, channels):
            value = value + _frame(ptr + c * stride_c, frames, stride_t, VIDEO, inside)
        value = value / channels
    out = out_ptr + (m.to(tl.int64) * height * width + pixel) * 2
    tl.store(out, value, mask=inside)
    tl.store(out + 1, tl.zeros([BLOCK], tl.float32), mask=inside)


@triton.jit
def _log_amplitude(f_ptr, q):
    re = tl.load(f_ptr + 2 * q)
    im = tl.load(f_ptr + 2 * q + 1)
    return tl.log(tl.maximum(tl.sqrt(re * re + im * im), FLOOR))


@triton.jit
def _residual_kernel(f_ptr, out_ptr, height, width, BLOCK: tl.constexpr):
    """``saliency.spectral_residual``: the 3x3 mean of L with replicated borders, summed in row-major order."""
    base = tl.program_id(0).to(tl.int64) * height * width
    pixel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = pixel < height * width
    pixel = tl.where(inside, pixel, 0)
    y = pixel // width
    x = pixel % width
    total = tl.zeros([BLOCK], tl.float32)
    for dy in tl.static_range(3):
        row = tl.minimum(tl.maximum(y + dy - 1, 0), height - 1)
        for dx in tl.static_range(3):
            total += _log_amplitude(f_ptr, base + row * width + tl.minimum(tl.maximum(x + dx - 1, 0), width - 1))
    smoothed = total / 9.0
    re = tl.load(f_ptr + 2 * (base + pixel))
    im = tl.load(f_ptr + 2 * (base + pixel) + 1)
    amplitude = tl.sqrt(re * re + im * im)
    magnitude = tl.exp(tl.log(tl.maximum(amplitude, FLOOR)) - smoothed)
    gain = tl.where(amplitude > 0, magnitude / amplitude, 0.0)
    out = out_ptr + 2 * (base + pixel)
    tl.store(out, tl.where(amplitude > 0, re * gain, magnitude), mask=inside)
    tl.store(out + 1, im * gain, mask=inside)


@triton.jit
def _blur_rows_kernel(z_ptr, taps_ptr, out_ptr, height, width, RADIUS: tl.constexpr, BLOCK: tl.constexpr):
    """``|z|**2`` blurred along rows: ``sum_k taps[k] |z(y, clamp(x + k - RADIUS))|**2``."""
    base = tl.program_id(0).to(tl.int64) * height * width
    pixel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = pixel < height * width
    y = pixel // width
    x = pixel % width
    total = tl.zeros([BLOCK], tl.float32)
    for k in tl.static_range(2 * RADIUS + 1):
        q = base + y * width + tl.minimum(tl.maximum(x + k - RADIUS, 0), width - 1)
        re = tl.load(z_ptr + 2 * q, mask=inside, other=0.0)
        im = tl.load(z_ptr + 2 * q + 1, mask=inside, other=0.0)
        total += tl.load(taps_ptr + k) * (re * re + im * im)
    tl.store(out_ptr + base + pixel, total, mask=inside)


@triton.jit
def _peak_kernel(
    rows_ptr, taps_ptr, u_ptr, labels_ptr,
    partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr,
    walk_ptr, start_ptr, seg_ptr, target_ptr,
    batch, units, height, width, beta, prob, offset, num_classes, label_stride, on, off, keep,
    PAIRING: tl.constexpr, ELEM: tl.constexpr, LABELS: tl.constexpr, RADIUS: tl.constexpr,
    BLOCK: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Map ``m``'s column blur and its argmax (``saliency.peaks``), then the rows whose partner is
    image ``m`` (elem: one; batch: every row, all centred on row 0's partner's peak)."""
    m = tl.program_id(0)
    base = m.to(tl.int64) * height * width
    rotation_offset = f64(offset)
    shift = rotation(u_ptr, units, batch, rotation_offset)
    # -- the peak: the first pixel of the largest blurred value --
    best = tl.zeros([], tl.int64) - 1
    best_at = tl.zeros([], tl.int32)
    for start in range(0, height * width, BLOCK):
        pixel = start + tl.arange(0, BLOCK)
        inside = pixel < height * width
        y = pixel // width
        x = pixel % width
        total = tl.zeros([BLOCK], tl.float32)
        for k in tl.static_range(2 * RADIUS + 1):
            q = base + tl.minimum(tl.maximum(y + k - RADIUS, 0), height - 1) * width + x
            total += tl.load(taps_ptr + k) * tl.load(rows_ptr + q, mask=inside, other=0.0)
        key = tl.where(inside, order_key(total), -1)
        top = tl.max(key, 0)
        at = tl.min(tl.where(key == top, pixel, height * width), 0)
        better = top > best
        best_at = tl.where(better, at, best_at)
        best = tl.where(better, top, best)
    centre_y = (best_at // width).to(tl.float64)
    centre_x = (best_at % width).to(tl.float64)
    heights = tl.cast(height, tl.float64)
    widths = tl.cast(width, tl.float64)
    # -- the rows centred on it --
    if ELEM:
        lo = row_of_partner(m.to(tl.int64), batch, shift, PAIRING)
        hi = lo + 1
    else:
        lo = tl.zeros([], tl.int64)
        hi = lo + batch
    for r0 in range(lo, hi, BLOCK_B):
        rows = r0 + tl.arange(0, BLOCK_B)
        in_rows = rows < hi
        lam, partner, live = mixed_rows(u_ptr, rows, in_rows, batch, shift, rotation_offset, f64(beta), f64(prob),
                                        PAIRING, ELEM)
        # saliency.box_at: timm's rand_bbox sides around the peak, clipped; float64
        ratio = tl.sqrt(tl.minimum(tl.maximum(1.0 - lam, 0.0), 1.0))
        cut_h = tl.floor(ratio * heights)
        cut_w = tl.floor(ratio * widths)
        y0 = tl.minimum(tl.maximum(centre_y - tl.floor(cut_h / 2), 0.0), heights)
        y1 = tl.minimum(tl.maximum(centre_y + tl.floor((cut_h + 1.0) / 2), 0.0), heights)
        x0 = tl.minimum(tl.maximum(centre_x - tl.floor(cut_w / 2), 0.0), widths)
        x1 = tl.minimum(tl.maximum(centre_x + tl.floor((cut_w + 1.0) / 2), 0.0), widths)
        # plan._cutmix_assembled: the kept share in float32, a row cut where it is below 1
        area = tl.where(live, (y1 - y0) * (x1 - x0), 0.0)
        label = 1.0 - (area / (heights * widths)).to(tl.float32)
        cut = live & (label < 1.0)
        zero = lam * 0.0
        lam_self = tl.where(cut, 0.0, 1.0)
        store_rows(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, in_rows,
                   partner, lam_self, 1.0 - lam_self, tl.where(cut, y0, zero), tl.where(cut, y1, zero),
                   tl.where(cut, x0, zero), tl.where(cut, x1, zero), tl.where(cut, label, 1.0),
                   tl.where(cut, KIND_CUTMIX, KIND_NONE))
        if LABELS != NO_LABELS:
            store_targets(labels_ptr, target_ptr, rows, in_rows, partner, tl.where(cut, label, 1.0), num_classes,
                          label_stride, on, off, keep, LABELS, BLOCK_K)
    if PAIRING == PAIR_PERM:
        if m == 0:
            for j0 in range(0, batch + 1, BLOCK_T):
                store_rotation_cycles(walk_ptr, start_ptr, seg_ptr, (j0 + tl.arange(0, BLOCK_T)).to(tl.int64), batch,
                                      shift)


# --------------------------------------------------------------------------------------------
# launcher
# --------------------------------------------------------------------------------------------

BLOCK = 1024


class SaliencySampler:
    """SaliencyMix's sampler for one (batch, size, mode, pairing, beta, sigma) on one device:
    :meth:`__call__` turns a batch and a step's uniforms into ``(rows, cycles or None, targets or
    None)`` with five launches and two FFTs; each launch is bound once per signature of ``x``."""

    def __init__(self, batch: int, size, mode: str, pairing: str, beta: float, sigma: float, device):
        self.batch, self.size, self.mode, self.pairing = batch, tuple(size), mode, pairing
        self.beta = beta
        self.units = family_draws.units(mode, batch)
        self.masks = family_draws.masks(mode, batch)
        self.taps = gaussian_taps(float(sigma), torch.device(device))
        self.radius = (self.taps.numel() - 1) // 2
        height, width = size
        tiles = ceil_div(height * width, BLOCK)
        self.residual = Bound(_residual_kernel, (self.masks, tiles), 2, (height, width), dict(BLOCK=BLOCK, num_warps=4))
        self.blur = Bound(_blur_rows_kernel, (self.masks, tiles), 3, (height, width),
                          dict(RADIUS=self.radius, BLOCK=BLOCK, num_warps=4))
        self._gray: dict = {}
        self._peak: dict = {}

    def _gray_launch(self, x: torch.Tensor, offset: float) -> Bound:
        key = (x.dtype, x.stride(), x.dim(), offset)
        launch = self._gray.get(key)
        if launch is None:
            video = x.dim() == 5
            channels, frames = x.shape[1], x.shape[2] if video else 1
            strides = x.stride()
            scalars = (self.batch, self.units, channels, frames, *self.size, strides[0], strides[1],
                       strides[2] if video else 0, strides[-2], strides[-1], bits(offset))
            meta = dict(PAIRING=PAIRINGS[self.pairing], ELEM=self.mode == "elem", LUMA=channels == 3, VIDEO=video,
                        BLOCK=BLOCK, num_warps=4)
            if len(self._gray) >= 8:
                self._gray.clear()
            launch = self._gray[key] = Bound(_gray_kernel, (self.masks, ceil_div(self.size[0] * self.size[1], BLOCK)),
                                             3, scalars, meta)
        return launch

    def _peak_launch(self, prob: float, offset: float, label_mode: int, num_classes: int, stride: int, on: float,
                     off: float, keep: float) -> Bound:
        key = (prob, offset, label_mode, num_classes, stride, on, off)
        launch = self._peak.get(key)
        if launch is None:
            rows = 1 if self.mode == "elem" else min(32, pow2_at_least(max(self.batch, 1)))
            scalars = (self.batch, self.units, *self.size, bits(self.beta), bits(prob), bits(offset), num_classes,
                       stride, on, off, keep)
            meta = dict(PAIRING=PAIRINGS[self.pairing], ELEM=self.mode == "elem", LABELS=label_mode,
                        RADIUS=self.radius, BLOCK=BLOCK, BLOCK_B=rows, BLOCK_K=block_k(num_classes, rows),
                        BLOCK_T=128, num_warps=4)
            if len(self._peak) >= 8:
                self._peak.clear()
            launch = self._peak[key] = Bound(_peak_kernel, (self.masks,), 14, scalars, meta)
        return launch

    def __call__(self, x: torch.Tensor, u: torch.Tensor, prob: float, offset: float, labels=None,
                 num_classes: int = 0, smoothing: float = 0.0):
        batch, device = self.batch, u.device
        rows, cycles = plan_tensors(batch, device, self.pairing == "perm")
        label_mode, stride, on, off, keep = label_arguments(labels, num_classes, smoothing)
        targets = None if label_mode == NO_LABELS.value else torch.empty(batch, num_classes, dtype=torch.float32,
                                                                         device=device)
        if batch == 0:
            return rows, cycles, targets
        height, width = self.size
        gray = torch.empty(self.masks, height, width, 2, dtype=torch.float32, device=device)
        self._gray_launch(x, offset)(x, u, gray)
        spectrum = torch.view_as_real(torch.fft.fft2(torch.view_as_complex(gray)))
        residual = torch.empty_like(gray)
        self.residual(spectrum, residual)
        back = torch.view_as_real(torch.fft.ifft2(torch.view_as_complex(residual)))
        blurred = torch.empty(self.masks, height, width, dtype=torch.float32, device=device)
        self.blur(back, self.taps, blurred)
        table = cycles if cycles is not None else (u, u, u)
        self._peak_launch(prob, offset, label_mode, num_classes, stride, on, off, keep)(
            blurred, self.taps, u, u if labels is None else labels, *rows, *table, targets if targets is not None else u)
        return rows, cycles, targets
