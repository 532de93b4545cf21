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
        return cycles_of(self.partner, self.box, self.pairing)

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
    ``cycle_start`` past the last cycle equal ``B``. ``cycle_box`` is the bounding box of the
    regions of each cycle's rows (empty when ``y0 >= y1``), so a pass visits only those pixels.
    """

    walk: torch.Tensor         # (B,) int32
    cycle_start: torch.Tensor  # (B + 1,) int32
    cycle_box: torch.Tensor    # (B, 4) int32


# --------------------------------------------------------------------------------------------
# partners and their cycles
# --------------------------------------------------------------------------------------------

def flip_partner(batch_size: int, device: DeviceLike = None) -> torch.Tensor:
    """timm's pairing: sample ``i`` mixes with ``B - 1 - i`` (the middle of an odd batch with itself)."""
    return torch.arange(batch_size - 1, -1, -1, device=device)


def roll_partner(batch_size: int, device: DeviceLike = None) -> torch.Tensor:
    """torchvision's pairing (``x.roll(1, 0)``): sample ``i`` mixes with ``i - 1``, sample 0 with ``B - 1``."""
    return (torch.arange(batch_size, device=device) - 1) % max(batch_size, 1)


def _region_bbox(box: torch.Tensor) -> torch.Tensor:
    """Per-sample bounding box ``(B, 4)`` of the union of its boxes; empty regions give ``y0 > y1``."""
    empty = (box[..., 0] >= box[..., 1]) | (box[..., 2] >= box[..., 3])
    big = torch.full_like(box[..., 0], FULL)
    zero = torch.zeros_like(big)
    y0 = torch.where(empty, big, box[..., 0]).amin(1)
    y1 = torch.where(empty, zero, box[..., 1]).amax(1)
    x0 = torch.where(empty, big, box[..., 2]).amin(1)
    x1 = torch.where(empty, zero, box[..., 3]).amax(1)
    return torch.stack([y0, y1, x0, x1], 1)


def _cycle_boxes(sample_box: torch.Tensor, cycle_id: torch.Tensor) -> torch.Tensor:
    """Union bounding box of every cycle, indexed by cycle id; empty cycles are all zero."""
    n = sample_box.shape[0]
    out = torch.stack([torch.full((n,), FULL, dtype=sample_box.dtype, device=sample_box.device),
                       torch.zeros(n, dtype=sample_box.dtype, device=sample_box.device)] * 2, 1)
    index = cycle_id[:, None].expand(n, 4)
    out[:, 0::2] = out[:, 0::2].scatter_reduce(0, index[:, :2], sample_box[:, 0::2], "amin")
    out[:, 1::2] = out[:, 1::2].scatter_reduce(0, index[:, :2], sample_box[:, 1::2], "amax")
    empty = (out[:, 0] >= out[:, 1]) | (out[:, 2] >= out[:, 3])
    return torch.where(empty[:, None], torch.zeros_like(out), out)


def cycles_of(partner: torch.Tensor, box: torch.Tensor, pairing: str = "perm") -> Cycles:
    """Decompose ``partner`` into cycles on its device, without a host round trip.

    Flip, roll and identity pairings have closed forms; any other permutation goes through
    pointer jumping (``log2 B`` rounds of gathers), which finds each cycle's smallest row (its
    head) and each row's distance from the head.
    """
    n = partner.shape[0]
    device = partner.device
    idx = torch.arange(n, device=device)
    if pairing == "flip":
        head = torch.minimum(idx, n - 1 - idx)
        walk = torch.where(idx % 2 == 0, idx // 2, n - 1 - idx // 2)
        cycle_start = torch.clamp(torch.arange(n + 1, device=device) * 2, max=n)
        cycle_id = head
    elif pairing == "roll":
        walk = (-idx) % max(n, 1)
        cycle_start = torch.full((n + 1,), n, dtype=torch.int64, device=device)
        cycle_start[0] = 0
        cycle_id = torch.zeros_like(idx)
    elif pairing == "self":
        walk = idx
        cycle_start = torch.arange(n + 1, device=device)
        cycle_id = idx
    else:
        walk, cycle_start, cycle_id = _cycles_by_pointer_jumping(partner)
    sample_box = _region_bbox(box)
    return Cycles(walk.to(torch.int32), cycle_start.to(torch.int32),
                  _cycle_boxes(sample_box, cycle_id).to(torch.int32))


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
    return walk, cycle_start, cycle_number[head]


# --------------------------------------------------------------------------------------------
# random draws on the device
# --------------------------------------------------------------------------------------------

def _uniform(n: int, device, generator: Generator) -> torch.Tensor:
    return torch.rand(n, device=device, generator=generator)


def _uniform_int(high: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` (``high`` a tensor of per-sample bounds, each >= 1)."""
    u = torch.rand(high.shape, device=high.device, generator=generator, dtype=torch.float64)
    return torch.minimum((u * high).floor().long(), high.long() - 1)


def sample_beta(alpha: float, n: int, device: DeviceLike = None, generator: Generator = None) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) as float32, from two Gamma draws on the device."""
    conc = torch.full((2, n), float(alpha), device=device, dtype=torch.float32)
    g = torch._standard_gamma(conc, generator=generator)
    total = g[0] + g[1]
    # both Gammas underflow to 0 only for tiny alpha; 0.5 is the symmetric answer, never NaN.
    return torch.where(total > 0, g[0] / total.clamp_min(torch.finfo(torch.float32).tiny), 0.5)


def box_from_lam(lam: torch.Tensor, size: tuple[int, int], generator: Generator = None,
                 margin: float = 0.0) -> torch.Tensor:
    """timm's ``rand_bbox``: side ``sqrt(1 - lam)`` of the image, uniform centre, clipped.

    Returns ``(n, 4)`` int32 ``[y0, y1, x0, x1]``. torchvision's CutMix draws the same boxes
    (``int(0.5 * r * W)`` equals ``int(r * W) // 2``).
    """
    height, width = size
    ratio = torch.sqrt((1.0 - lam.double()).clamp_min(0.0))
    cut_h = (height * ratio).floor().long()
    cut_w = (width * ratio).floor().long()
    margin_y = (margin * cut_h).floor().long()
    margin_x = (margin * cut_w).floor().long()
    cy = margin_y + _uniform_int((height - 2 * margin_y).clamp_min(1), generator)
    cx = margin_x + _uniform_int((width - 2 * margin_x).clamp_min(1), generator)
    y0 = (cy - cut_h // 2).clamp(0, height)
    y1 = (cy + cut_h // 2).clamp(0, height)
    x0 = (cx - cut_w // 2).clamp(0, width)
    x1 = (cx + cut_w // 2).clamp(0, width)
    return torch.stack([y0, y1, x0, x1], 1).to(torch.int32)


def box_from_minmax(n: int, size: tuple[int, int], minmax: Sequence[float], device: DeviceLike = None,
                    generator: Generator = None) -> torch.Tensor:
    """timm's ``rand_bbox_minmax``: box sides uniform in ``[min, max)`` of the image, fully inside it."""
    height, width = size
    lo_h, hi_h = int(height * minmax[0]), int(height * minmax[1])
    lo_w, hi_w = int(width * minmax[0]), int(width * minmax[1])
    if hi_h <= lo_h or hi_w <= lo_w:
        raise ValueError(f"cutmix_minmax: {tuple(minmax)} leaves no box size to draw on a {height}x{width} image")
    full = torch.ones(n, dtype=torch.int64, device=device)
    cut_h = lo_h + _uniform_int(full * (hi_h - lo_h), generator)
    cut_w = lo_w + _uniform_int(full * (hi_w - lo_w), generator)
    y0 = _uniform_int((height - cut_h).clamp_min(1), generator)
    x0 = _uniform_int((width - cut_w).clamp_min(1), generator)
    return torch.stack([y0, y0 + cut_h, x0, x0 + cut_w], 1).to(torch.int32)


def box_area_fraction(box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fraction of an ``H x W`` image covered by each ``[y0, y1, x0, x1]`` box (float32)."""
    area = ((box[..., 1] - box[..., 0]).clamp_min(0) * (box[..., 3] - box[..., 2]).clamp_min(0)).double()
    return (area / float(size[0] * size[1])).float()


# --------------------------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------------------------

def _full_box(n: int, device) -> torch.Tensor:
    return torch.tensor([0, FULL, 0, FULL], dtype=torch.int32, device=device).expand(n, 4)


def _exact_complement(lam: torch.Tensor) -> torch.Tensor:
    """λ on the 2**-24 grid, where both λ and 1 - λ are exact float32 values.

    Then ``lam_self + lam_partner == 1`` holds exactly (even in float64), so a Mixup row is a
    true convex combination in every backend and precision; the grid is far finer than any
    statistical use of λ can tell.
    """
    return torch.round(lam.float().clamp(0.0, 1.0) * 2.0**24) / 2.0**24


def _assemble(partner, pairing, use_cutmix, lam, box, label_lam, size) -> Plan:
    """Rows with ``lam == 1`` (or that pair with themselves) do nothing; the rest mix or cut."""
    lam = _exact_complement(lam)
    n = partner.shape[0]
    device = partner.device
    idx = torch.arange(n, device=device)
    active = (lam < 1.0) & (partner != idx)
    cut = active & use_cutmix
    mix = active & ~use_cutmix
    empty = torch.zeros(n, 4, dtype=torch.int32, device=device)
    region = torch.where(cut[:, None], box, torch.where(mix[:, None], _full_box(n, device), empty))
    one = torch.ones_like(lam)
    lam_self = torch.where(mix, lam, torch.where(cut, torch.zeros_like(lam), one))
    kind = torch.where(mix, MIXUP, torch.where(cut, CUTMIX, NONE)).to(torch.int8)
    label_lam = torch.where(mix, lam, label_lam)   # a Mixup row's label weight is its exact pixel weight
    return Plan(partner=partner, lam_self=lam_self, lam_partner=1.0 - lam_self, box=region[:, None, :],
                label_lam=torch.where(active, label_lam, one), kind=kind, size=size, pairing=pairing)


def mixup_cutmix_plan(batch_size: int, size: Optional[tuple[int, int]], *, mixup_alpha: float = 1.0,
                      cutmix_alpha: float = 0.0, cutmix_minmax: Optional[Sequence[float]] = None,
                      prob: float = 1.0, switch_prob: float = 0.5, mode: str = "batch",
                      correct_lam: bool = True, pairing: str = "flip", device: DeviceLike = None,
                      generator: Generator = None) -> Plan:
    """Draw a Mixup/CutMix plan with timm's ``Mixup`` semantics, on ``device``.

    ``mode`` decides how many independent draws there are: one for the batch (``"batch"``), one
    per flipped pair (``"pair"``), one per sample (``"elem"``). Each draw applies with
    probability ``prob``; when both alphas are positive it is CutMix with probability
    ``switch_prob``; λ ~ Beta(alpha, alpha); a CutMix box has side ``sqrt(1 - λ)`` (or sides
    from ``cutmix_minmax``) and with ``correct_lam`` (always with minmax) the label weight is
    the exact fraction of pixels kept. ``pairing`` is ``"flip"`` (timm) or ``"roll"``
    (torchvision). ``size`` is ``(H, W)``; None allows Mixup only.
    """
    cutmix_on = cutmix_alpha > 0 or cutmix_minmax is not None
    if cutmix_on and size is None:
        raise ValueError("size: CutMix needs the (H, W) of the images")
    if cutmix_minmax is not None:
        cutmix_alpha = 1.0  # timm: with minmax, alpha only decides that a mix happens
    partner = (flip_partner if pairing == "flip" else roll_partner)(batch_size, device)
    idx = torch.arange(batch_size, device=device)
    if mode == "batch":
        units, unit_of = 1, torch.zeros_like(idx)
    elif mode == "pair":
        units, unit_of = (batch_size + 1) // 2, torch.minimum(idx, batch_size - 1 - idx)
    elif mode == "elem":
        units, unit_of = batch_size, idx
    else:
        raise ValueError(f"mode: expected 'batch', 'pair' or 'elem', got {mode!r}")
    if mixup_alpha > 0 and cutmix_on:
        use_cutmix = _uniform(units, device, generator) < switch_prob
        lam = torch.where(use_cutmix, sample_beta(cutmix_alpha, units, device, generator),
                          sample_beta(mixup_alpha, units, device, generator))
    elif mixup_alpha > 0:
        use_cutmix = torch.zeros(units, dtype=torch.bool, device=device)
        lam = sample_beta(mixup_alpha, units, device, generator)
    elif cutmix_on:
        use_cutmix = torch.ones(units, dtype=torch.bool, device=device)
        lam = sample_beta(cutmix_alpha, units, device, generator)
    else:
        raise ValueError("mixup_alpha, cutmix_alpha, cutmix_minmax: at least one must enable a mix")
    lam = torch.where(_uniform(units, device, generator) < prob, lam, torch.ones_like(lam))
    label_lam = lam
    if cutmix_on:
        if cutmix_minmax is not None:
            box = box_from_minmax(units, size, cutmix_minmax, device, generator)
        else:
            box = box_from_lam(lam, size, generator)
        if correct_lam or cutmix_minmax is not None:
            label_lam = torch.where(use_cutmix, 1.0 - box_area_fraction(box, size), lam)
        # a box can be empty (λ close to 1): the row then does nothing, like timm's.
        lam = torch.where(use_cutmix & (box_area_fraction(box, size) == 0), torch.ones_like(lam), lam)
    else:
        box = torch.zeros(units, 4, dtype=torch.int32, device=device)
    return _assemble(partner, pairing, use_cutmix[unit_of], lam[unit_of], box[unit_of], label_lam[unit_of],
                     size if cutmix_on else None)


def mixup_plan(lam: torch.Tensor, partner: Optional[torch.Tensor] = None, pairing: str = "flip") -> Plan:
    """A whole-sample Mixup plan for given per-sample ``lam`` ``(B,)`` and ``partner`` (default: flip)."""
    n = lam.shape[0]
    if partner is None:
        partner = (flip_partner if pairing == "flip" else roll_partner)(n, lam.device)
    else:
        pairing = "perm"
    return _assemble(partner, pairing, torch.zeros(n, dtype=torch.bool, device=lam.device), lam.float(),
                     torch.zeros(n, 4, dtype=torch.int32, device=lam.device), lam.float(), None)


def cutmix_plan(box: torch.Tensor, size: tuple[int, int], partner: Optional[torch.Tensor] = None,
                pairing: str = "flip") -> Plan:
    """A CutMix plan for given boxes ``(B, 4)``; label weights are the exact kept fractions."""
    n = box.shape[0]
    if partner is None:
        partner = (flip_partner if pairing == "flip" else roll_partner)(n, box.device)
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
    fill = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(1, -1)
    return fill.expand(n, fill.shape[1]).contiguous()


def cutout_plan(batch_size: int, size: tuple[int, int], *, n_holes: int = 1, length: int = 16,
                fill: Union[float, Sequence[float]] = 0.0, p: float = 1.0, device: DeviceLike = None,
                generator: Generator = None) -> Plan:
    """Cutout (DeVries & Taylor, 2017): ``n_holes`` squares of side ``length`` per sample.

    Centres are uniform over the image, so holes near the border are clipped (the original
    code's behaviour); each sample is cut with probability ``p``. Labels are unchanged.
    """
    height, width = size
    shape = (batch_size, n_holes)
    cy = _uniform_int(torch.full(shape, height, device=device), generator)
    cx = _uniform_int(torch.full(shape, width, device=device), generator)
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
