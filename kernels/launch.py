"""Launch a ``@triton.jit`` kernel through the compiled kernel it resolved to, skipping Triton's
per-call binding.

Why. ``kernel[grid](*args, **meta)`` goes through ``JITFunction.run`` on every call: it binds the
arguments by name (a generated function that builds a dict of every parameter), specialises each
argument in C++, builds the cache key string from that specialization and the options, looks the
compiled kernel up, checks the kernel's globals, and only then calls the compiled kernel's
launcher. That is ~6-13 us of host time per launch; the launcher itself is ~3-4 us. fastmix
launches its kernels once or twice a training step with arguments whose non-tensor part (shapes,
strides, constexprs, ``num_warps``) is the same from one step to the next, so most of that work
repeats an answer already known.

What. A :class:`Bound` fixes one kernel, one grid, the scalar arguments and the constexprs/options
when it is made. Per call only the tensors change. The first call for a *specialization key* does
the normal launch, which returns the ``CompiledKernel``; later calls with that key call its
launcher exactly as the end of ``JITFunction.run`` does::

    kernel.run(grid_0, grid_1, grid_2, stream, kernel.function, kernel.packed_metadata,
               launch_metadata, launch_enter_hook, launch_exit_hook, *all_parameter_values)

with the device and stream Triton itself would use (``driver.active.get_current_device()`` and
``get_current_stream(device)``, looked up per call), the hook objects Triton passes, and the launch
metadata from the compiled kernel's own ``launch_metadata(grid, stream, *args)`` as Triton computes
it (in 3.6 that builds a small ``LazyDict`` per launch even with no hook, ~0.6 us; only hooks read
it, and passing None would be what 3.2-3.5 pass then, but the argument list is kept identical).

Why it is safe. Reusing a compiled kernel is correct exactly when Triton would have resolved the
launch to the same compiled kernel. Triton's cache key is (per parameter) the type and the
specialization of the value -- tensors: the dtype and ``data_ptr() % 16 == 0``; ints: ``== 1``,
``% 16 == 0`` and the i32/i64/u64 range; floats and bools: the type; constexprs: the value --
plus the compile options, on the cache of the current device. In a Bound the scalars, constexprs
and options are fixed, so what can change between calls is: the current device, each tensor's
dtype and its 16-byte alignment, and the two global knobs that feed the options
(``knobs.runtime.debug``, ``knobs.compilation.instrumentation_mode``). The key is exactly those;
it is a refinement of Triton's (two calls with equal keys get equal Triton keys; the converse
need not hold, e.g. for a parameter marked ``do_not_specialize_on_alignment``, which only costs
one more normal launch that finds Triton's cached kernel). Anything the key cannot see makes the
call take the normal launch instead:

* the interpreter (``TRITON_INTERPRET=1``: the kernel is an ``InterpretedFunction``, and the CPU
  tests then run the same argument assembly a GPU launch does), or any other non-``JITFunction``
  (autotuners, heuristics);
* a Triton version whose launcher convention this module was not written against
  (3.2 <= version < 3.7 is known);
* a compiled kernel without ``run``/``function``/``packed_metadata``/``launch_metadata``;
* a launch hook (``launch_enter_hook`` or ``launch_exit_hook``) that would do something, or a
  ``pre_run_hook`` on the kernel: those are Triton's per-launch observers, so they get Triton's
  own path;
* a "tensor" argument without ``dtype``/``data_ptr`` (``None`` is a constexpr to Triton, a
  tuple a nested signature);
* ``BOUND = False`` (a switch for comparisons; ``FASTMIX_BOUND_LAUNCH=0`` sets it at import).

What the bound path does not redo: ``JITFunction.run`` also checks that the Python globals the
kernel read at compile time still have their values (and raises if not). The kernels this is used
for read only module constants; a Bound does not repeat that check after its first launch.
"""
from __future__ import annotations

import inspect
import os
import re
from operator import attrgetter

import triton

# Read per call: tests and benchmarks flip it to compare the bound path with the normal launch.
BOUND = os.environ.get("FASTMIX_BOUND_LAUNCH", "1") != "0"

# The launcher convention (all parameters, constexprs included, after the grid, stream, function,
# packed metadata, launch metadata and the two hooks) is the one of Triton 3.2 to 3.6 (checked
# here against 3.6's jit.py); earlier releases passed a different list, and a later one may
# change it again. A version outside the range gets the normal launch.
KNOWN_VERSIONS = ((3, 2), (3, 7))


def launcher_convention_known(version: str) -> bool:
    """Whether ``version`` (a ``triton.__version__`` string, e.g. ``"3.6.0"``, ``"3.4.0+git1a2b"``)
    launches compiled kernels the way :class:`Bound` calls them."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:
        return False
    return KNOWN_VERSIONS[0] <= (int(m.group(1)), int(m.group(2))) < KNOWN_VERSIONS[1]


LAUNCHER_KNOWN = launcher_convention_known(getattr(triton, "__version__", ""))

try:  # the JIT runtime; absent or different in a Triton this module does not know
    from triton.runtime.jit import JITFunction as _JITFunction
except Exception:  # pragma: no cover - depends on the installed Triton
    _JITFunction = None

# Where Triton reads its launch hooks and the knobs it folds into the compile options on every
# call. 3.4+: ``triton.knobs``; in 3.6 the hooks are ``HookChain`` objects that are never None (an
# empty chain is "no hook"), and ``CompiledKernel.launch_metadata`` tests ``is None``, so there it
# builds its metadata on every launch. 3.2/3.3: class attributes of ``CompiledKernel``, None when
# unset, and ``TRITON_DEBUG`` read from the environment per call.
try:
    from triton import knobs as _knobs

    _HOOKS = _knobs.runtime
    _DEBUG = _knobs.runtime  # .debug
    _MODE = getattr(_knobs, "compilation", None)  # .instrumentation_mode
    if not hasattr(_MODE, "instrumentation_mode"):  # pragma: no cover - a 3.4/3.5 without it
        _MODE = type("_NoMode", (), {"instrumentation_mode": None})()
except Exception:  # pragma: no cover - Triton < 3.4
    try:
        from triton.compiler.compiler import CompiledKernel as _HOOKS
    except Exception:
        _HOOKS = None

    class _EnvKnobs:
        instrumentation_mode = None

        @property
        def debug(self):
            return os.environ.get("TRITON_DEBUG", "0") == "1"

    _DEBUG = _MODE = _EnvKnobs()

try:
    from triton.knobs import HookChain as _HookChain
except Exception:  # pragma: no cover - Triton < 3.6: a hook is a callable or None
    class _HookChain:  # never an instance of it: every non-None hook counts as active
        calls = ()

_COMPILED_ATTRS = ("run", "function", "packed_metadata", "launch_metadata")
_dtype = attrgetter("dtype")


def _hook_idle(hook) -> bool:
    """True when Triton's launcher would call nothing through ``hook``: None, or an empty
    ``HookChain`` (3.6 passes the chain itself to the launcher, which calls it; with no calls in
    it, that does nothing). Anything else (a non-empty chain, a plain callable a user assigned
    to the knob) is a hook that must see Triton's own launch."""
    return hook is None or (type(hook) is _HookChain and not hook.calls)


def hooks_active() -> bool:
    """Whether a launch enter or exit hook is installed (then every Bound takes the normal launch)."""
    if _HOOKS is None:
        return False
    return not (_hook_idle(getattr(_HOOKS, "launch_enter_hook", None))
                and _hook_idle(getattr(_HOOKS, "launch_exit_hook", None)))


def _raw_function(kernel):
    """The Python function under a JITFunction / InterpretedFunction (/ autotuner wrappers)."""
    fn = kernel
    while hasattr(fn, "fn"):
        fn = fn.fn
    return fn


def _parameters(kernel):
    """``[(name, is_constexpr, default)]`` in parameter order, from ``kernel.params`` (JITFunction)
    or from the signature behind ``kernel.arg_names`` (the interpreter's kernels have no params).
    ``default`` is ``inspect.Parameter.empty`` where there is none."""
    params = getattr(kernel, "params", None)
    if params is not None:
        return [(p.name, bool(p.is_constexpr), p.default) for p in params]
    out = []
    for p in inspect.signature(_raw_function(kernel)).parameters.values():
        ann = p.annotation
        # the test KernelParam.is_constexpr makes: the normalised annotation names constexpr
        # (a string under ``from __future__ import annotations``, else the class tl.constexpr)
        text = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
        out.append((p.name, ann is not inspect.Parameter.empty and "constexpr" in text, p.default))
    return out


def _name(kernel) -> str:
    fn = _raw_function(kernel)
    return getattr(fn, "__qualname__", None) or repr(kernel)


def launch(kernel, grid, tensors: tuple, scalars: tuple, meta: dict):
    """One launch the normal way, ``kernel[grid](*tensors, *scalars, **meta)``; returns what
    Triton returns (the compiled kernel on a GPU, None under the interpreter)."""
    return kernel[grid](*tensors, *scalars, **meta)


class Bound:
    """Launches of one kernel with one grid, whose non-tensor arguments and constexprs are fixed
    when the Bound is made (a launcher's per-signature preparation); per call only the tensors change.

    ``kernel``'s positional parameters must be ``tensors`` tensor parameters, then the
    non-constexpr scalars (``scalars``), then the ``tl.constexpr`` parameters, each of which
    ``meta`` names (or which has a default); the rest of ``meta`` are launch options
    (``num_warps``, ...). ``bound(*tensors)`` is ``kernel[grid](*tensors, *scalars, **meta)``.
    """

    __slots__ = ("kernel", "grid", "tensors", "scalars", "meta", "compiled", "_direct", "_tail",
                 "_grid3", "_device", "_stream")

    def __init__(self, kernel, grid: tuple, tensors: int, scalars: tuple, meta: dict):
        name = _name(kernel)
        if not isinstance(grid, (tuple, list)) or not 1 <= len(grid) <= 3:
            raise TypeError(f"Bound({name}): grid must be a tuple of 1 to 3 ints, got {grid!r}")
        params = _parameters(kernel)
        constexprs = [p for p in params if p[1]]
        scalars = tuple(scalars)
        meta = dict(meta)
        if tensors + len(scalars) + len(constexprs) != len(params):
            raise TypeError(
                f"Bound({name}): {tensors} tensors + {len(scalars)} scalars + {len(constexprs)} constexprs"
                f" != {len(params)} parameters ({', '.join(p[0] for p in params)})")
        positional = params[:tensors + len(scalars)]
        if any(p[1] for p in positional):
            raise TypeError(f"Bound({name}): the constexpr parameters must come after the tensors and "
                            f"scalars; {[p[0] for p in positional if p[1]]} do not")
        taken = [p[0] for p in positional if p[0] in meta]
        if taken:
            raise TypeError(f"Bound({name}): meta names positional parameters {taken}")
        values = []
        for pname, _, default in constexprs:
            if pname in meta:
                values.append(meta[pname])
            elif default is not inspect.Parameter.empty:
                values.append(default)  # what the binder's apply_defaults would pass
            else:
                raise TypeError(f"Bound({name}): constexpr {pname} is missing from meta")
        self.kernel = kernel
        self.grid = tuple(grid)
        self.tensors = tensors
        self.scalars = scalars
        self.meta = meta
        # specialization key -> (launcher, function, packed_metadata, launch_metadata) of the
        # compiled kernel, or None where that kernel cannot be driven directly
        self.compiled = {}
        # every parameter after the tensors, in parameter order (what bound_args.values() holds
        # after the tensors), so a bound call does no name lookups
        self._tail = scalars + tuple(values)
        g = self.grid
        self._grid3 = (g[0], g[1] if len(g) > 1 else 1, g[2] if len(g) > 2 else 1)
        self._direct = (_JITFunction is not None and isinstance(kernel, _JITFunction) and LAUNCHER_KNOWN
                        and _HOOKS is not None)
        self._device = self._stream = None
        if self._direct:
            try:
                from triton.runtime.driver import driver

                active = driver.active
                # cached callables: torch.cuda.current_device and the raw-stream getter on CUDA
                self._device = active.get_current_device
                self._stream = active.get_current_stream
            except Exception:  # no usable driver: Triton's own launch reports why
                self._direct = False

    def key(self, *tensors):
        """The specialization key of a call with ``tensors`` (see the module docstring).
        Raises AttributeError for an argument that is not a tensor."""
        return (self._device(), _DEBUG.debug, _MODE.instrumentation_mode, *map(_dtype, tensors),
                *[not t.data_ptr() & 15 for t in tensors])

    def __call__(self, *tensors) -> None:
        kernel = self.kernel
        if BOUND and self._direct and not kernel.pre_run_hooks and len(tensors) == self.tensors:
            hooks = _HOOKS
            enter = hooks.launch_enter_hook  # read per call, as Triton does: users swap them
            leave = hooks.launch_exit_hook
            # _hook_idle(enter) and _hook_idle(leave), inlined (two calls fewer per launch)
            if (enter is None or (type(enter) is _HookChain and not enter.calls)) and \
                    (leave is None or (type(leave) is _HookChain and not leave.calls)):
                try:
                    key = self.key(*tensors)
                except AttributeError:  # not a tensor: Triton specialises it some other way
                    key = None
                if key is not None:
                    entry = self.compiled.get(key)
                    if entry is not None:
                        run, function, packed, launch_metadata = entry
                        stream = self._stream(key[0])
                        args = tensors + self._tail
                        g0, g1, g2 = self._grid3
                        run(g0, g1, g2, stream, function, packed, launch_metadata(self.grid, stream, *args),
                            enter, leave, *args)
                        return
                    if key not in self.compiled:
                        compiled = kernel[self.grid](*tensors, *self.scalars, **self.meta)
                        self._remember(key, compiled)
                        return
        # what kernel[grid](...) does, without making its one-use lambda
        kernel.run(*tensors, *self.scalars, grid=self.grid, warmup=False, **self.meta)

    def _remember(self, key, compiled) -> None:
        """Keep what the first launch of ``key`` resolved to (None: always the normal launch)."""
        if compiled is not None and hasattr(compiled, "result"):  # an async-compile future
            compiled = compiled.result()
        if compiled is None or not all(hasattr(compiled, a) for a in _COMPILED_ATTRS):
            self.compiled[key] = None
            return
        # After a launch the launcher and the function handle are loaded and fixed, so they are
        # read once here instead of through the ``run`` property per call.
        self.compiled[key] = (compiled.run, compiled.function, compiled.packed_metadata,
                              compiled.launch_metadata)

    def __repr__(self) -> str:
        return f"Bound({_name(self.kernel)}, grid={self.grid}, {len(self.compiled)} specializations)"


def dense(tensor):
    """``tensor`` itself when it is contiguous, else a contiguous copy: the kernels index a plan's
    per-row fields as ``ptr + row``, and a batch-mode plan drawn on the host holds its one value
    expanded to every row (stride 0; ``fastmix.sampling``)."""
    return tensor if tensor.is_contiguous() else tensor.contiguous()
