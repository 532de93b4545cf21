"""``fastmix.v2.MixUp`` and ``fastmix.v2.CutMix`` with torchvision's arguments: one draw per batch
and roll pairing as the pixels show them, in place by default and ``inplace=False``, and
composition the torchvision way (``RandomChoice``, dict inputs, a custom ``labels_getter``).

The test with torchvision's own ``RandomChoice`` skips when torchvision is absent.
"""
from __future__ import annotations

import pytest
import torch

import fastmix
import fastmix.v2
from helpers import K, check_row, constant_batch, distinct_labels, mixed_row, read_sample, seeded

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


# composition

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
