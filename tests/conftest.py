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
