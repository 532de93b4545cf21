"""The user-facing API: ``fastmix.Mixup`` (timm's arguments), ``fastmix.v2`` (torchvision's),
``Cutout``, ``RandomErasing`` and ``fastmix.functional``.

Most tests read the truth from the pixels: every sample of the batch is a distinct constant
(``10 * i + 5``), so after a call each pixel says which sample it came from (or in what
proportion it was blended), and the label weights must agree with it. No expected number here
was copied from a run of fastmix; each is derived from the images, from timm's/torchvision's
formulas, or from the naive oracle in ``tests/oracle.py``.

Peer tests (timm, torchvision) skip when those libraries are absent.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from typing import NamedTuple, Optional

import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2
import oracle
from conftest import tolerance
from fastmix.plan import KIND_NAMES

H, W = 12, 14          # non-square, so a swapped H/W shows
K = 20                 # classes in the pixel-truth tests


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def value_of(i: int) -> float:
    """The constant every pixel of sample ``i`` holds."""
    return 10.0 * i + 5.0


def constant_batch(b: int, tail=(3, H, W), dtype=torch.float32) -> torch.Tensor:
    values = torch.tensor([value_of(i) for i in range(b)], dtype=torch.float64)
    return values.view(-1, *([1] * len(tail))).expand(b, *tail).to(dtype).contiguous()


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def distinct_labels(b: int, num_classes: int = K, seed: int = 0) -> torch.Tensor:
    return torch.randperm(num_classes, generator=seeded(seed))[:b]


def twins(cls, seed: int, **kwargs):
    """Two transforms whose generators start from the same seed: one samples the plan the
    other is about to apply (the call consumes the generator exactly as ``plan`` does)."""
    return cls(**kwargs, generator=seeded(seed)), cls(**kwargs, generator=seeded(seed))


class Story(NamedTuple):
    """What the pixels of one sample say happened to it."""

    kind: str                     # "none", "mixup" or "cutmix"
    own: float                    # weight / fraction of the sample's own pixels
    box: Optional[tuple]          # (y0, y1, x0, x1) of the partner's pixels (cutmix)


def read_sample(out: torch.Tensor, i: int, j: int) -> Story:
    """Read sample ``i`` of a constant batch after mixing with partner ``j``."""
    s = out[i].double()
    vi, vj = value_of(i), value_of(j)
    uniq = torch.unique(s).tolist()
    if i == j:
        assert uniq == [vi], f"sample {i} pairs with itself, yet its values changed to {uniq[:4]}"
        return Story("none", 1.0, None)
    if uniq == [vi]:
        return Story("none", 1.0, None)
    if len(uniq) == 1 and uniq[0] != vj:
        lam = (uniq[0] - vj) / (vi - vj)
        assert -1e-6 <= lam <= 1 + 1e-6, (f"sample {i} (mixup with {j}): value {uniq[0]} is no blend of "
                                          f"{vi} and {vj} (weight {lam})")
        return Story("mixup", lam, None)
    assert set(uniq) <= {vi, vj}, (f"sample {i}: values {uniq[:6]} are neither its own ({vi}), its partner "
                                   f"{j}'s ({vj}) nor one blend of the two")
    assert s.dim() >= 3, f"sample {i}: a cut on a non-spatial tensor of shape {tuple(s.shape)}"
    planes = (s == vj).reshape(-1, s.shape[-2], s.shape[-1])
    for p in range(1, planes.shape[0]):
        assert torch.equal(planes[p], planes[0]), (f"sample {i} (cutmix): plane {p} has a different box than "
                                                   f"plane 0 (every channel and frame must share one box)")
    mask = planes[0]
    rows = mask.any(1).nonzero()[:, 0]
    cols = mask.any(0).nonzero()[:, 0]
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    assert int(mask.sum()) == (y1 - y0) * (x1 - x0), (f"sample {i} (cutmix): the pasted pixels are not one "
                                                     f"rectangle (bounding box {(y0, y1, x0, x1)}, "
                                                     f"{int(mask.sum())} pixels)")
    return Story("cutmix", 1.0 - float(mask.double().mean()), (y0, y1, x0, x1))


def mixed_row(num_classes: int, own_class: int, other_class: int, own: float, smoothing: float = 0.0):
    """timm's target: ``own * s(own_class) + (1 - own) * s(other_class)``, s = smoothed one-hot."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off

    def smooth(c):
        row = torch.full((num_classes,), off, dtype=torch.float64)
        row[c] = on
        return row

    return own * smooth(own_class) + (1.0 - own) * smooth(other_class)


def check_row(target: torch.Tensor, i: int, expected: torch.Tensor, what: str) -> None:
    got = target[i].double()
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (
        f"sample {i} ({what}): target row differs from the pixels' story; max error "
        f"{float((got - expected).abs().max()):.3g}, own weight {float(expected.max()):.6f}")


def assert_unchanged(tensors, clones, what: str) -> None:
    for n, (t, c) in enumerate(zip(tensors, clones)):
        assert torch.equal(t, c), f"{what}: input {n} was written before the error was raised"


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    fa = torch.searchsorted(a, grid, right=True).double() / a.numel()
    fb = torch.searchsorted(b, grid, right=True).double() / b.numel()
    return float((fa - fb).abs().max())


def assert_same_distribution(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    n, m = ours.numel(), theirs.numel()
    stat = ks_statistic(ours, theirs)
    limit = 1.95 * math.sqrt((n + m) / (n * m))   # alpha ~ 0.001
    assert stat < limit, (f"{what}: KS statistic {stat:.4f} >= {limit:.4f} (n={n}, m={m}); means "
                          f"{float(ours.double().mean()):.4f} (fastmix) vs {float(theirs.double().mean()):.4f} (peer)")


# --------------------------------------------------------------------------------------------
# 1. pixel truth: label weights equal what the pixels show
# --------------------------------------------------------------------------------------------

CONFIGS = {
    "mixup": dict(mixup_alpha=1.0, cutmix_alpha=0.0),
    "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    "switch": dict(mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5),
}


@pytest.mark.parametrize("b", [1, 2, 5, 8])
@pytest.mark.parametrize("correct_lam", [True, False], ids=["correct", "raw"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixup_label_weights_are_the_pixel_truth(mode, config, correct_lam, b):
    labels = distinct_labels(b, seed=b)
    for seed in range(4):
        mixer, twin = twins(fastmix.Mixup, seed, **CONFIGS[config], mode=mode, correct_lam=correct_lam,
                            label_smoothing=0.0, num_classes=K)
        x = constant_batch(b)
        plan = twin.plan(x)
        out, target = mixer(x, labels)
        assert out is x, "fastmix.Mixup must mix in place when x does not require grad"
        assert target.shape == (b, K) and target.dtype == torch.float32, f"target {target.shape} {target.dtype}"
        stories = []
        for i in range(b):
            j = b - 1 - i                                   # timm's flip pairing
            st = read_sample(out, i, j)
            stories.append(st)
            planned = KIND_NAMES[int(plan.kind[i])]
            assert planned == st.kind, f"seed {seed} sample {i}: plan says {planned}, pixels say {st.kind}"
            if config == "mixup":
                assert st.kind != "cutmix", f"sample {i}: cut with cutmix disabled"
            if config == "cutmix":
                assert st.kind != "mixup", f"sample {i}: blended with mixup disabled"
            own = st.own
            if st.kind == "cutmix" and not correct_lam:
                raw = float(plan.label_lam[i])
                y0, y1, x0, x1 = st.box
                assert list(plan.box[i, 0].tolist()) == [y0, y1, x0, x1], (
                    f"sample {i} (cutmix): pixels show box {st.box}, plan has {plan.box[i, 0].tolist()}")
                # timm's rand_bbox: side floor(H * sqrt(1 - lam)), centred, clipped at the border
                cut_h = math.floor(H * math.sqrt(1.0 - raw))
                cut_w = math.floor(W * math.sqrt(1.0 - raw))
                assert y1 - y0 <= cut_h and x1 - x0 <= cut_w, (
                    f"sample {i} (cutmix, raw lam {raw:.4f}): box {st.box} larger than {cut_h}x{cut_w}")
                if 0 < y0 and y1 < H:
                    assert y1 - y0 >= cut_h - 1, f"sample {i}: unclipped box height {y1 - y0} for cut {cut_h}"
                if 0 < x0 and x1 < W:
                    assert x1 - x0 >= cut_w - 1, f"sample {i}: unclipped box width {x1 - x0} for cut {cut_w}"
                assert abs(st.own - (1.0 - (y1 - y0) * (x1 - x0) / (H * W))) < 1e-12
                own = raw
            elif st.kind == "none" and i != j:
                own = float(plan.label_lam[i])
                if correct_lam:
                    assert own == 1.0, f"sample {i} untouched but its label weight is {own}"
            check_row(target, i, mixed_row(K, int(labels[i]), int(labels[j]), own), f"{mode}/{st.kind} seed {seed}")

        mixed = [(i, st) for i, st in enumerate(stories) if i != b - 1 - i]
        if mode == "pair":
            for i, st in mixed:
                other = stories[b - 1 - i]
                assert st.kind == other.kind, f"pair ({i}, {b - 1 - i}): kinds {st.kind} and {other.kind}"
                assert abs(st.own - other.own) < 1e-5, f"pair ({i}, {b - 1 - i}): weights {st.own}, {other.own}"
                assert st.box == other.box, f"pair ({i}, {b - 1 - i}): boxes {st.box} and {other.box}"
                assert torch.allclose(target[i, labels[i]], target[b - 1 - i, labels[b - 1 - i]], atol=1e-6)
        if mode == "batch" and mixed:
            first = mixed[0][1]
            for i, st in mixed:
                assert (st.kind, st.box) == (first.kind, first.box), (
                    f"batch mode: sample {i} is {st.kind} {st.box}, sample {mixed[0][0]} is {first.kind} {first.box}")
                assert abs(st.own - first.own) < 1e-5, f"batch mode: sample {i} weight {st.own} vs {first.own}"
        if mode == "elem" and b == 8 and config == "mixup":
            weights = {round(st.own, 5) for _, st in mixed}
            assert len(weights) > 1, f"elem mode drew one lambda for all samples: {weights}"


@pytest.mark.parametrize("b", [1, 2, 5, 8])
@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_v2_label_weights_are_the_pixel_truth(name, b):
    labels = distinct_labels(b, seed=b + 100)
    for seed in range(4):
        transform = getattr(fastmix.v2, name)(alpha=1.0, num_classes=K, generator=seeded(seed))
        x = constant_batch(b)
        out, target = transform(x, labels)
        assert out is x, f"v2.{name} must mix in place by default"
        assert target.shape == (b, K) and target.dtype == torch.float32
        stories = []
        for i in range(b):
            j = (i - 1) % b                                 # torchvision's roll pairing
            st = read_sample(out, i, j)
            assert st.kind in ("none", name.lower()), f"v2.{name} sample {i}: pixels show {st.kind}"
            stories.append(st)
            check_row(target, i, mixed_row(K, int(labels[i]), int(labels[j]), st.own), f"v2.{name} seed {seed}")
            assert torch.allclose(target[i].sum(), torch.tensor(1.0)), f"sample {i}: row sums to {target[i].sum()}"
        if b > 1:
            first = stories[0]
            for i, st in enumerate(stories):
                assert (st.kind, st.box) == (first.kind, first.box), (
                    f"v2.{name}: one draw per batch, but sample {i} is {st.kind} {st.box}, "
                    f"sample 0 {first.kind} {first.box}")
                assert abs(st.own - first.own) < 1e-5, f"v2.{name}: sample {i} weight {st.own} vs {first.own}"


def test_switch_prob_and_prob_decide_what_happens():
    labels = distinct_labels(8)
    kinds = set()
    for seed in range(30):
        x = constant_batch(8)
        out, _ = fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.0,
                               num_classes=K, generator=seeded(seed))(x, labels)
        kinds.add(read_sample(out, 0, 7).kind)
    assert {"mixup", "cutmix"} <= kinds, f"switch_prob=0.5 over 30 batches showed only {kinds}"
    for switch_prob, expected in ((0.0, "mixup"), (1.0, "cutmix")):
        for seed in range(10):
            x = constant_batch(8)
            out, _ = fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=switch_prob, mode="elem",
                                   label_smoothing=0.0, num_classes=K, generator=seeded(seed))(x, labels)
            for i in range(8):
                kind = read_sample(out, i, 7 - i).kind
                assert kind in (expected, "none"), f"switch_prob={switch_prob}: sample {i} is {kind}"
    # prob=0 and mixup_enabled=False: nothing mixes, targets are plain one-hot
    off = fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=K)
    off.mixup_enabled = False
    for mixer in (fastmix.Mixup(prob=0.0, label_smoothing=0.0, num_classes=K), off):
        x = constant_batch(8)
        out, target = mixer(x, labels)
        assert torch.equal(out, constant_batch(8)), "no mixing was asked for, yet pixels changed"
        assert torch.equal(target, torch.nn.functional.one_hot(labels, K).float())


def test_empty_batch():
    x = torch.zeros(0, 3, H, W)
    out, target = fastmix.Mixup(cutmix_alpha=1.0, num_classes=K)(x, torch.zeros(0, dtype=torch.int64))
    assert out.shape == (0, 3, H, W) and target.shape == (0, K)
    out, target = fastmix.v2.CutMix(num_classes=K)(x, torch.zeros(0, dtype=torch.int64))
    assert out.shape == (0, 3, H, W) and target.shape == (0, K)


# --------------------------------------------------------------------------------------------
# 2. label smoothing and label kinds
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_uses_timms_values(eps):
    b, k = 6, 10
    labels = distinct_labels(b, k)
    _, target = fastmix.Mixup(prob=0.0, label_smoothing=eps, num_classes=k)(constant_batch(b), labels)
    off, on = eps / k, 1.0 - eps + eps / k
    for i in range(b):
        expected = torch.full((k,), off, dtype=torch.float64)
        expected[labels[i]] = on
        check_row(target, i, expected, f"unmixed, smoothing {eps}")
    # mixed: the weights come from the pixels, the values from timm's formula
    x = constant_batch(b)
    out, target = fastmix.Mixup(mixup_alpha=1.0, mode="elem", label_smoothing=eps, num_classes=k,
                                generator=seeded(3))(x, labels)
    for i in range(b):
        st = read_sample(out, i, b - 1 - i)
        check_row(target, i, mixed_row(k, int(labels[i]), int(labels[b - 1 - i]), st.own, eps), f"mixup eps {eps}")
        assert abs(float(target[i].sum()) - 1.0) < 1e-5, f"sample {i}: smoothed row sums to {float(target[i].sum())}"


@pytest.mark.parametrize("kind", ["soft", "multi-hot", "float64"])
def test_soft_and_multi_hot_labels_are_smoothed_and_mixed(kind):
    b, k, eps = 6, 7, 0.2
    g = seeded(11)
    if kind == "multi-hot":
        labels = (torch.rand(b, k, generator=g) < 0.4).float()
    else:
        labels = torch.softmax(torch.randn(b, k, generator=g), 1)
        if kind == "float64":
            labels = labels.double()
    x = constant_batch(b)
    out, target = fastmix.Mixup(mixup_alpha=1.0, mode="elem", label_smoothing=eps, num_classes=k,
                                generator=seeded(5))(x, labels)
    assert target.shape == (b, k) and target.dtype == torch.float32
    smooth = labels.double() * (1 - eps) + eps / k
    for i in range(b):
        j = b - 1 - i
        st = read_sample(out, i, j)
        check_row(target, i, st.own * smooth[i] + (1 - st.own) * smooth[j], f"{kind} labels, mixup")
    # v2 takes soft labels without num_classes
    x = constant_batch(b)
    out, target = fastmix.v2.MixUp(alpha=1.0, generator=seeded(6))(x, labels)
    assert target.shape == (b, k)
    for i in range(b):
        j = (i - 1) % b
        st = read_sample(out, i, j)
        check_row(target, i, st.own * labels[i].double() + (1 - st.own) * labels[j].double(), f"v2 {kind} labels")


def test_large_number_of_classes():
    k, eps = 21841, 0.1
    labels = torch.tensor([0, 21840, 12345, 7])
    x = constant_batch(4)
    out, target = fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", label_smoothing=eps,
                                num_classes=k, generator=seeded(1))(x, labels)
    assert target.shape == (4, k) and target.dtype == torch.float32
    assert torch.allclose(target.double().sum(1), torch.ones(4, dtype=torch.float64), atol=1e-4)
    for i in range(4):
        j = 3 - i
        st = read_sample(out, i, j)
        check_row(target, i, mixed_row(k, int(labels[i]), int(labels[j]), st.own, eps), f"K={k} {st.kind}")


# --------------------------------------------------------------------------------------------
# 3. in place, layouts, shapes, dtypes
# --------------------------------------------------------------------------------------------

def test_timm_api_mixes_in_place():
    x = torch.randn(6, 3, H, W, generator=seeded(0))
    before, ptr = x.clone(), x.data_ptr()
    out, _ = fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K,
                           generator=seeded(1))(x, distinct_labels(6))
    assert out is x and out.data_ptr() == ptr, "the timm API must return x itself"
    assert not torch.equal(x, before), "x was not modified in place"


def test_v2_in_place_by_default_and_inplace_false_keeps_input():
    labels = distinct_labels(6)
    for name in ("MixUp", "CutMix"):
        x = constant_batch(6)
        out, _ = getattr(fastmix.v2, name)(num_classes=K, generator=seeded(2))(x, labels)
        assert out is x and not torch.equal(x, constant_batch(6)), f"v2.{name} default must mix in place"
        x = constant_batch(6)
        out, target_copy = getattr(fastmix.v2, name)(num_classes=K, inplace=False, generator=seeded(2))(x, labels)
        assert out is not x and out.data_ptr() != x.data_ptr()
        assert torch.equal(x, constant_batch(6)), f"v2.{name}(inplace=False) changed its input"
        for i in range(6):
            st = read_sample(out, i, (i - 1) % 6)
            check_row(target_copy, i, mixed_row(K, int(labels[i]), int(labels[(i - 1) % 6]), st.own),
                      f"v2.{name} inplace=False")


def _layout_transforms():
    return {
        "mixup-cutmix": lambda g: (lambda x: fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem",
                                                           num_classes=K, generator=g)(x, distinct_labels(6))[0]),
        "cutout": lambda g: fastmix.Cutout(n_holes=2, length=6, fill=(1.0, 2.0, 3.0), generator=g),
        "erasing-random": lambda g: fastmix.RandomErasing(p=1.0, value="random", generator=g),
        "erasing-channels": lambda g: fastmix.RandomErasing(p=1.0, value=(-1.0, 0.5, 9.0), generator=g),
    }


@pytest.mark.parametrize("name", list(_layout_transforms()))
def test_channels_last_matches_contiguous(name):
    make = _layout_transforms()[name]
    x = torch.randn(6, 3, H, W, generator=seeded(4))
    expected = make(seeded(9))(x.clone())
    x_cl = x.clone().to(memory_format=torch.channels_last)
    out = make(seeded(9))(x_cl)
    assert out is x_cl, f"{name}: channels_last input not mixed in place"
    assert out.is_contiguous(memory_format=torch.channels_last), f"{name}: output lost channels_last"
    torch.testing.assert_close(out, expected, **tolerance(torch.float32), msg=f"{name}: channels_last != NCHW")
    assert not torch.equal(out, x), f"{name}: nothing happened"


def test_video_cutmix_uses_one_box_across_frames():
    b, labels = 6, distinct_labels(6)
    seen_cut = False
    for seed in range(3):
        for transform, partner in (
                (fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", label_smoothing=0.0,
                               num_classes=K, generator=seeded(seed)), lambda i: b - 1 - i),
                (fastmix.v2.CutMix(num_classes=K, generator=seeded(seed)), lambda i: (i - 1) % b)):
            x = constant_batch(b, tail=(3, 4, H, W))
            out, target = transform(x, labels)
            assert out.shape == (b, 3, 4, H, W)
            for i in range(b):
                st = read_sample(out, i, partner(i))   # checks every (channel, frame) plane has the same box
                seen_cut |= st.kind == "cutmix"
                check_row(target, i, mixed_row(K, int(labels[i]), int(labels[partner(i)]), st.own),
                          f"video {type(transform).__name__}")
    assert seen_cut, "no video sample was cut"
    # channels_last_3d video gives the same result as contiguous video
    x = torch.randn(4, 3, 5, H, W, generator=seeded(1))
    expected, _ = fastmix.Mixup(cutmix_alpha=1.0, mode="elem", num_classes=K, generator=seeded(2))(
        x.clone(), distinct_labels(4))
    x3 = x.clone().to(memory_format=torch.channels_last_3d)
    out, _ = fastmix.Mixup(cutmix_alpha=1.0, mode="elem", num_classes=K, generator=seeded(2))(x3, distinct_labels(4))
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, expected, **tolerance(torch.float32))


@pytest.mark.parametrize("tail", [(17,), (4, 9), (2, 3, 2, 5)], ids=["features", "tokens", "4d-sample"])
def test_mixup_only_takes_any_shape(tail):
    b = 5
    labels = distinct_labels(b)
    for transform, partner in ((fastmix.Mixup(mixup_alpha=1.0, mode="elem", label_smoothing=0.0, num_classes=K,
                                              generator=seeded(3)), lambda i: b - 1 - i),
                               (fastmix.v2.MixUp(num_classes=K, generator=seeded(3)), lambda i: (i - 1) % b)):
        x = constant_batch(b, tail=tail)
        out, target = transform(x, labels)
        assert out is x and out.shape == (b, *tail)
        for i in range(b):
            st = read_sample(out, i, partner(i))
            check_row(target, i, mixed_row(K, int(labels[i]), int(labels[partner(i)]), st.own),
                      f"{type(transform).__name__} on {tail}")


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8]


def _dtype_batch(dtype, shape=(6, 3, H, W)):
    g = seeded(21)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return (2 * torch.randn(shape, generator=g)).to(dtype)


def _dtype_transforms(dtype):
    out = {
        "mixup": lambda g: fastmix.Mixup(mixup_alpha=1.0, mode="elem", num_classes=K, generator=g),
        "cutmix": lambda g: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="pair", num_classes=K,
                                          generator=g),
        "switch": lambda g: fastmix.Mixup(mixup_alpha=0.5, cutmix_alpha=1.0, mode="elem", num_classes=K,
                                          generator=g),
        "v2-mixup": lambda g: fastmix.v2.MixUp(num_classes=K, generator=g),
        "v2-cutmix": lambda g: fastmix.v2.CutMix(num_classes=K, generator=g),
        "cutout": lambda g: fastmix.Cutout(n_holes=3, length=5, fill=(7.0, 100.0, 250.0), generator=g),
        "erasing": lambda g: fastmix.RandomErasing(p=0.8, value=3.0, generator=g),
    }
    if dtype.is_floating_point:
        out["erasing-random"] = lambda g: fastmix.RandomErasing(p=1.0, value="random", generator=g)
    return out


def _call(transform, x):
    if isinstance(transform, (fastmix.Cutout, fastmix.RandomErasing)):
        return transform(x)
    return transform(x, distinct_labels(x.shape[0]))[0]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_every_dtype_matches_the_oracle(dtype):
    x = _dtype_batch(dtype)
    tol = tolerance(dtype)
    for name, make in _dtype_transforms(dtype).items():
        for seed in range(2):
            plan = make(seeded(seed)).plan(x)
            expected = oracle.blend(x, plan)
            applied = F.apply(x.clone(), plan)
            assert applied.dtype == dtype
            torch.testing.assert_close(applied.double(), expected, **tol,
                                       msg=lambda m: f"{name} seed {seed} {dtype}: functional.apply vs oracle: {m}")
            called = _call(make(seeded(seed)), x.clone())
            assert called.dtype == dtype
            torch.testing.assert_close(called.double(), expected, **tol,
                                       msg=lambda m: f"{name} seed {seed} {dtype}: transform vs oracle: {m}")
            assert torch.equal(called, applied), f"{name} seed {seed} {dtype}: transform != apply(plan)"


def test_uint8_rounds_to_nearest_like_timm():
    # timm's uint8 path: float32 blend then np.rint; the oracle rounds in float64: 1 level apart at most
    x = torch.randint(0, 256, (8, 3, H, W), generator=seeded(5), dtype=torch.uint8)
    mixer = fastmix.Mixup(mixup_alpha=1.0, mode="elem", num_classes=K, generator=seeded(6))
    plan = mixer.plan(x)
    out = F.apply(x.clone(), plan)
    lam = plan.lam_self.view(-1, 1, 1, 1)
    timm_like = torch.round(x.float() * lam + x[plan.partner].float() * (1 - lam))
    diff = (out.float() - timm_like).abs()
    assert float(diff.max()) <= 1, f"uint8 result {float(diff.max())} levels from timm's rint"
    assert float((diff > 0).double().mean()) < 0.01, "uint8 rounding disagrees with rint on many pixels"
    assert float((out.double() - oracle.blend(x, plan)).abs().max()) <= 1


# --------------------------------------------------------------------------------------------
# 4. errors, raised before anything is written
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# 5. validate=False: a bad label gives NaN rows, never an out-of-bounds access
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [K, K + 1000, 2 ** 40, -1, -(2 ** 40)])
@pytest.mark.parametrize("prob", [1.0, 0.0])
def test_unvalidated_bad_label_gives_nan_rows(bad, prob):
    b, k = 6, K
    labels = distinct_labels(b, k)
    labels[1] = bad
    mixer, twin = twins(fastmix.Mixup, 8, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", prob=prob,
                        label_smoothing=0.1, num_classes=k, validate=False)
    x = constant_batch(b)
    plan = twin.plan(x)
    out, target = mixer(x, labels)
    assert target.shape == (b, k)
    for i in range(b):
        reads_bad = i == 1 or (int(plan.partner[i]) == 1 and float(plan.label_lam[i]) != 1.0)
        nan = bool(torch.isnan(target[i]).any())
        if reads_bad:
            assert bool(torch.isnan(target[i]).all()), (
                f"label {bad}: row {i} draws on sample 1's label (weight {1 - float(plan.label_lam[i]):.3f}) "
                f"but is not NaN: {target[i][:4].tolist()}")
        else:
            assert not nan and bool(torch.isfinite(target[i]).all()), f"label {bad}: row {i} is not finite"
            assert abs(float(target[i].sum()) - 1.0) < 1e-5
    if prob == 1.0:
        assert bool(torch.isnan(target[b - 2]).all()), "sample 1's partner drew from it but its row is finite"
    # the pixels are mixed as planned whatever the labels say
    assert torch.equal(out, F.apply(constant_batch(b), plan))
    # the same label with validation (the CPU default) is refused
    with pytest.raises(ValueError, match="target"):
        fastmix.Mixup(num_classes=k)(constant_batch(b), labels)


def test_unvalidated_bad_label_v2():
    labels = distinct_labels(4)
    labels[2] = -7
    out, target = fastmix.v2.MixUp(num_classes=K, validate=False, generator=seeded(0))(constant_batch(4), labels)
    # roll pairing: row 3 draws from row 2
    assert bool(torch.isnan(target[2]).all()) and bool(torch.isnan(target[3]).all())
    assert bool(torch.isfinite(target[[0, 1]]).all())


# --------------------------------------------------------------------------------------------
# 6. autograd
# --------------------------------------------------------------------------------------------

def test_requires_grad_gives_new_tensor_and_gradient():
    labels = distinct_labels(6)
    x = torch.randn(6, 3, H, W, generator=seeded(1), dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    mixer, twin = twins(fastmix.Mixup, 4, mixup_alpha=1.0, mode="elem", num_classes=K)
    plan = twin.plan(x)
    out, _ = mixer(x, labels)
    assert out is not x and out.data_ptr() != x.data_ptr(), "a tensor requiring grad must be mixed out of place"
    assert out.requires_grad
    assert torch.equal(x.detach(), before), "x requiring grad was modified"
    weight = torch.randn(out.shape, generator=seeded(2), dtype=torch.float64)
    (out * weight).sum().backward()
    # the same blend written as a torch expression
    x2 = before.clone().requires_grad_()
    a = plan.lam_self.double().view(-1, 1, 1, 1)
    b = plan.lam_partner.double().view(-1, 1, 1, 1)
    expected = a * x2 + b * x2[plan.partner]
    torch.testing.assert_close(out.detach(), expected.detach())
    (expected * weight).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, msg="Mixup gradient differs from the torch expression")


def test_requires_grad_cutmix_gradient_matches_region():
    labels = distinct_labels(6)
    x = torch.randn(6, 3, H, W, generator=seeded(1), requires_grad=True)
    mixer, twin = twins(fastmix.Mixup, 5, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=K)
    plan = twin.plan(x)
    out, _ = mixer(x, labels)
    weight = torch.randn(out.shape, generator=seeded(2))
    (out * weight).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    region = torch.stack([oracle.region_mask(plan, i, x) for i in range(6)])
    expected = torch.where(region, x2[plan.partner], x2)
    torch.testing.assert_close(out.detach(), expected.detach(), rtol=0, atol=0)
    (expected * weight).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, msg="CutMix gradient differs from the region expression")


OUT_OF_PLACE = {
    "mixup-batch": lambda g: fastmix.Mixup(mixup_alpha=1.0, mode="batch", num_classes=K, generator=g),
    "cutmix-batch": lambda g: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch", num_classes=K,
                                            generator=g),
    "cutmix-pair": lambda g: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="pair", num_classes=K,
                                           generator=g),
    "switch-elem": lambda g: fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K,
                                           generator=g),
    "minmax-batch": lambda g: fastmix.Mixup(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.7), num_classes=K, generator=g),
    "v2-cutmix": lambda g: fastmix.v2.CutMix(num_classes=K, generator=g),
    "v2-mixup": lambda g: fastmix.v2.MixUp(num_classes=K, generator=g),
}


@pytest.mark.parametrize("name", list(OUT_OF_PLACE))
def test_out_of_place_equals_in_place_and_the_oracle(name):
    """The differentiable (out-of-place) path must blend exactly what the in-place path does."""
    b, labels = 6, distinct_labels(6)
    for seed in range(3):
        x = torch.randn(b, 3, H, W, generator=seeded(seed))
        plan = OUT_OF_PLACE[name](seeded(seed)).plan(x)
        expected = oracle.blend(x, plan)
        in_place, t_in = OUT_OF_PLACE[name](seeded(seed))(x.clone(), labels)
        leaf = x.clone().requires_grad_()
        out_of_place, t_out = OUT_OF_PLACE[name](seeded(seed))(leaf, labels)
        assert out_of_place is not leaf and torch.equal(leaf.detach(), x)
        torch.testing.assert_close(in_place.double(), expected, **tolerance(torch.float32),
                                   msg=lambda m: f"{name} seed {seed}: in place vs oracle: {m}")
        torch.testing.assert_close(out_of_place.detach().double(), expected, **tolerance(torch.float32),
                                   msg=lambda m: f"{name} seed {seed}: out of place (requires grad) vs oracle: {m}")
        assert torch.equal(t_in, t_out), f"{name} seed {seed}: targets depend on requires_grad"
        if name.startswith("v2"):
            kept_input = x.clone()
            kept, _ = type(OUT_OF_PLACE[name](None))(num_classes=K, inplace=False, generator=seeded(seed))(
                kept_input, labels)
            assert torch.equal(kept_input, x), f"{name}: inplace=False changed its input"
            torch.testing.assert_close(kept.double(), expected, **tolerance(torch.float32),
                                       msg=lambda m: f"{name} seed {seed}: inplace=False vs oracle: {m}")


def _gradcheck_plans():
    size = (5, 6)
    return {
        "mixup-elem": F.mixup_cutmix_plan(4, None, mixup_alpha=1.0, mode="elem", generator=seeded(0)),
        "cutmix-elem": F.mixup_cutmix_plan(4, size, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                                           generator=seeded(3)),
        "switch-roll": F.mixup_cutmix_plan(4, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem",
                                           pairing="roll", generator=seeded(1)),
        "mixup-randperm": F.mixup_plan(torch.tensor([0.2, 0.7, 0.5, 0.9]), partner=torch.tensor([2, 0, 3, 1])),
        "cutout": F.cutout_plan(4, size, n_holes=2, length=3, fill=0.5, generator=seeded(2)),
    }


@pytest.mark.parametrize("name", list(_gradcheck_plans()))
def test_gradcheck_functional_apply(name):
    plan = _gradcheck_plans()[name]
    assert bool((plan.kind != fastmix.NONE).any()), f"{name}: the plan mixes nothing"
    x = torch.randn(4, 2, 5, 6, generator=seeded(4), dtype=torch.float64, requires_grad=True)
    # fast mode (random projections of the Jacobian) keeps the reference's per-call cost in check
    assert torch.autograd.gradcheck(lambda t: F.apply(t, plan), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradcheck_full_jacobian_cutmix():
    plan = F.mixup_cutmix_plan(3, (3, 5), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", switch_prob=0.7,
                               generator=seeded(3))
    assert bool((plan.kind == fastmix.CUTMIX).any()), "the plan cuts nothing"
    x = torch.randn(3, 1, 3, 5, generator=seeded(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.apply(t, plan), (x,), eps=1e-6, atol=1e-5)


def test_gradcheck_through_the_mixup_transform():
    labels = distinct_labels(4)

    def mixed(t):  # a fresh generator per call: gradcheck evaluates the same plan every time
        return fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K,
                             generator=seeded(6))(t, labels)[0]

    x = torch.randn(4, 2, 5, 6, generator=seeded(5), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mixed, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    v2x = torch.randn(4, 7, generator=seeded(5), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: fastmix.v2.MixUp(num_classes=K, inplace=False, generator=seeded(1))(t, labels)[0], (v2x,),
        eps=1e-6, atol=1e-5, fast_mode=True)


# --------------------------------------------------------------------------------------------
# 7. reproducibility
# --------------------------------------------------------------------------------------------

REPRO = {
    "mixup": lambda g: (lambda x: fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K,
                                                generator=g)(x, distinct_labels(8))),
    "v2-cutmix": lambda g: (lambda x: fastmix.v2.CutMix(num_classes=K, generator=g)(x, distinct_labels(8))),
    "v2-mixup": lambda g: (lambda x: fastmix.v2.MixUp(num_classes=K, generator=g)(x, distinct_labels(8))),
    "cutout": lambda g: (lambda x: (fastmix.Cutout(n_holes=2, length=5, generator=g)(x),)),
    "erasing": lambda g: (lambda x: (fastmix.RandomErasing(p=1.0, value="random", generator=g)(x),)),
}


@pytest.mark.parametrize("name", list(REPRO))
def test_same_seed_same_result_other_seed_differs(name):
    x = torch.randn(8, 3, H, W, generator=seeded(0))
    first = REPRO[name](seeded(123))(x.clone())
    again = REPRO[name](seeded(123))(x.clone())
    other = REPRO[name](seeded(124))(x.clone())
    for a, b in zip(first, again):
        assert torch.equal(a, b), f"{name}: the same seed gave different results"
    assert not torch.equal(first[0], other[0]), f"{name}: seeds 123 and 124 gave identical images"
    # one generator drawn twice moves on
    transform = REPRO[name](seeded(123))
    one, two = transform(x.clone()), transform(x.clone())
    assert not torch.equal(one[0], two[0]), f"{name}: two calls on one generator repeated the draw"


# --------------------------------------------------------------------------------------------
# 8. torchvision-style composition
# --------------------------------------------------------------------------------------------

class RandomChoice:
    """Stand-in for torchvision.transforms.v2.RandomChoice: calls ``transform(*inputs)``."""

    def __init__(self, transforms, generator):
        self.transforms = transforms
        self.generator = generator

    def __call__(self, *inputs):
        idx = int(torch.randint(len(self.transforms), (1,), generator=self.generator))
        return self.transforms[idx](*inputs)


def _check_v2_pair(out, target, labels, b, what):
    kinds = set()
    for i in range(b):
        j = (i - 1) % b
        st = read_sample(out, i, j)
        kinds.add(st.kind)
        check_row(target, i, mixed_row(K, int(labels[i]), int(labels[j]), st.own), what)
    return kinds


def test_random_choice_stand_in_composes():
    b, labels = 6, distinct_labels(6)
    choice = RandomChoice([fastmix.v2.CutMix(num_classes=K, generator=seeded(1)),
                           fastmix.v2.MixUp(num_classes=K, generator=seeded(2))], seeded(3))
    kinds = set()
    for _ in range(16):
        x = constant_batch(b)
        out, target = choice(x, labels)
        assert out is x and target.shape == (b, K)
        kinds |= _check_v2_pair(out, target, labels, b, "RandomChoice stand-in")
    assert {"mixup", "cutmix"} <= kinds, f"16 random choices showed only {kinds}"


def test_real_torchvision_random_choice_composes():
    tv2 = pytest.importorskip("torchvision.transforms.v2")
    torch.manual_seed(0)
    b, labels = 6, distinct_labels(6)
    choice = tv2.RandomChoice([fastmix.v2.CutMix(num_classes=K, generator=seeded(1)),
                               fastmix.v2.MixUp(num_classes=K, generator=seeded(2))])
    kinds = set()
    for _ in range(16):
        x = constant_batch(b)
        out, target = choice(x, labels)
        assert target.shape == (b, K) and target.dtype == torch.float32
        kinds |= _check_v2_pair(out, target, labels, b, "torchvision RandomChoice")
    assert {"mixup", "cutmix"} <= kinds, f"16 random choices showed only {kinds}"


def test_dict_inputs_and_custom_labels_getter():
    b, labels = 6, distinct_labels(6)
    for name in ("MixUp", "CutMix"):
        x = constant_batch(b)
        result = getattr(fastmix.v2, name)(num_classes=K, generator=seeded(4))({"image": x, "labels": labels})
        assert set(result) == {"image", "labels"}
        assert result["image"] is x and result["labels"].shape == (b, K)
        _check_v2_pair(result["image"], result["labels"], labels, b, f"v2.{name} dict input")

        x = constant_batch(b)
        transform = getattr(fastmix.v2, name)(num_classes=K, generator=seeded(5),
                                              labels_getter=lambda inputs: inputs[1]["cls"])
        images, meta = transform(x, {"cls": labels})
        assert images is x and meta["cls"].shape == (b, K)
        _check_v2_pair(images, meta["cls"], labels, b, f"v2.{name} custom labels_getter")


# --------------------------------------------------------------------------------------------
# 9. Cutout and RandomErasing
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# 10. segmentation masks follow the images pixel for pixel
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# 11. peak memory of the CPU reference
# --------------------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, torch, fastmix
    torch.manual_seed(0)
    warm = torch.rand(4, 3, 64, 64)
    fastmix.Mixup(mixup_alpha=1., cutmix_alpha=1., mode='elem')(warm, torch.arange(4))
    x = torch.empty(128, 3, 512, 512)
    x.uniform_()                                   # touch every page
    y = torch.randint(0, 1000, (128,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fastmix.Mixup(mixup_alpha=1., cutmix_alpha=1., mode='elem')(x, y)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "nbytes": x.numel() * x.element_size()}))
""")


@pytest.mark.slow
def test_cpu_reference_never_copies_the_batch():
    env = dict(os.environ, FASTMIX_BACKEND="reference")
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    grown = (report["after_kib"] - report["before_kib"]) * 1024
    assert grown < 0.15 * report["nbytes"], (
        f"peak RSS grew by {grown / 2**20:.1f} MiB mixing a {report['nbytes'] / 2**20:.0f} MiB batch "
        f"({100 * grown / report['nbytes']:.1f}%, limit 15%)")


# --------------------------------------------------------------------------------------------
# 12. peers: same shapes, dtypes and distributions as timm and torchvision
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_same_shapes_and_dtypes_as_timm(mode):
    timm_mixup = pytest.importorskip("timm.data.mixup")
    np = pytest.importorskip("numpy")
    np.random.seed(0)
    torch.manual_seed(0)
    args = dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=1000, mode=mode)
    x = torch.rand(8, 3, 32, 32)
    y = torch.randint(0, 1000, (8,))
    theirs_x, theirs_t = timm_mixup.Mixup(**args)(x.clone(), y)
    ours_x, ours_t = fastmix.Mixup(**args, generator=seeded(0))(x.clone(), y)
    assert ours_x.shape == theirs_x.shape and ours_x.dtype == theirs_x.dtype
    assert ours_t.shape == theirs_t.shape and ours_t.dtype == theirs_t.dtype, (
        f"targets {tuple(ours_t.shape)} {ours_t.dtype} vs timm {tuple(theirs_t.shape)} {theirs_t.dtype}")
    assert torch.allclose(ours_t.sum(1), torch.ones(8), atol=1e-5)
    # unmixed (prob=0) targets are deterministic: they must equal timm's exactly
    no_mix = dict(args, prob=0.0)
    x = torch.rand(8, 3, 32, 32)
    theirs_x, theirs_t = timm_mixup.Mixup(**no_mix)(x.clone(), y)
    ours_x, ours_t = fastmix.Mixup(**no_mix)(x.clone(), y)
    assert torch.equal(ours_x, theirs_x)
    torch.testing.assert_close(ours_t, theirs_t, rtol=0, atol=1e-7)


def _label_weights(transform, make_x, labels, calls):
    rows = torch.arange(labels.shape[0])
    out = []
    for _ in range(calls):
        _, target = transform(make_x(), labels)
        out.append(target[rows, labels])
    return torch.cat(out)


@pytest.mark.parametrize("kind", ["mixup", "cutmix", "cutmix-raw"])
def test_lambda_distribution_matches_timm(kind):
    timm_mixup = pytest.importorskip("timm.data.mixup")
    np = pytest.importorskip("numpy")
    np.random.seed(0)
    torch.manual_seed(0)
    b = 16
    labels = torch.arange(b) * 3
    args = {"mixup": dict(mixup_alpha=0.8, cutmix_alpha=0.0),
            "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
            "cutmix-raw": dict(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False)}[kind]
    args = dict(args, mode="elem", label_smoothing=0.0, num_classes=100)
    make_x = lambda: torch.zeros(b, 3, 32, 32)  # noqa: E731
    theirs = _label_weights(timm_mixup.Mixup(**args), make_x, labels, 125)
    ours = _label_weights(fastmix.Mixup(**args, generator=seeded(0)), make_x, labels, 125)
    assert ours.numel() == theirs.numel() == 2000
    assert_same_distribution(ours, theirs, f"timm {kind} label weights")


def test_same_shapes_and_dtypes_as_torchvision():
    tv2 = pytest.importorskip("torchvision.transforms.v2")
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    for name in ("MixUp", "CutMix"):
        theirs_x, theirs_t = getattr(tv2, name)(num_classes=10)(x.clone(), y)
        ours_x, ours_t = getattr(fastmix.v2, name)(num_classes=10, generator=seeded(0))(x.clone(), y)
        assert ours_x.shape == theirs_x.shape and ours_x.dtype == theirs_x.dtype
        assert ours_t.shape == theirs_t.shape and ours_t.dtype == theirs_t.dtype, (
            f"{name}: targets {tuple(ours_t.shape)} {ours_t.dtype} vs {tuple(theirs_t.shape)} {theirs_t.dtype}")
        assert torch.allclose(ours_t.sum(1), torch.ones(8), atol=1e-5)
        assert torch.allclose(theirs_t.sum(1), torch.ones(8), atol=1e-5)
        # soft labels, no num_classes
        soft = torch.softmax(torch.randn(8, 10), 1)
        theirs_x, theirs_t = getattr(tv2, name)()(x.clone(), soft)
        ours_x, ours_t = getattr(fastmix.v2, name)(generator=seeded(0))(x.clone(), soft)
        assert ours_t.shape == theirs_t.shape and ours_t.dtype == theirs_t.dtype


@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_lambda_distribution_matches_torchvision(name):
    tv2 = pytest.importorskip("torchvision.transforms.v2")
    torch.manual_seed(0)
    b = 4
    labels = torch.arange(b)
    make_x = lambda: constant_batch(b, tail=(3, 32, 32))  # noqa: E731

    def weights(transform):
        out = []
        for _ in range(2000):
            images, target = transform(make_x(), labels)
            # one draw per batch: sample 1 (partner 0, roll pairing) carries it
            assert torch.allclose(target.sum(1), torch.ones(b), atol=1e-5)
            out.append(target[1, 1])
        return torch.stack(out)

    theirs = weights(getattr(tv2, name)(alpha=1.0, num_classes=b))
    ours = weights(getattr(fastmix.v2, name)(alpha=1.0, num_classes=b, generator=seeded(0)))
    assert_same_distribution(ours, theirs, f"torchvision {name} label weights")
    # torchvision pairs with roll(1, 0) too: its pixels tell the same story as its targets
    images, target = getattr(tv2, name)(alpha=1.0, num_classes=b)(make_x(), labels)
    for i in range(b):
        st = read_sample(images, i, (i - 1) % b)
        check_row(target.to(torch.float32), i, mixed_row(b, i, (i - 1) % b, st.own), f"torchvision {name}")
