"""Cutout and Random Erasing: the transforms (holes filled with a number, a per-channel fill or
standard noise, labels kept, holes clipped at the border) and their plans (hole sizes, uniform
centres, torchvision's area and aspect-ratio rule, ``p`` as the frequency of erased rows).

Rates are checked with binomial z-scores and chi-square critical values (``helpers``), never
with numbers copied from a run.
"""
from __future__ import annotations

import math

import pytest
import torch

import fastmix
import fastmix.functional as F
import oracle
from fastmix.functional import cutout_plan, erasing_plan
from fastmix.plan import ERASE, NONE
from helpers import assert_binomial, assert_uniform_ints, constant_batch, seeded, twins

# the transforms

@pytest.mark.parametrize("fill", [-1.5, (0.25, 0.5, 0.75)], ids=["number", "per-channel"])
def test_cutout_fills_holes_and_keeps_labels(fill):
    b = 16
    cutout, twin = twins(fastmix.Cutout, 3, n_holes=3, length=6, fill=fill)
    x = constant_batch(b, tail=(3, 20, 24))
    plan = twin.plan(x)
    out = cutout(x)
    assert isinstance(out, torch.Tensor) and out is x, "Cutout returns the images only, mixed in place"
    original = constant_batch(b, tail=(3, 20, 24))
    fills = torch.tensor(fill if isinstance(fill, tuple) else (fill,) * 3)
    for i in range(b):
        erased = out[i] != original[i]
        assert torch.equal(erased, erased[:1].expand_as(erased)), f"sample {i}: holes differ between channels"
        assert torch.equal(erased[0], oracle.region_mask(plan, i, x)[0]), f"sample {i}: holes are not the plan's"
        assert int(erased[0].sum()) <= 3 * 36, f"sample {i}: {int(erased[0].sum())} erased pixels for 3 holes of 6x6"
        for c in range(3):
            vals = out[i, c][erased[c]]
            assert bool((vals == fills[c]).all()), f"sample {i} channel {c}: erased values {vals.unique()[:4]}"
    assert bool((out != original).any()), "Cutout erased nothing"

# every plan distribution here must hold for the host sampler and for the fused Triton one
each_sampler = pytest.mark.usefixtures("each_sampler")


def test_cutout_holes_near_the_border_are_clipped():
    b, side, length = 64, 16, 8
    x = constant_batch(b, tail=(3, side, side))
    out = fastmix.Cutout(n_holes=1, length=length, fill=0.0, generator=seeded(7))(x)
    clipped = interior = 0
    for i in range(b):
        erased = out[i, 0] == 0.0
        rows = erased.any(1).nonzero()[:, 0]
        cols = erased.any(0).nonzero()[:, 0]
        assert rows.numel() > 0, f"sample {i}: p=1 but no hole"
        y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        assert int(erased.sum()) == (y1 - y0) * (x1 - x0), f"sample {i}: the hole is not a rectangle"
        assert y1 - y0 <= length and x1 - x0 <= length, f"sample {i}: hole {(y0, y1, x0, x1)} larger than {length}"
        touches = y0 == 0 or x0 == 0 or y1 == side or x1 == side
        if not touches:
            assert (y1 - y0, x1 - x0) == (length, length), f"sample {i}: interior hole {(y0, y1, x0, x1)}"
            interior += 1
        elif (y1 - y0, x1 - x0) != (length, length):
            clipped += 1
    assert clipped > 0 and interior > 0, f"{clipped} clipped and {interior} interior holes in {b} samples"
    x = constant_batch(8, tail=(3, side, side))
    assert torch.equal(fastmix.Cutout(length=8, p=0.0)(x), constant_batch(8, tail=(3, side, side)))


@pytest.mark.parametrize("value", [7.0, (-1.0, 0.5, 2.0)], ids=["number", "per-channel"])
def test_random_erasing_fills_one_box(value):
    b, side = 32, 32
    scale = (0.1, 0.3)
    x = constant_batch(b, tail=(3, side, side))
    out = fastmix.RandomErasing(p=1.0, scale=scale, value=value, generator=seeded(2))(x)
    assert isinstance(out, torch.Tensor) and out is x
    original = constant_batch(b, tail=(3, side, side))
    fills = torch.tensor(value if isinstance(value, tuple) else (value,) * 3)
    erased_any = 0
    for i in range(b):
        erased = out[i] != original[i]
        assert torch.equal(erased, erased[:1].expand_as(erased)), f"sample {i}: box differs between channels"
        count = int(erased[0].sum())
        if count == 0:
            continue
        erased_any += 1
        rows = erased[0].any(1).nonzero()[:, 0]
        cols = erased[0].any(0).nonzero()[:, 0]
        assert count == rows.numel() * cols.numel(), f"sample {i}: erased pixels are not one box"
        frac = count / side ** 2
        assert 0.5 * scale[0] <= frac <= 1.5 * scale[1], f"sample {i}: erased fraction {frac:.3f} vs scale {scale}"
        for c in range(3):
            assert bool((out[i, c][erased[c]] == fills[c]).all()), f"sample {i} channel {c}: wrong fill"
    assert erased_any >= b // 2, f"p=1 erased only {erased_any} of {b} samples"


def test_random_erasing_random_value_is_standard_noise_and_replayable():
    b, side = 16, 48
    x = torch.full((b, 3, side, side), 50.0)
    transform = fastmix.RandomErasing(p=1.0, scale=(0.1, 0.3), value="random", generator=seeded(3))
    plan = transform.plan(x)
    first = F.apply(x.clone(), plan)
    second = F.apply(x.clone(), plan)
    assert torch.equal(first, second), "one plan applied twice must draw the same noise"
    noise = first[first != 50.0].double()
    assert noise.numel() > 5000, f"only {noise.numel()} erased pixels"
    assert bool(torch.isfinite(noise).all()), "noise has non-finite values"
    mean, std = float(noise.mean()), float(noise.std())
    assert abs(mean) < 0.05, f"noise mean {mean:.4f} (expected ~0 over {noise.numel()} pixels)"
    assert abs(std - 1.0) < 0.05, f"noise std {std:.4f} (expected ~1)"
    assert noise.unique().numel() > 0.9 * noise.numel(), "noise values repeat: not drawn per pixel"
    # noise differs between samples (counter includes the sample)
    out = transform(torch.full((2, 3, side, side), 50.0))
    both = (out[0] != 50.0) & (out[1] != 50.0)
    if bool(both.any()):
        assert not torch.equal(out[0][both], out[1][both]), "two samples drew the same noise"


# the plans

@each_sampler
@pytest.mark.parametrize("length", [8, 7])
def test_cutout_boxes(length, gen):
    size = height, width = (17, 23)
    n, holes = 3000, 2
    plan = cutout_plan(n, size, n_holes=holes, length=length, fill=0.25, generator=gen)
    assert plan.box.shape == (n, holes, 4) and plan.box.dtype == torch.int32
    assert bool((plan.kind == ERASE).all()), f"p=1: kinds {plan.kind.unique().tolist()}"
    assert bool((plan.label_lam == 1).all() & (plan.lam_self == 0).all() & (plan.lam_partner == 0).all())
    assert torch.equal(plan.partner, torch.arange(n)) and plan.pairing == "self"
    assert plan.fill.shape == (n, 1) and bool((plan.fill == 0.25).all()) and plan.noise_seed is None
    box = plan.box.reshape(-1, 4).long()
    y0, y1, x0, x1 = box.unbind(1)
    half = length // 2
    for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
        side = hi - lo
        assert bool(((lo >= 0) & (hi <= extent)).all()), f"{axis}: hole outside the image"
        assert bool(((side > 0) & (side <= length)).all()), \
            f"{axis}: sides {side.unique().tolist()} not in (0, {length}]"
        inside = (lo > 0) & (hi < extent)
        assert bool((side[inside] == 2 * half).all()), f"{axis}: unclipped sides {side[inside].unique().tolist()}"
        assert int((side < 2 * half).sum()) > 0, f"{axis}: no hole is clipped at the border"
        centre = torch.where(lo > 0, lo + half, hi - half)
        assert_uniform_ints(centre, extent, f"Cutout centre {axis} (length {length})")


@each_sampler
def test_cutout_p_and_fill_per_channel(gen):
    n = 4000
    plan = cutout_plan(n, (16, 16), n_holes=3, length=6, fill=(0.1, 0.2, 0.3), p=0.35, generator=gen)
    erased = plan.kind == ERASE
    assert_binomial(int(erased.sum()), n, 0.35, "cutout p=0.35: erased rows")
    assert bool((plan.box[~erased] == 0).all()), "a row that was not cut still has boxes"
    nonempty = (plan.box[..., 0] < plan.box[..., 1]) & (plan.box[..., 2] < plan.box[..., 3])
    assert bool(nonempty[erased].all()), "a cut row has an empty hole"
    assert bool((plan.label_lam == 1).all()), "cutout must leave labels unchanged"
    assert plan.fill.shape == (n, 3)
    assert torch.allclose(plan.fill, torch.tensor([0.1, 0.2, 0.3]).expand(n, 3))


@each_sampler
@pytest.mark.parametrize("scale, ratio", [((0.02, 0.33), (0.3, 3.3)), ((0.1, 0.2), (0.5, 2.0))])
def test_erasing_boxes(scale, ratio, gen):
    size = height, width = (40, 56)
    n = 3000
    plan = erasing_plan(n, size, p=1.0, scale=scale, ratio=ratio, value=0.5, generator=gen)
    assert plan.box.shape == (n, 1, 4)
    erased = plan.kind == ERASE
    assert int(erased.sum()) > n - 5, f"p=1: only {int(erased.sum())}/{n} rows erased"
    assert bool((plan.label_lam == 1).all() & (plan.lam_self == 0).all() & (plan.lam_partner == 0).all())
    y0, y1, x0, x1 = plan.box[erased, 0].long().unbind(1)
    h, w = (y1 - y0).double(), (x1 - x0).double()
    assert bool(((y0 >= 0) & (x0 >= 0) & (y1 <= height) & (x1 <= width)).all()), "box outside the image"
    # torchvision accepts an attempt only when h < H and w < W
    assert bool(((h > 0) & (h < height) & (w > 0) & (w < width)).all()), "box side out of (0, H) x (0, W)"
    # h = round(sqrt(A r)), w = round(sqrt(A / r)) with A/(HW) in [s0, s1] and r in [r0, r1]: the unrounded
    # sides lie in [h - 1/2, h + 1/2] x [w - 1/2, w + 1/2], so A = h_t w_t and r = h_t / w_t are bounded by
    area, tiny = height * width, 1e-9
    low_area, high_area = (h - 0.5) * (w - 0.5) / area, (h + 0.5) * (w + 0.5) / area
    bad = (high_area < scale[0] - tiny) | (low_area > scale[1] + tiny)
    assert not bool(bad.any()), f"area fractions {(h * w / area)[bad][:5].tolist()} outside {scale} after rounding"
    low_ratio, high_ratio = (h - 0.5) / (w + 0.5), (h + 0.5) / (w - 0.5)
    bad = (high_ratio < ratio[0] - tiny) | (low_ratio > ratio[1] + tiny)
    assert not bool(bad.any()), f"aspect ratios {(h / w)[bad][:5].tolist()} outside {ratio} after rounding"
    # and the draws fill the ranges (the checks above would pass for a constant box too)
    frac = h * w / area
    assert float(frac.min()) < scale[0] + 0.1 * (scale[1] - scale[0]), f"smallest area {float(frac.min()):.3f}"
    assert float(frac.max()) > scale[1] - 0.1 * (scale[1] - scale[0]), f"largest area {float(frac.max()):.3f}"
    log_r = (h / w).log()
    span = math.log(ratio[1]) - math.log(ratio[0])
    assert float(log_r.min()) < math.log(ratio[0]) + 0.2 * span and float(log_r.max()) > math.log(ratio[1]) - 0.2 * span
    # positions are uniform in [0, H - h] inclusive (torchvision's randint(0, H - h + 1)): both edges are reached
    assert int((y0 == 0).sum()) > 10 and int((y1 == height).sum()) > 10, "boxes never touch the top/bottom edge"
    assert int((x0 == 0).sum()) > 10 and int((x1 == width).sum()) > 10, "boxes never touch the left/right edge"
    assert plan.box[erased, 0].unique(dim=0).shape[0] > n // 2, "per-sample boxes are not independent"


@each_sampler
def test_erasing_p_and_values(gen):
    n = 4000
    plan = erasing_plan(n, (40, 56), p=0.3, value=(0.1, 0.2, 0.3), generator=gen)
    erased = plan.kind == ERASE
    assert_binomial(int(erased.sum()), n, 0.3, "erasing p=0.3: erased rows")
    assert bool((plan.box[~erased] == 0).all()), "a row that was not erased has a box"
    assert plan.fill.shape == (n, 3) and plan.noise_seed is None
    assert torch.allclose(plan.fill, torch.tensor([0.1, 0.2, 0.3]).expand(n, 3))
    single = erasing_plan(8, (40, 56), value=0.0, generator=gen)
    assert single.fill.shape == (8, 1) and bool((single.fill == 0).all())
    noise = erasing_plan(8, (40, 56), p=1.0, value="random", generator=gen)
    assert noise.fill is None, "value='random' must not store a fill"
    assert noise.noise_seed is not None and noise.noise_seed.shape == (1,) and noise.noise_seed.dtype == torch.int64
    assert noise.has_fill


@each_sampler
def test_erasing_gives_up_when_nothing_fits(gen):
    # a 2x2 image admits no box with h < 2, w < 2 and area >= 0.9 * 4: every attempt fails
    plan = erasing_plan(64, (2, 2), p=1.0, scale=(0.9, 1.0), generator=gen)
    assert bool((plan.kind == NONE).all()), f"kinds {plan.kind.tolist()}"
    assert bool((plan.box == 0).all())
