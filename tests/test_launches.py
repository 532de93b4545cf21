"""A step's launch budget on the CUDA path: one draw of uniforms from the torch generator, one
Triton launch that turns them into the plan (and the soft targets), one blend — three in all, and
no other aten op that would launch a kernel (views and allocations are free). Counted under the
Triton interpreter, which runs the CUDA path's own Python; label validation off, as it is by
default on CUDA (it would read the labels back to the host)."""
import pytest
import torch

import fastmix
from fastmix.apps.bench.launches import count_launches

from helpers import backend, requires_triton

pytestmark = requires_triton
B, K = 8, 10

MIXUP = {"mixup": dict(mixup_alpha=1.0), "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
         "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8),
         "minmax": dict(cutmix_minmax=(0.2, 0.8), correct_lam=False),
         "smoothed": dict(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.1)}
TRANSFORMS = {
    **{f"Mixup-{kind}-{mode}": (lambda kind=kind, mode=mode: fastmix.Mixup(**MIXUP[kind], mode=mode, num_classes=K,
                                                                             validate=False), "labels")
       for kind in MIXUP for mode in ("batch", "pair", "elem")},
    "Mixup-soft-labels": (lambda: fastmix.Mixup(mixup_alpha=1.0, num_classes=K, validate=False), "soft"),
    "v2.MixUp": (lambda: fastmix.v2.MixUp(num_classes=K, validate=False), "labels"),
    "v2.CutMix": (lambda: fastmix.v2.CutMix(num_classes=K, validate=False), "labels"),
    "Cutout": (lambda: fastmix.Cutout(n_holes=2, length=4, fill=(0.1, 0.2, 0.3)), None),
    "RandomErasing": (lambda: fastmix.RandomErasing(p=0.7, value=0.5), None),
    "RandomErasing-random": (lambda: fastmix.RandomErasing(p=0.7, value="random"), None),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_step_is_three_launches(name):
    make, labels = TRANSFORMS[name]
    transform = make()
    x = torch.rand(B, 3, 12, 14)
    y = {"labels": torch.arange(B) % K, "soft": torch.softmax(torch.randn(B, K), 1), None: None}[labels]

    def step():
        return transform(x, y) if y is not None else transform(x)

    with backend("triton"):
        step()                                   # first call: the fill row is made once per device
        with count_launches() as launches:
            step()
    assert launches.total <= 3, f"{name}: {launches}"
    assert launches.aten == {"rand": 1} and sum(launches.triton.values()) == 2, f"{name}: {launches}"


def test_the_counter_sees_what_a_peer_launches():
    """The count would catch a stray op: timm's batch Mixup, written out, is several launches."""
    x = torch.rand(B, 3, 12, 14)
    with count_launches() as launches:
        flipped = x.flip(0).mul_(0.3)
        x.mul_(0.7).add_(flipped)
    assert launches.aten == {"flip": 1, "mul_": 2, "add_": 1} and launches.total == 4
