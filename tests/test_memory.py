"""Peak memory of the CPU reference: mixing a 384 MiB batch in a fresh process must not grow its
peak resident set by more than a fraction of the batch (no hidden copy of ``x``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, torch, fastmix
    torch.manual_seed(0)
    warm = torch.rand(4, 3, 64, 64)
    fastmix.Mixup(mixup_alpha=1., cutmix_alpha=1., mode='elem')(warm, torch.arange(4))
    x = torch.empty(128, 3, 512, 512)
    x.uniform_()                                   # touch every page
    y = torch.randint(0, 1000, (128,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fastmix.Mixup(mixup_alpha=1., cutmix_alpha=1., mode='elem')(x, y)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "nbytes": x.numel() * x.element_size()}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_cpu_paths_never_copy_the_batch(backend):
    env = dict(os.environ, FASTMIX_BACKEND=backend)
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    grown = (report["after_kib"] - report["before_kib"]) * 1024
    assert grown < 0.15 * report["nbytes"], (
        f"peak RSS grew by {grown / 2**20:.1f} MiB mixing a {report['nbytes'] / 2**20:.0f} MiB batch "
        f"({100 * grown / report['nbytes']:.1f}%, limit 15%)")
