"""Partners and their cycles: timm's flip and torchvision's roll partners, the cycle
decomposition the in-place blend walks (closed forms against pointer jumping, one long cycle,
random permutations), and how the samplers treat a ``pairing`` hint they do not know.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from fastmix import functional as F

import oracle
from helpers import KERNEL_DEVICE, assert_close, backend, requires_triton

from fastmix.functional import cutmix_plan, flip_partner, mixup_cutmix_plan, mixup_plan, roll_partner
from fastmix.partners import Cycles, _cycles_by_pointer_jumping, cycles_of


def cycle_list(cycles: Cycles, partner: torch.Tensor) -> list[list[int]]:
    """Check that ``cycles`` is a valid cycle decomposition of ``partner``; return the cycles."""
    n = partner.shape[0]
    walk, start = cycles.walk.tolist(), cycles.cycle_start.tolist()
    assert cycles.walk.dtype == torch.int32 and cycles.cycle_start.dtype == torch.int32
    assert len(walk) == n and len(start) == n + 1, f"walk {len(walk)} / cycle_start {len(start)} for B={n}"
    assert sorted(walk) == list(range(n)), f"walk {walk} does not list every row exactly once"
    assert start[0] == 0, f"cycle_start[0] = {start[0]}"
    count = start.index(n)                      # the first entry equal to B ends the cycles
    assert all(s == n for s in start[count:]), f"cycle_start past the last cycle must equal B={n}: {start}"
    assert all(start[j] < start[j + 1] for j in range(count)), f"empty or unordered cycle in {start}"
    out, p = [], partner.tolist()
    for j in range(count):
        cycle = walk[start[j]:start[j + 1]]
        for k, row in enumerate(cycle):
            nxt = cycle[(k + 1) % len(cycle)]
            assert p[row] == nxt, f"cycle {j} {cycle}: partner[{row}] = {p[row]}, walk says {nxt}"
        out.append(cycle)
    return out


def normalised(cycle: list[int]) -> tuple:
    k = cycle.index(min(cycle))
    return tuple(cycle[k:] + cycle[:k])


def cycle_set(cycles: Cycles, partner: torch.Tensor) -> set:
    """The cycles of a checked decomposition, each normalised to start at its smallest row."""
    found = [normalised(c) for c in cycle_list(cycles, partner)]
    assert len(set(found)) == len(found), f"a cycle is listed twice: {found}"
    return set(found)


def random_cycle(n: int, gen: torch.Generator) -> torch.Tensor:
    """One cycle through all n rows (Sattolo's order): the longest chain pointer jumping must follow."""
    order = torch.randperm(n, generator=gen)
    partner = torch.empty(n, dtype=torch.int64)
    partner[order] = order.roll(-1)
    return partner


@pytest.mark.parametrize("n", [0, 1, 2, 5, 8])
def test_flip_partner(n):
    partner = flip_partner(n)
    assert partner.dtype == torch.int64 and partner.shape == (n,)
    for i in range(n):
        assert int(partner[i]) == n - 1 - i, f"B={n}: flip partner of {i} is {int(partner[i])}"
    if n % 2:
        assert int(partner[n // 2]) == n // 2, f"B={n}: middle row must pair with itself"


@pytest.mark.parametrize("n", [0, 1, 2, 5, 8])
def test_roll_partner_matches_torch_roll(n):
    partner = roll_partner(n)
    assert partner.dtype == torch.int64 and partner.shape == (n,)
    for i in range(n):
        assert int(partner[i]) == (i - 1) % n, f"B={n}: roll partner of {i} is {int(partner[i])}"
    rows = torch.arange(n) * 10
    assert torch.equal(rows[partner], rows.roll(1, 0)), f"B={n}: x[partner] != x.roll(1, 0)"


@pytest.mark.parametrize("n", [0, 1, 2, 7, 64])
def test_cycles_of_random_permutations(n, gen):
    for trial in range(5):
        partner = torch.randperm(n, generator=gen)
        generic = cycles_of(partner, "perm")
        assert cycles_of(partner).walk.tolist() == generic.walk.tolist(), "the default pairing is not 'perm'"
        cycles = cycle_list(generic, partner)
        assert sum(map(len, cycles)) == n
        result = _cycles_by_pointer_jumping(partner)
        assert len(result) == 2, f"_cycles_by_pointer_jumping returned {len(result)} values, expected (walk, start)"
        walk, start = result
        assert torch.equal(walk.to(torch.int32), generic.walk), f"B={n} trial {trial}: walk differs"
        assert torch.equal(start.to(torch.int32), generic.cycle_start), f"B={n} trial {trial}: start differs"


@pytest.mark.parametrize("n", [3, 64, 65, 257])
def test_cycles_of_one_long_cycle(n, gen):
    partner = random_cycle(n, gen)
    cycles = cycle_list(cycles_of(partner, "perm"), partner)
    assert len(cycles) == 1 and len(cycles[0]) == n, f"B={n}: expected one cycle of {n}, got {len(cycles)}"


@pytest.mark.parametrize("pairing", ["flip", "roll", "self"])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 8, 64])
def test_closed_form_cycles_match_pointer_jumping(pairing, n):
    partner = {"flip": flip_partner, "roll": roll_partner, "self": lambda m: torch.arange(m)}[pairing](n)
    closed = cycle_set(cycles_of(partner, pairing), partner)
    generic = cycle_set(cycles_of(partner, "perm"), partner)
    assert closed == generic, f"{pairing} B={n}: cycles {sorted(closed)} vs {sorted(generic)}"
    expected = {"flip": (n + 1) // 2, "roll": min(n, 1), "self": n}[pairing]
    assert len(closed) == expected, f"{pairing} B={n}: {len(closed)} cycles, expected {expected}"


@pytest.mark.parametrize("pairing", ["flip", "roll"])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 8])
def test_plan_cycles_decompose_plan_partner(pairing, n, gen):
    plan = mixup_cutmix_plan(n, (16, 12), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", pairing=pairing,
                             generator=gen)
    cycles = cycle_list(plan.cycles, plan.partner)
    assert sum(map(len, cycles)) == n


@pytest.mark.parametrize("pairing", ["self", "perm", "bogus"])
def test_unknown_pairing_is_rejected_or_consistent(pairing, gen):
    """Only "flip" and "roll" are documented. Another value must either be rejected with a
    ValueError naming ``pairing``, or give a plan whose cycles still decompose its partner
    (the in-place blend walks ``plan.cycles``: a wrong hint means rows read overwritten data)."""
    try:
        plan = mixup_cutmix_plan(6, (8, 8), mixup_alpha=1.0, mode="elem", pairing=pairing, generator=gen)
    except ValueError as err:
        assert "pairing" in str(err), f"pairing={pairing!r}: error does not name the argument: {err}"
        return
    cycle_list(plan.cycles, plan.partner)


@pytest.mark.parametrize("pairing", ["self", "perm", "bogus"])
def test_mixup_plan_and_cutmix_plan_reject_unknown_pairing(pairing):
    with pytest.raises(ValueError, match="pairing"):
        mixup_plan(torch.full((6,), 0.3), pairing=pairing)
    with pytest.raises(ValueError, match="pairing"):
        cutmix_plan(torch.tensor([[0, 4, 0, 4]] * 6, dtype=torch.int32), (8, 8), pairing=pairing)
    # an explicit partner is any permutation: the pairing hint is then not consulted
    plan = mixup_plan(torch.full((6,), 0.3), partner=torch.tensor([1, 2, 0, 4, 5, 3]), pairing=pairing)
    assert plan.pairing == "perm"
    assert sorted(map(sorted, cycle_list(plan.cycles, plan.partner))) == [[0, 1, 2], [3, 4, 5]]


# --------------------------------------------------------------------------------------------
# a plan cannot disagree with itself: the closed-form walk is derived from the partner tensor
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,name", [((8, 3, 8, 8), "cpu"), ((8, 3, 8, 8), "reference"),
                                        pytest.param((8, 3, 8, 8), "triton", marks=requires_triton),
                                        ((512, 3, 32, 32), "cpu"), ((512, 3, 32, 32), "reference")])
def test_a_replaced_partner_is_the_one_applied(shape, name, gen):
    """``dataclasses.replace(plan, partner=roll_partner(B))`` on a flip plan mixes with the roll,
    at every size (the old host-side hint kept walking flip pairs on large batches); so does a
    partner written in place."""
    batch = shape[0]
    x = torch.rand(shape, generator=gen)
    plan = mixup_cutmix_plan(batch, None, mixup_alpha=1.0, mode="elem", generator=gen)
    assert plan.pairing == "flip"
    rolled = dataclasses.replace(plan, partner=roll_partner(batch))
    assert rolled.pairing == "perm", "a partner the sampler did not build has no closed form"
    written = dataclasses.replace(plan, partner=flip_partner(batch))
    written.partner.copy_(roll_partner(batch))
    for candidate in (rolled, written):
        out = x.clone().to(KERNEL_DEVICE if name == "triton" else "cpu")
        with backend(name):
            F.apply(out, candidate.to(out.device))
        assert_close(out.cpu(), oracle.expected(x, candidate), torch.float32, f"{name}/{shape}")
    same = dataclasses.replace(plan, lam_self=plan.lam_self.clone())
    assert same.pairing == "flip", "replacing another field keeps the sampler's closed form"
    plan.partner.add_(0)                                    # an in-place write bumps the version
    assert plan.pairing == "perm"
