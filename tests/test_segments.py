"""Long cycles in parallel: torchvision's roll (one cycle of the whole batch) and random
permutations' long cycles are walked in segments of at most ``SEGMENT`` rows, each segment handing
its first row over to the segment that reads it. Under the interpreter programs run one after the
other, so both orders are run: readers first (the owner writes its row itself) and owners first
(the reader copies the owner's result from the scratch). Results equal the reference; no program
walks more than a segment; each handed-off row is the only byte two programs touch."""
import pytest
import torch

from fastmix import functional as F
from fastmix.partners import SEGMENT

from cases import make_batch, make_plan
from helpers import HAS_CUDA, KERNEL_DEVICE, assert_close, backend, requires_triton

pytestmark = requires_triton
EXACT = ("cutmix", "cutout")


def _plan(kind, pairing, batch, gen):
    return make_plan(kind, pairing, batch, (5, 8), 2, gen)


@pytest.mark.parametrize("reverse", [False, True], ids=["readers-first", "owners-first"])
@pytest.mark.parametrize("pairing", ["roll", "perm"])
@pytest.mark.parametrize("kind,dtype", [("mixup", torch.float32), ("switch_elem", torch.uint8),
                                        ("cutmix", torch.bfloat16), ("cutout", torch.float32)])
def test_long_cycles_in_place_equal_the_reference(kind, dtype, pairing, reverse, gen, monkeypatch):
    from fastmix.kernels import blend as kernel_blend

    monkeypatch.setattr(kernel_blend, "REVERSE_SEGMENTS", reverse)
    for batch in (SEGMENT + 1, 3 * SEGMENT + 5):
        x = make_batch("nchw", dtype, batch, 2, 5, 8, gen)
        plan = _plan(kind, pairing, batch, gen)
        got = x.clone().to(KERNEL_DEVICE)
        with backend("triton"):
            F.apply(got, plan.to(got.device))
        want = x.clone()
        with backend("reference"):
            F.apply(want, plan)
        assert_close(got.cpu(), want, dtype, f"{kind}/{pairing}/B={batch}/{'reverse' if reverse else 'forward'}",
                     exact=kind in EXACT)


@pytest.mark.parametrize("what", ["out_of_place", "gradient"])
@pytest.mark.parametrize("pairing", ["roll", "perm"])
def test_long_cycles_out_of_place_and_gradient(what, pairing, gen):
    batch = 2 * SEGMENT + 3
    x = make_batch("nchw", torch.float32, batch, 2, 5, 8, gen)
    plan = _plan("switch_elem", pairing, batch, gen)
    results = []
    for name in ("triton", "reference"):
        leaf = x.clone().to(KERNEL_DEVICE if name == "triton" else "cpu").requires_grad_(what == "gradient")
        with backend(name):
            out = F.apply(leaf, plan.to(leaf.device), inplace=False)
            if what == "gradient":
                (out * torch.arange(out.numel(), device=leaf.device).view(out.shape)).sum().backward()
                out = leaf.grad
        results.append(out.detach().cpu())
    assert_close(results[0], results[1], torch.float32, f"{what}/{pairing}")


@pytest.mark.skipif(HAS_CUDA, reason="counts the interpreter's loads and stores")
@pytest.mark.parametrize("reverse", [False, True], ids=["readers-first", "owners-first"])
@pytest.mark.parametrize("pairing", ["roll", "perm"])
def test_no_program_walks_more_than_a_segment(pairing, reverse, gen, monkeypatch):
    """The longest chain of rows any program touches is a segment plus the next segment's first
    row; the batch's bytes are the ideal's plus one row per segment (the reader's read of a
    handed-off first row); only handed-off first rows are touched by two programs."""
    from fastmix.kernels import blend as kernel_blend
    from fastmix.kernels import traffic

    monkeypatch.setattr(kernel_blend, "REVERSE_SEGMENTS", reverse)
    batch = 4 * SEGMENT
    x = make_batch("nchw", torch.float32, batch, 2, 5, 8, gen)
    plan = _plan("mixup", pairing, batch, gen)
    mixed = int((plan.lam_partner != 0).sum())
    with backend("triton"), traffic.count(x) as t:
        F.apply(x, plan)
    row = x[0].numel() * x.element_size()
    segments = plan.segments if pairing == "perm" else None
    handed = (int((segments[2] != torch.arange(batch + 1, dtype=torch.int32))[:batch].logical_and(
        segments[0, :batch] < batch).sum()) if pairing == "perm" else batch // SEGMENT)
    assert t.longest_walk(x) <= SEGMENT + 1, f"a program walked {t.longest_walk(x)} rows"
    assert t.bytes_stored == mixed * row, f"stored {t.bytes_stored}, ideal {mixed * row}"
    assert t.bytes_loaded <= mixed * row + handed * row, (f"loaded {t.bytes_loaded}, ideal {mixed * row} "
                                                          f"+ {handed} handed-off rows")
    shared_rows = set(((t.shared_addresses() - x.data_ptr()) // row).tolist())
    assert len(shared_rows) <= handed, f"{len(shared_rows)} rows shared by two programs, {handed} hand-offs"
    print(f"{pairing}: longest walk {t.longest_walk(x)} rows; loaded {t.bytes_loaded / (mixed * row):.3f} x ideal")
