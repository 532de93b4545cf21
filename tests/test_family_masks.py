"""FMix and SaliencyMix (fastmix/family_masks.py): the masks against their definitions, the draws
against Beta CDFs in closed form, label weight = pixel share on constant-colour images with unique
labels, the kernels against the reference on the same plans, and bad arguments."""
import math

import pytest
import torch

from fastmix import functional as F
from fastmix.family_masks import FMix, SaliencyMix, fmix_mask, fourier_noise, mask_plan, spectral_residual_saliency

import oracle
from cases import make_batch
from helpers import (KERNEL_DEVICE, assert_close, backend, check_row, constant_batch, distinct_labels,
                     ks_one_sample_critical, mixed_row, raw_bytes, read_sample, requires_triton, seeded, value_of)

SIZE = (8, 12)
NUM_CLASSES = 20

# Beta(a, a) CDFs in closed form (no scipy here)
BETA_CDF = {
    0.5: lambda x: 2.0 / math.pi * torch.asin(torch.sqrt(x)),
    1.0: lambda x: x,
    2.0: lambda x: 3.0 * x ** 2 - 2.0 * x ** 3,
}


# --------------------------------------------------------------------------------------------
# FMix: the mask
# --------------------------------------------------------------------------------------------

def _lams(batch, gen):
    lam = torch.rand(batch, generator=gen)
    lam[:4] = torch.tensor([0.0, 1.0, 0.5 / 96, 0.5])           # empty, full, a rounding tie, a half
    return lam


def test_binary_mask_is_the_top_lam_quantile(gen):
    noise = torch.randn(12, *SIZE, generator=gen)
    lam = _lams(12, gen)
    own = fmix_mask(noise, lam)
    numel = SIZE[0] * SIZE[1]
    for i in range(12):
        ones = own[i] == 1
        assert bool((ones | (own[i] == 0)).all()), f"sample {i}: the mask is not binary"
        want = round(float(lam[i]) * numel)                       # Python's round: half to even
        assert int(ones.sum()) == want, f"sample {i}: {int(ones.sum())} ones, want round({float(lam[i])} * {numel})"
        if 0 < want < numel:
            assert float(noise[i][ones].min()) >= float(noise[i][~ones].max()), \
                f"sample {i}: a pixel outside the mask has more noise than one inside"


def test_soft_mask_ramps_over_ranks_and_keeps_the_share(gen):
    noise = torch.randn(10, *SIZE, generator=gen)
    lam = _lams(10, gen)
    max_soft = 0.1
    own = fmix_mask(noise, lam, max_soft)
    numel = SIZE[0] * SIZE[1]
    for i in range(10):
        count = round(float(lam[i]) * numel)
        soft = math.floor(numel * min(max_soft, float(lam[i]), 1.0 - float(lam[i])))
        by_rank = own[i].flatten()[noise[i].flatten().argsort(descending=True)].double()
        want = torch.cat([torch.ones(count - soft, dtype=torch.float64),
                          torch.linspace(1.0, 0.0, 2 * soft, dtype=torch.float64),
                          torch.zeros(numel - count - soft, dtype=torch.float64)])
        assert torch.allclose(by_rank, want, atol=1e-6), f"sample {i}: the mask by noise rank is not 1, ramp, 0"
        assert abs(float(own[i].double().mean()) - count / numel) < 1e-6, f"sample {i}: mean share moved"


def test_noise_is_low_pass(gen):
    """The 1/f^decay spectrum: the power of the lowest non-zero frequencies far exceeds the highest."""
    noise = fourier_noise(64, (16, 16), 3.0, generator=gen).double()
    power = torch.fft.rfft2(noise).abs().pow(2).mean(0)
    low, high = float(power[0, 1]), float(power[8, 8])
    # amplitude ratio (f_high / f_low) ** 3 = (sqrt(2 * 0.5 ** 2) / (1 / 16)) ** 3; the power is its square
    assert low / high > 0.1 * ((math.sqrt(0.5) * 16) ** 6), f"power ratio {low / high:.3g}"


# --------------------------------------------------------------------------------------------
# FMix: the transform
# --------------------------------------------------------------------------------------------

def _batch_draws(op, x, draws: int) -> list:
    """``draws`` plans of ``op`` on ``x`` (one generator, so independent draws)."""
    return [op.plan(x) for _ in range(draws)]


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_fmix_lam_is_beta(alpha, mode):
    """Label weights are round(lam * N) / N; compared with the Beta CDF at the rounding points.
    elem: one lam per sample of one big batch; batch: one lam per batch (every sample's label
    weight the same), over many batches."""
    numel = 16 * 16
    if mode == "elem":
        batch = 3000
        lam = FMix(alpha=alpha, pairing="flip", mode="elem", generator=seeded(0)).plan(
            torch.zeros(batch, 1, 16, 16)).label_lam.double()
    else:
        batch = 1500
        op = FMix(alpha=alpha, pairing="flip", mode="batch", generator=seeded(0))
        plans = _batch_draws(op, torch.zeros(2, 1, 16, 16), batch)
        for plan in plans[:50]:
            assert torch.equal(plan.label_lam, plan.label_lam[:1].expand(2)), "batch mode: one lam per batch"
        lam = torch.stack([plan.label_lam[0] for plan in plans]).double()
    counts = torch.round(lam * numel)
    assert torch.equal(counts / numel, lam), "label weights off the pixel grid"
    support = torch.arange(numel + 1, dtype=torch.float64)
    empirical = (counts[None, :] <= support[:, None]).double().mean(1)
    model = BETA_CDF[alpha](((support + 0.5) / numel).clamp(max=1.0))
    distance = float((empirical - model).abs().max())
    assert distance < ks_one_sample_critical(batch), f"alpha={alpha}/{mode}: KS distance {distance:.4f}"


@pytest.mark.parametrize("max_soft", [0.0, 0.2], ids=["binary", "soft"])
def test_fmix_label_weight_is_the_pixel_share(max_soft):
    batch = 8
    x = constant_batch(batch, (3, *SIZE))
    labels = distinct_labels(batch, NUM_CLASSES)
    fmix = FMix(alpha=1.0, max_soft=max_soft, num_classes=NUM_CLASSES, generator=seeded(3))
    plan = FMix(alpha=1.0, max_soft=max_soft, generator=seeded(3)).plan(x)
    out, soft = fmix(x.clone(), labels)
    if max_soft == 0.0:
        assert bool(((plan.mask == 0) | (plan.mask == 1)).all()), "binary FMix must have a binary mask"
    mixed = 0
    for i in range(batch):
        j = int(plan.partner[i])
        vi, vj = value_of(i), value_of(j)
        if i == j:
            assert torch.equal(out[i], x[i]), f"sample {i} is its own partner yet changed"
            share = 1.0
        else:
            pixel = out[i, 0].double()
            assert all(torch.equal(out[i, c], out[i, 0]) for c in range(3)), f"sample {i}: channels differ"
            own = (pixel - vj) / (vi - vj)                       # each pixel's own share, read from its value
            assert bool(((own > -1e-6) & (own < 1 + 1e-6)).all()), f"sample {i}: a value is no blend of {vi}, {vj}"
            share = float(own.mean())
            mixed += 0 < share < 1
            if max_soft == 0.0:
                ones = int((pixel == vi).sum())
                assert ones + int((pixel == vj).sum()) == pixel.numel(), f"sample {i}: binary FMix blended a pixel"
                assert float(plan.label_lam[i]) == float(torch.tensor(ones / pixel.numel()).float()), \
                    f"sample {i}: label weight {float(plan.label_lam[i])} is not its pixel share {ones}/{pixel.numel()}"
        assert abs(float(plan.label_lam[i]) - share) < 1e-6, f"sample {i}: label weight vs pixel share {share}"
        check_row(soft, i, mixed_row(NUM_CLASSES, int(labels[i]), int(labels[j]), share), "fmix")
    assert mixed >= 2, "too few samples mixed for the check to mean anything"


@requires_triton
@pytest.mark.parametrize("layout,dtype,max_soft", [("nchw", torch.float32, 0.0), ("nhwc", torch.uint8, 0.25),
                                                   ("video", torch.bfloat16, 0.25), ("nhwc", torch.float32, 0.0)])
def test_fmix_kernel_equals_reference(layout, dtype, max_soft, gen):
    x = make_batch(layout, dtype, 6, 3, *SIZE, gen)
    plan = FMix(max_soft=max_soft, size=(4, 6), generator=seeded(11)).plan(x)
    with backend("reference"):
        want = F.apply(x.clone(), plan)
    assert_close(want, oracle.expected(x, plan), dtype, f"reference/{layout}/{dtype}")
    out = x.clone().to(KERNEL_DEVICE)
    with backend("triton"):
        F.apply(out, plan.to(out.device))
    assert_close(out.cpu(), want, dtype, f"triton/{layout}/{dtype}/max_soft={max_soft}")
    kept = plan.mask == 0
    first = (slice(None), 0) if x.dim() == 4 else (slice(None), 0, 0)
    assert torch.equal(raw_bytes(out.cpu()[first][kept]), raw_bytes(x[first][kept])), "rho = 0 must leave pixels alone"


def test_mask_plan_is_the_blend_it_says():
    own = torch.tensor([[[1.0, 0.25], [0.0, 0.5]]]).expand(2, 2, 2).contiguous()
    x = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2).contiguous()
    plan = mask_plan(own)                                       # flip: 0 <-> 1
    out = F.apply(x.clone(), plan)
    want = own[:, None] * x + (1 - own[:, None]) * x.flip(0)
    assert torch.equal(out, want)
    assert torch.equal(plan.label_lam, torch.full((2,), (1 + 0.25 + 0 + 0.5) / 4))


# --------------------------------------------------------------------------------------------
# SaliencyMix
# --------------------------------------------------------------------------------------------

def _spotted(batch, gen):
    """Faint noise with one bright pixel per image at a random place (the saliency peak)."""
    x = torch.rand(batch, 3, *SIZE, generator=gen) * 0.05
    spot_y = torch.randint(0, SIZE[0], (batch,), generator=gen)
    spot_x = torch.randint(0, SIZE[1], (batch,), generator=gen)
    x[torch.arange(batch), :, spot_y, spot_x] = 1.0
    return x, spot_y, spot_x


def test_saliency_peaks_at_a_planted_spot(gen):
    x, spot_y, spot_x = _spotted(16, gen)
    peak = spectral_residual_saliency(x).flatten(1).argmax(1)
    assert torch.equal(peak // SIZE[1], spot_y) and torch.equal(peak % SIZE[1], spot_x)


def _centred_on(lo, hi, centre, extent):
    """Whether [lo, hi) is a clipped box [c - cut // 2, c + (cut + 1) // 2) for some side cut."""
    return any((max(0, centre - cut // 2), min(extent, centre + (cut + 1) // 2)) == (lo, hi)
               for cut in range(1, extent + 1))


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_saliencymix_box_is_centred_on_the_partners_peak(gen, mode):
    """elem: each box on its own partner's peak; batch (the authors' code): one box for the batch,
    on the peak of row 0's partner."""
    batch = 16
    x, spot_y, spot_x = _spotted(batch, gen)
    checked = 0
    for seed in range(5 if mode == "batch" else 1):
        plan = SaliencyMix(mode=mode, generator=seeded(5 + seed)).plan(x)
        for i in range(batch):
            j = int(plan.partner[i if mode == "elem" else 0])
            y0, y1, x0, x1 = plan.box[i, 0].tolist()
            if y0 >= y1 or x0 >= x1:
                continue
            checked += 1
            if mode == "batch":
                assert plan.box[i, 0].tolist() == plan.box[0, 0].tolist(), f"sample {i}: batch mode drew a second box"
            assert _centred_on(y0, y1, int(spot_y[j]), SIZE[0]) and _centred_on(x0, x1, int(spot_x[j]), SIZE[1]), \
                f"sample {i}: box {(y0, y1, x0, x1)} is not centred on partner {j}'s spot {(int(spot_y[j]), int(spot_x[j]))}"
    assert checked >= 4


def test_saliencymix_label_weight_is_the_kept_area():
    batch = 8
    x = constant_batch(batch, (3, *SIZE))
    labels = distinct_labels(batch, NUM_CLASSES)
    plan = SaliencyMix(beta=1.0, generator=seeded(9)).plan(x)
    out, soft = SaliencyMix(beta=1.0, num_classes=NUM_CLASSES, generator=seeded(9))(x.clone(), labels)
    cut = 0
    for i in range(batch):
        j = int(plan.partner[i])
        story = read_sample(out, i, j)
        cut += story.kind == "cutmix"
        if story.kind == "cutmix":
            assert story.box == tuple(plan.box[i, 0].tolist()), f"sample {i}: pasted {story.box}"
        assert float(plan.label_lam[i]) == pytest.approx(story.own, abs=1e-7), f"sample {i}: label vs kept area"
        check_row(soft, i, mixed_row(NUM_CLASSES, int(labels[i]), int(labels[j]), story.own), "saliencymix")
    assert cut >= 2


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_saliencymix_box_side_follows_beta(beta, mode):
    """With the peak at the centre of a 32 x 32 image no box is clipped, and its side is
    floor(32 sqrt(1 - lam)): P(side <= c) = P(lam > 1 - ((c + 1) / 32) ** 2) = 1 - F(...).
    elem: one box per sample of a big batch; batch: one box per batch, over many batches."""
    side = 32
    if mode == "elem":
        batch = 3000
        x = torch.zeros(batch, 1, side, side)
        x[:, :, side // 2, side // 2] = 1.0
        box = SaliencyMix(beta=beta, pairing="flip", mode="elem", generator=seeded(0)).plan(x).box[:, 0].double()
    else:
        batch = 1500
        x = torch.zeros(2, 1, side, side)
        x[:, :, side // 2, side // 2] = 1.0
        plans = _batch_draws(SaliencyMix(beta=beta, pairing="flip", mode="batch", generator=seeded(0)), x, batch)
        for plan in plans[:50]:
            assert torch.equal(plan.box[1], plan.box[0]), "batch mode: one box per batch"
        box = torch.stack([plan.box[0, 0] for plan in plans]).double()
    sides = box[:, 1] - box[:, 0]
    assert torch.equal(sides, box[:, 3] - box[:, 2]), "a square image must give square boxes"
    support = torch.arange(side + 1, dtype=torch.float64)
    empirical = (sides[None, :] <= support[:, None]).double().mean(1)
    model = 1.0 - BETA_CDF[beta]((1.0 - ((support + 1) / side) ** 2).clamp(min=0.0))
    distance = float((empirical - model).abs().max())
    assert distance < ks_one_sample_critical(batch), f"beta={beta}/{mode}: KS distance {distance:.4f}"


@pytest.mark.parametrize("cls", [FMix, SaliencyMix])
def test_prob_zero_leaves_everything_alone(cls):
    x = torch.rand(6, 3, *SIZE, generator=seeded(1))
    before = raw_bytes(x)
    out, soft = cls(prob=0.0, num_classes=NUM_CLASSES, generator=seeded(2))(x, torch.arange(6))
    assert torch.equal(raw_bytes(out), before)
    assert torch.equal(soft, torch.eye(NUM_CLASSES)[:6])


@pytest.mark.parametrize("cls", [FMix, SaliencyMix])
def test_grad_input_is_mixed_out_of_place(cls):
    x = torch.rand(6, 3, *SIZE, generator=seeded(1), dtype=torch.float64).requires_grad_()
    out, _ = cls(num_classes=NUM_CLASSES, pairing="flip", generator=seeded(4))(x, torch.arange(6))
    plan = cls(pairing="flip", generator=seeded(4)).plan(x)
    assert out is not x and torch.equal(out.detach(), oracle.expected(x.detach(), plan))
    grad, = torch.autograd.grad(out.sum(), x)
    # out[i] = own_i x[i] + (1 - own_i) x[p(i)] per pixel, so d sum / d x[j] = own_j + (1 - own_{p(j)})
    # (flip: p is its own inverse); own is 1 - rho, or 0 inside a box and 1 outside
    if plan.mask is not None:
        own = 1.0 - plan.mask.double()
    else:
        own = torch.stack([1.0 - oracle.region_mask(plan, i, x[:, 0]).double() for i in range(6)])
    want = (own + (1.0 - own)[plan.partner])[:, None].expand_as(x)
    assert torch.allclose(grad, want, atol=1e-12), "the gradient is not the blend's transpose"


@requires_triton
def test_saliencymix_kernel_equals_reference(gen):
    x, _, _ = _spotted(6, gen)
    plan = SaliencyMix(pairing="roll", generator=seeded(2)).plan(x)
    want = oracle.expected(x, plan)
    out = x.clone().to(KERNEL_DEVICE)
    with backend("triton"):
        F.apply(out, plan.to(out.device))
    assert_close(out.cpu(), want, torch.float32, "triton saliencymix")


# --------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build,error,name", [
    pytest.param(lambda: FMix(alpha=0.0), ValueError, "alpha", id="fmix-alpha-0"),
    pytest.param(lambda: FMix(alpha="1"), TypeError, "alpha", id="fmix-alpha-str"),
    pytest.param(lambda: FMix(decay_power=-1.0), ValueError, "decay_power", id="fmix-decay"),
    pytest.param(lambda: FMix(max_soft=0.6), ValueError, "max_soft", id="fmix-max-soft"),
    pytest.param(lambda: FMix(size=(0, 4)), ValueError, "size", id="fmix-size-0"),
    pytest.param(lambda: FMix(size=7), ValueError, "size", id="fmix-size-int"),
    pytest.param(lambda: FMix(prob=1.5), ValueError, "prob", id="fmix-prob"),
    pytest.param(lambda: FMix(pairing="random"), ValueError, "pairing", id="fmix-pairing"),
    pytest.param(lambda: FMix(num_classes=0), ValueError, "num_classes", id="fmix-classes"),
    pytest.param(lambda: FMix(label_smoothing=1.0), ValueError, "label_smoothing", id="fmix-smoothing"),
    pytest.param(lambda: SaliencyMix(beta=-1.0), ValueError, "beta", id="saliency-beta"),
    pytest.param(lambda: SaliencyMix(sigma=0.0), ValueError, "sigma", id="saliency-sigma"),
    pytest.param(lambda: SaliencyMix(pairing="shuffle"), ValueError, "pairing", id="saliency-pairing"),
    pytest.param(lambda: FMix(num_classes=5)(torch.zeros(4, 8, 8), torch.arange(4)), ValueError, "x",
                 id="fmix-3d-x"),
    pytest.param(lambda: SaliencyMix(num_classes=5)(torch.zeros(4, 3, 8, 8), torch.arange(3)), ValueError,
                 "target", id="saliency-short-target"),
])
def test_bad_arguments_raise_naming_them(build, error, name):
    with pytest.raises(error, match=rf"^{name}\b"):
        build()


def test_bad_call_writes_nothing():
    x = torch.rand(4, 3, 8, 8)
    before = raw_bytes(x)
    with pytest.raises(ValueError, match="^target"):
        FMix(num_classes=5)(x, torch.tensor([0, 1, 2, 9]))
    assert torch.equal(raw_bytes(x), before)
