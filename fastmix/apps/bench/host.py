"""Host time per call on the CUDA path, beside timm's batch step written out, in one process.

On a GPU in eager mode a step costs its host work, not its bytes (a batch CutMix's kernels take
tens of microseconds on an H200). Without a GPU the CUDA path's host work is measured exactly as
it runs there: the Triton interpreter runs fastmix's own Python (``FASTMIX_BACKEND=triton``), and
every kernel launch is stubbed out, so what is timed is the argument checks, the plan's
bookkeeping, the launchers and the one ``torch.rand``. Beside each call, in turn (interleaved, so a
load coming and going weighs on both alike), timm's batch Mixup step written out as timm's code
does it on the host: ``np.random.beta``, ``flip``, ``mul_``, ``mul_``/``add_``, two one-hot
targets (timm/data/mixup.py ``mixup_target``) on the same small CPU batch; medians of the calls.

    fastmix bench --host                        # the table below, on this machine
    python -m fastmix.apps.bench.host --json out.json

The batch is 8x3x32x32 float32 with 10 classes (small, so timm's step is as near its own host
cost as a CPU run gets); label checks are off, as they are by default on CUDA.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

SHAPE, CLASSES = (8, 3, 32, 32), 10

# candidate -> the code (run in the subprocess) that builds it; fastmix and torch are in scope
_MIX = {"mixup": "mixup_alpha=1.0", "cutmix": "mixup_alpha=0.0, cutmix_alpha=1.0",
        "switch": "mixup_alpha=0.8, cutmix_alpha=1.0"}
CANDIDATES = {
    **{f"fastmix_{kind}_{mode}": f"fastmix.Mixup({args}, mode={mode!r}, num_classes=10, validate=False)"
       for kind, args in _MIX.items() for mode in ("batch", "pair", "elem")},
    "fastmix_v2_mixup": "fastmix.v2.MixUp(num_classes=10, validate=False)",
    "fastmix_v2_cutmix": "fastmix.v2.CutMix(num_classes=10, validate=False)",
    "fastmix_cutout": "fastmix.Cutout(n_holes=1, length=8)",
    "fastmix_erasing": "fastmix.RandomErasing(p=0.5)",
    **{f"fastmix_{name.lower()}_{mode}": f"fastmix.{name}(mode={mode!r}, num_classes=10, validate=False)"
       for name in ("RICAP", "DirichletMixup", "ResizeMix", "FMix", "SaliencyMix") for mode in ("batch", "elem")},
    # the hooks' own host cost: a model that does nothing (one Identity layer, hooked and mixed)
    "fastmix_manifoldmixup": "fastmix.ManifoldMixup(torch.nn.Sequential(torch.nn.Identity()), ['0'], num_classes=10, "
                             "validate=False)",
    "fastmix_patchup": "fastmix.PatchUp(torch.nn.Sequential(torch.nn.Identity()), ['0'], num_classes=10, "
                       "validate=False)",
}
_TAKES_LABELS = {name: not name.startswith(("fastmix_cutout", "fastmix_erasing")) for name in CANDIDATES}


def timm_batch_step(x, y, num_classes: int, smoothing: float = 0.1):
    """timm's batch Mixup step as timm writes it (``Mixup._mix_batch`` + ``mixup_target``)."""
    import numpy as np
    import torch

    def step():
        lam = float(np.random.beta(1.0, 1.0))
        x_flipped = x.flip(0).mul_(1.0 - lam)
        x.mul_(lam).add_(x_flipped)
        off = smoothing / num_classes
        on = 1.0 - smoothing + off
        y1 = torch.full((y.shape[0], num_classes), off).scatter_(1, y.long().view(-1, 1), on)
        y2 = torch.full((y.shape[0], num_classes), off).scatter_(1, y.flip(0).long().view(-1, 1), on)
        return x, y1 * lam + y2 * (1.0 - lam)
    return step


def measure(repeat: int = 2000) -> dict:
    """``{candidate: {"host_us": median, "timm_us": median of the interleaved timm step,
    "vs_timm": ratio}}``, in this process (it must run the CUDA path under the interpreter: see
    :func:`run`)."""
    import torch
    from triton.runtime import interpreter, jit

    import fastmix  # noqa: F401  (the candidates' code refers to it)

    torch.set_num_threads(1)
    x, y = torch.rand(SHAPE), torch.randint(0, CLASSES, (SHAPE[0],))
    fns = {}
    for name, code in CANDIDATES.items():
        transform = eval(code, {"fastmix": fastmix, "torch": torch})
        fns[name] = (lambda t=transform: t(x, y)) if _TAKES_LABELS[name] else (lambda t=transform: t(x))
    for fn in fns.values():    # first calls: kernels specialised, signatures learnt
        fn()
        fn()
    for cls in (jit.JITFunction, interpreter.InterpretedFunction):   # the host's own work: no kernel runs
        cls.run = lambda self, *args, **kwargs: None
    timm = timm_batch_step(x.clone(), y, CLASSES)
    clock = time.perf_counter
    out = {}
    for name, fn in fns.items():
        ours, theirs = [], []
        for _ in range(repeat):     # call by call in turn: a load coming and going weighs on both alike
            start = clock()
            fn()
            middle = clock()
            timm()
            ours.append(middle - start)
            theirs.append(clock() - middle)
        host, ref = statistics.median(ours) * 1e6, statistics.median(theirs) * 1e6
        out[name] = dict(host_us=host, timm_us=ref, vs_timm=host / ref)
    return out


def run(repeat: int = 2000) -> dict:
    """:func:`measure` in a subprocess with the interpreter and the Triton backend switched on."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "FASTMIX_BACKEND": "triton"}
    code = f"import json; from fastmix.apps.bench import host; print(json.dumps(host.measure({repeat})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"host timing failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(results: dict) -> None:
    print(f"{'candidate (CUDA path, kernels stubbed)':40s} {'host us':>8s} {'timm us':>8s} {'vs timm':>8s}")
    for name, r in results.items():
        print(f"{name:40s} {r['host_us']:8.1f} {r['timm_us']:8.1f} {r['vs_timm']:7.2f}x")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--json")
    options = parser.parse_args()
    results = run(options.repeat)
    print_table(results)
    if options.json:
        with open(options.json, "w") as f:
            json.dump(results, f, indent=1)
