"""Shared fixtures. Without CUDA the Triton kernels run under the interpreter, which must be
switched on before any @triton.jit function is created, i.e. before fastmix.kernels imports."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import contextlib  # noqa: E402

import pytest  # noqa: E402

from fastmix import ops  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
KERNEL_DEVICE = "cuda" if HAS_CUDA else "cpu"


def tolerance(dtype: torch.dtype) -> dict:
    """Blend tolerances: weights are float32, so float32/64 results agree to float32 rounding;
    16-bit results to one unit in their last place; uint8 to one level (a tie can round either way)."""
    return {
        torch.float64: dict(atol=1e-5, rtol=1e-6),
        torch.float32: dict(atol=1e-5, rtol=1e-6),
        torch.float16: dict(atol=1e-3, rtol=1e-3),
        torch.bfloat16: dict(atol=1e-2, rtol=8e-3),
        torch.uint8: dict(atol=1, rtol=0),
    }.get(dtype, dict(atol=0, rtol=0))


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str, exact: bool = False):
    """Elementwise comparison within ``tolerance(dtype)`` (or exact), naming the first bad element."""
    if exact:
        bad = got != want
    else:
        tol = tolerance(dtype)
        bad = (got.double() - want.double()).abs() > tol["atol"] + tol["rtol"] * want.double().abs()
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.numel()} elements differ; first at {idx}: "
                             f"got {float(got[idx])}, want {float(want[idx])}")


@contextlib.contextmanager
def backend(name: str):
    """Force FASTMIX_BACKEND for the block."""
    old = os.environ.get(ops.BACKEND_ENV)
    os.environ[ops.BACKEND_ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ops.BACKEND_ENV, None)
        else:
            os.environ[ops.BACKEND_ENV] = old


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


requires_triton = pytest.mark.skipif(not ops.triton_available(), reason="triton is not installed")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
