"""The collate rows of ``fastmix bench``: fastmix.FastCollateMixup beside timm's FastCollateMixup.

Both are called the way a DataLoader calls its ``collate_fn``: on a list of ``(uint8 (C, H, W)
numpy array, int label)`` samples, returning the mixed uint8 batch and the soft targets. The floor
of a case is plain collation of the same list (``default_collate``, what a DataLoader does
without mixing), so ``vs pass`` reads as the cost of collating and mixing against collating.
The candidates of a case are timed in turn, call by call (a shared machine's load weighs on
each alike), so the progress lines of a case come when the whole case is done.
"""
from __future__ import annotations

import torch
from torch.utils.data import default_collate

import fastmix

from . import peers
from .timing import progress, result_line, summary, time_interleaved

NUM_CLASSES = 1000
CASES = {
    "mixup_batch": dict(mixup_alpha=1.0, mode="batch"),
    "cutmix_batch": dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch"),
    "switch_elem": dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem"),
    "switch_half": dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="half"),
}
HOST_ROUND_TRIPS = {
    "timm_collate_*": "timm/data/mixup.py FastCollateMixup: CPU only; λ and boxes from numpy, then a Python loop "
                      "over the samples, each widened to a float32 numpy copy, blended, np.rint-ed, narrowed and "
                      "added into a zeroed uint8 batch",
}


def make_samples(count: int, shape: tuple[int, ...], seed: int = 0) -> list:
    """``count`` random ``(uint8 image of shape, label)`` samples, as a Dataset returns them: numpy
    arrays (what timm's loader hands its collate), or tensors where numpy is not installed."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=gen).tolist()
    try:
        arrays = [image.numpy().copy() for image in images]     # one array each, as a dataset makes them
    except RuntimeError:                                        # torch says "Numpy is not available"
        arrays = [image.clone() for image in images]
    return list(zip(arrays, labels))


def _candidates(case: str):
    options = dict(CASES[case], label_smoothing=0.1, num_classes=NUM_CLASSES)
    yield f"fastmix_collate_{case}", lambda: fastmix.FastCollateMixup(**options)
    yield f"timm_collate_{case}", lambda: peers.timm_collate(**options)


def run(batch_shapes, repeat: int, only=None) -> list[dict]:
    """Every collate candidate on lists of samples, one list per ``(count, C, H, W)`` in
    ``batch_shapes``; within a case the candidates and the floor are timed in turn."""
    rows = []
    for number, batch_shape in enumerate(batch_shapes, 1):
        samples = make_samples(batch_shape[0], tuple(batch_shape[1:]))
        shape = "x".join(map(str, batch_shape))
        progress(f"collate case {number}/{len(batch_shapes)}: a list of {batch_shape[0]} uint8 "
                 f"{'x'.join(map(str, batch_shape[1:]))} samples")
        results, calls = {}, {"floor": lambda: default_collate(samples)}
        for case in CASES:
            for name, build in _candidates(case):
                if only and not any(o in name for o in only):
                    continue
                results[name] = dict(candidate=name, shape=shape, dtype="uint8", device="cpu",
                                     floor="default_collate of the list")
                try:
                    calls[name] = (lambda collate: lambda: collate(samples))(build())
                except peers.PeerMissing as why:
                    results[name]["missing"] = str(why)
        times = time_interleaved(calls, repeat)
        floor, _ = summary(times.pop("floor"))
        for name, row in results.items():
            row["floor_ms"] = floor * 1e3
            if name in times:
                med, spread = summary(times[name])
                row.update(median_ms=med * 1e3, spread=spread, images_per_s=batch_shape[0] / med,
                           floor_ratio=med / floor)
        for name, row in results.items():
            twin = results.get(name.replace("timm_", "fastmix_"), {})
            if "median_ms" in row and "median_ms" in twin:
                row["vs_fastmix"] = row["median_ms"] / twin["median_ms"]
            progress(result_line(row))
        rows += results.values()
    return rows
