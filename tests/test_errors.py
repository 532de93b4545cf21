"""Bad input raises ValueError or TypeError whose message names the argument, before anything is
written: two flat tables, one row per case, each checked by one test (``CALL_ERRORS`` has at
least 40 kinds across every public entry point: ``test_the_call_table_covers_every_entry_point``).

``CALL_ERRORS`` rows are ``pytest.param(build, error, argument, id=...)``: ``build()`` makes the
inputs and returns ``(call, watched)``, the call that must raise and the tensors that must come
out of it byte-for-byte unchanged. ``CTOR_ERRORS`` rows are ``pytest.param(make, error,
argument, id=...)`` for arguments a constructor must refuse. The plan samplers' own checks and
the boundaries the checks must accept follow.
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2
from fastmix.functional import mixup_cutmix_plan
from helpers import H, K, W, assert_unchanged, distinct_labels, raw_bytes, seeded


def images(b=4, tail=(3, H, W), dtype=torch.float32):
    return torch.randn(b, *tail, generator=seeded(77)).to(dtype)


def labels(b=4, k=K):
    return distinct_labels(b, k)


def calling(function, *args, watch=None, **kwargs):
    """A build's result: ``function(*args, **kwargs)`` to run inside ``pytest.raises``, and the
    tensors that must survive it unchanged (the tensor arguments, or ``watch``)."""
    watched = list(watch) if watch is not None else [a for a in args if isinstance(a, torch.Tensor)]
    return (lambda: function(*args, **kwargs)), watched


def transform(cls, **kwargs):
    """``(*inputs) -> cls(**kwargs)(*inputs)``: the transform is built inside ``pytest.raises`` too."""
    return lambda *inputs: cls(**kwargs)(*inputs)


def mixup(**kwargs):
    return transform(fastmix.Mixup, num_classes=K, **kwargs)


def on_broadcast(function, base_shape):
    """``function(x, labels)`` on ``x``, a stride-0 view of a smaller base: the base is watched."""
    base, y = torch.randn(*base_shape), labels()
    return calling(function, base.expand(4, 3, H, W), y, watch=[base, y])


def cut_plan(b=4):
    return F.mixup_cutmix_plan(b, (H, W), mixup_alpha=0.0, cutmix_alpha=1.0, generator=seeded(8))


def with_partner(function, tensor, partner, *args, spatial=False, **kwargs):
    """``function(tensor, plan, *args)`` for a sampled plan whose partner is replaced by ``partner``
    (a user's plan, which no constructor checked); the tensor and the partner are watched."""
    plan = cut_plan() if spatial else F.mixup_cutmix_plan(4, None, mixup_alpha=1.0, generator=seeded(9))
    return calling(function, tensor, replace(plan, partner=partner), *args, watch=[tensor, partner], **kwargs)


def uint8_images(b=4):
    return torch.randint(0, 256, (b, 3, H, W), dtype=torch.uint8, generator=seeded(78))


def uint8_image():
    return uint8_images(1)[0]


def numpy_images():
    return np.zeros((4, 3, H, W), np.float32)


def collating(samples):
    """A FastCollateMixup call on ``samples``; every image (they are the inputs) is watched."""
    collate = fastmix.FastCollateMixup(mixup_alpha=1.0, cutmix_alpha=1.0, num_classes=K, generator=seeded(10))
    return calling(collate, samples, watch=[image for image, _ in samples])


CALL_ERRORS = [
    # fastmix.Mixup (timm's API)
    pytest.param(lambda: calling(mixup(cutmix_alpha=1.0), images(tail=(H, W)), labels()),
                 ValueError, "x", id="cutmix-3d-x"),
    pytest.param(lambda: calling(mixup(), torch.randn(4), labels()), ValueError, "x", id="1d-x"),
    pytest.param(lambda: calling(mixup(cutmix_alpha=1.0, mode="elem"), images(), torch.tensor([0, 1, K, 2])),
                 ValueError, "target", id="label-too-large"),
    pytest.param(lambda: calling(mixup(mode="pair"), images(), torch.tensor([0, -1, 3, 2])),
                 ValueError, "target", id="label-negative"),
    pytest.param(lambda: calling(mixup(cutmix_alpha=1.0), torch.randint(0, 255, (4, 3, H, W), dtype=torch.int32),
                                 labels()), TypeError, "x", id="int32-images"),
    pytest.param(lambda: calling(mixup(), torch.randn(4, 3, H, W, dtype=torch.complex64), labels()),
                 TypeError, "x", id="complex-images"),
    pytest.param(lambda: calling(mixup(), images(), labels(5)), ValueError, "target", id="batch-mismatch"),
    pytest.param(lambda: calling(mixup(), images(), torch.softmax(torch.randn(5, K), 1)),
                 ValueError, "target", id="soft-batch-mismatch"),
    pytest.param(lambda: on_broadcast(mixup(cutmix_alpha=1.0), (1, 3, H, W)), ValueError, "x", id="expanded-x"),
    pytest.param(lambda: on_broadcast(mixup(), (4, 1, H, W)), ValueError, "x", id="stride-0-channels"),
    pytest.param(lambda: calling(mixup(), images(), torch.softmax(torch.randn(4, K + 1), 1)),
                 ValueError, "num_classes", id="soft-k-mismatch"),
    pytest.param(lambda: calling(mixup(), images(), [0, 1, 2, 3]), TypeError, "target", id="list-target"),
    pytest.param(lambda: calling(mixup(), images(), torch.zeros(4, 2, K)), ValueError, "target", id="3d-target"),
    pytest.param(lambda: calling(mixup(cutmix_minmax=(0.1, 0.2)), images(tail=(3, 4, 4)), labels()),
                 ValueError, "cutmix_minmax", id="minmax-too-small-image"),
    # fastmix.v2 (torchvision's API)
    pytest.param(lambda: calling(transform(fastmix.v2.MixUp), images(), labels()),
                 ValueError, "num_classes", id="v2-num-classes-missing"),
    pytest.param(lambda: calling(transform(fastmix.v2.CutMix), images(), labels()),
                 ValueError, "num_classes", id="v2-cutmix-num-classes-missing"),
    pytest.param(lambda: calling(transform(fastmix.v2.MixUp, num_classes=K), images(), torch.tensor([0, 1, 2, K + 3])),
                 ValueError, "labels", id="v2-label-out-of-range"),
    pytest.param(lambda: calling(transform(fastmix.v2.MixUp, num_classes=K), images(),
                                 torch.softmax(torch.randn(4, K - 1), 1)),
                 ValueError, "num_classes", id="v2-soft-k-mismatch"),
    pytest.param(lambda: calling(transform(fastmix.v2.CutMix, num_classes=K), images(tail=(H, W)), labels()),
                 ValueError, "images", id="v2-cutmix-3d-images"),
    pytest.param(lambda: on_broadcast(transform(fastmix.v2.MixUp, num_classes=K), (1, 3, H, W)),
                 ValueError, "images", id="v2-expanded-images"),
    pytest.param(lambda: calling(transform(fastmix.v2.MixUp, num_classes=K),
                                 torch.randint(0, 255, (4, 3, H, W), dtype=torch.int16), labels()),
                 TypeError, "images", id="v2-uint16-images"),
    # Cutout and RandomErasing
    pytest.param(lambda: calling(transform(fastmix.Cutout, length=4), images(tail=(H, W))),
                 ValueError, "x", id="cutout-3d-x"),
    pytest.param(lambda: calling(transform(fastmix.Cutout, length=4, fill=(1.0, 2.0)), images()),
                 ValueError, "fill", id="cutout-fill-channels"),
    pytest.param(lambda: calling(transform(fastmix.RandomErasing, p=1.0, value="random"),
                                 torch.randint(0, 256, (4, 3, H, W), dtype=torch.uint8)),
                 TypeError, "x", id="erasing-random-uint8"),
    pytest.param(lambda: calling(transform(fastmix.RandomErasing, p=1.0),
                                 torch.randint(0, 256, (4, 3, H, W), dtype=torch.int32)),
                 TypeError, "x", id="erasing-int32"),
    # fastmix.functional
    pytest.param(lambda: calling(F.apply, images(), F.mixup_cutmix_plan(5, (H, W), cutmix_alpha=1.0)),
                 ValueError, "x", id="apply-plan-batch-mismatch"),
    pytest.param(lambda: calling(F.apply, images(), F.mixup_cutmix_plan(4, (H + 1, W), mixup_alpha=0.0,
                                                                        cutmix_alpha=1.0)),
                 ValueError, "x", id="apply-plan-size-mismatch"),
    pytest.param(lambda: calling(F.apply, images().requires_grad_(), F.mixup_cutmix_plan(4, None, mixup_alpha=1.0),
                                 inplace=True),
                 ValueError, "inplace", id="apply-inplace-requires-grad"),
    pytest.param(lambda: calling(F.apply_masks, torch.rand(4, H, W),
                                 F.mixup_cutmix_plan(4, (H, W), mixup_alpha=0.0, cutmix_alpha=1.0)),
                 TypeError, "masks", id="apply-masks-float"),
    pytest.param(lambda: calling(F.targets, torch.tensor([0, 1, 2, K]), F.mixup_cutmix_plan(4, None, mixup_alpha=1.0),
                                 K),
                 ValueError, "labels", id="targets-out-of-range"),
    # hostile plans (issue 10): refused before a kernel could walk them
    pytest.param(lambda: with_partner(F.apply, images(), torch.tensor([1, 0, 1, 2])), ValueError, "partner",
                 id="apply-partner-duplicate"),
    pytest.param(lambda: with_partner(F.apply, images(), torch.tensor([1, 0, 7, 2])), ValueError, "partner",
                 id="apply-partner-out-of-range"),
    pytest.param(lambda: with_partner(F.apply, images(), torch.tensor([1, 0, -2, 3])), ValueError, "partner",
                 id="apply-partner-negative"),
    pytest.param(lambda: with_partner(F.apply, images(), torch.tensor([1.0, 0.0, 3.0, 2.0])), ValueError, "partner",
                 id="apply-partner-float"),
    pytest.param(lambda: with_partner(F.apply, images(), torch.tensor([[1, 0, 3, 2]])), ValueError, "partner",
                 id="apply-partner-2d"),
    pytest.param(lambda: with_partner(F.apply, images(), torch.tensor([1, 0, 3, 3]), inplace=False),
                 ValueError, "partner", id="apply-out-of-place-partner-duplicate"),
    pytest.param(lambda: with_partner(F.targets, labels(), torch.tensor([1, 0, 5, 2]), K), ValueError, "partner",
                 id="targets-partner-out-of-range"),
    pytest.param(lambda: with_partner(F.apply_masks, torch.zeros(4, H, W, dtype=torch.uint8),
                                      torch.tensor([0, 0, 1, 2]), spatial=True),
                 ValueError, "partner", id="apply-masks-partner-duplicate"),
    pytest.param(lambda: calling(F.apply, images(), replace(F.cutout_plan(4, (H, W), length=3), fill=torch.zeros(4, 2))),
                 ValueError, "fill", id="apply-fill-channels"),
    pytest.param(lambda: calling(F.apply, images(), replace(F.cutout_plan(4, (H, W), length=3),
                                                            box=torch.zeros(3, 1, 4, dtype=torch.int32))),
                 ValueError, "box", id="apply-box-rows"),
    pytest.param(lambda: calling(F.mixup_plan, torch.tensor([0.5, 1.5, 0.5, 0.5])), ValueError, "lam",
                 id="mixup-plan-lam-above-one"),
    pytest.param(lambda: calling(F.mixup_plan, torch.tensor([0.5, float("nan"), 0.5, 0.5])), ValueError, "lam",
                 id="mixup-plan-lam-nan"),
    pytest.param(lambda: calling(F.mixup_plan, torch.full((4,), 0.5), torch.tensor([0, 1, 2, 2])),
                 ValueError, "partner", id="mixup-plan-partner-duplicate"),
    pytest.param(lambda: calling(F.cutmix_plan, torch.tensor([[0, 4, 0, 4]] * 4), (H, W), torch.tensor([3, 2, 1, 9])),
                 ValueError, "partner", id="cutmix-plan-partner-out-of-range"),
    pytest.param(lambda: calling(F.cutmix_plan, torch.tensor([[0.0, 4.0, 0.0, 4.0]] * 4), (H, W)), TypeError, "box",
                 id="cutmix-plan-float-box"),
    pytest.param(lambda: calling(F.cutmix_plan, torch.tensor([[0, 4, 0]] * 4), (H, W)), ValueError, "box",
                 id="cutmix-plan-box-shape"),
    # values a dtype cannot hold
    pytest.param(lambda: calling(F.apply_masks, torch.zeros(4, H, W, dtype=torch.uint8), cut_plan(), ignore_index=-1),
                 ValueError, "ignore_index", id="apply-masks-uint8-minus-one"),
    pytest.param(lambda: calling(F.apply_masks, torch.zeros(4, H, W, dtype=torch.int8), cut_plan()),
                 ValueError, "ignore_index", id="apply-masks-int8-default-255"),
    pytest.param(lambda: calling(transform(fastmix.Cutout, length=4, fill=300), uint8_images()),
                 ValueError, "fill", id="cutout-fill-300-uint8"),
    pytest.param(lambda: calling(transform(fastmix.Cutout, length=4, fill=(0, 0, -3)), uint8_images()),
                 ValueError, "fill", id="cutout-fill-negative-uint8"),
    pytest.param(lambda: calling(transform(fastmix.RandomErasing, p=1.0, value=256), uint8_images()),
                 ValueError, "value", id="erasing-value-256-uint8"),
    # numpy arrays where a tensor belongs
    pytest.param(lambda: calling(mixup(), numpy_images(), labels(), watch=[]), TypeError, "x", id="mixup-numpy-x"),
    pytest.param(lambda: calling(transform(fastmix.Cutout, length=4), numpy_images(), watch=[]), TypeError, "x",
                 id="cutout-numpy-x"),
    pytest.param(lambda: calling(transform(fastmix.RandomErasing), numpy_images(), watch=[]), TypeError, "x",
                 id="erasing-numpy-x"),
    pytest.param(lambda: calling(transform(fastmix.v2.CutMix, num_classes=K), numpy_images(), labels()),
                 TypeError, "images", id="v2-numpy-images"),
    pytest.param(lambda: calling(F.apply, numpy_images(), F.mixup_plan(torch.full((4,), 0.5)), watch=[]),
                 TypeError, "x", id="apply-numpy-x"),
    # FastCollateMixup (timm's collate_fn)
    pytest.param(lambda: collating([(uint8_image(), 1), (uint8_image(), K)]), ValueError, "labels",
                 id="collate-label-out-of-range"),
    pytest.param(lambda: collating([(uint8_image(), 1), (uint8_image().float(), 2)]), TypeError, "batch[1][0]",
                 id="collate-float-image"),
    pytest.param(lambda: collating([(uint8_image(), 1), (uint8_image()[:, :-1], 2)]), ValueError, "batch[1][0]",
                 id="collate-shape-mismatch"),
    pytest.param(lambda: collating([]), ValueError, "batch", id="collate-empty"),
]


@pytest.mark.parametrize("build, error, argument", CALL_ERRORS)
def test_call_errors_raise_before_writing(build, error, argument, request):
    name = request.node.callspec.id
    call, watched = build()
    before = [raw_bytes(t) for t in watched]
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"{name}: raised {type(info.value).__name__}, expected {error.__name__}"
    assert re.search(rf"(?<![\w\[]){re.escape(argument)}(?![\w\]])", str(info.value)), (
        f"{name}: the message does not name {argument!r}: {info.value}")
    assert_unchanged(watched, before, name)


def test_the_call_table_covers_every_entry_point():
    ids = [row.id for row in CALL_ERRORS]
    assert len(set(ids)) == len(ids) >= 40, f"{len(set(ids))} kinds of bad call"
    for prefix in ("v2-", "cutout-", "erasing-", "collate-", "apply-", "apply-masks-", "targets-", "mixup-plan-",
                   "cutmix-plan-"):
        assert any(i.startswith(prefix) for i in ids), f"no bad call of the {prefix[:-1]} entry point"


CTOR_ERRORS = [
    # fastmix.Mixup (timm's arguments)
    pytest.param(lambda: fastmix.Mixup(mixup_alpha=-1.0), ValueError, "mixup_alpha", id="mixup_alpha-negative"),
    pytest.param(lambda: fastmix.Mixup(mixup_alpha=float("nan")), ValueError, "mixup_alpha", id="mixup_alpha-nan"),
    pytest.param(lambda: fastmix.Mixup(mixup_alpha=float("inf")), ValueError, "mixup_alpha", id="mixup_alpha-inf"),
    pytest.param(lambda: fastmix.Mixup(mixup_alpha="1.0"), TypeError, "mixup_alpha", id="mixup_alpha-str"),
    pytest.param(lambda: fastmix.Mixup(mixup_alpha=True), TypeError, "mixup_alpha", id="mixup_alpha-bool"),
    pytest.param(lambda: fastmix.Mixup(mixup_alpha=[1.0]), TypeError, "mixup_alpha", id="mixup_alpha-tensor"),
    pytest.param(lambda: fastmix.Mixup(cutmix_alpha=-0.5), ValueError, "cutmix_alpha", id="cutmix_alpha-negative"),
    pytest.param(lambda: fastmix.Mixup(cutmix_alpha=float("nan")), ValueError, "cutmix_alpha", id="cutmix_alpha-nan"),
    pytest.param(lambda: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=0.0), ValueError, "mixup_alpha",
                 id="both-alphas-zero"),
    pytest.param(lambda: fastmix.Mixup(prob=1.5), ValueError, "prob", id="prob-high"),
    pytest.param(lambda: fastmix.Mixup(prob=-0.1), ValueError, "prob", id="prob-negative"),
    pytest.param(lambda: fastmix.Mixup(cutmix_alpha=1.0, switch_prob=2.0), ValueError, "switch_prob",
                 id="switch_prob-high"),
    pytest.param(lambda: fastmix.Mixup(mode="sample"), ValueError, "mode", id="mode-invalid"),
    pytest.param(lambda: fastmix.Mixup(mode=None), ValueError, "mode", id="mode-none"),
    pytest.param(lambda: fastmix.Mixup(cutmix_minmax=(0.8, 0.2)), ValueError, "cutmix_minmax", id="minmax-reversed"),
    pytest.param(lambda: fastmix.Mixup(cutmix_minmax=(0.2, 1.5)), ValueError, "cutmix_minmax", id="minmax-above-one"),
    pytest.param(lambda: fastmix.Mixup(cutmix_minmax=(0.0, 0.5)), ValueError, "cutmix_minmax", id="minmax-zero"),
    pytest.param(lambda: fastmix.Mixup(cutmix_minmax=(0.5, 0.5)), ValueError, "cutmix_minmax", id="minmax-equal"),
    pytest.param(lambda: fastmix.Mixup(cutmix_minmax=(0.5,)), TypeError, "cutmix_minmax", id="minmax-one-value"),
    pytest.param(lambda: fastmix.Mixup(cutmix_minmax="ab"), TypeError, "cutmix_minmax", id="minmax-str"),
    pytest.param(lambda: fastmix.Mixup(label_smoothing=1.0), ValueError, "label_smoothing", id="smoothing-one"),
    pytest.param(lambda: fastmix.Mixup(label_smoothing=1.5), ValueError, "label_smoothing", id="smoothing-above-one"),
    pytest.param(lambda: fastmix.Mixup(label_smoothing=-0.1), ValueError, "label_smoothing", id="smoothing-negative"),
    pytest.param(lambda: fastmix.Mixup(label_smoothing=float("nan")), ValueError, "label_smoothing",
                 id="smoothing-nan"),
    pytest.param(lambda: fastmix.Mixup(num_classes=0), ValueError, "num_classes", id="num_classes-zero"),
    # fastmix.v2 (torchvision's arguments)
    pytest.param(lambda: fastmix.v2.MixUp(alpha=0.0), ValueError, "alpha", id="v2-alpha-zero"),
    pytest.param(lambda: fastmix.v2.CutMix(alpha=-1.0), ValueError, "alpha", id="v2-alpha-negative"),
    pytest.param(lambda: fastmix.v2.CutMix(alpha=float("inf")), ValueError, "alpha", id="v2-alpha-inf"),
    pytest.param(lambda: fastmix.v2.MixUp(alpha=None), TypeError, "alpha", id="v2-alpha-none"),
    pytest.param(lambda: fastmix.v2.MixUp(num_classes=0), ValueError, "num_classes", id="v2-num-classes-zero"),
    pytest.param(lambda: fastmix.v2.MixUp(labels_getter=5), ValueError, "labels_getter", id="v2-labels-getter"),
    # Cutout and RandomErasing
    pytest.param(lambda: fastmix.Cutout(p=1.5), ValueError, "p", id="cutout-p"),
    pytest.param(lambda: fastmix.Cutout(n_holes=0), ValueError, "n_holes", id="cutout-n_holes"),
    pytest.param(lambda: fastmix.Cutout(length=-1), ValueError, "length", id="cutout-length"),
    pytest.param(lambda: fastmix.Cutout(fill="red"), TypeError, "fill", id="cutout-fill-str"),
    pytest.param(lambda: fastmix.RandomErasing(p=-0.5), ValueError, "p", id="erasing-p"),
    pytest.param(lambda: fastmix.RandomErasing(scale=(0.5, 0.2)), ValueError, "scale", id="erasing-scale"),
    pytest.param(lambda: fastmix.RandomErasing(scale=(0.5, 1.2)), ValueError, "scale", id="erasing-scale-above-one"),
    pytest.param(lambda: fastmix.RandomErasing(ratio=(0.0, 1.0)), ValueError, "ratio", id="erasing-ratio"),
    pytest.param(lambda: fastmix.RandomErasing(value="noise"), ValueError, "value", id="erasing-value"),
]


@pytest.mark.parametrize("make, error, argument", CTOR_ERRORS)
def test_constructor_errors_name_the_argument(make, error, argument, request):
    name = request.node.callspec.id
    with pytest.raises(error) as info:
        make()
    assert type(info.value) is error, f"{name}: raised {type(info.value).__name__}, expected {error.__name__}"
    assert re.search(rf"\b{re.escape(argument)}\b", str(info.value)), (
        f"{name}: message does not name {argument!r}: {info.value}")


def test_valid_edge_arguments_are_accepted():
    # the boundaries the checks must not reject
    fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=0.0, switch_prob=1.0, label_smoothing=0.0)
    fastmix.Mixup(cutmix_minmax=(0.2, 1.0), label_smoothing=0.999)
    fastmix.Cutout(length=0, p=0.0)
    fastmix.RandomErasing(p=1.0, scale=(0.0, 1.0))


# the plan samplers' own checks

def test_mixup_cutmix_errors():
    with pytest.raises(ValueError, match="mode"):
        mixup_cutmix_plan(4, (8, 8), mode="sample")
    with pytest.raises(ValueError, match="alpha"):
        mixup_cutmix_plan(4, (8, 8), mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="size"):
        mixup_cutmix_plan(4, None, mixup_alpha=1.0, cutmix_alpha=1.0)
    with pytest.raises(ValueError, match="size"):
        mixup_cutmix_plan(4, None, mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8))
    with pytest.raises(ValueError, match="cutmix_minmax"):
        mixup_cutmix_plan(4, (8, 8), cutmix_minmax=(0.5, 0.55))
