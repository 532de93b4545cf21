"""Soft targets in one launch: smoothed one-hot (or soft) labels mixed with the partner's.

    target[i, k] = lam_i * s(y_i)[k] + (1 - lam_i) * s(y_partner[i])[k]
    s(c)[k] = on if k == c else off        (off = eps / K, on = 1 - eps + off; timm's values)
    s(y)[k] = y[k] * (1 - eps) + off       (soft or multi-hot labels)

A class index is only ever compared, never used as an address: an index outside [0, K) gives a
NaN row (its own row, and any row that draws from it with a non-zero weight), never a write
out of bounds. Grid: (B, K / BLOCK_K), so 21k classes are as cheap as 1k per class.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import Bound, dense
from .walk import ceil_div, pow2_at_least


@triton.jit
def _one_hot(label, cols, K, on, off):
    row = tl.where(cols == label, on, off)
    return tl.where((label >= 0) & (label < K), row, float("nan"))


@triton.jit
def _targets_kernel(labels_ptr, partner_ptr, lam_ptr, out_ptr, K, label_stride, on, off, keep,
                    SOFT: tl.constexpr, BLOCK_K: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    in_k = cols < K
    lam = tl.load(lam_ptr + i)
    other_w = 1.0 - lam
    partner = tl.load(partner_ptr + i)
    if SOFT:
        own = tl.load(labels_ptr + i * label_stride + cols, mask=in_k).to(tl.float32) * keep + off
        other = tl.load(labels_ptr + partner * label_stride + cols, mask=tl.where(other_w != 0.0, in_k, False))
        other = other.to(tl.float32) * keep + off
    else:
        own = _one_hot(tl.load(labels_ptr + i), cols, K, on, off)
        other = _one_hot(tl.load(labels_ptr + partner), cols, K, on, off)
    val = lam * own + tl.where(other_w != 0.0, other_w * other, 0.0)
    tl.store(out_ptr + i * K + cols, val, mask=in_k)


def mix_targets(labels: torch.Tensor, partner: torch.Tensor, label_lam: torch.Tensor, num_classes: int,
                smoothing: float) -> torch.Tensor:
    """``(B, num_classes)`` float32 mixed, smoothed targets (see the module docstring); one launch."""
    batch = partner.shape[0]
    out = torch.empty(batch, num_classes, dtype=torch.float32, device=partner.device)
    if batch == 0 or num_classes == 0:
        return out
    soft = labels.dim() == 2
    key = (batch, num_classes, smoothing, soft, labels.stride(0) if soft else 1)
    launch = _bound.get(key)
    if launch is None:
        block_k = min(1024, pow2_at_least(num_classes))
        grid = (batch, ceil_div(num_classes, block_k))
        if len(_bound) >= 32:
            _bound.clear()
        launch = _bound[key] = Bound(_targets_kernel, grid, 4, (num_classes, key[4],
                                                                *smoothing_terms(smoothing, num_classes)),
                                     dict(SOFT=soft, BLOCK_K=block_k, num_warps=4 if block_k >= 512 else 1))
    launch(labels, dense(partner), dense(label_lam), out)
    return out


def smoothing_terms(smoothing: float, num_classes: int) -> tuple[float, float, float]:
    """``(on, off, keep)`` of the targets' formula for ``smoothing`` over ``num_classes`` (timm's:
    the smoothed one-hot row is ``off`` everywhere and ``on = 1 - smoothing + off`` at the class)."""
    off = smoothing / num_classes if num_classes else 0.0
    return 1.0 - smoothing + off, off, 1.0 - smoothing


_bound: dict = {}   # (batch, classes, smoothing, soft, label stride) -> its launch, made once
