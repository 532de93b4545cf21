"""Piece plans (RICAP, DirichletMixup, ResizeMix): the reference against independent oracles, the
label weight of every contributing sample equal to its pixel share, the draws against the papers'
distributions, bad arguments and hostile plans refused, and the Triton pass (under the
interpreter without a GPU) equal to the reference, with its traffic counted.

Pixel shares are read from *one-hot channel* batches: sample ``c`` holds 1 in channel ``c`` and 0
elsewhere, so channel ``c`` of an output, averaged over its pixels, is exactly the share of sample
``c`` in it, whatever the method did (pasting, blending, resizing a constant is the constant).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from fastmix.family import DirichletMixup, RICAP, ResizeMix, dirichlet_plan, resizemix_plan, ricap_plan
from fastmix.pieces import PiecePlan, apply_pieces, apply_pieces_reference, piece_plan, pieces_targets
from helpers import (HAS_CUDA, KERNEL_DEVICE, assert_close, assert_uniform_ints, backend, ks_one_sample,
                     ks_one_sample_critical, requires_triton, seeded)

H, W = 8, 12


# --------------------------------------------------------------------------------------------
# closed forms the tests compare against (nothing from the code under test)
# --------------------------------------------------------------------------------------------

def incomplete_beta(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its power series (x <= 1/2; symmetry above)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > 0.5:
        return 1.0 - incomplete_beta(1.0 - x, b, a)
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    total, coeff = 0.0, 1.0                         # coeff = (1 - b)_n / n!
    for n in range(200):
        total += coeff * a / (a + n) * x ** n
        coeff *= (n + 1 - b) / (n + 1)
    return math.exp(a * math.log(x) - log_beta) / a * total


def onehot_batch(b: int, dtype=torch.float32, channels_last=False, scale=1.0) -> torch.Tensor:
    x = torch.zeros(b, b, H, W, dtype=torch.float64)
    x[torch.arange(b), torch.arange(b)] = scale
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def shares(out: torch.Tensor, scale=1.0) -> torch.Tensor:
    """(B, B): share of sample c in output i, from the pixels of a one-hot batch."""
    return out.double().mean((2, 3)) / scale


# --------------------------------------------------------------------------------------------
# the reference against oracles written independently
# --------------------------------------------------------------------------------------------

def loop_oracle(x: torch.Tensor, src, weight, dst_box, src_box, resize: str) -> torch.Tensor:
    """Pixel by pixel (float64): each piece's source crop resized with F.interpolate into its
    destination box, weighted and summed; uncovered pixels keep their value."""
    out = x.double().clone()
    b = x.shape[0]
    for i in range(b):
        acc = torch.zeros_like(out[i])
        covered = torch.zeros(x.shape[2:], dtype=torch.bool)
        for j in range(src.shape[1]):
            y0, y1, x0, x1 = dst_box[i, j].tolist()
            sy0, sy1, sx0, sx1 = src_box[i, j].tolist()
            if y1 <= y0 or x1 <= x0:
                continue
            crop = x[int(src[i, j]), :, sy0:sy1, sx0:sx1].double()[None]
            kw = dict(mode=resize) if resize == "nearest" else dict(mode="bilinear", align_corners=False)
            piece = F.interpolate(crop, size=(y1 - y0, x1 - x0), **kw)[0]
            acc[:, y0:y1, x0:x1] += float(weight[i, j]) * piece
            covered[y0:y1, x0:x1] = True
        out[i] = torch.where(covered, acc, out[i])
    return out


def hand_plan(resize="nearest", seed=0):
    """Three samples, three pieces: a translation, a downscale and an upscale (overlapping)."""
    src = torch.tensor([[2, 0, 1], [1, 2, 2], [0, 0, 1]])
    weight = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.3, 0.7], [0.6, 0.4, 0.0]])
    dst = torch.tensor([[[0, 4, 0, 6], [2, 7, 3, 12], [0, 8, 0, 12]],
                        [[1, 5, 2, 8], [5, 8, 0, 3], [5, 8, 0, 3]],
                        [[0, 8, 0, 12], [3, 5, 4, 10], [0, 0, 0, 0]]], dtype=torch.int32)
    srcb = torch.tensor([[[3, 7, 5, 11], [0, 8, 0, 12], [0, 8, 0, 12]],
                         [[0, 4, 0, 6], [2, 4, 7, 9], [0, 8, 0, 12]],
                         [[0, 8, 0, 12], [1, 8, 2, 5], [0, 0, 0, 0]]], dtype=torch.int32)
    return piece_plan(src, weight, dst, srcb, (H, W), resize)


@pytest.mark.parametrize("resize", ["nearest", "bilinear"])
def test_reference_matches_the_loop_oracle(resize):
    x = torch.randn(3, 2, H, W, generator=seeded(1))
    plan = hand_plan(resize)
    want = loop_oracle(x, plan.src, plan.weight, plan.dst_box, plan.src_box, resize)
    assert_close(apply_pieces_reference(x, plan), want.float(), torch.float32, f"reference ({resize})")
    # channels_last input: the same values, the layout kept
    out = apply_pieces_reference(x.contiguous(memory_format=torch.channels_last), plan)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, want.float(), torch.float32, f"reference NHWC ({resize})")


def test_reference_uint8_rounds_half_to_even_and_uncovered_pixels_are_bit_exact():
    x = torch.full((2, 1, H, W), 3, dtype=torch.uint8)
    x[1] = 4
    box = torch.tensor([[[0, 4, 0, 4]], [[0, 4, 0, 4]]], dtype=torch.int32)
    plan = piece_plan(torch.tensor([[1], [0]]), torch.tensor([[0.625], [0.625]]), box, box, (H, W))
    out = apply_pieces_reference(x, plan)
    assert out[0, 0, 0, 0] == 2 and out[1, 0, 0, 0] == 2        # 0.625 * 4 = 2.5 -> 2; 0.625 * 3 = 1.875 -> 2
    assert torch.equal(out[:, :, 4:], x[:, :, 4:]) and torch.equal(out[:, :, :, 4:], x[:, :, :, 4:])
    xf = torch.randn(2, 1, H, W)
    xf[0, 0, 6, 6] = float("nan")
    xf[0, 0, 7, 7] = -0.0
    got = apply_pieces_reference(xf, plan)
    assert torch.isnan(got[0, 0, 6, 6]) and torch.equal(got.view(torch.int32)[0, 0, 7], xf.view(torch.int32)[0, 0, 7])


@pytest.mark.parametrize("walk", ["batched", "boxes"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_path_is_the_reference_bit_for_bit(dtype, channels_last, walk):
    """Both CPU walks (batched with flat gathers; box by box) against the reference (every piece
    over every pixel by advanced indexing). These samples are small, so apply_pieces_cpu itself
    takes the batched walk; the box walk is called directly."""
    from fastmix.pieces import apply_pieces_boxes, apply_pieces_cpu
    apply_pieces_cpu = apply_pieces_cpu if walk == "batched" else apply_pieces_boxes

    gen = seeded(17)
    plans = [hand_plan("nearest"), hand_plan("bilinear"), ricap_plan(3, (H, W), generator=gen),
             dirichlet_plan(3, (H, W), generator=gen), resizemix_plan(3, (H, W), mode="bilinear", generator=gen)]
    for k, plan in enumerate(plans):
        if dtype == torch.uint8:
            x = torch.randint(0, 256, (3, 3, H, W), generator=gen, dtype=torch.uint8)
        else:
            x = torch.randn(3, 3, H, W, generator=gen).to(dtype)
            x[1, 2, 0, 0], x[2, 0, 7, 11] = -0.0, float("inf")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        want, got = apply_pieces_reference(x, plan), apply_pieces_cpu(x, plan)
        assert got.stride() == want.stride()
        assert torch.equal(raw_bits(got), raw_bits(want)), f"plan {k}: the CPU path differs from the reference"


# --------------------------------------------------------------------------------------------
# label weight = pixel share, for every method
# --------------------------------------------------------------------------------------------

METHODS = [
    ("ricap", lambda **kw: RICAP(beta=0.3, **kw)),
    ("dirichlet", lambda **kw: DirichletMixup(alpha=1.0, k=3, **kw)),
    ("resizemix_nearest", lambda **kw: ResizeMix(scope=(0.1, 0.8), mode="nearest", **kw)),
    ("resizemix_bilinear", lambda **kw: ResizeMix(scope=(0.3, 0.9), mode="bilinear", **kw)),
]


@pytest.mark.parametrize("name,make", METHODS, ids=[m[0] for m in METHODS])
@pytest.mark.parametrize("dtype,channels_last", [(torch.float32, False), (torch.float32, True),
                                                  (torch.uint8, False), (torch.uint8, True),
                                                  (torch.bfloat16, True), (torch.float16, False),
                                                  (torch.float64, False)])
def test_label_weight_is_the_pixel_share(name, make, dtype, channels_last):
    b, k = 6, 20
    scale = 255.0 if dtype == torch.uint8 else 1.0
    labels = torch.randperm(k, generator=seeded(3))[:b]
    x = onehot_batch(b, dtype, channels_last, scale)
    op = make(num_classes=k, label_smoothing=0.0, generator=seeded(11))
    out, soft = op(x, labels)
    assert out.dtype == dtype and soft.dtype == torch.float32 and soft.shape == (b, k)
    got = shares(out, scale)
    # a pasted pixel is exact; a blended one (values in [0, 1]) is within half a unit in the last
    # place of the storage dtype: half a level of 255 for uint8, 2**-9 for bfloat16, 2**-12 for float16
    rounding = {torch.uint8: 0.5 / scale, torch.bfloat16: 2.0**-9, torch.float16: 2.0**-12}.get(dtype, 0.0)
    tol = (rounding if name != "ricap" else 0.0) + 1e-6
    want = soft[:, labels].double()
    assert (got - want).abs().max() <= tol, f"{name}: pixel shares {got} vs label weights {want}"
    assert torch.allclose(soft.sum(1), torch.ones(b), atol=1e-6)
    smoothed = make(num_classes=k, label_smoothing=0.1, generator=seeded(11))(x, labels)[1]
    assert torch.allclose(smoothed, soft * 0.9 + 0.1 / k, atol=1e-6)


@pytest.mark.parametrize("resize", ["nearest", "bilinear"])
def test_label_pieces_of_a_hand_plan_are_the_pixel_shares(resize):
    """Overlapping pieces, weights that do not sum to one, an uncovered part, a zero-weight piece:
    piece_plan's label weights are still each sample's share of the output's pixels."""
    labels = torch.tensor([7, 2, 5])
    plan = hand_plan(resize)
    out = apply_pieces_reference(onehot_batch(3), plan)
    soft = pieces_targets(labels, plan, 8, 0.0)
    assert torch.allclose(shares(out), soft[:, labels].double(), atol=1e-6)
    assert soft[1, 2] > 0      # sample 1 keeps part of itself: the uncovered pixels


@pytest.mark.parametrize("name,make", METHODS, ids=[m[0] for m in METHODS])
def test_unselected_samples_keep_themselves_and_batch_of_one(name, make):
    x = torch.randn(4, 3, H, W, generator=seeded(5))
    out, soft = make(num_classes=5, prob=0.0, label_smoothing=0.0)(x, torch.arange(4))
    assert torch.equal(out, x) and torch.equal(soft, torch.eye(5)[:4])
    out1, soft1 = make(num_classes=5, label_smoothing=0.0, generator=seeded(2))(x[:1], torch.tensor([3]))
    # a batch of one mixes with itself: every piece is its own, so is the whole label
    assert out1.shape == x[:1].shape and torch.allclose(soft1, torch.eye(5)[3:4])
    if name == "dirichlet":
        assert_close(out1, x[:1], torch.float32, "a blend of one sample with itself")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (host syncs are a GPU matter)")
@pytest.mark.parametrize("name,make", METHODS, ids=[m[0] for m in METHODS])
def test_a_step_on_the_gpu_never_waits_for_the_device(name, make):
    x = torch.randn(8, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (8,), device="cuda")
    op = make(num_classes=10, generator=torch.Generator(device="cuda").manual_seed(0))
    op(x, y)                                         # compile and warm up first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, soft = op(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == x.shape and soft.shape == (8, 10)


def test_per_sample_prob_selects_about_prob_of_the_samples():
    plan = dirichlet_plan(2000, (H, W), prob=0.3, generator=seeded(4))
    mixed = plan.dst_box[:, 0, 1] > 0
    n = int(mixed.sum())
    assert abs(n - 600) < 4.5 * math.sqrt(2000 * 0.3 * 0.7)


# --------------------------------------------------------------------------------------------
# distributions
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


def test_ricap_boundary_is_round_of_beta_and_crops_are_uniform():
    n, size, beta = 3000, (40, 60), 0.3
    plan = ricap_plan(n, size, beta=beta, generator=seeded(7))
    h, w = plan.dst_box[:, 0, 1], plan.dst_box[:, 0, 3]
    for what, v, side in (("h", h, size[0]), ("w", w, size[1])):
        stat = _discrete_ks(v, lambda m: incomplete_beta((m + 0.5) / side, beta, beta))
        assert stat < ks_one_sample_critical(n), f"RICAP boundary {what}: KS {stat:.4f}"
    # quadrants tile the image, sources are the same size, each partner column a permutation
    area = ((plan.dst_box[..., 1] - plan.dst_box[..., 0]) * (plan.dst_box[..., 3] - plan.dst_box[..., 2])).sum(1)
    assert torch.equal(area, torch.full((n,), size[0] * size[1]))
    assert torch.equal(plan.src_box[..., 1] - plan.src_box[..., 0], plan.dst_box[..., 1] - plan.dst_box[..., 0])
    assert torch.equal(plan.src.sort(0).values, torch.arange(n)[:, None].expand(n, 4))
    gen = seeded(8)
    for k in range(4):
        qh = plan.src_box[:, k, 1] - plan.src_box[:, k, 0]
        qw = plan.src_box[:, k, 3] - plan.src_box[:, k, 2]
        for pos, count in ((plan.src_box[:, k, 0], size[0] - qh + 1), (plan.src_box[:, k, 2], size[1] - qw + 1)):
            stat = ks_one_sample(_jittered_uniform(pos, count, gen), lambda t: t.clamp(0, 1))
            assert stat < ks_one_sample_critical(n), f"RICAP crop of quadrant {k}: KS {stat:.4f}"


@pytest.mark.parametrize("alpha,k", [(1.0, 3), (0.5, 4)])
def test_dirichlet_marginals_are_beta(alpha, k):
    n = 3000
    plan = dirichlet_plan(n, (H, W), alpha=alpha, k=k, generator=seeded(9))
    assert torch.allclose(plan.weight.sum(1), torch.ones(n), atol=1e-6)
    b = (k - 1) * alpha
    for j in (0, k - 1):
        stat = ks_one_sample(plan.weight[:, j], lambda t: torch.tensor([incomplete_beta(float(v), alpha, b)
                                                                          for v in t], dtype=torch.float64))
        assert stat < ks_one_sample_critical(n), f"Dirichlet weight {j}: KS {stat:.4f} vs Beta({alpha}, {b})"
    assert torch.equal(plan.src[:, 0], torch.arange(n))


def test_resizemix_tau_is_uniform_and_the_box_position_too():
    n, size, scope = 3000, (500, 300), (0.1, 0.8)
    plan = resizemix_plan(n, size, scope=scope, generator=seeded(10))
    box = plan.dst_box[:, 0]
    for side, lo, hi in ((size[0], box[:, 0], box[:, 1]), (size[1], box[:, 2], box[:, 3])):
        stat = _discrete_ks(hi - lo, lambda m: min(max(((m + 0.5) / side - scope[0]) / (scope[1] - scope[0]), 0), 1))
        assert stat < ks_one_sample_critical(n), f"ResizeMix box side: KS {stat:.4f}"
        stat = ks_one_sample(_jittered_uniform(lo, side - (hi - lo) + 1, seeded(12)), lambda t: t.clamp(0, 1))
        assert stat < ks_one_sample_critical(n), f"ResizeMix box position: KS {stat:.4f}"
    fixed = resizemix_plan(800, (H, W), scope=(0.5, 0.5), generator=seeded(13)).dst_box[:, 0]
    assert_uniform_ints(fixed[:, 0], H - 4 + 1, "ResizeMix y0")
    assert_uniform_ints(fixed[:, 2], W - 6 + 1, "ResizeMix x0")
    own = 1 - (box[:, 1] - box[:, 0]).double() * (box[:, 3] - box[:, 2]).double() / (size[0] * size[1])
    assert torch.allclose(plan.label_weight[:, 1].double(), own, atol=1e-7)


# --------------------------------------------------------------------------------------------
# bad arguments and hostile plans
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,name", [
    (lambda: RICAP(beta=0), "beta"), (lambda: RICAP(beta=-1.0), "beta"), (lambda: RICAP(prob=1.5), "prob"),
    (lambda: RICAP(num_classes=0), "num_classes"), (lambda: RICAP(label_smoothing=1.0), "label_smoothing"),
    (lambda: DirichletMixup(alpha=0.0), "alpha"), (lambda: DirichletMixup(k=1), "k"),
    (lambda: DirichletMixup(k=2.5), "k"), (lambda: ResizeMix(scope=(0.5, 0.2)), "scope"),
    (lambda: ResizeMix(scope=(0.0, 0.5)), "scope"), (lambda: ResizeMix(scope=(0.5, 1.5)), "scope"),
    (lambda: ResizeMix(mode="cubic"), "mode"), (lambda: ResizeMix(scope=0.5), "scope"),
    (lambda: RICAP(generator=3), "generator"),
])
def test_bad_constructor_arguments_name_the_argument(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def _good():
    src = torch.tensor([[1], [0]])
    box = torch.tensor([[[0, 4, 0, 4]], [[2, 6, 1, 9]]], dtype=torch.int32)
    return dict(src=src, weight=torch.ones(2, 1), dst_box=box, src_box=box.clone(), size=(H, W))


@pytest.mark.parametrize("field,value", [
    ("src", torch.tensor([[2], [0]])), ("src", torch.tensor([[-1], [0]])), ("src", torch.tensor([[1], [0]]).int()),
    ("weight", torch.tensor([[float("nan")], [1.0]])), ("weight", torch.ones(2, 2)),
    ("dst_box", torch.tensor([[[0, 9, 0, 4]], [[0, 1, 0, 1]]], dtype=torch.int32)),
    ("dst_box", torch.tensor([[[3, 2, 0, 4]], [[0, 1, 0, 1]]], dtype=torch.int32)),
    ("dst_box", torch.tensor([[[0, 4, -1, 4]], [[0, 1, 0, 1]]], dtype=torch.int32)),
    ("src_box", torch.tensor([[[0, 4, 0, 13]], [[0, 1, 0, 1]]], dtype=torch.int32)),
    ("src_box", torch.tensor([[[0, 0, 0, 4]], [[0, 1, 0, 1]]], dtype=torch.int32)),
    ("resize", "cubic"),
])
def test_hostile_user_plans_are_refused_naming_the_field(field, value):
    args = _good()
    args[field] = value
    with pytest.raises((ValueError, TypeError), match=field):
        piece_plan(**args)
    # a plan built by hand is checked when applied, before anything is computed
    plan = piece_plan(**_good())
    forged = PiecePlan(**{**{k: getattr(plan, k) for k in ("src", "weight", "dst_box", "src_box", "label_row",
                                                               "label_weight", "size", "resize")}, field: value})
    with pytest.raises((ValueError, TypeError), match=field):
        apply_pieces(torch.zeros(2, 3, H, W), forged)


def test_plan_and_batch_must_agree():
    plan = piece_plan(**_good())
    with pytest.raises(ValueError, match="plan"):
        apply_pieces(torch.zeros(3, 3, H, W), plan)
    with pytest.raises(ValueError, match="plan"):
        apply_pieces(torch.zeros(2, 3, H, W + 1), plan)
    with pytest.raises(TypeError, match="x"):
        apply_pieces(torch.zeros(2, 3, H, W, dtype=torch.int32), plan)
    with pytest.raises(ValueError, match="target"):
        RICAP(num_classes=5)(torch.zeros(2, 3, H, W), torch.tensor([0, 7]))
    # unchecked (the GPU default), an index outside [0, K) makes the rows it enters NaN, never a class
    soft = pieces_targets(torch.tensor([0, 7]), RICAP(num_classes=5, prob=0.0).plan(torch.zeros(2, 3, H, W)), 5,
                          0.1, validate=False)
    assert torch.allclose(soft[0], torch.tensor([0.92, 0.02, 0.02, 0.02, 0.02])) and torch.isnan(soft[1]).all()


# --------------------------------------------------------------------------------------------
# the Triton pass (under the interpreter without a GPU) against the reference
# --------------------------------------------------------------------------------------------

def _kernel():
    from fastmix.kernels import pieces
    return pieces


def _batch(dtype, channels_last, b=3, c=2, seed=0):
    gen = seeded(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, c, H, W), generator=gen, dtype=torch.uint8)
    else:
        x = torch.randn(b, c, H, W, generator=gen).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    return x.to(KERNEL_DEVICE)


def raw_bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's elements as integers of its width (so -0.0 and +0.0 differ)."""
    return t.contiguous().view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _assert_kernel_matches(got, want, dtype, what):
    assert got.dtype == want.dtype and got.stride() == want.stride(), f"{what}: dtype or layout differ"
    # the interpreter computes the reference's float32 operations one by one: bit for bit; a GPU
    # may contract (d + 0.5) * scale - 0.5 into one FMA, which moves a bilinear tap by an ulp
    got, want = got.cpu(), want.cpu()
    if dtype.is_floating_point:
        assert torch.equal(torch.isnan(got), torch.isnan(want)), f"{what}: NaN in different places"
        got, want = (torch.where(torch.isnan(t), 0.0, t).to(dtype) for t in (got, want))
    if HAS_CUDA:
        assert_close(got, want, dtype, what)
    else:
        assert torch.equal(raw_bits(got), raw_bits(want)), f"{what}: not bit for bit: " \
            f"{int((got != want).sum())} differ, largest {float((got.double() - want.double()).abs().max())}"


@requires_triton
@pytest.mark.parametrize("dtype,channels_last,resize", [
    (torch.float32, False, "nearest"), (torch.float32, False, "bilinear"),
    (torch.float32, True, "nearest"), (torch.float32, True, "bilinear"),
    (torch.float16, True, "bilinear"), (torch.bfloat16, False, "bilinear"), (torch.bfloat16, True, "nearest"),
    (torch.uint8, False, "bilinear"), (torch.uint8, True, "nearest"), (torch.float64, False, "bilinear"),
])
def test_kernel_equals_reference_on_a_hand_plan(dtype, channels_last, resize):
    x = _batch(dtype, channels_last)
    if dtype.is_floating_point:                              # NaN spreads only where it is read; -0.0 copies
        x[0, 0, 3, 5], x[1, 0, 0, 0], x[1, 1, 2, 1] = float("nan"), -0.0, -0.0
    plan = hand_plan(resize).to(x.device)
    want = apply_pieces_reference(x, plan)
    _assert_kernel_matches(_kernel().apply_pieces(x, plan), want, dtype, f"kernel {dtype} {resize}")


@requires_triton
@pytest.mark.parametrize("name,make", METHODS, ids=[m[0] for m in METHODS])
def test_kernel_equals_reference_on_each_method(name, make):
    x = _batch(torch.float32, name == "dirichlet", b=4, c=2, seed=4)
    y = torch.arange(4, device=x.device)
    with backend("triton"):
        got, soft = make(num_classes=4, generator=seeded(21))(x, y)
    with backend("reference"):
        want, soft_ref = make(num_classes=4, generator=seeded(21))(x, y)
    _assert_kernel_matches(got, want, torch.float32, name)
    assert torch.equal(soft, soft_ref)


@requires_triton
@pytest.mark.parametrize("channels_last", [False, True])
def test_video_is_each_frame_as_an_image(channels_last):
    """(B, C, T, H, W): every frame gets the image plan (reference), and the kernel agrees."""
    x = torch.randn(3, 2, 2, H, W, generator=seeded(14))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    plan = hand_plan("bilinear")
    want = apply_pieces_reference(x, plan)
    for t in range(2):
        assert torch.equal(want[:, :, t], apply_pieces_reference(x[:, :, t].contiguous(), plan))
    _assert_kernel_matches(_kernel().apply_pieces(x.to(KERNEL_DEVICE), plan.to(KERNEL_DEVICE)), want, torch.float32,
                           "video")


def test_gradients_flow_through_the_reference():
    """x requiring grad takes the differentiable reference: d(sum out)/dx[c] = total weight
    with which sample c's pixels are read; RICAP reads each output pixel once with weight 1."""
    x = torch.randn(4, 3, H, W, generator=seeded(15), requires_grad=True)
    out, _ = RICAP(num_classes=4, generator=seeded(16))(x, torch.arange(4))
    out.sum().backward()
    assert out.requires_grad and float(x.grad.sum()) == out.numel()


@requires_triton
def test_kernel_touches_no_memory_outside_its_tensors_on_a_forged_plan():
    """A plan marked checked whose every index is hostile: the pass clamps, so every load lies in
    x and every store in the output (both watched inside larger guard buffers)."""
    from fastmix.kernels import traffic

    b, c = 2, 2
    numel = b * c * H * W
    guard_in, guard_out = torch.zeros(3 * numel), torch.zeros(3 * numel)
    x = guard_in[numel:2 * numel].view(b, c, H, W).normal_(generator=seeded(1))
    out = guard_out[numel:2 * numel].view(b, c, H, W)
    box = torch.tensor([[[-5, 40, -9, 99]], [[3, 2, 7, 1 << 30]]], dtype=torch.int32)
    for resize in ("nearest", "bilinear"):
        forged = PiecePlan(src=torch.tensor([[-7], [99]]), weight=torch.ones(b, 1), dst_box=box,
                           src_box=torch.tensor([[[-100, 3, 50, -50]], [[7, 7, -1, 1 << 30]]], dtype=torch.int32),
                           label_row=torch.zeros(b, 1, dtype=torch.int64), label_weight=torch.ones(b, 1),
                           size=(H, W), resize=resize, checked=True)
        with traffic.count(guard_in, guard_out) as t:
            _kernel().apply_pieces(x, forged, out=out)
        loads = torch.cat([torch.from_numpy(a) for a, _, _ in t._loads])
        stores = torch.cat([torch.from_numpy(a) for a, _, _ in t._stores])
        lo_x, lo_o = x.data_ptr(), out.data_ptr()
        assert int(loads.min()) >= lo_x and int(loads.max()) < lo_x + 4 * numel, f"{resize}: a load outside x"
        assert int(stores.min()) >= lo_o and int(stores.max()) < lo_o + 4 * numel, f"{resize}: a store outside out"
        assert t.bytes_stored == 4 * numel and t.rewritten_bytes == 0


# --------------------------------------------------------------------------------------------
# traffic: what the pass moves against what the plan needs
# --------------------------------------------------------------------------------------------

def _taps(d, n_in, n_out):
    """Bilinear taps of destination offsets ``d`` (the docstring's float32 formula): 1 or 2."""
    s = ((d.float() + 0.5) * (torch.tensor(float(n_in)) / float(n_out)) - 0.5).clamp_min(0)
    return torch.where((s == s.floor()) | (s.floor() + 1 >= n_in), 1, 2)


@requires_triton
@pytest.mark.parametrize("name,make", METHODS, ids=[m[0] for m in METHODS])
def test_traffic_is_what_the_plan_needs(name, make):
    """Every output byte is stored once; each output element loads exactly the source elements its
    value depends on: one per piece with a non-zero weight (RICAP and nearest ResizeMix: one in
    all; k-way Mixup: k), a bilinear box pixel its distinct taps (1, 2 or 4)."""
    from fastmix.kernels import traffic

    b, c = 4, 2
    x = _batch(torch.float32, False, b=b, c=c, seed=6)
    plan = make(num_classes=4, generator=seeded(30)).plan(x)
    out = torch.empty_like(x)
    with traffic.count(x, out) as t:
        _kernel().apply_pieces(x, plan, out=out)
    assert t.bytes_stored == out.numel() * 4 and t.rewritten_bytes == 0, f"{name}: stores"
    assert t.shared_bytes == 0
    if name == "dirichlet":
        nonzero = int((plan.weight != 0).sum(1).sum())
        ideal = nonzero * c * H * W
    elif name == "resizemix_bilinear":
        ideal = 0
        for i in range(b):
            y0, y1, x0, x1 = plan.dst_box[i, 0].tolist()
            box_taps = int(_taps(torch.arange(y1 - y0), H, y1 - y0).sum()) * int(_taps(torch.arange(x1 - x0), W, x1 - x0).sum())
            ideal += c * (box_taps + H * W - (y1 - y0) * (x1 - x0))
    else:
        ideal = b * c * H * W
    assert t.bytes_loaded == ideal * 4, f"{name}: loaded {t.bytes_loaded} B, the plan needs {ideal * 4} B"


@requires_triton
@pytest.mark.slow
def test_piece_variants_compile_for_sm80_and_sm90_without_local_memory(tmp_path):
    """The ``fastmix kernels`` variants of the piece pass in float32 and uint8 (a subprocess: the
    kernels must not be the interpreter's); ``tests/test_compile.py`` runs the whole table, every
    dtype of these variants included."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "pieces.json"
    script = ("import json, sys\nfrom concurrent.futures import ProcessPoolExecutor\nfrom dataclasses import asdict\n"
              "from fastmix.kernels import aot\n"
              "jobs = [j for j in aot.jobs() if j[0].startswith('pieces') and j[2] in ('fp32', 'u8')]\n"
              "with ProcessPoolExecutor(2) as pool:\n    reps = list(pool.map(aot.compile_one, *zip(*jobs)))\n"
              "json.dump([asdict(r) for r in reps], open(sys.argv[1], 'w'))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert out.exists(), proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {r["kernel"] for r in rows} == {"pieces_ricap", "pieces_kway", "pieces_resize"}
    assert {r["arch"] for r in rows} == {80, 90}
    failed = [f"{r['kernel']}/sm_{r['arch']}/{r['dtype']}: {r['error'] or str(r['local_bytes']) + ' B local'}"
              for r in rows if r["error"] or r["local_bytes"]]
    assert not failed, "; ".join(failed)
