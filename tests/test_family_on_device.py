"""The mixup family draws and checks its plans without reading a value back to the host: on CUDA
each such read (``.item()``, ``bool(t)``, ``int(t)``) is a host sync. A read dispatches
``aten::_local_scalar_dense`` on any device, so a dispatch mode that refuses that op finds them on
the CPU too (the meta-device trick of ``test_sampling_on_device.py`` cannot: the checks skip meta
tensors, which have no values)."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fastmix
from fastmix import functional as F
from fastmix import ops
from fastmix.pieces import check_for
from helpers import backend


class NoReadBack(TorchDispatchMode):
    """Raise on any read of a tensor value back to the host."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError(f"a tensor value was read back to the host ({func})")
        return func(*args, **(kwargs or {}))


def test_the_mode_catches_a_read_back():
    with pytest.raises(AssertionError, match="read back"), NoReadBack():
        bool((torch.ones(2) > 0).all())


def _check_box_plan(x, plan):
    F.check_plan(plan, x)


# name -> (build(generator), the check fastmix runs on the plan before applying it)
IMAGE_METHODS = {
    "FMix": (lambda g: fastmix.FMix(num_classes=10, generator=g), _check_box_plan),
    "FMix-soft-flip": (lambda g: fastmix.FMix(max_soft=0.3, pairing="flip", num_classes=10, generator=g),
                       _check_box_plan),
    "SaliencyMix": (lambda g: fastmix.SaliencyMix(num_classes=10, generator=g), _check_box_plan),
    "SaliencyMix-roll": (lambda g: fastmix.SaliencyMix(pairing="roll", prob=0.5, num_classes=10, generator=g),
                         _check_box_plan),
}
# the piece members in both modes (RICAP, DirichletMixup, ResizeMix)
PIECE_METHODS = {
    **{f"RICAP-{m}": (lambda g, m=m: fastmix.RICAP(num_classes=10, mode=m, generator=g, validate=False), check_for)
       for m in ("batch", "elem")},
    **{f"DirichletMixup-{m}": (lambda g, m=m: fastmix.DirichletMixup(k=4, num_classes=10, mode=m, generator=g,
                                                                     validate=False), check_for)
       for m in ("batch", "elem")},
    **{f"ResizeMix-{m}": (lambda g, m=m: fastmix.ResizeMix(interpolation="bilinear", prob=0.5, num_classes=10, mode=m,
                                                           generator=g, validate=False), check_for)
       for m in ("batch", "elem")},
}
IMAGE_METHODS.update(PIECE_METHODS)


@pytest.mark.parametrize("name", sorted(IMAGE_METHODS))
def test_image_plans_are_drawn_and_checked_without_reading_back(name):
    x = torch.rand(6, 3, 16, 20)
    build, check = IMAGE_METHODS[name]
    op = build(torch.Generator().manual_seed(0))
    with NoReadBack():
        plan = op.plan(x)
        check(x, plan)


@pytest.mark.parametrize("sampler", ["reference", "triton"])
@pytest.mark.parametrize("name", sorted(PIECE_METHODS))
def test_piece_steps_read_nothing_back_on_the_device_paths(name, sampler):
    """A whole piece step (draw, pass, targets) on the CUDA path's code (the fused sampler and the
    Triton pass, under the interpreter without a GPU) and on the torch specification's (any other
    device): no value read back. (CPU tensors read their batch-mode draw on the host: that is
    the host's own memory there.)"""
    if sampler == "triton" and not ops.triton_available():
        pytest.skip("triton is not installed")
    x, y = torch.rand(6, 3, 16, 20), torch.arange(6)
    op = PIECE_METHODS[name][0](torch.Generator().manual_seed(0))
    with backend(sampler):
        op(x, y)                                  # first call: what a signature needs, made once
        with NoReadBack():
            out, soft = op(x, y)
    assert out.shape == x.shape and soft.shape == (6, 10)


@pytest.mark.parametrize("cls, kwargs", [(fastmix.ManifoldMixup, {}), (fastmix.PatchUp, {"mode": "hard"}),
                                         (fastmix.PatchUp, {"mode": "soft", "block_size": 3}),
                                         (fastmix.ManifoldMixup, {"pairing": "flip"})])
def test_hidden_layer_plans_are_drawn_and_checked_without_reading_back(cls, kwargs):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    mixer = cls(model, ["0"], num_classes=10, generator=torch.Generator().manual_seed(0), **kwargs)
    h = torch.rand(6, 4, 8, 8)
    with NoReadBack():
        plan = mixer.plan(h, "0")
        F.check_plan(plan, h.reshape(6, 1, 32, 8) if cls is fastmix.PatchUp else h)
