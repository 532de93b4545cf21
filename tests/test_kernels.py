"""The Triton kernels against the reference on the same plan.

Without CUDA they run under the Triton interpreter on CPU tensors (conftest sets
TRITON_INTERPRET=1); with CUDA the same tests run the compiled kernels on the GPU.
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmix import functional as F
from fastmix import noise, reference
from fastmix.layout import describe
from fastmix.plan import plan_args

from cases import DTYPES, KINDS, LAYOUTS, PAIRINGS, make_batch, make_plan, spatial
from helpers import HAS_CUDA, KERNEL_DEVICE, assert_close, backend, requires_triton

pytestmark = requires_triton

EXACT_KINDS = ("cutmix", "cutout", "erase_const")   # pixels are only copied or filled


def _both(x, plan, *, inplace=True):
    """(kernel result, reference result) of applying ``plan`` to copies of ``x``."""
    xk = x.clone().to(KERNEL_DEVICE)
    plan_k = plan.to(KERNEL_DEVICE)
    xr = x.clone()
    with backend("triton"):
        outk = F.apply(xk, plan_k, inplace=inplace)
    with backend("reference"):
        outr = F.apply(xr, plan, inplace=inplace)
    return outk.cpu(), outr


def _check(got, want, dtype, exact, what):
    assert_close(got, want, dtype, f"{what} (kernel vs reference)", exact)


@pytest.mark.parametrize("layout,kind", [(lay, kind) for lay in LAYOUTS for kind in KINDS
                                         if spatial(lay) or kind == "mixup"])   # boxes need H, W
def test_kernel_equals_reference_every_layout_and_kind(layout, kind, gen):
    for batch, pairing in ((1, "flip"), (2, "roll"), (5, "perm")):
        x = make_batch(layout, torch.float32, batch, 3, 6, 10, gen)
        plan = make_plan(kind, pairing, batch, (6, 10) if spatial(layout) else None, 3, gen)
        got, want = _both(x, plan)
        _check(got, want, torch.float32, kind in EXACT_KINDS, f"{layout}/{kind}/{pairing}/B={batch}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch_elem", "cutout"))
def test_kernel_equals_reference_every_dtype(dtype, kind, gen):
    x = make_batch("nchw", dtype, 6, 2, 7, 16, gen)
    plan = make_plan(kind, "perm", 6, (7, 16), 2, gen)
    got, want = _both(x, plan)
    _check(got, want, dtype, kind in EXACT_KINDS, f"{kind}/{dtype}")


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.uint8))
def test_out_of_place_writes_every_element(dtype, gen, monkeypatch):
    """The out-of-place kernel writes every element: its output buffer starts poisoned."""
    from fastmix.kernels import blend as kblend

    poison = {torch.float32: float("nan"), torch.bfloat16: float("nan"), torch.uint8: 77}[dtype]
    real_empty_like = torch.empty_like
    monkeypatch.setattr(kblend.torch, "empty_like", lambda t, **kw: real_empty_like(t, **kw).fill_(poison))
    for kind in ("mixup", "switch_elem", "cutout"):
        x = make_batch("nhwc", dtype, 5, 3, 6, 9, gen)
        plan = make_plan(kind, "roll", 5, (6, 9), 3, gen)
        got, want = _both(x, plan, inplace=False)
        _check(got, want, dtype, kind == "cutout", f"out of place {kind}/{dtype}")
        assert got.is_contiguous(memory_format=torch.channels_last)


def test_masks_are_copied_and_filled_exactly(gen):
    masks = torch.randint(0, 20, (6, 9, 9), generator=gen)
    plan = make_plan("switch_elem", "flip", 6, (9, 9), 3, gen)
    mk, mr = masks.clone().to(KERNEL_DEVICE), masks.clone()
    with backend("triton"):
        F.apply_masks(mk, plan.to(KERNEL_DEVICE), ignore_index=255)
    with backend("reference"):
        F.apply_masks(mr, plan, ignore_index=255)
    assert torch.equal(mk.cpu(), mr)
    assert not torch.equal(mr, masks) or bool((plan.kind != 2).all())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(0, 6), channels=st.integers(1, 4), height=st.integers(1, 13), width=st.integers(1, 17),
       layout=st.sampled_from(("nchw", "nhwc", "video", "crop", "features")), dtype=st.sampled_from(DTYPES),
       kind=st.sampled_from(KINDS), pairing=st.sampled_from(PAIRINGS), seed=st.integers(0, 2**31 - 1))
def test_kernel_equals_reference_property(batch, channels, height, width, layout, dtype, kind, pairing, seed):
    """Random shapes (tiny and ragged included), layouts, dtypes, kinds and partners."""
    gen = torch.Generator().manual_seed(seed)
    if not spatial(layout):
        kind = "mixup"
    if kind == "erase_noise" and dtype == torch.uint8:
        dtype = torch.float32
    x = make_batch(layout, dtype, batch, channels, height, width, gen)
    plan = make_plan(kind, pairing, batch, (height, width) if spatial(layout) else None, channels, gen)
    got, want = _both(x, plan)
    exact = kind in EXACT_KINDS
    if kind == "erase_noise":  # Box-Muller's log/sqrt may differ by an ulp between backends
        _check(got.float(), want.float(), torch.float32, False, "noise")
    else:
        _check(got, want, dtype, exact, f"{layout}/{kind}/{pairing}/{dtype}/B={batch}")


def test_gradient_kernel_equals_reference(gen):
    for kind, pairing in (("mixup", "perm"), ("switch_elem", "roll"), ("cutout", "flip")):
        for dtype in (torch.float32, torch.float64):
            g = make_batch("nchw", dtype, 5, 2, 6, 9, gen)
            plan = make_plan(kind, pairing, 5, (6, 9), 2, gen)
            with backend("triton"):
                gk = torch.ops.fastmix.blend_grad(g.to(KERNEL_DEVICE), *plan_args(plan.to(KERNEL_DEVICE), True))
            with backend("reference"):
                gr = torch.ops.fastmix.blend_grad(g, *plan_args(plan, False))
            _check(gk.cpu(), gr, dtype, False, f"grad {kind}/{pairing}/{dtype}")


def test_autograd_through_the_kernel(gen):
    plan = make_plan("switch_elem", "flip", 4, (5, 8), 2, gen)
    x = make_batch("nchw", torch.float32, 4, 2, 5, 8, gen)
    grads = []
    for name in ("triton", "reference"):
        leaf = x.clone().to(KERNEL_DEVICE if name == "triton" else "cpu").requires_grad_()
        with backend(name):
            out = F.apply(leaf, plan.to(leaf.device))
            (out * torch.arange(out.numel(), device=leaf.device).view(out.shape)).sum().backward()
        grads.append(leaf.grad.cpu())
    _check(grads[0], grads[1], torch.float32, False, "autograd")


def test_many_cycles_loop_over_the_grid(gen, monkeypatch):
    """More cycles than grid rows (B > 65535 on a GPU) loop inside the kernel; shrink the limit to see it."""
    from fastmix.kernels import blend as kblend

    monkeypatch.setattr(kblend, "MAX_GRID_Y", 2)
    x = make_batch("nchw", torch.float32, 7, 2, 4, 5, gen)
    plan = make_plan("switch_elem", "perm", 7, (4, 5), 2, gen)
    got, want = _both(x, plan)
    _check(got, want, torch.float32, False, "grid loop")


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", (1, 10, 1000, 21841))
def test_targets_kernel_equals_reference(num_classes, gen):
    plan = make_plan("switch_elem", "perm", 9, (8, 8), 3, gen)
    labels = torch.randint(0, num_classes, (9,), generator=gen)
    soft = torch.rand(9, num_classes, generator=gen)
    for y in (labels, soft):
        for smoothing in (0.0, 0.1):
            with backend("triton"):
                got = F.targets(y.to(KERNEL_DEVICE), plan.to(KERNEL_DEVICE), num_classes, smoothing).cpu()
            with backend("reference"):
                want = F.targets(y, plan, num_classes, smoothing)
            assert got.shape == want.shape == (9, num_classes)
            assert torch.allclose(got, want, atol=1e-6, rtol=1e-6), f"K={num_classes} soft={y.dim() == 2}"


def test_bad_label_gives_nan_rows_never_a_stray_write(gen):
    plan = make_plan("mixup", "flip", 6, None, 3, gen)
    labels = torch.tensor([0, 1, 99, 3, -4, 5])
    with backend("triton"):
        got = F.targets(labels.to(KERNEL_DEVICE), plan.to(KERNEL_DEVICE), 10, validate=False).cpu()
    with backend("reference"):
        want = F.targets(labels, plan, 10, validate=False)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.isnan(got[2]).all() and torch.isnan(got[4]).all()
    assert torch.allclose(got.nan_to_num(-1), want.nan_to_num(-1), atol=1e-6)


# --------------------------------------------------------------------------------------------
# the noise generator: reference Philox == Triton's
# --------------------------------------------------------------------------------------------

def test_reference_philox_equals_triton_randint4x():
    import triton
    import triton.language as tl

    @triton.jit
    def draw(out_ptr, seed, n, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK).to(tl.int64) * 4000000007
        r0, r1, r2, r3 = tl.randint4x(seed, offs)
        mask = tl.arange(0, BLOCK) < n
        tl.store(out_ptr + tl.arange(0, BLOCK) * 4 + 0, r0, mask=mask)
        tl.store(out_ptr + tl.arange(0, BLOCK) * 4 + 1, r1, mask=mask)
        tl.store(out_ptr + tl.arange(0, BLOCK) * 4 + 2, r2, mask=mask)
        tl.store(out_ptr + tl.arange(0, BLOCK) * 4 + 3, r3, mask=mask)

    seed = 0x1234_5678_9ABC
    out = torch.zeros(64 * 4, dtype=torch.int32, device=KERNEL_DEVICE)
    draw[(1,)](out, seed, 64, BLOCK=64)
    got = out.cpu().view(64, 4).long() & 0xFFFFFFFF
    want = torch.stack(noise.philox(seed, torch.arange(64, dtype=torch.int64) * 4000000007), 1)
    assert torch.equal(got, want)


# --------------------------------------------------------------------------------------------
# traffic: bytes moved, launches, races (interpreter only)
# --------------------------------------------------------------------------------------------

interpreter_only = pytest.mark.skipif(HAS_CUDA, reason="counts the interpreter's loads and stores")


def _ideal(plan, x):
    """Bytes an ideal in-place pass moves: each region element written once; each element
    needed (as itself with a != 0, or as a partner with b != 0) read once."""
    lay = describe(x, plan.spatial)
    region = reference.region(reference.clipped_boxes(plan.box, lay), torch.arange(lay.rows),
                              torch.arange(lay.lanes))   # (B, 1, R, L)
    own = region & (plan.lam_self != 0).view(-1, 1, 1, 1)
    as_partner = torch.zeros_like(region)
    as_partner.index_put_((plan.partner,), region & (plan.lam_partner != 0).view(-1, 1, 1, 1), accumulate=True)
    read = (own | as_partner).sum() * lay.planes
    written = region.sum() * lay.planes
    return int(read) * x.element_size(), int(written) * x.element_size()


@interpreter_only
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch_elem", "cutout"))
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_traffic_is_ideal_and_race_free(kind, pairing, gen):
    from fastmix.kernels import traffic

    x = make_batch("nchw", torch.float32, 6, 3, 12, 16, gen)
    plan = make_plan(kind, pairing, 6, (12, 16), 3, gen)
    labels = torch.randint(0, 10, (6,), generator=gen)
    with backend("triton"), traffic.count(x) as t:
        F.apply(x, plan)
        F.targets(labels, plan, 10)
    ideal_read, ideal_written = _ideal(plan, x)
    assert t.bytes_loaded <= 1.05 * ideal_read and t.bytes_stored <= 1.05 * ideal_written, (
        f"{kind}/{pairing}: loaded {t.bytes_loaded} (ideal {ideal_read}), stored {t.bytes_stored} "
        f"(ideal {ideal_written})")
    assert t.reloaded_bytes == 0 and t.rewritten_bytes == 0
    assert t.shared_bytes == 0, f"{t.shared_bytes} bytes touched by two programs, one of them writing"
    assert t.launches == {"_blend_inplace_kernel": 1, "_targets_kernel": 1}
    if kind == "mixup":
        assert ideal_read == ideal_written == x.nbytes * int((plan.kind != 0).sum()) // 6


@interpreter_only
def test_cutmix_touches_only_its_boxes(gen):
    from fastmix.kernels import traffic

    x = make_batch("nchw", torch.float32, 4, 3, 32, 32, gen)
    box = torch.tensor([[2, 10, 3, 9], [0, 4, 0, 32], [20, 32, 20, 32], [5, 6, 7, 8]], dtype=torch.int32)
    plan = F.cutmix_plan(box, (32, 32))
    with backend("triton"), traffic.count(x) as t:
        F.apply(x, plan)
    area = int(((box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])).sum()) * 3 * 4
    assert t.bytes_stored == area and t.bytes_loaded == area
