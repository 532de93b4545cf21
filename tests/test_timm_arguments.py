"""timm's arguments as timm 1.0.31 takes them: ``multi_label``, float class indices, numpy
scalars wherever a number goes, and integers that must be integers.

No timm needed: expected targets come from the pixels (each sample is a distinct constant, so a
pixel says how much of the sample itself it keeps) and timm's own formulas written out here;
tests/parity/test_timm.py checks the same against the real timm.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2

B, H, W, K = 6, 8, 10, 12


def constant_images(b: int = B) -> torch.Tensor:
    """Sample ``i`` is the constant ``i + 1`` everywhere."""
    return torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, H, W).contiguous()


def own_weights(out: torch.Tensor) -> torch.Tensor:
    """Per sample, the weight of its own pixels after whole-sample Mixup with timm's flip partner."""
    b = out.shape[0]
    own = torch.arange(1, b + 1, dtype=torch.float64)
    other = own.flip(0)
    pixel = out[:, 0, 0, 0].double()
    weight = (pixel - other) / (own - other)
    return torch.where(own == other, torch.ones_like(weight), weight)   # an odd batch's middle sample


def timm_multi_label_target(multi_hot: torch.Tensor, own: torch.Tensor, smoothing: float) -> torch.Tensor:
    """timm's ``mixup_target(..., multi_label=True)``: ``s(y) * λ + s(y.flip(0)) * (1 - λ)`` with
    ``s(y) = y * (1 - ε) + ε / 2``, λ per sample."""
    smooth = multi_hot.double() * (1.0 - smoothing) + 0.5 * smoothing
    return smooth * own[:, None] + smooth.flip(0) * (1.0 - own[:, None])


# --------------------------------------------------------------------------------------------
# multi_label
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool], ids=["float32", "int64", "bool"])
def test_multi_label_smooths_towards_one_half_like_timm(mode, smoothing, dtype):
    multi_hot = (torch.rand(B, K, generator=torch.Generator().manual_seed(3)) < 0.4).to(dtype)
    mix = fastmix.Mixup(mixup_alpha=1.0, mode=mode, label_smoothing=smoothing, num_classes=K, multi_label=True,
                        generator=torch.Generator().manual_seed(5))
    out, target = mix(constant_images(), multi_hot)
    want = timm_multi_label_target(multi_hot, own_weights(out), smoothing)
    assert target.dtype == torch.float32 and target.shape == (B, K)
    torch.testing.assert_close(target.double(), want, atol=1e-6, rtol=0)
    if smoothing:
        # an absent label is smoothed to ε / 2 in an unmixed row, not to ε / K
        unmixed = fastmix.Mixup(prob=0.0, label_smoothing=smoothing, num_classes=K, multi_label=True)
        _, target = unmixed(constant_images(), multi_hot)
        assert torch.allclose(target[~multi_hot.bool()], torch.tensor(smoothing / 2))
        assert torch.allclose(target[multi_hot.bool()], torch.tensor(1.0 - smoothing / 2))


def test_multi_label_off_keeps_the_one_hot_smoothing():
    mix = fastmix.Mixup(prob=0.0, label_smoothing=0.3, num_classes=K)
    assert mix.multi_label is False
    _, target = mix(constant_images(), torch.arange(B))
    assert torch.allclose(target[torch.arange(B), torch.arange(B)], torch.tensor(1 - 0.3 + 0.3 / K))


@pytest.mark.parametrize("target", [torch.arange(B), torch.zeros(B, K + 1), torch.zeros(B, K, 1)],
                         ids=["class-indices", "wrong-width", "3d"])
def test_multi_label_needs_dense_targets_of_num_classes(target):
    x = constant_images()
    before = (x.clone(), target.clone())
    mix = fastmix.Mixup(num_classes=K, multi_label=True)
    with pytest.raises(ValueError, match="target"):
        mix(x, target)
    assert torch.equal(x, before[0]) and torch.equal(target, before[1]), "an input was written before the error"


def test_multi_label_is_timms_tenth_positional_argument():
    mix = fastmix.Mixup(1.0, 0.0, None, 1.0, 0.5, "batch", True, 0.1, K, True)
    assert mix.multi_label is True and mix.num_classes == K


# --------------------------------------------------------------------------------------------
# float class indices and (B, 1) columns: timm's target.long().view(-1, 1)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_float_class_indices_are_truncated_like_timm(mode):
    ints = torch.tensor([0, 3, 1, 7, 2, 5])
    floats = torch.tensor([-0.5, 3.9, 1.0, 7.2, 2.5, 5.0])      # .long(): 0, 3, 1, 7, 2, 5
    results = []
    for labels in (ints, floats):
        mix = fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=K,
                            generator=torch.Generator().manual_seed(11))
        results.append(mix(constant_images(), labels))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1]), "float class indices gave other targets than their .long()"


@pytest.mark.parametrize("column", [torch.tensor([[0], [3], [1], [7], [2], [5]]),
                                    torch.tensor([[0.5], [3.0], [1.2], [7.9], [2.0], [5.5]])], ids=["int", "float"])
def test_a_column_of_class_indices_is_taken_like_timm(column):
    # timm's one_hot reads target.long().view(-1, 1): a (B, 1) column is class indices
    _, want = fastmix.Mixup(num_classes=K, generator=torch.Generator().manual_seed(1))(
        constant_images(), torch.tensor([0, 3, 1, 7, 2, 5]))
    _, got = fastmix.Mixup(num_classes=K, generator=torch.Generator().manual_seed(1))(constant_images(), column)
    assert torch.equal(got, want)


def test_float_class_index_out_of_range_after_truncation_names_target():
    x, labels = constant_images(), torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, K + 0.5])
    before = x.clone()
    with pytest.raises(ValueError, match="target"):
        fastmix.Mixup(num_classes=K)(x, labels)
    assert torch.equal(x, before)


# --------------------------------------------------------------------------------------------
# numpy scalars wherever a number goes; integers that must be integral
# --------------------------------------------------------------------------------------------

def test_numpy_scalars_configure_mixup_as_python_numbers_do():
    args = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.75, switch_prob=0.5, label_smoothing=0.125, num_classes=K)
    numpy_args = dict(mixup_alpha=np.float32(0.8), cutmix_alpha=np.int64(1), prob=np.float64(0.75),
                      switch_prob=np.float32(0.5), label_smoothing=np.float32(0.125), num_classes=np.int64(K))
    theirs = fastmix.Mixup(**numpy_args, mode="elem", generator=torch.Generator().manual_seed(2))
    ours = fastmix.Mixup(**args, mode="elem", generator=torch.Generator().manual_seed(2))
    assert type(theirs.num_classes) is int and theirs.num_classes == K
    labels = torch.arange(B)
    out_np, target_np = theirs(constant_images(), labels)
    out, target = ours(constant_images(), labels)
    # np.float32(0.8) is not 0.8 exactly: λ may differ in the last bits, nothing more
    torch.testing.assert_close(out_np, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(target_np, target, atol=1e-5, rtol=0)


def test_numpy_scalars_everywhere_else():
    minmax = fastmix.Mixup(cutmix_minmax=(np.float32(0.25), np.float64(0.75)), num_classes=np.int32(K))
    assert minmax.cutmix_minmax == (0.25, 0.75)
    for pair in (np.array([0.25, 0.75]), torch.tensor([0.25, 0.75])):   # timm indexes any of them
        assert fastmix.Mixup(cutmix_minmax=pair, num_classes=K).cutmix_minmax == (0.25, 0.75)
    with pytest.raises(TypeError, match="cutmix_minmax"):
        fastmix.Mixup(cutmix_minmax=np.float32(0.5), num_classes=K)
    for cls in (fastmix.v2.MixUp, fastmix.v2.CutMix):
        transform = cls(alpha=np.float32(0.5), num_classes=np.int64(K))
        assert transform.num_classes == K and type(transform.num_classes) is int
        _, target = transform(constant_images(), torch.arange(B))
        assert target.shape == (B, K)
    cutout = fastmix.Cutout(n_holes=np.int64(2), length=np.int32(4), fill=np.float32(0.5), p=np.float64(1.0))
    assert (cutout.n_holes, cutout.length, cutout.fill) == (2, 4, 0.5)
    out = cutout(constant_images())
    assert bool((out == 0.5).any())
    erasing = fastmix.RandomErasing(p=np.float32(1.0), scale=(np.float32(0.1), np.float32(0.2)),
                                    ratio=(np.float64(0.5), np.int64(2)), value=np.int64(0))
    assert erasing.value == 0.0
    erasing(constant_images())
    plan = F.mixup_cutmix_plan(B, (H, W), mode="elem")
    target = F.targets(torch.arange(B), plan, num_classes=np.int64(K), smoothing=np.float32(0.1))
    assert target.shape == (B, K)


def test_numpy_scalars_in_the_functional_samplers():
    # a single number, not a sequence of them, wherever the samplers take either
    assert F.sample_beta(np.float32(0.5), 8).shape == (8,)
    plan = F.cutout_plan(B, (H, W), n_holes=1, length=4, fill=np.int64(3))
    assert torch.equal(plan.fill, torch.full((B, 1), 3.0))
    plan = F.erasing_plan(B, (H, W), p=1.0, value=np.float32(0.5))
    assert torch.equal(plan.fill, torch.full((B, 1), 0.5))


def test_integral_floats_are_integers():
    assert fastmix.Mixup(num_classes=10.0).num_classes == 10
    assert fastmix.v2.MixUp(num_classes=np.float64(10.0)).num_classes == 10


@pytest.mark.parametrize("build, argument", [
    (lambda: fastmix.Mixup(num_classes=10.7), "num_classes"),
    (lambda: fastmix.Mixup(num_classes=np.float32(10.5)), "num_classes"),
    (lambda: fastmix.v2.MixUp(num_classes=10.7), "num_classes"),
    (lambda: fastmix.v2.CutMix(num_classes=2.5), "num_classes"),
    (lambda: fastmix.Cutout(n_holes=1.5), "n_holes"),
    (lambda: fastmix.Cutout(length=16.2), "length"),
    (lambda: F.targets(torch.arange(B), F.mixup_cutmix_plan(B, None), num_classes=10.7), "num_classes"),
], ids=["mixup", "mixup-numpy", "v2-mixup", "v2-cutmix", "cutout-holes", "cutout-length", "targets"])
def test_non_integral_integers_are_rejected_naming_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize("value", [True, np.bool_(True), "10", None], ids=["bool", "numpy-bool", "str", "none"])
def test_non_numbers_are_still_type_errors(value):
    with pytest.raises(TypeError, match="num_classes"):
        fastmix.Mixup(num_classes=value)
