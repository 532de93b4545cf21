"""The piece samplers: three implementations of one function of the uniforms — the torch
specification (``fastmix/piece_draws.py``), the host's batch-mode draw on Python floats (CPU
tensors) and the fused Triton kernel (``kernels/sample_pieces.py``, the CUDA path, under the
interpreter without a GPU) — give one plan on the same uniforms: sources, boxes and label rows
exactly, weights to float32 rounding, for every member, mode and option and batch sizes 0, 1, odd
and even; the fused targets are the targets of that plan. Then the draws against the papers'
distributions in both modes, and the partner rule's."""
import math

import pytest
import torch

from fastmix import piece_draws
from fastmix.family import dirichlet_plan, resizemix_plan, ricap_plan
from fastmix.piece_draws import DirichletSpec, ResizeMixSpec, RicapSpec, multipliers
from fastmix.pieces import pieces_targets
from helpers import (assert_binomial, assert_same_fields, assert_uniform_ints, ks_one_sample, ks_one_sample_critical,
                     requires_triton, seeded)
from pieces_cases import H, W, incomplete_beta

SIZE = (13, 17)
BATCHES = (0, 1, 7, 8)
SPECS = [RicapSpec.checked(beta, prob, mode) for beta, prob in ((0.3, 1.0), (2.0, 0.6)) for mode in ("batch", "elem")]
SPECS += [DirichletSpec.checked(alpha, k, prob, mode) for alpha, k, prob in ((1.0, 3, 1.0), (0.2, 2, 0.6), (3.0, 6, 0.8))
          for mode in ("batch", "elem")]
SPECS += [ResizeMixSpec.checked(scope, rule, prob, mode) for scope, rule, prob in
          (((0.1, 0.8), "nearest", 1.0), ((0.3, 0.9), "bilinear", 0.6), ((0.5, 0.5), "nearest", 0.7))
          for mode in ("batch", "elem")]
FIELDS = ("src", "weight", "dst_box", "src_box", "label_row", "label_weight")


def _assert_same_plan(want, got, what):
    assert got.size == want.size and got.resize == want.resize, f"{what}: size or resize rule"
    assert_same_fields(((name, getattr(want, name), getattr(got, name)) for name in FIELDS), what)


def _uniforms(spec, batch, gen):
    return torch.rand(spec.count(batch), generator=gen)


@requires_triton
@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_fused_sampler_is_the_specification(spec):
    from fastmix.kernels.sample_pieces import PieceSampler

    gen = seeded(len(repr(spec)))
    for batch in BATCHES:
        table = torch.tensor(multipliers(batch))
        for labels in (torch.randint(0, 11, (batch,), generator=gen), torch.rand(batch, 11, generator=gen)):
            u = _uniforms(spec, batch, gen)
            want = spec.from_uniforms(u, batch, SIZE, 0.0, table)
            got, targets = PieceSampler(spec, batch, SIZE, table)(u, 0.0, labels, 11, 0.1)
            _assert_same_plan(want, got, f"fused B={batch}")
            expected = pieces_targets(labels, want, 11, 0.1, validate=False)
            assert torch.allclose(targets, expected, atol=1e-6, rtol=0), f"fused targets B={batch}"


@requires_triton
def test_fused_sampler_rotates_and_marks_bad_labels_as_the_specification():
    from fastmix.kernels.sample_pieces import PieceSampler

    spec, batch = DirichletSpec.checked(0.7, 4, 0.9, "elem"), 9
    table = torch.tensor(multipliers(batch))
    u = _uniforms(spec, batch, seeded(5))
    want = spec.from_uniforms(u, batch, SIZE, 0.618, table)
    got, targets = PieceSampler(spec, batch, SIZE, table)(u, 0.618, torch.tensor([0, 1, 99, 3, -4, 5, 6, 7, 8]), 10, 0.0)
    _assert_same_plan(want, got, "rotated")
    assert not torch.equal(spec.from_uniforms(u, batch, SIZE, 0.0, table).weight, want.weight)
    nan_rows = targets.isnan().all(1)
    # a row is NaN exactly where a label piece of non-zero weight names a bad index
    bad = (torch.tensor([0, 1, 99, 3, -4, 5, 6, 7, 8])[want.label_row] >= 10) | \
        (torch.tensor([0, 1, 99, 3, -4, 5, 6, 7, 8])[want.label_row] < 0)
    assert torch.equal(nan_rows, (bad & (want.label_weight != 0)).any(1))


@pytest.mark.parametrize("spec", [s for s in SPECS if s.mode == "batch"], ids=repr)
@pytest.mark.parametrize("offset", [0.0, 0.37])
def test_host_draw_is_the_specification(spec, offset):
    """CPU batch mode draws on Python floats from the same uniforms: the spec's plan."""
    gen = seeded(len(repr(spec)) + 1)
    for batch in BATCHES + (64,):
        for _ in range(20):
            u = _uniforms(spec, batch, gen)
            want = spec.from_uniforms(u, batch, SIZE, offset, torch.tensor(multipliers(batch)))
            _assert_same_plan(want, spec.host(u.tolist(), batch, SIZE, offset, multipliers(batch)), f"host B={batch}")


def test_batch_mode_draws_once_for_the_batch():
    """Every row of a batch-mode plan has the same boxes and weights; per-sample plans differ."""
    for make in (ricap_plan, dirichlet_plan, resizemix_plan):
        for mode in ("batch", "elem"):
            plan = make(40, SIZE, mode=mode, generator=seeded(3))
            same = all(bool((t == t[:1]).all()) for t in (plan.weight, plan.dst_box, plan.src_box))
            assert same == (mode == "batch"), f"{make.__name__} {mode}"


# --------------------------------------------------------------------------------------------
# the partner rule
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 2, 6, 7, 12])
def test_partners_are_permutations_uniform_per_row_and_independent_across_slots(batch):
    """Each slot's partners are a permutation; over draws a row's partner is uniform on the batch,
    and two slots' partners of a row are independent (uniform on the B x B pairs)."""
    n = 3000
    spec = RicapSpec.checked(mode="batch")
    u = torch.rand(n, spec.count(batch), generator=seeded(batch))
    table = torch.tensor(multipliers(batch))
    src = torch.stack([spec.from_uniforms(u[t], batch, SIZE, 0.0, table).src for t in range(n)])   # (n, B, 4)
    assert torch.equal(src.sort(1).values, torch.arange(batch)[None, :, None].expand(n, batch, 4))
    if batch > 1:
        assert_uniform_ints(src[:, batch - 1, 2], batch, f"partner of row {batch - 1}, B={batch}")
        assert_uniform_ints(src[:, 0, 0] * batch + src[:, 0, 3], batch * batch, f"two slots' partners, B={batch}")


def test_partners_of_a_prime_batch_are_uniform_on_ordered_pairs():
    """For a prime B the affine permutations are sharply 2-transitive: rows 0 and 3 draw every
    ordered pair of distinct partners alike, as under a uniformly random permutation."""
    batch, n = 7, 4000
    spec = ResizeMixSpec.checked(mode="elem")
    table = torch.tensor(multipliers(batch))
    u = torch.rand(n, spec.count(batch), generator=seeded(2))
    src = torch.stack([spec.from_uniforms(u[t], batch, SIZE, 0.0, table).src[:, 0] for t in range(n)])
    pair = src[:, 0] * batch + src[:, 3]
    assert bool((src[:, 0] != src[:, 3]).all())
    distinct = torch.tensor([p * batch + q for p in range(batch) for q in range(batch) if p != q])
    index = torch.searchsorted(distinct, pair)
    assert torch.equal(distinct[index], pair)
    assert_uniform_ints(index, batch * (batch - 1), "ordered partner pairs of rows 0 and 3, B=7")


def test_multipliers_are_the_units_of_the_batch():
    assert multipliers(0) == multipliers(1) == multipliers(2) == [1]
    assert multipliers(12) == [1, 5, 7, 11] and multipliers(7) == [1, 2, 3, 4, 5, 6]
    assert all(math.gcd(a, 30) == 1 for a in multipliers(30)) and len(multipliers(30)) == 8


# --------------------------------------------------------------------------------------------
# distributions: per sample (both samplers), and per batch (the host's draw, many batches)
# --------------------------------------------------------------------------------------------

def _discrete_ks(values: torch.Tensor, cdf_at) -> float:
    """sup over integers n of |F_emp(n) - F(n)| (a lower bound of the continuous KS statistic,
    so the continuous critical value is conservative)."""
    values = values.long()
    lo, hi = int(values.min()), int(values.max())
    grid = torch.arange(lo - 1, hi + 1)
    emp = (values[None, :] <= grid[:, None]).double().mean(1)
    return float((emp - torch.tensor([cdf_at(int(n)) for n in grid], dtype=torch.float64)).abs().max())


def _jittered_uniform(pos: torch.Tensor, count: torch.Tensor, gen) -> torch.Tensor:
    """An integer uniform on 0..count-1 plus U(0, 1) jitter, over count: U(0, 1) exactly."""
    return (pos.double() + torch.rand(pos.shape, generator=gen, dtype=torch.float64)) / count.double()


def _draws(make, n: int, mode: str, **kwargs):
    """``n`` independent draws' first rows: one plan of ``n`` samples per sample (elem), or the
    first row of ``n`` batch-mode plans of 3 samples (each a batch's one draw)."""
    if mode == "elem":
        return make(n, mode="elem", generator=seeded(7), **kwargs)
    gen = seeded(7)
    plans = [make(3, mode="batch", generator=gen, **kwargs) for _ in range(n)]
    return type(plans[0]).trusted(*(torch.cat([getattr(p, f)[:1] for p in plans]) for f in FIELDS), plans[0].size,
                                  plans[0].resize)


@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_ricap_boundary_is_round_of_beta_and_crops_are_uniform(mode, each_sampler):
    if mode == "batch" and each_sampler == "fused":
        pytest.skip("batch mode: one launch a draw; the fused sampler equals the spec on any uniforms")
    n, size, beta = 3000 if mode == "elem" else 1500, (40, 60), 0.3
    plan = _draws(lambda b, **kw: ricap_plan(b, size, beta=beta, **kw), n, mode)
    h, w = plan.dst_box[:, 0, 1], plan.dst_box[:, 0, 3]
    for what, v, side in (("h", h, size[0]), ("w", w, size[1])):
        stat = _discrete_ks(v, lambda m: incomplete_beta((m + 0.5) / side, beta, beta))
        assert stat < ks_one_sample_critical(n), f"RICAP {mode} boundary {what}: KS {stat:.4f}"
    # quadrants tile the image, sources are the same size
    area = ((plan.dst_box[..., 1] - plan.dst_box[..., 0]) * (plan.dst_box[..., 3] - plan.dst_box[..., 2])).sum(1)
    assert torch.equal(area, torch.full((n,), size[0] * size[1]))
    assert torch.equal(plan.src_box[..., 1] - plan.src_box[..., 0], plan.dst_box[..., 1] - plan.dst_box[..., 0])
    gen = seeded(8)
    for k in range(4):
        qh = plan.src_box[:, k, 1] - plan.src_box[:, k, 0]
        qw = plan.src_box[:, k, 3] - plan.src_box[:, k, 2]
        for pos, count in ((plan.src_box[:, k, 0], size[0] - qh + 1), (plan.src_box[:, k, 2], size[1] - qw + 1)):
            stat = ks_one_sample(_jittered_uniform(pos, count, gen), lambda t: t.clamp(0, 1))
            assert stat < ks_one_sample_critical(n), f"RICAP {mode} crop of quadrant {k}: KS {stat:.4f}"


@pytest.mark.parametrize("mode", ["elem", "batch"])
@pytest.mark.parametrize("alpha,k", [(1.0, 3), (0.5, 4)])
def test_dirichlet_marginals_are_beta(alpha, k, mode, each_sampler):
    if mode == "batch" and each_sampler == "fused":
        pytest.skip("batch mode: one launch a draw; the fused sampler equals the spec on any uniforms")
    n = 3000 if mode == "elem" else 1500
    plan = _draws(lambda b, **kw: dirichlet_plan(b, (H, W), alpha=alpha, k=k, **kw), n, mode)
    assert torch.allclose(plan.weight.sum(1), torch.ones(n), atol=1e-6)
    b = (k - 1) * alpha
    for j in (0, k - 1):
        stat = ks_one_sample(plan.weight[:, j], lambda t: torch.tensor([incomplete_beta(float(v), alpha, b)
                                                                          for v in t], dtype=torch.float64))
        assert stat < ks_one_sample_critical(n), f"Dirichlet {mode} weight {j}: KS {stat:.4f} vs Beta({alpha}, {b})"
    assert torch.equal(plan.src[:, 0], torch.zeros(n, dtype=torch.int64) if mode == "batch" else torch.arange(n))


@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_resizemix_tau_is_uniform_and_the_box_position_too(mode, each_sampler):
    if mode == "batch" and each_sampler == "fused":
        pytest.skip("batch mode: one launch a draw; the fused sampler equals the spec on any uniforms")
    n, size, scope = 3000 if mode == "elem" else 1500, (500, 300), (0.1, 0.8)
    plan = _draws(lambda b, **kw: resizemix_plan(b, size, scope=scope, **kw), n, mode)
    box = plan.dst_box[:, 0]
    for side, lo, hi in ((size[0], box[:, 0], box[:, 1]), (size[1], box[:, 2], box[:, 3])):
        stat = _discrete_ks(hi - lo, lambda m: min(max(((m + 0.5) / side - scope[0]) / (scope[1] - scope[0]), 0), 1))
        assert stat < ks_one_sample_critical(n), f"ResizeMix {mode} box side: KS {stat:.4f}"
        stat = ks_one_sample(_jittered_uniform(lo, side - (hi - lo) + 1, seeded(12)), lambda t: t.clamp(0, 1))
        assert stat < ks_one_sample_critical(n), f"ResizeMix {mode} box position: KS {stat:.4f}"
    fixed = _draws(lambda b, **kw: resizemix_plan(b, (H, W), scope=(0.5, 0.5), **kw), 800, mode).dst_box[:, 0]
    assert_uniform_ints(fixed[:, 0], H - 4 + 1, f"ResizeMix {mode} y0")
    assert_uniform_ints(fixed[:, 2], W - 6 + 1, f"ResizeMix {mode} x0")
    own = 1 - (box[:, 1] - box[:, 0]).double() * (box[:, 3] - box[:, 2]).double() / (size[0] * size[1])
    assert torch.allclose(plan.label_weight[:, 1].double(), own, atol=1e-7)


@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_prob_selects_about_prob_of_the_samples_or_batches(mode):
    """elem: each sample with probability prob; batch: the whole batch (timm's batch mode)."""
    n = 2000 if mode == "elem" else 600
    plan = _draws(lambda b, **kw: dirichlet_plan(b, (H, W), prob=0.3, **kw), n, mode)
    assert_binomial(int((plan.dst_box[:, 0, 1] > 0).sum()), n, 0.3, f"selected ({mode})")
    one = dirichlet_plan(50, (H, W), prob=0.5, mode="batch", generator=seeded(1))
    assert len(set((one.dst_box[:, 0, 1] > 0).tolist())) == 1, "batch mode selects all rows or none"


def test_uniform_counts_follow_the_layout():
    """One unit for the batch or one per sample, then two uniforms per partner slot."""
    assert RicapSpec.checked(mode="batch").count(10) == piece_draws.RICAP_UNIT + 8
    assert RicapSpec.checked(mode="elem").count(10) == 10 * piece_draws.RICAP_UNIT + 8
    assert DirichletSpec.checked(k=5, mode="elem").count(4) == 4 * (5 * piece_draws.G + 1) + 8
    assert ResizeMixSpec.checked(mode="batch").count(0) == 4 + 2
