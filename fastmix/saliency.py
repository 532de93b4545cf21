"""SaliencyMix's saliency map and box, with torch ops: the specification ``kernels/saliency.py`` fuses.

The spectral-residual saliency of Hou & Zhang (CVPR 2007), batched on the images' device::

    F = fft2(gray)                      gray: BT.601 luma of RGB (OpenCV's RGB2GRAY weights), else
                                        the channel mean; video frames averaged first
    L = log(max(|F|, 1e-12))            log amplitude
    A = 3x3 mean of L                   replicated borders
    R = F * exp(L - A) / |F|            the residual with F's phase (F's angle when |F| = 0: R = exp(L - A))
    S = blur(|ifft2(R)|**2, sigma)      separable Gaussian, radius ceil(2 sigma), replicated borders

``R`` is ``polar(exp(L - A), angle(F))`` written without the angle (the same number, fewer ops:
``cos(angle F) = Re F / |F|``). The box is a CutMix box (timm's ``rand_bbox`` arithmetic) centred
on the argmax of ``S`` (the first in row-major order on ties; NaN counts as the largest, as
``torch.argmax`` has it). Computed at the image's own resolution (the paper's OpenCV code resizes).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as nnf

from . import family_draws
from .family_draws import partners_of
from .layout import spatial_size
from .partners import PERM
from .plan import Plan, drawn_cutmix_plan

# Luma weights (ITU-R BT.601) of an RGB image's grayscale, as OpenCV's RGB2GRAY uses them.
LUMA = (0.299, 0.587, 0.114)
FLOOR = 1e-12   # the smallest amplitude whose log is taken


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` float32: ``0.299 r + 0.587 g + 0.114 b`` (left to right, float32) of 3-channel
    images, the channel mean (a sum in channel order, then one division) otherwise; video frames
    ``(B, C, T, H, W)`` are averaged first (a sum in frame order, then one division)."""
    x = x.float()
    if x.dim() == 5:
        frames = x[:, :, 0]
        for t in range(1, x.shape[2]):
            frames = frames + x[:, :, t]
        x = frames / x.shape[2]
    if x.shape[1] == 3:
        return x[:, 0] * LUMA[0] + x[:, 1] * LUMA[1] + x[:, 2] * LUMA[2]
    total = x[:, 0]
    for c in range(1, x.shape[1]):
        total = total + x[:, c]
    return total / x.shape[1]


@functools.lru_cache(maxsize=16)
def gaussian_taps(sigma: float, device: torch.device) -> torch.Tensor:
    """``(2 r + 1,)`` float32 normalised Gaussian weights, ``r = ceil(2 sigma)`` (at least 1), made once."""
    radius = max(1, math.ceil(2.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).contiguous()


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, H, W)`` with replicated borders: along rows, then columns."""
    taps = gaussian_taps(float(sigma), image.device)
    radius = (taps.numel() - 1) // 2
    out = nnf.pad(image[:, None], (radius, radius, radius, radius), mode="replicate")
    out = nnf.conv2d(out, taps.view(1, 1, 1, -1))
    return nnf.conv2d(out, taps.view(1, 1, -1, 1))[:, 0]


def spectral_residual(spectrum: torch.Tensor) -> torch.Tensor:
    """``R`` of the module docstring from ``F`` ``(B, H, W)`` complex64."""
    parts = torch.view_as_real(spectrum)
    amplitude = torch.sqrt(parts[..., 0] * parts[..., 0] + parts[..., 1] * parts[..., 1])
    log_amplitude = torch.log(amplitude.clamp_min(FLOOR))
    smoothed = nnf.avg_pool2d(nnf.pad(log_amplitude[:, None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[:, 0]
    magnitude = torch.exp(log_amplitude - smoothed)
    gain = torch.where(amplitude > 0, magnitude / amplitude, 0.0)
    real = torch.where(amplitude > 0, parts[..., 0] * gain, magnitude)
    return torch.complex(real, parts[..., 1] * gain)


def spectral_residual_saliency(x: torch.Tensor, sigma: float = 2.5) -> torch.Tensor:
    """``(B, H, W)`` float32 spectral-residual saliency (the module docstring) of images ``x``
    ``(B, C, H, W)`` or video ``(B, C, T, H, W)``, batched on ``x``'s device."""
    gray = grayscale(x)
    back = torch.view_as_real(torch.fft.ifft2(spectral_residual(torch.fft.fft2(gray))))
    return gaussian_blur(back[..., 0] * back[..., 0] + back[..., 1] * back[..., 1], sigma)


def peaks(saliency: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64 row-major index of each map's maximum (the first on ties)."""
    return saliency.flatten(1).argmax(1)


def box_at(centre_y: torch.Tensor, centre_x: torch.Tensor, lam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, 4)`` int32 boxes ``[y0, y1, x0, x1]`` of side ``floor(extent * sqrt(1 - lam))`` around the
    given centres, clipped to the image: timm's ``rand_bbox`` arithmetic (rows
    ``[cy - cut // 2, cy + (cut + 1) // 2)``) with the centre given instead of drawn; float64."""
    ratio = torch.sqrt((1.0 - lam.double()).clamp(0.0, 1.0))
    sides = []
    for centre, extent in ((centre_y, size[0]), (centre_x, size[1])):
        cut = torch.floor(ratio * extent)
        centre = centre.double()
        sides += [(centre - torch.floor(cut / 2)).clamp(0, extent), (centre + torch.floor((cut + 1) / 2)).clamp(0, extent)]
    return torch.stack(sides, 1).to(torch.int32)


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------

def _saliency_boxes(x, peak_images, peak_rows, lam, live, size, sigma: float) -> torch.Tensor:
    """Boxes ``(B, 4)`` centred on the peaks of ``x[peak_images]``, taken per row by ``peak_rows``."""
    peak = peaks(spectral_residual_saliency(x.detach().index_select(0, peak_images), sigma))
    peak = peak.expand(lam.shape[0]) if peak_rows is None else peak[peak_rows]
    return box_at(peak // size[1], peak % size[1], lam, size) * live[:, None]


def saliency_plan(x: torch.Tensor, u: torch.Tensor, mode: str = "batch", pairing: str = PERM, beta: float = 1.0,
                  sigma: float = 2.5, prob: float = 1.0, offset: float = 0.0) -> Plan:
    """SaliencyMix's plan for images ``x`` from a step's uniforms ``u`` (``family_draws.uniform_count``),
    with torch ops on ``x``'s device: the specification (see the module docstring)."""
    batch, size, device = x.shape[0], spatial_size(x), x.device
    count = family_draws.units(mode, batch)
    lam, selected = family_draws.unit_draws(u, count, beta, prob, offset)
    partner, closed = partners_of(pairing, batch, family_draws.rotation(u, mode, batch, offset), device)
    if batch == 0:
        return drawn_cutmix_plan(torch.zeros(0, 4, dtype=torch.int32, device=device), size, partner, closed)
    live = partner != torch.arange(batch, device=device)
    if mode == "batch":
        lam, live = lam.expand(batch), live & selected
        box = _saliency_boxes(x, partner[:1], None, lam, live, size, sigma)
    else:
        box = _saliency_boxes(x, torch.arange(batch, device=device), partner, lam, live & selected, size, sigma)
    return drawn_cutmix_plan(box, size, partner, closed)


def saliency_host_plan(x: torch.Tensor, u: torch.Tensor, pairing: str, beta: float, sigma: float, prob: float,
                        offset: float) -> Plan:
    """:func:`saliency_plan` in ``mode="batch"`` on CPU tensors, lam, prob and the rotation on Python floats."""
    batch, size = x.shape[0], spatial_size(x)
    draw = family_draws.host_units(u[:family_draws.UNIT + 1].tolist(), batch, beta, prob, offset)
    partner, closed = partners_of(pairing, batch, draw.shift, "cpu")
    first = family_draws.partner_of_first(pairing, batch, draw.shift)
    if batch < 2 or not draw.selected:          # nothing mixes: no saliency to compute
        box = torch.zeros(batch, 4, dtype=torch.int32)
    else:
        live = partner != torch.arange(batch)
        box = _saliency_boxes(x, torch.tensor([first]), None, torch.full((batch,), draw.lam, dtype=torch.float64),
                              live, size, sigma)
    return drawn_cutmix_plan(box, size, partner, closed)
