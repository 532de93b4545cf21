"""``fastmix bench``: fastmix against timm, torchvision, kornia and a hand-written loop, same
inputs, same process, same run.

    fastmix bench                          # CPU, both shapes, float32/uint8/bfloat16, plus collate rows
    fastmix bench --device cuda            # GPU: do_bench medians, plus the kernels alone
                                           # in CUDA graphs as GB/s against copy bandwidth
    fastmix bench --json run.json          # keep the numbers
    fastmix bench --baseline run.json      # flag slowdowns beyond the run-to-run spread (exit 1)

(``python benchmarks/compare.py`` takes the same arguments.) Per candidate: median time,
images/s, time relative to fastmix's equivalent, relative to one in-place read-and-write pass
over the batch (``x.mul_(1)``, the floor), and the bytes its aten ops move relative to that pass
(peers: counted with a TorchDispatchMode; fastmix: the Triton kernels' loads and stores counted
under the interpreter on a small batch). Peers that are not installed, or that reject a dtype,
are listed with the reason. The collate rows (CPU) put fastmix.FastCollateMixup beside timm's
on a list of uint8 samples (:mod:`fastmix.apps.bench.collate`). A line per case goes to stderr as it
runs. CPU timings default to one thread: on a 2-core VM the 2-thread pool gives bimodal times
(override with --threads).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys

import torch

import fastmix
from fastmix import v2

from . import collate, host, launches, peers
from .timing import machine, progress, result_line, summary, time_call

NUM_CLASSES = 1000

# candidate -> (peer it is compared with, factory)
_ALPHAS = {"mixup": dict(mixup_alpha=1.0, cutmix_alpha=0.0), "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
           "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)}


def _fastmix_factory(kind, mode):
    def factory(x, y, num_classes, validate=None):
        mixer = fastmix.Mixup(**_ALPHAS[kind], prob=1.0, mode=mode, label_smoothing=0.1, num_classes=num_classes,
                              validate=validate)
        return lambda: mixer(x, y)
    return factory


def _fastmix_v2(cls):
    def factory(x, y, num_classes, validate=None):
        t = cls(alpha=1.0, num_classes=num_classes, validate=validate)
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


_LAUNCH_CODE = """
import json, os, torch
from fastmix.apps.bench.compare import FASTMIX
from fastmix.apps.bench.launches import count_launches
x = torch.rand(8, 3, 32, 32); y = torch.randint(0, 10, (8,))
fn = FASTMIX[{name!r}][1](x, y, 10, validate=False)
fn()
with count_launches() as launches:
    fn()
print(json.dumps(dict(launches=launches.total)))
"""


@functools.lru_cache(maxsize=None)
def fastmix_launches(name: str) -> dict:
    """The CUDA path of a fastmix candidate, run by the interpreter on a small batch (subprocess):
    its launches (aten ops that launch a kernel + Triton launches, label checks off as on CUDA),
    and its host time per call beside timm's batch step written out (:mod:`.host`, one subprocess
    for every candidate, interleaved). The same for every case of a run (a fixed small batch)."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "FASTMIX_BACKEND": "triton"}
    out = subprocess.run([sys.executable, "-c", _LAUNCH_CODE.format(name=name)], capture_output=True, text=True,
                         env=env)
    row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
    timed = _host_times().get(name)
    if timed:
        row.update(host_us=timed["host_us"], host_vs_timm=timed["vs_timm"])
    return row


@functools.lru_cache(maxsize=None)
def _host_times() -> dict:
    try:
        return host.run()
    except RuntimeError as why:
        progress(str(why))
        return {}


def make_batch(shape, dtype, device):
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(shape, generator=gen)
    x = ((base * 255).round().to(dtype) if dtype == torch.uint8 else base.to(dtype)).to(device)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=gen).to(device)
    return x, y


def run(shapes, dtypes, device, repeat, traffic, only=None):
    cases = [(shape, dtype) for shape in shapes for dtype in dtypes]
    rows = []
    for number, (shape, dtype) in enumerate(cases, 1):
        progress(f"case {number}/{len(cases)}: {'x'.join(map(str, shape))} {str(dtype).replace('torch.', '')} "
                 f"on {device.type}")
        rows += run_case(shape, dtype, device, repeat, traffic, only)
    return rows


def run_case(shape, dtype, device, repeat, traffic, only=None):
    """Every candidate on one batch (its memory is freed when this returns)."""
    x, y = make_batch(shape, dtype, device)
    floor, _ = summary(time_call(lambda: x.mul_(1), device, repeat))
    copy_dst = torch.empty_like(x)
    copy_t, _ = summary(time_call(lambda: copy_dst.copy_(x), device, repeat))
    results = {}
    for name in list(FASTMIX) + list(peers.PEERS):
        if only and not any(o in name for o in only):
            continue
        row = dict(candidate=name, shape="x".join(map(str, shape)), dtype=str(dtype).replace("torch.", ""),
                   device=device.type, floor_ms=floor * 1e3, floor="one x.mul_(1) pass",
                   copy_gbps=2 * x.nbytes / copy_t / 1e9)
        try:
            fn = FASTMIX[name][1](x, y, NUM_CLASSES) if name in FASTMIX else peers.make(name, x, y, NUM_CLASSES)
            med, spread = summary(time_call(fn, device, repeat))
            row.update(median_ms=med * 1e3, spread=spread, images_per_s=shape[0] / med, floor_ratio=med / floor,
                       gbps_vs_pass=2 * x.nbytes / med / 1e9)
            if device.type == "cuda" and name in FASTMIX:
                # the whole step (sampling included) replayed as one CUDA graph: the GPU's own
                # cost, without Python; possible because nothing syncs with the host
                import triton.testing
                row["graph_ms"] = triton.testing.do_bench_cudagraph(fn)
            if name in FASTMIX:       # the CUDA path's launches and host time, whatever the device
                row.update(fastmix_launches(name))
            else:                     # a peer launches on a GPU what its aten ops are here
                with launches.count_launches() as counted:
                    fn()
                row["launches"] = counted.total
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
        progress(result_line(row))
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
    """The rows as a table, a header line per (shape, dtype, floor) group: "vs pass" is the time
    against the group's floor (an ``x.mul_(1)`` pass, or plain collation for the collate rows)."""
    head = (f"{'candidate':28s} {'shape':>14s} {'dtype':>8s} {'median ms':>10s} {'img/s':>9s} {'vs fastmix':>10s} "
            f"{'vs pass':>8s} {'bytes/pass':>10s} {'graph ms':>9s} {'launches':>8s} {'host us':>8s} {'vs timm':>8s}")
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        key = (r["shape"], r["dtype"], r["floor"])
        if key != last:
            copy = f", copy {r['copy_gbps']:.1f} GB/s" if "copy_gbps" in r else ""
            print(f"-- {r['shape']} {r['dtype']} on {r['device']}: {r['floor']} {r['floor_ms']:.3f} ms{copy}")
            last = key
        if "missing" in r:
            print(f"{r['candidate']:28s} {r['shape']:>14s} {r['dtype']:>8s}  missing: {r['missing'][:90]}")
            continue
        vs = f"{r['vs_fastmix']:.1f}x" if "vs_fastmix" in r else "-"
        traffic = f"{r['bytes_vs_pass']:.2f}" if "bytes_vs_pass" in r else "-"
        graph = f"{r['graph_ms']:.3f}" if "graph_ms" in r else "-"
        launched = str(r["launches"]) if "launches" in r else "-"
        host_us = f"{r['host_us']:.0f}" if "host_us" in r else "-"
        host_vs = f"{r['host_vs_timm']:.2f}x" if "host_vs_timm" in r else "-"
        print(f"{r['candidate']:28s} {r['shape']:>14s} {r['dtype']:>8s} {r['median_ms']:10.3f} "
              f"{r['images_per_s']:9.0f} {vs:>10s} {r['floor_ratio']:7.2f}x {traffic:>10s} {graph:>9s} "
              f"{launched:>8s} {host_us:>8s} {host_vs:>8s}")


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


def _shapes(text: str) -> list[tuple[int, ...]]:
    return [] if text == "none" else [tuple(int(v) for v in s.split("x")) for s in text.split(",")]


def main(argv=None, prog=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="128x3x224x224,256x3x32x32", help="batches to mix ('none': no batch rows)")
    parser.add_argument("--collate", default="256x3x224x224,256x3x32x32",
                        help="FastCollateMixup rows: COUNTxCxHxW lists of uint8 samples, CPU only ('none': skip)")
    parser.add_argument("--dtypes", default="float32,uint8,bfloat16")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-traffic", action="store_true", help="skip the byte counting (faster)")
    parser.add_argument("--only", help="comma-separated substrings of candidate names")
    parser.add_argument("--json", help="write the rows (and the machine) to this file")
    parser.add_argument("--baseline", help="compare against a JSON written by --json; exit 1 on a slowdown")
    parser.add_argument("--host", action="store_true",
                        help="only the host time per call of every transform on the CUDA path (kernels stubbed), "
                             "beside timm's batch step written out (fastmix.apps.bench.host)")
    args = parser.parse_args(argv)
    if args.host:
        print(f"machine: {machine(torch.device('cpu'))}; torch {torch.__version__}")
        results = host.run()
        host.print_table(results)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine(torch.device("cpu")), "argv": argv, "host": results}, f, indent=1)
        return 0
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    shapes = _shapes(args.shapes)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    print(f"machine: {machine(device)}; torch {torch.__version__}; peers: "
          + ", ".join(f"{k} {'ok' if v is None else 'MISSING'}" for k, v in peers.available().items()))
    kernels = []
    if device.type == "cuda":
        kernels = kernel_rows(shapes, dtypes, device)
        print_kernel_table(kernels)
    only = args.only.split(",") if args.only else None
    rows = run(shapes, dtypes, device, args.repeat, traffic=not args.no_traffic, only=only)
    if device.type == "cpu":
        rows += collate.run(_shapes(args.collate), args.repeat, only)
    print_table(rows)
    print("host round trips per call (from reading each peer's code):")
    for name, note in {**peers.HOST_ROUND_TRIPS, **collate.HOST_ROUND_TRIPS}.items():
        print(f"  {name}: {note}")
    print("  fastmix: none on CUDA (plans are sampled on the batch's device; see the meta-device and "
          "torch.compile(fullgraph=True) tests in tests/test_sampling_on_device.py); on CPU the fast path "
          "reads the plan with .numpy(), which is no device sync there")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "torch": torch.__version__, "argv": argv, "rows": rows,
                       "kernels": kernels}, f, indent=1)
    if args.baseline:
        return 1 if compare_baseline(rows, args.baseline) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
