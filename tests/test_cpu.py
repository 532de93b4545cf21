"""The CPU fast path (``fastmix/cpu.py``): every walk, forced on the same plans, gives the
reference's result (to the dtype's rounding) and the other walks' results bit for bit; the one
decision picks the walk the module docstring promises; the helpers are exact."""
import numpy as np
import pytest
import torch

from fastmix import cpu, cpu_walks, reference
from fastmix import functional as F
from fastmix.layout import describe
from fastmix.plan import plan_args

import oracle
from cases import PAIRINGS, make_batch, make_plan, with_pairing
from helpers import assert_close, raw_bytes


def _same_strides(x):
    """A copy of ``x`` with its strides and storage offset (``clone`` would densify a crop)."""
    storage = torch.empty(x.untyped_storage().nbytes() // x.element_size(), dtype=x.dtype)
    return storage.as_strided(x.size(), x.stride(), x.storage_offset()).copy_(x)


def _plan(kind, pairing, batch, gen):
    if kind == "cutmix_batch":   # one box for the batch: the walked extent is that box
        plan = F.mixup_cutmix_plan(batch, (6, 10), mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch", generator=gen)
        return with_pairing(plan, pairing, gen)
    return make_plan(kind, pairing, batch, (6, 10), 3, gen)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64, torch.bfloat16, torch.uint8))
@pytest.mark.parametrize("layout", ("nchw", "nhwc", "crop"))
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch_elem", "cutmix_batch"))
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_every_walk_matches_the_reference_and_each_other(dtype, layout, kind, pairing, gen):
    """Forced onto small samples, the cycle walk, the select walk (and, for flip pairs with one
    region, the pair blocks; for batch-mode plans the uniform walk) equal the general chunk walk
    bit for bit and the oracle to rounding."""
    for batch in (8, 9):     # 9: the middle sample is its own partner under flip
        x = make_batch(layout, dtype, batch, 3, 6, 10, gen)
        plan = _plan(kind, pairing, batch, gen)
        args = plan_args(plan, with_cycles=False)
        lay = describe(x, True)
        facts = cpu.Facts.of(args, lay)
        walks = [cpu.CYCLES, cpu.SELECT] + ([cpu.FLIP_PAIRS] if pairing == "flip" and facts.uniform else [])
        if cpu.uniform_region(args, lay, dtype) is not None:   # batch mode drawn on the host, flip or roll
            walks.append(cpu.UNIFORM)
        general = _same_strides(x)
        cpu.run_walk(cpu.CHUNKS, general, lay, args)
        where = f"{kind}/{pairing}/{layout}/{dtype}/B={batch}"
        assert_close(general, oracle.expected(x, plan), dtype, where)
        for walk in walks:
            walked = _same_strides(x)
            cpu.run_walk(walk, walked, lay, args)
            assert torch.equal(raw_bytes(walked), raw_bytes(general)), f"{where}: {walk} differs from the chunk walk"


def test_mixup_plans_walk_whole_rows_too(gen):
    """A plan without boxes sees any tensor as one long row per sample; the walks agree there too."""
    x = make_batch("features", torch.float32, 9, 3, 6, 10, gen)
    plan = make_plan("mixup", "flip", 9, None, 3, gen)
    args = plan_args(plan, with_cycles=False)
    lay = describe(x, False)
    results = []
    for walk in (cpu.CHUNKS, cpu.CYCLES, cpu.FLIP_PAIRS, cpu.SELECT):
        out = x.clone()
        cpu.run_walk(walk, out, lay, args)
        results.append(out)
    assert_close(results[0], oracle.expected(x, plan), torch.float32, "features")
    assert all(torch.equal(raw_bytes(r), raw_bytes(results[0])) for r in results[1:])


@pytest.mark.parametrize("kind,dtype", [(kind, dtype) for kind in ("cutout", "erase_const", "erase_noise")
                                         for dtype in (torch.float32, torch.bfloat16, torch.uint8)
                                         if not (kind == "erase_noise" and dtype == torch.uint8)])  # noise: floats only
def test_fills_match_the_reference(kind, dtype, gen):
    x = make_batch("nhwc", dtype, 7, 3, 9, 11, gen)
    plan = make_plan(kind, "flip", 7, (9, 11), 3, gen)
    args = plan_args(plan, with_cycles=False)
    lay = describe(x, True)
    fast, spec = x.clone(), x.clone()
    cpu.blend_(fast, lay, args)
    reference.blend_(spec, lay, args)
    assert torch.equal(raw_bytes(fast), raw_bytes(spec)), f"{kind}/{dtype}: a fill is a copy, exact in both"


def _facts(x, plan):
    args = plan_args(plan, with_cycles=False)
    lay = describe(x, plan.spatial)
    return cpu.Facts.of(args, lay), args, lay


def _decided(x, plan):
    args = plan_args(plan, with_cycles=False)
    return cpu.decide(args, describe(x, plan.spatial), x.dtype)[0]


def test_the_decision(gen):
    big = torch.zeros(4, 3, 160, 160)               # 76800 elements a sample: large
    small = torch.zeros(64, 3, 8, 8)
    several = torch.zeros(128, 3, 64, 64)            # 1.5M elements: more than one block of pairs
    # batch mode on the host: one weight and one box expanded to every row
    mixup = F.mixup_cutmix_plan(4, None, mixup_alpha=1.0, generator=gen)
    assert mixup.lam_self.stride(0) == 0, "a batch-mode plan drawn on the host holds one expanded value"
    assert _decided(big, mixup) == cpu.UNIFORM                   # the batch's region fits in cache
    assert cpu.choose_walk(*_facts(big, mixup)[:3], big.dtype) == cpu.CYCLES
    blocks = F.mixup_cutmix_plan(64, None, mixup_alpha=1.0, generator=gen)
    assert _decided(small, blocks) == cpu.UNIFORM
    assert cpu.choose_walk(*_facts(small, blocks)[:3], small.dtype) == cpu.SELECT   # one block: all at once
    blocks = F.mixup_cutmix_plan(128, None, mixup_alpha=1.0, generator=gen)
    assert _decided(several, blocks) == cpu.FLIP_PAIRS          # too large to gather at once
    roll = F.mixup_cutmix_plan(128, None, mixup_alpha=1.0, pairing="roll", generator=gen)
    assert _decided(several, roll) == cpu.CHUNKS
    odd = F.mixup_cutmix_plan(63, None, mixup_alpha=1.0, generator=gen)          # its middle row is alone
    assert _decided(torch.zeros(63, 3, 8, 8), odd) == cpu.SELECT
    per_sample = F.mixup_cutmix_plan(64, (8, 8), mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", generator=gen)
    assert _decided(small, per_sample) == cpu.SELECT
    cut = F.cutout_plan(4, (160, 160), generator=gen)
    assert _decided(big, cut) == cpu.CHUNKS                     # fills
    nothing = F.mixup_cutmix_plan(4, None, mixup_alpha=1.0, prob=0.0, mode="elem", generator=gen)
    assert _decided(big, nothing) == cpu.NOTHING


def test_forcing_a_walk_checks_what_it_needs(gen):
    x = torch.zeros(6, 3, 4, 4)
    plan = F.mixup_cutmix_plan(6, None, mixup_alpha=1.0, generator=gen)
    facts, args, lay = _facts(x, plan)
    not_a_permutation = args._replace(partner=torch.tensor([1, 1, 0, 2, 5, 4]))   # row 1 twice, row 3 never
    with pytest.raises(ValueError, match="partner"):
        cpu.run_walk(cpu.CYCLES, x, lay, not_a_permutation)
    roll = args._replace(partner=torch.tensor([5, 0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="partner"):
        cpu.run_walk(cpu.FLIP_PAIRS, x, lay, roll)
    assert torch.equal(x, torch.zeros_like(x)), "a refused walk wrote something"
    # not a permutation: only walks that gather every partner before writing may take it
    walk = cpu.choose_walk(cpu.Facts.of(not_a_permutation, lay), not_a_permutation, lay, x.dtype)
    assert walk in (cpu.SELECT, cpu.CHUNKS), walk


def test_uint8_narrowing_through_int16_equals_a_direct_copy(gen):
    """Rounded float32 results reach uint8 through int16 (a direct copy is a slow scalar loop on
    CPU); for every value a blend can produce the two agree exactly."""
    val = torch.arange(256, dtype=torch.float32).repeat(3, 7).view(3, 7, 256)[:, :, torch.randperm(256, generator=gen)]
    fast, direct = torch.empty(val.shape, dtype=torch.uint8), torch.empty(val.shape, dtype=torch.uint8)
    cpu_walks.store(fast, val.clone(), clamp=False)
    direct.copy_(val)
    assert torch.equal(fast, direct)
    strided = torch.zeros(3, 7, 300, dtype=torch.uint8)[:, :, 10:266]   # a crop of a wider row
    cpu_walks.store(strided, val.clone(), clamp=True)
    assert torch.equal(strided, direct)


@pytest.mark.parametrize("smoothing", (0.0, 0.1))
def test_targets_match_the_reference(smoothing, gen):
    plan = make_plan("switch_elem", "flip", 9, (8, 8), 3, gen)
    for labels in (torch.randint(0, 11, (9,), generator=gen), torch.tensor([0, 1, 99, 3, -4, 5, 6, 7, 8])):
        fast = cpu.mix_targets(labels, plan.partner, plan.label_lam, 11, smoothing)
        spec = reference.mix_targets(labels, plan.partner, plan.label_lam, 11, smoothing)
        assert torch.equal(torch.isnan(fast), torch.isnan(spec))
        assert torch.allclose(fast.nan_to_num(-1), spec.nan_to_num(-1), atol=1e-6, rtol=0)


def test_cycles_on_host():
    partner = np.array([2, 0, 1, 3, 5, 4])
    assert cpu_walks.cycles_on_host(partner) == [[0, 2, 1], [4, 5]]


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.uint8, torch.float64))
@pytest.mark.parametrize("kind", ("mixup", "cutmix", "switch"))
@pytest.mark.parametrize("pairing", ("flip", "roll"))
def test_batch_mode_on_the_host_takes_the_uniform_walk(dtype, kind, pairing, gen):
    """A batch-mode plan drawn on the host holds one value expanded to every row and is applied by
    the uniform walk, which equals the chunk walk bit for bit and the oracle to rounding."""
    options = {"mixup": dict(mixup_alpha=1.0), "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
               "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0)}[kind]
    taken = 0
    for draw in range(6):
        x = make_batch("nchw", dtype, 8, 3, 6, 10, gen)
        plan = F.mixup_cutmix_plan(8, (6, 10), pairing=pairing, generator=gen, **options)
        args = plan_args(plan, with_cycles=False)
        lay = describe(x, True)
        assert plan.lam_self.stride(0) == 0 and plan.box.stride(0) == 0, "batch mode: expanded rows"
        walk, _ = cpu.decide(args, lay, dtype)
        assert walk == cpu.UNIFORM, f"draw {draw}: {walk}"
        taken += 1
        general, walked = _same_strides(x), _same_strides(x)
        cpu.run_walk(cpu.CHUNKS, general, lay, args)
        cpu.run_walk(cpu.UNIFORM, walked, lay, args)
        where = f"{kind}/{pairing}/{dtype}/draw {draw}"
        assert torch.equal(raw_bytes(walked), raw_bytes(general)), f"{where}: the uniform walk differs"
        assert_close(walked, oracle.expected(x, plan), dtype, where)
    assert taken == 6
