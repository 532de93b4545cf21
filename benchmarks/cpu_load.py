"""How a busy neighbour slows a CPU mixing step: fastmix against timm, timed interleaved in one
process with torch's default thread count, first alone, then beside one process that keeps a
core busy. A sample-at-a-time walk of small parallel ops degrades far more under foreign load
than a few big ops (each op waits for its slowest thread); this keeps the CPU path honest.

    python benchmarks/cpu_load.py [--shape 64x3x224x224] [--repeat 15]

Needs timm for its column (``make parity``'s environment has it); prints medians and the
slowdown factor busy / alone per candidate.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch

import fastmix
from fastmix.apps.bench.timing import time_interleaved


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def _candidates(x, y):
    out = {"fastmix Mixup": (lambda m=fastmix.Mixup(mixup_alpha=1.0, num_classes=1000): m(x, y)),
           "fastmix switch elem": (lambda m=fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem",
                                                          num_classes=1000): m(x, y))}
    try:
        from timm.data import Mixup as TimmMixup
    except Exception as why:   # noqa: BLE001 - any import failure means: no timm column
        print(f"timm: missing ({type(why).__name__})")
        return out
    timm_batch = TimmMixup(mixup_alpha=1.0, num_classes=1000)
    timm_elem = TimmMixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=1000)
    out["timm Mixup"] = lambda: timm_batch(x, y)
    out["timm switch elem"] = lambda: timm_elem(x, y)
    return out


def _time(fns: dict, repeat: int) -> dict:
    """Median ms per candidate, the calls interleaved (``fastmix bench``'s own timer)."""
    return {name: statistics.median(t) * 1e3 for name, t in time_interleaved(fns, repeat).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="64x3x224x224")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    x = torch.rand(shape)
    y = torch.randint(0, 1000, (shape[0],))
    fns = _candidates(x, y)
    print(f"{shape}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    alone = _time(fns, args.repeat)
    stop = multiprocessing.Event()
    busy = multiprocessing.Process(target=_spin, args=(stop,))
    busy.start()
    try:
        time.sleep(0.5)
        loaded = _time(fns, args.repeat)
    finally:
        stop.set()
        busy.join()
    print(f"{'candidate':22s} {'alone ms':>9s} {'busy ms':>9s} {'slowdown':>9s}")
    for name in fns:
        print(f"{name:22s} {alone[name]:9.2f} {loaded[name]:9.2f} {loaded[name] / alone[name]:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
