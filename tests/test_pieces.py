"""Piece plans (RICAP, DirichletMixup, ResizeMix) applied: the reference against an independent
oracle, the CPU walks bit for bit the reference (uniform batch-mode plans and per-sample ones),
the label weight of every contributing sample equal to its pixel share in both modes, bad
arguments and hostile plans refused naming what is wrong, and gradients through the reference.
The draws are ``test_pieces_sampling.py``'s, the Triton pass ``test_pieces_kernel.py``'s."""
import pytest
import torch

from fastmix.family import DirichletMixup, RICAP, ResizeMix, dirichlet_plan, resizemix_plan, ricap_plan
from fastmix.pieces import PiecePlan, apply_pieces, apply_pieces_reference, piece_plan, pieces_targets
from fastmix.pieces_cpu import apply_pieces_boxes, apply_pieces_cpu, apply_uniform, is_uniform
from helpers import HAS_CUDA, assert_close, seeded
from pieces_cases import (H, W, METHOD_IDS, METHODS, hand_plan, loop_oracle, onehot_batch, raw_bits, shares,
                          uniform_hand_plan)


# --------------------------------------------------------------------------------------------
# the reference against an oracle written independently
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# the CPU walks: bit for bit the reference
# --------------------------------------------------------------------------------------------

def _cpu_case_plans(gen):
    """Hand plans and drawn plans of every member and mode (batch-mode draws are uniform plans)."""
    plans = [hand_plan("nearest"), hand_plan("bilinear"), uniform_hand_plan(3, "nearest"),
             uniform_hand_plan(3, "bilinear"), uniform_hand_plan(3, "bilinear", weights=(1.0, 1.0, 1.0))]
    for mode in ("batch", "elem"):
        plans += [ricap_plan(3, (H, W), generator=gen, mode=mode), dirichlet_plan(3, (H, W), generator=gen, mode=mode),
                  dirichlet_plan(3, (H, W), prob=0.5, generator=gen, mode=mode),
                  resizemix_plan(3, (H, W), interpolation="bilinear", generator=gen, mode=mode),
                  resizemix_plan(3, (H, W), scope=(0.3, 0.6), generator=gen, mode=mode)]
    return plans


@pytest.mark.parametrize("walk", ["dispatch", "boxes"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_path_is_the_reference_bit_for_bit(dtype, channels_last, walk):
    """The CPU walks against the reference (every piece over every pixel by advanced indexing):
    apply_pieces_cpu's decision (uniform plans a piece at a time, small per-sample ones batched),
    and the box walk of large samples called directly. NaN, Inf and -0.0 where pieces read them."""
    run = apply_pieces_cpu if walk == "dispatch" else apply_pieces_boxes
    gen = seeded(17)
    for k, plan in enumerate(_cpu_case_plans(gen)):
        if dtype == torch.uint8:
            x = torch.randint(0, 256, (3, 3, H, W), generator=gen, dtype=torch.uint8)
        else:
            x = torch.randn(3, 3, H, W, generator=gen).to(dtype)
            x[1, 2, 0, 0], x[2, 0, 7, 11], x[0, 1, 3, 3] = -0.0, float("inf"), float("nan")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        want, got = apply_pieces_reference(x, plan), run(x, plan)
        assert got.stride() == want.stride(), f"plan {k}: layout {got.stride()} vs {want.stride()}"
        if dtype.is_floating_point:
            # a NaN is a NaN: its payload after the reference's bfloat16 round trip is torch's detail
            assert torch.equal(got.isnan(), want.isnan()), f"plan {k}: NaN in different places"
            got, want = (torch.where(t.isnan(), torch.zeros((), dtype=dtype), t) for t in (got, want))
        assert torch.equal(raw_bits(got), raw_bits(want)), \
            f"plan {k} ({'uniform' if is_uniform(plan) else 'per sample'}): the CPU path differs from the reference"


def test_batch_mode_plans_on_cpu_are_uniform_and_walk_a_piece_at_a_time():
    """The form the CPU walk relies on: batch-mode draws on CPU tensors are one row expanded (so
    the uniform walk runs), per-sample draws are not; the uniform walk of a video batch too."""
    for make in (ricap_plan, dirichlet_plan, resizemix_plan):
        assert is_uniform(make(5, (H, W), mode="batch", generator=seeded(1))), make.__name__
        assert not is_uniform(make(5, (H, W), mode="elem", generator=seeded(1))), make.__name__
    x = torch.randn(3, 2, 2, H, W, generator=seeded(2))
    plan = uniform_hand_plan(3, "bilinear")
    from fastmix.layout import describe
    assert torch.equal(raw_bits(apply_uniform(x, plan, describe(x, True))), raw_bits(apply_pieces_reference(x, plan)))


# --------------------------------------------------------------------------------------------
# label weight = pixel share, for every method and mode
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,make", METHODS, ids=METHOD_IDS)
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
    tol = (rounding if not name.startswith("ricap") else 0.0) + 1e-6
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
    for plan in (hand_plan(resize), uniform_hand_plan(3, resize)):
        out = apply_pieces_reference(onehot_batch(3), plan)
        soft = pieces_targets(labels, plan, 8, 0.0)
        assert torch.allclose(shares(out), soft[:, labels].double(), atol=1e-6), resize
    assert soft[1, 2] > 0      # sample 1 keeps part of itself: the uncovered pixels


@pytest.mark.parametrize("name,make", METHODS, ids=METHOD_IDS)
def test_unselected_samples_keep_themselves_and_batch_of_one(name, make):
    x = torch.randn(4, 3, H, W, generator=seeded(5))
    out, soft = make(num_classes=5, prob=0.0, label_smoothing=0.0)(x, torch.arange(4))
    assert torch.equal(out, x) and torch.equal(soft, torch.eye(5)[:4])
    out1, soft1 = make(num_classes=5, label_smoothing=0.0, generator=seeded(2))(x[:1], torch.tensor([3]))
    # a batch of one mixes with itself: every piece is its own, so is the whole label
    assert out1.shape == x[:1].shape and torch.allclose(soft1, torch.eye(5)[3:4])
    if name.startswith("dirichlet"):
        assert_close(out1, x[:1], torch.float32, "a blend of one sample with itself")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (host syncs are a GPU matter)")
@pytest.mark.parametrize("name,make", METHODS, ids=METHOD_IDS)
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


def test_gradients_flow_through_the_reference():
    """x requiring grad takes the differentiable reference: d(sum out)/dx[c] = total weight
    with which sample c's pixels are read; RICAP reads each output pixel once with weight 1."""
    for mode in ("batch", "elem"):
        x = torch.randn(4, 3, H, W, generator=seeded(15), requires_grad=True)
        out, _ = RICAP(num_classes=4, mode=mode, generator=seeded(16))(x, torch.arange(4))
        out.sum().backward()
        assert out.requires_grad and float(x.grad.sum()) == out.numel(), mode


def test_a_user_plan_and_the_transform_agree():
    """op.plan(x) then apply_pieces/pieces_targets is the transform's own call on the same draw."""
    x, y = torch.randn(5, 3, H, W, generator=seeded(4)), torch.tensor([0, 3, 1, 4, 2])
    for name, make in METHODS:
        out, soft = make(num_classes=5, label_smoothing=0.1, generator=seeded(9))(x, y)
        plan = make(num_classes=5, generator=seeded(9)).plan(x)
        assert torch.equal(out, apply_pieces(x, plan)), name
        assert torch.allclose(soft, pieces_targets(y, plan, 5, 0.1), atol=1e-6, rtol=0), name


# --------------------------------------------------------------------------------------------
# bad arguments and hostile plans
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,name", [
    (lambda: RICAP(beta=0), "beta"), (lambda: RICAP(beta=-1.0), "beta"), (lambda: RICAP(prob=1.5), "prob"),
    (lambda: RICAP(num_classes=0), "num_classes"), (lambda: RICAP(label_smoothing=1.0), "label_smoothing"),
    (lambda: RICAP(mode="pair"), "mode"), (lambda: DirichletMixup(mode="half"), "mode"),
    (lambda: DirichletMixup(alpha=0.0), "alpha"), (lambda: DirichletMixup(k=1), "k"),
    (lambda: DirichletMixup(k=2.5), "k"), (lambda: DirichletMixup(k=65), "k"),
    (lambda: ResizeMix(scope=(0.5, 0.2)), "scope"),
    (lambda: ResizeMix(scope=(0.0, 0.5)), "scope"), (lambda: ResizeMix(scope=(0.5, 1.5)), "scope"),
    (lambda: ResizeMix(interpolation="cubic"), "interpolation"), (lambda: ResizeMix(scope=0.5), "scope"),
    (lambda: ResizeMix(mode="elements"), "mode"), (lambda: RICAP(generator=3), "generator"),
    (lambda: ricap_plan(4, (H, W), mode="pair"), "mode"), (lambda: resizemix_plan(4, (H, W), interpolation="area"),
                                                             "interpolation"),
])
def test_bad_constructor_arguments_name_the_argument(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


@pytest.mark.parametrize("rule", ["nearest", "bilinear"])
def test_resizemix_mode_is_no_longer_the_interpolation(rule):
    """mode= was ResizeMix's interpolation; it now means what it means on every member, and the
    old spelling says where the interpolation went."""
    with pytest.raises(ValueError, match=f"interpolation={rule!r}"):
        ResizeMix(mode=rule)
    with pytest.raises(ValueError, match="interpolation"):
        resizemix_plan(4, (H, W), mode=rule)
    assert ResizeMix(interpolation=rule).interpolation == rule and ResizeMix().mode == "batch"


def test_changed_attributes_are_checked_and_used():
    """Arguments are attributes (timm users change them during training): a new value is
    re-checked, naming it, and the next draw uses it."""
    op = RICAP(num_classes=4, generator=seeded(1))
    op.prob = 0.0
    x = torch.randn(4, 3, H, W, generator=seeded(2))
    assert torch.equal(op(x, torch.arange(4))[0], x)
    op.beta = -2.0
    with pytest.raises(ValueError, match="beta"):
        op(x, torch.arange(4))


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
    with pytest.raises(TypeError, match="x"):
        RICAP(num_classes=5)(torch.zeros(2, 3, H, W, dtype=torch.int32), torch.tensor([0, 1]))
    # unchecked (the GPU default), an index outside [0, K) makes the rows it enters NaN, never a class
    soft = pieces_targets(torch.tensor([0, 7]), RICAP(num_classes=5, prob=0.0).plan(torch.zeros(2, 3, H, W)), 5,
                          0.1, validate=False)
    assert torch.allclose(soft[0], torch.tensor([0.92, 0.02, 0.02, 0.02, 0.02])) and torch.isnan(soft[1]).all()
