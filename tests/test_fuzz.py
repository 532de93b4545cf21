"""Fuzz: random shapes, layouts (views with gaps, channels_last, non-dense), dtypes and plans,
hostile ones included, through the real kernels under Triton's interpreter.

Every load, store and atomic of every launch is checked against the storage of the launch's own
tensor arguments (``kernels/traffic.py``, ``strict=True``: a stray access raises before it is
made, instead of crashing the interpreter). Hostile partners must be refused with a ValueError
naming ``partner`` before any launch; boxes out of range and NaN weights must run without a
stray access; the bytes of a view's base outside the view must stay as they were; and every
finite plan must give the reference's result (the specification).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import fastmix.functional as F
from fastmix.layout import FULL
from fastmix.plan import plan_args
from helpers import K, assert_close, backend, raw_bytes, requires_triton, seeded

pytestmark = requires_triton

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8]
LAYOUTS = ["contiguous", "channels_last", "column-step", "channel-slice", "transposed"]
PLANS = ["mixup-flip", "cutmix-roll", "cutout", "erase-noise", "user-perm", "boxes-out", "nan-weights",
         "hostile-partner"]
CASES = 36


def _batch(rng, dtype, layout):
    """``(x, base)``: a batch in ``layout`` and the tensor whose storage it lives in."""
    b, c, h, w = int(rng.integers(1, 7)), int(rng.integers(1, 5)), int(rng.integers(1, 10)), int(rng.integers(1, 12))
    video = layout == "contiguous" and rng.random() < 0.3
    shape = (b, c, 2, h, w) if video else (b, c, h, w)
    gen = seeded(int(rng.integers(1 << 30)))
    if dtype == torch.uint8:
        def make(*s):
            return torch.randint(0, 256, s, dtype=dtype, generator=gen)
    else:
        def make(*s):
            return torch.randn(*s, generator=gen).to(dtype)
    if layout == "channels_last":
        base = make(*shape).contiguous(memory_format=torch.channels_last)
        return base, base
    if layout == "column-step":
        base = make(b, c, h, 2 * w)
        return base[..., ::2], base
    if layout == "channel-slice":
        base = make(b, c + 1, h, w)
        return base[:, 1:], base
    if layout == "transposed":
        base = make(b, c, w, h)
        return base.transpose(2, 3), base
    base = make(*shape)
    return base, base


def _plan(rng, kind, x):
    b, size = x.shape[0], tuple(x.shape[-2:])
    gen = seeded(int(rng.integers(1 << 30)))
    if kind == "mixup-flip":
        return F.mixup_cutmix_plan(b, None, mixup_alpha=1.0, mode="elem", generator=gen)
    if kind == "cutmix-roll":
        return F.mixup_cutmix_plan(b, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", pairing="roll",
                                   generator=gen)
    if kind == "cutout":
        fill = tuple(float(v) for v in rng.integers(0, 256, x.shape[1])) if rng.random() < 0.5 else 7.0
        return F.cutout_plan(b, size, n_holes=int(rng.integers(1, 4)), length=int(rng.integers(0, 6)), fill=fill,
                             generator=gen)
    if kind == "erase-noise":
        return F.erasing_plan(b, size, p=1.0, value="random" if x.dtype.is_floating_point else 3.0, generator=gen)
    if kind == "user-perm":
        lam = torch.rand(b, generator=gen)
        return F.mixup_plan(lam, partner=torch.randperm(b, generator=gen))
    if kind == "boxes-out":
        plan = F.mixup_cutmix_plan(b, size, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", generator=gen)
        box = torch.from_numpy(rng.integers(-40, 60, (b, 1, 4))).to(torch.int32)
        box[rng.random(b) < 0.3, 0, 1::2] = FULL                     # "to the end of the axis"
        box[rng.random(b) < 0.2] = torch.tensor([-(2**31), 2**31 - 1, -(2**31), 2**31 - 1], dtype=torch.int32)
        return replace(plan, box=box, partner=torch.randperm(b, generator=gen))
    if kind == "nan-weights":
        plan = F.mixup_cutmix_plan(b, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", generator=gen)
        poison = torch.from_numpy(rng.random(b) < 0.5)
        return replace(plan, lam_self=torch.where(poison, float("nan"), plan.lam_self),
                       lam_partner=torch.where(poison, float("inf"), plan.lam_partner))
    # hostile: a partner that is not a permutation of range(B)
    bad = torch.from_numpy(rng.integers(-3, b + 3, b))
    if b > 1 and bool((torch.sort(bad).values == torch.arange(b)).all()):
        bad[0] = bad[1]
    if b == 1:
        bad[0] = 5
    return replace(F.mixup_cutmix_plan(b, None, mixup_alpha=1.0, generator=gen), partner=bad)


def _cases():
    rng = np.random.default_rng(2026)
    return [(int(rng.integers(1 << 30)), DTYPES[i % len(DTYPES)], LAYOUTS[i % len(LAYOUTS)],
             PLANS[i % len(PLANS)], bool(i % 3 == 0)) for i in range(CASES)]


@pytest.mark.parametrize("seed, dtype, layout, kind, out_of_place", _cases())
def test_fuzz_never_touches_memory_outside_the_tensors(seed, dtype, layout, kind, out_of_place):
    from fastmix.kernels import traffic

    rng = np.random.default_rng(seed)
    x, base = _batch(rng, dtype, layout)
    plan = _plan(rng, kind, x)
    labels = torch.from_numpy(rng.integers(0, K, x.shape[0]))
    original, before = x.clone(), raw_bytes(base)
    with backend("triton"), traffic.count(base, strict=True) as t:
        if kind == "hostile-partner":
            with pytest.raises(ValueError, match=r"\bpartner\b"):
                F.apply(x, plan, inplace=not out_of_place)
            with pytest.raises(ValueError, match=r"\bpartner\b"):
                F.targets(labels, plan, K)
            assert not t.launches, f"a kernel ran on a hostile plan: {dict(t.launches)}"
            assert torch.equal(raw_bytes(base), before)
            return
        out = F.apply(x, plan, inplace=not out_of_place)
        soft = F.targets(labels, plan, K, 0.1)
    assert not t.strays, t.strays
    # the view's base outside the view stays as it was (every base here is dense, so its memory
    # order is its logical order, the order raw_bytes reads)
    inside = torch.zeros(base.numel(), dtype=torch.bool)
    inside.as_strided(x.shape, x.stride(), x.storage_offset() - base.storage_offset()).fill_(True)
    if not base.is_contiguous():
        inside = inside.view(base.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2) if base.dim() == 4 else inside
    keep = ~_byte_mask(inside.reshape(base.shape), base)
    assert torch.equal(raw_bytes(base)[keep], before[keep]), "bytes outside the view changed"
    if out_of_place:
        assert torch.equal(raw_bytes(x), raw_bytes(original)), "inplace=False changed its input"
    if kind == "nan-weights":
        return
    with backend("reference"):
        want = F.apply(original.clone(), plan, inplace=not out_of_place)
        want_soft = F.targets(labels, plan, K, 0.1)
    assert_close(out, want, dtype, f"{kind} {layout} {dtype}")
    assert torch.allclose(soft, want_soft, atol=1e-6)


def _byte_mask(elements: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The element mask (logical order, as ``raw_bytes``) widened to one entry per byte."""
    return elements.contiguous().reshape(-1, 1).expand(-1, like.element_size()).reshape(-1)


def test_the_counter_stops_a_stray_access_before_it_happens():
    # the detector itself: a kernel that loads 2**40 bytes past its tensor would crash the
    # interpreter (a fault on a GPU); the strict counter raises first and names the kernel
    import triton
    import triton.language as tl

    from fastmix.kernels import traffic

    @triton.jit
    def _stray(x_ptr, offset):
        tl.store(x_ptr, tl.load(x_ptr + offset))

    x = torch.zeros(4)
    with traffic.count(x) as t:
        _stray[(1,)](x, 3)                                   # the last element: inside
    assert not t.strays
    with traffic.count(x, strict=True) as t, pytest.raises(traffic.StrayAccess, match="_stray"):
        _stray[(1,)](x, 2**38)                               # 2**40 bytes past x
    assert t.strays and t.strays[0][:2] == ("_stray", "load")


def test_a_garbage_cycle_table_stays_inside_the_batch():
    # the kernels clamp every table entry into the batch (kernels/walk.py): even a table no check
    # saw walks rows of x only
    from fastmix.kernels import blend, traffic
    from fastmix.layout import describe

    x = torch.randn(4, 2, 3, 5)
    args = plan_args(F.mixup_plan(torch.full((4,), 0.5), partner=torch.tensor([2, 0, 3, 1])), with_cycles=True)
    args = args._replace(walk=torch.tensor([0, -7, 3, 4000], dtype=torch.int32),
                         segments=torch.full_like(args.segments, 2**30))
    with traffic.count(x, strict=True) as t:
        blend.blend_(x, describe(x, args.spatial), args)
    assert t.launches and not t.strays
