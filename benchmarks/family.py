"""The mixup family: a fastmix step against the papers' way of writing each method
(``benchmarks/family_baselines.py``: host-side numpy draws, one draw per batch, Python loops),
and against OpenMixup's implementations where ``openmixup`` imports. Same inputs, same process,
calls interleaved; medians of a step (mix + soft targets).

    python benchmarks/family.py [--device cpu|cuda] [--shape 64x3x32x32] [--threads 1] [--repeat 30]

fastmix draws per sample (its default); the baselines draw once per batch as the papers' code
does, which is less work: the ratio is a lower bound on what a per-sample baseline would cost.
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


def _fastmix_ops() -> dict:
    """name -> fastmix op, for the family classes this build has."""
    made = {}
    for name, kwargs in [("RICAP", {}), ("DirichletMixup", {}), ("FMix", {}), ("ResizeMix", {}), ("SaliencyMix", {})]:
        cls = getattr(fastmix, name, None)
        if cls is not None:
            made[name] = cls(num_classes=NUM_CLASSES, **kwargs)
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
    ours = _fastmix_ops()
    print(f"{'method':16s} {'fastmix ms':>11s} {'paper-style ms':>15s} {'ratio':>7s}")
    for name, baseline in baselines.BASELINES.items():
        if name not in ours:
            print(f"{name:16s} {'missing':>11s}")
            continue
        op, work = ours[name], x.clone()
        fns = {"fastmix": lambda op=op: op(work, y), "paper": lambda f=baseline: f(x, y, NUM_CLASSES)}
        if device.type == "cuda":
            times = {k: time_call(f, device, args.repeat) for k, f in fns.items()}
        else:
            times = time_interleaved(fns, args.repeat)
        med = {k: statistics.median(t) * 1e3 for k, t in times.items()}
        print(f"{name:16s} {med['fastmix']:11.3f} {med['paper']:15.3f} {med['paper'] / med['fastmix']:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
