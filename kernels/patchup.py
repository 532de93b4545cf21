"""PatchUp's plan rows from its pooled block centres: one launch after the rows' sampler.

A PatchUp step on a GPU (``fastmix/hidden.py``) is ``torch.rand``, ``_rows_sample_kernel``
(``kernels/sample_masks.py``: lam, prob, the partner rotation and its cycle table), ``neg`` and
``max_pool2d`` of the block centres' uniforms, this kernel, and the blend. A feature lies in a
block where some uniform of its ``block_size`` square is below the rate: ``min < rate``, i.e.
``max(-u) > -rate``, which is what the pooling gives without a threshold pass before it. Per row
the kernel writes the region weight (the blocks, where the row is live), counts the changed
features, and writes the plan row and the soft targets as ``fastmix.hidden.PatchUp.plan``'s torch
ops specify (``tests/test_hidden.py`` holds the two equal).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import Bound
from .sample import block_k, label_arguments
from .sample_masks import (KIND_CUTMIX, KIND_MIXUP, KIND_NONE, NO_LABELS, store_rows,
                           store_targets)


@triton.jit
def _patch_rows_kernel(pooled_ptr, live_ptr, lam_ptr, partner_ptr, labels_ptr, rho_ptr,
                       lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, target_ptr,
                       numel, height, width, rate, num_classes, label_stride, on, off, keep,
                       SOFT: tl.constexpr, LABELS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0)
    rows = row + tl.arange(0, 1)
    live = tl.load(live_ptr + rows) != 0
    base = row.to(tl.int64) * numel
    changed = tl.zeros([], tl.int32)
    for start in range(0, numel, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        inside = offs < numel
        hole = tl.load(pooled_ptr + base + offs, mask=inside, other=float("-inf")) > -rate
        rho = tl.where(hole, 1.0, 0.0) * tl.where(tl.max(live.to(tl.int32), 0) != 0, 1.0, 0.0)
        tl.store(rho_ptr + base + offs, rho, mask=inside)
        changed += tl.sum(rho.to(tl.int32), 0)
    touched = live & (changed > 0)
    share = changed.to(tl.float64) / numel
    zero = share * 0.0 + tl.zeros([1], tl.float64)
    end_y = tl.where(touched, tl.cast(height, tl.float64), 0.0)
    end_x = tl.where(touched, tl.cast(width, tl.float64), 0.0)
    partner = tl.load(partner_ptr + rows)
    if SOFT:
        lam = tl.load(lam_ptr + rows)
        lam_self = tl.where(touched, lam, 1.0)
        label = tl.where(touched, 1.0 - share * (1.0 - lam.to(tl.float64)), 1.0)
        kind = tl.where(touched, KIND_MIXUP, KIND_NONE)
        lam_partner = 1.0 - lam_self
    else:
        lam_self = zero
        label = tl.where(touched, (numel - changed).to(tl.float64) / numel, 1.0)
        kind = tl.where(touched, KIND_CUTMIX, KIND_NONE)
        lam_partner = tl.where(touched, 1.0, 0.0)
    store_rows(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, rows >= 0,
               partner, lam_self, lam_partner, zero, end_y, zero, end_x, label, kind)
    if LABELS != NO_LABELS:
        store_targets(labels_ptr, target_ptr, rows, rows >= 0, partner, label, num_classes, label_stride, on, off, keep,
                      LABELS, BLOCK_K)


class PatchLaunch:
    """The patch rows' launch for one (batch, feature map, mode, rate); ``__call__`` returns
    ``(partner, lam_self, lam_partner, box, label_lam, kind)``, the region weight and the targets."""

    def __init__(self, batch: int, planes: int, width: int, soft: bool, rate: float):
        self.batch, self.planes, self.width, self.soft, self.rate = batch, planes, width, soft, rate
        self.numel = planes * width
        self._bound: dict = {}

    def __call__(self, pooled, live, lam_self, partner, labels=None, num_classes: int = 0, smoothing: float = 0.0):
        batch, device = self.batch, pooled.device
        label_mode, stride, on, off, keep = label_arguments(labels, num_classes, smoothing)
        key = (label_mode, num_classes, stride, on, off)
        launch = self._bound.get(key)
        if launch is None:
            block = min(4096, 1 << max(0, self.numel - 1).bit_length())
            if len(self._bound) >= 8:
                self._bound.clear()
            launch = self._bound[key] = Bound(
                _patch_rows_kernel, (batch,), 12,
                (self.numel, self.planes, self.width, self.rate, num_classes, stride, on, off, keep),
                dict(SOFT=self.soft, LABELS=label_mode, BLOCK=block, BLOCK_K=block_k(num_classes, 1), num_warps=4))
        rows = (partner, torch.empty(batch, dtype=torch.float32, device=device),
                torch.empty(batch, dtype=torch.float32, device=device),
                torch.empty(batch, 1, 4, dtype=torch.int32, device=device),
                torch.empty(batch, dtype=torch.float32, device=device), torch.empty(batch, dtype=torch.int8, device=device))
        rho = torch.empty(batch, self.planes, self.width, dtype=torch.float32, device=device)
        targets = None if label_mode == NO_LABELS.value else torch.empty(batch, num_classes, dtype=torch.float32,
                                                                         device=device)
        if batch:
            launch(pooled, live, lam_self, partner, labels if labels is not None else pooled, rho, *rows[1:],
                   targets if targets is not None else pooled)
        return rows, rho, targets
