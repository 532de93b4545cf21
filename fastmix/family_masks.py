"""FMix and SaliencyMix: mixes whose region is drawn from the images, applied as ordinary plans.

    fmix = FMix(alpha=1.0, decay_power=3.0, num_classes=1000)
    x, soft = fmix(x, y)                 # x mixed in place, soft (B, 1000) float32

Both are :class:`~fastmix.plan.Plan` s, so the kernels that apply Mixup and CutMix apply them in
the same one pass; only the drawing is new, and it runs on the batch's device for the whole batch
(``torch.fft``, sorts and pooling; no host round trip, no Python loop over samples):

- **FMix** (Harris et al., 2020): per sample ``lam ~ Beta(alpha, alpha)`` and a real field of
  random complex Fourier noise whose amplitude falls as ``1 / f ** decay_power``
  (:func:`fourier_noise`). The sample keeps its own pixels at the top ``round(lam * H * W)``
  values of its field and takes its partner's elsewhere (:func:`fmix_mask`; with ``max_soft > 0``
  the edge is a linear ramp over ranks, as in the paper). The plan copies the partner
  (``lam_self = 0, lam_partner = 1``) inside the region weight ``mask = rho = 1 - own``, and the
  label weight of the sample's own class is the exact mean of ``1 - rho``, its share of the output.
- **SaliencyMix** (Uddin et al., 2021): per sample ``lam ~ Beta(beta, beta)``; a CutMix box of
  side ``sqrt(1 - lam)`` (timm's ``rand_bbox`` arithmetic) centred on the peak of the *partner's*
  spectral-residual saliency (:func:`spectral_residual_saliency`), and the partner's box pasted
  at the same place. A plain box plan (:func:`~fastmix.plan.cutmix_plan`): label weight = the
  exact kept area of the clipped box.

Partners are a random permutation per step by default, as in both papers (``pairing="perm"``);
``"flip"`` (timm) and ``"roll"`` (torchvision) are closed forms the kernels walk without a table.
``prob`` is the per-sample probability of mixing; a sample that is not mixed, or is its own
partner, is left bit for bit as it is and keeps its own label.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as nnf

from . import _checks, ops
from .functional import apply
from .layout import spatial_size
from .partners import PERM, _ClosedForm, closed_form_partner
from .plan import CUTMIX, NONE, Plan, drawn, drawn_cutmix_plan
from .sampling import _stream, sample_beta, uniforms

__all__ = ["FMix", "SaliencyMix", "fourier_noise", "fmix_mask", "mask_plan", "spectral_residual_saliency",
           "box_at", "draw_partner", "PAIRINGS"]

PAIRINGS = (PERM, "flip", "roll")
# Luma weights (ITU-R BT.601) of an RGB image's grayscale, as OpenCV's RGB2GRAY uses them.
_LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------------------------
# shared draws: partners, which samples mix
# --------------------------------------------------------------------------------------------

def draw_partner(pairing: str, batch_size: int, device, generator: Optional[torch.Generator] = None):
    """``(partner, closed form or None)``: a random permutation (``"perm"``, one ``randperm`` on the
    device) or timm's flip / torchvision's roll in closed form."""
    if pairing == PERM:
        return torch.randperm(batch_size, device=device, generator=_stream(generator)), None
    return closed_form_partner(pairing, batch_size, device)


def _active(prob: float, partner: torch.Tensor, generator) -> torch.Tensor:
    """Rows that mix: drawn with probability ``prob`` and not their own partner."""
    rows = torch.arange(partner.shape[0], device=partner.device)
    active = partner != rows
    if prob < 1.0:
        active &= uniforms(partner.shape[0], partner.device, generator) < prob
    return active


# --------------------------------------------------------------------------------------------
# FMix
# --------------------------------------------------------------------------------------------

def fourier_noise(batch_size: int, size: tuple[int, int], decay_power: float, device=None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``(B, h, w)`` float32 low-pass noise: complex N(0, 1) coefficients on the real-FFT grid of
    ``size``, scaled by ``1 / max(f, 1 / max(h, w)) ** decay_power`` (``f`` the radial frequency in
    cycles per pixel), back through one batched inverse real FFT. Only the ranks of its values
    matter to :func:`fmix_mask`, so it is not normalised."""
    height, width = size
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)
    fx = torch.fft.rfftfreq(width, device=device, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    scale = radius.clamp_min(1.0 / max(height, width)).pow(-float(decay_power)).float()
    coefficients = torch.randn(batch_size, height, width // 2 + 1, 2, device=device, generator=_stream(generator))
    spectrum = torch.view_as_complex(coefficients) * scale
    return torch.fft.irfft2(spectrum, s=(height, width)).float()


def fmix_mask(noise: torch.Tensor, lam: torch.Tensor, max_soft: float = 0.0) -> torch.Tensor:
    """``(B, H, W)`` float32 share of each sample's *own* pixel, from its ``noise`` field ``(B, H, W)``.

    The ``n = round(lam * H * W)`` largest values (rounded half to even; ties by position) get 1,
    the rest 0. With ``max_soft > 0`` the edge is softened as in the FMix paper: with
    ``s = floor(H * W * min(max_soft, lam, 1 - lam))``, the ranks ``[n - s, n + s)`` ramp linearly
    from 1 to 0 (both ends included), so the mean share is still ``n / (H * W)``.
    """
    batch, height, width = noise.shape
    numel = height * width
    lam64 = lam.double().clamp(0.0, 1.0)
    count = torch.round(lam64 * numel)
    soft = torch.floor(numel * torch.minimum(torch.minimum(lam64, 1.0 - lam64), torch.full_like(lam64, max_soft)))
    low, high = (count - soft)[:, None], (count + soft)[:, None]
    order = torch.argsort(noise.reshape(batch, numel), dim=1, descending=True, stable=True)
    positions = torch.arange(numel, device=noise.device, dtype=torch.float64).expand(batch, numel)
    rank = torch.empty_like(positions).scatter_(1, order, positions)
    ramp = 1.0 - (rank - low) / (high - low - 1.0).clamp_min(1.0)
    own = torch.where(rank < low, 1.0, torch.where(rank >= high, 0.0, ramp))
    return own.float().view(batch, height, width)


def mask_plan(own: torch.Tensor, partner: Optional[torch.Tensor] = None, pairing: str = "flip",
              active: Optional[torch.Tensor] = None, closed: Optional[_ClosedForm] = None) -> Plan:
    """A plan that keeps a ``own`` ``(B, H, W)`` share of each sample's pixel and takes the rest
    from its partner: ``out = own * x + (1 - own) * x[partner]``, one pass, in place.

    Expressed as a copy of the partner (``lam_self = 0``, ``lam_partner = 1``) inside the region
    weight ``rho = 1 - own``; pixels with ``own == 1`` are left bit for bit. The label weight of
    the sample's own class is the exact mean of ``1 - rho`` (the share the blend gives it).
    ``partner`` defaults to ``pairing``'s closed form; rows with ``active`` False (default: all
    active) and rows that are their own partner do nothing and keep their label.
    """
    if own.dim() != 3:
        raise ValueError(f"own: expected (B, H, W), got shape {tuple(own.shape)}")
    batch, height, width = own.shape
    device = own.device
    if partner is None:
        partner, closed = closed_form_partner(pairing, batch, device)
    rows = torch.arange(batch, device=device)
    live = partner != rows
    if active is not None:
        live = live & active
    rho = torch.where(live[:, None, None], 1.0 - own.float().clamp(0.0, 1.0), 0.0).contiguous()
    touched = live & (rho > 0).flatten(1).any(1)
    box = torch.zeros(batch, 1, 4, dtype=torch.int32, device=device)
    box[:, 0, 1], box[:, 0, 3] = height, width
    box = box * touched[:, None, None]
    label_lam = (1.0 - rho.double()).mean((1, 2)).float()
    zero = torch.zeros(batch, device=device)
    return Plan(partner=partner, lam_self=zero, lam_partner=torch.where(touched, 1.0, 0.0), box=box,
                label_lam=label_lam, kind=torch.where(touched, CUTMIX, NONE).to(torch.int8),
                size=(height, width), mask=rho, _closed=closed)


def _check_pairing(pairing) -> str:
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing: expected one of {PAIRINGS}, got {pairing!r}")
    return pairing


FAMILY_MODES = ("batch", "elem")


class _FamilyArguments:
    """The arguments every family member checks alike: ``mode``, ``prob``, the targets' and
    ``generator``. ``mode`` is timm's: ``"batch"`` draws once for the batch (the papers' draw: one
    boundary, one λ or set of weights, one mask, one scale), ``"elem"`` once per sample."""

    def __init__(self, prob, label_smoothing, num_classes, generator, validate=None, mode="batch"):
        if mode not in FAMILY_MODES:
            raise ValueError(f"mode: expected 'batch' (one draw per batch) or 'elem' (per sample), got {mode!r}")
        self.mode = mode
        self.prob = _checks.probability("prob", prob)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, low=0.0, high=1.0,
                                              high_open=True)
        self.num_classes = _checks.integer("num_classes", num_classes, low=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.validate = validate


class _MixArguments(_FamilyArguments):
    """The family members with one partner per sample: ``pairing`` too."""

    def __init__(self, prob, pairing, label_smoothing, num_classes, generator, validate):
        super().__init__(prob, label_smoothing, num_classes, generator, validate)
        self.pairing = _check_pairing(pairing)


class _ImageMix(_MixArguments):
    """What FMix and SaliencyMix share: the arguments, the plan, the call."""

    def plan(self, x: torch.Tensor) -> Plan:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        """``(x mixed, soft targets (B, num_classes) float32)``: in place, or out of place and
        differentiable when ``x`` requires grad. ``target``: class indices ``(B,)`` or soft ``(B, K)``."""
        _checks.batch("x", x, dims=(4, 5), writable=not ops.grad_wanted(x))
        classes = _checks.labels("target", target, x.shape[0], self.num_classes, x.device,
                                 _checks.default_validate(self.validate, x.device))
        plan = self.plan(x)
        soft = ops.targets_of(target, plan, classes, self.label_smoothing)
        return apply(x, plan), soft


class FMix(_ImageMix):
    """FMix (Harris et al., 2020, "FMix: Enhancing Mixed Sample Data Augmentation") on a batch.

    Args:
        alpha: ``lam ~ Beta(alpha, alpha)`` per sample, the share of a sample's own pixels.
        decay_power: ``δ`` of the noise's ``1 / f ** δ`` amplitude; larger gives smoother masks.
        max_soft: half-width of the softened edge as a fraction of the pixels (0: binary masks).
        size: ``(h, w)`` of the Fourier grid; None (default) uses the batch's ``(H, W)``. Another
            size draws the field there and resizes it bilinearly to ``(H, W)`` before the ranks are
            taken, so the pixel count stays exact.
        prob: probability that a sample is mixed.
        pairing: ``"perm"`` (a random permutation per step, as in the paper), ``"flip"`` or ``"roll"``.
        label_smoothing, num_classes, generator, validate: as :class:`fastmix.Mixup`.

    ``fmix(x, target)`` returns ``(x, soft)``; ``fmix.plan(x)`` draws the plan only.
    """

    def __init__(self, alpha: float = 1.0, decay_power: float = 3.0, max_soft: float = 0.0,
                 size: Optional[Sequence[int]] = None, *, prob: float = 1.0, pairing: str = PERM,
                 label_smoothing: float = 0.0, num_classes: int = 1000,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        super().__init__(prob, pairing, label_smoothing, num_classes, generator, validate)
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)
        self.decay_power = _checks.number("decay_power", decay_power, low=0.0)
        self.max_soft = _checks.number("max_soft", max_soft, low=0.0, high=0.5)
        if size is not None:
            if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
                raise ValueError(f"size: expected (h, w) or None, got {size!r}")
            size = tuple(_checks.integer("size", side, low=1) for side in size)
        self.size = size

    def plan(self, x: torch.Tensor) -> Plan:
        """Draw this step's plan for batch ``x`` ``(B, C, H, W)`` or ``(B, C, T, H, W)``."""
        batch, size, device = x.shape[0], spatial_size(x), x.device
        lam = sample_beta(self.alpha, batch, device, self.generator)
        noise = fourier_noise(batch, self.size or size, self.decay_power, device, self.generator)
        if tuple(noise.shape[-2:]) != size:
            noise = nnf.interpolate(noise[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        partner, closed = draw_partner(self.pairing, batch, device, self.generator)
        return drawn(mask_plan(fmix_mask(noise, lam, self.max_soft), partner,
                               active=_active(self.prob, partner, self.generator), closed=closed))


# --------------------------------------------------------------------------------------------
# SaliencyMix
# --------------------------------------------------------------------------------------------

def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` float32: BT.601 luma of 3-channel images, the channel mean otherwise; video
    frames ``(B, C, T, H, W)`` are averaged."""
    x = x.float()
    if x.dim() == 5:
        x = x.mean(2)
    if x.shape[1] == 3:
        weights = torch.tensor(_LUMA, device=x.device, dtype=torch.float32)
        return torch.einsum("bchw,c->bhw", x, weights)
    return x.mean(1)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, H, W)`` with replicated borders (kernel radius ``ceil(2 sigma)``)."""
    radius = max(1, math.ceil(2.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=image.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = nnf.pad(image[:, None], (radius, radius, radius, radius), mode="replicate")
    out = nnf.conv2d(out, kernel.view(1, 1, 1, -1))
    return nnf.conv2d(out, kernel.view(1, 1, -1, 1))[:, 0]


def spectral_residual_saliency(x: torch.Tensor, sigma: float = 2.5) -> torch.Tensor:
    """``(B, H, W)`` float32 spectral-residual saliency (Hou & Zhang, CVPR 2007) of each image, batched
    on ``x``'s device: grayscale, ``log |F|`` minus its 3x3 box-filtered version (replicated
    borders), back through the inverse FFT with the original phase, squared magnitude, Gaussian
    blur (``sigma`` pixels; the method's 2.5). Computed at the batch's own resolution."""
    gray = _grayscale(x)
    spectrum = torch.fft.fft2(gray)
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-12))
    smoothed = nnf.avg_pool2d(nnf.pad(log_amplitude[:, None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[:, 0]
    residual = torch.polar(torch.exp(log_amplitude - smoothed), spectrum.angle())
    saliency = torch.fft.ifft2(residual).abs() ** 2
    return _gaussian_blur(saliency, sigma)


def box_at(centre_y: torch.Tensor, centre_x: torch.Tensor, lam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, 4)`` int32 boxes ``[y0, y1, x0, x1]`` of side ``floor(extent * sqrt(1 - lam))`` around the
    given centres, clipped to the image: timm's ``rand_bbox`` arithmetic (rows
    ``[cy - cut // 2, cy + (cut + 1) // 2)``) with the centre given instead of drawn."""
    ratio = torch.sqrt((1.0 - lam.double()).clamp(0.0, 1.0))
    sides = []
    for centre, extent in ((centre_y, size[0]), (centre_x, size[1])):
        cut = torch.floor(ratio * extent)
        centre = centre.double()
        sides += [(centre - torch.floor(cut / 2)).clamp(0, extent), (centre + torch.floor((cut + 1) / 2)).clamp(0, extent)]
    return torch.stack(sides, 1).to(torch.int32)


class SaliencyMix(_ImageMix):
    """SaliencyMix (Uddin et al., ICLR 2021) on a batch: CutMix with the box on the partner's saliency peak.

    Args:
        beta: ``lam ~ Beta(beta, beta)`` per sample; the box has side ``sqrt(1 - lam)`` of the image.
        sigma: the saliency map's Gaussian blur, in pixels.
        prob, pairing, label_smoothing, num_classes, generator, validate: as :class:`FMix`.

    Each sample's box is centred on the argmax of its partner's
    :func:`spectral_residual_saliency` (the first in row-major order on ties), and the partner's
    pixels in that box replace its own; the label weight is the exact kept area of the clipped box.
    """

    def __init__(self, beta: float = 1.0, *, sigma: float = 2.5, prob: float = 1.0, pairing: str = PERM,
                 label_smoothing: float = 0.0, num_classes: int = 1000,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        super().__init__(prob, pairing, label_smoothing, num_classes, generator, validate)
        self.beta = _checks.alpha("beta", beta, allow_zero=False)
        self.sigma = _checks.number("sigma", sigma, low=0.0, low_open=True)

    def plan(self, x: torch.Tensor) -> Plan:
        """Draw this step's plan for batch ``x`` ``(B, C, H, W)`` or ``(B, C, T, H, W)``."""
        batch, size, device = x.shape[0], spatial_size(x), x.device
        lam = sample_beta(self.beta, batch, device, self.generator)
        partner, closed = draw_partner(self.pairing, batch, device, self.generator)
        peak = spectral_residual_saliency(x, self.sigma).flatten(1).argmax(1)[partner]
        box = box_at(peak // size[1], peak % size[1], lam, size)
        box = box * _active(self.prob, partner, self.generator)[:, None]
        # sampled boxes and partner: nothing to read back (a closed form keeps its table-free walk)
        return drawn_cutmix_plan(box, size, partner, closed)
