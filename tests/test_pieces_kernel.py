"""The piece pass as a Triton kernel (``kernels/pieces.py``; under the interpreter without a GPU)
against the reference, bit for bit, on hand plans and on every member's draws in both modes;
hostile plans never touching memory outside the tensors; the traffic it moves against what the
plan needs; its variants compiling for sm_80/sm_90 without local memory."""
import pytest
import torch

from fastmix.pieces import PiecePlan, apply_pieces_reference
from helpers import HAS_CUDA, KERNEL_DEVICE, assert_close, backend, requires_triton, seeded
from pieces_cases import H, W, METHOD_IDS, METHODS, hand_plan, image_batch, raw_bits, uniform_hand_plan

pytestmark = requires_triton


def _kernel():
    from fastmix.kernels import pieces
    return pieces


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


@pytest.mark.parametrize("dtype,channels_last,resize", [
    (torch.float32, False, "nearest"), (torch.float32, False, "bilinear"),
    (torch.float32, True, "nearest"), (torch.float32, True, "bilinear"),
    (torch.float16, True, "bilinear"), (torch.bfloat16, False, "bilinear"), (torch.bfloat16, True, "nearest"),
    (torch.uint8, False, "bilinear"), (torch.uint8, True, "nearest"), (torch.float64, False, "bilinear"),
])
def test_kernel_equals_reference_on_a_hand_plan(dtype, channels_last, resize):
    x = image_batch(dtype, channels_last)
    if dtype.is_floating_point:                              # NaN spreads only where it is read; -0.0 copies
        x[0, 0, 3, 5], x[1, 0, 0, 0], x[1, 1, 2, 1] = float("nan"), -0.0, -0.0
    for plan in (hand_plan(resize), uniform_hand_plan(3, resize)):
        plan = plan.to(x.device)
        want = apply_pieces_reference(x, plan)
        _assert_kernel_matches(_kernel().apply_pieces(x, plan), want, dtype, f"kernel {dtype} {resize}")


@pytest.mark.parametrize("name,make", METHODS, ids=METHOD_IDS)
def test_kernel_equals_reference_on_each_method(name, make):
    """The whole CUDA-path step (fused sampler, bound piece pass, fused targets) against the
    reference step on the same draw."""
    x = image_batch(torch.float32, name.startswith("dirichlet"), b=4, c=2, seed=4)
    y = torch.arange(4, device=x.device)
    with backend("triton"):
        got, soft = make(num_classes=4, generator=seeded(21))(x, y)
        plan = make(num_classes=4, generator=seeded(21)).plan(x)
    want = apply_pieces_reference(x, plan)
    _assert_kernel_matches(got, want, torch.float32, name)
    from fastmix.pieces import pieces_targets
    assert torch.allclose(soft, pieces_targets(y, plan, 4, 0.0), atol=1e-6, rtol=0), name


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


def test_the_op_is_the_pass():
    """fastmix::apply_pieces (what torch.compile sees) computes the pass of the plan's pieces."""
    x = image_batch(torch.float32, False)
    plan = hand_plan("bilinear").to(x.device)
    with backend("triton"):
        got = torch.ops.fastmix.apply_pieces(x, plan.src, plan.weight, plan.dst_box, plan.src_box, plan.resize)
    _assert_kernel_matches(got, apply_pieces_reference(x, plan), torch.float32, "fastmix::apply_pieces")


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


@pytest.mark.parametrize("name,make", METHODS, ids=METHOD_IDS)
def test_traffic_is_what_the_plan_needs(name, make):
    """Every output byte is stored once; each output element loads exactly the source elements its
    value depends on: one per piece with a non-zero weight (RICAP and nearest ResizeMix: one in
    all; k-way Mixup: k), a bilinear box pixel its distinct taps (1, 2 or 4)."""
    from fastmix.kernels import traffic

    b, c = 4, 2
    x = image_batch(torch.float32, False, b=b, c=c, seed=6)
    plan = make(num_classes=4, generator=seeded(30)).plan(x)
    out = torch.empty_like(x)
    with traffic.count(x, out) as t:
        _kernel().apply_pieces(x, plan, out=out)
    assert t.bytes_stored == out.numel() * 4 and t.rewritten_bytes == 0, f"{name}: stores"
    assert t.shared_bytes == 0
    if name.startswith("dirichlet"):
        nonzero = int((plan.weight != 0).sum(1).sum())
        ideal = nonzero * c * H * W
    elif name.startswith("resizemix_bilinear"):
        ideal = 0
        for i in range(b):
            y0, y1, x0, x1 = plan.dst_box[i, 0].tolist()
            box_taps = int(_taps(torch.arange(y1 - y0), H, y1 - y0).sum()) * int(_taps(torch.arange(x1 - x0), W, x1 - x0).sum())
            ideal += c * (box_taps + H * W - (y1 - y0) * (x1 - x0))
    else:
        ideal = b * c * H * W
    assert t.bytes_loaded == ideal * 4, f"{name}: loaded {t.bytes_loaded} B, the plan needs {ideal * 4} B"


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
