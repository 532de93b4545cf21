"""The CPU fast path: the reference's results (``fastmix/reference.py``) in fewer, larger ops.

On a CPU tensor the plan can be read to the host for free (the host *is* the device), so this
module picks one walk by one named decision (:func:`decide`), from the plan's form where that
says enough, else from the plan read once as numpy arrays (:class:`Facts`):

- ``UNIFORM``: a batch-mode plan (one weight and one box expanded to every row, a closed-form
  partner) whose region over the batch fits in cache: one gather of the partners' region (a flip
  or a roll: a copy) and one ``lerp_``, with no facts read at all.
- ``CYCLES``: large samples in place, one sample at a time along the partner cycles, one
  ``lerp_`` on each sample's box while its partner is still unwritten (timm's flip pairs become
  save, lerp, lerp). The only Python loop over samples, taken where a sample's memory traffic
  (~100 us at 3x224x224) dwarfs the loop's few microseconds.
- ``FLIP_PAIRS``: timm's pairing with one region for every mixed row (Mixup, batch-mode CutMix):
  blocks of pairs as strided views, one ``index_select`` and one ``lerp_`` per block; a batch of
  small images is one block.
- ``SELECT``: a batch whose extent fits in cache, one box a row, every live row a blend with its
  partner (Mixup, CutMix and switching per sample or pair): the whole batch at once, the result
  put into each row's box with an integer bit mask (``torch.where`` on a broadcast mask is a slow
  loop on the CPU; a mask of bits is three vectorised passes and exact).
- ``CHUNKS``: anything else, vectorised over the batch a chunk of rows at a time over the rows
  and lanes some region touches, with per-row weights where every region is that extent.

Everything an untouched sample or pixel holds stays bit for bit (a NaN in one sample never
reaches another: ``lerp(a, b, 0)`` is not ``a`` when ``b`` is not finite, so untouched pixels are
never given to one). Inside regions the walks use ``lerp`` where the spec says ``a*x + b*y``;
the two agree to rounding for finite values. 16-bit and uint8 data are widened to float32 in
reused buffers and narrowed back (uint8 through int16: aten's float32 -> uint8 copy is a scalar
loop, 117 us for 3x224x224 in torch 2.13 against 31 us). Benchmarks: ``benchmarks/cpu_floor.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import reference
from .cpu_walks import (UNIFORM_ELEMENTS, WALK_ELEMENTS, flip_pairs, one_thread, pair_blocks,
                        uniform_region, walk_chunks, walk_cycles, walk_select, walk_uniform)
from .layout import Layout
from .plan import PlanArgs
from .reference import is_blended

CYCLES, FLIP_PAIRS, SELECT, CHUNKS, UNIFORM, NOTHING = "cycles", "flip_pairs", "select", "chunks", "uniform", "nothing"


@dataclass
class Facts:
    """The plan as numpy arrays on the host (free on CPU), and what they say about it."""

    partner: np.ndarray   # (B,) int64
    a: np.ndarray         # (B,) float64 lam_self
    b: np.ndarray         # (B,) float64 lam_partner
    boxes: np.ndarray     # (B, N, 4) int64 [y0, y1, x0, x1] clipped, in rows and lanes
    live: np.ndarray      # (B,) bool: the region is not empty
    extent: tuple         # rows [y0, y1) and lanes [x0, x1) some live region touches
    uniform: bool         # one box a row, and every live row's box is the extent
    draws: bool           # some live row reads its partner (b != 0, partner != itself)
    lerp: str             # "partner" when a + b == 1 on live rows, "fill" when b == 0 (and a fill), else ""
    convex: bool          # every b of a live row lies in [0, 1]: uint8 needs no clamp

    @classmethod
    def of(cls, args: PlanArgs, lay: Layout) -> "Facts":
        # a few whole-array numpy operations: on small batches a step is bound by their count
        boxes = np.minimum(np.maximum(args.box.numpy(), 0),
                           np.array([lay.rows, lay.rows, lay.width, lay.width], dtype=np.int32)).astype(np.int64)
        if lay.lane_scale != 1:
            boxes[..., 2:] *= lay.lane_scale
        live_box = (boxes[..., 0] < boxes[..., 1]) & (boxes[..., 2] < boxes[..., 3])
        live = live_box.any(1)
        a, b = args.lam_self.numpy().astype(np.float64), args.lam_partner.numpy().astype(np.float64)
        partner = args.partner.numpy()
        if not live.any():
            return cls(partner, a, b, boxes, live, (0, 0, 0, 0), True, False, "", True)
        if live.all() and boxes.shape[1] == 1 and (boxes[:, 0] == boxes[0, 0]).all():
            extent, uniform = tuple(int(v) for v in boxes[0, 0]), True      # one region for every row
        else:
            big = np.iinfo(np.int64).max
            starts = np.where(live_box[..., None], boxes[..., 0::2], big).reshape(-1, 2).min(0)
            ends = np.where(live_box[..., None], boxes[..., 1::2], -1).reshape(-1, 2).max(0)
            extent = (int(starts[0]), int(ends[0]), int(starts[1]), int(ends[1]))
            uniform = boxes.shape[1] == 1 and bool((boxes[live, 0] == extent).all())
        b_live, a_live = b[live], a[live]
        draws = bool(((b_live != 0) & (partner[live] != np.flatnonzero(live))).any())
        has_fill = args.fill is not None or args.noise_seed is not None
        lerp = ("partner" if not has_fill and bool((a_live + b_live == 1).all()) else
                "fill" if has_fill and bool((b_live == 0).all()) else "")
        return cls(partner, a, b, boxes, live, extent, uniform, draws, lerp, bool(((b_live >= 0) & (b_live <= 1)).all()))

    def numel(self, lay: Layout) -> int:
        y0, y1, x0, x1 = self.extent
        return lay.planes * (y1 - y0) * (x1 - x0)

    def is_flip(self) -> bool:
        """timm's pairing, read from the partner itself (free on the host), not from a hint."""
        return bool((self.partner == np.arange(len(self.partner) - 1, -1, -1)).all())

    def is_permutation(self) -> bool:
        return bool((np.bincount(self.partner, minlength=len(self.partner)) == 1).all()) if len(self.partner) else True


def decide(args: PlanArgs, lay: Layout, dtype: torch.dtype) -> tuple:
    """The one decision: ``(walk, facts)``, which walk applies this plan in place (see the module
    docstring). A batch-mode plan (:func:`uniform_region`) is decided from its form alone, with no
    facts read; any other from its :class:`Facts` (:func:`choose_walk`)."""
    if uniform_region(args, lay, dtype) is not None:
        return UNIFORM, None
    facts = Facts.of(args, lay)
    return choose_walk(facts, args, lay, dtype), facts


def choose_walk(facts: Facts, args: PlanArgs, lay: Layout, dtype: torch.dtype) -> str:
    """Which of the walks that read the plan's facts applies it in place (see the module docstring)."""
    if not facts.live.any():
        return NOTHING
    partner_blend = is_blended(dtype) and facts.lerp == "partner" and facts.draws
    if (partner_blend and args.box.shape[1] == 1 and facts.numel(lay) >= WALK_ELEMENTS
            and facts.is_permutation()):
        return CYCLES
    if partner_blend and facts.uniform and facts.is_flip() and len(pair_blocks(facts, lay)) > 1:
        return FLIP_PAIRS
    if partner_blend and args.box.shape[1] == 1 and lay.batch * facts.numel(lay) <= UNIFORM_ELEMENTS:
        return SELECT
    return CHUNKS


def run_walk(walk: str, x: torch.Tensor, lay: Layout, args: PlanArgs, facts: Optional[Facts] = None) -> None:
    """Apply the plan to ``x`` in place by ``walk`` (what :func:`blend_` does after choosing one;
    the tests force each walk on the same plans to hold them to the reference)."""
    if walk == UNIFORM:
        if uniform_region(args, lay, x.dtype) is None:
            raise ValueError("lam_self: the uniform walk needs one expanded weight and box for every row")
        walk_uniform(x, lay, args)
        return
    facts = Facts.of(args, lay) if facts is None else facts
    if walk == CYCLES:
        if not facts.is_permutation():
            raise ValueError("partner: the cycle walk needs a permutation")
        with one_thread():
            walk_cycles(x, lay, facts)
    elif walk == FLIP_PAIRS:
        if not (facts.is_flip() and facts.uniform):
            raise ValueError("partner: the flip-pair walk needs timm's flip pairing and one region for every row")
        flip_pairs(x, lay, facts)
    elif walk == SELECT:
        if not (facts.lerp == "partner" and args.box.shape[1] == 1):
            raise ValueError("lam_partner: the select walk needs a + b == 1 on every live row and one box a row")
        walk_select(x, lay, args, facts)
    elif walk == CHUNKS:
        walk_chunks(x, lay, args, facts)


def blend_(x: torch.Tensor, lay: Layout, args: PlanArgs) -> None:
    """Apply the plan to ``x`` in place (plans with per-pixel masks: the reference, one pass)."""
    if args.mask is not None:
        reference.blend_(x, lay, args)
        return
    if lay.batch and lay.sample_numel:
        walk, facts = decide(args, lay, x.dtype)
        run_walk(walk, x, lay, args, facts)


def blend(x: torch.Tensor, lay: Layout, args: PlanArgs) -> torch.Tensor:
    """Out of place: a copy of ``x`` (same dense layout), then the in-place walk on the copy."""
    out = x.clone()
    blend_(out, lay, args)
    return out


blend_grad = reference.blend_grad   # the backward has no CPU fast path: the spec is already one pass


# --------------------------------------------------------------------------------------------
# soft targets
# --------------------------------------------------------------------------------------------

def mix_targets(labels: torch.Tensor, partner: torch.Tensor, label_lam: torch.Tensor, num_classes: int,
                smoothing: float) -> torch.Tensor:
    """The reference's targets in three ops when every class index is in range (checked on the
    host): ``off`` everywhere, then the two weighted one-hots scattered in."""
    if labels.dim() == 2 or labels.numel() == 0:
        return reference.mix_targets(labels, partner, label_lam, num_classes, smoothing)
    index = labels.numpy()
    if index.min() < 0 or index.max() >= num_classes:
        return reference.mix_targets(labels, partner, label_lam, num_classes, smoothing)
    off = smoothing / num_classes
    lam = label_lam.float()
    out = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32)
    index = labels.long()[:, None]
    out.scatter_add_(1, index, ((1.0 - smoothing) * lam)[:, None])
    out.scatter_add_(1, index.index_select(0, partner), ((1.0 - smoothing) * (1.0 - lam))[:, None])
    return out
