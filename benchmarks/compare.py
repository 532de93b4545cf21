"""Side-by-side: fastmix against timm, torchvision, kornia and a hand-written loop, same inputs,
same process, same run.

    python benchmarks/compare.py                       # CPU, both shapes, float32/uint8/bfloat16
    python benchmarks/compare.py --device cuda         # GPU: do_bench medians, plus the kernels alone
                                                       # in CUDA graphs as GB/s against copy bandwidth
    python benchmarks/compare.py --json run.json       # keep the numbers
    python benchmarks/compare.py --baseline run.json   # flag slowdowns beyond the run-to-run spread

Per candidate: median time, images/s, time relative to fastmix's equivalent, relative to one
in-place read-and-write pass over the batch (``x.mul_(1)``, the floor), and the bytes its aten
ops move relative to that pass (peers: counted with a TorchDispatchMode; fastmix: the Triton
kernels' loads and stores counted under the interpreter on a small batch). Peers that are not
installed, or that reject a dtype, are listed with the reason. CPU timings default to one
thread: on a 2-core VM the 2-thread pool gives bimodal times (override with --threads).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import peers  # noqa: E402

import fastmix  # noqa: E402
from fastmix import _machine, v2  # noqa: E402

NUM_CLASSES = 1000

# candidate -> (peer it is compared with, factory)
_ALPHAS = {"mixup": dict(mixup_alpha=1.0, cutmix_alpha=0.0), "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
           "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)}


def _fastmix_factory(kind, mode):
    def factory(x, y, num_classes):
        mixer = fastmix.Mixup(**_ALPHAS[kind], prob=1.0, mode=mode, label_smoothing=0.1, num_classes=num_classes)
        return lambda: mixer(x, y)
    return factory


def _fastmix_v2(cls):
    def factory(x, y, num_classes):
        t = cls(alpha=1.0, num_classes=num_classes)
        return lambda: t(x, y)
    return factory


FASTMIX = {}
for _kind in _ALPHAS:
    for _mode in ("batch", "pair", "elem"):
        FASTMIX[f"fastmix_{_kind}_{_mode}"] = (f"timm_{_kind}_{_mode}", _fastmix_factory(_kind, _mode))
FASTMIX["fastmix_v2_mixup"] = ("torchvision_mixup", _fastmix_v2(v2.MixUp))
FASTMIX["fastmix_v2_cutmix"] = ("torchvision_cutmix", _fastmix_v2(v2.CutMix))
# peers without a same-named fastmix twin are compared with the closest one
PEER_TWIN = {"loop_mixup": "fastmix_mixup_batch", "kornia_mixup": "fastmix_mixup_batch",
             "kornia_cutmix": "fastmix_cutmix_batch"}
for _name, (_peer, _) in FASTMIX.items():
    PEER_TWIN[_peer] = _name


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device, repeat: int) -> list[float]:
    """Seconds per call: CUDA via triton.testing.do_bench (all samples), CPU via perf_counter."""
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


def _summary(times):
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [min(times), statistics.median(times), max(times)]
    med = statistics.median(times)
    return med, (q[2] - q[0]) / med if med else 0.0


def fastmix_traffic(kind: str, mode: str, dtype: torch.dtype) -> float:
    """Kernel bytes / (2 x batch bytes) under the Triton interpreter, on a small batch (subprocess)."""
    code = f"""
import os, torch
os.environ['TRITON_INTERPRET'] = '1'; os.environ['FASTMIX_BACKEND'] = 'triton'
import fastmix
from fastmix.kernels import traffic
x = (torch.rand(8, 3, 32, 32) * 255).to({dtype}); y = torch.randint(0, 10, (8,))
m = fastmix.Mixup(**{_ALPHAS[kind]!r}, mode={mode!r}, num_classes=10, generator=torch.Generator().manual_seed(0))
total = 0
for _ in range(4):
    with traffic.count(x) as t:
        m(x, y)
    total += t.bytes_loaded + t.bytes_stored
print(total / 4 / (2 * x.nbytes))
"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return float(out.stdout.strip()) if out.returncode == 0 else float("nan")


def make_batch(shape, dtype, device):
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(shape, generator=gen)
    x = ((base * 255).round().to(dtype) if dtype == torch.uint8 else base.to(dtype)).to(device)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=gen).to(device)
    return x, y


def run(shapes, dtypes, device, repeat, traffic, only=None):
    return [row for shape in shapes for dtype in dtypes
            for row in run_case(shape, dtype, device, repeat, traffic, only)]


def run_case(shape, dtype, device, repeat, traffic, only=None):
    """Every candidate on one batch (its memory is freed when this returns)."""
    x, y = make_batch(shape, dtype, device)
    floor, _ = _summary(time_call(lambda: x.mul_(1), device, repeat))
    copy_dst = torch.empty_like(x)
    copy_t, _ = _summary(time_call(lambda: copy_dst.copy_(x), device, repeat))
    results = {}
    for name in list(FASTMIX) + list(peers.PEERS):
        if only and not any(o in name for o in only):
            continue
        row = dict(candidate=name, shape="x".join(map(str, shape)), dtype=str(dtype).replace("torch.", ""),
                   device=device.type, floor_ms=floor * 1e3, copy_gbps=2 * x.nbytes / copy_t / 1e9)
        try:
            fn = FASTMIX[name][1](x, y, NUM_CLASSES) if name in FASTMIX else peers.make(name, x, y, NUM_CLASSES)
            med, spread = _summary(time_call(fn, device, repeat))
            row.update(median_ms=med * 1e3, spread=spread, images_per_s=shape[0] / med, floor_ratio=med / floor,
                       gbps_vs_pass=2 * x.nbytes / med / 1e9)
            if device.type == "cuda" and name in FASTMIX:
                # the whole step (sampling included) replayed as one CUDA graph: the GPU's own
                # cost, without Python; possible because nothing syncs with the host
                import triton.testing
                row["graph_ms"] = triton.testing.do_bench_cudagraph(fn)
            if traffic and device.type == "cpu":
                if name in FASTMIX:   # the kernels' bytes, counted under the interpreter
                    kind, mode = name.split("_")[1:3] if "v2" not in name else (name.split("_")[2], "batch")
                    row["bytes_vs_pass"] = fastmix_traffic(kind, mode, dtype)
                else:
                    counted = peers.count_traffic(fn)
                    row["bytes_vs_pass"] = (counted["bytes_read"] + counted["bytes_written"]) / (2 * x.nbytes)
        except (peers.PeerMissing, peers.PeerUnsupported) as why:
            row["missing"] = str(why)
        results[name] = row
    for name, row in results.items():
        twin = name if name in FASTMIX else PEER_TWIN.get(name)
        if "median_ms" in row and "median_ms" in results.get(twin, {}):
            row["vs_fastmix"] = row["median_ms"] / results[twin]["median_ms"]
    return list(results.values())


def kernel_rows(shapes, dtypes, device):
    """GPU time of the kernels alone: a plan drawn once, then applied inside a CUDA graph (no host
    overhead), as GB/s of the ideal traffic and as a fraction of the device's copy bandwidth."""
    return [row for shape in shapes for dtype in dtypes for row in kernel_case(shape, dtype, device)]


def kernel_case(shape, dtype, device):
    import triton.testing

    from fastmix import functional as F

    x, _ = make_batch(shape, dtype, device)
    copy_dst = torch.empty_like(x)
    copy_gbps = 2 * x.nbytes / (triton.testing.do_bench_cudagraph(lambda: copy_dst.copy_(x)) / 1e3) / 1e9
    gen = torch.Generator(device=device).manual_seed(0)
    batch, size = shape[0], shape[-2:]
    plans = {
        "mixup (flip)": F.mixup_cutmix_plan(batch, None, mixup_alpha=1.0, device=device, generator=gen),
        "mixup (roll)": F.mixup_cutmix_plan(batch, None, mixup_alpha=1.0, pairing="roll", device=device,
                                            generator=gen),
        "cutmix batch": F.mixup_cutmix_plan(batch, size, mixup_alpha=0.0, cutmix_alpha=1.0, device=device,
                                            generator=gen),
        "switch elem": F.mixup_cutmix_plan(batch, size, mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem",
                                           device=device, generator=gen),
        "cutout 1x112": F.cutout_plan(batch, size, length=112, device=device, generator=gen),
    }
    rows = []
    for name, plan in plans.items():
        ideal = _ideal_bytes(plan, x)
        secs = triton.testing.do_bench_cudagraph(lambda: F.apply(x, plan)) / 1e3
        rows.append(dict(kernel=name, shape="x".join(map(str, shape)), dtype=str(dtype).replace("torch.", ""),
                         ms=secs * 1e3, gbps=ideal / secs / 1e9, copy_gbps=copy_gbps,
                         vs_copy=ideal / secs / 1e9 / copy_gbps, ideal_bytes=ideal))
    return rows


def _ideal_bytes(plan, x) -> int:
    """Bytes a perfect in-place pass moves: each region element written once, and read once where
    it is needed (as itself with a != 0, or as a partner with b != 0)."""
    per_pixel = x.element_size() * (x.numel() // x.shape[0]) // (x.shape[-1] * x.shape[-2])
    h, w = x.shape[-2], x.shape[-1]
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    box = plan.box.clamp_min(0)
    region = ((rows >= box[..., 0, None, None]) & (rows < box[..., 1, None, None])
              & (cols >= box[..., 2, None, None]) & (cols < box[..., 3, None, None])).any(1)   # (B, H, W)
    own = region & (plan.lam_self != 0).view(-1, 1, 1)
    sent = torch.zeros_like(region)
    sent.index_put_((plan.partner,), region & (plan.lam_partner != 0).view(-1, 1, 1), accumulate=True)
    return int(((own | sent).sum() + region.sum()).item()) * per_pixel


def print_kernel_table(rows):
    print(f"{'kernel (CUDA graph)':20s} {'shape':>14s} {'dtype':>8s} {'ms':>8s} {'GB/s':>8s} {'of copy':>8s}")
    for r in rows:
        print(f"{r['kernel']:20s} {r['shape']:>14s} {r['dtype']:>8s} {r['ms']:8.3f} {r['gbps']:8.0f} "
              f"{100 * r['vs_copy']:7.0f}%   (copy {r['copy_gbps']:.0f} GB/s)")


def print_table(rows):
    head = (f"{'candidate':22s} {'shape':>14s} {'dtype':>8s} {'median ms':>10s} {'img/s':>9s} {'vs fastmix':>10s} "
            f"{'vs pass':>8s} {'bytes/pass':>10s} {'graph ms':>9s}")
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        key = (r["shape"], r["dtype"])
        if key != last:
            print(f"-- {r['shape']} {r['dtype']} on {r['device']}: one x.mul_(1) pass {r['floor_ms']:.3f} ms, "
                  f"copy {r['copy_gbps']:.1f} GB/s")
            last = key
        if "missing" in r:
            print(f"{r['candidate']:22s} {r['shape']:>14s} {r['dtype']:>8s}  missing: {r['missing'][:90]}")
            continue
        vs = f"{r['vs_fastmix']:.1f}x" if "vs_fastmix" in r else "-"
        traffic = f"{r['bytes_vs_pass']:.2f}" if "bytes_vs_pass" in r else "-"
        graph = f"{r['graph_ms']:.3f}" if "graph_ms" in r else "-"
        print(f"{r['candidate']:22s} {r['shape']:>14s} {r['dtype']:>8s} {r['median_ms']:10.3f} "
              f"{r['images_per_s']:9.0f} {vs:>10s} {r['floor_ratio']:7.2f}x {traffic:>10s} {graph:>9s}")


def compare_baseline(rows, path) -> int:
    """Flag candidates slower than the baseline by more than the larger run-to-run spread."""
    with open(path) as f:
        base = {(r["candidate"], r["shape"], r["dtype"], r["device"]): r for r in json.load(f)["rows"]}
    slower = 0
    for r in rows:
        old = base.get((r["candidate"], r["shape"], r["dtype"], r["device"]))
        if not old or "median_ms" not in r or "median_ms" not in old:
            continue
        allowed = 1.0 + max(r["spread"], old["spread"], 0.05)
        ratio = r["median_ms"] / old["median_ms"]
        if ratio > allowed:
            slower += 1
            print(f"SLOWER: {r['candidate']} {r['shape']} {r['dtype']}: {old['median_ms']:.3f} -> "
                  f"{r['median_ms']:.3f} ms ({ratio:.2f}x, spread allows {allowed:.2f}x)")
    print(f"baseline {path}: {slower} regression(s)")
    return slower


machine = _machine.describe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="128x3x224x224,256x3x32x32")
    parser.add_argument("--dtypes", default="float32,uint8,bfloat16")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-traffic", action="store_true", help="skip the byte counting (faster)")
    parser.add_argument("--only", help="comma-separated substrings of candidate names")
    parser.add_argument("--json", help="write the rows (and the machine) to this file")
    parser.add_argument("--baseline", help="compare against a JSON written by --json; exit 1 on a slowdown")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    print(f"machine: {machine(device)}; torch {torch.__version__}; peers: "
          + ", ".join(f"{k} {'ok' if v is None else 'MISSING'}" for k, v in peers.available().items()))
    kernels = []
    if device.type == "cuda":
        kernels = kernel_rows(shapes, dtypes, device)
        print_kernel_table(kernels)
    rows = run(shapes, dtypes, device, args.repeat, traffic=not args.no_traffic,
               only=args.only.split(",") if args.only else None)
    print_table(rows)
    print("host round trips per call (from reading each peer's code):")
    for name, note in peers.HOST_ROUND_TRIPS.items():
        print(f"  {name}: {note}")
    print("  fastmix: none on CUDA (plans are sampled on the batch's device; see tests/test_plan.py's meta-device "
          "and torch.compile(fullgraph=True) tests); on CPU the reference reads the plan's weights and boxes "
          "with .tolist(), which is no device sync there")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "torch": torch.__version__, "argv": sys.argv[1:], "rows": rows,
                       "kernels": kernels}, f, indent=1)
    if args.baseline:
        return 1 if compare_baseline(rows, args.baseline) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
