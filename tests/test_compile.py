"""Every kernel (the family samplers included) compiles ahead of time for sm_80 and sm_90 with Triton's own compiler (no GPU
needed), uses no local memory, and issues 128-bit global accesses on the aligned path; and a
``Mixup`` step with its default arguments compiles under ``torch.compile(fullgraph=True)``."""
import json
import os
import subprocess
import sys

import pytest
import torch

import fastmix
import fastmix.functional as F
from helpers import K, requires_triton, seeded



@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Run the real command (a subprocess, so the kernels are not the interpreter's)."""
    out = tmp_path_factory.mktemp("aot") / "kernels.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fastmix.kernels", "--json", str(out)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert out.exists(), f"the compile report was not written:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text()), proc


@requires_triton
@pytest.mark.slow
def test_every_kernel_compiles_for_sm80_and_sm90(reports):
    rows, proc = reports
    failed = [f"{r['kernel']}/sm_{r['arch']}/{r['dtype']}: {r['error']}" for r in rows if r["error"]]
    assert not failed, "\n".join(failed)
    assert proc.returncode == 0
    assert {r["arch"] for r in rows} == {80, 90}
    kernels = {r["kernel"] for r in rows}
    assert {"blend_inplace", "blend_out", "blend_grad", "erase_const", "erase_noise", "mask_select",
            "targets_index", "targets_soft", "sample_mixup", "sample_mixup_targets", "sample_cutout",
            "sample_erasing"} <= kernels
    # the family's samplers, compiled as a real step launches them (kernels/aot.py FAMILY_STEPS)
    assert {"family_pieces_plan", "family_rows_sample", "family_fmix_select", "family_fmix_ramp", "family_gray",
            "family_residual", "family_blur_rows", "family_peak", "family_patch_rows"} <= kernels
    assert "blend_inplace" in proc.stdout, "the table was not printed"


# Known and open (issue 18's note): ptxas gives SaliencyMix's peak kernel an 8-byte stack frame on
# sm_90 (no .local in its PTX, no spill; 0 on sm_80). Pinned exactly, so any other stack or spill,
# or a larger frame here, still fails.
KNOWN_STACK = {("family_peak", 90): 8}


@requires_triton
@pytest.mark.slow
def test_no_local_memory(reports):
    rows, _ = reports
    spilled = [f"{r['kernel']}/sm_{r['arch']}/{r['dtype']}: {r['local_bytes']} B" for r in rows
               if r["local_bytes"] and KNOWN_STACK.get((r["kernel"], r["arch"])) != r["local_bytes"]]
    assert not spilled, "local memory (spills or stack): " + ", ".join(spilled)


@requires_triton
@pytest.mark.slow
def test_128_bit_accesses_on_the_aligned_path(reports):
    rows, _ = reports
    narrow = [f"{r['kernel']}/sm_{r['arch']}/{r['dtype']}: ld {r['widest_load_bits']}, st {r['widest_store_bits']}"
              for r in rows if r["kernel"].startswith(("blend", "erase")) and r["dtype"] in ("fp32", "fp16", "bf16")
              and (r["widest_load_bits"] != 128 or r["widest_store_bits"] != 128)]
    assert not narrow, "; ".join(narrow)


def _fullgraph(fn):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    return torch.compile(fn, fullgraph=True, backend="aot_eager"), counters


def test_a_default_mixup_step_compiles_on_cpu():
    # the defaults validate labels on CPU; under compile that check is skipped (it would branch on data)
    mixer = fastmix.Mixup(num_classes=K)

    def step(x, y):
        return mixer(x, y)

    compiled, counters = _fullgraph(step)
    x, y = torch.rand(4, 3, 8, 12), torch.tensor([3, 1, 4, 1])
    torch.manual_seed(11)
    xc, tc = compiled(x.clone(), y)
    torch.manual_seed(11)
    xe, te = step(x.clone(), y)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert torch.allclose(xc, xe) and torch.allclose(tc, te)
    assert not torch.equal(xc, x), "nothing was mixed"


def test_with_a_generator_draw_the_plan_eagerly_and_compile_the_application():
    # dynamo cannot put a torch.Generator into a graph (torch.rand(generator=...) does not trace), so
    # generator= is for eager draws; the documented pattern: draw the plan outside, apply it inside
    mixer = fastmix.Mixup(num_classes=K, cutmix_alpha=1.0, mode="elem", generator=seeded(2))
    x, y = torch.rand(4, 3, 8, 12), torch.tensor([3, 1, 4, 1])
    plan = mixer.plan(x)

    def step(x, y):
        return F.apply(x, plan), F.targets(y, plan, K, 0.1)

    compiled, counters = _fullgraph(step)
    xc, tc = compiled(x.clone(), y)
    xe, te = step(x.clone(), y)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert torch.equal(xc, xe) and torch.equal(tc, te)


def test_validate_true_under_compile_checks_with_an_asynchronous_assert():
    # an explicit validate=True cannot branch on data in a graph: it asserts (a RuntimeError at run time)
    mixer = fastmix.Mixup(num_classes=K, validate=True)
    compiled, counters = _fullgraph(lambda x, y: mixer(x, y))
    x = torch.rand(4, 3, 8, 12)
    assert compiled(x.clone(), torch.tensor([0, 1, 2, K - 1]))[1].shape == (4, K)
    with pytest.raises(RuntimeError, match=r"target: a class index is outside"):
        compiled(x.clone(), torch.tensor([0, 1, 2, K]))
    assert not counters["graph_break"], dict(counters["graph_break"])


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("member", ["RICAP", "DirichletMixup", "ResizeMix"])
def test_a_default_piece_step_compiles_on_cpu(member, mode):
    """RICAP, DirichletMixup and ResizeMix with their defaults (the default generator): one graph,
    the piece pass one opaque op (fastmix::apply_pieces, with a fake implementation), the draw the
    torch specification's; the same result as the eager step from the same seed."""
    mixer = getattr(fastmix, member)(num_classes=K, mode=mode)

    def step(x, y):
        return mixer(x, y)

    compiled, counters = _fullgraph(step)
    x, y = torch.rand(4, 3, 8, 12), torch.tensor([3, 1, 4, 1])
    torch.manual_seed(11)
    xc, tc = compiled(x, y)
    torch.manual_seed(11)
    xe, te = step(x, y)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert torch.equal(xc, xe) and torch.allclose(tc, te, atol=1e-6, rtol=0)
    assert not torch.equal(xc, x), "nothing was mixed"
