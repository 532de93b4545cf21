"""Segmentation masks follow the images pixel for pixel (``functional.apply_masks``): CutMix
pastes the partner's label where it pastes the partner's pixels, Mixup leaves masks alone,
Cutout and Random Erasing write ``ignore_index``; and ``Plan.for_masks`` turns a plan into the
one its masks need.
"""
from __future__ import annotations

import pytest
import torch

import fastmix.functional as F
from fastmix.functional import cutout_plan, erasing_plan, mixup_cutmix_plan
from fastmix.plan import CUTMIX, KIND_NAMES, MIXUP, NONE
from fastmix import ops
from helpers import KERNEL_DEVICE, H, W, backend, constant_batch, seeded, value_of

def _mask_plans(b):
    size = (H, W)
    return {
        "cutmix-elem": F.mixup_cutmix_plan(b, size, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                                           generator=seeded(1)),
        "switch-batch": F.mixup_cutmix_plan(b, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair",
                                            generator=seeded(2)),
        "cutmix-roll": F.mixup_cutmix_plan(b, size, mixup_alpha=0.0, cutmix_alpha=1.0, pairing="roll",
                                           generator=seeded(3)),
        "cutmix-minmax": F.mixup_cutmix_plan(b, size, mixup_alpha=0.0, cutmix_minmax=(0.3, 0.8), mode="elem",
                                             generator=seeded(4)),
    }


@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.uint8])
@pytest.mark.parametrize("name", ["cutmix-elem", "switch-batch", "cutmix-roll", "cutmix-minmax"])
def test_masks_follow_the_images(name, mask_dtype):
    b = 7
    plan = _mask_plans(b)[name]
    images = F.apply(constant_batch(b), plan)
    masks = torch.arange(b, dtype=mask_dtype).view(b, 1, 1).expand(b, H, W).contiguous()
    out = F.apply_masks(masks, plan)
    assert out is masks and out.dtype == mask_dtype
    cut = 0
    for i in range(b):
        p = int(plan.partner[i])
        kind = KIND_NAMES[int(plan.kind[i])]
        img = images[i, 0].double()
        if kind == "mixup":
            assert bool((out[i] == i).all()), f"sample {i} (mixup): its mask must stay {i}"
            continue
        own = img == value_of(i)
        from_partner = img == value_of(p)
        assert bool((own | from_partner).all())
        cut += int(from_partner.sum()) if p != i else 0
        assert torch.equal(out[i] == i, own), f"sample {i} ({kind}): mask == {i} where the pixels are not its own"
        assert torch.equal(out[i] == p, from_partner), (
            f"sample {i} ({kind}): mask == {p} differs from the pixels pasted from sample {p}")
    assert cut > 0, f"{name}: nothing was cut"


@pytest.mark.parametrize("ignore_index", [255, -1])
def test_masks_get_ignore_index_under_cutout_and_erasing(ignore_index):
    b = 8
    for plan in (F.cutout_plan(b, (H, W), n_holes=2, length=5, fill=-3.0, generator=seeded(1)),
                 F.erasing_plan(b, (H, W), p=1.0, value="random", generator=seeded(2))):
        images = F.apply(constant_batch(b), plan)
        masks = torch.arange(b).view(b, 1, 1).expand(b, H, W).contiguous()
        F.apply_masks(masks, plan, ignore_index=ignore_index)
        for i in range(b):
            erased = images[i, 0] != value_of(i)
            assert torch.equal(masks[i] == ignore_index, erased), f"sample {i}: ignore_index not where erased"
            assert bool((masks[i][~erased] == i).all()), f"sample {i}: mask changed outside the hole"
        assert bool((masks == ignore_index).any())


def test_for_masks(gen):
    n = 400
    plan = mixup_cutmix_plan(n, (24, 40), mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.8, mode="elem", generator=gen)
    masks = plan.for_masks(ignore_index=7)
    mix, cut, none = plan.kind == MIXUP, plan.kind == CUTMIX, plan.kind == NONE
    assert int(mix.sum()) > 50 and int(cut.sum()) > 50 and int(none.sum()) > 20
    # Mixup rows: an empty region and weights (1, 0) make the row a no-op
    y0, y1, x0, x1 = masks.box[mix].unbind(-1)
    assert bool(((y0 >= y1) | (x0 >= x1)).all()), "for_masks: a Mixup row still has a region"
    assert bool((masks.lam_self[mix] == 1).all() & (masks.lam_partner[mix] == 0).all())
    # CutMix and untouched rows are kept as they are
    keep = cut | none
    for field in ("box", "lam_self", "lam_partner"):
        assert torch.equal(getattr(masks, field)[keep], getattr(plan, field)[keep]), f"for_masks changed {field}"
    assert torch.equal(masks.partner, plan.partner) and torch.equal(masks.kind, plan.kind)
    assert torch.equal(masks.label_lam, plan.label_lam)
    assert masks.size == plan.size and masks.noise_seed is None

    erase = erasing_plan(64, (24, 40), p=0.5, value="random", generator=gen).for_masks()
    assert erase.noise_seed is None, "masks must not be filled with noise"
    assert erase.fill.shape == (64, 1) and bool((erase.fill == 255).all()), "erased mask pixels must be ignore_index"
    assert bool((erase.lam_self == 0).all() & (erase.lam_partner == 0).all()), "erase rows must write the fill"
    cut_out = cutout_plan(64, (24, 40), n_holes=2, fill=0.5, generator=gen)
    masks = cut_out.for_masks(ignore_index=-1)
    assert torch.equal(masks.box, cut_out.box) and bool((masks.fill == -1).all())


MASK_EXTREMES = [(dtype, value) for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
                 for value in (torch.iinfo(dtype).min, torch.iinfo(dtype).max, torch.iinfo(dtype).max - 1)] + [
    (torch.int32, 2**24 + 1), (torch.int64, 2**24 + 1), (torch.int64, 2**53 + 1), (torch.int32, -(2**24) - 1)]


@pytest.mark.parametrize("where", ["reference", "cpu", "triton"])
@pytest.mark.parametrize("dtype, ignore_index", MASK_EXTREMES,
                         ids=[f"{str(d).split('.')[1]}-{v}" for d, v in MASK_EXTREMES])
def test_ignore_index_and_copied_ids_land_bit_for_bit(where, dtype, ignore_index):
    """Any ``ignore_index`` the mask dtype holds is written exactly (a float32 fill would give
    -2**31 for 2**31 - 1 and 16777216 for 16777217), and CutMix copies class ids at the dtype's
    extremes exactly: on the reference, the CPU path and the kernels (under the interpreter)."""
    if where == "triton" and not ops.triton_available():
        pytest.skip("triton is not installed")
    b = 6
    info = torch.iinfo(dtype)
    # sample i holds an id at the far end of the dtype from ignore_index, different per sample
    ids = [info.max - i if ignore_index < 0 else info.min + i for i in range(b)]
    device = KERNEL_DEVICE if where == "triton" else "cpu"
    plans = {"erase": F.cutout_plan(b, (H, W), n_holes=2, length=6, generator=seeded(5)),
             "cutmix": F.mixup_cutmix_plan(b, (H, W), mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                                           generator=seeded(6))}
    for name, plan in plans.items():
        masks = torch.tensor(ids, dtype=dtype).view(b, 1, 1).repeat(1, H, W)
        images = F.apply(torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1).repeat(1, 1, H, W), plan)
        with backend(where):
            out = F.apply_masks(masks.to(device), plan.to(device), ignore_index=ignore_index).cpu()
        for i in range(b):
            source = images[i, 0]
            if name == "erase":
                hole = source != i + 1     # Cutout fills 0, which no sample holds
                want = torch.where(hole, torch.tensor(ignore_index, dtype=dtype), torch.tensor(ids[i], dtype=dtype))
            else:
                want = torch.tensor(ids, dtype=dtype)[source.long() - 1]
            assert torch.equal(out[i], want), (
                f"{where} {name} sample {i}: {int((out[i] != want).sum())} pixels differ; "
                f"got {sorted(set(out[i].flatten().tolist()))[:4]}, want {sorted(set(want.flatten().tolist()))[:4]}")
        if name == "erase":
            assert bool((out == ignore_index).any()), f"{where}: no hole was cut"
