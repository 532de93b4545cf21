"""How close can eager PyTorch ops get to one pass on the CPU? The floor under fastmix's CPU path.

fastmix's CPU implementation is its pure-PyTorch reference: every byte it moves goes through
aten ops, each of which streams its operands through memory once. This script times, on the
same batch and interleaved in random order (medians), the building blocks an in-place flip-pair
Mixup can be made of, against one in-place ``x.mul_(1)`` pass:

- ``read``: ``x.sum()``, reading the batch and writing nothing;
- ``gather+lerp``: per pair, ``index_select`` both samples' partners into a cached buffer, then
  one ``lerp_`` (reads and writes are separate ops);
- ``save+lerp+lerp``: per pair, copy one sample aside, ``p.lerp_(q)``, ``q.lerp_(saved)`` (the
  read of ``q`` and the write of ``p`` share an op): what fastmix does on large samples;
- ``fastmix``: ``fastmix.Mixup(mode="batch")`` on the same batch, sampling and targets included;
- for uint8 and bfloat16, the float32 widening, ``lerp``, rounding and narrowing that the
  reference needs per element (``lerp`` has no integer or mixed-dtype form; uint8 narrows
  through int16, as the reference does), and fastmix's whole step on that dtype.

    python benchmarks/cpu_floor.py                 # 128x3x224x224, one thread
    python benchmarks/cpu_floor.py --shape 64x3x224x224 --repeat 31
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

import fastmix


def _pairs(x: torch.Tensor):
    b = x.shape[0]
    return [(x[i], x[b - 1 - i]) for i in range(b // 2)]


def blocks(x: torch.Tensor, weights: list[float]):
    """The candidates, each a zero-argument callable mutating ``x`` (or only reading it)."""
    b = x.shape[0]
    pairs = _pairs(x)
    flat = x.view(b, -1)
    saved = torch.empty_like(x[0])
    gathered = torch.empty(2, flat.shape[1], dtype=x.dtype)
    index = [torch.tensor([b - 1 - i, i]) for i in range(b // 2)]
    pair_weights = [torch.tensor([weights[i], weights[b - 1 - i]]).view(2, 1).to(x.dtype) for i in range(b // 2)]
    views = [x.as_strided((2, flat.shape[1]), ((b - 1 - 2 * i) * flat.shape[1], 1), i * flat.shape[1])
             for i in range(b // 2)]

    def gather_lerp():
        for view, idx, w in zip(views, index, pair_weights):
            view.lerp_(torch.index_select(flat, 0, idx, out=gathered), w)

    def save_lerp_lerp():
        for i, (p, q) in enumerate(pairs):
            saved.copy_(p)
            p.lerp_(q, weights[i])
            q.lerp_(saved, weights[b - 1 - i])

    return {"pass x.mul_(1)": lambda: x.mul_(1), "read x.sum()": x.sum, "gather+lerp": gather_lerp,
            "save+lerp+lerp": save_lerp_lerp}


def widening(x: torch.Tensor):
    """The float32 work of an in-place uint8/bfloat16 flip-pair blend, one pair at a time."""
    own = torch.empty(x[0].shape, dtype=torch.float32)
    other, mixed = torch.empty_like(own), torch.empty_like(own)
    int16 = torch.empty(x[0].shape, dtype=torch.int16)   # float32 -> uint8 directly is a slow scalar loop
    pairs = _pairs(x)

    def narrow(target, val):
        target.copy_(int16.copy_(val) if x.dtype == torch.uint8 else val)

    def blend():
        for p, q in pairs:
            own.copy_(p)
            other.copy_(q)
            torch.lerp(own, other, 0.3, out=mixed)
            other.lerp_(own, 0.7)
            if x.dtype == torch.uint8:
                mixed.round_()
                other.round_()
            narrow(p, mixed)
            narrow(q, other)

    return {f"{x.dtype} widen+lerp+narrow": blend}


def measure(candidates: dict, repeat: int) -> dict:
    times = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()
    for _ in range(repeat):
        names = list(candidates)
        random.shuffle(names)
        for name in names:
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="128x3x224x224")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    weights = torch.rand(shape[0], generator=gen).tolist()
    mixer = fastmix.Mixup(mixup_alpha=1.0, mode="batch", num_classes=1000, generator=gen)
    labels = torch.randint(0, 1000, (shape[0],), generator=gen)
    candidates = blocks(x, weights)
    candidates["fastmix Mixup batch (whole step)"] = lambda: mixer(x, labels)
    for dtype in (torch.uint8, torch.bfloat16):
        narrow = (x * 40 + 128).clamp(0, 255).to(dtype)
        candidates.update(widening(narrow))
        candidates[f"{dtype} pass x.mul_(1)"] = (lambda t: lambda: t.mul_(1))(narrow)
        candidates[f"{dtype} fastmix Mixup batch (whole step)"] = (lambda t: lambda: mixer(t, labels))(narrow)
    result = measure(candidates, args.repeat)
    floor = result["pass x.mul_(1)"]
    print(f"{args.shape} float32, {torch.get_num_threads()} thread(s), medians of {args.repeat}, torch {torch.__version__}")
    for name, ms in result.items():
        print(f"  {name:48s} {ms:8.2f} ms  {ms / floor:5.2f}x the float32 pass")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
