"""Partners: the permutation a plan draws from, its closed forms and its cycles.

A plan's ``partner`` is a permutation of ``range(B)``. Two facts about it are derived on the host
from the tensor itself, so that a plan cannot disagree with itself: whether it is a closed form the
kernels walk without a table (timm's flip, torchvision's roll, every sample its own partner: see
:attr:`fastmix.plan.Plan.pairing`), and, when it is none of those, its cycles cut into segments
(:class:`Cycles`), which the in-place kernels walk. Everything here runs on the partner's device
without reading it back, except :func:`check_permutation` (one bool: a host sync on CUDA).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Union

import torch

# partner permutations the kernels walk in closed form (anything else walks a cycle table)
FLIP, ROLL, SELF, PERM = "flip", "roll", "self", "perm"

DeviceLike = Union[torch.device, str, None]


class _ClosedForm(NamedTuple):
    """The closed form a sampler built ``tensor`` with, valid while ``tensor`` is not written to."""

    name: str
    tensor: torch.Tensor
    version: int


def _closed_form(name: str, partner: torch.Tensor) -> _ClosedForm:
    # tuple.__new__: a NamedTuple's own __new__ is a Python function, and every step makes one
    return tuple.__new__(_ClosedForm, (name, partner, 0 if torch.compiler.is_compiling() else partner._version))


def flip_partner(batch_size: int, device: DeviceLike = None) -> torch.Tensor:
    """timm's pairing: sample ``i`` mixes with ``B - 1 - i`` (the middle of an odd batch with itself)."""
    return torch.arange(batch_size - 1, -1, -1, device=device)


def roll_partner(batch_size: int, device: DeviceLike = None) -> torch.Tensor:
    """torchvision's pairing (``x.roll(1, 0)``): sample ``i`` mixes with ``i - 1``, sample 0 with ``B - 1``."""
    return (torch.arange(batch_size, device=device) - 1) % max(batch_size, 1)


PARTNERS = {FLIP: flip_partner, ROLL: roll_partner}


def closed_form_partner(pairing: str, batch_size: int, device: DeviceLike = None) -> tuple[torch.Tensor, _ClosedForm]:
    """``(partner, its closed form)`` for ``pairing`` ``"flip"`` or ``"roll"``."""
    if pairing not in PARTNERS:
        raise ValueError(f"pairing: expected 'flip' (timm) or 'roll' (torchvision), got {pairing!r}")
    partner = PARTNERS[pairing](batch_size, device)
    return partner, _closed_form(pairing, partner)


def self_partner(batch_size: int, device: DeviceLike = None) -> tuple[torch.Tensor, _ClosedForm]:
    """Every sample its own partner (Cutout, Erasing): ``(partner, its closed form)``."""
    partner = torch.arange(batch_size, device=device)
    return partner, _closed_form(SELF, partner)


def partner_format(partner, batch_size: int, device) -> None:
    """ValueError naming ``partner`` unless it is a ``(batch_size,)`` int64 tensor on ``device``
    (metadata only: no value is read)."""
    if not isinstance(partner, torch.Tensor):
        raise ValueError(f"partner: expected a torch.Tensor, got {type(partner).__name__}")
    if partner.dtype != torch.int64:
        raise ValueError(f"partner: expected an int64 permutation of range(B), got dtype {partner.dtype}")
    if tuple(partner.shape) != (batch_size,):
        raise ValueError(f"partner: expected shape ({batch_size},), got {tuple(partner.shape)}")
    if device is not None and partner.device != torch.device(device):
        raise ValueError(f"partner: on {partner.device}, but the plan is on {torch.device(device)}")


def _is_permutation(partner: torch.Tensor) -> torch.Tensor:
    """0-d bool tensor: ``partner`` holds every row of ``range(B)`` exactly once (on its device)."""
    return (torch.sort(partner).values == torch.arange(partner.shape[0], device=partner.device)).all()


def check_permutation(partner: torch.Tensor) -> None:
    """ValueError naming ``partner`` unless its values are a permutation of ``range(B)`` (reads
    one bool back: a host sync on CUDA). The message says what is wrong: a value out of range or
    a row taken twice."""
    n = partner.shape[0]
    if n == 0 or partner.device.type == "meta" or bool(_is_permutation(partner)):   # meta: no values to read
        return
    values = partner.cpu()
    bad = values[(values < 0) | (values >= n)]
    if bad.numel():
        raise ValueError(f"partner: value {int(bad[0])} is outside range({n}); expected a permutation of range({n})")
    counts = torch.bincount(values, minlength=n)
    raise ValueError(f"partner: row {int(torch.nonzero(counts > 1)[0])} appears {int(counts.max())} times; "
                     f"expected a permutation of range({n})")


# No program walks more than SEGMENT rows in a row: longer cycles (torchvision's roll is one cycle
# of the whole batch; a random permutation's longest is about 0.62 B) are split into segments
# walked in parallel (kernels/blend.py hands each segment's first row over to its reader).
SEGMENT = 16


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

    def segments(self, length: int = SEGMENT) -> torch.Tensor:
        """The cycles cut into segments of at most ``length`` walk positions, as a ``(4, B + 1)``
        int32 table, on the device (no host round trip):

        - row 0, the segment starts: segment ``j`` is ``walk[start[j]:start[j+1]]`` (unused: B);
        - row 1, the walk position the segment's last row reads: the next segment's first row, or
          its cycle's first (then the whole cycle is this one segment);
        - row 2, the segment that owns that position (``j`` itself for a whole cycle);
        - row 3, the segment's slot among the segments of longer cycles, which hand their first
          row over to their reader (``kernels/blend.py``); fewer than ``2 B / length + 1`` of them.
        """
        n = self.walk.shape[0]
        device = self.walk.device
        if n == 0:
            return torch.zeros(4, 1, dtype=torch.int32, device=device)
        positions = torch.arange(n, device=device)
        starts = self.cycle_start.long()
        is_start = torch.zeros(n + 1, dtype=torch.long, device=device).scatter_(0, starts, 1)[:n]
        cycle = torch.cumsum(is_start, 0) - 1
        is_segment = (positions - starts[cycle]) % length == 0
        segment = torch.cumsum(is_segment.long(), 0) - 1
        seg_start = torch.full((n + 2,), n, dtype=torch.long, device=device)
        seg_start = seg_start.scatter(0, torch.where(is_segment, segment, n + 1), positions)[:n + 1]
        valid = seg_start[:n] < n
        own_cycle = cycle[seg_start[:n].clamp(max=n - 1)]
        end = seg_start[1:]
        closes = end == starts[own_cycle + 1]
        nxt = torch.where(closes, starts[own_cycle], end).clamp(max=n - 1)
        after = torch.where(valid, segment[nxt], positions)
        hands_off = valid & (after != positions)
        slot = torch.cumsum(hands_off.long(), 0) - 1
        tail = positions.new_full((1,), n)
        return torch.stack([seg_start, torch.cat([torch.where(valid, nxt, n), tail]),
                            torch.cat([after, tail]), torch.cat([torch.where(hands_off, slot, 0), tail])]).to(torch.int32)


def cycles_of(partner: torch.Tensor, pairing: str = PERM) -> Cycles:
    """Decompose ``partner`` into cycles on its device, without a host round trip.

    Flip, roll and identity pairings have closed forms; any other permutation goes through
    pointer jumping (``log2 B`` rounds of gathers), which finds each cycle's smallest row (its
    head) and each row's distance from the head.
    """
    n = partner.shape[0]
    device = partner.device
    idx = torch.arange(n, device=device)
    if pairing == FLIP:
        walk = torch.where(idx % 2 == 0, idx // 2, n - 1 - idx // 2)
        cycle_start = torch.clamp(torch.arange(n + 1, device=device) * 2, max=n)
    elif pairing == ROLL:
        walk = (-idx) % max(n, 1)
        # no scalar assignment into a device tensor: that is a host-to-device copy (a sync)
        cycle_start = torch.where(torch.arange(n + 1, device=device) == 0, 0, n)
    elif pairing == SELF:
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
