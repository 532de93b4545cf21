"""Autograd: an input that requires grad is mixed out of place, into a new tensor, with the
gradient of the same blend written as a torch expression; the out-of-place path blends exactly
what the in-place path does (both held to the naive oracle); ``torch.autograd.gradcheck`` through
``functional.apply`` and through the transforms.
"""
from __future__ import annotations

import pytest
import torch

import fastmix
import fastmix.functional as F
import fastmix.v2
import oracle
from helpers import H, K, W, backend, distinct_labels, requires_triton, seeded, tolerance, twins

def test_requires_grad_gives_new_tensor_and_gradient():
    labels = distinct_labels(6)
    x = torch.randn(6, 3, H, W, generator=seeded(1), dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    mixer, twin = twins(fastmix.Mixup, 4, mixup_alpha=1.0, mode="elem", num_classes=K)
    plan = twin.plan(x)
    out, _ = mixer(x, labels)
    assert out is not x and out.data_ptr() != x.data_ptr(), "a tensor requiring grad must be mixed out of place"
    assert out.requires_grad
    assert torch.equal(x.detach(), before), "x requiring grad was modified"
    weight = torch.randn(out.shape, generator=seeded(2), dtype=torch.float64)
    (out * weight).sum().backward()
    # the same blend written as a torch expression
    x2 = before.clone().requires_grad_()
    a = plan.lam_self.double().view(-1, 1, 1, 1)
    b = plan.lam_partner.double().view(-1, 1, 1, 1)
    expected = a * x2 + b * x2[plan.partner]
    torch.testing.assert_close(out.detach(), expected.detach())
    (expected * weight).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, msg="Mixup gradient differs from the torch expression")


def test_requires_grad_cutmix_gradient_matches_region():
    labels = distinct_labels(6)
    x = torch.randn(6, 3, H, W, generator=seeded(1), requires_grad=True)
    mixer, twin = twins(fastmix.Mixup, 5, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=K)
    plan = twin.plan(x)
    out, _ = mixer(x, labels)
    weight = torch.randn(out.shape, generator=seeded(2))
    (out * weight).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    region = torch.stack([oracle.region_mask(plan, i, x) for i in range(6)])
    expected = torch.where(region, x2[plan.partner], x2)
    torch.testing.assert_close(out.detach(), expected.detach(), rtol=0, atol=0)
    (expected * weight).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, msg="CutMix gradient differs from the region expression")


OUT_OF_PLACE = {
    "mixup-batch": lambda g: fastmix.Mixup(mixup_alpha=1.0, mode="batch", num_classes=K, generator=g),
    "cutmix-batch": lambda g: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch", num_classes=K,
                                            generator=g),
    "cutmix-pair": lambda g: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="pair", num_classes=K,
                                           generator=g),
    "switch-elem": lambda g: fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K,
                                           generator=g),
    "minmax-batch": lambda g: fastmix.Mixup(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.7), num_classes=K, generator=g),
    "v2-cutmix": lambda g: fastmix.v2.CutMix(num_classes=K, generator=g),
    "v2-mixup": lambda g: fastmix.v2.MixUp(num_classes=K, generator=g),
}


@pytest.mark.parametrize("name", list(OUT_OF_PLACE))
def test_out_of_place_equals_in_place_and_the_oracle(name):
    """The differentiable (out-of-place) path must blend exactly what the in-place path does."""
    b, labels = 6, distinct_labels(6)
    for seed in range(3):
        x = torch.randn(b, 3, H, W, generator=seeded(seed))
        plan = OUT_OF_PLACE[name](seeded(seed)).plan(x)
        expected = oracle.blend(x, plan)
        in_place, t_in = OUT_OF_PLACE[name](seeded(seed))(x.clone(), labels)
        leaf = x.clone().requires_grad_()
        out_of_place, t_out = OUT_OF_PLACE[name](seeded(seed))(leaf, labels)
        assert out_of_place is not leaf and torch.equal(leaf.detach(), x)
        torch.testing.assert_close(in_place.double(), expected, **tolerance(torch.float32),
                                   msg=lambda m: f"{name} seed {seed}: in place vs oracle: {m}")
        torch.testing.assert_close(out_of_place.detach().double(), expected, **tolerance(torch.float32),
                                   msg=lambda m: f"{name} seed {seed}: out of place (requires grad) vs oracle: {m}")
        assert torch.equal(t_in, t_out), f"{name} seed {seed}: targets depend on requires_grad"
        if name.startswith("v2"):
            kept_input = x.clone()
            kept, _ = type(OUT_OF_PLACE[name](None))(num_classes=K, inplace=False, generator=seeded(seed))(
                kept_input, labels)
            assert torch.equal(kept_input, x), f"{name}: inplace=False changed its input"
            torch.testing.assert_close(kept.double(), expected, **tolerance(torch.float32),
                                       msg=lambda m: f"{name} seed {seed}: inplace=False vs oracle: {m}")


def _gradcheck_plans():
    size = (5, 6)
    return {
        "mixup-elem": F.mixup_cutmix_plan(4, None, mixup_alpha=1.0, mode="elem", generator=seeded(0)),
        "cutmix-elem": F.mixup_cutmix_plan(4, size, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                                           generator=seeded(3)),
        "switch-roll": F.mixup_cutmix_plan(4, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem",
                                           pairing="roll", generator=seeded(1)),
        "mixup-randperm": F.mixup_plan(torch.tensor([0.2, 0.7, 0.5, 0.9]), partner=torch.tensor([2, 0, 3, 1])),
        "cutout": F.cutout_plan(4, size, n_holes=2, length=3, fill=0.5, generator=seeded(2)),
    }


@pytest.mark.parametrize("name", list(_gradcheck_plans()))
def test_gradcheck_functional_apply(name):
    plan = _gradcheck_plans()[name]
    assert bool((plan.kind != fastmix.NONE).any()), f"{name}: the plan mixes nothing"
    x = torch.randn(4, 2, 5, 6, generator=seeded(4), dtype=torch.float64, requires_grad=True)
    # fast mode (random projections of the Jacobian) keeps the reference's per-call cost in check
    assert torch.autograd.gradcheck(lambda t: F.apply(t, plan), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradcheck_full_jacobian_cutmix():
    plan = F.mixup_cutmix_plan(3, (3, 5), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", switch_prob=0.7,
                               generator=seeded(3))
    assert bool((plan.kind == fastmix.CUTMIX).any()), "the plan cuts nothing"
    x = torch.randn(3, 1, 3, 5, generator=seeded(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.apply(t, plan), (x,), eps=1e-6, atol=1e-5)


def test_gradcheck_through_the_mixup_transform():
    labels = distinct_labels(4)

    def mixed(t):  # a fresh generator per call: gradcheck evaluates the same plan every time
        return fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K,
                             generator=seeded(6))(t, labels)[0]

    x = torch.randn(4, 2, 5, 6, generator=seeded(5), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mixed, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    v2x = torch.randn(4, 7, generator=seeded(5), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: fastmix.v2.MixUp(num_classes=K, inplace=False, generator=seeded(1))(t, labels)[0], (v2x,),
        eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", ["reference", "cpu", pytest.param("triton", marks=requires_triton)])
@pytest.mark.parametrize("plan_name", ["switch-roll", "mixup-randperm", "cutout"])
def test_gradgradcheck_out_of_place_blend(name, plan_name):
    # the blend is linear in x: its gradient (blend_grad) has a gradient too (the blend again)
    plan = _gradcheck_plans()[plan_name]
    x = torch.randn(4, 2, 5, 6, generator=seeded(7), dtype=torch.float64, requires_grad=True)
    with backend(name):
        assert torch.autograd.gradgradcheck(lambda t: F.apply(t, plan), (x,), eps=1e-6, atol=1e-5, fast_mode=True)
