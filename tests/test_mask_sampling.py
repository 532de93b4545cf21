"""FMix's and SaliencyMix's fused samplers (``kernels/sample_masks.py``, ``kernels/saliency.py``,
the CUDA path's draw, run here under the Triton interpreter) against the torch specification
(:func:`fastmix.family_masks.fmix_plan`, :func:`fastmix.saliency.saliency_plan`) on the same
uniforms — the same generator state, so the same one ``torch.rand``: partners, kinds and boxes
equal, weights and the region weight to float32 rounding; every mode and pairing, soft edges,
``prob < 1``, B = 0, 1, odd and even."""
import pytest
import torch

import fastmix
from fastmix.apps.bench.launches import count_launches
from helpers import backend, requires_triton, seeded

pytestmark = requires_triton
BATCHES = (0, 1, 5, 8)
EXACT = ("partner", "kind", "box")
CLOSE = ("lam_self", "lam_partner", "label_lam")


def _plans(build, x, seed):
    """The same op's plan from the specification and from the fused sampler, same uniforms."""
    with backend("reference"):
        want = build(seeded(seed)).plan(x)
    with backend("triton"), count_launches() as launches:
        got = build(seeded(seed)).plan(x)
    assert not x.shape[0] or launches.triton, "the fused sampler did not run"
    return want, got


def _assert_same(want, got, what):
    for name in EXACT:
        a, b = getattr(want, name), getattr(got, name)
        assert torch.equal(a.long(), b.long()), f"{what}: {name} {a.tolist()} vs {b.tolist()}"
    for name in CLOSE:
        a, b = getattr(want, name).double(), getattr(got, name).double()
        assert a.shape == b.shape and (a.numel() == 0 or float((a - b).abs().max()) <= 2.0**-24), f"{what}: {name}"
    assert (want.mask is None) == (got.mask is None), f"{what}: one plan has a region weight, the other not"
    if want.mask is not None:
        worst = float((want.mask.double() - got.mask.double()).abs().max()) if want.mask.numel() else 0.0
        assert worst <= 2.0**-24, f"{what}: region weight differs by {worst}"


FMIX = {
    "perm": dict(),
    "flip-soft": dict(pairing="flip", max_soft=0.2),
    "roll-prob": dict(pairing="roll", prob=0.6, alpha=0.5),
    "field": dict(size=(4, 6), decay_power=2.0),
}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("case", list(FMIX))
def test_fmix_fused_sampler_equals_the_specification(case, mode, batch):
    x = torch.rand(batch, 3, 8, 12, generator=seeded(1))
    for seed in range(3):
        want, got = _plans(lambda g: fastmix.FMix(mode=mode, generator=g, **FMIX[case]), x, seed)
        _assert_same(want, got, f"FMix {case} {mode} B={batch} seed={seed}")


SALIENCY = {
    "perm": dict(),
    "flip": dict(pairing="flip", beta=0.5),
    "roll-prob": dict(pairing="roll", prob=0.6, sigma=1.5),
}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("case", list(SALIENCY))
def test_saliencymix_fused_sampler_equals_the_specification(case, mode, batch):
    x = torch.rand(batch, 3, 10, 12, generator=seeded(2))
    if batch:
        x[torch.arange(batch), :, torch.arange(batch) % 10, (3 * torch.arange(batch)) % 12] = 2.0   # clear peaks
    for seed in range(3):
        want, got = _plans(lambda g: fastmix.SaliencyMix(mode=mode, generator=g, **SALIENCY[case]), x, seed)
        _assert_same(want, got, f"SaliencyMix {case} {mode} B={batch} seed={seed}")
