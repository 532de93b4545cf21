"""The pure-PyTorch reference against the naive float64 oracle (tests/oracle.py)."""
import pytest
import torch

from fastmix import functional as F
from fastmix import reference
from fastmix.layout import describe
from fastmix.plan import plan_args

from cases import DTYPES, KINDS, LAYOUTS, PAIRINGS, make_batch, make_plan, spatial
from helpers import assert_close, backend, raw_bytes
import oracle


@pytest.mark.parametrize("layout,kind", [(lay, kind) for lay in LAYOUTS for kind in KINDS
                                         if spatial(lay) or kind == "mixup"])   # boxes need H, W
def test_reference_matches_oracle_every_layout_and_kind(layout, kind, gen):
    for batch in (1, 2, 5):
        x = make_batch(layout, torch.float32, batch, 3, 7, 9, gen)
        plan = make_plan(kind, "flip", batch, (7, 9) if spatial(layout) else None, 3, gen)
        want = oracle.expected(x, plan)
        with backend("reference"):
            F.apply(x, plan)
        assert_close(x, want, torch.float32, f"{layout}/{kind}/B={batch}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch_elem", "cutout"))
def test_reference_matches_oracle_every_dtype_and_pairing(dtype, pairing, kind, gen):
    x = make_batch("nchw", dtype, 6, 3, 8, 11, gen)
    plan = make_plan(kind, pairing, 6, (8, 11), 3, gen)
    want = oracle.expected(x, plan)
    with backend("reference"):
        F.apply(x, plan)
    assert_close(x, want, dtype, f"{kind}/{pairing}/{dtype}")


def test_copies_and_fills_are_exact(gen):
    """CutMix only copies pixels and Cutout only fills them: bit-exact in every dtype."""
    for dtype in DTYPES:
        for kind in ("cutmix", "cutout"):
            x = make_batch("nchw", dtype, 5, 3, 9, 9, gen)
            plan = make_plan(kind, "perm", 5, (9, 9), 3, gen)
            want = oracle.expected(x, plan)
            with backend("reference"):
                F.apply(x, plan)
            assert torch.equal(raw_bytes(x), raw_bytes(want)), f"{kind}/{dtype}: copy or fill not exact"


def test_out_of_place_and_in_place_agree_and_input_is_kept(gen):
    x = make_batch("nhwc", torch.float32, 5, 3, 8, 8, gen)
    plan = make_plan("switch_elem", "roll", 5, (8, 8), 3, gen)
    keep = x.clone()
    with backend("reference"):
        out = F.apply(x, plan, inplace=False)
        assert torch.equal(x, keep), "out-of-place apply modified its input"
        F.apply(x, plan)
    assert torch.equal(out, x)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_chunking_does_not_change_results(gen, monkeypatch):
    """Chunks of a few rows (and of lanes, for one long row) give what one big chunk gives."""
    for layout in ("nchw", "features"):
        x = make_batch(layout, torch.float32, 4, 3, 16, 16, gen)
        plan = make_plan("mixup" if layout == "features" else "switch_elem", "roll", 4,
                         (16, 16) if layout == "nchw" else None, 3, gen)
        whole = x.clone()
        with backend("reference"):
            F.apply(whole, plan)
            monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 37)
            F.apply(x, plan)
        monkeypatch.undo()
        assert torch.equal(x, whole), layout


def test_gradient_is_the_transpose(gen):
    """<blend(x), g> == <x, blend_grad(g)> for random x, g: the backward is the exact adjoint."""
    for kind, pairing in (("mixup", "perm"), ("switch_elem", "roll"), ("cutout", "flip")):
        x = make_batch("nchw", torch.float64, 5, 2, 6, 7, gen)
        g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        plan = make_plan(kind, pairing, 5, (6, 7), 2, gen)
        args = plan_args(plan, with_cycles=False)
        lay = describe(x, True)
        fill_free = args._replace(fill=None, noise_seed=None)   # the fill is a constant: not part of the linear map
        lhs = (reference.blend(x, lay, fill_free) * g).sum()
        rhs = (x * reference.blend_grad(g, lay, args)).sum()
        assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-9), f"{kind}/{pairing}: {float(lhs)} vs {float(rhs)}"


def test_gradcheck_mixup_and_cutmix(gen):
    for kind in ("mixup", "cutmix"):
        plan = make_plan(kind, "flip", 4, (3, 4), 2, gen)
        x = torch.randn(4, 2, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
        with backend("reference"):
            assert torch.autograd.gradcheck(lambda v: F.apply(v, plan), (x,)), kind


def test_targets_match_oracle(gen):
    for kind in ("mixup", "switch_elem", "cutout"):
        plan = make_plan(kind, "roll", 7, (8, 8), 3, gen)
        labels = torch.randint(0, 11, (7,), generator=gen)
        soft = torch.rand(7, 11, generator=gen)
        for y in (labels, soft):
            with backend("reference"):
                got = F.targets(y, plan, 11, smoothing=0.1)
            want = oracle.targets(y, plan, 11, 0.1)
            assert got.dtype == torch.float32 and got.shape == (7, 11)
            assert torch.allclose(got.double(), want, atol=1e-6), kind


def test_noise_is_the_same_whatever_the_layout(gen):
    """Random-erasing noise is indexed by the logical NCHW position, so layouts agree."""
    x = make_batch("nchw", torch.float32, 4, 3, 10, 12, gen)
    plan = make_plan("erase_noise", "flip", 4, (10, 12), 3, gen)
    a, b = x.clone(), x.clone().contiguous(memory_format=torch.channels_last)
    with backend("reference"):
        F.apply(a, plan)
        F.apply(b, plan)
    assert torch.equal(a, b)
    assert not torch.equal(a, x), "nothing was erased"
