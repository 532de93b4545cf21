"""Bad input raises ValueError or TypeError whose message names the argument, before anything is
written: at call time (the inputs are checked unchanged afterwards) and at construction; the
plan samplers' own checks, and the boundaries the checks must accept.
"""
from __future__ import annotations

import re

import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2
from fastmix.plan import mixup_cutmix_plan
from helpers import H, K, W, assert_unchanged, distinct_labels, seeded

def _x(b=4, tail=(3, H, W), dtype=torch.float32):
    return torch.randn(b, *tail, generator=seeded(77)).to(dtype)


def _y(b=4, k=K):
    return distinct_labels(b, k)


def _call_error_cases():
    """(id, build) where build() returns (call, watched tensors, exception type, argument name)."""
    mix = lambda **kw: fastmix.Mixup(num_classes=K, **kw)  # noqa: E731
    cases = {}

    def case(name, exc, arg):
        def register(build):
            cases[name] = (build, exc, arg)
            return build
        return register

    @case("cutmix-3d-x", ValueError, "x")
    def _():
        x, y = _x(tail=(H, W)), _y()
        return lambda: mix(cutmix_alpha=1.0)(x, y), [x, y]

    @case("1d-x", ValueError, "x")
    def _():
        x, y = torch.randn(4), _y()
        return lambda: mix()(x, y), [x, y]

    @case("label-too-large", ValueError, "target")
    def _():
        x, y = _x(), torch.tensor([0, 1, K, 2])
        return lambda: mix(cutmix_alpha=1.0, mode="elem")(x, y), [x, y]

    @case("label-negative", ValueError, "target")
    def _():
        x, y = _x(), torch.tensor([0, -1, 3, 2])
        return lambda: mix(mode="pair")(x, y), [x, y]

    @case("int32-images", TypeError, "x")
    def _():
        x, y = torch.randint(0, 255, (4, 3, H, W), dtype=torch.int32), _y()
        return lambda: mix(cutmix_alpha=1.0)(x, y), [x, y]

    @case("complex-images", TypeError, "x")
    def _():
        x, y = torch.randn(4, 3, H, W, dtype=torch.complex64), _y()
        return lambda: mix()(x, y), [x, y]

    @case("batch-mismatch", ValueError, "target")
    def _():
        x, y = _x(), _y(5)
        return lambda: mix()(x, y), [x, y]

    @case("soft-batch-mismatch", ValueError, "target")
    def _():
        x, y = _x(), torch.softmax(torch.randn(5, K), 1)
        return lambda: mix()(x, y), [x, y]

    @case("expanded-x", ValueError, "x")
    def _():
        base = torch.randn(1, 3, H, W)
        x, y = base.expand(4, 3, H, W), _y()
        return lambda: mix(cutmix_alpha=1.0)(x, y), [base, y]

    @case("stride-0-channels", ValueError, "x")
    def _():
        base = torch.randn(4, 1, H, W)
        x, y = base.expand(4, 3, H, W), _y()
        return lambda: mix()(x, y), [base, y]

    @case("soft-k-mismatch", ValueError, "num_classes")
    def _():
        x, y = _x(), torch.softmax(torch.randn(4, K + 1), 1)
        return lambda: mix()(x, y), [x, y]

    @case("float-class-indices", TypeError, "target")
    def _():
        x, y = _x(), _y().float()
        return lambda: mix()(x, y), [x, y]

    @case("list-target", TypeError, "target")
    def _():
        x = _x()
        return lambda: mix()(x, [0, 1, 2, 3]), [x]

    @case("3d-target", ValueError, "target")
    def _():
        x, y = _x(), torch.zeros(4, 2, K)
        return lambda: mix()(x, y), [x, y]

    @case("minmax-too-small-image", ValueError, "cutmix_minmax")
    def _():
        x, y = _x(tail=(3, 4, 4)), _y()
        return lambda: mix(cutmix_minmax=(0.1, 0.2))(x, y), [x, y]

    @case("v2-num-classes-missing", ValueError, "num_classes")
    def _():
        x, y = _x(), _y()
        return lambda: fastmix.v2.MixUp()(x, y), [x, y]

    @case("v2-cutmix-num-classes-missing", ValueError, "num_classes")
    def _():
        x, y = _x(), _y()
        return lambda: fastmix.v2.CutMix()(x, y), [x, y]

    @case("v2-int32-labels", TypeError, "labels")
    def _():
        x, y = _x(), _y().int()
        return lambda: fastmix.v2.CutMix(num_classes=K)(x, y), [x, y]

    @case("v2-label-out-of-range", ValueError, "labels")
    def _():
        x, y = _x(), torch.tensor([0, 1, 2, K + 3])
        return lambda: fastmix.v2.MixUp(num_classes=K)(x, y), [x, y]

    @case("v2-soft-k-mismatch", ValueError, "num_classes")
    def _():
        x, y = _x(), torch.softmax(torch.randn(4, K - 1), 1)
        return lambda: fastmix.v2.MixUp(num_classes=K)(x, y), [x, y]

    @case("v2-cutmix-3d-images", ValueError, "images")
    def _():
        x, y = _x(tail=(H, W)), _y()
        return lambda: fastmix.v2.CutMix(num_classes=K)(x, y), [x, y]

    @case("v2-expanded-images", ValueError, "images")
    def _():
        base = torch.randn(1, 3, H, W)
        x, y = base.expand(4, 3, H, W), _y()
        return lambda: fastmix.v2.MixUp(num_classes=K)(x, y), [base, y]

    @case("v2-uint16-images", TypeError, "images")
    def _():
        x, y = torch.randint(0, 255, (4, 3, H, W), dtype=torch.int16), _y()
        return lambda: fastmix.v2.MixUp(num_classes=K)(x, y), [x, y]

    @case("cutout-3d-x", ValueError, "x")
    def _():
        x = _x(tail=(H, W))
        return lambda: fastmix.Cutout(length=4)(x), [x]

    @case("cutout-fill-channels", ValueError, "fill")
    def _():
        x = _x()
        return lambda: fastmix.Cutout(length=4, fill=(1.0, 2.0))(x), [x]

    @case("erasing-random-uint8", TypeError, "x")
    def _():
        x = torch.randint(0, 256, (4, 3, H, W), dtype=torch.uint8)
        return lambda: fastmix.RandomErasing(p=1.0, value="random")(x), [x]

    @case("erasing-int32", TypeError, "x")
    def _():
        x = torch.randint(0, 256, (4, 3, H, W), dtype=torch.int32)
        return lambda: fastmix.RandomErasing(p=1.0)(x), [x]

    @case("apply-plan-batch-mismatch", ValueError, "x")
    def _():
        x = _x()
        plan = F.mixup_cutmix_plan(5, (H, W), cutmix_alpha=1.0)
        return lambda: F.apply(x, plan), [x]

    @case("apply-plan-size-mismatch", ValueError, "x")
    def _():
        x = _x()
        plan = F.mixup_cutmix_plan(4, (H + 1, W), mixup_alpha=0.0, cutmix_alpha=1.0)
        return lambda: F.apply(x, plan), [x]

    @case("apply-inplace-requires-grad", ValueError, "inplace")
    def _():
        x = _x().requires_grad_()
        plan = F.mixup_cutmix_plan(4, None, mixup_alpha=1.0)
        return lambda: F.apply(x, plan, inplace=True), [x]

    @case("apply-masks-float", TypeError, "masks")
    def _():
        masks = torch.rand(4, H, W)
        plan = F.mixup_cutmix_plan(4, (H, W), mixup_alpha=0.0, cutmix_alpha=1.0)
        return lambda: F.apply_masks(masks, plan), [masks]

    @case("targets-out-of-range", ValueError, "labels")
    def _():
        y = torch.tensor([0, 1, 2, K])
        plan = F.mixup_cutmix_plan(4, None, mixup_alpha=1.0)
        return lambda: F.targets(y, plan, K), [y]

    return cases


CALL_ERRORS = _call_error_cases()


@pytest.mark.parametrize("name", list(CALL_ERRORS))
def test_call_errors_raise_before_writing(name):
    build, exc, arg = CALL_ERRORS[name]
    call, watched = build()
    clones = [t.detach().clone() for t in watched]
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc, f"{name}: raised {type(info.value).__name__}, expected {exc.__name__}"
    assert re.search(rf"\b{re.escape(arg)}\b", str(info.value)), (
        f"{name}: the message does not name {arg!r}: {info.value}")
    assert_unchanged([t.detach() for t in watched], clones, name)


CTOR_ERRORS = {
    "mixup_alpha-negative": (lambda: fastmix.Mixup(mixup_alpha=-1.0), ValueError, "mixup_alpha"),
    "mixup_alpha-nan": (lambda: fastmix.Mixup(mixup_alpha=float("nan")), ValueError, "mixup_alpha"),
    "mixup_alpha-inf": (lambda: fastmix.Mixup(mixup_alpha=float("inf")), ValueError, "mixup_alpha"),
    "mixup_alpha-str": (lambda: fastmix.Mixup(mixup_alpha="1.0"), TypeError, "mixup_alpha"),
    "mixup_alpha-bool": (lambda: fastmix.Mixup(mixup_alpha=True), TypeError, "mixup_alpha"),
    "mixup_alpha-tensor": (lambda: fastmix.Mixup(mixup_alpha=[1.0]), TypeError, "mixup_alpha"),
    "cutmix_alpha-negative": (lambda: fastmix.Mixup(cutmix_alpha=-0.5), ValueError, "cutmix_alpha"),
    "cutmix_alpha-nan": (lambda: fastmix.Mixup(cutmix_alpha=float("nan")), ValueError, "cutmix_alpha"),
    "both-alphas-zero": (lambda: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=0.0), ValueError, "mixup_alpha"),
    "v2-alpha-zero": (lambda: fastmix.v2.MixUp(alpha=0.0), ValueError, "alpha"),
    "v2-alpha-negative": (lambda: fastmix.v2.CutMix(alpha=-1.0), ValueError, "alpha"),
    "v2-alpha-inf": (lambda: fastmix.v2.CutMix(alpha=float("inf")), ValueError, "alpha"),
    "v2-alpha-none": (lambda: fastmix.v2.MixUp(alpha=None), TypeError, "alpha"),
    "v2-num-classes-zero": (lambda: fastmix.v2.MixUp(num_classes=0), ValueError, "num_classes"),
    "v2-labels-getter": (lambda: fastmix.v2.MixUp(labels_getter=5), ValueError, "labels_getter"),
    "prob-high": (lambda: fastmix.Mixup(prob=1.5), ValueError, "prob"),
    "prob-negative": (lambda: fastmix.Mixup(prob=-0.1), ValueError, "prob"),
    "switch_prob-high": (lambda: fastmix.Mixup(cutmix_alpha=1.0, switch_prob=2.0), ValueError, "switch_prob"),
    "mode-invalid": (lambda: fastmix.Mixup(mode="sample"), ValueError, "mode"),
    "mode-none": (lambda: fastmix.Mixup(mode=None), ValueError, "mode"),
    "minmax-reversed": (lambda: fastmix.Mixup(cutmix_minmax=(0.8, 0.2)), ValueError, "cutmix_minmax"),
    "minmax-above-one": (lambda: fastmix.Mixup(cutmix_minmax=(0.2, 1.5)), ValueError, "cutmix_minmax"),
    "minmax-zero": (lambda: fastmix.Mixup(cutmix_minmax=(0.0, 0.5)), ValueError, "cutmix_minmax"),
    "minmax-equal": (lambda: fastmix.Mixup(cutmix_minmax=(0.5, 0.5)), ValueError, "cutmix_minmax"),
    "minmax-one-value": (lambda: fastmix.Mixup(cutmix_minmax=(0.5,)), TypeError, "cutmix_minmax"),
    "minmax-str": (lambda: fastmix.Mixup(cutmix_minmax="ab"), TypeError, "cutmix_minmax"),
    "smoothing-one": (lambda: fastmix.Mixup(label_smoothing=1.0), ValueError, "label_smoothing"),
    "smoothing-above-one": (lambda: fastmix.Mixup(label_smoothing=1.5), ValueError, "label_smoothing"),
    "smoothing-negative": (lambda: fastmix.Mixup(label_smoothing=-0.1), ValueError, "label_smoothing"),
    "smoothing-nan": (lambda: fastmix.Mixup(label_smoothing=float("nan")), ValueError, "label_smoothing"),
    "num_classes-zero": (lambda: fastmix.Mixup(num_classes=0), ValueError, "num_classes"),
    "cutout-p": (lambda: fastmix.Cutout(p=1.5), ValueError, "p"),
    "cutout-n_holes": (lambda: fastmix.Cutout(n_holes=0), ValueError, "n_holes"),
    "cutout-length": (lambda: fastmix.Cutout(length=-1), ValueError, "length"),
    "cutout-fill-str": (lambda: fastmix.Cutout(fill="red"), TypeError, "fill"),
    "erasing-p": (lambda: fastmix.RandomErasing(p=-0.5), ValueError, "p"),
    "erasing-scale": (lambda: fastmix.RandomErasing(scale=(0.5, 0.2)), ValueError, "scale"),
    "erasing-scale-above-one": (lambda: fastmix.RandomErasing(scale=(0.5, 1.2)), ValueError, "scale"),
    "erasing-ratio": (lambda: fastmix.RandomErasing(ratio=(0.0, 1.0)), ValueError, "ratio"),
    "erasing-value": (lambda: fastmix.RandomErasing(value="noise"), ValueError, "value"),
}


@pytest.mark.parametrize("name", list(CTOR_ERRORS))
def test_constructor_errors_name_the_argument(name):
    make, exc, arg = CTOR_ERRORS[name]
    with pytest.raises(exc) as info:
        make()
    assert type(info.value) is exc, f"{name}: raised {type(info.value).__name__}, expected {exc.__name__}"
    assert re.search(rf"\b{re.escape(arg)}\b", str(info.value)), f"{name}: message does not name {arg!r}: {info.value}"


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
