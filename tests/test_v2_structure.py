"""``fastmix.v2`` reads a sample as torchvision 0.29's ``v2.MixUp``/``v2.CutMix`` do, with plain
tensors, tuples and dicts only (no torchvision needed; tests/parity/test_torchvision.py adds
real tv_tensors and the real torchvision beside them).

torchvision's rules (transforms/v2/_transform.py, _utils.py, _augment.py): with no
``tv_tensors.Image``/``Video`` in the sample, only the first plain tensor in depth-first order is
the image batch and every other leaf passes through untouched; the default labels getter takes
the second item of a pair, or the ``"labels"`` key of a dict (any case), else the first key
containing ``"label"``; integer one-hot ``(B, K)`` labels are taken as float; bad labels raise
ValueError. Expected values come from the pixels: sample ``i`` is the constant ``i + 1``.
"""
from __future__ import annotations

import pytest
import torch

import fastmix
import fastmix.v2

B, H, W, K = 6, 8, 10, 12
CLASSES = ("MixUp", "CutMix")


def constant_images(b: int = B) -> torch.Tensor:
    return torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, H, W).contiguous()


def labels_of(b: int = B) -> torch.Tensor:
    return torch.tensor([3, 0, 7, 1, 11, 5])[:b]


def transform(name: str, seed: int = 0, **kwargs):
    return getattr(fastmix.v2, name)(num_classes=kwargs.pop("num_classes", K),
                                     generator=torch.Generator().manual_seed(seed), **kwargs)


def pixels_agree_with_targets(images: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, what: str) -> bool:
    """Assert each sample's share of its own pixels (partner ``i - 1``, torchvision's roll) is its
    label's weight; return whether anything was mixed (a CutMix box can be empty)."""
    b = images.shape[0]
    own = torch.arange(1, b + 1, dtype=torch.float64)
    for i in range(b):
        j = (i - 1) % b
        pixels = images[i].double()
        kept = 1.0 if i == j else float(((pixels - own[j]) / (own[i] - own[j])).mean())
        weight = float(target[i, labels[i]])
        assert abs(weight - kept) < 1e-5, (
            f"{what}: sample {i} keeps {kept:.6f} of its pixels, but its label weight is {weight:.6f}")
    return not torch.equal(images, constant_images(b))


def until_mixed(call_once, what: str, attempts: int = 8):
    """Call ``call_once() -> (images, target, labels, rest)`` until a call mixes something (an empty
    CutMix box mixes nothing: at most a few percent of draws), checking every call's pixels."""
    for _ in range(attempts):
        images, target, labels, rest = call_once()
        if pixels_agree_with_targets(images, target, labels, what):
            return images, target, labels, rest
    raise AssertionError(f"{what}: {attempts} calls in a row mixed nothing")


# --------------------------------------------------------------------------------------------
# which leaf is the image batch; everything else passes through
# --------------------------------------------------------------------------------------------

def _structures():
    """(name, build) where build() -> (inputs, images, passengers, labels, get(out) -> (images, target, passengers))."""
    def ids_beside():
        x, ids, y = constant_images(), torch.arange(B), labels_of()
        return ((x, ids), y), x, [ids], y, lambda out: (out[0][0], out[1], [out[0][1]])

    def depth_beside():
        x, depth, y = constant_images(), torch.rand(B, 1, H, W), labels_of()
        return ((x, depth), y), x, [depth], y, lambda out: (out[0][0], out[1], [out[0][1]])

    def dict_sample():
        x, depth, y = constant_images(), torch.rand(B, 1, H, W), labels_of()
        return ({"image": x, "depth": depth, "labels": y, "name": "batch-3"}, x, [depth], y,
                lambda out: (out["image"], out["labels"], [out["depth"]]))

    def detection_style():
        x, count, y = constant_images(), torch.ones(B), labels_of()
        return ((x, {"labels": y, "count": count}), x, [count], y,
                lambda out: (out[0], out[1]["labels"], [out[1]["count"]]))

    def nested_first():
        x, depth, y = constant_images(), torch.rand(B, 1, H, W), labels_of()
        return ((([x], {"depth": depth}), y), x, [depth], y, lambda out: (out[0][0][0], out[1], [out[0][1]["depth"]]))

    return {"ids-beside": ids_beside, "depth-beside": depth_beside, "dict": dict_sample,
            "detection-style": detection_style, "nested": nested_first}


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("structure", list(_structures()))
def test_only_the_first_plain_tensor_is_mixed_the_rest_passes_through(name, structure):
    mix = transform(name, seed=3)

    def call_once():
        inputs, x, passengers, labels, get = _structures()[structure]()
        kept = [p.clone() for p in passengers]
        images, target, out_passengers = get(mix(inputs))
        assert images is x, f"{structure}: the image batch was not mixed in place"
        for before, passenger, out in zip(kept, passengers, out_passengers):
            assert out is passenger and torch.equal(out, before), f"{structure}: a passenger tensor was changed"
        return images, target, labels, None

    until_mixed(call_once, f"v2.{name} {structure}")


@pytest.mark.parametrize("name", CLASSES)
def test_labels_before_the_image_in_a_dict_do_not_become_the_image(name):
    # torchvision takes the first plain tensor even when it is the labels, and then mixes no
    # image (MixUp) or fails (CutMix); fastmix skips the labels: a deliberate difference
    mix = transform(name, seed=1)

    def call_once():
        x, y = constant_images(), labels_of()
        out = mix({"label": y, "image": x})
        return out["image"], out["label"], y, None

    until_mixed(call_once, f"v2.{name} labels first")


# --------------------------------------------------------------------------------------------
# the default labels getter
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("key", ["labels", "LABELS", "label", "class_label", "Target_Label_ids"])
def test_default_labels_getter_finds_torchvisions_keys(name, key):
    mix = transform(name, seed=2)

    def call_once():
        x, y = constant_images(), labels_of()
        out = mix({"image": x, key: y})
        assert out[key].shape == (B, K), f"key {key!r}: labels not found"
        return out["image"], out[key], y, None

    until_mixed(call_once, f"v2.{name} key {key!r}")


def test_labels_key_wins_over_other_label_like_keys_then_the_first_one_does():
    x, y, other = constant_images(), labels_of(), torch.zeros(B, dtype=torch.long)
    out = transform("MixUp")({"image": x, "label": other, "labels": y})
    assert out["labels"].shape == (B, K) and out["label"] is other
    x = constant_images()
    out = transform("MixUp")({"image": x, 5: "meta", "label_a": y, "label_b": other})
    assert out["label_a"].shape == (B, K) and out["label_b"] is other and out[5] == "meta"


# --------------------------------------------------------------------------------------------
# label kinds
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool],
                         ids=["int64", "int32", "uint8", "bool"])
def test_integer_one_hot_labels_are_taken_as_float(name, dtype):
    one_hot = torch.nn.functional.one_hot(labels_of(), K)
    _, want = transform(name, seed=4, num_classes=None)(constant_images(), one_hot.float())
    _, got = transform(name, seed=4, num_classes=None)(constant_images(), one_hot.to(dtype))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8, torch.int64],
                         ids=["int8", "int16", "int32", "uint8", "int64"])
def test_class_index_dtypes_follow_the_one_rule_mixup_follows(dtype):
    labels = labels_of().to(dtype)

    def outcome(call):
        try:
            return call()[1]
        except (TypeError, ValueError, RuntimeError) as error:
            return type(error)

    timm_like = outcome(lambda: fastmix.Mixup(num_classes=K)(constant_images(), labels))
    for name in CLASSES:
        got = outcome(lambda name=name: transform(name, seed=6)(constant_images(), labels))
        if isinstance(timm_like, type):
            assert got is timm_like, f"v2.{name}: {dtype} class indices give {got}, Mixup gives {timm_like.__name__}"
        else:
            assert isinstance(got, torch.Tensor), (
                f"v2.{name}: {dtype} class indices rejected ({got.__name__}), Mixup takes them")
            want = transform(name, seed=6)(constant_images(), labels_of())[1]
            torch.testing.assert_close(got, want, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# bad samples: ValueError where torchvision raises ValueError, before anything is written
# --------------------------------------------------------------------------------------------

def _errors():
    """name -> (build() -> (call, tensors that must stay as they were), argument the message names)."""
    def with_inputs(name, inputs, tensors, **kwargs):
        return lambda: (lambda: transform(name, **kwargs)(inputs), tensors)

    x, y = constant_images(), labels_of()
    int_k3 = torch.zeros(B, 3, dtype=torch.long)
    return {
        "int-b3-labels-num-classes-10": (with_inputs("CutMix", (x, int_k3), [x, int_k3], num_classes=10),
                                         "num_classes"),
        "float-b3-labels-num-classes-10": (with_inputs("MixUp", (x, int_k3.float()), [x], num_classes=10),
                                           "num_classes"),
        "labels-not-a-tensor": (with_inputs("MixUp", {"image": x, "labels": [0, 1, 2, 3, 4, 5]}, [x]), "labels"),
        "labels-getter-none": (with_inputs("CutMix", (x, y), [x, y], labels_getter=None), "labels"),
        "labels-getter-foreign-tensor": (with_inputs("MixUp", (x, y), [x, y], labels_getter=lambda s: y.clone()),
                                         "labels_getter"),
        "one-item-tuple": (lambda: (lambda: transform("MixUp")((x,)), [x]), "labels_getter"),
        "second-item-a-string": (with_inputs("MixUp", (x, "cat"), [x]), "labels_getter"),
        "dict-without-labels": (with_inputs("CutMix", {"image": x, "target": y}, [x, y]), "labels_getter"),
        "labels-3d": (with_inputs("MixUp", (x, y[:, None, None]), [x, y]), "labels"),
        "labels-batch-mismatch": (with_inputs("CutMix", (x, y[:4]), [x, y]), "labels"),
        "no-image-beside-labels": (with_inputs("MixUp", {"labels": y, "name": "x"}, [y]), "inputs"),
        "image-is-the-ids": (with_inputs("MixUp", ((torch.arange(B), x), y), [x, y]), "images"),
    }


@pytest.mark.parametrize("case", list(_errors()))
def test_bad_samples_raise_value_error_before_writing(case):
    build, argument = _errors()[case]
    call, tensors = build()
    before = [t.clone() for t in tensors]
    with pytest.raises(ValueError, match=argument):
        call()
    for t, b in zip(tensors, before):
        assert torch.equal(t, b), f"{case}: an input was written before the error"


def test_labels_getter_none_is_accepted_when_built():
    assert fastmix.v2.MixUp(num_classes=K, labels_getter=None) is not None
    with pytest.raises(ValueError, match="labels_getter"):
        fastmix.v2.MixUp(num_classes=K, labels_getter="labels")
