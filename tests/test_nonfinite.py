"""Untouched means untouched: a NaN, an Inf or a -0.0 in one sample never reaches a sample or a
pixel that the plan leaves alone, on every backend (the reference, the CPU fast path's walks,
the kernels under the interpreter), and a copy keeps the sign of zero."""
import pytest
import torch

from fastmix import cpu
from fastmix import functional as F
from fastmix.layout import describe
from fastmix.plan import plan_args

from helpers import KERNEL_DEVICE, backend, raw_bytes, requires_triton

BACKENDS = ["reference", "cpu", pytest.param("triton", marks=requires_triton)]


def _poisoned(dtype, gen, batch=8, size=(6, 10)):
    """Random samples, except: sample 0 all NaN, sample 1 all +Inf, sample 6 all -Inf, and one
    -0.0 pixel in every sample (0, 1 and 6 hold their poison there too)."""
    x = torch.rand(batch, 3, *size, generator=gen).to(dtype)
    x[:, :, 0, 0] = -0.0
    x[0], x[1], x[6] = float("nan"), float("inf"), float("-inf")
    return x


def _untouched(plan, x):
    """(B, C, H, W) bool: elements outside their sample's region (what the plan must leave alone)."""
    height, width = x.shape[-2:]
    inside = torch.zeros(x.shape[0], height, width, dtype=torch.bool)
    for i, boxes in enumerate(plan.box.tolist()):
        for y0, y1, x0, x1 in boxes:
            inside[i, max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)] = True
    return (~inside)[:, None].expand(x.shape)


def _plans(batch, size, gen):
    """Mixup rows left unmixed (prob), CutMix boxes, switching with torchvision's roll, Cutout
    holes; the poisoned samples are drawn from by their partners (flip: 7, 6 and 1; roll: 1, 2, 7)."""
    return {
        "mixup-prob": F.mixup_cutmix_plan(batch, size, mixup_alpha=1.0, cutmix_alpha=0.0, prob=0.5, mode="elem",
                                          generator=gen),
        "cutmix-elem": F.mixup_cutmix_plan(batch, size, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                                           generator=gen),
        "switch-roll": F.mixup_cutmix_plan(batch, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", prob=0.7,
                                           pairing="roll", generator=gen),
        "cutout": F.cutout_plan(batch, size, n_holes=2, length=4, fill=1.5, p=0.7, generator=gen),
        # batch mode, drawn on the host: one value expanded to every row (the CPU path's uniform walk)
        "cutmix-batch": F.mixup_cutmix_plan(batch, size, mixup_alpha=0.0, cutmix_alpha=1.0, generator=gen),
        "mixup-batch-roll": F.mixup_cutmix_plan(batch, size, mixup_alpha=1.0, prob=0.5, pairing="roll",
                                                generator=gen),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", BACKENDS)
def test_untouched_elements_stay_bit_for_bit(name, dtype, gen):
    for plan_name, plan in _plans(8, (6, 10), gen).items():
        x = _poisoned(dtype, gen)
        before = raw_bytes(x).view(x.shape + (-1,))
        out = x.clone().to(KERNEL_DEVICE if name == "triton" else "cpu")
        with backend(name):
            F.apply(out, plan.to(out.device))
        after = raw_bytes(out.cpu()).view(x.shape + (-1,))
        changed = (before != after).any(-1) & _untouched(plan, x)
        assert not changed.any(), (f"{name}/{plan_name}/{dtype}: {int(changed.sum())} untouched elements changed, "
                                   f"first at {tuple(int(v) for v in changed.nonzero()[0])}")


@pytest.mark.parametrize("walk", [cpu.CHUNKS, cpu.CYCLES, cpu.FLIP_PAIRS, cpu.SELECT])
def test_every_cpu_walk_leaves_untouched_rows_alone(walk, gen):
    """Each walk forced on a flip Mixup plan whose rows 2 and 5 (a pair) are not mixed: their
    bytes survive even though their partners hold NaN and Inf."""
    lam = torch.rand(8, generator=gen)
    lam[[2, 5]] = 1.0
    plan = F.mixup_plan(lam)
    x = _poisoned(torch.float32, gen)
    x[[0, 7]] = float("nan")
    x[3] = float("inf")
    before = raw_bytes(x).clone()
    args = plan_args(plan, with_cycles=False)
    lay = describe(x, False)
    cpu.run_walk(walk, x, lay, args)
    rows = raw_bytes(x).view(8, -1)
    assert torch.equal(rows[[2, 5]], before.view(8, -1)[[2, 5]])
    assert torch.isnan(x[7]).all() and torch.isnan(x[0]).all(), "a mixed NaN pair stays NaN"


@pytest.mark.parametrize("name", BACKENDS)
def test_a_copy_keeps_negative_zero(name):
    """CutMix copies the partner's box: -0.0 arrives as -0.0 (0.0 + -0.0 would be +0.0)."""
    x = torch.ones(2, 1, 4, 4)
    x[1] = -0.0
    plan = F.cutmix_plan(torch.tensor([[0, 4, 0, 4], [0, 0, 0, 0]], dtype=torch.int32), (4, 4))
    out = x.clone().to(KERNEL_DEVICE if name == "triton" else "cpu")
    with backend(name):
        F.apply(out, plan.to(out.device))
    assert torch.equal(raw_bytes(out[0].cpu()), raw_bytes(x[1])), f"{name}: sample 0 is not a bit-exact copy of -0.0"
