"""Plans whose regions carry a per-pixel weight ``rho`` (FMix's masks, PatchUp's blocks): inside
``rho > 0`` the output is ``(1 - rho) x + rho * blend``, outside ``x`` bit for bit. The reference
against the float64 oracle, the kernels (in place, out of place, gradient) against the reference."""
import dataclasses

import pytest
import torch

from fastmix import functional as F

import oracle
from cases import make_batch, with_pairing
from helpers import KERNEL_DEVICE, assert_close, backend, raw_bytes, requires_triton

BACKENDS = ["reference", "cpu", pytest.param("triton", marks=requires_triton)]


def _masked_plan(batch, size, soft, pairing, gen):
    plan = F.mixup_cutmix_plan(batch, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", generator=gen)
    height, width = size
    mask = torch.rand(batch, height, width, generator=gen)
    mask = mask if soft else (mask > 0.5).float()
    mask[:, 0, :] = 0.0                                            # a row no sample may touch
    # whole-sample regions with boxes: the mask shapes the region
    box = torch.zeros_like(plan.box)
    box[..., 1], box[..., 3] = height, width
    lam = plan.lam_self.clone()
    return with_pairing(dataclasses.replace(plan, box=box, mask=mask, lam_self=lam, lam_partner=1.0 - lam),
                        pairing, gen)


@pytest.mark.parametrize("soft", [False, True], ids=["binary", "soft"])
@pytest.mark.parametrize("layout,dtype", [("nchw", torch.float32), ("nhwc", torch.uint8), ("video", torch.bfloat16),
                                          ("crop", torch.float64)])
@pytest.mark.parametrize("name", BACKENDS)
def test_masked_plans_match_the_oracle(name, layout, dtype, soft, gen):
    for pairing in ("flip", "roll", "perm"):
        x = make_batch(layout, dtype, 7, 3, 6, 9, gen)
        plan = _masked_plan(7, (6, 9), soft, pairing, gen)
        out = x.clone().to(KERNEL_DEVICE if name == "triton" else "cpu")
        with backend(name):
            F.apply(out, plan.to(out.device))
        out = out.cpu()
        assert_close(out, oracle.expected(x, plan), dtype, f"{name}/{layout}/{dtype}/{pairing}/soft={soft}")
        assert torch.equal(raw_bytes(out[..., 0, :]), raw_bytes(x[..., 0, :])), "rho = 0 must leave pixels alone"


@pytest.mark.parametrize("name", BACKENDS)
def test_masked_gradient_is_the_reference_transpose(name, gen):
    x = make_batch("nchw", torch.float64, 5, 2, 6, 9, gen).requires_grad_()
    plan = _masked_plan(5, (6, 9), True, "roll", gen)
    weights = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    with backend("reference"):
        want, = torch.autograd.grad((F.apply(x, plan) * weights).sum(), x)
    leaf = x.detach().clone().to(KERNEL_DEVICE if name == "triton" else "cpu").requires_grad_()
    with backend(name):
        got, = torch.autograd.grad((F.apply(leaf, plan.to(leaf.device)) * weights.to(leaf.device)).sum(), leaf)
    assert_close(got.cpu(), want, torch.float64, f"{name} gradient")


def test_masked_reference_gradient_passes_gradcheck(gen):
    """The reference's masked backward against finite differences (once: the backends are held to
    the reference above). Small, so its 2 x 60 evaluations stay quick."""
    x = make_batch("nchw", torch.float64, 3, 1, 4, 5, gen).requires_grad_()
    plan = _masked_plan(3, (4, 5), True, "roll", gen)
    with backend("reference"):
        assert torch.autograd.gradcheck(lambda v: F.apply(v, plan), (x,))


@requires_triton
def test_integer_maps_take_the_larger_share(gen):
    masks = torch.randint(0, 9, (6, 5, 7), generator=gen)
    plan = _masked_plan(6, (5, 7), True, "flip", gen)
    for_maps = plan.for_masks(255)
    results = []
    for name in ("reference", "triton"):
        out = masks.clone().to(KERNEL_DEVICE if name == "triton" else "cpu")
        with backend(name):
            F.apply_masks(out, plan.to(out.device))
        results.append(out.cpu())
    assert torch.equal(results[0], results[1])
    kept = plan.mask < 0.5
    assert torch.equal(results[0][kept], masks[kept]), "pixels with rho < 0.5 keep their class"
    assert for_maps.mask is plan.mask
