"""What must be in conftest: without CUDA the Triton kernels run under the interpreter, which
must be switched on before any @triton.jit function is created, i.e. before fastmix.kernels
imports; and the ``gen`` fixture. Shared helpers live in ``tests/helpers.py``."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(params=["host", "fused"])
def each_sampler(request):
    """Run a test with the host-side sampler (numpy, as on CPU) and with the fused Triton sampler
    (the CUDA path, under the interpreter without a GPU): the same distributions must hold for both."""
    if request.param == "host":
        yield "host"
        return
    from fastmix import ops

    if not ops.triton_available():
        pytest.skip("triton is not installed")
    old = ops.backend()
    ops.set_backend("triton")
    try:
        yield "fused"
    finally:
        ops.set_backend(old)
