"""CutMix boxes in a plan: timm's ``rand_bbox`` and torchvision's side rules, ``box_from_lam``,
``correct_lam`` as the kept fraction, ``cutmix_minmax`` sides and corners, uniform centres.

The rules are restated from the peers' formulas (``box_offsets``); uniformity is a chi-square
test (``helpers.assert_uniform_ints``).
"""
from __future__ import annotations

import math

import pytest
import torch

from fastmix.functional import box_from_lam, mixup_cutmix_plan
from fastmix.plan import CUTMIX
from helpers import assert_uniform_ints, seeded

def _cutmix_rows(plan):
    cut = plan.kind == CUTMIX
    box = plan.box[cut, 0].long()
    return cut, box[:, 0], box[:, 1], box[:, 2], box[:, 3]

# every distribution here must hold for the host sampler and for the fused Triton one
pytestmark = pytest.mark.usefixtures("each_sampler")


def box_offsets(style: str, extent: int, lam: list) -> tuple:
    """Per-λ offsets of a CutMix box from its centre c along one axis: rows ``[c - low, c + high)``.

    timm (``rand_bbox``): ``cut = int(H * sqrt(1 - λ))``, rows ``[c - cut // 2, c + (cut + 1) // 2)``.
    torchvision (``v2.CutMix``): ``half = int(0.5 * sqrt(1 - λ) * H)``, rows ``[c - half, c + half)``.
    Returns ``(low, high, side)`` with ``side`` the length of an unclipped box.
    """
    if style == "timm":
        cut = torch.tensor([math.floor(extent * math.sqrt(1 - v)) for v in lam], dtype=torch.int64)
        return cut // 2, (cut + 1) // 2, cut
    half = torch.tensor([math.floor(0.5 * math.sqrt(1 - v) * extent) for v in lam], dtype=torch.int64)
    return half, half, 2 * half


def assert_boxes_follow_rule(lo, hi, lam: list, extent: int, style: str, axis: str):
    """Unclipped boxes have the rule's side; every box is ``[c - low, c + high)`` clipped to
    ``[0, extent)`` for some centre ``c`` in ``[0, extent)``."""
    low, high, side_rule = box_offsets(style, extent, lam)
    inside = (lo > 0) & (hi < extent)
    side = (hi - lo)[inside]
    assert torch.equal(side, side_rule[inside]), \
        f"{style} {axis}: unclipped sides {side[:8].tolist()} != rule {side_rule[inside][:8].tolist()}"
    c = torch.arange(extent)
    cand_lo = (c[None] - low[:, None]).clamp(0, extent)
    cand_hi = (c[None] + high[:, None]).clamp(0, extent)
    ok = ((cand_lo == lo[:, None]) & (cand_hi == hi[:, None])).any(1)
    bad = torch.nonzero(~ok).flatten()[:5].tolist()
    assert not bad, f"{style} {axis}: rows {bad} ({lo[bad].tolist()}, {hi[bad].tolist()}, " \
                    f"offsets {low[bad].tolist()}/{high[bad].tolist()}) fit no centre"
    return side


@pytest.mark.parametrize("style", ["timm", "torchvision"])
def test_cutmix_rows_follow_rand_bbox_side_rule(style, gen):
    size = height, width = (24, 40)
    plan = mixup_cutmix_plan(3000, size, mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, mode="elem",
                             box_style=style, generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    # torchvision's half-side is 0 (an empty box: the row does nothing) for λ > 1 - 1/12² (~0.7% of rows)
    assert int(cut.sum()) > 2800
    assert bool((plan.lam_self[cut] == 0).all() & (plan.lam_partner[cut] == 1).all()), "cutmix weights not 0/1"
    lam = plan.label_lam[cut].tolist()          # correct_lam=False: the raw λ
    assert all(0 < v < 1 for v in lam)
    for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
        side = assert_boxes_follow_rule(lo, hi, lam, extent, style, axis)
        assert bool((lo < hi).all()), f"{axis}: empty box kept as a CutMix row"
        odd = int((side % 2 == 1).sum())
        if style == "timm":
            # an unclipped timm box has side exactly cut, odd about half the time (not 2 * (cut // 2))
            assert odd > 100, f"{axis}: only {odd} odd unclipped sides under timm's rule"
        else:
            assert odd == 0, f"{axis}: odd unclipped sides {side[side % 2 == 1][:8].tolist()} under torchvision's"
    clipped = (y0 == 0) | (y1 == height) | (x0 == 0) | (x1 == width)
    assert int(clipped.sum()) > 100, "no clipped boxes: centres are not uniform over the image"


def test_box_from_lam_styles(gen):
    size = height, width = (25, 32)
    n = 2000
    # λ from 0 (a box the size of the image, always clipped) to near 1 (empty boxes), both styles
    lam = torch.linspace(0.0, 0.999, n)
    values = lam.tolist()
    for style in ("timm", "torchvision"):
        box = box_from_lam(lam, size, gen, style)
        assert box.shape == (n, 4) and box.dtype == torch.int32
        y0, y1, x0, x1 = box.long().unbind(1)
        for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
            assert bool(((lo >= 0) & (lo <= hi) & (hi <= extent)).all()), f"{style} {axis}: box outside the image"
            assert_boxes_follow_rule(lo, hi, values, extent, style, axis)
    # the default is timm's rule: same seed, same boxes
    assert torch.equal(box_from_lam(lam, size, seeded(5)), box_from_lam(lam, size, seeded(5), "timm"))
    assert not torch.equal(box_from_lam(lam, size, seeded(5), "timm"),
                           box_from_lam(lam, size, seeded(5), "torchvision")), "the two styles gave the same boxes"
    with pytest.raises(ValueError, match="style"):
        box_from_lam(lam, size, gen, "bogus")
    with pytest.raises(ValueError, match="style"):
        mixup_cutmix_plan(4, (8, 8), mixup_alpha=0.0, cutmix_alpha=1.0, box_style="bogus", generator=gen)


def test_cutmix_correct_lam_is_the_kept_fraction(gen):
    size = height, width = (24, 40)
    plan = mixup_cutmix_plan(2000, size, mixup_alpha=1.0, cutmix_alpha=1.0, correct_lam=True, mode="elem",
                             generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    assert int(cut.sum()) > 800
    kept = 1 - ((y1 - y0) * (x1 - x0)).double() / (height * width)
    # exact up to float32 rounding of the fraction and of 1 - fraction (each <= 2**-24 near 1)
    err = (plan.label_lam[cut].double() - kept).abs()
    worst = int(err.argmax())
    assert float(err.max()) <= 2 ** -23, \
        f"row {worst}: label_lam {float(plan.label_lam[cut][worst])} != 1 - area fraction {float(kept[worst])}"


@pytest.mark.parametrize("mixup_alpha", [0.0, 1.0])
def test_cutmix_minmax_boxes(mixup_alpha, gen):
    size = height, width = (30, 50)
    minmax = (0.2, 0.8)
    lo_h, hi_h, lo_w, hi_w = int(height * minmax[0]), int(height * minmax[1]), int(width * minmax[0]), \
        int(width * minmax[1])
    plan = mixup_cutmix_plan(4000, size, mixup_alpha=mixup_alpha, cutmix_minmax=minmax, correct_lam=False,
                             mode="elem", generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    if mixup_alpha == 0:
        assert bool(cut.all()), f"minmax without mixup: kinds {plan.kind.unique().tolist()}"
    h, w = y1 - y0, x1 - x0
    assert bool(((h >= lo_h) & (h < hi_h)).all()), f"heights outside [{lo_h}, {hi_h}): {h.unique().tolist()}"
    assert bool(((w >= lo_w) & (w < hi_w)).all()), f"widths outside [{lo_w}, {hi_w}): {w.unique().tolist()}"
    assert h.unique().numel() == hi_h - lo_h and w.unique().numel() == hi_w - lo_w, "some box sides never drawn"
    # fully inside; timm draws the corner with randint(0, H - h + 1): both edges are reached
    assert bool(((y0 >= 0) & (y1 <= height) & (x0 >= 0) & (x1 <= width)).all()), "box not inside the image"
    assert int((y0 == 0).sum()) > 10 and int((y1 == height).sum()) > 10, "boxes never touch the top/bottom edge"
    assert int((x0 == 0).sum()) > 10 and int((x1 == width).sum()) > 10, "boxes never touch the left/right edge"
    kept = 1 - (h * w).double() / (height * width)
    err = (plan.label_lam[cut].double() - kept).abs().max()
    assert float(err) <= 2 ** -23, f"minmax label_lam is not the kept fraction (off by {float(err)})"


@pytest.mark.parametrize("style", ["timm", "torchvision"])
def test_cutmix_box_centres_are_uniform(style, gen):
    # λ > 0, so timm's cut < H and torchvision's 2 * half < H: a box clipped at the top (lo == 0) has
    # hi <= cut (or 2 * half) < H, is never clipped at both ends, and its centre is recoverable
    size = height, width = (17, 23)
    plan = mixup_cutmix_plan(6000, size, mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, mode="elem",
                             box_style=style, generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    lam = plan.label_lam[cut].tolist()
    for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
        low, high, _ = box_offsets(style, extent, lam)
        centre = torch.where(lo > 0, lo + low, hi - high)
        assert bool((hi < extent)[lo == 0].all()), f"{style} {axis}: a box clipped at both ends"
        assert_uniform_ints(centre, extent, f"CutMix ({style}) centre {axis}")


def test_raw_lam_survives_an_empty_box_as_in_timm():
    """timm's ``correct_lam=False``: a CutMix draw whose box comes out empty leaves the pixels
    alone but keeps λ as the label weight. On a 2x2 image the timm box is empty exactly when
    floor(2 sqrt(1 - λ)) = 0, i.e. λ > 3/4, so those rows' weights must lie in (3/4, 1)."""
    for correct_lam in (False, True):
        plan = mixup_cutmix_plan(4000, (2, 2), mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                                 correct_lam=correct_lam, generator=torch.Generator().manual_seed(3))
        untouched = (plan.kind == 0) & (plan.partner != torch.arange(4000))
        weights = plan.label_lam[untouched]
        assert untouched.sum() > 800, "about a quarter of the rows should draw λ > 3/4"
        if correct_lam:
            assert bool((weights == 1.0).all()), "correct_lam: an untouched row keeps its whole label"
        else:
            assert bool(((weights > 0.75) & (weights < 1.0)).all()), f"raw λ of empty boxes: {weights[:8].tolist()}"
