"""How ``fastmix bench`` times a call, summarises the times, names the machine and reports progress."""
from __future__ import annotations

import statistics
import sys
import time

import torch

from .._machine import describe as machine  # noqa: F401  (the line fastmix bench prints)


def time_call(fn, device: torch.device, repeat: int) -> list[float]:
    """Seconds per call: CUDA via triton.testing.do_bench (all samples), CPU via perf_counter
    (3 warm-up calls, then ``repeat`` timed ones)."""
    if device.type == "cuda":
        import triton.testing
        return [t / 1e3 for t in triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="all")]
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(fns: dict, repeat: int) -> dict:
    """Seconds per call of each CPU callable in ``fns`` (name -> fn), the calls taken in turn
    (a, b, a, b, ...) after 3 warm-up rounds, so that a load coming and going on a shared machine
    weighs on every candidate alike: compare these within one case."""
    times = {name: [] for name in fns}
    for round_ in range(3 + repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_ >= 3:
                times[name].append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    """(median, interquartile range / median): the spread ``--baseline`` allows a slowdown within."""
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [min(times), statistics.median(times), max(times)]
    med = statistics.median(times)
    return med, (q[2] - q[0]) / med if med else 0.0


def progress(message: str) -> None:
    """One line on stderr, as a case finishes (stdout keeps the tables)."""
    print(message, file=sys.stderr, flush=True)


def result_line(row: dict) -> str:
    """A progress line for one measured (or missing) candidate."""
    head = f"  {row['candidate']:28s} {row['shape']:>15s} {row['dtype']:>8s}"
    if "missing" in row:
        return f"{head}  missing: {row['missing'][:80]}"
    return f"{head} {row['median_ms']:10.3f} ms"
