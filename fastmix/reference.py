"""The specification of what a plan does to a tensor: the kernels' oracle and the portable fallback.

Element by element, for sample ``i`` with weights ``a = lam_self[i]``, ``b = lam_partner[i]``,
``c = 1 - a - b``::

    inside i's region:  out[i] = a * x[i] + b * x[partner[i]] + c * fill[i]
    outside it:         out[i] = x[i]                               (bit for bit: NaN, Inf, -0.0)

A term whose weight is zero is left out (so a NaN in a partner that is not drawn from does not
spread), and a copy (``b == 1``) is exact down to the sign of zero. 16-bit and uint8 tensors are blended in float32 (float64 in float64); uint8
results round half to even and clamp to [0, 255]. Integer masks are never blended: inside a
region they take the partner (``b != 0``), keep their value (``a != 0``) or take the fill.

The batch is walked in chunks of rows small enough to stay in cache. Every chunk of every
sample's partner is gathered before the chunk is written, so any permutation is safe in place,
and the only temporaries are a few chunks. The Triton kernels (``kernels/``) and the CPU fast
path (``fastmix/cpu.py``) compute the same thing faster; both are tested against this module.
Every function takes the launchers' arguments: ``(x, layout, args)``.
"""
from __future__ import annotations


import torch

from . import noise
from .layout import Layout
from .plan import PlanArgs

# Elements per chunk of the batch: the few chunk-sized temporaries of a step (2 MiB each in
# float32) stay in cache, and peak memory stays a small fraction of any large batch.
CHUNK_ELEMENTS = 1 << 19


def is_blended(dtype: torch.dtype) -> bool:
    """Floats and uint8 images are blended; other integer tensors (masks) are only copied or filled."""
    return dtype.is_floating_point or dtype == torch.uint8


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def view4(x: torch.Tensor, lay: Layout) -> torch.Tensor:
    """``x`` as ``(batch, planes, rows, lanes)`` (a view; see :mod:`fastmix.layout`)."""
    return x.as_strided((lay.batch, lay.planes, lay.rows, lay.lanes),
                        (lay.stride_batch, lay.stride_plane, lay.stride_row, 1), x.storage_offset())


def clipped_boxes(box: torch.Tensor, lay: Layout):
    """Boxes clipped to the tensor, in row and lane units: four ``(B, N, 1)`` int64 tensors."""
    y0, y1 = (box[..., k].clamp(0, lay.rows).long()[..., None] for k in (0, 1))
    x0, x1 = ((box[..., k].clamp(0, lay.width).long() * lay.lane_scale)[..., None] for k in (2, 3))
    return y0, y1, x0, x1


def region(boxes, rows: torch.Tensor, lanes: torch.Tensor) -> torch.Tensor:
    """``(B, 1, rows, lanes)`` bool: which elements of a chunk lie in their sample's region."""
    y0, y1, x0, x1 = boxes
    row_in = (rows >= y0) & (rows < y1)                        # (B, N, rows)
    lane_in = (lanes >= x0) & (lanes < x1)                     # (B, N, lanes)
    return (row_in[..., :, None] & lane_in[..., None, :]).any(1, keepdim=True)


def chunks(lay: Layout, extent=None, chunk_elements: int = CHUNK_ELEMENTS):
    """``(r0, r1, l0, l1)`` ranges of about ``chunk_elements`` per batch covering ``extent`` (rows
    ``[y0, y1)``, lanes ``[x0, x1)``; default the whole sample): rows, or lanes of one long row."""
    y0, y1, x0, x1 = extent or (0, lay.rows, 0, lay.lanes)
    per_row = lay.batch * lay.planes * (x1 - x0)
    if y1 - y0 > 1 or per_row <= chunk_elements:
        step = max(1, chunk_elements // max(per_row, 1))
        for r in range(y0, y1, step):
            yield r, min(r + step, y1), x0, x1
    else:
        step = max(1, chunk_elements // (lay.batch * lay.planes))
        for c in range(x0, x1, step):
            yield y0, y1, c, min(c + step, x1)


def mask_weight(mask: torch.Tensor, lay: Layout, rows: torch.Tensor, lanes: torch.Tensor) -> torch.Tensor:
    """``(B, 1, rows, lanes)``: a plan's per-pixel region weight at a chunk's elements (the mask is
    ``(B, H, W)``; a channels_last lane is pixel ``lane // channels``)."""
    return mask[:, None][:, :, rows][..., lanes // lay.lane_scale]


def _fill(args: PlanArgs, lay: Layout, rows, lanes, where: torch.Tensor, dtype) -> torch.Tensor:
    """The fill of each element of a chunk, broadcastable to ``(B, P, rows, lanes)``; noise is
    drawn only ``where`` it lands (Philox is ~100 tensor ops per element)."""
    if args.noise_seed is not None:
        shape = where.shape
        planes = torch.arange(lay.planes, device=rows.device).view(1, -1, 1, 1)
        element = lay.logical_index(planes, rows.view(1, 1, -1, 1), lanes.view(1, 1, 1, -1))
        sample = torch.arange(lay.batch, device=rows.device).view(-1, 1, 1, 1) * lay.sample_numel
        out = torch.zeros(shape, dtype=dtype, device=rows.device)
        out[where] = noise.normal(args.noise_seed.reshape(()), (sample + element).expand(shape)[where]).to(dtype)
        return out
    fill = args.fill.to(dtype)
    if fill.shape[1] == 1:
        return fill[:, :, None, None]
    if lay.channel_in_lane:
        return fill[:, lanes % lay.channels][:, None, None, :]
    channel = torch.arange(lay.planes, device=fill.device) // lay.planes_per_channel
    return fill[:, channel][:, :, None, None]


def _blend_terms(own, other, fill, a, b, c) -> torch.Tensor:
    """``a * own + b * other + c * fill`` in that order, leaving out zero-weight terms. An absent
    term adds -0.0, IEEE's exact additive identity (+0.0 would turn a copied -0.0 into +0.0)."""
    val = torch.where(a != 0, a * own, -0.0) + torch.where(b != 0, b * other, -0.0)
    if fill is not None:
        val = val + torch.where(c != 0, c * fill, -0.0)
    return val


def _apply(src: torch.Tensor, dst: torch.Tensor, lay: Layout, args: PlanArgs) -> None:
    """Write the plan's result for ``src`` into ``dst`` (which may be ``src``), chunk by chunk."""
    sv, dv = view4(src, lay), view4(dst, lay)
    boxes = clipped_boxes(args.box, lay)
    cdt = compute_dtype(src.dtype)
    shape = (lay.batch, 1, 1, 1)
    a, b = args.lam_self.view(shape).to(cdt), args.lam_partner.view(shape).to(cdt)
    c = 1.0 - a - b
    has_fill = args.fill is not None or args.noise_seed is not None
    for r0, r1, l0, l1 in chunks(lay):
        rows = torch.arange(r0, r1, device=src.device)
        lanes = torch.arange(l0, l1, device=src.device)
        own = sv[:, :, r0:r1, l0:l1]                                   # read B x chunk
        other = own.index_select(0, args.partner)                      # read B x chunk, before any write
        inside = region(boxes, rows, lanes)                            # (B, 1, rows, lanes)
        wa, wb, wc = a, b, c
        if args.mask is not None:                                      # rho: out = (1 - rho) x + rho blend
            rho = mask_weight(args.mask, lay, rows, lanes).to(cdt)
            inside = inside & (rho > 0)
            wa, wb, wc = (1.0 - rho) + rho * a, rho * b, rho * c
        if is_blended(src.dtype):
            filled = (inside & (wc != 0)).expand(own.shape) if has_fill else None
            fill = _fill(args, lay, rows, lanes, filled, cdt) if has_fill else None
            val = _blend_terms(own.to(cdt), other.to(cdt), fill, wa, wb, wc)
            if src.dtype == torch.uint8:
                val = val.round().clamp(0, 255)
            val = val.to(src.dtype)
        else:                                                          # masks: select, never blend
            fill = args.fill[:, :1].to(src.dtype).view(shape) if args.fill is not None else own
            val = torch.where(b != 0, other, torch.where(a != 0, own, fill))
            if args.mask is not None:                                  # a class map takes the larger share
                inside = inside & (rho >= 0.5)
        dv[:, :, r0:r1, l0:l1] = torch.where(inside, val, own)         # write B x chunk


def blend_(x: torch.Tensor, lay: Layout, args: PlanArgs) -> None:
    """Apply the plan to ``x`` in place (any permutation ``partner``)."""
    if lay.batch and lay.sample_numel:
        _apply(x, x, lay, args)


def blend(x: torch.Tensor, lay: Layout, args: PlanArgs) -> torch.Tensor:
    """Out of place: a new tensor in ``x``'s (dense) layout; ``x`` is not modified."""
    out = torch.empty_like(x)
    if lay.batch and lay.sample_numel:
        _apply(x, out, lay, args)
    return out


def blend_grad(grad: torch.Tensor, lay: Layout, args: PlanArgs) -> torch.Tensor:
    """Gradient of :func:`blend` w.r.t. ``x``: the transpose, each row gathering from the rows that drew from it.

    ``dx[j] = g[j] * (a_j inside j's region, 1 outside) + sum over i with partner[i] == j of
    b_i * g[i] inside i's region`` (the fill is a constant: it has no gradient).
    """
    out = torch.empty_like(grad)
    if not (lay.batch and lay.sample_numel):
        return out
    gv, ov = view4(grad, lay), view4(out, lay)
    boxes = clipped_boxes(args.box, lay)
    shape = (lay.batch, 1, 1, 1)
    a, b = args.lam_self.view(shape).to(grad.dtype), args.lam_partner.view(shape).to(grad.dtype)
    for r0, r1, l0, l1 in chunks(lay):
        rows, lanes = torch.arange(r0, r1, device=grad.device), torch.arange(l0, l1, device=grad.device)
        inside = region(boxes, rows, lanes)
        wa, wb = a, b
        if args.mask is not None:
            rho = mask_weight(args.mask, lay, rows, lanes).to(grad.dtype)
            inside = inside & (rho > 0)
            wa, wb = (1.0 - rho) + rho * a, rho * b
        g = gv[:, :, r0:r1, l0:l1]                                     # read B x chunk
        own = torch.where(inside, torch.where(wa != 0, wa * g, 0.0), g)
        sent = torch.where(inside & (wb != 0), wb * g, 0.0)
        ov[:, :, r0:r1, l0:l1] = own.index_add_(0, args.partner, sent)  # write B x chunk
    return out


def mix_targets(labels: torch.Tensor, partner: torch.Tensor, label_lam: torch.Tensor, num_classes: int,
                smoothing: float) -> torch.Tensor:
    """``label_lam * s(y) + (1 - label_lam) * s(y[partner])`` as ``(B, K)`` float32.

    ``s`` smooths with timm's values (off = smoothing / K, on = 1 - smoothing + off); soft
    ``(B, K)`` labels are smoothed as ``y * (1 - smoothing) + off``. A class index outside
    ``[0, K)`` is never used as an address: its row, and any row drawing from it with a
    non-zero weight, comes out NaN (the kernel does the same: ``kernels/targets.py``).
    """
    off = smoothing / num_classes
    lam = label_lam.float()[:, None]
    other = 1.0 - lam
    if labels.dim() == 2:
        target = labels.float() * (1.0 - smoothing) + off
        sent = target.index_select(0, partner)
        return torch.where(other != 0, lam * target + other * sent, lam * target)
    index = labels.long()[:, None]
    valid = (index >= 0) & (index < num_classes)
    one_hot = torch.zeros(labels.shape[0], num_classes, device=labels.device)
    one_hot.scatter_(1, torch.where(valid, index, 0), 1.0)
    target = torch.where(valid, one_hot * (1.0 - smoothing) + off, float("nan"))
    sent = target.index_select(0, partner)
    return torch.where(other != 0, lam * target + other * sent, lam * target)
