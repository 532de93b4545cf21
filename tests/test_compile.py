"""Every kernel compiles ahead of time for sm_80 and sm_90 with Triton's own compiler (no GPU
needed), uses no local memory, and issues 128-bit global accesses on the aligned path."""
import json
import os
import subprocess
import sys

import pytest

from helpers import requires_triton

pytestmark = [requires_triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Run the real command (a subprocess, so the kernels are not the interpreter's)."""
    out = tmp_path_factory.mktemp("aot") / "kernels.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fastmix.kernels", "--json", str(out)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert out.exists(), f"the compile report was not written:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text()), proc


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
    assert "blend_inplace" in proc.stdout, "the table was not printed"


def test_no_local_memory(reports):
    rows, _ = reports
    spilled = [f"{r['kernel']}/sm_{r['arch']}/{r['dtype']}: {r['local_bytes']} B" for r in rows if r["local_bytes"]]
    assert not spilled, "local memory (spills or stack): " + ", ".join(spilled)


def test_128_bit_accesses_on_the_aligned_path(reports):
    rows, _ = reports
    narrow = [f"{r['kernel']}/sm_{r['arch']}/{r['dtype']}: ld {r['widest_load_bits']}, st {r['widest_store_bits']}"
              for r in rows if r["kernel"].startswith(("blend", "erase")) and r["dtype"] in ("fp32", "fp16", "bf16")
              and (r["widest_load_bits"] != 128 or r["widest_store_bits"] != 128)]
    assert not narrow, "; ".join(narrow)
