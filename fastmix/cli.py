"""``fastmix`` command line: ``demo`` mixes a batch and shows what happened; ``train`` reruns the
mixing-versus-no-mixing training experiment (:mod:`fastmix.train`); ``kernels`` compiles the
Triton kernels ahead of time for sm_80/sm_90 and prints their resource table."""
from __future__ import annotations

import argparse
import sys
import time

import torch


def _demo(args) -> int:
    from . import Mixup, functional, ops

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    batch, size = args.batch, args.size
    # every sample is one constant colour, so what was mixed can be read back off the pixels
    colours = torch.arange(batch, dtype=torch.float32, device=device) * 10.0 + 5.0
    x = colours.view(batch, 1, 1, 1).expand(batch, 3, size, size).contiguous()
    y = torch.arange(batch, device=device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    mixer = Mixup(mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha, mode=args.mode,
                  label_smoothing=0.0, num_classes=batch, generator=gen)
    plan = mixer.plan(x)                      # what timm's Mixup.__call__ does, step by step
    functional.apply(x, plan)
    target = functional.targets(y, plan, batch, 0.0)
    print(f"fastmix demo: {batch} samples of 3x{size}x{size} float32 on {device} (backend {ops.backend_for(x)}), "
          f"Mixup(mixup_alpha={args.mixup_alpha}, cutmix_alpha={args.cutmix_alpha}, mode={args.mode!r})")
    print("sample  kind    partner  own label weight  own pixel share")
    ok = True
    for i, row in enumerate(plan.describe()):
        j = row["partner"]
        weight = float(target[i, i])
        if j == i or row["kind"] == "none":
            share = float(torch.isclose(x[i], colours[i]).float().mean())
        else:
            share = float(((x[i] - colours[j]) / (colours[i] - colours[j])).mean())
        ok &= abs(share - weight) < 1e-4
        print(f"{i:6d}  {row['kind']:6s}  {j:7d}  {weight:16.4f}  {share:15.4f}")
    print("every label weight equals the share of the sample's own pixels: " + ("yes" if ok else "NO"))
    steps = 20
    big = torch.rand(args.bench_batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (args.bench_batch,), device=device)
    timed = Mixup(mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha, mode=args.mode, num_classes=1000)
    timed(big, labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        timed(big, labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - start) / steps * 1e3
    print(f"one Mixup step on {args.bench_batch}x3x224x224 float32: {ms:.2f} ms (mean of {steps}; "
          f"benchmarks/compare.py has the full comparison)")
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastmix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="mix a batch of constant-colour images and show what each sample got")
    demo.add_argument("--batch", type=int, default=8)
    demo.add_argument("--size", type=int, default=32)
    demo.add_argument("--mode", default="elem", choices=["batch", "pair", "elem"])
    demo.add_argument("--mixup-alpha", type=float, default=0.8)
    demo.add_argument("--cutmix-alpha", type=float, default=1.0)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--bench-batch", type=int, default=64, help="batch size of the timed step")
    from . import train
    train.add_arguments(sub.add_parser("train", help="train the source's CNN with and without mixing; table of test "
                                                     "accuracy and calibration per arm",
                                       description=train.__doc__.split("\n\n")[0],
                                       formatter_class=argparse.ArgumentDefaultsHelpFormatter))
    sub.add_parser("kernels", add_help=False, help="compile every kernel for sm_80/sm_90 (no GPU needed) and "
                                                   "print registers, local memory and access widths")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        if rest:
            parser.error(f"unrecognised arguments: {' '.join(rest)}")
        return _demo(args)
    if args.command == "train":
        if rest:
            parser.error(f"unrecognised arguments: {' '.join(rest)}")
        return train.main(args, " ".join(["fastmix"] + list(sys.argv[1:] if argv is None else argv)))
    from .kernels import aot
    return aot.main(rest)


if __name__ == "__main__":
    sys.exit(main())
