"""pytest-benchmark suite for regressions: ``pytest benchmarks --benchmark-autosave`` then
``pytest benchmarks --benchmark-compare`` (or ``fastmix bench`` for the peer table).

Runs on CUDA when present (times include a synchronize), else on CPU.
"""
import pytest
import torch

from fastmix.apps.bench import compare, peers

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SHAPES = {"256x3x32x32": (256, 3, 32, 32), "64x3x224x224": (64, 3, 224, 224)}
CANDIDATES = ["fastmix_mixup_batch", "fastmix_cutmix_batch", "fastmix_switch_elem", "fastmix_v2_mixup",
              "timm_mixup_batch", "timm_cutmix_batch", "timm_switch_elem", "torchvision_mixup"]


def _batch(shape, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen)
    x = (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
    y = torch.randint(0, compare.NUM_CLASSES, (shape[0],), generator=gen)
    return x.to(DEVICE), y.to(DEVICE)


def _synced(fn):
    if DEVICE.type != "cuda":
        return fn

    def call():
        fn()
        torch.cuda.synchronize()
    return call


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=["float32", "uint8"])
def test_floor_one_pass(benchmark, shape, dtype):
    x, _ = _batch(SHAPES[shape], dtype)
    benchmark(_synced(lambda: x.mul_(1)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=["float32", "uint8"])
@pytest.mark.parametrize("name", CANDIDATES)
def test_mix(benchmark, name, shape, dtype):
    x, y = _batch(SHAPES[shape], dtype)
    if name in compare.FASTMIX:
        fn = compare.FASTMIX[name][1](x, y, compare.NUM_CLASSES)
    else:
        try:
            fn = peers.make(name, x, y, compare.NUM_CLASSES)
        except (peers.PeerMissing, peers.PeerUnsupported) as why:
            pytest.skip(str(why))
    benchmark(_synced(fn))
