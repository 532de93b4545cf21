"""``fastmix.Mixup`` with timm's arguments: what the pixels show equals the label weights, in
every mode (batch, pair, elem) and config (Mixup, CutMix, switch); ``prob`` and ``switch_prob``;
label smoothing with timm's values; class-index, soft, multi-hot and float64 labels; and
``validate=False``, where a bad label gives NaN rows instead of an out-of-bounds access.

Every sample of a constant batch (``helpers.constant_batch``) holds one value, so after a call
each pixel says which sample it came from or in what proportion it was blended
(``helpers.read_sample``); expected rows follow timm's formula (``helpers.mixed_row``).
"""
from __future__ import annotations

import math

import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2
from fastmix.plan import KIND_NAMES
from helpers import H, K, W, check_row, constant_batch, distinct_labels, mixed_row, read_sample, seeded, twins

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


# label smoothing and label kinds

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


# validate=False: a bad label gives NaN rows, never an out-of-bounds access

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
