"""Parity with the peers: the same shapes and dtypes as timm's ``Mixup`` and torchvision's
``v2.MixUp`` / ``v2.CutMix``, and the same distribution of label weights (two-sample KS test,
``helpers.assert_same_distribution``). Each test skips when its peer is not installed.
"""
from __future__ import annotations

import pytest
import torch

import fastmix
import fastmix.v2
from helpers import assert_same_distribution, check_row, constant_batch, mixed_row, read_sample, seeded

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
