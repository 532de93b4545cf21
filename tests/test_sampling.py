"""Plan sampling with timm's Mixup-CutMix semantics: Beta draws, the plan's fields, one draw per
batch / per pair / per sample (``mode``), the odd middle sample and tiny batches, ``prob`` and
``switch_prob`` as frequencies, each kind's λ from its own alpha, Mixup rows, ``Plan.describe``.

Distribution checks use a fixed seed and bounds derived in the test (binomial z-scores, KS
critical values at about the 0.001 level, from ``helpers``), never numbers copied from a run.
"""
from __future__ import annotations

import math

import pytest
import torch

from fastmix.layout import FULL
from fastmix.functional import cutout_plan, mixup_cutmix_plan, sample_beta
from fastmix.plan import CUTMIX, KIND_NAMES, MIXUP, NONE
from helpers import Z, assert_binomial, ks_one_sample, ks_one_sample_critical, tensors_of

BETA_CDFS = {
    1.0: lambda x: x,
    0.5: lambda x: 2 / math.pi * torch.asin(torch.sqrt(x)),
    2.0: lambda x: 3 * x ** 2 - 2 * x ** 3,
}

# every distribution here must hold for the host sampler and for the fused Triton one
pytestmark = pytest.mark.usefixtures("each_sampler")


@pytest.mark.parametrize("alpha", sorted(BETA_CDFS))
def test_sample_beta_matches_beta_cdf(alpha, gen):
    n = 20000
    lam = sample_beta(alpha, n, generator=gen)
    assert lam.shape == (n,) and lam.dtype == torch.float32
    assert bool(((lam >= 0) & (lam <= 1)).all()), f"alpha={alpha}: draws outside [0, 1]"
    d = ks_one_sample(lam, BETA_CDFS[alpha])
    assert d < ks_one_sample_critical(n), f"alpha={alpha}: KS distance {d:.4f} >= {ks_one_sample_critical(n):.4f}"


def test_sample_beta_ks_rejects_wrong_alpha(gen):
    # the KS check has power: Beta(0.5) draws are far from Beta(2)
    lam = sample_beta(0.5, 20000, generator=gen)
    assert ks_one_sample(lam, BETA_CDFS[2.0]) > ks_one_sample_critical(20000)


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


# Mixup / CutMix plans (timm's Mixup)

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
        d = ks_one_sample(lam, BETA_CDFS[alpha])
        limit = ks_one_sample_critical(lam.numel())
        assert d < limit, f"{KIND_NAMES[kind]} rows: λ is not Beta({alpha}) (KS {d:.4f} >= {limit:.4f})"


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
