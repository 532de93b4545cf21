"""Compile every kernel ahead of time for real GPUs, with no GPU present, and report what came out.

``python -m fastmix.kernels`` (or ``fastmix kernels``) builds each kernel variant × dtype for
sm_80 and sm_90 with Triton's own compiler (which ships ptxas), then reads:

- registers and local memory (where spills go) from the cubin (``cuobjdump --dump-resource-usage``,
  bundled with Triton),
- the widest global load and store in the PTX (``ld.global.v4.b32`` is 128 bits).

Variants are specialised as Triton's JIT would specialise a launch on an aligned contiguous
batch (3×224×224, pointers and strides multiples of 16 bytes), which is the path that must
issue 128-bit accesses. They walk flip pairs unless named otherwise (``_perm``: a cycle table,
``_roll``: torchvision's single cycle).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Optional

DTYPES = {"fp32": 4, "fp16": 2, "bf16": 2, "u8": 1, "fp64": 8, "i64": 8}

# (variant, kernel, dtypes, constexpr overrides)
BLEND_VARIANTS = [
    ("blend_inplace", "_blend_inplace_kernel", ("fp32", "fp16", "bf16", "u8", "fp64"), dict(FILL=0)),
    ("blend_out", "_blend_out_kernel", ("fp32", "fp16", "bf16", "u8", "fp64"), dict(FILL=0)),
    ("blend_grad", "_blend_grad_kernel", ("fp32", "fp16", "bf16", "fp64"), dict()),
    ("erase_const", "_blend_inplace_kernel", ("fp32", "u8"), dict(FILL=1)),
    ("erase_noise", "_blend_inplace_kernel", ("fp32",), dict(FILL=2)),
    ("mask_select", "_blend_inplace_kernel", ("i64",), dict(FILL=1)),
    ("blend_perm", "_blend_inplace_kernel", ("fp32", "bf16", "u8"), dict(FILL=0, WALK=0)),
    ("blend_roll", "_blend_inplace_kernel", ("fp32",), dict(FILL=0, WALK=2)),
    ("mixup_inplace", "_blend_inplace_kernel", ("fp32", "fp16", "bf16", "u8"), dict(FILL=0, WHOLE_ROWS=True)),
    ("mask_inplace", "_blend_inplace_kernel", ("fp32", "bf16", "u8"), dict(FILL=0, MASKED=True)),
    ("mask_grad", "_blend_grad_kernel", ("fp32",), dict(MASKED=True)),
]
TARGET_VARIANTS = [("targets_index", False), ("targets_soft", True)]
# the piece pass (kernels/pieces.py): RICAP's four translated pieces, k-way Mixup's three whole
# images, ResizeMix's one bilinear resize
PIECE_VARIANTS = [
    ("pieces_ricap", "_pieces_kernel", ("fp32", "fp16", "bf16", "u8", "fp64"), dict(PIECES=4, BILINEAR=False)),
    ("pieces_kway", "_pieces_kernel", ("fp32", "bf16", "u8"), dict(PIECES=3, BILINEAR=False)),
    ("pieces_resize", "_pieces_kernel", ("fp32", "fp16", "bf16", "u8", "fp64"), dict(PIECES=1, BILINEAR=True)),
]
_PIECE_POINTERS = {"row_ptr": "*i64", "weight_ptr": "*fp32", "dbox_ptr": "*i32", "sbox_ptr": "*i32"}
_PIECE_ALIGNED = ("lanes", "width", "s_stride_batch", "s_stride_plane", "s_stride_row", "d_stride_batch",
                  "d_stride_plane", "d_stride_row")
# the samplers (kernels/sample.py) as the launchers launch them: (variant, kernel, constexprs, num_warps)
_MIX = dict(MODE=2, ROLL=False, MIXUP_ON=True, CUTMIX_ON=True, BOX=0, CORRECT=True)
SAMPLE_VARIANTS = [
    ("sample_mixup", "_mixup_plan_kernel", dict(_MIX, LABELS=0, BLOCK_B=128, BLOCK_K=1), 4),
    ("sample_mixup_targets", "_mixup_plan_kernel", dict(_MIX, LABELS=1, BLOCK_B=1, BLOCK_K=1024), 4),
    ("sample_minmax_soft", "_mixup_plan_kernel", dict(_MIX, BOX=2, LABELS=2, BLOCK_B=1, BLOCK_K=1024), 4),
    ("sample_cutout", "_cutout_plan_kernel", dict(HOLES=2, BLOCK_B=128), 1),
    ("sample_erasing", "_erasing_plan_kernel", dict(ATTEMPTS=10, SEED=True, BLOCK_B=128), 1),
]
# pointer and scalar types of the samplers' arguments; float64 parameters travel as int64 bits
_SAMPLE_POINTERS = {"u_ptr": "*fp32", "labels_ptr": "*i64", "partner_ptr": "*i64", "box_ptr": "*i32",
                    "kind_ptr": "*i8", "seed_ptr": "*i64"}
_SAMPLE_BITS = ("mixup_alpha", "cutmix_alpha", "prob", "switch_prob", "offset", "p", "scale_lo", "scale_hi",
                "log_ratio_lo", "log_ratio_hi")


# The family's samplers (kernels/sample_pieces.py, sample_masks.py, saliency.py, patchup.py):
# compiled with the signatures of a real step's launches, read off under the interpreter in a
# subprocess (a tensor -> a pointer of its dtype, an int -> i32 or i64 as the JIT types it, a
# float -> fp32, the constexprs as launched), so they compile as the steps launch them.
FAMILY_STEPS = {
    "RICAP": "fastmix.RICAP(num_classes=10, mode='elem', validate=False)",
    "DirichletMixup": "fastmix.DirichletMixup(num_classes=10, validate=False)",
    "ResizeMix": "fastmix.ResizeMix(interpolation='bilinear', num_classes=10, validate=False)",
    "FMix": "fastmix.FMix(num_classes=10, mode='elem', validate=False)",
    "FMix-soft": "fastmix.FMix(max_soft=0.2, num_classes=10, validate=False)",
    "SaliencyMix": "fastmix.SaliencyMix(num_classes=10, mode='elem', validate=False)",
}
_FAMILY_MODULES = ("fastmix.kernels.sample_pieces", "fastmix.kernels.sample_masks", "fastmix.kernels.saliency",
                   "fastmix.kernels.patchup")
_TORCH_TYPES = {"float32": "fp32", "float64": "fp64", "float16": "fp16", "bfloat16": "bf16", "int64": "i64",
                "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8", "bool": "i1"}


def _recorded_launches() -> dict:
    """variant name -> (module, kernel, signature, constexprs, num_warps) of every family-sampler
    launch a step of each :data:`FAMILY_STEPS` makes (run in a TRITON_INTERPRET=1 subprocess)."""
    import inspect

    import torch
    from triton.runtime import interpreter

    import fastmix
    from fastmix import ops

    found, run = {}, interpreter.InterpretedFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        fn = self.fn
        if fn.__module__ in _FAMILY_MODULES:
            params = inspect.signature(fn).parameters
            values = dict(zip(self.arg_names, args), **{k: v for k, v in kwargs.items() if k in params})
            sig, const = {}, {}
            for name in self.arg_names:
                value = values.get(name)
                if "constexpr" in str(params[name].annotation) or value is None:
                    sig[name], const[name] = "constexpr", value
                elif isinstance(value, torch.Tensor):
                    sig[name] = "*" + _TORCH_TYPES[str(value.dtype).split(".")[-1]]
                elif isinstance(value, bool):
                    sig[name] = "i1"
                elif isinstance(value, int):
                    sig[name] = "i32" if -2**31 <= value < 2**31 else "i64"
                else:
                    sig[name] = "fp32"
            name = f"family_{fn.__name__.strip('_').removesuffix('_kernel')}"
            found.setdefault(name, (fn.__module__, fn.__name__, sig, const, kwargs.get("num_warps", 4)))
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    interpreter.InterpretedFunction.run = record
    try:
        previous = ops.backend()
        ops.set_backend("triton")
        for code in FAMILY_STEPS.values():
            op = eval(code, {"fastmix": fastmix})
            op(torch.rand(4, 3, 8, 8), torch.arange(4))
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
        fastmix.PatchUp(model, ["0"], num_classes=10, validate=False)(torch.rand(4, 3, 8, 8), torch.arange(4))
    finally:
        interpreter.InterpretedFunction.run = run
        ops.set_backend(previous)
    return found


def family_variants() -> dict:
    """:func:`_recorded_launches`, run where the kernels are the interpreter's."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    code = "import json; from fastmix.kernels import aot; print(json.dumps(aot._recorded_launches()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return {name: tuple(v) for name, v in json.loads(out.strip().splitlines()[-1]).items()}


def _family_source(module: str, kernel: str, sig: dict, const: dict):
    import importlib

    from triton.compiler import ASTSource

    return ASTSource(fn=getattr(importlib.import_module(module), kernel), signature=sig, constexprs=const)


@dataclass
class Report:
    kernel: str
    arch: int
    dtype: str
    registers: Optional[int] = None
    local_bytes: Optional[int] = None       # local memory + stack: where spills would go
    widest_load_bits: Optional[int] = None
    widest_store_bits: Optional[int] = None
    error: Optional[str] = None


def _tool(name: str) -> str:
    import triton
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


# pointer arguments by name: the batch's dtype, or a fixed one
_POINTERS = {"walk_ptr": "*i32", "seg_ptr": "*i32", "counter_ptr": "*i32", "mask_ptr": "*fp32", "lam_self_ptr": "*fp32", "lam_partner_ptr": "*fp32",
             "box_ptr": "*i32", "fill_ptr": "*fp32", "seed_ptr": "*i64"}
# what the JIT infers for a 16-byte-aligned contiguous 3x224x224 batch
_ALIGNED = ("lanes", "box_width", "stride_batch", "stride_plane", "stride_row", "sample_numel")


def _blend_source(kernel: str, variant: dict, dtype: str):
    from . import blend
    from fastmix.layout import Layout

    size = DTYPES[dtype]
    layout = Layout(batch=256, planes=3, rows=224, lanes=224, stride_batch=3 * 224 * 224, stride_plane=224 * 224,
                    stride_row=224, channels=3)
    block_r, block_l, num_warps = blend.tile_shape(layout, size)
    fn = getattr(blend, kernel)
    const = dict(BOXES=1, CHANNEL_IN_LANE=False, MASKED=False, WALK=1, WHOLE_ROWS=False, VEC=max(1, 16 // size),
                 BLOCK_R=block_r, BLOCK_L=block_l)
    const.update(variant)
    const = {name: value for name, value in const.items() if name in fn.arg_names}
    return _aligned_source(fn, const, _POINTERS, _ALIGNED, dtype), num_warps


def _aligned_source(fn, const: dict, pointers: dict, aligned_ints: tuple, dtype: str):
    """The ASTSource of ``fn`` as the JIT specialises it on an aligned batch: constexprs, pointers
    (``pointers`` by name, else the batch's ``dtype``) and int32 scalars, the pointers and the
    ``aligned_ints`` marked divisible by 16."""
    from triton.compiler import ASTSource

    sig = {}
    for name in fn.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = pointers.get(name, "*" + dtype)
        else:
            sig[name] = "i32"
    aligned = [name for name in sig if name.endswith("_ptr")] + [name for name in aligned_ints if name in sig]
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    return ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs)


def _pieces_source(kernel: str, variant: dict, dtype: str):
    from . import pieces
    from fastmix.layout import Layout

    layout = Layout(batch=256, planes=3, rows=224, lanes=224, stride_batch=3 * 224 * 224, stride_plane=224 * 224,
                    stride_row=224, channels=3)
    block_r, block_l, num_warps = pieces.tile_shape(layout)
    const = dict(variant, BLOCK_R=block_r, BLOCK_L=block_l)
    return _aligned_source(getattr(pieces, kernel), const, _PIECE_POINTERS, _PIECE_ALIGNED, dtype), num_warps


def _sample_source(kernel: str, const: dict):
    from triton.compiler import ASTSource

    from . import sample

    fn = getattr(sample, kernel)
    sig = {}
    for name in fn.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = _SAMPLE_POINTERS.get(name, "*fp32")
        elif name in _SAMPLE_BITS:
            sig[name] = "i64"
        elif name in ("on", "off", "keep"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return ASTSource(fn=fn, signature=sig, constexprs=const)


def _targets_source(soft: bool):
    from triton.compiler import ASTSource

    from . import targets

    fn = targets._targets_kernel
    sig = {"labels_ptr": "*fp32" if soft else "*i64", "partner_ptr": "*i64", "lam_ptr": "*fp32", "out_ptr": "*fp32",
           "K": "i32", "label_stride": "i32", "on": "fp32", "off": "fp32", "keep": "fp32",
           "SOFT": "constexpr", "BLOCK_K": "constexpr"}
    const = dict(SOFT=soft, BLOCK_K=1024)
    aligned = ["labels_ptr", "partner_ptr", "lam_ptr", "out_ptr", "K", "label_stride"]
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    return ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs), 4


_ACCESS = re.compile(r"\b(ld|st)\.global(?:\.[a-z0-9_:]+)*?(?:\.v(\d))?\.(b|u|s|f)(\d+)\b")


def access_widths(ptx: str) -> dict:
    """Widest global load and store in the PTX, in bits (``ld.global.v4.b32`` -> 128)."""
    widths = {"ld": [], "st": []}
    for match in _ACCESS.finditer(ptx):
        op, vec, _, bits = match.groups()
        widths[op].append(int(vec or 1) * int(bits))
    return {op: max(w, default=0) for op, w in widths.items()}


def resource_usage(cubin: bytes) -> dict:
    """Registers, spills and local memory of the (single) kernel in a cubin, via cuobjdump."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
        path = f.name
    try:
        text = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", path], capture_output=True, text=True,
                              check=True).stdout
    finally:
        os.unlink(path)
    usage = {}
    for key, pattern in (("registers", r"REG:(\d+)"), ("local_bytes", r"LOCAL:(\d+)"),
                         ("stack", r"STACK:(\d+)")):
        found = re.search(pattern, text)
        usage[key] = int(found.group(1)) if found else None
    return usage


def compile_one(kernel: str, arch: int, dtype: str, family: Optional[tuple] = None) -> Report:
    """Compile one variant for ``sm_{arch}`` and read its resources (runs in a worker process);
    ``family``: a family sampler's recorded launch (:func:`family_variants`)."""
    os.environ.pop("TRITON_INTERPRET", None)  # the AST must be a real JITFunction
    import triton
    from triton.backends.compiler import GPUTarget

    report = Report(kernel, arch, dtype)
    try:
        if family is not None:
            module, fn_name, sig, const, num_warps = family
            src = _family_source(module, fn_name, sig, const)
        elif kernel.startswith("targets"):
            src, num_warps = _targets_source(dict(TARGET_VARIANTS)[kernel])
        elif kernel.startswith("sample"):
            _, fn_name, const, num_warps = next(v for v in SAMPLE_VARIANTS if v[0] == kernel)
            src = _sample_source(fn_name, const)
        elif kernel.startswith("pieces"):
            _, fn_name, _, variant = next(v for v in PIECE_VARIANTS if v[0] == kernel)
            src, num_warps = _pieces_source(fn_name, variant, dtype)
        else:
            _, fn_name, _, variant = next(v for v in BLEND_VARIANTS if v[0] == kernel)
            src, num_warps = _blend_source(fn_name, variant, dtype)
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
        ptx = compiled.asm["ptx"]
        usage = resource_usage(compiled.asm["cubin"])
        widths = access_widths(ptx)
        report.registers = usage["registers"]
        report.local_bytes = max(usage["local_bytes"] or 0, usage["stack"] or 0)
        report.widest_load_bits = widths["ld"]
        report.widest_store_bits = widths["st"]
    except Exception as err:  # reported in the table, and a test fails on it
        report.error = f"{type(err).__name__}: {err}"[:300]
    return report


def jobs(arches=(80, 90)) -> list[tuple[str, int, str]]:
    out = []
    for arch in arches:
        for name, _, dtypes, _ in BLEND_VARIANTS:
            out += [(name, arch, dt) for dt in dtypes]
        for name, _, dtypes, _ in PIECE_VARIANTS:
            out += [(name, arch, dt) for dt in dtypes]
        out += [(name, arch, "fp32") for name, _ in TARGET_VARIANTS]
        out += [(name, arch, "fp64") for name, *_ in SAMPLE_VARIANTS]
    return out


def compile_all(arches=(80, 90), workers: Optional[int] = None) -> list[Report]:
    work = [(name, arch, dtype, None) for name, arch, dtype in jobs(arches)]
    work += [(name, arch, "fp64", variant) for name, variant in sorted(family_variants().items()) for arch in arches]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        return list(pool.map(compile_one, *zip(*work)))


def table(reports: list[Report]) -> str:
    head = f"{'kernel':14s} {'arch':>5s} {'dtype':>5s} {'regs':>5s} {'local B':>8s} {'ld bits':>8s} {'st bits':>8s}"
    lines = [head, "-" * len(head)]
    for r in reports:
        if r.error:
            lines.append(f"{r.kernel:14s} {'sm_%d' % r.arch:>5s} {r.dtype:>5s}  ERROR {r.error}")
            continue
        lines.append(f"{r.kernel:14s} {'sm_%d' % r.arch:>5s} {r.dtype:>5s} {r.registers:5d} {r.local_bytes:8d} "
                     f"{r.widest_load_bits:8d} {r.widest_store_bits:8d}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="fastmix kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="*", default=[80, 90], help="compute capabilities (80 = sm_80)")
    parser.add_argument("--json", dest="json_path", help="also write the table as JSON to this file")
    args = parser.parse_args(argv)
    try:
        import triton  # noqa: F401
    except ImportError as err:
        print(f"fastmix kernels compiles with Triton's own compiler, which does not import here ({err}); "
              f"pip install 'triton>=3.3,<3.7' (the test extra has it)", file=sys.stderr)
        return 2
    reports = compile_all(tuple(args.arch))
    json_path = args.json_path
    print(table(reports))
    if json_path:
        with open(json_path, "w") as f:
            json.dump([asdict(r) for r in reports], f, indent=1)
    return 1 if any(r.error for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
