"""Samplers: what each transform draws, validated once and then only drawn.

Each operation has a *spec* — a frozen dataclass of its arguments, built by ``Spec.checked(...)``,
which applies every rule about them in one place (kornia's ``make_samplers`` idea) — and a
``draw(batch_size, size, device, generator)`` that returns a :class:`~fastmix.plan.Plan`. The
transforms (``fastmix.Mixup``, ``fastmix.v2``, ``Cutout``, ``RandomErasing``) and the functional
samplers (``fastmix.functional.mixup_cutmix_plan`` ...) both go through the specs.

Draws use tensor operations only, on ``device``: no numpy, no ``.item()``, nothing read back to
the host, so a training step on a GPU never waits for them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

import torch

from . import _checks
from .plan import (FLIP, ROLL, Plan, assemble, box_area_fraction, closed_form_partner, erase_plan)

Generator = Optional[torch.Generator]
DeviceLike = Union[torch.device, str, None]

MODES = ("batch", "pair", "elem")
BOX_STYLES = ("timm", "torchvision")


# --------------------------------------------------------------------------------------------
# random draws on the device
# --------------------------------------------------------------------------------------------

def _uniform(n: int, device, generator: Generator) -> torch.Tensor:
    return torch.rand(n, device=device, generator=generator)


def _uniform_int(high, generator: Generator, n: Optional[int] = None, device=None) -> torch.Tensor:
    """Integers uniform in ``[0, high)``: ``high`` a tensor of per-sample bounds (each >= 1), or an
    int with ``n`` and ``device`` (then no bound tensor is built)."""
    if isinstance(high, int):
        u = torch.rand(n, device=device, generator=generator, dtype=torch.float64)
        return (u * high).floor().long().clamp_max(high - 1)
    u = torch.rand(high.shape, device=high.device, generator=generator, dtype=torch.float64)
    return torch.minimum((u * high).floor().long(), high.long() - 1)


def sample_beta(alpha: Union[float, Sequence[float]], n: int, device: DeviceLike = None,
                generator: Generator = None) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) as float32 (``(len(alpha), n)`` for several alphas at once).

    In log space: Gamma(a) = Gamma(a + 1) * U**(1/a), so log G = log Gamma(a + 1) + log(U) / a
    never underflows, and λ = sigmoid(log G0 - log G1). (Dividing two float32 Gamma(a) draws
    returns 0/0 for small a: at a = 0.01 a sixth of them.) Several alphas share every launch.
    """
    alphas = [float(alpha)] if _checks.is_number(alpha) else [float(a) for a in alpha]
    shape = (len(alphas), 2, n)
    conc = torch.full(shape, alphas[-1] + 1.0, device=device)
    inv = torch.full((len(alphas), 1, 1), 1.0 / alphas[-1], device=device)
    for k, a in enumerate(alphas[:-1]):
        conc[k].fill_(a + 1.0)          # fills, not a host-built tensor (no host-to-device copy)
        inv[k].fill_(1.0 / a)
    g = torch._standard_gamma(conc, generator=generator)
    u = torch.rand(shape, device=device, generator=generator).clamp_min_(torch.finfo(torch.float32).tiny)
    log_g = torch.log(g).add_(torch.log(u).mul_(inv))
    lam = torch.sigmoid(log_g[:, 0] - log_g[:, 1])
    return lam[0] if _checks.is_number(alpha) else lam


def _sizes(size: tuple[int, int], device) -> torch.Tensor:
    """``[[H], [W]]`` as float64 on the device, by fills (no host-to-device copy)."""
    out = torch.full((2, 1), float(size[0]), dtype=torch.float64, device=device)
    out[1].fill_(float(size[1]))
    return out


def box_from_lam(lam: torch.Tensor, size: tuple[int, int], generator: Generator = None,
                 style: str = "timm") -> torch.Tensor:
    """A CutMix box of side ``sqrt(1 - lam)`` of the image around a uniform centre, clipped.

    ``style="timm"`` is timm's ``rand_bbox``: side ``cut = int(H * sqrt(1 - lam))``, rows
    ``[cy - cut // 2, cy + (cut + 1) // 2)``. ``style="torchvision"`` is ``v2.CutMix``: half-side
    ``int(0.5 * sqrt(1 - lam) * H)``, rows ``[cy - half, cy + half)``. Returns ``(n, 4)`` int32
    ``[y0, y1, x0, x1]``. Both axes are computed together as ``(2, n)`` tensors.
    """
    if style not in BOX_STYLES:
        raise ValueError(f"style: expected 'timm' or 'torchvision', got {style!r}")
    sizes = _sizes(size, lam.device)
    ratio = torch.sqrt((1.0 - lam.double()).clamp_min_(0.0))
    centre = (torch.rand((2, lam.shape[0]), dtype=torch.float64, device=lam.device, generator=generator)
              .mul_(sizes).floor_().minimum(sizes - 1))
    if style == "timm":
        cut = (ratio * sizes).floor_()
        low, high = (cut * 0.5).floor_(), ((cut + 1) * 0.5).floor_()
    else:
        low = high = (ratio * (sizes * 0.5)).floor_()
    start = (centre - low).clamp_min_(0).minimum(sizes)
    end = (centre + high).clamp_min_(0).minimum(sizes)
    return torch.stack([start[0], end[0], start[1], end[1]], 1).to(torch.int32)


def minmax_sides(size: tuple[int, int], minmax: Sequence[float]) -> tuple[int, int, int, int]:
    """timm's side bounds ``[lo, hi)`` in pixels for ``cutmix_minmax``: ``(lo_h, hi_h, lo_w, hi_w)``."""
    height, width = size
    sides = (int(height * minmax[0]), int(height * minmax[1]), int(width * minmax[0]), int(width * minmax[1]))
    if sides[1] <= sides[0] or sides[3] <= sides[2]:
        raise ValueError(f"cutmix_minmax: {tuple(minmax)} leaves no box size to draw on a {height}x{width} image")
    return sides


def box_from_minmax(n: int, size: tuple[int, int], minmax: Sequence[float], device: DeviceLike = None,
                    generator: Generator = None) -> torch.Tensor:
    """timm's ``rand_bbox_minmax``: box sides uniform in ``[min, max)`` of the image, fully inside
    it (top-left corner uniform in ``[0, H - side]``)."""
    height, width = size
    lo_h, hi_h, lo_w, hi_w = minmax_sides(size, minmax)
    cut_h = lo_h + _uniform_int(hi_h - lo_h, generator, n, device)
    cut_w = lo_w + _uniform_int(hi_w - lo_w, generator, n, device)
    y0 = _uniform_int(height - cut_h + 1, generator)
    x0 = _uniform_int(width - cut_w + 1, generator)
    return torch.stack([y0, y0 + cut_h, x0, x0 + cut_w], 1).to(torch.int32)


def _per_row(unit_values, mode: str, batch_size: int):
    """Per-draw values as per-row values: broadcast one draw, or give pair i's draw to rows i and B-1-i."""
    out = []
    for v in unit_values:
        if v is None or mode == "elem":
            out.append(v)
        elif mode == "batch":
            out.append(v.expand(batch_size, *v.shape[1:]))
        else:
            out.append(torch.cat([v, v[:batch_size // 2].flip(0)]))
    return out


def _fill_tensor(value, n: int, device) -> torch.Tensor:
    """``(n, 1)`` or ``(n, C)`` float32, made by fills on the device (no host-to-device copy)."""
    values = (value,) if isinstance(value, float) else value
    return torch.cat([torch.full((n, 1), v, dtype=torch.float32, device=device) for v in values], 1)


# --------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------

class _Spec:
    def replace(self, **changes):
        """A re-checked copy with some arguments changed."""
        return self.checked(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


@dataclass(frozen=True)
class MixupSpec(_Spec):
    """What a Mixup/CutMix step draws, with timm's ``Mixup`` semantics (torchvision's with
    ``pairing="roll", box_style="torchvision"``).

    ``mode`` decides how many independent draws there are: one for the batch (``"batch"``), one
    per flipped pair (``"pair"``), one per sample (``"elem"``). Each draw applies with
    probability ``prob``; when both Mixup and CutMix are on it is CutMix with probability
    ``switch_prob``; λ ~ Beta(alpha, alpha); a CutMix box has side ``sqrt(1 - λ)`` (or sides from
    ``cutmix_minmax``, which turns CutMix on with alpha 1, as timm does) and with ``correct_lam``
    (always with minmax) the label weight is the exact fraction of pixels kept.
    """

    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: Optional[tuple[float, float]] = None
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = "batch"
    correct_lam: bool = True
    pairing: str = FLIP
    box_style: str = "timm"

    @classmethod
    def checked(cls, mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                mode="batch", correct_lam=True, pairing=FLIP, box_style="timm") -> "MixupSpec":
        mixup_alpha = _checks.alpha("mixup_alpha", mixup_alpha, allow_zero=True)
        cutmix_alpha = _checks.alpha("cutmix_alpha", cutmix_alpha, allow_zero=True)
        if cutmix_minmax is not None:
            lo, hi = _checks.pair("cutmix_minmax", cutmix_minmax, positive=True)
            if hi > 1.0 or lo >= hi:
                raise ValueError(f"cutmix_minmax: expected 0 < min < max <= 1, got {tuple(cutmix_minmax)}")
            cutmix_minmax = (lo, hi)
            cutmix_alpha = 1.0  # timm: with minmax, alpha only decides that a mix happens
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("mixup_alpha, cutmix_alpha: one of them (or cutmix_minmax) must enable a mix")
        if mode not in MODES:
            raise ValueError(f"mode: expected 'batch', 'pair' or 'elem', got {mode!r}")
        if pairing not in (FLIP, ROLL):
            raise ValueError(f"pairing: expected 'flip' (timm) or 'roll' (torchvision), got {pairing!r}")
        if box_style not in BOX_STYLES:
            raise ValueError(f"box_style: expected 'timm' or 'torchvision', got {box_style!r}")
        return cls(mixup_alpha, cutmix_alpha, cutmix_minmax, _checks.probability("prob", prob),
                   _checks.probability("switch_prob", switch_prob), mode, bool(correct_lam), pairing, box_style)

    @property
    def cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0

    def draw(self, batch_size: int, size: Optional[tuple[int, int]], device: DeviceLike = None,
             generator: Generator = None, prob: Optional[float] = None) -> Plan:
        """A plan for ``batch_size`` samples of spatial ``size`` (None: Mixup only, any shape).
        ``prob`` overrides the spec's (timm's ``mixup_enabled=False`` draws with 0)."""
        prob = self.prob if prob is None else prob
        if self.cutmix_on and size is None:
            raise ValueError("size: CutMix needs the (H, W) of the images")
        partner, closed = closed_form_partner(self.pairing, batch_size, device)
        units = {"batch": 1, "pair": (batch_size + 1) // 2, "elem": batch_size}[self.mode]
        use_cutmix = None
        if self.mixup_alpha > 0 and self.cutmix_on:
            both = sample_beta((self.cutmix_alpha, self.mixup_alpha), units, device, generator)
            use_cutmix = _uniform(units, device, generator) < self.switch_prob
            lam = torch.where(use_cutmix, both[0], both[1])
        else:
            lam = sample_beta(self.mixup_alpha if self.mixup_alpha > 0 else self.cutmix_alpha, units, device,
                              generator)
            if self.cutmix_on:
                use_cutmix = torch.ones(units, dtype=torch.bool, device=device)
        if prob < 1.0:
            lam = torch.where(_uniform(units, device, generator) < prob, lam, 1.0)
        box = label_lam = None
        if self.cutmix_on:
            if self.cutmix_minmax is not None:
                box = box_from_minmax(units, size, self.cutmix_minmax, device, generator)
            else:
                box = box_from_lam(lam, size, generator, self.box_style)
            kept = 1.0 - box_area_fraction(box, size)
            label_lam = kept if (self.correct_lam or self.cutmix_minmax is not None) else lam
            # an empty box (λ close to 1) leaves the row alone, and so does its label
            lam = torch.where(use_cutmix & (kept == 1.0), 1.0, lam)
        rows = _per_row((use_cutmix, lam, box, label_lam), self.mode, batch_size)
        return assemble(partner, closed, *rows, size if self.cutmix_on else None)


def fill_value(name: str, value) -> Union[float, tuple[float, ...]]:
    """A fill: one number, or one number per channel."""
    if _checks.is_number(value):
        return _checks.number(name, value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0:
        return tuple(_checks.number(f"{name}[{i}]", v) for i, v in enumerate(value))
    raise TypeError(f"{name}: expected a number or a sequence of numbers, got {value!r}")


@dataclass(frozen=True)
class CutoutSpec(_Spec):
    """Cutout (DeVries & Taylor, 2017): ``n_holes`` squares of side ``length`` per sample.

    Centres are uniform over the image, so holes near the border are clipped (the original
    code's behaviour); each sample is cut with probability ``p``. Labels are unchanged.
    """

    n_holes: int = 1
    length: int = 16
    fill: Union[float, tuple[float, ...]] = 0.0
    p: float = 1.0

    @classmethod
    def checked(cls, n_holes=1, length=16, fill=0.0, p=1.0) -> "CutoutSpec":
        return cls(_checks.integer("n_holes", n_holes, low=1), _checks.integer("length", length, low=0),
                   fill_value("fill", fill), _checks.probability("p", p))

    def draw(self, batch_size: int, size: tuple[int, int], device: DeviceLike = None,
             generator: Generator = None) -> Plan:
        height, width = size
        shape = (batch_size, self.n_holes)
        cy = _uniform_int(height, generator, batch_size * self.n_holes, device).view(shape)
        cx = _uniform_int(width, generator, batch_size * self.n_holes, device).view(shape)
        half = self.length // 2
        box = torch.stack([(cy - half).clamp(0, height), (cy + half).clamp(0, height),
                           (cx - half).clamp(0, width), (cx + half).clamp(0, width)], -1).to(torch.int32)
        apply = _uniform(batch_size, device, generator) < self.p
        box = torch.where(apply[:, None, None], box, torch.zeros_like(box))
        return erase_plan(box, size, _fill_tensor(self.fill, batch_size, device), None)


@dataclass(frozen=True)
class ErasingSpec(_Spec):
    """Random Erasing (Zhong et al., 2017) with torchvision's/timm's draws, one box per sample.

    With probability ``p`` a sample gets a box of area ``U(scale) * H * W`` and aspect ratio
    ``exp(U(log ratio))``; as in torchvision, up to ``attempts`` draws are made and the first
    that fits the image wins (all drawn at once: no loop over samples or attempts). ``value``
    is a number, one number per channel, or ``"random"`` for N(0, 1) noise per pixel.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: Union[float, tuple[float, ...], str] = 0.0
    attempts: int = 10

    @classmethod
    def checked(cls, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, attempts=10) -> "ErasingSpec":
        scale = _checks.pair("scale", scale)
        if scale[0] < 0 or scale[1] > 1:
            raise ValueError(f"scale: expected values in [0, 1], got {tuple(scale)}")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"value: expected a number, a sequence of numbers or 'random', got {value!r}")
        else:
            value = fill_value("value", value)
        return cls(_checks.probability("p", p), scale, _checks.pair("ratio", ratio, positive=True), value,
                   _checks.integer("attempts", attempts, low=1))

    @property
    def random_value(self) -> bool:
        return isinstance(self.value, str)

    def draw(self, batch_size: int, size: tuple[int, int], device: DeviceLike = None,
             generator: Generator = None) -> Plan:
        height, width = size
        shape = (batch_size, self.attempts)
        lo, hi = self.scale
        area = height * width * (lo + (hi - lo) * torch.rand(shape, device=device, generator=generator,
                                                             dtype=torch.float64))
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(shape, device=device, generator=generator,
                                                                 dtype=torch.float64))
        h = torch.sqrt(area * aspect).round().long()
        w = torch.sqrt(area / aspect).round().long()
        fits = (h < height) & (w < width) & (h > 0) & (w > 0)
        first = torch.argmax(fits.int(), 1)            # first attempt that fits (0 if none does)
        h = h.gather(1, first[:, None])[:, 0]
        w = w.gather(1, first[:, None])[:, 0]
        found = fits.any(1) & (_uniform(batch_size, device, generator) < self.p)
        y0 = _uniform_int((height - h + 1).clamp_min(1), generator)
        x0 = _uniform_int((width - w + 1).clamp_min(1), generator)
        box = torch.stack([y0, y0 + h, x0, x0 + w], 1)
        box = torch.where(found[:, None], box, torch.zeros_like(box)).to(torch.int32)[:, None, :]
        if self.random_value:
            seed = torch.randint(0, 2**62, (1,), device=device, generator=generator)
            return erase_plan(box, size, None, seed)
        return erase_plan(box, size, _fill_tensor(self.value, batch_size, device), None)
