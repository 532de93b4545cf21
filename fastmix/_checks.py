"""Argument checks shared by every entry point. All of them run before anything is written."""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import torch

BLEND_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8)
MASK_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def is_number(value) -> bool:
    """True for a real number: a Python int or float, or a numpy integer or float scalar
    (``np.int64(10)``, ``np.float32(0.8)``, as timm and torchvision take them); never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(name: str, value, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
           high_open: bool = False) -> float:
    """A finite real in the given range as a float, or a ValueError/TypeError naming ``name``."""
    if not is_number(value):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name}: must be in {lo}{low}, {high}{hi}, got {value}")
    return value


def integer(name: str, value, *, low: float = -math.inf, high: float = math.inf) -> int:
    """An integer in the given range: an int, a numpy integer, or a float with an integral value
    (``10.0``). A non-integral value (``10.7``) is a ValueError, never silently truncated."""
    real = number(name, value, low=low, high=high)
    if isinstance(value, numbers.Integral):
        return int(value)
    if not real.is_integer():
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return int(real)


def alpha(name: str, value, *, allow_zero: bool) -> float:
    """A Beta concentration: positive (or zero where zero means "off", as in timm)."""
    value = number(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return value


def probability(name: str, value) -> float:
    return number(name, value, low=0.0, high=1.0)


def pair(name: str, value, *, positive: bool = False) -> tuple[float, float]:
    """A ``(min, max)`` pair of numbers: a sequence, or a numpy array or tensor of two (timm
    indexes ``cutmix_minmax`` and takes any of them)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{name}: expected a (min, max) pair, got {value!r}")
    lo, hi = (number(f"{name}[{i}]", v) for i, v in enumerate(value))
    if lo > hi:
        raise ValueError(f"{name}: min {lo} is larger than max {hi}")
    if positive and lo <= 0:
        raise ValueError(f"{name}: values must be positive, got {value!r}")
    return lo, hi


def has_internal_overlap(x: torch.Tensor) -> bool:
    """True exactly when two indices of ``x`` address the same memory (an ``expand``ed tensor,
    say). Free for every layout whose strides nest (contiguous, channels_last, slices, steps,
    gaps); strides that interleave (``as_strided`` views whose spans cross) are decided by
    enumerating the offsets (:func:`_offsets_collide`), the same answer at host cost."""
    dims = sorted(((x.stride(d), x.shape[d]) for d in range(x.dim()) if x.shape[d] > 1))
    if x.numel() == 0:
        return False
    if dims and dims[0][0] == 0:
        return True
    reach = 0  # largest offset reachable with the smaller strides
    for stride, size in dims:
        if stride <= reach:
            return _offsets_collide(dims)
        reach += stride * (size - 1)
    return False


def _offsets_collide(dims: list) -> bool:
    """Whether ``sum_d i_d * stride_d`` repeats over the index box ``dims`` (``(stride, size)``,
    sorted, strides positive): one bitmap over the span, filled one slice of the largest-stride
    dimension at a time (a slice's own repeats show in its sorted offsets)."""
    *inner, (outer_stride, outer_size) = dims
    offsets = torch.zeros((), dtype=torch.int64)
    for stride, size in inner:
        offsets = (offsets.unsqueeze(-1) + torch.arange(size, dtype=torch.int64) * stride)
    offsets = offsets.reshape(-1).sort().values
    if offsets.numel() > 1 and bool((offsets[1:] == offsets[:-1]).any()):
        return True
    seen = torch.zeros(outer_stride * (outer_size - 1) + int(offsets[-1]) + 1, dtype=torch.bool)
    for i in range(outer_size):
        here = offsets + i * outer_stride
        if bool(seen[here].any()):
            return True
        seen[here] = True
    return False


def tensor(name: str, x) -> torch.Tensor:
    """``x`` itself when it is a tensor, else a TypeError naming ``name`` (a numpy array included:
    convert it with ``torch.from_numpy``)."""
    if not isinstance(x, torch.Tensor):
        hint = "; convert it with torch.from_numpy" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}{hint}")
    return x


def batch(name: str, x, *, min_dim: int = 2, dims: Optional[Sequence[int]] = None,
          dtypes: Sequence[torch.dtype] = BLEND_DTYPES, writable: bool = True) -> torch.Tensor:
    """A batch tensor ``(B, ...)`` of a supported dtype, and (when written to) without self-overlap."""
    tensor(name, x)
    if dims is not None and x.dim() not in dims:
        raise ValueError(f"{name}: expected {' or '.join(f'{d}-d' for d in dims)} (batch first), "
                         f"got shape {tuple(x.shape)}")
    if x.dim() < min_dim:
        raise ValueError(f"{name}: expected at least {min_dim} dims (batch first), got shape {tuple(x.shape)}")
    if x.dtype not in dtypes:
        raise TypeError(f"{name}: dtype {x.dtype} is not supported; use one of "
                        f"{', '.join(str(d).replace('torch.', '') for d in dtypes)}")
    if writable and has_internal_overlap(x):
        raise ValueError(f"{name}: its memory overlaps itself (an expanded or stride-0 view); "
                         f"pass x.contiguous() or x.clone()")
    return x


def labels(name: str, y, batch_size: int, num_classes: Optional[int], device: torch.device,
           validate: bool) -> int:
    """Class indices ``(B,)`` or soft labels ``(B, K)``; returns the number of classes ``K``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(y).__name__}")
    if y.device != device:
        raise ValueError(f"{name}: on {y.device}, but the batch is on {device}")
    if y.dim() == 1:
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
            raise TypeError(f"{name}: class indices must be an integer tensor, got {y.dtype}")
        if y.shape[0] != batch_size:
            raise ValueError(f"{name}: {y.shape[0]} labels for a batch of {batch_size}")
        if num_classes is None:
            raise ValueError(f"num_classes: needed to one-hot class indices of shape {tuple(y.shape)}")
        if type(num_classes) is not int or num_classes < 1:     # the transforms pass a checked int
            num_classes = integer("num_classes", num_classes, low=1)
        if validate and torch.compiler.is_compiling():
            # no branch on data in a graph: an asynchronous assert (a RuntimeError when it runs)
            torch._assert_async(((y >= 0) & (y < num_classes)).all(), f"{name}: a class index is outside "
                                f"[0, {num_classes})")
        elif validate and y.numel() and not _in_range(y, num_classes):
            bad = y[(y < 0) | (y >= num_classes)][0]
            raise ValueError(f"{name}: class index {int(bad)} is outside [0, {num_classes})")
        return num_classes
    if y.dim() == 2:
        if not y.dtype.is_floating_point:
            raise TypeError(f"{name}: soft labels (B, K) must be floating point, got {y.dtype}")
        if y.shape[0] != batch_size:
            raise ValueError(f"{name}: {y.shape[0]} label rows for a batch of {batch_size}")
        if num_classes is not None and integer("num_classes", num_classes, low=1) != y.shape[1]:
            raise ValueError(f"num_classes: {num_classes}, but {name} has {y.shape[1]} columns")
        return int(y.shape[1])
    raise ValueError(f"{name}: expected class indices (B,) or soft labels (B, K), got shape {tuple(y.shape)}")


def _in_range(y: torch.Tensor, num_classes: int) -> bool:
    """Every class index in ``[0, num_classes)``: on a CPU tensor two numpy reductions of its own
    memory (a few microseconds, where three torch ops cost three times that), elsewhere one
    reduction read back (a host sync on CUDA: what ``validate=True`` asks for)."""
    if y.device.type == "cpu":
        values = y.detach().numpy()
        return bool(values.min() >= 0 and values.max() < num_classes)
    return not bool(((y < 0) | (y >= num_classes)).any())


def default_validate(validate: Optional[bool], device: torch.device) -> bool:
    """Label ranges are checked by default where that costs no host sync: on CPU tensors, and
    not under ``torch.compile`` (the check would branch on data, which ``fullgraph=True`` cannot
    compile; an unchecked bad index gives a NaN row, never a stray write). ``validate=True``
    under compile checks with an asynchronous assert instead (a RuntimeError when the graph runs)."""
    if validate is None:
        return device.type == "cpu" and not torch.compiler.is_compiling()
    return bool(validate)
