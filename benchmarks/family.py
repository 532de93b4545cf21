"""The mixup family: a fastmix step against the papers' way of writing each method
(``benchmarks/family_baselines.py``: host-side numpy draws, one draw per batch, Python loops),
and against OpenMixup's implementations where ``openmixup`` imports. Same inputs, same process,
calls interleaved; medians of a step (mix + soft targets).

    python benchmarks/family.py [--device cpu|cuda] [--shape 64x3x32x32] [--threads 1] [--repeat 30]

fastmix runs in both of its modes: ``mode="batch"`` (the default) is the papers' draw (one lam,
boundary, mask or box per batch), the same work as the baselines; ``mode="elem"`` draws per
sample, which is more work than the baselines do. The ratio is paper-style time / fastmix time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import family_baselines as baselines  # noqa: E402

import fastmix  # noqa: E402
from fastmix.apps.bench.timing import machine, time_call, time_interleaved  # noqa: E402

NUM_CLASSES = 100


MODES = ("batch", "elem")


def _fastmix_ops(mode: str) -> dict:
    """name -> fastmix op in ``mode``, for the family classes this build has."""
    made = {}
    for name in ("RICAP", "DirichletMixup", "FMix", "ResizeMix", "SaliencyMix"):
        cls = getattr(fastmix, name, None)
        if cls is not None:
            made[name] = cls(num_classes=NUM_CLASSES, mode=mode)
    return made


def _openmixup() -> dict:
    try:
        from openmixup.models import augments  # noqa: F401
    except Exception as why:  # noqa: BLE001 - any failure means: no OpenMixup column
        print(f"openmixup: missing ({type(why).__name__}: {str(why).splitlines()[0][:80]})")
        return {}
    print("openmixup: imported, but its functions take a model's config; not wired in this benchmark")
    return {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="64x3x32x32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    b, c, h, w = (int(v) for v in args.shape.split("x"))
    print(machine(device), f"| torch {torch.__version__} | {args.threads} thread(s) | {args.shape} float32")
    _openmixup()
    x = torch.rand(b, c, h, w, device=device)
    y = torch.randint(0, NUM_CLASSES, (b,), device=device)
    ours = {mode: _fastmix_ops(mode) for mode in MODES}
    print(f"{'method':16s} {'batch ms':>9s} {'elem ms':>8s} {'paper-style ms':>15s} {'batch':>7s} {'elem':>7s}")
    for name, baseline in baselines.BASELINES.items():
        if name not in ours["batch"]:
            print(f"{name:16s} {'missing':>9s}")
            continue
        work = {mode: x.clone() for mode in MODES}
        fns = {mode: (lambda op=ours[mode][name], w=work[mode]: op(w, y)) for mode in MODES}
        fns["paper"] = lambda f=baseline: f(x, y, NUM_CLASSES)
        if device.type == "cuda":
            times = {k: time_call(f, device, args.repeat) for k, f in fns.items()}
        else:
            times = time_interleaved(fns, args.repeat)
        med = {k: statistics.median(t) * 1e3 for k, t in times.items()}
        print(f"{name:16s} {med['batch']:9.3f} {med['elem']:8.3f} {med['paper']:15.3f} "
              f"{med['paper'] / med['batch']:6.1f}x {med['paper'] / med['elem']:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
