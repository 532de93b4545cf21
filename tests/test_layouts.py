"""In place, memory layouts, sample shapes and dtypes of the user-facing transforms: the timm API
returns ``x`` itself; channels_last (2-D and 3-D) gives what NCHW gives; video shares one box
across frames; Mixup takes any sample shape; every dtype matches the naive oracle
(``tests/oracle.py``) within ``helpers.tolerance``, and uint8 rounds like timm's ``np.rint``.
"""
from __future__ import annotations

import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2
import oracle
from helpers import H, K, W, check_row, constant_batch, distinct_labels, mixed_row, read_sample, seeded, tolerance

def test_timm_api_mixes_in_place():
    x = torch.randn(6, 3, H, W, generator=seeded(0))
    before, ptr = x.clone(), x.data_ptr()
    out, _ = fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K,
                           generator=seeded(1))(x, distinct_labels(6))
    assert out is x and out.data_ptr() == ptr, "the timm API must return x itself"
    assert not torch.equal(x, before), "x was not modified in place"


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
