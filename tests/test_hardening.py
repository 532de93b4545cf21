"""Hardening (issue 10): hostile plans are refused before any kernel runs, values a dtype cannot
hold are refused, CutMix label weights count the pixels actually kept, the overlap check is
exact, one rule for label dtypes on every backend, and a generator gives each DataLoader worker
its own stream. Expected values come from closed forms and constant-colour images."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2
from fastmix._checks import has_internal_overlap
from fastmix.partners import PERM
from helpers import (K, assert_unchanged, backend, constant_batch, mixed_row, raw_bytes, requires_triton, seeded,
                     value_of)

SIZE = (8, 12)
HOSTILE_PARTNERS = {
    "duplicate": torch.tensor([1, 0, 1, 2]),
    "too-large": torch.tensor([1, 0, 4, 2]),
    "negative": torch.tensor([1, 0, -1, 2]),
    "float": torch.tensor([1.0, 0.0, 3.0, 2.0]),
    "int32": torch.tensor([1, 0, 3, 2], dtype=torch.int32),
    "2-d": torch.tensor([[1, 0, 3, 2]]),
    "short": torch.tensor([1, 0, 2]),
}


def _user_plan(partner):
    """A sampled Mixup plan whose partner is replaced by ``partner`` (no constructor checks it)."""
    return replace(F.mixup_cutmix_plan(4, None, mixup_alpha=1.0, generator=seeded(1)), partner=partner)


# 1. partners --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(HOSTILE_PARTNERS))
def test_constructors_refuse_a_partner_that_is_not_a_permutation(kind):
    partner = HOSTILE_PARTNERS[kind]
    with pytest.raises(ValueError, match=r"\bpartner\b"):
        F.mixup_plan(torch.full((4,), 0.3), partner=partner)
    with pytest.raises(ValueError, match=r"\bpartner\b"):
        F.cutmix_plan(torch.tensor([[0, 4, 0, 4]] * 4), SIZE, partner=partner)


@pytest.mark.parametrize("kind", list(HOSTILE_PARTNERS))
@pytest.mark.parametrize("name", ["reference", "cpu", pytest.param("triton", marks=requires_triton)])
def test_apply_and_targets_refuse_a_hostile_partner_before_writing(kind, name):
    plan = _user_plan(HOSTILE_PARTNERS[kind])
    x, y = torch.randn(4, 3, *SIZE), torch.arange(4)
    before = [raw_bytes(x), raw_bytes(y)]
    with backend(name):
        for call in (lambda: F.apply(x, plan), lambda: F.apply(x, plan, inplace=False),
                     lambda: F.targets(y, plan, K)):
            with pytest.raises(ValueError, match=r"\bpartner\b"):
                call()
    assert_unchanged([x, y], before, kind)


def test_a_partner_on_another_device_is_refused():
    with pytest.raises(ValueError, match=r"\bpartner\b"):
        F.mixup_plan(torch.full((4,), 0.5), partner=torch.tensor([1, 0, 3, 2], device="meta"))


def test_a_user_partner_is_checked_once_and_again_after_a_write():
    partner = torch.tensor([2, 0, 1, 3])
    plan = _user_plan(partner)
    assert plan.pairing == PERM
    x = constant_batch(4, (3, *SIZE))
    F.apply(x, plan)
    assert "_checked_partner" in plan.__dict__, "a checked partner is remembered"
    partner[3] = 2            # now a duplicate: the version counter moved, so it is checked again
    with pytest.raises(ValueError, match=r"\bpartner\b"):
        F.apply(constant_batch(4, (3, *SIZE)), plan)


def test_a_user_permutation_mixes_with_the_rows_it_names():
    # pixel truth: sample i becomes lam * v_i + (1 - lam) * v_partner[i]
    partner = torch.tensor([2, 0, 3, 1])
    lam = torch.tensor([0.25, 0.5, 0.75, 0.125])
    x = constant_batch(4, (3, *SIZE))
    for name in ("reference", "cpu") + (("triton",) if fastmix.ops.triton_available() else ()):
        with backend(name):
            out = F.apply(x.clone(), F.mixup_plan(lam, partner=partner))
        for i in range(4):
            want = float(lam[i]) * value_of(i) + (1 - float(lam[i])) * value_of(int(partner[i]))
            assert torch.allclose(out[i], torch.full_like(out[i], want)), f"{name}: row {i}"


@pytest.mark.parametrize("field, value", [
    ("lam_self", torch.zeros(3)), ("lam_partner", torch.zeros(4, 1)), ("label_lam", torch.zeros(5)),
    ("box", torch.zeros(4, 1, 3, dtype=torch.int32)), ("box", torch.zeros(4, 1, 4, dtype=torch.int64)),
    ("kind", torch.zeros(2, dtype=torch.int8)), ("fill", torch.zeros(4, 2)), ("mask", torch.zeros(4, 3, 3)),
    ("noise_seed", torch.zeros(2, dtype=torch.int64)),
])
def test_plan_fields_the_kernels_index_are_checked(field, value):
    plan = F.cutout_plan(4, SIZE, length=4, generator=seeded(2))
    x = torch.randn(4, 3, *SIZE)
    before = [raw_bytes(x)]
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        F.apply(x, replace(plan, **{field: value}))
    assert_unchanged([x], before, field)


# 4-5. user weights and boxes -----------------------------------------------------------------

@pytest.mark.parametrize("lam", [1.5, -0.25, float("nan"), float("inf")])
def test_mixup_plan_refuses_lam_outside_zero_one(lam):
    with pytest.raises(ValueError, match=r"\blam\b"):
        F.mixup_plan(torch.tensor([0.5, lam, 0.5, 0.5]))


def test_mixup_plan_accepts_the_ends():
    plan = F.mixup_plan(torch.tensor([0.0, 1.0, 0.5, 1.0]))
    assert plan.label_lam.tolist() == [0.0, 1.0, 0.5, 1.0]


def test_cutmix_box_partly_outside_is_clipped_and_weighted_by_the_pixels_kept():
    h, w = SIZE
    # [y0, y1, x0, x1]: partly above/left, partly below/right, wholly outside, inside
    box = torch.tensor([[-4, 4, -6, 3], [5, 20, 9, 30], [-9, -1, 2, 5], [1, 3, 2, 7]])
    kept = [(4 * 3), (3 * 3), 0, (2 * 5)]        # the pixels of each box inside the 8 x 12 image
    plan = F.cutmix_plan(box, SIZE)
    want = torch.tensor([1.0 - k / (h * w) for k in kept])
    assert torch.allclose(plan.label_lam, want), plan.label_lam
    # pixel truth: the partner's colour covers exactly the clipped box
    out = F.apply(constant_batch(4, (1, h, w)), plan)
    for i in range(4):
        partner_pixels = int((out[i] == value_of(3 - i)).sum())
        assert partner_pixels == kept[i], (i, partner_pixels)


# 3, 6. values a dtype cannot hold ----------------------------------------------------------------

@pytest.mark.parametrize("dtype, ignore_index", [(torch.uint8, -1), (torch.uint8, 256), (torch.int8, 255),
                                                 (torch.int8, -129), (torch.int16, 40000)])
def test_apply_masks_refuses_an_ignore_index_the_dtype_cannot_hold(dtype, ignore_index):
    masks = torch.zeros(4, *SIZE, dtype=dtype)
    plan = F.cutout_plan(4, SIZE, length=4, generator=seeded(3))
    with pytest.raises(ValueError, match=r"\bignore_index\b"):
        F.apply_masks(masks, plan, ignore_index=ignore_index)
    assert not masks.any()


@pytest.mark.parametrize("dtype, ignore_index", [(torch.uint8, 255), (torch.int8, -1), (torch.int8, 127)])
def test_apply_masks_writes_an_ignore_index_that_fits(dtype, ignore_index):
    masks = torch.zeros(4, *SIZE, dtype=dtype)
    plan = F.cutout_plan(4, SIZE, length=4, generator=seeded(3))
    F.apply_masks(masks, plan, ignore_index=ignore_index)
    assert set(masks.unique().tolist()) == {0, ignore_index}


@pytest.mark.parametrize("make, argument", [
    (lambda: fastmix.Cutout(length=4, fill=300), "fill"), (lambda: fastmix.Cutout(length=4, fill=-1), "fill"),
    (lambda: fastmix.Cutout(length=4, fill=(0, 10, 256)), "fill"),
    (lambda: fastmix.RandomErasing(p=1.0, value=300), "value"), (lambda: fastmix.RandomErasing(p=1.0, value=-0.5), "value"),
])
def test_fill_values_a_uint8_batch_cannot_hold_are_refused_at_call_time(make, argument):
    transform = make()                 # the dtype is known only at call time
    x = torch.randint(0, 256, (4, 3, *SIZE), dtype=torch.uint8, generator=seeded(4))
    before = [raw_bytes(x)]
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        transform(x)
    assert_unchanged([x], before, argument)
    transform(torch.randn(4, 3, *SIZE))  # the same fill on a float batch is fine


# 7. numpy batches, label dtypes --------------------------------------------------------------

@pytest.mark.parametrize("call, argument", [
    (lambda a: fastmix.Mixup(num_classes=K)(a, torch.arange(4)), "x"),
    (lambda a: fastmix.Cutout(length=4)(a), "x"),
    (lambda a: fastmix.RandomErasing()(a), "x"),
    (lambda a: fastmix.v2.MixUp(num_classes=K)(a, torch.arange(4)), "images"),
    (lambda a: fastmix.v2.CutMix(num_classes=K)(a, torch.arange(4)), "images"),
    (lambda a: F.apply(a, F.mixup_plan(torch.full((4,), 0.5))), "x"),
    (lambda a: F.apply_masks(a, F.cutout_plan(4, SIZE, length=4)), "masks"),
])
def test_a_numpy_batch_is_a_type_error_naming_the_argument(call, argument):
    array = np.zeros((4, 3, *SIZE), np.float32) if argument != "masks" else np.zeros((4, *SIZE), np.uint8)
    with pytest.raises(TypeError, match=rf"\b{argument}\b.*torch.from_numpy"):
        call(array)
    assert not array.any()


LABEL_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


@pytest.mark.parametrize("name", ["reference", "cpu", pytest.param("triton", marks=requires_triton)])
def test_every_integer_label_dtype_is_accepted_alike_on_every_backend(name):
    # one rule: any integer dtype holds class indices; Mixup, v2 and F.targets agree with timm's formula
    lam = torch.tensor([0.25, 0.5, 0.5, 0.75])
    plan = F.mixup_plan(lam)
    own = [3, 7, 1, 5]
    want = torch.stack([mixed_row(K, own[i], own[3 - i], float(lam[i]), 0.1) for i in range(4)])
    with backend(name):
        for dtype in LABEL_DTYPES:
            y = torch.tensor(own, dtype=dtype)
            assert torch.allclose(F.targets(y, plan, K, 0.1).double(), want, atol=1e-6), dtype
            _, soft = fastmix.Mixup(num_classes=K, generator=seeded(5))(torch.randn(4, 3, *SIZE), y)
            _, soft64 = fastmix.Mixup(num_classes=K, generator=seeded(5))(torch.randn(4, 3, *SIZE), y.long())
            assert torch.equal(soft, soft64), f"Mixup, {dtype}"
            _, tv = fastmix.v2.MixUp(num_classes=K, generator=seeded(6))(torch.randn(4, 3, *SIZE), y)
            _, tv64 = fastmix.v2.MixUp(num_classes=K, generator=seeded(6))(torch.randn(4, 3, *SIZE), y.long())
            assert torch.equal(tv, tv64), f"v2.MixUp, {dtype}"


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 1, 0], dtype=torch.bool),
                                    torch.tensor([0.0, 1.0, 2.0, 3.0])])
def test_bool_and_float_class_indices_are_refused_by_the_functional_api(labels):
    with pytest.raises(TypeError, match=r"\blabels\b"):
        F.targets(labels, F.mixup_plan(torch.full((4,), 0.5)), K)


# 10. the overlap check is exact --------------------------------------------------------------

def _brute_overlap(shape, strides) -> bool:
    offsets = [sum(i * s for i, s in zip(index, strides)) for index in itertools.product(*map(range, shape))]
    return len(set(offsets)) != len(offsets)


def test_the_overlap_check_agrees_with_enumeration():
    rng = np.random.default_rng(0)
    storage = torch.empty(400)
    for _ in range(400):
        dims = int(rng.integers(1, 5))
        shape = [int(v) for v in rng.integers(0, 5, dims)]
        strides = [int(v) for v in rng.integers(0, 8, dims)]
        view = storage.as_strided(shape, strides)
        assert has_internal_overlap(view) == _brute_overlap(shape, strides), (shape, strides)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(4, 3, 8, 24)[:, :, :, ::2],                       # every other column
    lambda: torch.randn(4, 6, 8, 12)[:, ::2],                              # every other channel
    lambda: torch.randn(4000).as_strided((4, 3, 8, 12), (300, 100, 12, 1)),  # gaps between planes
    lambda: torch.randn(4000).as_strided((4, 3, 8, 12), (864, 1, 108, 9)),   # channels interleaved in lanes
    lambda: torch.randn(4000).as_strided((4, 2, 8, 12), (400, 3, 48, 4)),    # crossing spans, distinct offsets
])
def test_interleaved_views_without_overlap_are_mixed_in_place_like_a_copy(make):
    x = make()
    assert not has_internal_overlap(x)
    want = F.apply(x.clone(), F.mixup_plan(torch.tensor([0.25, 0.5, 0.5, 0.75])))
    got = fastmix.functional.apply(x, F.mixup_plan(torch.tensor([0.25, 0.5, 0.5, 0.75])))
    assert got is x and torch.allclose(x, want)


def test_expanded_batches_are_refused_in_place_and_mixed_out_of_place():
    base = torch.randn(1, 3, *SIZE)
    x = base.expand(4, 3, *SIZE)
    before = [raw_bytes(base)]
    with pytest.raises(ValueError, match=r"\bx\b.*overlaps"):
        fastmix.Mixup(num_classes=K)(x, torch.arange(4))
    assert_unchanged([base], before, "expanded")
    out = F.apply(x, F.mixup_plan(torch.full((4,), 0.5)), inplace=False)
    assert torch.allclose(out, x)          # every sample is the same image: mixing changes nothing


def test_an_empty_batch_passes_through():
    x, y = torch.randn(0, 3, *SIZE), torch.zeros(0, dtype=torch.long)
    out, soft = fastmix.Mixup(num_classes=K, cutmix_alpha=1.0)(x, y)
    assert out.shape == x.shape and soft.shape == (0, K)


# 9. generators in DataLoader workers -------------------------------------------------------

class _Batches(torch.utils.data.Dataset):
    """Each item is a whole batch mixed in the worker with a shared generator: the plan's lambda."""

    def __init__(self, generator):
        self.mixer = fastmix.Mixup(num_classes=K, mode="elem", generator=generator)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.mixer.plan(torch.zeros(4, 3, *SIZE)).label_lam


def _worker_lams(seed: int):
    loader = torch.utils.data.DataLoader(_Batches(torch.Generator().manual_seed(0)), batch_size=None, num_workers=2,
                                         generator=torch.Generator().manual_seed(seed))
    return [lam for lam in loader]       # items 0, 2 from worker 0; 1, 3 from worker 1


def test_dataloader_workers_each_draw_their_own_reproducible_stream():
    first, again, other = _worker_lams(10), _worker_lams(10), _worker_lams(11)
    assert not torch.equal(first[0], first[1]), "the two workers drew the same plan"
    assert not torch.equal(first[2], first[3])
    assert all(torch.equal(a, b) for a, b in zip(first, again)), "a seeded DataLoader must replay"
    assert not torch.equal(first[0], other[0]), "another DataLoader seed must give other plans"
