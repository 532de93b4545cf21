"""Helpers shared by the test files (the Liger-Kernel ``test/utils.py`` pattern): import them
with ``from helpers import ...``, never from ``conftest``. A helper only one file needs lives in
that file.

- backends and devices: ``backend``, ``requires_triton``, ``requires_cuda``, ``HAS_CUDA``,
  ``KERNEL_DEVICE``; tolerances per dtype: ``tolerance``, ``assert_close``;
- pixel truth: ``constant_batch`` (sample ``i`` holds ``value_of(i)`` everywhere), ``read_sample``
  (what its pixels say happened, a ``Story``), ``mixed_row`` / ``check_row`` (timm's target),
  ``distinct_labels``, ``twins``, ``seeded``;
- inputs left alone: ``raw_bytes``, ``assert_unchanged``; plan fields: ``tensors_of``;
- statistics at about the 0.001 level, bounds derived here, never copied from a run:
  ``assert_binomial``, ``ks_one_sample`` (against a CDF), ``ks_two_sample`` (two samples, for the
  peers), ``chi2_critical``, ``assert_uniform_ints``.

Without CUDA the kernels run under the Triton interpreter: ``conftest.py`` switches it on before
anything imports ``fastmix.kernels``, and so before this module is imported.
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple, Optional

import pytest
import torch

from fastmix import ops
from fastmix.plan import Plan

HAS_CUDA = torch.cuda.is_available()
KERNEL_DEVICE = "cuda" if HAS_CUDA else "cpu"

H, W = 12, 14          # non-square, so a swapped H/W shows
K = 20                 # classes in the pixel-truth tests


# --------------------------------------------------------------------------------------------
# backends, devices, tolerances
# --------------------------------------------------------------------------------------------

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
    """Force a backend for the block (``fastmix.set_backend``; the environment is read only at import)."""
    old = ops.backend()
    ops.set_backend(name)
    try:
        yield
    finally:
        ops.set_backend(old)


requires_triton = pytest.mark.skipif(not ops.triton_available(), reason="triton is not installed")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


# --------------------------------------------------------------------------------------------
# pixel truth: constant batches and what their pixels say
# --------------------------------------------------------------------------------------------

def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def value_of(i: int) -> float:
    """The constant every pixel of sample ``i`` holds."""
    return 10.0 * i + 5.0


def constant_batch(b: int, tail=(3, H, W), dtype=torch.float32) -> torch.Tensor:
    values = torch.tensor([value_of(i) for i in range(b)], dtype=torch.float64)
    return values.view(-1, *([1] * len(tail))).expand(b, *tail).to(dtype).contiguous()


def distinct_labels(b: int, num_classes: int = K, seed: int = 0) -> torch.Tensor:
    return torch.randperm(num_classes, generator=seeded(seed))[:b]


def twins(cls, seed: int, **kwargs):
    """Two transforms whose generators start from the same seed: one samples the plan the
    other is about to apply (the call consumes the generator exactly as ``plan`` does)."""
    return cls(**kwargs, generator=seeded(seed)), cls(**kwargs, generator=seeded(seed))


class Story(NamedTuple):
    """What the pixels of one sample say happened to it."""

    kind: str                     # "none", "mixup" or "cutmix"
    own: float                    # weight / fraction of the sample's own pixels
    box: Optional[tuple]          # (y0, y1, x0, x1) of the partner's pixels (cutmix)


def read_sample(out: torch.Tensor, i: int, j: int) -> Story:
    """Read sample ``i`` of a constant batch after mixing with partner ``j``."""
    s = out[i].double()
    vi, vj = value_of(i), value_of(j)
    uniq = torch.unique(s).tolist()
    if i == j:
        assert uniq == [vi], f"sample {i} pairs with itself, yet its values changed to {uniq[:4]}"
        return Story("none", 1.0, None)
    if uniq == [vi]:
        return Story("none", 1.0, None)
    if len(uniq) == 1 and uniq[0] != vj:
        lam = (uniq[0] - vj) / (vi - vj)
        assert -1e-6 <= lam <= 1 + 1e-6, (f"sample {i} (mixup with {j}): value {uniq[0]} is no blend of "
                                          f"{vi} and {vj} (weight {lam})")
        return Story("mixup", lam, None)
    assert set(uniq) <= {vi, vj}, (f"sample {i}: values {uniq[:6]} are neither its own ({vi}), its partner "
                                   f"{j}'s ({vj}) nor one blend of the two")
    assert s.dim() >= 3, f"sample {i}: a cut on a non-spatial tensor of shape {tuple(s.shape)}"
    planes = (s == vj).reshape(-1, s.shape[-2], s.shape[-1])
    for p in range(1, planes.shape[0]):
        assert torch.equal(planes[p], planes[0]), (f"sample {i} (cutmix): plane {p} has a different box than "
                                                   f"plane 0 (every channel and frame must share one box)")
    mask = planes[0]
    rows = mask.any(1).nonzero()[:, 0]
    cols = mask.any(0).nonzero()[:, 0]
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    assert int(mask.sum()) == (y1 - y0) * (x1 - x0), (f"sample {i} (cutmix): the pasted pixels are not one "
                                                     f"rectangle (bounding box {(y0, y1, x0, x1)}, "
                                                     f"{int(mask.sum())} pixels)")
    return Story("cutmix", 1.0 - float(mask.double().mean()), (y0, y1, x0, x1))


def mixed_row(num_classes: int, own_class: int, other_class: int, own: float, smoothing: float = 0.0):
    """timm's target: ``own * s(own_class) + (1 - own) * s(other_class)``, s = smoothed one-hot."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off

    def smooth(c):
        row = torch.full((num_classes,), off, dtype=torch.float64)
        row[c] = on
        return row

    return own * smooth(own_class) + (1.0 - own) * smooth(other_class)


def check_row(target: torch.Tensor, i: int, expected: torch.Tensor, what: str) -> None:
    got = target[i].double()
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (
        f"sample {i} ({what}): target row differs from the pixels' story; max error "
        f"{float((got - expected).abs().max()):.3g}, own weight {float(expected.max()):.6f}")


# --------------------------------------------------------------------------------------------
# inputs left alone, plan fields
# --------------------------------------------------------------------------------------------

def raw_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor``'s elements as bytes (uint8, 1-D, logical order): equal bytes mean
    bit-for-bit equal values, NaN payloads and signed zeros included."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8).clone()


def assert_unchanged(tensors, snapshots, what: str) -> None:
    """Each tensor still has the bytes ``raw_bytes`` recorded in ``snapshots``."""
    assert len(tensors) == len(snapshots)
    for n, (t, before) in enumerate(zip(tensors, snapshots)):
        assert torch.equal(raw_bytes(t), before), f"{what}: input {n} was written before the error was raised"


TENSOR_FIELDS = ("partner", "lam_self", "lam_partner", "box", "label_lam", "kind", "fill", "noise_seed")


def tensors_of(plan: Plan) -> dict:
    return {name: getattr(plan, name) for name in TENSOR_FIELDS if getattr(plan, name) is not None}


# --------------------------------------------------------------------------------------------
# statistics (about the 0.001 level per check)
# --------------------------------------------------------------------------------------------

Z = 4.5  # binomial tolerance in standard deviations (two-sided p ~ 7e-6 per check)


def assert_binomial(count: int, n: int, p: float, what: str):
    """``count`` successes out of ``n`` are within Z standard deviations of Binomial(n, p)."""
    sd = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= Z * sd, f"{what}: {count}/{n} = {count / n:.4f}, expected {p} ± {Z * sd / n:.4f}"


def ks_one_sample(samples: torch.Tensor, cdf) -> float:
    """One-sample Kolmogorov-Smirnov distance between the empirical CDF of ``samples`` and ``cdf``."""
    x = samples.double().sort().values
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max(float((i / n - f).max()), float((f - (i - 1) / n).max()))


def ks_one_sample_critical(n: int) -> float:
    return 1.95 / math.sqrt(n)  # alpha ~ 0.001


def ks_two_sample(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    fa = torch.searchsorted(a, grid, right=True).double() / a.numel()
    fb = torch.searchsorted(b, grid, right=True).double() / b.numel()
    return float((fa - fb).abs().max())


def ks_two_sample_critical(n: int, m: int) -> float:
    return 1.95 * math.sqrt((n + m) / (n * m))   # alpha ~ 0.001


def assert_same_distribution(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    n, m = ours.numel(), theirs.numel()
    stat = ks_two_sample(ours, theirs)
    limit = ks_two_sample_critical(n, m)
    assert stat < limit, (f"{what}: KS statistic {stat:.4f} >= {limit:.4f} (n={n}, m={m}); means "
                          f"{float(ours.double().mean()):.4f} (fastmix) vs {float(theirs.double().mean()):.4f} (peer)")


def chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.001 point of chi-square(df) by the Wilson-Hilferty approximation (z = Φ⁻¹(0.999))."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def assert_uniform_ints(values: torch.Tensor, high: int, what: str):
    """Chi-square test that ``values`` are uniform over ``0..high-1`` (every bin seen)."""
    assert int(values.min()) >= 0 and int(values.max()) < high, f"{what}: values outside [0, {high})"
    counts = torch.bincount(values.long(), minlength=high).double()
    expected = values.numel() / high
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert (counts > 0).all(), f"{what}: bins never drawn: {torch.nonzero(counts == 0).flatten().tolist()}"
    limit = chi2_critical(high - 1)
    assert stat < limit, f"{what}: chi2 {stat:.1f} >= {limit:.1f} (counts {counts.tolist()})"


def assert_same_fields(fields, what: str) -> None:
    """Two plans' fields equal, at the fused sampler's tolerance: ``fields`` yields ``(name, want,
    got)``; float fields within float32 rounding (2**-24), integer fields exactly."""
    for name, a, b in fields:
        a, b = torch.as_tensor(a), torch.as_tensor(b).cpu()
        assert a.shape == b.shape, f"{what}: {name} shapes {tuple(a.shape)} and {tuple(b.shape)}"
        if a.dtype.is_floating_point:
            worst = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
            assert worst <= 2.0**-24, f"{what}: {name} differs by {worst}"
        else:
            bad = (a.long() != b.long()).nonzero()
            assert not len(bad), f"{what}: {name} differs first at {bad[0].tolist()}: {a[tuple(bad[0])]} vs {b[tuple(bad[0])]}"
