"""The torch.library registration: one opaque op per call under torch.compile(fullgraph=True),
fake (meta) implementations, and autograd through the registered backward."""
import pytest
import torch

import fastmix
from fastmix import known, functional as F
from fastmix import ops
from fastmix.plan import plan_args


def _compile_counting(fn):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    return torch.compile(fn, fullgraph=True, backend="aot_eager"), counters


@pytest.mark.slow
def test_a_whole_mixup_step_compiles_as_one_graph_and_matches_eager():
    mixer = fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=10, validate=False)

    def step(x, y):
        return mixer(x, y)

    compiled, counters = _compile_counting(step)
    x = torch.rand(6, 3, 8, 8)
    y = torch.randint(0, 10, (6,))
    torch.manual_seed(7)
    xc, tc = compiled(x.clone(), y)
    torch.manual_seed(7)
    xe, te = step(x.clone(), y)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"], dict(counters["graph_break"])
    assert torch.allclose(xc, xe) and torch.allclose(tc, te)
    assert not torch.equal(xc, x), "nothing was mixed"


@pytest.mark.slow
def test_out_of_place_op_and_its_backward_compile():
    plan = F.mixup_cutmix_plan(4, (5, 6), mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                               generator=torch.Generator().manual_seed(3))

    def loss(x):
        return (F.apply(x, plan) ** 2).sum()

    compiled, counters = _compile_counting(loss)
    x = torch.randn(4, 2, 5, 6, requires_grad=True)
    (gc,) = torch.autograd.grad(compiled(x), x)
    (ge,) = torch.autograd.grad(loss(x), x)
    assert not counters["graph_break"]
    assert torch.allclose(gc, ge)


def test_fake_implementations_give_shapes_without_running():
    x = torch.empty(5, 3, 7, 9, device="meta").contiguous(memory_format=torch.channels_last)
    plan = F.mixup_cutmix_plan(5, (7, 9), mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", device="meta")
    args = plan_args(plan, with_cycles=True)
    out = torch.ops.fastmix.blend(x, *args)
    assert out.device.type == "meta" and out.shape == x.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.ops.fastmix.blend_(x, *args)          # nothing to run, nothing raised
    grad = torch.ops.fastmix.blend_grad(x, *args)
    assert grad.shape == x.shape
    target = torch.ops.fastmix.mix_targets(torch.empty(5, dtype=torch.long, device="meta"), plan.partner,
                                           plan.label_lam, 11, 0.1)
    assert target.shape == (5, 11) and target.dtype == torch.float32


def test_eager_fast_path_and_registered_op_agree():
    """Plain eager calls skip torch.library's layers; going through the op gives the same bytes."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=gen)
    plan = F.mixup_cutmix_plan(6, (8, 8), mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", generator=gen)
    fast, via_op = x.clone(), x.clone()
    ops.apply_known(fast, plan, known.batch("x", fast), inplace=True)
    torch.ops.fastmix.blend_(via_op, *plan_args(plan, with_cycles=False))
    assert torch.equal(fast, via_op)


def test_set_backend_changes_the_choice_in_process_and_refuses_unknown_names():
    """FASTMIX_BACKEND is read once, at import; fastmix.set_backend changes the choice at once,
    including for signatures already known (their cached facts carry the old backend)."""
    x = torch.rand(4, 3, 8, 8)
    mixer = fastmix.Mixup(mixup_alpha=1.0, num_classes=5)
    before = ops.backend()
    try:
        mixer(x, torch.arange(4))
        assert known.batch("x", x).backend == ops.backend_for(x)
        fastmix.set_backend("reference")
        assert ops.backend_for(x) == "reference" and known.batch("x", x).backend == "reference"
        mixer(x, torch.arange(4))
        with pytest.raises(ValueError, match="name"):
            fastmix.set_backend("gpu")
        assert ops.backend() == "reference", "a refused name must leave the choice as it was"
    finally:
        fastmix.set_backend(None if before == "auto" else before)
    assert ops.backend_for(x) == ("cpu" if before == "auto" else before)
