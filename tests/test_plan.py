"""Plan sampling: partners and their cycles, Beta draws, timm/torchvision Mixup-CutMix semantics,
Cutout and Random Erasing, device-side sampling (meta, torch.compile), reproducibility, masks.

Distribution checks use a fixed seed and statistical bounds derived in the test (binomial
z-scores, KS and chi-square critical values at about the 0.001 level), never numbers copied
from a run of the code.
"""
from __future__ import annotations

import math

import pytest
import torch

from fastmix.layout import FULL
from fastmix.plan import (
    CUTMIX, ERASE, KIND_NAMES, MIXUP, NONE, Cycles, Plan, _cycles_by_pointer_jumping, box_from_lam, cutmix_plan,
    cutout_plan, cycles_of, erasing_plan, flip_partner, mixup_cutmix_plan, mixup_plan, roll_partner, sample_beta,
)

Z = 4.5  # binomial tolerance in standard deviations (two-sided p ~ 7e-6 per check)
TENSOR_FIELDS = ("partner", "lam_self", "lam_partner", "box", "label_lam", "kind", "fill", "noise_seed")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tensors_of(plan: Plan) -> dict:
    return {name: getattr(plan, name) for name in TENSOR_FIELDS if getattr(plan, name) is not None}


def assert_binomial(count: int, n: int, p: float, what: str):
    """``count`` successes out of ``n`` are within Z standard deviations of Binomial(n, p)."""
    sd = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= Z * sd, f"{what}: {count}/{n} = {count / n:.4f}, expected {p} ± {Z * sd / n:.4f}"


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance between the empirical CDF of ``samples`` and ``cdf``."""
    x = samples.double().sort().values
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max(float((i / n - f).max()), float((f - (i - 1) / n).max()))


def ks_critical(n: int) -> float:
    return 1.95 / math.sqrt(n)  # alpha ~ 0.001


def chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.001 point of chi-square(df) by the Wilson-Hilferty approximation (z = Φ⁻¹(0.999))."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def assert_uniform_ints(values: torch.Tensor, high: int, what: str):
    """Chi-square test that ``values`` are uniform over ``0..high-1`` (every bin seen)."""
    assert int(values.min()) >= 0 and int(values.max()) < high, f"{what}: values outside [0, {high})"
    counts = torch.bincount(values.long(), minlength=high).double()
    expected = values.numel() / high
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert (counts > 0).all(), f"{what}: bins never drawn: {torch.nonzero(counts == 0).flatten().tolist()}"
    limit = chi2_critical(high - 1)
    assert stat < limit, f"{what}: chi2 {stat:.1f} >= {limit:.1f} (counts {counts.tolist()})"


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


# --------------------------------------------------------------------------------------------
# 1. partners and cycles
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# 2. Beta draws
# --------------------------------------------------------------------------------------------

BETA_CDFS = {
    1.0: lambda x: x,
    0.5: lambda x: 2 / math.pi * torch.asin(torch.sqrt(x)),
    2.0: lambda x: 3 * x ** 2 - 2 * x ** 3,
}


@pytest.mark.parametrize("alpha", sorted(BETA_CDFS))
def test_sample_beta_matches_beta_cdf(alpha, gen):
    n = 20000
    lam = sample_beta(alpha, n, generator=gen)
    assert lam.shape == (n,) and lam.dtype == torch.float32
    assert bool(((lam >= 0) & (lam <= 1)).all()), f"alpha={alpha}: draws outside [0, 1]"
    d = ks_statistic(lam, BETA_CDFS[alpha])
    assert d < ks_critical(n), f"alpha={alpha}: KS distance {d:.4f} >= {ks_critical(n):.4f}"


def test_sample_beta_ks_rejects_wrong_alpha(gen):
    # the KS check has power: Beta(0.5) draws are far from Beta(2)
    lam = sample_beta(0.5, 20000, generator=gen)
    assert ks_statistic(lam, BETA_CDFS[2.0]) > ks_critical(20000)


def test_sample_beta_tiny_alpha_is_finite(gen):
    lam = sample_beta(1e-3, 5000, generator=gen)
    assert not bool(lam.isnan().any()), f"NaN at {torch.nonzero(lam.isnan()).flatten()[:10].tolist()}"
    assert bool(((lam >= 0) & (lam <= 1)).all()), f"draws outside [0, 1]: {lam[(lam < 0) | (lam > 1)][:10]}"


@pytest.mark.parametrize("alpha", [1e-3, 1e-2])
def test_sample_beta_tiny_alpha_puts_its_mass_at_the_ends(alpha, gen):
    # For a < 1, (1 - x)^(a-1) >= 1, so F(0.01) >= 0.01^a / (a B(a, a)); by symmetry the middle
    # [0.01, 0.99] holds at most 1 - 2 F(0.01) of the mass (0.5% for a = 1e-3, 4.6% for a = 1e-2).
    # The fallback for two underflowed Gammas must not pile draws up in the middle.
    n = 5000
    lam = sample_beta(alpha, n, generator=gen)
    log_beta = 2 * math.lgamma(alpha) - math.lgamma(2 * alpha)
    tail = math.exp(alpha * math.log(0.01) - math.log(alpha) - log_beta)
    middle_max = max(0.0, 1 - 2 * tail)
    middle = int(((lam >= 0.01) & (lam <= 0.99)).sum())
    bound = n * middle_max + Z * math.sqrt(n * middle_max * (1 - middle_max))
    assert middle <= bound, (f"Beta({alpha}, {alpha}): {middle}/{n} draws in [0.01, 0.99] "
                             f"(at most {middle_max:.4f} of the mass; {int((lam == 0.5).sum())} draws are exactly 0.5)")
    assert_binomial(int((lam < 0.5).sum()), n - int((lam == 0.5).sum()), 0.5, f"Beta({alpha}) symmetry")


def test_sample_beta_empty(gen):
    assert sample_beta(1.0, 0, generator=gen).shape == (0,)


# --------------------------------------------------------------------------------------------
# 3. Mixup / CutMix semantics (timm's Mixup)
# --------------------------------------------------------------------------------------------

def test_fields_shapes_and_dtypes(gen):
    plan = mixup_cutmix_plan(6, (16, 12), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", generator=gen)
    assert plan.partner.shape == (6,) and plan.partner.dtype == torch.int64
    for name in ("lam_self", "lam_partner", "label_lam"):
        t = getattr(plan, name)
        assert t.shape == (6,) and t.dtype == torch.float32, f"{name}: {t.shape} {t.dtype}"
    assert plan.box.shape == (6, 1, 4) and plan.box.dtype == torch.int32
    assert plan.kind.shape == (6,) and plan.kind.dtype == torch.int8
    assert plan.fill is None and plan.noise_seed is None and not plan.has_fill
    assert plan.size == (16, 12) and plan.pairing == "flip"
    mix_only = mixup_cutmix_plan(6, None, mixup_alpha=1.0, generator=gen)
    assert mix_only.size is None, "a Mixup-only plan must not be tied to an image size"


def test_batch_mode_one_draw_for_the_whole_batch(gen):
    kinds = set()
    for draw in range(40):
        plan = mixup_cutmix_plan(6, (16, 16), mixup_alpha=1.0, cutmix_alpha=1.0, mode="batch", generator=gen)
        for name in ("kind", "lam_self", "lam_partner", "label_lam"):
            t = getattr(plan, name)
            assert bool((t == t[0]).all()), f"draw {draw}: {name} differs across the batch: {t.tolist()}"
        assert bool((plan.box == plan.box[0]).all()), f"draw {draw}: boxes differ: {plan.box[:, 0].tolist()}"
        kinds.add(int(plan.kind[0]))
    assert {MIXUP, CUTMIX} <= kinds, f"batch mode over 40 draws only produced kinds {kinds}"


def test_pair_mode_pairs_share_draw(gen):
    n = 10
    pairs_differ = 0
    for draw in range(30):
        plan = mixup_cutmix_plan(n, (16, 16), mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", generator=gen)
        for i in range(n // 2):
            j = n - 1 - i
            assert int(plan.partner[i]) == j and int(plan.partner[j]) == i
            for name in ("kind", "lam_self", "label_lam"):
                t = getattr(plan, name)
                assert t[i] == t[j], f"draw {draw}: {name}[{i}] = {t[i]} but {name}[{j}] = {t[j]}"
            assert torch.equal(plan.box[i], plan.box[j]), f"draw {draw}: boxes of {i} and {j} differ"
        pairs_differ += int(plan.label_lam[0] != plan.label_lam[1])
    assert pairs_differ > 20, f"pair mode: different pairs drew the same λ in {30 - pairs_differ}/30 draws"


def test_elem_mode_rows_are_independent(gen):
    n = 8000
    plan = mixup_cutmix_plan(n, None, mixup_alpha=1.0, mode="elem", generator=gen)
    a, b = plan.label_lam[: n // 2].double(), plan.label_lam[n // 2:].flip(0).double()   # row i and B-1-i
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert abs(corr) < Z / math.sqrt(n // 2), f"elem mode: λ of row i and its partner correlate ({corr:.3f})"
    plan = mixup_cutmix_plan(n, (32, 32), mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, mode="elem",
                             generator=gen)
    k = plan.kind
    mixed = (k[: n // 2] != NONE) & (k[n // 2:].flip(0) != NONE)
    disagree = int((k[: n // 2] != k[n // 2:].flip(0))[mixed].sum())
    assert_binomial(disagree, int(mixed.sum()), 0.5, "elem mode: partners with different kinds")


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_odd_batch_middle_sample_is_untouched(mode, gen):
    n, mid = 7, 3
    for draw in range(10):
        # 256x256: a CutMix box is empty (row left alone) only for λ > 1 - (2/256)**2
        plan = mixup_cutmix_plan(n, (256, 256), mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, generator=gen)
        where = f"{mode} draw {draw} middle row"
        assert int(plan.partner[mid]) == mid, f"{where}: partner {int(plan.partner[mid])}"
        assert int(plan.kind[mid]) == NONE, f"{where}: kind {KIND_NAMES[int(plan.kind[mid])]}"
        assert float(plan.label_lam[mid]) == 1.0, f"{where}: label_lam {float(plan.label_lam[mid])}"
        assert float(plan.lam_self[mid]) == 1.0 and float(plan.lam_partner[mid]) == 0.0, where
        y0, y1, x0, x1 = plan.box[mid, 0].tolist()
        assert y0 >= y1 or x0 >= x1, f"{where}: region {[y0, y1, x0, x1]} is not empty"
        assert bool((plan.kind[[0, 1, 2, 4, 5, 6]] != NONE).all()), f"{mode} draw {draw}: kinds {plan.kind.tolist()}"


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("pairing", ["flip", "roll"])
def test_single_sample_batch(mode, pairing, gen):
    plan = mixup_cutmix_plan(1, (16, 16), mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, pairing=pairing,
                             generator=gen)
    assert plan.partner.tolist() == [0]
    assert plan.kind.tolist() == [NONE], f"B=1 {mode}/{pairing}: kind {plan.kind.tolist()}"
    assert plan.label_lam.tolist() == [1.0] and plan.lam_self.tolist() == [1.0] and plan.lam_partner.tolist() == [0.0]


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("pairing", ["flip", "roll"])
def test_empty_batch(mode, pairing, gen):
    plan = mixup_cutmix_plan(0, (16, 16), mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, pairing=pairing,
                             generator=gen)
    assert plan.batch_size == 0
    for name, t in tensors_of(plan).items():
        assert t.shape[0] == 0, f"B=0 {mode}/{pairing}: {name} has shape {tuple(t.shape)}"
    assert plan.box.shape == (0, 1, 4)
    assert plan.cycles.walk.shape == (0,) and plan.cycles.cycle_start.tolist() == [0]
    assert plan.describe() == []


@pytest.mark.parametrize("prob", [0.3, 0.8])
def test_prob_is_the_frequency_of_mixed_rows(prob, gen):
    n = 6000
    plan = mixup_cutmix_plan(n, None, mixup_alpha=1.0, prob=prob, mode="elem", generator=gen)
    assert_binomial(int((plan.kind != NONE).sum()), n, prob, f"prob={prob}: mixed rows")


@pytest.mark.parametrize("switch_prob", [0.2, 0.7])
def test_switch_prob_is_the_frequency_of_cutmix(switch_prob, gen):
    # a 256x256 image makes an empty box (λ within (2/256)² of 1) vanishingly rare
    n = 6000
    plan = mixup_cutmix_plan(n, (256, 256), mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=switch_prob,
                             mode="elem", generator=gen)
    mixed = plan.kind != NONE
    assert int(mixed.sum()) > n - 10, f"{n - int(mixed.sum())} rows were not mixed with prob=1"
    assert_binomial(int((plan.kind == CUTMIX).sum()), int(mixed.sum()), switch_prob,
                    f"switch_prob={switch_prob}: CutMix among mixed rows")


def test_each_kind_draws_lam_from_its_own_alpha(gen):
    n = 8000
    plan = mixup_cutmix_plan(n, (256, 256), mixup_alpha=0.5, cutmix_alpha=2.0, correct_lam=False, mode="elem",
                             generator=gen)
    for kind, alpha in ((MIXUP, 0.5), (CUTMIX, 2.0)):
        lam = plan.label_lam[plan.kind == kind]
        d = ks_statistic(lam, BETA_CDFS[alpha])
        assert d < ks_critical(lam.numel()), \
            f"{KIND_NAMES[kind]} rows: λ is not Beta({alpha}) (KS {d:.4f} >= {ks_critical(lam.numel()):.4f})"


def test_mixup_rows(gen):
    n = 1000
    plan = mixup_cutmix_plan(n, (24, 40), mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", generator=gen)
    mix = plan.kind == MIXUP
    assert int(mix.sum()) > 300
    lam = plan.lam_self[mix]
    assert bool(((lam >= 0) & (lam < 1)).all()), f"mixup λ outside [0, 1): {lam[(lam < 0) | (lam >= 1)]}"
    err = (plan.lam_self[mix] + plan.lam_partner[mix] - 1).abs().max()
    assert float(err) <= torch.finfo(torch.float32).eps, f"lam_partner != 1 - lam_self (off by {float(err)})"
    assert torch.equal(plan.label_lam[mix], lam), "mixup rows: label_lam must equal λ"
    whole = torch.tensor([0, FULL, 0, FULL], dtype=torch.int32)
    bad = ~(plan.box[mix, 0] == whole).all(1)
    assert not bool(bad.any()), f"mixup rows with a box that is not whole-sample: {plan.box[mix, 0][bad][:5].tolist()}"
    none = plan.kind == NONE
    assert bool((plan.lam_self[none] == 1).all() & (plan.lam_partner[none] == 0).all()
                & (plan.label_lam[none] == 1).all())


def _cutmix_rows(plan):
    cut = plan.kind == CUTMIX
    box = plan.box[cut, 0].long()
    return cut, box[:, 0], box[:, 1], box[:, 2], box[:, 3]


def box_offsets(style: str, extent: int, lam: list) -> tuple:
    """Per-λ offsets of a CutMix box from its centre c along one axis: rows ``[c - low, c + high)``.

    timm (``rand_bbox``): ``cut = int(H * sqrt(1 - λ))``, rows ``[c - cut // 2, c + (cut + 1) // 2)``.
    torchvision (``v2.CutMix``): ``half = int(0.5 * sqrt(1 - λ) * H)``, rows ``[c - half, c + half)``.
    Returns ``(low, high, side)`` with ``side`` the length of an unclipped box.
    """
    if style == "timm":
        cut = torch.tensor([math.floor(extent * math.sqrt(1 - v)) for v in lam], dtype=torch.int64)
        return cut // 2, (cut + 1) // 2, cut
    half = torch.tensor([math.floor(0.5 * math.sqrt(1 - v) * extent) for v in lam], dtype=torch.int64)
    return half, half, 2 * half


def assert_boxes_follow_rule(lo, hi, lam: list, extent: int, style: str, axis: str):
    """Unclipped boxes have the rule's side; every box is ``[c - low, c + high)`` clipped to
    ``[0, extent)`` for some centre ``c`` in ``[0, extent)``."""
    low, high, side_rule = box_offsets(style, extent, lam)
    inside = (lo > 0) & (hi < extent)
    side = (hi - lo)[inside]
    assert torch.equal(side, side_rule[inside]), \
        f"{style} {axis}: unclipped sides {side[:8].tolist()} != rule {side_rule[inside][:8].tolist()}"
    c = torch.arange(extent)
    cand_lo = (c[None] - low[:, None]).clamp(0, extent)
    cand_hi = (c[None] + high[:, None]).clamp(0, extent)
    ok = ((cand_lo == lo[:, None]) & (cand_hi == hi[:, None])).any(1)
    bad = torch.nonzero(~ok).flatten()[:5].tolist()
    assert not bad, f"{style} {axis}: rows {bad} ({lo[bad].tolist()}, {hi[bad].tolist()}, " \
                    f"offsets {low[bad].tolist()}/{high[bad].tolist()}) fit no centre"
    return side


@pytest.mark.parametrize("style", ["timm", "torchvision"])
def test_cutmix_rows_follow_rand_bbox_side_rule(style, gen):
    size = height, width = (24, 40)
    plan = mixup_cutmix_plan(3000, size, mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, mode="elem",
                             box_style=style, generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    # torchvision's half-side is 0 (an empty box: the row does nothing) for λ > 1 - 1/12² (~0.7% of rows)
    assert int(cut.sum()) > 2800
    assert bool((plan.lam_self[cut] == 0).all() & (plan.lam_partner[cut] == 1).all()), "cutmix weights not 0/1"
    lam = plan.label_lam[cut].tolist()          # correct_lam=False: the raw λ
    assert all(0 < v < 1 for v in lam)
    for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
        side = assert_boxes_follow_rule(lo, hi, lam, extent, style, axis)
        assert bool((lo < hi).all()), f"{axis}: empty box kept as a CutMix row"
        odd = int((side % 2 == 1).sum())
        if style == "timm":
            # an unclipped timm box has side exactly cut, odd about half the time (not 2 * (cut // 2))
            assert odd > 100, f"{axis}: only {odd} odd unclipped sides under timm's rule"
        else:
            assert odd == 0, f"{axis}: odd unclipped sides {side[side % 2 == 1][:8].tolist()} under torchvision's"
    clipped = (y0 == 0) | (y1 == height) | (x0 == 0) | (x1 == width)
    assert int(clipped.sum()) > 100, "no clipped boxes: centres are not uniform over the image"


def test_box_from_lam_styles(gen):
    size = height, width = (25, 32)
    n = 2000
    # λ from 0 (a box the size of the image, always clipped) to near 1 (empty boxes), both styles
    lam = torch.linspace(0.0, 0.999, n)
    values = lam.tolist()
    for style in ("timm", "torchvision"):
        box = box_from_lam(lam, size, gen, style)
        assert box.shape == (n, 4) and box.dtype == torch.int32
        y0, y1, x0, x1 = box.long().unbind(1)
        for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
            assert bool(((lo >= 0) & (lo <= hi) & (hi <= extent)).all()), f"{style} {axis}: box outside the image"
            assert_boxes_follow_rule(lo, hi, values, extent, style, axis)
    # the default is timm's rule: same seed, same boxes
    assert torch.equal(box_from_lam(lam, size, seeded(5)), box_from_lam(lam, size, seeded(5), "timm"))
    assert not torch.equal(box_from_lam(lam, size, seeded(5), "timm"),
                           box_from_lam(lam, size, seeded(5), "torchvision")), "the two styles gave the same boxes"
    with pytest.raises(ValueError, match="style"):
        box_from_lam(lam, size, gen, "bogus")
    with pytest.raises(ValueError, match="style"):
        mixup_cutmix_plan(4, (8, 8), mixup_alpha=0.0, cutmix_alpha=1.0, box_style="bogus", generator=gen)


def test_cutmix_correct_lam_is_the_kept_fraction(gen):
    size = height, width = (24, 40)
    plan = mixup_cutmix_plan(2000, size, mixup_alpha=1.0, cutmix_alpha=1.0, correct_lam=True, mode="elem",
                             generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    assert int(cut.sum()) > 800
    kept = 1 - ((y1 - y0) * (x1 - x0)).double() / (height * width)
    # exact up to float32 rounding of the fraction and of 1 - fraction (each <= 2**-24 near 1)
    err = (plan.label_lam[cut].double() - kept).abs()
    worst = int(err.argmax())
    assert float(err.max()) <= 2 ** -23, \
        f"row {worst}: label_lam {float(plan.label_lam[cut][worst])} != 1 - area fraction {float(kept[worst])}"


@pytest.mark.parametrize("mixup_alpha", [0.0, 1.0])
def test_cutmix_minmax_boxes(mixup_alpha, gen):
    size = height, width = (30, 50)
    minmax = (0.2, 0.8)
    lo_h, hi_h, lo_w, hi_w = int(height * minmax[0]), int(height * minmax[1]), int(width * minmax[0]), \
        int(width * minmax[1])
    plan = mixup_cutmix_plan(4000, size, mixup_alpha=mixup_alpha, cutmix_minmax=minmax, correct_lam=False,
                             mode="elem", generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    if mixup_alpha == 0:
        assert bool(cut.all()), f"minmax without mixup: kinds {plan.kind.unique().tolist()}"
    h, w = y1 - y0, x1 - x0
    assert bool(((h >= lo_h) & (h < hi_h)).all()), f"heights outside [{lo_h}, {hi_h}): {h.unique().tolist()}"
    assert bool(((w >= lo_w) & (w < hi_w)).all()), f"widths outside [{lo_w}, {hi_w}): {w.unique().tolist()}"
    assert h.unique().numel() == hi_h - lo_h and w.unique().numel() == hi_w - lo_w, "some box sides never drawn"
    # fully inside; timm draws the corner with randint(0, H - h + 1): both edges are reached
    assert bool(((y0 >= 0) & (y1 <= height) & (x0 >= 0) & (x1 <= width)).all()), "box not inside the image"
    assert int((y0 == 0).sum()) > 10 and int((y1 == height).sum()) > 10, "boxes never touch the top/bottom edge"
    assert int((x0 == 0).sum()) > 10 and int((x1 == width).sum()) > 10, "boxes never touch the left/right edge"
    kept = 1 - (h * w).double() / (height * width)
    err = (plan.label_lam[cut].double() - kept).abs().max()
    assert float(err) <= 2 ** -23, f"minmax label_lam is not the kept fraction (off by {float(err)})"


@pytest.mark.parametrize("style", ["timm", "torchvision"])
def test_cutmix_box_centres_are_uniform(style, gen):
    # λ > 0, so timm's cut < H and torchvision's 2 * half < H: a box clipped at the top (lo == 0) has
    # hi <= cut (or 2 * half) < H, is never clipped at both ends, and its centre is recoverable
    size = height, width = (17, 23)
    plan = mixup_cutmix_plan(6000, size, mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, mode="elem",
                             box_style=style, generator=gen)
    cut, y0, y1, x0, x1 = _cutmix_rows(plan)
    lam = plan.label_lam[cut].tolist()
    for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
        low, high, _ = box_offsets(style, extent, lam)
        centre = torch.where(lo > 0, lo + low, hi - high)
        assert bool((hi < extent)[lo == 0].all()), f"{style} {axis}: a box clipped at both ends"
        assert_uniform_ints(centre, extent, f"CutMix ({style}) centre {axis}")


def test_mixup_cutmix_errors():
    with pytest.raises(ValueError, match="mode"):
        mixup_cutmix_plan(4, (8, 8), mode="sample")
    with pytest.raises(ValueError, match="alpha"):
        mixup_cutmix_plan(4, (8, 8), mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="size"):
        mixup_cutmix_plan(4, None, mixup_alpha=1.0, cutmix_alpha=1.0)
    with pytest.raises(ValueError, match="size"):
        mixup_cutmix_plan(4, None, mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8))
    with pytest.raises(ValueError, match="cutmix_minmax"):
        mixup_cutmix_plan(4, (8, 8), cutmix_minmax=(0.5, 0.55))


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
# 4. sampling stays on the device
# --------------------------------------------------------------------------------------------

META_SAMPLERS = {
    **{f"mixcut-{mode}-{pairing}": (lambda mode=mode, pairing=pairing: mixup_cutmix_plan(
        8, (16, 24), mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, pairing=pairing, device="meta"))
       for mode in ("batch", "pair", "elem") for pairing in ("flip", "roll")},
    "mixup-only-odd": lambda: mixup_cutmix_plan(7, None, mixup_alpha=0.8, mode="elem", device="meta"),
    "cutmix-minmax": lambda: mixup_cutmix_plan(8, (16, 24), cutmix_minmax=(0.2, 0.8), mode="pair", device="meta"),
    "cutmix-uncorrected": lambda: mixup_cutmix_plan(8, (16, 24), mixup_alpha=0.0, cutmix_alpha=1.0,
                                                    correct_lam=False, device="meta"),
    "cutout": lambda: cutout_plan(8, (16, 24), n_holes=3, length=6, p=0.5, device="meta"),
    "cutout-rgb": lambda: cutout_plan(8, (16, 24), fill=(0.1, 0.2, 0.3), device="meta"),
    "erasing-number": lambda: erasing_plan(8, (16, 24), value=0.5, device="meta"),
    "erasing-random": lambda: erasing_plan(8, (16, 24), value="random", device="meta"),
    "mixup_plan": lambda: mixup_plan(torch.rand(8, device="meta")),
    "cutmix_plan": lambda: cutmix_plan(torch.zeros(8, 4, dtype=torch.int32, device="meta"), (16, 24),
                                       partner=torch.arange(8, device="meta")),
}


def test_meta_tensors_cannot_be_read():
    # the premise of the meta tests: any host read of a sampled value raises
    with pytest.raises(Exception):
        torch.zeros(1, device="meta").item()
    with pytest.raises(Exception):
        bool(torch.zeros(1, device="meta") < 1)


@pytest.mark.parametrize("name", sorted(META_SAMPLERS))
def test_samplers_run_on_meta(name):
    plan = META_SAMPLERS[name]()
    assert plan.device.type == "meta"
    for field, t in tensors_of(plan).items():
        assert t.device.type == "meta", f"{name}: {field} is on {t.device}"
    cycles = plan.cycles
    for field in ("walk", "cycle_start"):
        t = getattr(cycles, field)
        assert t.device.type == "meta", f"{name}: cycles.{field} is on {t.device}"
    assert cycles.walk.shape == (plan.batch_size,) and cycles.cycle_start.shape == (plan.batch_size + 1,)
    for_masks = plan.for_masks()
    for field, t in tensors_of(for_masks).items():
        assert t.device.type == "meta", f"{name}: for_masks().{field} is on {t.device}"


def test_pointer_jumping_runs_on_meta():
    partner = torch.arange(9, device="meta")
    cycles = cycles_of(partner, "perm")
    assert cycles.walk.device.type == "meta" and cycles.cycle_start.device.type == "meta"
    assert cycles.walk.shape == (9,) and cycles.cycle_start.shape == (10,)
    assert cycles.walk.dtype == torch.int32 and cycles.cycle_start.dtype == torch.int32


@pytest.mark.slow
def test_sampler_compiles_without_graph_break():
    import torch._dynamo
    from torch._dynamo.utils import counters

    def step(x):
        plan = mixup_cutmix_plan(x.shape[0], (x.shape[-2], x.shape[-1]), mode="elem", mixup_alpha=0.8,
                                 cutmix_alpha=1.0, device=x.device)
        return plan.partner, plan.lam_self, plan.lam_partner, plan.box, plan.label_lam, plan.kind

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x = torch.zeros(64, 3, 16, 24)
    partner, lam_self, lam_partner, box, label_lam, kind = compiled(x)
    assert counters["stats"]["unique_graphs"] == 1, f"expected one graph, got {dict(counters['stats'])}"
    assert not counters["graph_break"], f"graph breaks: {dict(counters['graph_break'])}"
    assert partner.tolist() == list(range(63, -1, -1))
    assert set(kind.unique().tolist()) <= {NONE, MIXUP, CUTMIX}
    assert {MIXUP, CUTMIX} <= set(kind.unique().tolist()), f"64 elem draws gave kinds {kind.unique().tolist()}"
    assert bool(((label_lam >= 0) & (label_lam <= 1)).all())
    assert bool((lam_self[kind == CUTMIX] == 0).all() & (lam_partner[kind == CUTMIX] == 1).all())
    cut_box = box[kind == CUTMIX, 0]
    assert bool(((cut_box[:, 1] <= 16) & (cut_box[:, 3] <= 24) & (cut_box[:, 0] < cut_box[:, 1])).all())
    again = compiled(x)
    assert not torch.equal(again[1], lam_self), "the compiled sampler returned the same λ twice"


# --------------------------------------------------------------------------------------------
# 5. reproducibility
# --------------------------------------------------------------------------------------------

REPRO_SAMPLERS = {
    "mixcut-elem": lambda g: mixup_cutmix_plan(16, (20, 28), mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem",
                                               generator=g),
    "mixcut-pair-roll": lambda g: mixup_cutmix_plan(16, (20, 28), mixup_alpha=0.8, cutmix_alpha=1.0, mode="pair",
                                                    pairing="roll", generator=g),
    "mixcut-minmax": lambda g: mixup_cutmix_plan(16, (20, 28), cutmix_minmax=(0.2, 0.8), mode="elem", generator=g),
    "cutout": lambda g: cutout_plan(16, (20, 28), n_holes=2, length=8, p=0.5, generator=g),
    "erasing-random": lambda g: erasing_plan(16, (20, 28), p=1.0, value="random", generator=g),
}


@pytest.mark.parametrize("name", sorted(REPRO_SAMPLERS))
def test_same_seed_same_plan(name):
    # the global RNG is moved between the two draws: a draw that ignores the generator shows up
    torch.manual_seed(1)
    first = tensors_of(REPRO_SAMPLERS[name](seeded(99)))
    torch.manual_seed(2)
    torch.rand(17)
    second = tensors_of(REPRO_SAMPLERS[name](seeded(99)))
    assert first.keys() == second.keys()
    for field in first:
        assert torch.equal(first[field], second[field]), f"{name}: {field} differs under the same seed"


@pytest.mark.parametrize("name", sorted(REPRO_SAMPLERS))
def test_different_seeds_differ(name):
    a, b = REPRO_SAMPLERS[name](seeded(1)), REPRO_SAMPLERS[name](seeded(2))
    if name.startswith("mixcut"):
        assert not torch.equal(a.label_lam, b.label_lam), f"{name}: seeds 1 and 2 gave the same λ"
    else:
        assert not torch.equal(a.box, b.box), f"{name}: seeds 1 and 2 gave the same boxes"
    if name == "erasing-random":
        assert not torch.equal(a.noise_seed, b.noise_seed), "erasing: seeds 1 and 2 gave the same noise seed"


# --------------------------------------------------------------------------------------------
# 6. Cutout
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [8, 7])
def test_cutout_boxes(length, gen):
    size = height, width = (17, 23)
    n, holes = 3000, 2
    plan = cutout_plan(n, size, n_holes=holes, length=length, fill=0.25, generator=gen)
    assert plan.box.shape == (n, holes, 4) and plan.box.dtype == torch.int32
    assert bool((plan.kind == ERASE).all()), f"p=1: kinds {plan.kind.unique().tolist()}"
    assert bool((plan.label_lam == 1).all() & (plan.lam_self == 0).all() & (plan.lam_partner == 0).all())
    assert torch.equal(plan.partner, torch.arange(n)) and plan.pairing == "self"
    assert plan.fill.shape == (n, 1) and bool((plan.fill == 0.25).all()) and plan.noise_seed is None
    box = plan.box.reshape(-1, 4).long()
    y0, y1, x0, x1 = box.unbind(1)
    half = length // 2
    for axis, lo, hi, extent in (("y", y0, y1, height), ("x", x0, x1, width)):
        side = hi - lo
        assert bool(((lo >= 0) & (hi <= extent)).all()), f"{axis}: hole outside the image"
        assert bool(((side > 0) & (side <= length)).all()), \
            f"{axis}: sides {side.unique().tolist()} not in (0, {length}]"
        inside = (lo > 0) & (hi < extent)
        assert bool((side[inside] == 2 * half).all()), f"{axis}: unclipped sides {side[inside].unique().tolist()}"
        assert int((side < 2 * half).sum()) > 0, f"{axis}: no hole is clipped at the border"
        centre = torch.where(lo > 0, lo + half, hi - half)
        assert_uniform_ints(centre, extent, f"Cutout centre {axis} (length {length})")


def test_cutout_p_and_fill_per_channel(gen):
    n = 4000
    plan = cutout_plan(n, (16, 16), n_holes=3, length=6, fill=(0.1, 0.2, 0.3), p=0.35, generator=gen)
    erased = plan.kind == ERASE
    assert_binomial(int(erased.sum()), n, 0.35, "cutout p=0.35: erased rows")
    assert bool((plan.box[~erased] == 0).all()), "a row that was not cut still has boxes"
    nonempty = (plan.box[..., 0] < plan.box[..., 1]) & (plan.box[..., 2] < plan.box[..., 3])
    assert bool(nonempty[erased].all()), "a cut row has an empty hole"
    assert bool((plan.label_lam == 1).all()), "cutout must leave labels unchanged"
    assert plan.fill.shape == (n, 3)
    assert torch.allclose(plan.fill, torch.tensor([0.1, 0.2, 0.3]).expand(n, 3))


# --------------------------------------------------------------------------------------------
# 7. Random Erasing
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale, ratio", [((0.02, 0.33), (0.3, 3.3)), ((0.1, 0.2), (0.5, 2.0))])
def test_erasing_boxes(scale, ratio, gen):
    size = height, width = (40, 56)
    n = 3000
    plan = erasing_plan(n, size, p=1.0, scale=scale, ratio=ratio, value=0.5, generator=gen)
    assert plan.box.shape == (n, 1, 4)
    erased = plan.kind == ERASE
    assert int(erased.sum()) > n - 5, f"p=1: only {int(erased.sum())}/{n} rows erased"
    assert bool((plan.label_lam == 1).all() & (plan.lam_self == 0).all() & (plan.lam_partner == 0).all())
    y0, y1, x0, x1 = plan.box[erased, 0].long().unbind(1)
    h, w = (y1 - y0).double(), (x1 - x0).double()
    assert bool(((y0 >= 0) & (x0 >= 0) & (y1 <= height) & (x1 <= width)).all()), "box outside the image"
    # torchvision accepts an attempt only when h < H and w < W
    assert bool(((h > 0) & (h < height) & (w > 0) & (w < width)).all()), "box side out of (0, H) x (0, W)"
    # h = round(sqrt(A r)), w = round(sqrt(A / r)) with A/(HW) in [s0, s1] and r in [r0, r1]: the unrounded
    # sides lie in [h - 1/2, h + 1/2] x [w - 1/2, w + 1/2], so A = h_t w_t and r = h_t / w_t are bounded by
    area, tiny = height * width, 1e-9
    low_area, high_area = (h - 0.5) * (w - 0.5) / area, (h + 0.5) * (w + 0.5) / area
    bad = (high_area < scale[0] - tiny) | (low_area > scale[1] + tiny)
    assert not bool(bad.any()), f"area fractions {(h * w / area)[bad][:5].tolist()} outside {scale} after rounding"
    low_ratio, high_ratio = (h - 0.5) / (w + 0.5), (h + 0.5) / (w - 0.5)
    bad = (high_ratio < ratio[0] - tiny) | (low_ratio > ratio[1] + tiny)
    assert not bool(bad.any()), f"aspect ratios {(h / w)[bad][:5].tolist()} outside {ratio} after rounding"
    # and the draws fill the ranges (the checks above would pass for a constant box too)
    frac = h * w / area
    assert float(frac.min()) < scale[0] + 0.1 * (scale[1] - scale[0]), f"smallest area {float(frac.min()):.3f}"
    assert float(frac.max()) > scale[1] - 0.1 * (scale[1] - scale[0]), f"largest area {float(frac.max()):.3f}"
    log_r = (h / w).log()
    span = math.log(ratio[1]) - math.log(ratio[0])
    assert float(log_r.min()) < math.log(ratio[0]) + 0.2 * span and float(log_r.max()) > math.log(ratio[1]) - 0.2 * span
    # positions are uniform in [0, H - h] inclusive (torchvision's randint(0, H - h + 1)): both edges are reached
    assert int((y0 == 0).sum()) > 10 and int((y1 == height).sum()) > 10, "boxes never touch the top/bottom edge"
    assert int((x0 == 0).sum()) > 10 and int((x1 == width).sum()) > 10, "boxes never touch the left/right edge"
    assert plan.box[erased, 0].unique(dim=0).shape[0] > n // 2, "per-sample boxes are not independent"


def test_erasing_p_and_values(gen):
    n = 4000
    plan = erasing_plan(n, (40, 56), p=0.3, value=(0.1, 0.2, 0.3), generator=gen)
    erased = plan.kind == ERASE
    assert_binomial(int(erased.sum()), n, 0.3, "erasing p=0.3: erased rows")
    assert bool((plan.box[~erased] == 0).all()), "a row that was not erased has a box"
    assert plan.fill.shape == (n, 3) and plan.noise_seed is None
    assert torch.allclose(plan.fill, torch.tensor([0.1, 0.2, 0.3]).expand(n, 3))
    single = erasing_plan(8, (40, 56), value=0.0, generator=gen)
    assert single.fill.shape == (8, 1) and bool((single.fill == 0).all())
    noise = erasing_plan(8, (40, 56), p=1.0, value="random", generator=gen)
    assert noise.fill is None, "value='random' must not store a fill"
    assert noise.noise_seed is not None and noise.noise_seed.shape == (1,) and noise.noise_seed.dtype == torch.int64
    assert noise.has_fill


def test_erasing_gives_up_when_nothing_fits(gen):
    # a 2x2 image admits no box with h < 2, w < 2 and area >= 0.9 * 4: every attempt fails
    plan = erasing_plan(64, (2, 2), p=1.0, scale=(0.9, 1.0), generator=gen)
    assert bool((plan.kind == NONE).all()), f"kinds {plan.kind.tolist()}"
    assert bool((plan.box == 0).all())


# --------------------------------------------------------------------------------------------
# 8. masks and logging
# --------------------------------------------------------------------------------------------

def test_for_masks(gen):
    n = 400
    plan = mixup_cutmix_plan(n, (24, 40), mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.8, mode="elem", generator=gen)
    masks = plan.for_masks(ignore_index=7)
    mix, cut, none = plan.kind == MIXUP, plan.kind == CUTMIX, plan.kind == NONE
    assert int(mix.sum()) > 50 and int(cut.sum()) > 50 and int(none.sum()) > 20
    # Mixup rows: an empty region and weights (1, 0) make the row a no-op
    y0, y1, x0, x1 = masks.box[mix].unbind(-1)
    assert bool(((y0 >= y1) | (x0 >= x1)).all()), "for_masks: a Mixup row still has a region"
    assert bool((masks.lam_self[mix] == 1).all() & (masks.lam_partner[mix] == 0).all())
    # CutMix and untouched rows are kept as they are
    keep = cut | none
    for field in ("box", "lam_self", "lam_partner"):
        assert torch.equal(getattr(masks, field)[keep], getattr(plan, field)[keep]), f"for_masks changed {field}"
    assert torch.equal(masks.partner, plan.partner) and torch.equal(masks.kind, plan.kind)
    assert torch.equal(masks.label_lam, plan.label_lam)
    assert masks.size == plan.size and masks.noise_seed is None

    erase = erasing_plan(64, (24, 40), p=0.5, value="random", generator=gen).for_masks()
    assert erase.noise_seed is None, "masks must not be filled with noise"
    assert erase.fill.shape == (64, 1) and bool((erase.fill == 255).all()), "erased mask pixels must be ignore_index"
    assert bool((erase.lam_self == 0).all() & (erase.lam_partner == 0).all()), "erase rows must write the fill"
    cut_out = cutout_plan(64, (24, 40), n_holes=2, fill=0.5, generator=gen)
    masks = cut_out.for_masks(ignore_index=-1)
    assert torch.equal(masks.box, cut_out.box) and bool((masks.fill == -1).all())


def test_describe(gen):
    n = 64
    size = (24, 40)
    plan = mixup_cutmix_plan(n, size, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.8, mode="elem", generator=gen)
    rows = plan.describe()
    assert len(rows) == n
    for i, row in enumerate(rows):
        assert set(row) == {"kind", "partner", "lam_self", "lam_partner", "label_lam", "boxes"}, f"row {i}: {set(row)}"
        assert row["kind"] == KIND_NAMES[int(plan.kind[i])] and row["partner"] == int(plan.partner[i])
        for field in ("lam_self", "lam_partner", "label_lam"):
            assert row[field] == float(getattr(plan, field)[i]), f"row {i}: {field} {row[field]}"
        assert abs(row["lam_self"] + row["lam_partner"] - 1) <= 1e-6, f"row {i}: weights {row}"
        if row["kind"] == "none":
            assert row["boxes"] == [] and row["label_lam"] == 1.0, f"row {i}: {row}"
        elif row["kind"] == "mixup":
            assert row["boxes"] == [[0, FULL, 0, FULL]] and row["label_lam"] == row["lam_self"], f"row {i}: {row}"
        else:
            assert row["kind"] == "cutmix", f"row {i}: {row}"
            [(y0, y1, x0, x1)] = row["boxes"]
            assert 0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1], f"row {i}: {row}"
            assert row["lam_self"] == 0 and row["lam_partner"] == 1
            assert abs(row["label_lam"] - (1 - (y1 - y0) * (x1 - x0) / (size[0] * size[1]))) <= 2 ** -23
    holes = cutout_plan(8, size, n_holes=3, length=6, p=0.5, generator=gen).describe()
    for i, row in enumerate(holes):
        assert row["kind"] in ("erase", "none") and row["partner"] == i and row["label_lam"] == 1.0
        assert len(row["boxes"]) == (3 if row["kind"] == "erase" else 0), f"cutout row {i}: {row}"
        assert row["lam_self"] == 0 and row["lam_partner"] == 0
