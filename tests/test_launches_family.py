"""The family's launch budget on the CUDA path, as ``tests/test_launches.py`` counts the core's.

- The piece members (RICAP, DirichletMixup, ResizeMix): one draw of uniforms from the torch
  generator, one Triton launch that turns them into the plan and the soft targets, one piece pass —
  three in all, for every member and mode and batch size, and no other aten op.
- FMix: the uniforms, one batched inverse FFT for the noise fields, one launch for the rows (lam,
  partner, targets), one for the mask (a threshold by rank; with soft edges one sort before the
  ramp), the blend: five, six with ``max_soft > 0``.
- SaliencyMix: the uniforms, gray, the forward and inverse batched FFTs of the spectral residual,
  the residual, the blur, the peak (which also writes the box and the targets), the blend: eight.
- ManifoldMixup / PatchUp: the model's own launches plus the mix's: the uniforms, the rows, the
  out-of-place blend (PatchUp: and its block pattern, a negation and a max pool, and the pattern's
  launch). The layer is chosen on the host.

Counted under the Triton interpreter, which runs the CUDA path's own Python; label validation off,
as it is by default on CUDA."""
import pytest
import torch
from torch import nn

import fastmix
from fastmix.apps.bench.launches import count_launches

from helpers import backend, requires_triton

pytestmark = requires_triton
K = 10

MEMBERS = {
    "RICAP": lambda mode: fastmix.RICAP(num_classes=K, mode=mode, validate=False),
    "RICAP-prob": lambda mode: fastmix.RICAP(beta=1.0, prob=0.5, label_smoothing=0.1, num_classes=K, mode=mode,
                                             validate=False),
    "DirichletMixup": lambda mode: fastmix.DirichletMixup(num_classes=K, mode=mode, validate=False),
    "DirichletMixup-k5": lambda mode: fastmix.DirichletMixup(k=5, alpha=0.4, num_classes=K, mode=mode, validate=False),
    "ResizeMix": lambda mode: fastmix.ResizeMix(num_classes=K, mode=mode, validate=False),
    "ResizeMix-bilinear": lambda mode: fastmix.ResizeMix(interpolation="bilinear", num_classes=K, mode=mode,
                                                         validate=False),
}


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("name,batch", [(name, 8) for name in MEMBERS]
                         + [("RICAP", 32), ("DirichletMixup", 32), ("ResizeMix", 32)])
def test_a_step_is_three_launches(name, batch, mode):
    transform = MEMBERS[name](mode)
    x = torch.rand(batch, 3, 12, 14) if batch == 8 else torch.rand(batch, 1, 4, 6)   # the count is B's alone
    y = torch.arange(batch) % K
    with backend("triton"):
        transform(x, y)                          # first call: the partner table is made once per device
        with count_launches() as launches:
            transform(x, y)
    assert launches.total <= 3, f"{name} {mode} B={batch}: {launches}"
    assert launches.aten == {"rand": 1} and sum(launches.triton.values()) == 2, f"{name} {mode} B={batch}: {launches}"


@pytest.mark.parametrize("name", ["RICAP", "ResizeMix"])
def test_soft_labels_take_the_same_budget(name):
    transform = MEMBERS[name]("batch")
    x, y = torch.rand(8, 3, 12, 14), torch.softmax(torch.randn(8, K), 1)
    with backend("triton"):
        transform(x, y)
        with count_launches() as launches:
            transform(x, y)
    assert launches.aten == {"rand": 1} and sum(launches.triton.values()) == 2, f"{name}: {launches}"


def test_the_reference_path_is_counted_too():
    """The counter sees the torch specification's many ops (the path the fused sampler replaces)."""
    transform = MEMBERS["RICAP"]("batch")
    x, y = torch.rand(8, 3, 12, 14), torch.arange(8) % K
    with backend("reference"):
        with count_launches() as launches:
            transform(x, y)
    assert launches.total > 20 and not launches.triton, str(launches)


MASKS = {
    "FMix": (lambda mode: fastmix.FMix(num_classes=K, mode=mode, validate=False),
             {"rand": 1, "_fft_c2r": 1}, {"_rows_sample_kernel": 1, "_fmix_select_kernel": 1}),
    "FMix-soft": (lambda mode: fastmix.FMix(max_soft=0.2, num_classes=K, mode=mode, validate=False),
                  {"rand": 1, "_fft_c2r": 1, "sort": 1}, {"_rows_sample_kernel": 1, "_fmix_ramp_kernel": 1}),
    "SaliencyMix": (lambda mode: fastmix.SaliencyMix(num_classes=K, mode=mode, validate=False),
                    {"rand": 1, "_fft_c2c": 2},
                    {"_gray_kernel": 1, "_residual_kernel": 1, "_blur_rows_kernel": 1, "_peak_kernel": 1}),
}


@pytest.mark.parametrize("batch", [8, 32])
@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("name", list(MASKS))
def test_mask_members_draw_in_their_budget(name, mode, batch):
    make, aten, triton = MASKS[name]
    transform = make(mode)
    x = torch.rand(batch, 3, 16, 16) if batch == 8 else torch.rand(batch, 1, 8, 8)
    y = torch.arange(batch) % K
    with backend("triton"):
        transform(x, y)
        with count_launches() as launches:
            transform(x, y)
    assert dict(launches.aten) == aten, f"{name} {mode} B={batch}: {launches}"
    assert dict(launches.triton) == {**triton, "_blend_inplace_kernel": 1}, f"{name} {mode} B={batch}: {launches}"
    assert launches.total <= (8 if name == "SaliencyMix" else 6 if name == "FMix-soft" else 5)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, K)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


HOST_LAYER_CHOICE = {"randint", "_local_scalar_dense"}     # on a CPU generator: no device work


@pytest.mark.parametrize("cls,kwargs,aten,triton", [
    (fastmix.ManifoldMixup, {}, {"rand": 1}, {"_rows_sample_kernel": 1, "_blend_out_kernel": 1}),
    (fastmix.PatchUp, {"mode": "hard"}, {"rand": 1, "neg": 1, "max_pool2d_with_indices": 1},
     {"_rows_sample_kernel": 1, "_patch_rows_kernel": 1, "_blend_out_kernel": 1}),
    (fastmix.PatchUp, {"mode": "soft"}, {"rand": 1, "neg": 1, "max_pool2d_with_indices": 1},
     {"_rows_sample_kernel": 1, "_patch_rows_kernel": 1, "_blend_out_kernel": 1}),
], ids=["manifold", "patchup-hard", "patchup-soft"])
def test_hidden_mixes_add_their_budget_to_the_model(cls, kwargs, aten, triton):
    net = _Net()
    mixer = cls(net, ["conv"], num_classes=K, validate=False, **kwargs)
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8) % K
    with backend("triton"):
        mixer(x, y)
        with count_launches() as plain:
            net(x)
        with count_launches() as launches:
            mixer(x, y)
    mix_aten = dict(launches.aten - plain.aten)
    assert set(mix_aten) - set(aten) <= HOST_LAYER_CHOICE, f"{cls.__name__}: {launches}"
    assert {op: n for op, n in mix_aten.items() if op not in HOST_LAYER_CHOICE} == aten, str(launches)
    assert dict(launches.triton) == triton, str(launches)
