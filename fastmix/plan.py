"""The plan: everything random about one mixing step, as small tensors on the batch's device.

Every operation fastmix does is one per-sample *region blend* (``docs/DESIGN.md``)::

    inside the region of sample i:  out[i] = lam_self[i] * x[i] + lam_partner[i] * x[partner[i]]
                                             + (1 - lam_self[i] - lam_partner[i]) * fill[i]
    outside it:                     out[i] = x[i]

A :class:`Plan` holds those per-sample numbers. The samplers that draw plans live in
:mod:`fastmix.sampling`; the ops that apply them in :mod:`fastmix.ops`. Nothing here touches
pixels. The partner permutation's closed forms and cycles are :mod:`fastmix.partners`'.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional

import torch

from .layout import FULL
from .partners import (FLIP, PERM, Cycles, DeviceLike, _ClosedForm, _closed_form, _is_permutation,
                       check_permutation, closed_form_partner, cycles_of, partner_format, self_partner)

NONE, MIXUP, CUTMIX, ERASE = 0, 1, 2, 3
KIND_NAMES = {NONE: "none", MIXUP: "mixup", CUTMIX: "cutmix", ERASE: "erase"}
@dataclass(frozen=True, eq=False)
class Plan:
    """One mixing step for a batch of ``B`` samples. All tensors live on the batch's device.

    Attributes:
        partner: ``(B,)`` int64, the row each sample draws from; a permutation.
        lam_self: ``(B,)`` float32, weight of the sample itself inside its region.
        lam_partner: ``(B,)`` float32, weight of its partner inside its region.
        box: ``(B, N, 4)`` int32 ``[y0, y1, x0, x1]``; the region is the union of the N boxes
            (clipped to the tensor). ``FULL`` as an end means "to the end of the axis"
            (whole-sample regions); an empty box contributes nothing (:func:`box_is_live`).
        label_lam: ``(B,)`` float32, weight of the sample's own label in its target.
        kind: ``(B,)`` int8, one of ``NONE, MIXUP, CUTMIX, ERASE`` (for logging and masks).
        fill: ``(B, 1)`` or ``(B, C)`` float32 value inside the region where
            ``lam_self + lam_partner < 1`` (int64 in :meth:`for_masks`' plans: class ids are
            written exactly); None when nothing is filled.
        noise_seed: ``(1,)`` int64; when set the fill is N(0, 1) noise drawn from it with a
            counter-based generator (:mod:`fastmix.noise`: the same plan always gives the same noise).
        size: ``(H, W)`` the boxes were drawn for, or None when every region is the whole
            sample (then the plan applies to a tensor of any shape: features, tokens).
        mask: ``(B, H, W)`` float32 region weight ``rho`` in [0, 1] per pixel, or None (1): the
            region is the boxes where ``rho > 0``, and there ``out = (1 - rho) x + rho * blend``
            (FMix's masks, PatchUp's blocks; binary masks select exactly). Needs ``size``.

    ``dataclasses.replace`` makes a new plan; its :attr:`pairing` is re-derived from its partner.
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
    mask: Optional[torch.Tensor] = None
    _closed: Optional[_ClosedForm] = field(default=None, repr=False)

    @classmethod
    def trusted(cls, partner, lam_self, lam_partner, box, label_lam, kind, fill=None, noise_seed=None, size=None,
                mask=None, closed: Optional[_ClosedForm] = None) -> "Plan":
        """A plan that fastmix built from checked inputs (:func:`built_here`), made without the
        frozen dataclass's per-field ``setattr`` (every step makes one: a third of the cost)."""
        plan = object.__new__(cls)
        object.__setattr__(plan, "__dict__", {
            "partner": partner, "lam_self": lam_self, "lam_partner": lam_partner, "box": box, "label_lam": label_lam,
            "kind": kind, "fill": fill, "noise_seed": noise_seed, "size": size, "mask": mask, "_closed": closed,
            BUILT_HERE: True})
        return plan

    @property
    def batch_size(self) -> int:
        return self.partner.shape[0]

    @property
    def device(self) -> torch.device:
        return self.partner.device

    @property
    def has_fill(self) -> bool:
        return self.fill is not None or self.noise_seed is not None

    @property
    def spatial(self) -> bool:
        """True when the plan has boxes (then it applies to image, video and mask batches only)."""
        return self.size is not None

    @property
    def pairing(self) -> str:
        """``"flip"`` (``B-1-i``, timm), ``"roll"`` (``i-1``, torchvision) or ``"self"`` when
        :attr:`partner` is the tensor a sampler built in that closed form and nothing has written
        to it since; ``"perm"`` for any other partner. Derived from the tensor object itself
        (its identity and version counter, both free to read), never from a separate flag."""
        closed = self._closed
        if closed is None or closed.tensor is not self.partner:
            return PERM
        # under torch.compile the version counter is a traced symbol; identity is what is checked there
        if not torch.compiler.is_compiling() and closed.version != self.partner._version:
            return PERM
        return closed.name

    def check_partner(self) -> None:
        """Raise a ValueError naming ``partner`` unless it is a permutation of ``range(B)``.

        A partner a sampler built (a closed form, :attr:`pairing` not ``"perm"``) needs no check;
        any other is checked once and trusted while nothing writes to it (its identity and
        version counter are remembered, as for :attr:`pairing`). The check reads its values: free
        on CPU, one host sync on CUDA (a user-given partner only; sampled plans never pay it).
        Under ``torch.compile`` it becomes an asynchronous assert (a ``RuntimeError`` when the
        graph runs) instead. The kernels walk the partner's cycle table, so an unchecked
        non-permutation would make them read and write outside the batch.
        """
        if self.pairing != PERM:
            return
        partner_format(self.partner, self.batch_size, self.device)
        if torch.compiler.is_compiling():
            torch._assert_async(_is_permutation(self.partner), "partner: not a permutation of range(B)")
            return
        seen = self.__dict__.get("_checked_partner")
        if seen is not None and seen[0] is self.partner and seen[1] == self.partner._version:
            return
        check_permutation(self.partner)
        self._remember_checked_partner()

    def _remember_checked_partner(self) -> None:
        """Trust the partner as it is now (its identity and version): :meth:`check_partner` reads
        it again only after something writes to it."""
        self.__dict__["_checked_partner"] = (self.partner, self.partner._version)

    @functools.cached_property
    def cycles(self) -> "Cycles":
        """The partner permutation as cycles: the order in which an in-place pass must walk."""
        return cycles_of(self.partner, self.pairing)

    @functools.cached_property
    def segments(self) -> torch.Tensor:
        """:meth:`Cycles.segments` of :attr:`cycles` (what the kernels walk for a ``"perm"`` partner)."""
        return self.cycles.segments()

    def to(self, device: DeviceLike) -> "Plan":
        def move(t):
            return None if t is None else t.to(device)

        partner = move(self.partner)
        closed = _closed_form(self.pairing, partner) if self.pairing != PERM else None
        return replace(self, partner=partner, lam_self=move(self.lam_self), lam_partner=move(self.lam_partner),
                       box=move(self.box), label_lam=move(self.label_lam), kind=move(self.kind),
                       fill=move(self.fill), noise_seed=move(self.noise_seed), mask=move(self.mask), _closed=closed)

    def for_masks(self, ignore_index: int = 255) -> "Plan":
        """The plan as it applies to integer segmentation masks ``(B, H, W)``.

        CutMix rows copy the partner's box and Cutout/Erasing rows write ``ignore_index`` into
        theirs, so masks match the images pixel for pixel; Mixup rows cannot blend class maps
        and leave the mask unchanged (their targets carry the mix).
        """
        keep = self.kind == MIXUP
        box = torch.where(keep[:, None, None], torch.zeros_like(self.box), self.box)
        # int64, not float32: a float32 fill rounds 2**31 - 1 and 16777217 (every backend converts
        # the fill to the mask's dtype, exactly for any value that dtype holds)
        fill = torch.full((self.batch_size, 1), int(ignore_index), dtype=torch.int64, device=self.device)
        return replace(self, lam_self=torch.where(keep, 1.0, self.lam_self),
                       lam_partner=torch.where(keep, 0.0, self.lam_partner), box=box, fill=fill, noise_seed=None)

    def describe(self) -> list[dict]:
        """One dict per sample (reads the plan back to the host: for logging, not the hot path)."""
        live = box_is_live(self.box).tolist()
        rows = []
        for i in range(self.batch_size):
            rows.append({
                "kind": KIND_NAMES[int(self.kind[i])], "partner": int(self.partner[i]),
                "lam_self": float(self.lam_self[i]), "lam_partner": float(self.lam_partner[i]),
                "label_lam": float(self.label_lam[i]),
                "boxes": [b for b, on in zip(self.box[i].tolist(), live[i]) if on],
            })
        return rows


# the key under which a plan's __dict__ records that fastmix built it from checked inputs (a
# sampler, or mixup_plan/cutmix_plan): then its fields have the documented shapes, dtypes and
# device, and functional.check_plan does not look at them again. dataclasses.replace and
# Plan(...) make plans without it (checked in full where they are applied).
BUILT_HERE = "_built_here"


def built_here(plan: Plan) -> Plan:
    """``plan``, marked as built by fastmix from checked inputs (see ``BUILT_HERE``)."""
    plan.__dict__[BUILT_HERE] = True
    return plan


def box_is_live(box: torch.Tensor) -> torch.Tensor:
    """Which ``[..., 4]`` boxes ``[y0, y1, x0, x1]`` cover at least one element (bool ``[...]``).

    The one non-empty-box predicate: every backend clips boxes to the tensor first (boxes here
    are clipped or use ``FULL`` ends), and a box is live when both its spans are non-empty.
    """
    return (box[..., 0] < box[..., 1]) & (box[..., 2] < box[..., 3])


def box_area_fraction(box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fraction of an ``H x W`` image covered by each ``[y0, y1, x0, x1]`` box (float32)."""
    area = ((box[..., 1] - box[..., 0]).clamp_min(0) * (box[..., 3] - box[..., 2]).clamp_min(0)).double()
    return (area / float(size[0] * size[1])).float()


def full_box(n: int, device) -> torch.Tensor:
    """``(n, 4)`` int32 boxes covering whole samples (``FULL`` ends), made by fills on the device
    (``torch.tensor([...], device=...)`` would be a host-to-device copy, which can synchronise)."""
    box = torch.zeros(n, 4, dtype=torch.int32, device=device)
    box[:, 1::2] = FULL
    return box


# --------------------------------------------------------------------------------------------
# plans from given weights and boxes (the functional API's constructors)
# --------------------------------------------------------------------------------------------

def exact_complement(lam: torch.Tensor) -> torch.Tensor:
    """λ on the 2**-24 grid, where both λ and 1 - λ are exact float32 values.

    Then ``lam_self + lam_partner == 1`` holds exactly (even in float64), so a Mixup row is a
    true convex combination in every backend and precision; the grid is far finer than any
    statistical use of λ can tell.
    """
    return torch.round(lam.float().clamp(0.0, 1.0) * 2.0**24) / 2.0**24


def assemble(partner: torch.Tensor, closed: Optional[_ClosedForm], use_cutmix: Optional[torch.Tensor],
             lam: torch.Tensor, box: Optional[torch.Tensor], label_lam: Optional[torch.Tensor],
             size: Optional[tuple[int, int]]) -> Plan:
    """A Mixup/CutMix plan from per-row draws. Rows with ``lam == 1`` (or that pair with
    themselves) do nothing; the rest mix (whole sample) or cut (``box``).

    ``use_cutmix`` may be None (no CutMix row) and ``box`` None when there is none.
    """
    lam = exact_complement(lam)
    n = partner.shape[0]
    device = partner.device
    active = lam < 1.0
    if closed is None or n % 2 or n == 1:   # some row may pair with itself
        active &= partner != torch.arange(n, device=device)
    if use_cutmix is None:
        mix = active
        region = full_box(n, device).mul_(mix[:, None])
        kind = mix.to(torch.int8)
        lam_self = torch.where(mix, lam, 1.0)
        label = lam_self
    else:
        cut = active & use_cutmix
        mix = active & ~use_cutmix
        region = torch.where(cut[:, None], box, full_box(n, device).mul_(mix[:, None]))
        kind = mix.to(torch.int8) + cut.to(torch.int8) * CUTMIX
        lam_self = torch.where(mix, lam, (~cut).float())
        # a Mixup row's label weight is its exact pixel weight; CutMix rows keep theirs
        label = torch.where(cut, label_lam, lam_self)
    return built_here(Plan(partner=partner, lam_self=lam_self, lam_partner=1.0 - lam_self, box=region[:, None, :],
                           label_lam=label, kind=kind, size=size, _closed=closed))


def _given_partner(partner: Optional[torch.Tensor], pairing: str, n: int, device):
    """``(partner, closed form or None)``: a closed form when none is given, else the given one,
    checked (:func:`check_permutation`: one host sync on CUDA)."""
    if partner is None:
        return closed_form_partner(pairing, n, device)
    partner_format(partner, n, device)
    check_permutation(partner)
    return partner, None


def _weights(name: str, value) -> torch.Tensor:
    """A ``(B,)`` floating tensor of weights in [0, 1], or a ValueError/TypeError naming ``name``
    (reads one bool back: a host sync on CUDA)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if not value.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating-point tensor, got {value.dtype}")
    if value.dim() != 1:
        raise ValueError(f"{name}: expected shape (B,), got {tuple(value.shape)}")
    if value.numel() and value.device.type != "meta" and not bool(((value >= 0) & (value <= 1)).all()):  # NaN too
        bad = value[~((value >= 0) & (value <= 1))][0]
        raise ValueError(f"{name}: every weight must be in [0, 1], got {float(bad)}")
    return value


def drawn(plan: Plan) -> Plan:
    """``plan`` marked as known good: its partner a permutation and its fields from checked
    arguments, so applying it reads nothing back (no host sync on CUDA). A sampler's plan is that
    by construction (a ``randperm`` or closed-form partner, weights from Beta draws); a user's
    tensors become it only once :func:`mixup_plan` or :func:`cutmix_plan` has checked them."""
    plan._remember_checked_partner()
    return built_here(plan)


def drawn_mixup_plan(lam: torch.Tensor, partner: torch.Tensor, closed: Optional[_ClosedForm]) -> Plan:
    """:func:`mixup_plan` for a sampler's own ``lam`` (in [0, 1]) and partner: nothing read back."""
    return drawn(assemble(partner, closed, None, lam.float(), None, None, None))


def drawn_cutmix_plan(box: torch.Tensor, size: tuple[int, int], partner: torch.Tensor,
                      closed: Optional[_ClosedForm]) -> Plan:
    """:func:`cutmix_plan` for a sampler's own boxes ``(B, 4)`` and partner: nothing read back."""
    return drawn(_cutmix_assembled(box, size, partner, closed))


def mixup_plan(lam: torch.Tensor, partner: Optional[torch.Tensor] = None, pairing: str = FLIP) -> Plan:
    """A whole-sample Mixup plan for given per-sample ``lam`` ``(B,)`` in [0, 1] and ``partner``
    (default: flip). ``lam`` outside [0, 1] or NaN is a ValueError (timm's λ is a Beta draw: it is
    never outside); a given ``partner`` must be an int64 permutation of ``range(B)``. Checking
    reads the values: on CUDA one host sync (the samplers' plans never pay it)."""
    lam = _weights("lam", lam)
    partner, closed = _given_partner(partner, pairing, lam.shape[0], lam.device)
    return drawn(assemble(partner, closed, None, lam.float(), None, None, None))


def clip_boxes(box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[..., 4]`` boxes ``[y0, y1, x0, x1]`` clipped to an ``H x W`` image (int32): what every
    backend blends, so label weights computed from them count the pixels actually cut."""
    height, width = size
    box = box.long()
    return torch.stack([box[..., 0].clamp(0, height), box[..., 1].clamp(0, height),
                        box[..., 2].clamp(0, width), box[..., 3].clamp(0, width)], -1).to(torch.int32)


def cutmix_plan(box: torch.Tensor, size: tuple[int, int], partner: Optional[torch.Tensor] = None,
                pairing: str = FLIP) -> Plan:
    """A CutMix plan for given integer boxes ``(B, 4)`` ``[y0, y1, x0, x1]``; a box partly outside
    the image is clipped to it (as timm's ``rand_bbox`` clips), and the label weights are the
    exact fractions of pixels kept (timm's ``correct_lam``). A given ``partner`` must be an int64
    permutation of ``range(B)`` (checked: on CUDA one host sync)."""
    if not isinstance(box, torch.Tensor):
        raise TypeError(f"box: expected a torch.Tensor, got {type(box).__name__}")
    if box.dtype.is_floating_point or box.dtype.is_complex or box.dtype == torch.bool:
        raise TypeError(f"box: expected integer pixel coordinates, got {box.dtype}")
    if box.dim() != 2 or box.shape[1] != 4:
        raise ValueError(f"box: expected shape (B, 4) [y0, y1, x0, x1], got {tuple(box.shape)}")
    partner, closed = _given_partner(partner, pairing, box.shape[0], box.device)
    return drawn(_cutmix_assembled(box, size, partner, closed))


def _cutmix_assembled(box: torch.Tensor, size: tuple[int, int], partner: torch.Tensor,
                      closed: Optional[_ClosedForm]) -> Plan:
    """The CutMix plan of boxes ``(B, 4)`` (clipped to the image; label weights = pixels kept)."""
    n = box.shape[0]
    box = clip_boxes(box, size)
    label_lam = 1.0 - box_area_fraction(box, size)
    lam = torch.where(label_lam < 1.0, torch.zeros_like(label_lam), torch.ones_like(label_lam))
    return assemble(partner, closed, torch.ones(n, dtype=torch.bool, device=box.device), lam, box, label_lam, size)


def erase_plan(box: torch.Tensor, size: tuple[int, int], fill: Optional[torch.Tensor],
               noise_seed: Optional[torch.Tensor]) -> Plan:
    """Cutout/Erasing: each sample's boxes ``(B, N, 4)`` filled with ``fill`` or noise; labels kept."""
    n = box.shape[0]
    device = box.device
    zero = torch.zeros(n, device=device)
    kind = torch.where(box_is_live(box).any(1), ERASE, NONE).to(torch.int8)
    partner, closed = self_partner(n, device)
    return Plan(partner=partner, lam_self=zero, lam_partner=zero.clone(), box=box,
                label_lam=torch.ones(n, device=device), kind=kind, fill=fill, noise_seed=noise_seed, size=size,
                _closed=closed)


class PlanArgs(NamedTuple):
    """The plan as the blend ops take it: plain tensors, the only thing the backends share.

    ``fastmix.ops`` builds the ``torch.library`` schema of every blend op from these fields, in
    this order, so the signature is written once; every backend (``reference``, ``cpu``,
    ``fastmix.kernels.blend``) takes ``(x, layout, args)``.
    """

    partner: torch.Tensor                 # (B,) int64
    walk: torch.Tensor                    # (B,) int32 cycles in walk order, or empty (closed-form pairings)
    segments: torch.Tensor                # (4, B + 1) int32 segment table (Cycles.segments), or empty
    lam_self: torch.Tensor                # (B,) float32
    lam_partner: torch.Tensor             # (B,) float32
    box: torch.Tensor                     # (B, N, 4) int32
    fill: Optional[torch.Tensor]          # (B, 1 | C) float32
    noise_seed: Optional[torch.Tensor]    # (1,) int64
    mask: Optional[torch.Tensor]          # (B, H, W) float32 region weight, or None
    spatial: bool                         # the plan has boxes (else every region is a whole sample)
    pairing: str                          # Plan.pairing: "flip", "roll", "self" or "perm"


def plan_args(plan: Plan, with_cycles: bool) -> PlanArgs:
    """``plan`` as op arguments. Only the kernels walk cycles, and only a permutation without a
    closed form needs them as a table; otherwise the table is left empty rather than computed."""
    pairing = plan.pairing
    if with_cycles and pairing == PERM:
        walk, segments = plan.cycles.walk, plan.segments
    else:
        walk = segments = _no_table(plan.partner.device)
    # tuple.__new__ directly: a NamedTuple's own __new__ is a Python function, and a step makes one
    return tuple.__new__(PlanArgs, (plan.partner, walk, segments, plan.lam_self, plan.lam_partner, plan.box,
                                    plan.fill, plan.noise_seed, plan.mask, plan.size is not None, pairing))


_no_tables: dict = {}


def _no_table(device: torch.device) -> torch.Tensor:
    """An empty int32 tensor on ``device``, made once: what a plan without a cycle table passes
    (it holds no element, so every plan can share it)."""
    table = _no_tables.get(device)
    if table is None:
        table = _no_tables[device] = torch.empty(0, dtype=torch.int32, device=device)
    return table
