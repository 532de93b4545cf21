"""GPU-only checks (skipped without CUDA): no host synchronisation, CUDA-graph capture,
offsets beyond 2**31 elements, and the kernels at training size against the reference."""
import pytest
import torch

import fastmix
from fastmix import functional as F
from fastmix import ops

from helpers import backend, requires_cuda, requires_triton

pytestmark = [requires_cuda, requires_triton, pytest.mark.gpu]


def test_cuda_tensors_take_the_kernels():
    x = torch.rand(4, 3, 8, 8, device="cuda")
    assert ops.backend_for(x) == "triton"


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_a_training_step_never_synchronises(mode):
    x = torch.rand(64, 3, 64, 64, device="cuda")
    y = torch.randint(0, 1000, (64,), device="cuda")
    mixer = fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=1000)
    erase = fastmix.RandomErasing(p=0.5, value="random")
    cutout = fastmix.Cutout(n_holes=2, length=16, fill=(0.1, 0.2, 0.3))
    mixer(x, y)  # compile the kernels first (compilation itself may synchronise)
    erase(x)
    cutout(x)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, target = mixer(x, y)
        erase(out)
        cutout(out)
        fastmix.v2.CutMix(num_classes=1000)(out, y)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert target.shape == (64, 1000)


def test_a_step_can_be_captured_in_a_cuda_graph():
    x = torch.rand(32, 3, 32, 32, device="cuda")
    y = torch.randint(0, 100, (32,), device="cuda")
    mixer = fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=100)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        mixer(x, y)  # warm up (compile) off the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        _, target = mixer(x, y)
    before = x.clone()
    graph.replay()
    torch.cuda.synchronize()
    assert not torch.equal(before, x), "the replayed graph did not mix"
    assert torch.allclose(target.sum(1), torch.ones(32, device="cuda"))


def test_offsets_beyond_2_31_elements():
    """A uint8 batch of 2.2e9 elements: the last sample's pixels are addressed past 2**31."""
    batch, c, h, w = 4, 3, 16384, 11000
    assert batch * c * h * w > 2**31
    x = torch.randint(0, 256, (batch, c, h, w), dtype=torch.uint8, device="cuda")
    rows = slice(h - 3, h)                                 # the very end of the tensor
    first, last = x[0, :, rows].float(), x[batch - 1, :, rows].float()
    lam = torch.tensor([0.25, 0.5, 0.5, 0.75], device="cuda")
    plan = F.mixup_plan(lam)                               # flip: sample 3 mixes with sample 0
    with backend("triton"):
        F.apply(x, plan)
    want_last = (0.75 * last + 0.25 * first).round()
    want_first = (0.25 * first + 0.75 * last).round()
    assert (x[batch - 1, :, rows].float() - want_last).abs().max() <= 1
    assert (x[0, :, rows].float() - want_first).abs().max() <= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.uint8])
@pytest.mark.parametrize("kind", ["mixup", "cutmix", "elem"])
def test_training_size_matches_reference(dtype, kind):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.rand(256, 3, 224, 224, device="cuda", generator=gen) * 255).to(dtype)
    alphas = {"mixup": dict(mixup_alpha=1.0), "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
              "elem": dict(mixup_alpha=0.8, cutmix_alpha=1.0)}[kind]
    mode = "elem" if kind == "elem" else "batch"
    mixer = fastmix.Mixup(**alphas, mode=mode, num_classes=1000, generator=gen)
    plan = mixer.plan(x)
    got = x.clone()
    with backend("triton"):
        F.apply(got, plan)
    want = x.clone()
    with backend("reference"):
        F.apply(want, plan)
    diff = (got.double() - want.double()).abs().max().item()
    bound = {torch.float32: 1e-4, torch.bfloat16: 2.0, torch.uint8: 1.0}[dtype]   # values up to 255
    assert diff <= bound, f"{kind}/{dtype}: max difference {diff}"


@pytest.mark.parametrize("name", ["FMix", "SaliencyMix"])
def test_family_mask_steps_never_synchronise_and_match_the_reference(name):
    x = torch.rand(16, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    op = getattr(fastmix, name)(num_classes=10, generator=torch.Generator(device="cuda").manual_seed(0))
    op(x.clone(), y)              # compile the kernels first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        plan = op.plan(x)
        out = F.apply(x.clone(), plan)
        op(x.clone(), y)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    with backend("reference"):
        want = F.apply(x.cpu(), plan.to("cpu"))
    torch.testing.assert_close(out.cpu(), want)


def test_bound_launches_take_the_compiled_kernel_and_agree_with_the_normal_launch(monkeypatch):
    """On a GPU the kernels are launched through the compiled kernel found on the first call of a
    specialization (kernels/launch.py): later calls take that path, give the normal launch's bytes,
    and a batch at another alignment (a view at storage offset 1) gets a specialization of its own."""
    from fastmix.kernels import blend, launch

    batch, size = 16, (32, 32)
    plan = F.mixup_cutmix_plan(batch, size, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", device="cuda",
                               generator=torch.Generator("cuda").manual_seed(0))
    storage = torch.rand(batch * 3 * 32 * 32 + 1, device="cuda")
    for name, x in {"aligned": storage[:-1].view(batch, 3, *size), "offset-1": storage[1:].view(batch, 3, *size)}.items():
        bound_results = []
        for _ in range(3):
            y = x.clone() if name == "aligned" else torch.empty_like(storage)[1:].view_as(x).copy_(x)
            F.apply(y, plan)
            bound_results.append(y)
        monkeypatch.setattr(launch, "BOUND", False)
        normal = x.clone() if name == "aligned" else torch.empty_like(storage)[1:].view_as(x).copy_(x)
        F.apply(normal, plan)
        monkeypatch.setattr(launch, "BOUND", True)
        with backend("reference"):
            spec = F.apply(x.clone(), plan)
        for k, got in enumerate(bound_results):
            assert torch.equal(got, normal), f"{name}: call {k} through the bound launch differs from the normal one"
        assert torch.allclose(normal, spec, atol=1e-5, rtol=1e-6), f"{name}: the kernel differs from the reference"
    direct = [entry for bound, *_ in blend._prepared.values()
              for entry in bound.compiled.values() if entry is not None]
    assert direct, "no launch went through a compiled kernel's launcher"
    in_place = [bound for bound, *_ in blend._prepared.values() if bound.kernel is blend._blend_inplace_kernel]
    assert any(len(bound.compiled) >= 2 for bound in in_place), "the offset-1 batch did not get a specialization of its own"
