"""fastmix.FastCollateMixup (timm's collate-time Mixup/CutMix) as a DataLoader collate_fn.

Every sample is one constant colour per channel, so the pixels say what happened: a Mixup row is
one value per channel within rounding of ``w * own + (1 - w) * partner``, a CutMix row holds only
the two colours, the partner's in one rectangle covering exactly the partner's label weight.
Labels are the samples' indices (num_classes = dataset size, no smoothing), so a target row names
the partner and both weights.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import fastmix
import fastmix.functional as F

SIZE = (6, 10)                   # (H, W) of every sample: small, not square
ALPHAS = {"mixup": dict(mixup_alpha=1.0), "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
          "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)}


def colour(index: int) -> np.ndarray:
    """Sample ``index``'s colour, one distinct uint8 value per channel (no two samples alike)."""
    return np.array([(7 + 23 * index) % 256, (250 - 19 * index) % 256, (101 + 37 * index) % 256], np.uint8)


def constant_sample(index: int, as_tensor: bool):
    image = np.broadcast_to(colour(index)[:, None, None], (3, *SIZE)).copy()
    return (torch.from_numpy(image) if as_tensor else image), index


class ConstantColours(Dataset):
    def __init__(self, n: int, as_tensor: bool):
        self.samples = [constant_sample(i, as_tensor) for i in range(n)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def check_row(image: torch.Tensor, target_row: torch.Tensor, own: int, partner: int, kinds: set[str]) -> str:
    """Assert that one output row is a Mixup or CutMix (in ``kinds``) of ``own`` with ``partner``
    whose weights are the target's; returns the kind seen ("none" for an untouched row)."""
    where = f"row of sample {own}"
    weights = {int(k): float(target_row[k]) for k in torch.nonzero(target_row).flatten()}
    assert abs(sum(weights.values()) - 1.0) < 1e-6, f"{where}: target weights {weights} do not sum to 1"
    assert set(weights) <= {own, partner}, f"{where}: target names {sorted(weights)}, partner should be {partner}"
    w_own, w_partner = weights.get(own, 0.0), weights.get(partner, 0.0)
    c_own = torch.from_numpy(colour(own)).view(3, 1, 1)
    c_partner = torch.from_numpy(colour(partner)).view(3, 1, 1)
    if own == partner or w_partner == 0.0:
        assert torch.equal(image, c_own.expand_as(image)), f"{where}: untouched by its target, but pixels changed"
        return "none"
    failures = []
    if "mixup" in kinds:   # rounded to nearest: at most half a level from the exact blend
        exact = w_own * c_own.double() + w_partner * c_partner.double()
        err = (image.double() - exact).abs().max()
        if err <= 0.5 + 1e-4:
            return "mixup"
        failures.append(f"as Mixup {err:.3f} levels off w={w_own:.5f}")
    if "cutmix" in kinds:
        is_own = (image == c_own).all(0)
        is_partner = (image == c_partner).all(0)
        cells = torch.nonzero(is_partner)
        if bool((is_own | is_partner).all()) and len(cells):
            (y0, x0), (y1, x1) = cells.min(0).values.tolist(), (cells.max(0).values + 1).tolist()
            share = len(cells) / is_partner.numel()
            if bool(is_partner[y0:y1, x0:x1].all()) and abs(share - w_partner) < 1e-6:
                return "cutmix"
            failures.append(f"as CutMix partner share {share:.5f} vs weight {w_partner:.5f}, box "
                            f"[{y0}:{y1}, {x0}:{x1}] {'full' if is_partner[y0:y1, x0:x1].all() else 'holed'}")
        else:
            failures.append("as CutMix pixels other than the two colours, or no partner pixel")
    raise AssertionError(f"{where} with partner {partner}: " + "; ".join(failures))


def check_batch(images, target, indices, kinds, mode):
    """Every row of a collated batch of the samples ``indices`` (in order), and the mode's draws."""
    n = len(indices)
    rows = n // 2 if mode == "half" else n
    assert images.shape == (rows, 3, *SIZE) and images.dtype == torch.uint8, (images.shape, images.dtype)
    assert target.shape[0] == rows and target.dtype == torch.float32, (target.shape, target.dtype)
    seen, own_weights = [], []
    for i in range(rows):
        own, partner = indices[i], indices[n - 1 - i]   # timm's pairing: the batch flipped
        seen.append(check_row(images[i], target[i], own, partner, kinds))
        own_weights.append(float(target[i, own]))
    pairs = [(i, n - 1 - i) for i in range(rows) if i < n - 1 - i]
    if mode == "batch":
        assert len({w for (i, _), w in zip(pairs, own_weights)}) <= 1, f"batch mode drew several λ: {own_weights}"
        assert len({seen[i] for i, _ in pairs}) == 1, f"batch mode mixed rows differently: {seen}"
    if mode == "pair":
        for i, j in pairs:
            assert own_weights[i] == own_weights[j] and seen[i] == seen[j], f"pair {i},{j}: {own_weights}, {seen}"
    return seen


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (np.ndarray, torch.Tensor)):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def collate(kind, mode, generator_seed=0, **kwargs):
    kwargs = {**ALPHAS[kind], "label_smoothing": 0.0, **kwargs}
    return fastmix.FastCollateMixup(mode=mode, generator=torch.Generator().manual_seed(generator_seed), **kwargs)


# --------------------------------------------------------------------------------------------
# pixel truth
# --------------------------------------------------------------------------------------------

PIXEL_CASES = ([pytest.param(kind, mode, size, False, id=f"{kind}-{mode}-{size}-numpy") for kind in ALPHAS
                for mode in ("batch", "pair", "elem", "half") for size in (8, 7)]
               + [pytest.param("switch", mode, 7, True, id=f"switch-{mode}-7-tensor")
                  for mode in ("batch", "pair", "elem", "half")])


@pytest.mark.parametrize("kind, mode, batch_size, as_tensor", PIXEL_CASES)
def test_pixels_match_targets(kind, mode, batch_size, as_tensor):
    samples = [constant_sample(i, as_tensor) for i in range(batch_size)]
    originals = copy.deepcopy(samples)
    mixer = collate(kind, mode, num_classes=batch_size)
    kinds = {"mixup", "cutmix"} if kind == "switch" else {kind}
    seen = []
    for _ in range(5):                 # several calls: batch mode draws once per call
        images, target = mixer(samples)
        seen += check_batch(images, target, list(range(batch_size)), kinds, mode)
    # batch mode draws 5 times in 5 calls (both kinds of a switch: 94%), the others at least 15
    wanted = (kinds & set(seen)) if mode == "batch" else kinds
    assert wanted and wanted <= set(seen), f"not every kind of {kinds} was drawn in 5 calls: {seen}"
    assert _same(samples, originals), "the collate modified its samples"


def test_any_strides_of_numpy_samples():
    # a horizontally flipped view (negative stride), a transposed HWC array and a plain one
    samples = [constant_sample(i, False) for i in range(3)]
    samples[0] = (samples[0][0][:, :, ::-1], 0)
    samples[1] = (np.ascontiguousarray(samples[1][0].transpose(1, 2, 0)).transpose(2, 0, 1), 1)
    images, target = collate("cutmix", "elem", num_classes=3)(samples)
    check_batch(images, target, [0, 1, 2], {"cutmix"}, "elem")


def test_uint8_rounds_half_to_even_like_np_rint():
    # own 10/11/12 with partners 11/12/13 at λ = 0.5: exact blends 10.5, 11.5, 12.5 -> 10, 12, 12
    class HalfAndHalf(fastmix.FastCollateMixup):
        def plan(self, x, *, mode=None):
            return F.mixup_plan(torch.full((x.shape[0],), 0.5))

    own = np.array([10, 11, 12], np.uint8)
    samples = [(np.broadcast_to(own[:, None, None] + k, (3, 2, 2)).copy(), k) for k in range(2)]
    images, target = HalfAndHalf(label_smoothing=0.0, num_classes=2)(samples)
    want = np.rint(np.array([10.5, 11.5, 12.5]))          # numpy's rint: half to even
    assert want.tolist() == [10.0, 12.0, 12.0]
    for row in range(2):
        assert images[row, :, 0, 0].tolist() == want.tolist(), images[row, :, 0, 0]
    assert target.tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_label_smoothing_is_timms_formula():
    samples = [constant_sample(i, False) for i in range(8)]
    plain = collate("switch", "elem", generator_seed=3, num_classes=10)(samples)[1]
    smoothing = 0.1
    smooth = collate("switch", "elem", generator_seed=3, num_classes=10, label_smoothing=smoothing)(samples)[1]
    # timm's mixup_target: lam * onehot(on, off) + (1 - lam) * onehot(on, off) of the partner,
    # off = ε / K, on = 1 - ε + ε / K, i.e. plain * (1 - ε) + ε / K
    torch.testing.assert_close(smooth, plain * (1 - smoothing) + smoothing / 10, atol=1e-6, rtol=0)


def test_multi_label_targets_mix_smoothed_multi_hot_vectors():
    num_classes, smoothing = 8, 0.2
    labels = [torch.zeros(num_classes) for _ in range(6)]
    for i, label in enumerate(labels):
        label[[i, (i + 3) % num_classes]] = 1.0          # two classes per sample
    samples = [(constant_sample(i, False)[0], labels[i]) for i in range(6)]
    mixer = collate("cutmix", "elem", num_classes=num_classes, label_smoothing=smoothing, multi_label=True)
    images, target = mixer(samples)
    for i in range(6):
        j = 5 - i
        is_partner = (images[i] == torch.from_numpy(colour(j)).view(3, 1, 1)).all(0)
        w_partner = float(is_partner.float().mean())       # CutMix: the partner's pixel share
        smoothed = [label * (1 - smoothing) + smoothing / 2 for label in (labels[i], labels[j])]
        want = (1 - w_partner) * smoothed[0] + w_partner * smoothed[1]
        torch.testing.assert_close(target[i], want, atol=1e-6, rtol=0, msg=f"row {i}")


def test_mixup_enabled_false_leaves_the_batch_alone():
    samples = [constant_sample(i, False) for i in range(4)]
    mixer = collate("switch", "elem", num_classes=4)
    mixer.mixup_enabled = False                          # what timm's train loop sets at mixup_off_epoch
    images, target = mixer(samples)
    assert torch.equal(images, torch.stack([torch.from_numpy(s[0]) for s in samples]))
    assert torch.equal(target, torch.eye(4))


# --------------------------------------------------------------------------------------------
# inside a DataLoader
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
def test_as_a_dataloader_collate_fn(num_workers, as_tensor):
    dataset = ConstantColours(21, as_tensor)                       # batches of 6, 6, 6 and an odd 3
    mixer = fastmix.FastCollateMixup(**ALPHAS["switch"], mode="elem", label_smoothing=0.0, num_classes=21)
    loader = DataLoader(dataset, batch_size=6, collate_fn=mixer, num_workers=num_workers)
    batches = list(loader)
    assert [len(images) for images, _ in batches] == [6, 6, 6, 3]
    own_weights = []
    for b, (images, target) in enumerate(batches):
        indices = list(range(6 * b, min(6 * b + 6, 21)))
        check_batch(images, target, indices, {"mixup", "cutmix"}, "elem")
        own_weights.append(tuple(round(float(target[i, k]), 6) for i, k in enumerate(indices)))
    # elem draws per sample: identical weights in two batches would mean the workers share a seed
    assert own_weights[0] != own_weights[1], own_weights


# --------------------------------------------------------------------------------------------
# bad input: an error naming the argument, samples untouched
# --------------------------------------------------------------------------------------------

def _samples(n=4):
    return [constant_sample(i, False) for i in range(n)]


BAD_BATCHES = [
    pytest.param(lambda: [], ValueError, "batch", id="empty"),
    pytest.param(lambda: [(s[0].astype(np.float32), s[1]) for s in _samples()], TypeError, "batch[0][0]",
                 id="float32-numpy"),
    pytest.param(lambda: [(torch.from_numpy(s[0]).float(), s[1]) for s in _samples()], TypeError, "batch[0][0]",
                 id="float32-tensor"),
    pytest.param(lambda: [(s[0][0], s[1]) for s in _samples()], ValueError, "batch[0][0]", id="2d-image"),
    pytest.param(lambda: _samples(2) + [(np.zeros((3, 5, 5), np.uint8), 2)], ValueError, "batch[2][0]",
                 id="shape-mismatch"),
    pytest.param(lambda: [s[0] for s in _samples()], TypeError, "batch[0]", id="no-label"),
    pytest.param(lambda: [([1, 2, 3], 0)] * 2, TypeError, "batch[0][0]", id="list-image"),
    pytest.param(lambda: _samples(3) + [(np.zeros((3, *SIZE), np.uint8), 4)], ValueError, "labels",
                 id="label-out-of-range"),
]


@pytest.mark.parametrize("build, error, name", BAD_BATCHES)
def test_bad_batch_raises_naming_the_argument(build, error, name):
    batch = build()
    before = copy.deepcopy(batch)
    with pytest.raises(error, match="^" + re.escape(name) + ":"):
        collate("switch", "elem", num_classes=4)(batch)
    assert _same(batch, before), "the samples changed"


@pytest.mark.parametrize("kwargs, name", [
    (dict(mode="quarter"), "mode"), (dict(mixup_alpha=-1.0), "mixup_alpha"), (dict(prob=1.5), "prob"),
    (dict(num_classes=0), "num_classes"),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        fastmix.FastCollateMixup(**kwargs)


def test_multi_label_needs_label_vectors():
    with pytest.raises(ValueError, match="^multi_label"):
        fastmix.FastCollateMixup(multi_label=True, num_classes=4)(_samples())
