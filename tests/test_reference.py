"""The pure-PyTorch reference against the naive float64 oracle (tests/oracle.py)."""
import pytest
import torch

from fastmix import functional as F
from fastmix import ops, reference
from fastmix.layout import describe

from cases import DTYPES, KINDS, LAYOUTS, PAIRINGS, make_batch, make_plan, spatial, with_pairing
from helpers import assert_close, backend
import oracle


def _expected(x, plan):
    want = oracle.blend(x, plan)
    return want.to(x.dtype) if x.dtype != torch.uint8 else want.to(torch.uint8)


@pytest.mark.parametrize("layout,kind", [(lay, kind) for lay in LAYOUTS for kind in KINDS
                                         if spatial(lay) or kind == "mixup"])   # boxes need H, W
def test_reference_matches_oracle_every_layout_and_kind(layout, kind, gen):
    for batch in (1, 2, 5):
        x = make_batch(layout, torch.float32, batch, 3, 7, 9, gen)
        plan = make_plan(kind, "flip", batch, (7, 9) if spatial(layout) else None, 3, gen)
        want = _expected(x, plan)
        with backend("reference"):
            F.apply(x, plan)
        assert_close(x, want, torch.float32, f"{layout}/{kind}/B={batch}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch_elem", "cutout"))
def test_reference_matches_oracle_every_dtype_and_pairing(dtype, pairing, kind, gen):
    x = make_batch("nchw", dtype, 6, 3, 8, 11, gen)
    plan = make_plan(kind, pairing, 6, (8, 11), 3, gen)
    want = _expected(x, plan)
    with backend("reference"):
        F.apply(x, plan)
    assert_close(x, want, dtype, f"{kind}/{pairing}/{dtype}")


def test_copies_and_fills_are_exact(gen):
    """CutMix only copies pixels and Cutout only fills them: bit-exact in every dtype."""
    for dtype in DTYPES:
        for kind in ("cutmix", "cutout"):
            x = make_batch("nchw", dtype, 5, 3, 9, 9, gen)
            plan = make_plan(kind, "perm", 5, (9, 9), 3, gen)
            want = _expected(x, plan)
            with backend("reference"):
                F.apply(x, plan)
            assert torch.equal(x, want), f"{kind}/{dtype}: copy or fill not exact"


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


def test_generic_device_path_matches_cpu_fast_paths(gen, monkeypatch):
    """Off CPU the reference reads nothing back to the host (no fast paths); same answers."""
    x = make_batch("nchw", torch.float32, 6, 3, 9, 10, gen)
    for kind in ("mixup", "cutmix", "switch_elem", "cutout"):
        plan = make_plan(kind, "flip", 6, (9, 10), 3, gen)
        fast, generic = x.clone(), x.clone()
        with backend("reference"):
            F.apply(fast, plan)
            monkeypatch.setattr(reference, "_facts",
                                lambda t, lay, src, full, whole_rows, boxes: reference._Facts(
                                    (0, lay.rows, 0, lay.lanes), whole_rows, True, "", False))
            F.apply(generic, plan)
        monkeypatch.undo()
        assert_close(generic, fast, torch.float32, kind)


def test_gradient_is_the_transpose(gen):
    """<blend(x), g> == <x, blend_grad(g)> for random x, g: the backward is the exact adjoint."""
    for kind, pairing in (("mixup", "perm"), ("switch_elem", "roll"), ("cutout", "flip")):
        x = make_batch("nchw", torch.float64, 5, 2, 6, 7, gen)
        g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        plan = make_plan(kind, pairing, 5, (6, 7), 2, gen)
        t = reference.PlanTensors(*ops.plan_tensors(plan))
        lay = describe(x, True)
        fill_free = t._replace(fill=None, noise_seed=None)   # the fill is a constant: not part of the linear map
        lhs = (reference.blend(x, lay, fill_free) * g).sum()
        rhs = (x * reference.blend_grad(g, lay, t)).sum()
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


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.uint8))
@pytest.mark.parametrize("layout", ("nchw", "nhwc", "crop"))
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch_elem", "cutmix_batch"))
@pytest.mark.parametrize("batch", (8, 9))   # 9: the middle sample is its own partner
@pytest.mark.parametrize("pairs_per_block", (1, 3))
def test_flip_pair_blocks_match_the_general_path_bit_for_bit(dtype, layout, kind, batch, pairs_per_block, gen,
                                                             monkeypatch):
    """Flip pairs are blended a block of pairs at a time; with blocks of one pair (the
    save-lerp-lerp walk) or three (gather and lerp, a short last block) the result equals the
    oracle and, exactly, the general path on the same plan."""
    monkeypatch.setattr(reference, "_pair_blocks", lambda batch, per_sample: [
        (i, min(pairs_per_block, batch // 2 - i)) for i in range(0, batch // 2, pairs_per_block)])
    calls = []
    pair_path = reference._apply_flip_pairs
    monkeypatch.setattr(reference, "_apply_flip_pairs", lambda *a: calls.append(1) or pair_path(*a))
    x = make_batch(layout, dtype, batch, 3, 6, 10, gen)
    if kind == "cutmix_batch":   # one box for the batch: the walked extent is that box
        plan = F.mixup_cutmix_plan(batch, (6, 10), mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch", generator=gen)
    else:
        plan = make_plan(kind, "flip", batch, (6, 10), 3, gen)
    assert plan.pairing == "flip"
    t = reference.PlanTensors(*ops.plan_tensors(plan, with_cycles=False))
    lay = describe(x, True)
    for inplace in (True, False):
        if inplace:
            general, paired = _same_strides(x), _same_strides(x)
            reference.blend_(general, lay, t, pairing="perm")
            reference.blend_(paired, lay, t, pairing="flip")
        else:   # out of place takes dense inputs (fastmix.ops makes a crop contiguous first)
            dense = x.contiguous(memory_format=torch.channels_last) if layout == "nhwc" else x.contiguous()
            dense_lay = describe(dense, True)
            general = reference.blend(dense, dense_lay, t, pairing="perm")
            paired = reference.blend(dense, dense_lay, t, pairing="flip")
        assert torch.equal(paired, general), f"{kind}/{layout}/{dtype}/inplace={inplace}"
        assert calls, "the flip plan did not take the pair-block path"
        calls.clear()
        assert_close(paired, _expected(x, plan), dtype, f"{kind}/{layout}/{dtype}")


def _same_strides(x):
    """A copy of ``x`` with its strides and storage offset (``clone`` would densify a crop)."""
    storage = torch.empty(x.untyped_storage().nbytes() // x.element_size(), dtype=x.dtype)
    return storage.as_strided(x.size(), x.stride(), x.storage_offset()).copy_(x)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64, torch.bfloat16, torch.uint8))
@pytest.mark.parametrize("layout", ("nchw", "nhwc", "crop"))
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch_elem", "cutmix_batch"))
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_cycle_walk_matches_the_general_path_bit_for_bit(dtype, layout, kind, pairing, gen, monkeypatch):
    """Large samples in place are blended one at a time along the partner cycles (flip pairs,
    torchvision's one long roll cycle, a random permutation's cycles); forced onto small
    samples, the walk equals the oracle and, exactly, the general path on the same plan."""
    for batch in (8, 9):
        x = make_batch(layout, dtype, batch, 3, 6, 10, gen)
        if kind == "cutmix_batch":
            plan = F.mixup_cutmix_plan(batch, (6, 10), mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch",
                                       generator=gen)
            plan = with_pairing(plan, pairing, gen)
        else:
            plan = make_plan(kind, pairing, batch, (6, 10), 3, gen)
        t = reference.PlanTensors(*ops.plan_tensors(plan, with_cycles=False))
        # Mixup plans also run as whole rows (the layout that ignores boxes), where x allows it
        whole = (False, True) if kind == "mixup" and layout != "crop" else (False,)
        for whole_rows in whole:
            lay = describe(x, not whole_rows)
            general, walked = _same_strides(x), _same_strides(x)
            monkeypatch.setattr(reference, "WALK_ELEMENTS", 1 << 62)
            reference.blend_(general, lay, t, whole_rows=whole_rows, pairing="perm")
            monkeypatch.setattr(reference, "WALK_ELEMENTS", 1)
            walks = []
            walk = reference._walk_cycles
            monkeypatch.setattr(reference, "_walk_cycles", lambda *a: walks.append(walk(*a)) or walks[-1])
            reference.blend_(walked, lay, t, whole_rows=whole_rows, pairing=plan.pairing)
            monkeypatch.undo()
            where = f"{kind}/{pairing}/{layout}/{dtype}/B={batch}/whole_rows={whole_rows}"
            assert walks == [True], f"{where}: the plan did not take the cycle walk"
            assert torch.equal(walked, general), where
            assert_close(walked, _expected(x, plan), dtype, where)


def test_cycle_walk_declines_a_partner_that_is_not_a_permutation(gen, monkeypatch):
    x = make_batch("nchw", torch.float32, 6, 3, 6, 10, gen)
    plan = make_plan("mixup", "perm", 6, (6, 10), 3, gen)
    t = reference.PlanTensors(*ops.plan_tensors(plan, with_cycles=False))
    t = t._replace(partner=torch.tensor([1, 1, 0, 2, 5, 4]))   # row 1 twice, row 3 never
    lay = describe(x, True)
    general, walked = x.clone(), x.clone()
    monkeypatch.setattr(reference, "WALK_ELEMENTS", 1 << 62)
    reference.blend_(general, lay, t)
    monkeypatch.setattr(reference, "WALK_ELEMENTS", 1)
    assert reference._walk_cycles(walked, lay, t, reference._clipped_boxes(t.box, lay), True) is False
    assert torch.equal(walked, x), "a declined walk wrote something"
    reference.blend_(walked, lay, t)
    assert torch.equal(walked, general)


def test_uint8_narrowing_through_int16_equals_a_direct_copy(gen):
    """The reference narrows rounded float32 results to uint8 through int16 (a direct copy is
    a slow scalar loop on CPU); for every value a blend can produce the two agree exactly."""
    val = torch.arange(256, dtype=torch.float32).repeat(3, 7).view(3, 7, 256)[:, :, torch.randperm(256, generator=gen)]
    fast, direct = torch.empty(val.shape, dtype=torch.uint8), torch.empty(val.shape, dtype=torch.uint8)
    reference._store(fast, val.clone())
    direct.copy_(val)
    assert torch.equal(fast, direct)
    strided = torch.zeros(3, 7, 300, dtype=torch.uint8)[:, :, 10:266]   # a crop of a wider row
    reference._store(strided, val.clone(), int16_buffer=torch.empty(val.shape, dtype=torch.int16))
    assert torch.equal(strided, direct)
