"""Plans: everything random about one mixing step, drawn on the batch's device.

Every operation fastmix does is one per-sample *region blend* (see ``shared/DESIGN.md``)::

    inside the region of sample i:  out[i] = lam_self[i] * x[i] + lam_partner[i] * x[partner[i]]
                                             + (1 - lam_self[i] - lam_partner[i]) * fill[i]
    outside it:                     out[i] = x[i]

A :class:`Plan` holds those per-sample numbers as small tensors. The samplers below fill one
with tensor operations only: no numpy, no ``.item()``, nothing read back to the host, so a
training step on a GPU never waits for it. Nothing here touches pixels.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import torch

from ._checks import is_number
from .layout import FULL

NONE, MIXUP, CUTMIX, ERASE = 0, 1, 2, 3
KIND_NAMES = {NONE: "none", MIXUP: "mixup", CUTMIX: "cutmix", ERASE: "erase"}

Generator = Optional[torch.Generator]
DeviceLike = Union[torch.device, str, None]


@dataclass(frozen=True, eq=False)
class Plan:
    """One mixing step for a batch of ``B`` samples. All tensors live on the batch's device.

    Attributes:
        partner: ``(B,)`` int64, the row each sample draws from; must be a permutation.
        lam_self: ``(B,)`` float32, weight of the sample itself inside its region.
        lam_partner: ``(B,)`` float32, weight of its partner inside its region.
        box: ``(B, N, 4)`` int32 ``[y0, y1, x0, x1]``; the region is the union of the N boxes.
            ``FULL`` as an end means "to the end of the axis" (whole-sample regions), an empty
            box (``y0 == y1``) contributes nothing.
        label_lam: ``(B,)`` float32, weight of the sample's own label in its target.
        kind: ``(B,)`` int8, one of ``NONE, MIXUP, CUTMIX, ERASE`` (for logging and masks).
        fill: ``(B, 1)`` or ``(B, C)`` float32 value inside the region where
            ``lam_self + lam_partner < 1``; None when every row has ``lam_self + lam_partner == 1``.
        noise_seed: ``(1,)`` int64; when set the fill is N(0, 1) noise drawn from it with a
            counter-based generator (the same plan always gives the same noise).
        size: ``(H, W)`` the boxes were drawn for, or None when every region is the whole
            sample (then the plan applies to a tensor of any shape: features, tokens).
        pairing: host-side hint of how ``partner`` was built: ``"flip"`` (``B-1-i``, timm),
            ``"roll"`` (``i-1``, torchvision), ``"self"`` or ``"perm"`` (anything else).
    """

    partner: torch.Tensor
    lam_self: torch.Tensor
    lam_partner: torch.Tensor
    box: torch.Tensor
    label_lam: torch.Tensor
    kind: torch.Tensor
    fill: Optional[torch.Tensor] = None
    noise_seed: Optional[torch.Tensor] = None
    size: Optional[tuple[int, int]] = None
    pairing: str = "perm"

    @property
    def batch_size(self) -> int:
        return self.partner.shape[0]

    @property
    def device(self) -> torch.device:
        return self.partner.device

    @property
    def has_fill(self) -> bool:
        return self.fill is not None or self.noise_seed is not None

    @functools.cached_property
    def cycles(self) -> "Cycles":
        """The partner permutation as cycles: the order in which an in-place pass must walk."""
        return cycles_of(self.partner, self.pairing)

    def to(self, device: DeviceLike) -> "Plan":
        move = (lambda t: None if t is None else t.to(device))
        return replace(self, partner=move(self.partner), lam_self=move(self.lam_self),
                       lam_partner=move(self.lam_partner), box=move(self.box), label_lam=move(self.label_lam),
                       kind=move(self.kind), fill=move(self.fill), noise_seed=move(self.noise_seed))

    def for_masks(self, ignore_index: int = 255) -> "Plan":
        """The plan as it applies to integer segmentation masks ``(B, H, W)``.

        CutMix rows copy the partner's box and Cutout/Erasing rows write ``ignore_index`` into
        theirs, so masks match the images pixel for pixel; Mixup rows cannot blend class maps
        and leave the mask unchanged (their targets carry the mix).
        """
        keep = self.kind == MIXUP
        box = torch.where(keep[:, None, None], torch.zeros_like(self.box), self.box)
        fill = torch.full((self.batch_size, 1), float(ignore_index), device=self.device)
        return replace(self, lam_self=torch.where(keep, 1.0, self.lam_self),
                       lam_partner=torch.where(keep, 0.0, self.lam_partner), box=box, fill=fill, noise_seed=None)

    def describe(self) -> list[dict]:
        """One dict per sample (reads the plan back to the host: for logging, not the hot path)."""
        rows = []
        for i in range(self.batch_size):
            rows.append({
                "kind": KIND_NAMES[int(self.kind[i])], "partner": int(self.partner[i]),
                "lam_self": float(self.lam_self[i]), "lam_partner": float(self.lam_partner[i]),
                "label_lam": float(self.label_lam[i]),
                "boxes": [list(map(int, b)) for b in self.box[i].tolist() if b[0] < b[1] and b[2] < b[3]],
            })
        return rows


@dataclass(frozen=True)
class Cycles:
    """The partner permutation decomposed into cycles, for a one-pass in-place blend.

    ``walk[cycle_start[j]:cycle_start[j+1]]`` lists cycle ``j`` in partner order
    (``partner[walk[k]] == walk[k+1]``, wrapping to the cycle's first row); entries of
    ``cycle_start`` past the last cycle equal ``B``. The kernels read this table only for
    pairings without a closed form (``"perm"``).
    """

    walk: torch.Tensor         # (B,) int32
    cycle_start: torch.Tensor  # (B + 1,) int32


# --------------------------------------------------------------------------------------------
# partners and their cycles
# --------------------------------------------------------------------------------------------

def flip_partner(batch_size: int, device: DeviceLike = None) -> torch.Tensor:
    """timm's pairing: sample ``i`` mixes with ``B - 1 - i`` (the middle of an odd batch with itself)."""
    return torch.arange(batch_size - 1, -1, -1, device=device)


def roll_partner(batch_size: int, device: DeviceLike = None) -> torch.Tensor:
    """torchvision's pairing (``x.roll(1, 0)``): sample ``i`` mixes with ``i - 1``, sample 0 with ``B - 1``."""
    return (torch.arange(batch_size, device=device) - 1) % max(batch_size, 1)


def _partner(pairing: str, batch_size: int, device) -> torch.Tensor:
    if pairing == "flip":
        return flip_partner(batch_size, device)
    if pairing == "roll":
        return roll_partner(batch_size, device)
    raise ValueError(f"pairing: expected 'flip' (timm) or 'roll' (torchvision), got {pairing!r}")


def cycles_of(partner: torch.Tensor, pairing: str = "perm") -> Cycles:
    """Decompose ``partner`` into cycles on its device, without a host round trip.

    Flip, roll and identity pairings have closed forms; any other permutation goes through
    pointer jumping (``log2 B`` rounds of gathers), which finds each cycle's smallest row (its
    head) and each row's distance from the head.
    """
    n = partner.shape[0]
    device = partner.device
    idx = torch.arange(n, device=device)
    if pairing == "flip":
        walk = torch.where(idx % 2 == 0, idx // 2, n - 1 - idx // 2)
        cycle_start = torch.clamp(torch.arange(n + 1, device=device) * 2, max=n)
    elif pairing == "roll":
        walk = (-idx) % max(n, 1)
        # no scalar assignment into a device tensor: that is a host-to-device copy (a sync)
        cycle_start = torch.where(torch.arange(n + 1, device=device) == 0, 0, n)
    elif pairing == "self":
        walk = idx
        cycle_start = torch.arange(n + 1, device=device)
    else:
        walk, cycle_start = _cycles_by_pointer_jumping(partner)
    return Cycles(walk.to(torch.int32), cycle_start.to(torch.int32))


def _cycles_by_pointer_jumping(partner: torch.Tensor):
    n = partner.shape[0]
    device = partner.device
    idx = torch.arange(n, device=device)
    rounds = max(1, math.ceil(math.log2(max(n, 2)))) + 1
    # head[i] = smallest row on i's cycle: after k rounds it has seen 2**k successors.
    head, jump = idx.clone(), partner.clone()
    for _ in range(rounds):
        head = torch.minimum(head, head[jump])
        jump = jump[jump]
    # distance to the cycle's last row (the one whose partner is the head), by list ranking.
    is_last = partner == head
    nxt = torch.where(is_last, idx, partner)
    dist = (~is_last).long()
    for _ in range(rounds):
        dist = dist + dist[nxt]
        nxt = nxt[nxt]
    length = torch.zeros(n, dtype=torch.int64, device=device).scatter_add_(0, head, torch.ones_like(idx))
    position = length[head] - 1 - dist                      # 0 for the head
    is_head = head == idx
    head_len = torch.where(is_head, length, torch.zeros_like(length))
    offset = torch.cumsum(head_len, 0) - head_len           # where each head's cycle starts
    walk = torch.empty_like(idx).scatter_(0, offset[head] + position, idx)
    cycle_number = torch.cumsum(is_head.long(), 0) - 1      # index of the cycle of each head
    cycle_start = torch.full((n + 2,), n, dtype=torch.int64, device=device)
    slot = torch.where(is_head, cycle_number, torch.full_like(idx, n + 1))
    cycle_start = cycle_start.scatter(0, slot, torch.where(is_head, offset, torch.full_like(idx, n)))[:n + 1]
    return walk, cycle_start


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
    alphas = [float(alpha)] if is_number(alpha) else [float(a) for a in alpha]
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
    return lam[0] if is_number(alpha) else lam


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
    if style not in ("timm", "torchvision"):
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


def box_from_minmax(n: int, size: tuple[int, int], minmax: Sequence[float], device: DeviceLike = None,
                    generator: Generator = None) -> torch.Tensor:
    """timm's ``rand_bbox_minmax``: box sides uniform in ``[min, max)`` of the image, fully inside
    it (top-left corner uniform in ``[0, H - side]``)."""
    height, width = size
    lo_h, hi_h = int(height * minmax[0]), int(height * minmax[1])
    lo_w, hi_w = int(width * minmax[0]), int(width * minmax[1])
    if hi_h <= lo_h or hi_w <= lo_w:
        raise ValueError(f"cutmix_minmax: {tuple(minmax)} leaves no box size to draw on a {height}x{width} image")
    cut_h = lo_h + _uniform_int(hi_h - lo_h, generator, n, device)
    cut_w = lo_w + _uniform_int(hi_w - lo_w, generator, n, device)
    y0 = _uniform_int(height - cut_h + 1, generator)
    x0 = _uniform_int(width - cut_w + 1, generator)
    return torch.stack([y0, y0 + cut_h, x0, x0 + cut_w], 1).to(torch.int32)


def box_area_fraction(box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fraction of an ``H x W`` image covered by each ``[y0, y1, x0, x1]`` box (float32)."""
    area = ((box[..., 1] - box[..., 0]).clamp_min(0) * (box[..., 3] - box[..., 2]).clamp_min(0)).double()
    return (area / float(size[0] * size[1])).float()


# --------------------------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------------------------

def _full_box(n: int, device) -> torch.Tensor:
    # built with fills, not torch.tensor([...], device=...): a host-to-device copy can synchronise
    box = torch.zeros(n, 4, dtype=torch.int32, device=device)
    box[:, 1::2] = FULL
    return box


def _exact_complement(lam: torch.Tensor) -> torch.Tensor:
    """λ on the 2**-24 grid, where both λ and 1 - λ are exact float32 values.

    Then ``lam_self + lam_partner == 1`` holds exactly (even in float64), so a Mixup row is a
    true convex combination in every backend and precision; the grid is far finer than any
    statistical use of λ can tell.
    """
    return torch.round(lam.float().clamp(0.0, 1.0) * 2.0**24) / 2.0**24


def _assemble(partner, pairing, use_cutmix, lam, box, label_lam, size) -> Plan:
    """Rows with ``lam == 1`` (or that pair with themselves) do nothing; the rest mix or cut.

    ``use_cutmix`` may be None (no CutMix row) and ``box`` None when there is none.
    """
    lam = _exact_complement(lam)
    n = partner.shape[0]
    device = partner.device
    active = lam < 1.0
    if pairing not in ("flip", "roll") or n % 2 or n == 1:   # some row may pair with itself
        active &= partner != torch.arange(n, device=device)
    if use_cutmix is None:
        mix = active
        region = _full_box(n, device).mul_(mix[:, None])
        kind = mix.to(torch.int8)
        lam_self = torch.where(mix, lam, 1.0)
        label = lam_self
    else:
        cut = active & use_cutmix
        mix = active & ~use_cutmix
        region = torch.where(cut[:, None], box, _full_box(n, device).mul_(mix[:, None]))
        kind = mix.to(torch.int8) + cut.to(torch.int8) * CUTMIX
        lam_self = torch.where(mix, lam, (~cut).float())
        # a Mixup row's label weight is its exact pixel weight; CutMix rows keep theirs
        label = torch.where(cut, label_lam, lam_self)
    return Plan(partner=partner, lam_self=lam_self, lam_partner=1.0 - lam_self, box=region[:, None, :],
                label_lam=label, kind=kind, size=size, pairing=pairing)


def mixup_cutmix_plan(batch_size: int, size: Optional[tuple[int, int]], *, mixup_alpha: float = 1.0,
                      cutmix_alpha: float = 0.0, cutmix_minmax: Optional[Sequence[float]] = None,
                      prob: float = 1.0, switch_prob: float = 0.5, mode: str = "batch",
                      correct_lam: bool = True, pairing: str = "flip", box_style: str = "timm",
                      device: DeviceLike = None, generator: Generator = None) -> Plan:
    """Draw a Mixup/CutMix plan with timm's ``Mixup`` semantics, on ``device``.

    ``mode`` decides how many independent draws there are: one for the batch (``"batch"``), one
    per flipped pair (``"pair"``), one per sample (``"elem"``). Each draw applies with
    probability ``prob``; when both alphas are positive it is CutMix with probability
    ``switch_prob``; λ ~ Beta(alpha, alpha); a CutMix box has side ``sqrt(1 - λ)`` (or sides
    from ``cutmix_minmax``) and with ``correct_lam`` (always with minmax) the label weight is
    the exact fraction of pixels kept. ``pairing`` is ``"flip"`` (timm) or ``"roll"``
    (torchvision), ``box_style`` the box rule of :func:`box_from_lam`. ``size`` is ``(H, W)``;
    None allows Mixup only. Everything is drawn with a few dozen small tensor ops, none of
    which reads a value back to the host.
    """
    cutmix_on = cutmix_alpha > 0 or cutmix_minmax is not None
    if cutmix_on and size is None:
        raise ValueError("size: CutMix needs the (H, W) of the images")
    if not cutmix_on and mixup_alpha <= 0:
        raise ValueError("mixup_alpha, cutmix_alpha, cutmix_minmax: at least one must enable a mix")
    if cutmix_minmax is not None:
        cutmix_alpha = 1.0  # timm: with minmax, alpha only decides that a mix happens
    partner = _partner(pairing, batch_size, device)
    if mode == "batch":
        units = 1
    elif mode == "pair":
        units = (batch_size + 1) // 2
    elif mode == "elem":
        units = batch_size
    else:
        raise ValueError(f"mode: expected 'batch', 'pair' or 'elem', got {mode!r}")
    use_cutmix = None
    if mixup_alpha > 0 and cutmix_on:
        both = sample_beta((cutmix_alpha, mixup_alpha), units, device, generator)
        use_cutmix = _uniform(units, device, generator) < switch_prob
        lam = torch.where(use_cutmix, both[0], both[1])
    else:
        lam = sample_beta(mixup_alpha if mixup_alpha > 0 else cutmix_alpha, units, device, generator)
        if cutmix_on:
            use_cutmix = torch.ones(units, dtype=torch.bool, device=device)
    if prob < 1.0:
        lam = torch.where(_uniform(units, device, generator) < prob, lam, 1.0)
    box = label_lam = None
    if cutmix_on:
        if cutmix_minmax is not None:
            box = box_from_minmax(units, size, cutmix_minmax, device, generator)
        else:
            box = box_from_lam(lam, size, generator, box_style)
        kept = 1.0 - box_area_fraction(box, size)
        label_lam = kept if (correct_lam or cutmix_minmax is not None) else lam
        # an empty box (λ close to 1) leaves the row alone, and so does its label
        lam = torch.where(use_cutmix & (kept == 1.0), 1.0, lam)
    return _assemble(partner, pairing, *_per_row((use_cutmix, lam, box, label_lam), mode, batch_size),
                     size if cutmix_on else None)


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


def mixup_plan(lam: torch.Tensor, partner: Optional[torch.Tensor] = None, pairing: str = "flip") -> Plan:
    """A whole-sample Mixup plan for given per-sample ``lam`` ``(B,)`` and ``partner`` (default: flip)."""
    n = lam.shape[0]
    if partner is None:
        partner = _partner(pairing, n, lam.device)
    else:
        pairing = "perm"
    return _assemble(partner, pairing, None, lam.float(), None, None, None)


def cutmix_plan(box: torch.Tensor, size: tuple[int, int], partner: Optional[torch.Tensor] = None,
                pairing: str = "flip") -> Plan:
    """A CutMix plan for given boxes ``(B, 4)``; label weights are the exact kept fractions."""
    n = box.shape[0]
    if partner is None:
        partner = _partner(pairing, n, box.device)
    else:
        pairing = "perm"
    label_lam = 1.0 - box_area_fraction(box, size)
    lam = torch.where(label_lam < 1.0, torch.zeros_like(label_lam), torch.ones_like(label_lam))
    return _assemble(partner, pairing, torch.ones(n, dtype=torch.bool, device=box.device), lam,
                     box.to(torch.int32), label_lam, size)


def _erase_plan(box: torch.Tensor, size, fill, noise_seed) -> Plan:
    n = box.shape[0]
    device = box.device
    zero = torch.zeros(n, device=device)
    nonempty = ((box[..., 0] < box[..., 1]) & (box[..., 2] < box[..., 3])).any(1)
    kind = torch.where(nonempty, ERASE, NONE).to(torch.int8)
    return Plan(partner=torch.arange(n, device=device), lam_self=zero, lam_partner=zero.clone(), box=box,
                label_lam=torch.ones(n, device=device), kind=kind, fill=fill, noise_seed=noise_seed, size=size,
                pairing="self")


def _fill_tensor(value, n: int, device) -> torch.Tensor:
    """``(n, 1)`` or ``(n, C)`` float32, made by fills on the device (no host-to-device copy)."""
    values = [float(value)] if is_number(value) else [float(v) for v in value]
    return torch.cat([torch.full((n, 1), v, dtype=torch.float32, device=device) for v in values], 1)


def cutout_plan(batch_size: int, size: tuple[int, int], *, n_holes: int = 1, length: int = 16,
                fill: Union[float, Sequence[float]] = 0.0, p: float = 1.0, device: DeviceLike = None,
                generator: Generator = None) -> Plan:
    """Cutout (DeVries & Taylor, 2017): ``n_holes`` squares of side ``length`` per sample.

    Centres are uniform over the image, so holes near the border are clipped (the original
    code's behaviour); each sample is cut with probability ``p``. Labels are unchanged.
    """
    height, width = size
    shape = (batch_size, n_holes)
    cy = _uniform_int(height, generator, batch_size * n_holes, device).view(shape)
    cx = _uniform_int(width, generator, batch_size * n_holes, device).view(shape)
    half = length // 2
    box = torch.stack([(cy - half).clamp(0, height), (cy + half).clamp(0, height),
                       (cx - half).clamp(0, width), (cx + half).clamp(0, width)], -1).to(torch.int32)
    apply = _uniform(batch_size, device, generator) < p
    box = torch.where(apply[:, None, None], box, torch.zeros_like(box))
    return _erase_plan(box, size, _fill_tensor(fill, batch_size, device), None)


def erasing_plan(batch_size: int, size: tuple[int, int], *, p: float = 0.5,
                 scale: Sequence[float] = (0.02, 0.33), ratio: Sequence[float] = (0.3, 3.3),
                 value: Union[float, Sequence[float], str] = 0.0, attempts: int = 10,
                 device: DeviceLike = None, generator: Generator = None) -> Plan:
    """Random Erasing (Zhong et al., 2017) with torchvision's/timm's draws, one box per sample.

    With probability ``p`` a sample gets a box of area ``U(scale) * H * W`` and aspect ratio
    ``exp(U(log ratio))``; as in torchvision, up to ``attempts`` draws are made and the first
    that fits the image wins (all drawn at once: no loop over samples or attempts). ``value``
    is a number, one number per channel, or ``"random"`` for N(0, 1) noise per pixel.
    """
    height, width = size
    shape = (batch_size, attempts)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(shape, device=device,
                                                                            generator=generator,
                                                                            dtype=torch.float64))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(shape, device=device, generator=generator,
                                                             dtype=torch.float64))
    h = torch.sqrt(area * aspect).round().long()
    w = torch.sqrt(area / aspect).round().long()
    fits = (h < height) & (w < width) & (h > 0) & (w > 0)
    first = torch.argmax(fits.int(), 1)            # first attempt that fits (0 if none does)
    h = h.gather(1, first[:, None])[:, 0]
    w = w.gather(1, first[:, None])[:, 0]
    found = fits.any(1) & (_uniform(batch_size, device, generator) < p)
    y0 = _uniform_int((height - h + 1).clamp_min(1), generator)
    x0 = _uniform_int((width - w + 1).clamp_min(1), generator)
    box = torch.stack([y0, y0 + h, x0, x0 + w], 1)
    box = torch.where(found[:, None], box, torch.zeros_like(box)).to(torch.int32)[:, None, :]
    if isinstance(value, str):
        seed = torch.randint(0, 2**62, (1,), device=device, generator=generator)
        return _erase_plan(box, size, None, seed)
    return _erase_plan(box, size, _fill_tensor(value, batch_size, device), None)
