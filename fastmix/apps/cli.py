"""``fastmix`` command line: ``demo`` draws what each mix does and checks label weights against
pixels (:mod:`fastmix.apps.demo`); ``bench`` times fastmix beside its peers (:mod:`fastmix.apps.bench`);
``train`` reruns the mixing-versus-no-mixing training experiment (:mod:`fastmix.apps.train`);
``kernels`` compiles the Triton kernels ahead of time for sm_80/sm_90 and prints their resource table."""
from __future__ import annotations

import argparse
import sys
import time

import torch


def _demo(args) -> int:
    from .. import Mixup, ops
    from . import demo

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    originals, rows = demo.mix_rows(args.seed, count=args.samples, device=device)
    print(f"fastmix demo on {device} (backend {ops.backend_for(originals.to(device))}), seed {args.seed}")
    if demo.pillow_available():
        width, height = demo.render(originals, rows, args.out)
        print(f"wrote {args.out} ({width}x{height}): a row per method, a column per sample, each tile captioned "
              f"with its label weights ('0.62 #3 + 0.38 #5': 62% sample 3's label, 38% sample 5's)")
    else:
        print('the picture needs Pillow: pip install "fastmix[demo]" (make demo installs it); the table follows')
    ok = demo.check_table(args.batch, args.size, args.seed, device)
    if args.bench_batch > 0:
        steps = 20
        big = torch.rand(args.bench_batch, 3, 224, 224, device=device)
        labels = torch.randint(0, 1000, (args.bench_batch,), device=device)
        timed = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=1000)
        timed(big, labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            timed(big, labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / steps * 1e3
        print(f"one Mixup/CutMix step (per sample) on {args.bench_batch}x3x224x224 float32: {ms:.2f} ms (mean of "
              f"{steps}; fastmix bench has the full comparison)")
    return 0 if ok else 1


# every command of ``fastmix``, in the order --help lists them (tests/test_dependencies.py runs each
# one's --help in an environment that has only the declared dependencies)
COMMANDS = ("demo", "train", "kernels", "bench")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastmix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="draw what each mix does to a small image set (PNG) and check, on "
                                       "constant-colour images, that label weights equal pixel shares")
    demo.add_argument("--out", default="fastmix-demo.png", help="where the picture goes (default: %(default)s)")
    demo.add_argument("--samples", type=int, default=8, help="columns of the picture (1..8)")
    demo.add_argument("--batch", type=int, default=4, help="constant-colour samples per method in the table")
    demo.add_argument("--size", type=int, default=128, help="side of the table's images")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--bench-batch", type=int, default=64, help="batch size of the timed step (0: no timing)")
    from . import train
    train.add_arguments(sub.add_parser("train", help="train the source's CNN with and without mixing; table of test "
                                                     "accuracy and calibration per arm",
                                       description=train.__doc__.split("\n\n")[0],
                                       formatter_class=argparse.ArgumentDefaultsHelpFormatter))
    sub.add_parser("kernels", add_help=False, help="compile every kernel for sm_80/sm_90 (no GPU needed) and "
                                                   "print registers, local memory and access widths")
    sub.add_parser("bench", add_help=False, help="time fastmix beside timm, torchvision and kornia (fastmix bench "
                                                 "--help for the options)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        if rest:
            parser.error(f"unrecognised arguments: {' '.join(rest)}")
        return _demo(args)
    if args.command == "bench":
        from .bench import compare
        return compare.main(rest, prog="fastmix bench")
    if args.command == "train":
        if rest:
            parser.error(f"unrecognised arguments: {' '.join(rest)}")
        return train.main(args, " ".join(["fastmix"] + list(sys.argv[1:] if argv is None else argv)))
    from ..kernels import aot
    return aot.main(rest)


if __name__ == "__main__":
    sys.exit(main())
