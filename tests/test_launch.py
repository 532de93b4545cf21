"""``fastmix.kernels.launch.Bound``: a launch through the compiled kernel Triton resolved, checked
without a GPU.

- Under the interpreter a Bound launch computes what ``kernel[grid](...)`` computes.
- Against Triton's own ``JITFunction.run``: a real ``JITFunction`` of the same Python function,
  with a fake driver (device index, stream, an sm_90 target) and a fake compiler whose compiled
  kernel records its launcher's arguments. Triton's launch and the Bound's direct launch must pass
  the launcher the same arguments, and the direct launch must not go through ``JITFunction.run``;
  a new alignment, dtype or device index must be a new specialization.
- The Bound's key never merges two calls Triton specialises differently (``native_specialize_impl``).
- Fallbacks (switch off, launch hooks, pre-run hooks, non-tensors, unknown Triton version,
  incomplete compiled kernel) take the normal launch every time; bad arity is a TypeError.
"""
from __future__ import annotations

import random

import pytest
import torch

triton = pytest.importorskip("triton", reason="the launcher wraps Triton kernels")
from triton import compiler as triton_compiler  # noqa: E402
import triton.language as tl  # noqa: E402
from triton import knobs  # noqa: E402
from triton._C.libtriton import native_specialize_impl  # noqa: E402
from triton.backends.compiler import BaseBackend, GPUTarget  # noqa: E402
from triton.runtime.driver import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

from fastmix.kernels import launch  # noqa: E402
from fastmix.kernels.launch import Bound  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _affine_kernel(x_ptr, out_ptr, n, scale, offset, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    x = tl.load(x_ptr + offs, mask=inside).to(tl.float32)
    tl.store(out_ptr + offs, (x * scale + offset).to(out_ptr.dtype.element_ty), mask=inside)


def _raw(kernel):
    return kernel.fn  # the undecorated Python function under an InterpretedFunction / JITFunction


# ---------------------------------------------------------------------------------------------
# 1. the real kernel (interpreter without a GPU)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_bound_computes_what_a_normal_launch_computes(dtype, offset):
    n, block = 50, 16
    grid = (triton.cdiv(n, block),)
    base = torch.randn(n + offset, generator=torch.Generator().manual_seed(7)).to(device=DEVICE, dtype=dtype)
    x = base[offset:]  # offset 1 and 3: data_ptr not 16-byte aligned
    expected = torch.full((n + offset,), -1.0, dtype=dtype, device=DEVICE)[offset:]
    got = torch.full((n + offset,), -1.0, dtype=dtype, device=DEVICE)[offset:]
    _affine_kernel[grid](x, expected, n, 2.5, -0.75, BLOCK=block, num_warps=1)
    bound = Bound(_affine_kernel, grid, 2, (n, 2.5, -0.75), {"BLOCK": block, "num_warps": 1})
    bound(x, got)
    assert torch.equal(got, expected)
    assert torch.equal(got, (x.float() * 2.5 - 0.75).to(dtype))  # and it is the kernel's result
    got.fill_(0)
    bound(x, got)  # the second call (on a GPU: the direct path) writes the same
    assert torch.equal(got, expected)


def test_bound_partial_grid_leaves_the_rest():
    """The grid is the Bound's: one program of 16 writes 16 elements and no more."""
    x = torch.ones(40, device=DEVICE)
    out = torch.zeros(40, device=DEVICE)
    Bound(_affine_kernel, (1,), 2, (40, 1.0, 1.0), {"BLOCK": 16})(x, out)
    assert torch.equal(out[:16], torch.full((16,), 2.0, device=DEVICE))
    assert not out[16:].any()


# ---------------------------------------------------------------------------------------------
# 2. the launcher convention against JITFunction.run (fake driver, fake compiler)
# ---------------------------------------------------------------------------------------------

class FakeDriver:
    """What JITFunction.run and create_binder ask the active driver for."""

    def __init__(self):
        self.device = 0
        self.streams = {0: 0x5EA0, 1: 0x5EA1}

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device):
        return self.streams[device]

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)


class FakeCompiled:
    """A CompiledKernel's launch surface; ``run`` records what the launcher is given."""

    def __init__(self, number, launches, signature, constants):
        self.function = 0xF00 + number
        self.packed_metadata = (4, 1, number)
        self.signature = signature
        self.constants = constants
        self._launches = launches

    def run(self, *args):
        self._launches.append(args)

    def launch_metadata(self, grid, stream, *args):
        return ("launch_metadata", self.function, grid, stream, args)


class Fakes:
    def __init__(self, monkeypatch):
        self.driver = FakeDriver()
        self.launches = []  # every launcher call, Triton's or the Bound's
        self.compiled = []  # every compile
        self.runs = 0       # calls of JITFunction.run
        monkeypatch.setattr(driver, "_active", self.driver)
        monkeypatch.setattr(triton_compiler, "compile", self.compile)  # what create_binder imports

    def compile(self, src, target=None, options=None):
        kernel = FakeCompiled(len(self.compiled), self.launches, dict(src.signature), dict(src.constants))
        self.compiled.append((target, kernel))
        return kernel

    def jit(self, future=False):
        """A real JITFunction of the test kernel's Python function, its run counted (and what it
        returns wrapped in a future, as under Triton's async compile mode, if ``future``)."""
        kernel = JITFunction(_raw(_affine_kernel))
        real_run = kernel.run

        def counted(*args, **kwargs):
            self.runs += 1
            compiled = real_run(*args, **kwargs)
            return _Future(compiled) if future else compiled

        kernel.run = counted  # __getitem__'s proxy looks self.run up per call
        return kernel


class _Future:
    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


@pytest.fixture
def fakes(monkeypatch):
    return Fakes(monkeypatch)


def _same(a, b) -> bool:
    """Equal launcher argument lists: tensors by identity, everything else by value, recursively."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a is b
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


GRID = (3, 2)
SCALARS = (100, 2.0, 0.5)
META = {"BLOCK": 128, "num_warps": 4}


def test_direct_launch_passes_what_triton_passes(fakes):
    kernel = fakes.jit()
    x = torch.zeros(100)
    out = torch.zeros(100)

    kernel[GRID](x, out, *SCALARS, **META)  # Triton's own run: compiles, launches (call A)
    assert fakes.runs == 1 and len(fakes.compiled) == 1 and len(fakes.launches) == 1
    call_a = fakes.launches[-1]

    bound = Bound(kernel, GRID, 2, SCALARS, META)
    bound(x, out)  # first call of this key: the normal launch, Triton's cache hit
    assert fakes.runs == 2 and len(fakes.compiled) == 1 and len(fakes.launches) == 2
    assert _same(fakes.launches[-1], call_a)

    bound(x, out)  # the direct path (call B)
    assert fakes.runs == 2, "the second call went through JITFunction.run"
    assert len(fakes.compiled) == 1 and len(fakes.launches) == 3
    call_b = fakes.launches[-1]
    assert _same(call_b, call_a)

    # and what that list is: grid (y padded, z = 1), stream, function, metadata, hooks, every
    # parameter in order with the constexpr's value last
    compiled = fakes.compiled[0][1]
    assert call_b[:6] == (3, 2, 1, 0x5EA0, compiled.function, compiled.packed_metadata)
    assert _same(call_b[6], ("launch_metadata", compiled.function, GRID, 0x5EA0, (x, out, *SCALARS, 128)))
    assert call_b[7] is knobs.runtime.launch_enter_hook and call_b[8] is knobs.runtime.launch_exit_hook
    assert _same(call_b[9:], (x, out, 100, 2.0, 0.5, 128))
    assert fakes.compiled[0][0] == GPUTarget("cuda", 90, 32)


def test_a_future_is_waited_for(fakes):
    """Under async compilation the normal launch returns a future of the compiled kernel."""
    bound = Bound(fakes.jit(future=True), GRID, 2, SCALARS, META)
    x, out = torch.zeros(100), torch.zeros(100)
    bound(x, out)
    bound(x, out)
    assert fakes.runs == 1 and len(fakes.launches) == 2
    assert fakes.launches[-1][4] == fakes.compiled[0][1].function


def test_new_alignment_dtype_or_device_is_a_new_specialization(fakes):
    kernel = fakes.jit()
    out = torch.zeros(100)
    bound = Bound(kernel, GRID, 2, SCALARS, META)

    def twice(*tensors):
        """Two calls: a normal launch, then a direct one, on the newest compiled kernel."""
        runs = fakes.runs
        bound(*tensors)
        bound(*tensors)
        assert fakes.runs == runs + 1
        return fakes.launches[-1]

    aligned = torch.zeros(101)
    launched = twice(aligned[:100], out)
    assert len(fakes.compiled) == 1
    assert fakes.compiled[0][1].signature["x_ptr"] == "*fp32"
    assert launched[4] == fakes.compiled[0][1].function

    unaligned = aligned[1:]  # storage offset 1 of float32: data_ptr % 16 == 4
    assert unaligned.data_ptr() % 16 and aligned.data_ptr() % 16 == 0
    launched = twice(unaligned, out)
    assert len(fakes.compiled) == 2, "an unaligned tensor must be compiled for"
    assert launched[4] == fakes.compiled[1][1].function and launched[9] is unaligned

    half = torch.zeros(100, dtype=torch.float16)
    launched = twice(half, out)
    assert len(fakes.compiled) == 3
    assert fakes.compiled[2][1].signature["x_ptr"] == "*fp16"
    assert launched[4] == fakes.compiled[2][1].function

    fakes.driver.device = 1  # a new device: Triton's cache of that device, the Bound's new key
    launched = twice(aligned[:100], out)
    assert len(fakes.compiled) == 4
    assert launched[3] == 0x5EA1 and launched[4] == fakes.compiled[3][1].function

    fakes.driver.device = 0  # back: the first specialization again, directly, nothing compiled
    runs = fakes.runs
    bound(aligned[:100], out)
    assert fakes.runs == runs and len(fakes.compiled) == 4
    assert fakes.launches[-1][3] == 0x5EA0 and fakes.launches[-1][4] == fakes.compiled[0][1].function
    assert len(bound.compiled) == 4


def test_debug_knob_is_part_of_the_key(fakes, monkeypatch):
    """knobs.runtime.debug goes into Triton's compile options on every call: flipping it must
    not reuse a kernel compiled without it."""
    kernel = fakes.jit()
    x, out = torch.zeros(100), torch.zeros(100)
    bound = Bound(kernel, GRID, 2, SCALARS, META)
    bound(x, out)
    bound(x, out)
    monkeypatch.setattr(knobs.runtime, "debug", True)
    bound(x, out)
    assert len(fakes.compiled) == 2 and fakes.runs == 2
    bound(x, out)
    assert fakes.runs == 2 and fakes.launches[-1][4] == fakes.compiled[1][1].function


# ---------------------------------------------------------------------------------------------
# 3. the key refines Triton's specialization
# ---------------------------------------------------------------------------------------------

KEY_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.int8,
              torch.int32, torch.int64, torch.bool]


def test_key_is_a_refinement_of_triton_specialization(fakes):
    rng = random.Random(20240607)
    bound = Bound(fakes.jit(), GRID, 2, SCALARS, META)
    bases = {dtype: torch.zeros(64, dtype=dtype) for dtype in KEY_DTYPES}

    def view(dtype):
        return bases[dtype][rng.randrange(0, 20):]

    def draw():
        return tuple(view(rng.choice(KEY_DTYPES)) for _ in range(2))

    def near(tensors):
        """Often the same dtypes at other offsets, so that equal keys come up as often as not."""
        return tuple(view(t.dtype if rng.random() < 0.8 else rng.choice(KEY_DTYPES)) for t in tensors)

    def triton_spec(tensors):
        return [native_specialize_impl(BaseBackend, t, False, True, True) for t in tensors]

    equal = differ = 0
    for _ in range(600):
        a = draw()
        b = near(a) if rng.random() < 0.7 else draw()
        same_key = bound.key(*a) == bound.key(*b)
        same_spec = triton_spec(a) == triton_spec(b)
        if same_key:
            assert same_spec, (a, b)  # safety: one key never covers two specializations
            equal += 1
        else:
            differ += 1
        # for these dtypes Triton tells every pair apart too: the key does not over-split
        assert same_key == same_spec
    assert equal > 20 and differ > 20  # both branches were exercised


# ---------------------------------------------------------------------------------------------
# 4. fallbacks take the normal launch every time
# ---------------------------------------------------------------------------------------------

def _calls_through_run(fakes, bound, tensors, n=3):
    runs = fakes.runs
    for _ in range(n):
        bound(*tensors)
    return fakes.runs - runs


def test_switched_off_every_call_is_normal(fakes, monkeypatch):
    monkeypatch.setattr(launch, "BOUND", False)
    bound = Bound(fakes.jit(), GRID, 2, SCALARS, META)
    assert _calls_through_run(fakes, bound, (torch.zeros(100), torch.zeros(100))) == 3
    monkeypatch.setattr(launch, "BOUND", True)  # read per call: on again, the direct path
    assert _calls_through_run(fakes, bound, (torch.zeros(100), torch.zeros(100))) == 1


@pytest.mark.parametrize("which", ["launch_enter_hook", "launch_exit_hook"])
def test_launch_hook_every_call_is_normal(fakes, which):
    bound = Bound(fakes.jit(), GRID, 2, SCALARS, META)
    tensors = (torch.zeros(100), torch.zeros(100))
    bound(*tensors)  # a direct launch is ready for this key
    chain = getattr(knobs.runtime, which)
    seen = []
    hook = seen.append
    chain.add(hook)
    try:
        assert launch.hooks_active()
        assert _calls_through_run(fakes, bound, tensors) == 3
        assert fakes.launches[-1][7] is knobs.runtime.launch_enter_hook  # what Triton passed
    finally:
        chain.remove(hook)
    assert not launch.hooks_active()
    assert _calls_through_run(fakes, bound, tensors) == 0  # hook gone: direct again


def test_plain_callable_hook_is_active(fakes, monkeypatch):
    """A callable assigned to the knob (instead of added to the chain) is a hook too."""
    bound = Bound(fakes.jit(), GRID, 2, SCALARS, META)
    tensors = (torch.zeros(100), torch.zeros(100))
    bound(*tensors)
    monkeypatch.setattr(knobs.runtime, "launch_enter_hook", lambda metadata: None)
    assert launch.hooks_active()
    assert _calls_through_run(fakes, bound, tensors) == 3
    monkeypatch.setattr(knobs.runtime, "launch_enter_hook", None)
    assert not launch.hooks_active()
    assert _calls_through_run(fakes, bound, tensors) == 0


def test_pre_run_hook_every_call_is_normal(fakes):
    kernel = fakes.jit()
    seen = []
    kernel.add_pre_run_hook(lambda *args, **kwargs: seen.append(args))
    bound = Bound(kernel, GRID, 2, SCALARS, META)
    assert _calls_through_run(fakes, bound, (torch.zeros(100), torch.zeros(100))) == 3
    assert len(seen) == 3


def test_non_tensor_argument_is_normal(fakes):
    bound = Bound(fakes.jit(), GRID, 2, SCALARS, META)
    assert _calls_through_run(fakes, bound, (None, torch.zeros(100))) == 3  # None: a constexpr to Triton
    assert len(bound.compiled) == 0


def test_incomplete_compiled_kernel_is_normal(fakes, monkeypatch):
    """A compiled kernel without an attribute the direct launch reads (here: one this Triton's
    kernels lack) is never driven directly."""
    monkeypatch.setattr(launch, "_COMPILED_ATTRS", launch._COMPILED_ATTRS + ("not_in_this_triton",))
    bound = Bound(fakes.jit(), GRID, 2, SCALARS, META)
    assert _calls_through_run(fakes, bound, (torch.zeros(100), torch.zeros(100))) == 3
    assert list(bound.compiled.values()) == [None]


def test_unknown_triton_version_is_normal(fakes, monkeypatch):
    monkeypatch.setattr(launch, "LAUNCHER_KNOWN", False)
    bound = Bound(fakes.jit(), GRID, 2, SCALARS, META)
    assert _calls_through_run(fakes, bound, (torch.zeros(100), torch.zeros(100))) == 3


@pytest.mark.parametrize("version, known", [
    ("3.1.0", False), ("3.2.0", True), ("3.3.1", True), ("3.4.0+git1a2b3c", True), ("3.6.0", True),
    ("3.7.0", False), ("4.0.0", False), ("2.3.1", False), ("", False), ("nightly", False),
])
def test_launcher_convention_versions(version, known):
    assert launch.launcher_convention_known(version) is known


def test_installed_triton_is_known():
    assert launch.LAUNCHER_KNOWN == launch.launcher_convention_known(triton.__version__)


def test_interpreted_kernel_always_runs_the_interpreter(monkeypatch):
    if not isinstance(_affine_kernel, triton.runtime.interpreter.InterpretedFunction):
        pytest.skip("TRITON_INTERPRET is off (a GPU run): the kernel is a JITFunction")
    calls = []
    real_run = _affine_kernel.run

    def counted(*args, **kwargs):
        calls.append(kwargs["grid"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(_affine_kernel, "run", counted)
    bound = Bound(_affine_kernel, (2,), 2, (20, 1.0, 0.0), {"BLOCK": 16})
    x, out = torch.arange(20.0), torch.zeros(20)
    for _ in range(3):
        bound(x, out)
    assert calls == [(2,)] * 3 and torch.equal(out, x)
    assert bound.compiled == {}


# ---------------------------------------------------------------------------------------------
# 5. a Bound made wrong
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("real", [False, True], ids=["interpreted", "jit"])
@pytest.mark.parametrize("tensors, scalars, meta, match", [
    (2, (100, 2.0), {"BLOCK": 128}, "!= 6 parameters"),           # a scalar short
    (3, (100, 2.0, 0.5), {"BLOCK": 128}, "!= 6 parameters"),      # a tensor too many
    (2, (100, 2.0, 0.5), {"num_warps": 4}, "constexpr BLOCK is missing"),
    (2, (100, 2.0, 0.5, 1.0), {"BLOCK": 128}, "!= 6 parameters"),  # a scalar too many
])
def test_wrong_arguments_raise_type_error_naming_the_kernel(fakes, real, tensors, scalars, meta, match):
    kernel = fakes.jit() if real else _affine_kernel
    with pytest.raises(TypeError, match="_affine_kernel") as info:
        Bound(kernel, GRID, tensors, scalars, meta)
    assert match in str(info.value)


def test_meta_naming_a_positional_parameter_raises(fakes):
    with pytest.raises(TypeError, match="_affine_kernel.*positional parameters.*'n'"):
        Bound(fakes.jit(), GRID, 2, SCALARS, {"BLOCK": 128, "n": 3})


def test_grid_must_be_a_short_tuple():
    with pytest.raises(TypeError, match="_affine_kernel.*grid"):
        Bound(_affine_kernel, (1, 1, 1, 1), 2, SCALARS, {"BLOCK": 16})
    with pytest.raises(TypeError, match="_affine_kernel.*grid"):
        Bound(_affine_kernel, lambda meta: (1,), 2, SCALARS, {"BLOCK": 16})


def test_launch_is_the_normal_launch(fakes):
    kernel = fakes.jit()
    x, out = torch.zeros(100), torch.zeros(100)
    for _ in range(2):
        compiled = launch.launch(kernel, GRID, (x, out), SCALARS, META)
    assert fakes.runs == 2 and compiled is fakes.compiled[0][1]
