"""The samplers' three implementations give one plan: the specification with torch ops, the same
code on numpy (the CPU path) and the fused Triton kernels (the CUDA path, under the interpreter
without a GPU), on the same uniforms — partners, kinds and boxes exactly, weights to float32
rounding — for every option and batch sizes 0, 1, odd and even; and the fused targets equal the
reference's targets of that plan."""
import itertools

import pytest
import torch

from fastmix import draws, reference
from fastmix.sampling import CutoutSpec, ErasingSpec, MixupSpec

triton = pytest.importorskip("triton", reason="the fused samplers are Triton kernels")
import triton.language as tl  # noqa: E402

from fastmix.kernels import sample  # noqa: E402
from fastmix.kernels.draws import cos_2pi  # noqa: E402
from helpers import assert_same_fields  # noqa: E402

SIZE = (13, 17)
BATCHES = (0, 1, 7, 8)

# every kind of mix in every mode, each with the other options cycled through all their values
# (prob, pairing, box rule, correct_lam: 2 x 2 x 2 x 2 settings, each met by several rows)
_KINDS = [(1.0, 0.0, None), (0.0, 1.0, None), (0.4, 2.0, None), (0.8, 0.0, (0.2, 0.7))]
_OTHERS = list(itertools.product([1.0, 0.6], ["flip", "roll"], ["timm", "torchvision"], [True, False]))
OPTIONS = [dict(mixup_alpha=m, cutmix_alpha=c, cutmix_minmax=mm, mode=mode, prob=prob, pairing=pairing,
                box_style=style, correct_lam=correct)
           for n, ((m, c, mm), mode) in enumerate(itertools.product(_KINDS, ["batch", "pair", "elem"]))
           for prob, pairing, style, correct in (_OTHERS[(2 * n) % 16], _OTHERS[(2 * n + 5) % 16])]


def _assert_same_rows(want, got, what):
    assert_same_fields(zip(draws.PlanRows._fields, want, got), what)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_mixup_samplers_agree(options):
    spec = MixupSpec.checked(**options)
    gen = torch.Generator().manual_seed(len(str(options)))
    for batch in BATCHES:
        u = torch.rand(draws.units(spec.mode, batch) * draws.MIX_UNIFORMS, generator=gen)
        spec_rows = draws.mixup_rows(spec, u, batch, SIZE, spec.prob, 0.0, draws.TORCH)
        host_rows = draws.mixup_rows(spec, u.numpy(), batch, SIZE, spec.prob, 0.0, draws.NUMPY)
        labels = torch.randint(0, 11, (batch,), generator=gen)
        fused_rows, targets = sample.mixup_plan(spec, u, batch, SIZE, spec.prob, 0.0, labels, 11, 0.1)
        _assert_same_rows(spec_rows, host_rows, f"numpy/B={batch}")
        _assert_same_rows(spec_rows, fused_rows, f"triton/B={batch}")
        want = reference.mix_targets(labels, spec_rows.partner, spec_rows.label_lam, 11, 0.1)
        assert torch.allclose(targets, want, atol=1e-6, rtol=0), f"targets B={batch}"


def test_fused_targets_of_soft_labels_and_bad_indices():
    spec = MixupSpec.checked(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")
    u = torch.rand(9 * draws.MIX_UNIFORMS, generator=torch.Generator().manual_seed(5))
    soft = torch.rand(9, 23, generator=torch.Generator().manual_seed(6))
    rows, targets = sample.mixup_plan(spec, u, 9, SIZE, 1.0, 0.0, soft, 23, 0.2)
    assert torch.allclose(targets, reference.mix_targets(soft, rows.partner, rows.label_lam, 23, 0.2), atol=1e-6)
    bad = torch.tensor([0, 1, 99, 3, -4, 5, 6, 7, 8])
    rows, targets = sample.mixup_plan(spec, u, 9, SIZE, 1.0, 0.0, bad, 10, 0.0)
    want = reference.mix_targets(bad, rows.partner, rows.label_lam, 10, 0.0)
    assert torch.equal(targets.isnan(), want.isnan()) and bool(targets[2].isnan().all())


def test_rotated_uniforms_agree():
    """The per-rank rotation is part of the function: numpy and the kernel rotate alike."""
    spec = MixupSpec.checked(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem")
    u = torch.rand(6 * draws.MIX_UNIFORMS, generator=torch.Generator().manual_seed(7))
    host = draws.mixup_rows(spec, u.numpy(), 6, SIZE, 1.0, 0.618, draws.NUMPY)
    fused, _ = sample.mixup_plan(spec, u, 6, SIZE, 1.0, 0.618, None, 0, 0.0)
    _assert_same_rows(host, fused, "rotated")
    plain = draws.mixup_rows(spec, u.numpy(), 6, SIZE, 1.0, 0.0, draws.NUMPY)
    assert not torch.equal(torch.as_tensor(plain.label_lam), torch.as_tensor(host.label_lam))


@pytest.mark.parametrize("spec", [CutoutSpec.checked(n_holes=3, length=5, p=0.7), CutoutSpec.checked(length=30),
                                  ErasingSpec.checked(p=0.8), ErasingSpec.checked(p=1.0, scale=(0.3, 0.9), value="random"),
                                  ErasingSpec.checked(p=1.0, ratio=(0.1, 10.0), attempts=3)], ids=repr)
def test_erase_samplers_agree(spec):
    gen = torch.Generator().manual_seed(3)
    with_seed = getattr(spec, "random_value", False)
    rows_of = draws.cutout_rows if isinstance(spec, CutoutSpec) else draws.erasing_rows
    for batch in BATCHES:
        u = torch.rand(batch * spec.uniforms_per_sample() + (2 if with_seed else 0), generator=gen)
        spec_rows = rows_of(spec, u, batch, SIZE, draws.TORCH)
        _assert_same_rows(spec_rows, rows_of(spec, u.numpy(), batch, SIZE, draws.NUMPY), f"numpy/B={batch}")
        fused_rows, seed = sample.erase_plan(spec, u, batch, SIZE, with_seed)
        _assert_same_rows(spec_rows, fused_rows, f"triton/B={batch}")
        if with_seed:
            assert int(seed) == int(draws.noise_seed(u, draws.TORCH))


def test_kernel_cosine_is_the_specification():
    """The float64 cosine polynomial written out in kernels/sample.py is draws.cos_2pi's."""
    u = torch.linspace(-0.5, 1.0, 1024, dtype=torch.float64)
    out = torch.empty_like(u)
    cosine[(1,)](u, out, BLOCK=1024)
    assert torch.equal(out, draws.cos_2pi(u, draws.TORCH))
    assert float((out - torch.cos(2 * torch.pi * u)).abs().max()) < 1e-14


@triton.jit
def cosine(u_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, cos_2pi(tl.load(u_ptr + offs)))
