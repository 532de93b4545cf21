"""A step's host work, counted against a budget: the Python function calls one call of each core
transform makes, on the CUDA path and on the CPU path.

On a GPU in eager mode a step costs what the host does around its three launches; on small CPU
batches the same. Time is not a test (it depends on the machine and its load); the number of
Python functions a step calls is: profile events are deterministic for a given code path, so a
change that adds host work to a step fails here, with the count, until the budget is raised on
purpose. Counted after two warm-up calls (the first call of a signature derives and keeps what it
needs: that is allowed to cost). The CUDA path runs under the Triton interpreter with every kernel
launch stubbed out, as ``fastmix bench --host`` times it (the launches themselves are counted in
``tests/test_launches.py``); calls into C (torch ops, builtins) are reported, not budgeted.

The budgets are the counts of this code (2026-12-07: core 35-42 calls on the CUDA path, family
52-56; CPU 70-206) with a margin of 4-6 calls (branches that differ between draws: a Mixup or a
CutMix batch). Before the hot-path work (checks, layouts, grids and launch arguments derived on
every call) the core steps made 242-379 profile events on the CUDA path, calls into C included.
On the CPU path per-sample modes still run the numpy spec sampler (about 130 of their ~206
calls). The family members take the same path in both modes on CUDA (one fused draw).
"""
import gc
import sys

import pytest
import torch

import fastmix

from helpers import backend, requires_triton

B, K = 8, 10

TRANSFORMS = {
    "Mixup-mixup-batch": lambda: fastmix.Mixup(mixup_alpha=1.0, num_classes=K, validate=False),
    "Mixup-cutmix-batch": lambda: fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=K, validate=False),
    "Mixup-switch-batch": lambda: fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K, validate=False),
    "Mixup-switch-pair": lambda: fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="pair", num_classes=K,
                                               validate=False),
    "Mixup-switch-elem": lambda: fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=K,
                                               validate=False),
    "v2.MixUp": lambda: fastmix.v2.MixUp(num_classes=K, validate=False),
    "v2.CutMix": lambda: fastmix.v2.CutMix(num_classes=K, validate=False),
    "Cutout": lambda: fastmix.Cutout(n_holes=1, length=4),
    "RandomErasing": lambda: fastmix.RandomErasing(p=0.5),
    **{f"{name}-{mode}": (lambda name=name, mode=mode: getattr(fastmix, name)(num_classes=K, mode=mode, validate=False))
       for name in ("RICAP", "DirichletMixup", "ResizeMix", "FMix", "SaliencyMix") for mode in ("batch", "elem")},
}
TAKES_LABELS = {name: not name.startswith(("Cutout", "RandomErasing")) for name in TRANSFORMS}

# Python calls of one step: (CUDA path, kernels stubbed; CPU path, labels checked as by default)
BUDGET = {
    "Mixup-mixup-batch": (39, 75),
    "Mixup-cutmix-batch": (40, 76),
    "Mixup-switch-batch": (40, 76),
    "Mixup-switch-pair": (40, 212),
    "Mixup-switch-elem": (40, 212),
    "v2.MixUp": (45, 81),
    "v2.CutMix": (46, 82),
    "Cutout": (43, 150),
    "RandomErasing": (45, 159),
    "RICAP-batch": (56, 104), "RICAP-elem": (56, 186),
    "DirichletMixup-batch": (56, 102), "DirichletMixup-elem": (56, 142),
    "ResizeMix-batch": (57, 83), "ResizeMix-elem": (57, 101),
    "FMix-batch": (57, 117), "FMix-elem": (57, 134),
    "SaliencyMix-batch": (60, 137), "SaliencyMix-elem": (60, 153),
}


def count_calls(fn) -> tuple[int, int]:
    """``(Python function calls, calls into C)`` while ``fn()`` runs once."""
    counts = {"call": 0, "c_call": 0}

    def profile(frame, event, arg):
        if event in counts:
            counts[event] += 1

    gc.disable()           # a collection's finalizers would count as the step's calls
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        gc.enable()
    return counts["call"], counts["c_call"]


def _step(name):
    transform = TRANSFORMS[name]()
    x, y = torch.rand(B, 3, 12, 14), torch.arange(B) % K
    return (lambda: transform(x, y)) if TAKES_LABELS[name] else (lambda: transform(x))


@requires_triton
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_cuda_path_step_stays_within_its_budget(name, monkeypatch):
    from triton.runtime import interpreter

    with backend("triton"):
        step = _step(name)
        step()
        step()
        monkeypatch.setattr(interpreter.InterpretedFunction, "run", lambda self, *args, **kwargs: None)
        calls, c_calls = count_calls(step)
    assert calls <= BUDGET[name][0], f"{name}: {calls} Python calls on the CUDA path (budget {BUDGET[name][0]}; " \
                                     f"{c_calls} calls into C)"


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_cpu_path_step_stays_within_its_budget(name):
    with backend("cpu"):
        step = _step(name)
        step()
        step()
        calls, c_calls = count_calls(step)
    assert calls <= BUDGET[name][1], f"{name}: {calls} Python calls on the CPU path (budget {BUDGET[name][1]}; " \
                                     f"{c_calls} calls into C)"


def test_the_count_sees_added_work():
    """The counter is live: a step that also calls a small Python helper counts more. Each count
    is the fewest of three (a per-signature cache that another test filled and cleared makes one
    call derive its facts again)."""
    step = _step("Mixup-mixup-batch")
    step()
    step()
    base = min(count_calls(step)[0] for _ in range(3))

    def helper():
        return None

    more = min(count_calls(lambda: (step(), helper(), helper()))[0] for _ in range(3))
    assert more >= base + 3, (base, more)   # the lambda and the two helpers
