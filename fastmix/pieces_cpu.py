"""Piece plans on CPU tensors: :func:`fastmix.pieces.apply_pieces_reference`'s result, bit for bit,
in fewer passes over memory, chosen by one decision (:func:`walk`) on the plan's form:

- a *uniform* plan (every row's pieces the same boxes and weights, each field one row expanded to
  the batch: the batch-mode draws of :mod:`fastmix.piece_draws` are made so) is walked piece by
  piece over the whole batch at once (:func:`apply_uniform`): a piece is one ``index_select`` of
  its source box (translation), one gather (nearest) or four (bilinear) over its destination box
  only. Pieces of weight 1 that copy into disjoint boxes (RICAP, ResizeMix nearest) are written
  straight into the output; otherwise the boxes' weighted sum is accumulated as the reference
  does (started at -0.0, pieces in order, zero weights left out) and stored once;
- other plans: small samples batched (every piece over the whole batch with flat gathers, a few
  dozen ops whatever the batch size: a small batch is bound by the count of ops), large ones box
  by box (:func:`apply_pieces_boxes`: only each destination box is computed, which a large
  sample's memory traffic pays for).

The reading back of a plan's boxes (``tolist``) is free here: for a CPU tensor the host is the device.
"""
from __future__ import annotations

from typing import Optional

import torch

from .layout import Layout, describe
from .pieces import (PiecePlan, _bilinear, _every_piece_everywhere, _nearest, _term, _to_storage, check_for,
                     empty_out)
from .reference import compute_dtype, view4

BOX_WALK_ELEMENTS = 1 << 16   # samples this large walk box by box on CPU; smaller ones go batched


def apply_pieces_cpu(x: torch.Tensor, plan: PiecePlan) -> torch.Tensor:
    """:func:`fastmix.pieces.apply_pieces_reference`'s result, bit for bit, for CPU tensors (see
    the module docstring)."""
    return walk(x, plan, check_for(x, plan))


def is_uniform(plan: PiecePlan) -> bool:
    """Whether every row of ``plan`` has the same boxes and weights by construction (the fields
    are one row expanded: stride 0 over the batch), so one row describes them all."""
    return (plan.batch_size > 1 and plan.weight.stride(0) == 0 and plan.dst_box.stride(0) == 0
            and plan.src_box.stride(0) == 0)


def walk(x: torch.Tensor, plan: PiecePlan, lay: Layout) -> torch.Tensor:
    """:func:`apply_pieces_cpu` for a checked ``plan`` (the one decision: the plan's form, then
    the sample's size)."""
    if is_uniform(plan):
        return apply_uniform(x, plan, lay)
    if lay.sample_numel >= BOX_WALK_ELEMENTS:
        return apply_pieces_boxes(x, plan, lay)
    return _every_piece_everywhere(x, plan, lay, flat_gather=True)


# --------------------------------------------------------------------------------------------
# uniform plans: a piece at a time over the whole batch
# --------------------------------------------------------------------------------------------

def _as_output(result: torch.Tensor, x: torch.Tensor, lay: Layout) -> Optional[torch.Tensor]:
    """``result`` (contiguous ``(B, P, R, L)``) as the output tensor itself, with ``x``'s strides,
    where ``x``'s layout is that contiguous order (NCHW or NHWC dense, so ``empty_out(x)`` would
    have ``x``'s strides): no copy. None otherwise."""
    if (lay.stride_row, lay.stride_batch) == (lay.lanes, lay.sample_numel) and \
            (lay.planes == 1 or lay.stride_plane == lay.rows * lay.lanes):
        return result.as_strided(x.shape, x.stride())
    return None


class _Piece:
    """One piece of a uniform plan, in rows and lanes: its boxes, weight and the source rows."""

    def __init__(self, lay: Layout, src: torch.Tensor, weight: float, dst, box):
        ls = lay.lane_scale
        self.weight, self.src = weight, src
        self.dy0, self.dy1, self.dl0, self.dl1 = dst[0], dst[1], dst[2] * ls, dst[3] * ls
        self.dst, self.box = dst, box
        self.translation = (dst[1] - dst[0], dst[3] - dst[2]) == (box[1] - box[0], box[3] - box[2])

    @property
    def live(self) -> bool:
        return self.dy0 < self.dy1 and self.dl0 < self.dl1


def _value(x4: torch.Tensor, lay: Layout, piece: _Piece, resize: str, cdt: torch.dtype, out=None):
    """``(B, P, box rows, box lanes)``: the piece's mapped source pixels (the reference's tap
    arithmetic), in ``cdt``, or in ``x``'s dtype into ``out`` (the copies). The map is the same for
    every row of a uniform plan, so it is computed on the batch's own rows, separably (rows, then
    lanes), and the piece's source rows are gathered last, from the box-sized result."""
    ls = lay.lane_scale
    (dy0, dy1, dx0, dx1), (sy0, sy1, sx0, sx1) = piece.dst, piece.box
    if piece.translation:
        source = x4[:, :, sy0:sy1, sx0 * ls:sx1 * ls]
    else:
        d_rows = torch.arange(dy1 - dy0)
        lanes = torch.arange(dx0 * ls, dx1 * ls)
        d_cols, chan = lanes // ls - dx0, lanes % ls
        sizes = [torch.tensor(v) for v in (sy0, sy1 - sy0, dy1 - dy0, sx0, sx1 - sx0, dx1 - dx0)]
        if resize == "nearest":
            rows = _nearest(d_rows, *sizes[:3], lay.rows)
            source = x4.index_select(2, rows).index_select(3, _nearest(d_cols, *sizes[3:], lay.width) * ls + chan)
        else:
            y0, y1, ly0, ly1 = _bilinear(d_rows, *sizes[:3], lay.rows)
            x0, x1, lx0, lx1 = _bilinear(d_cols, *sizes[3:], lay.width)
            top_rows, bottom_rows = x4.index_select(2, y0), x4.index_select(2, y1)
            x0, x1 = x0 * ls + chan, x1 * ls + chan
            ly0, ly1 = (t.to(cdt)[:, None] for t in (ly0, ly1))
            lx0, lx1 = (t.to(cdt)[None, :] for t in (lx0, lx1))
            top = _weighted(lx0, top_rows.index_select(3, x0).to(cdt)) + _weighted(lx1, top_rows.index_select(3, x1).to(cdt))
            bottom = _weighted(lx0, bottom_rows.index_select(3, x0).to(cdt)) + \
                _weighted(lx1, bottom_rows.index_select(3, x1).to(cdt))
            source = _to_storage(_weighted(ly0, top) + _weighted(ly1, bottom), x4.dtype) if out is not None else \
                _weighted(ly0, top) + _weighted(ly1, bottom)
    if out is not None:
        return torch.index_select(source, 0, piece.src, out=out)
    return source.index_select(0, piece.src).to(cdt)


def _weighted(weight: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The reference's ``_term`` (zero weights give -0.0), as one multiply where no weight is zero."""
    return weight * value if bool((weight != 0).all()) else _term(weight, value)


def _disjoint(pieces) -> bool:
    for n, a in enumerate(pieces):
        for b in pieces[n + 1:]:
            if a.dy0 < b.dy1 and b.dy0 < a.dy1 and a.dl0 < b.dl1 and b.dl0 < a.dl1:
                return False
    return True


def apply_uniform(x: torch.Tensor, plan: PiecePlan, lay: Layout) -> torch.Tensor:
    """A uniform plan (:func:`is_uniform`) over the whole batch, a piece at a time (see the
    module docstring); bit for bit the reference."""
    cdt = compute_dtype(x.dtype)
    x4 = view4(x, lay)
    weights, dst, box = plan.weight[0].tolist(), plan.dst_box[0].tolist(), plan.src_box[0].tolist()
    pieces = [_Piece(lay, plan.src[:, j], weights[j], dst[j], box[j]) for j in range(plan.pieces)]
    live = [p for p in pieces if p.live]
    whole = lay.rows * lay.lanes
    covered = sum((p.dy1 - p.dy0) * (p.dl1 - p.dl0) for p in live)
    if all(p.weight == 1.0 for p in live) and _disjoint(live):
        # copies: each output byte written once from its source (a weight-1 sum is the value)
        out = empty_out(x)
        o4 = view4(out, describe(out, spatial=True))
        if covered < whole:
            o4.copy_(x4)
        for p in live:
            region = o4[:, :, p.dy0:p.dy1, p.dl0:p.dl1]
            _value(x4, lay, p, plan.resize, cdt, out=region)
        return out
    # a weighted sum over the bounding rectangle of the boxes, started at -0.0 where no piece has
    # added yet; zero weights add -0.0, which changes nothing, so they are skipped (but cover)
    ry0, ry1 = min(p.dy0 for p in live), max(p.dy1 for p in live)
    rl0, rl1 = min(p.dl0 for p in live), max(p.dl1 for p in live)
    acc = None
    mask = torch.zeros((ry1 - ry0, rl1 - rl0), dtype=torch.bool)
    for p in live:
        mask[p.dy0 - ry0:p.dy1 - ry0, p.dl0 - rl0:p.dl1 - rl0] = True
        if p.weight == 0.0:
            continue
        if p.translation and p.src.shape[0] and p.dst == p.box == [0, lay.rows, 0, lay.width] and \
                bool((p.src == torch.arange(lay.batch)).all()):
            # the batch itself (k-way Mixup's own piece): no gather; the product is a new tensor
            term = x4.to(cdt) * p.weight
        else:
            value = _value(x4, lay, p, plan.resize, cdt)
            term = value if p.weight == 1.0 else value.mul_(p.weight)     # a gather is a fresh tensor
        if acc is None and (p.dy0, p.dy1, p.dl0, p.dl1) == (ry0, ry1, rl0, rl1):
            acc = term                                                # -0.0 + term is term, bit for bit
            continue
        if acc is None:
            acc = torch.full((lay.batch, lay.planes, ry1 - ry0, rl1 - rl0), -0.0, dtype=cdt)
        region = acc[:, :, p.dy0 - ry0:p.dy1 - ry0, p.dl0 - rl0:p.dl1 - rl0]
        region.add_(term)
    if acc is None:
        acc = torch.full((lay.batch, lay.planes, ry1 - ry0, rl1 - rl0), -0.0, dtype=cdt)
    result = _to_storage(acc, x.dtype)
    if (ry1 - ry0) * (rl1 - rl0) == whole and bool(mask.all()):
        out = _as_output(result, x, lay)
        if out is not None:
            return out
        out = empty_out(x)
        view4(out, describe(out, spatial=True)).copy_(result)
        return out
    out = empty_out(x)
    o4 = view4(out, describe(out, spatial=True))
    o4.copy_(x4)
    rect = o4[:, :, ry0:ry1, rl0:rl1]
    rect.copy_(torch.where(mask, result, rect))
    return out


# --------------------------------------------------------------------------------------------
# large samples: box by box
# --------------------------------------------------------------------------------------------

def apply_pieces_boxes(x: torch.Tensor, plan: PiecePlan, lay: Optional[Layout] = None) -> torch.Tensor:
    """:func:`fastmix.pieces.apply_pieces_reference`'s result, bit for bit, computed sample by
    sample and piece by piece over each destination box only (the reference evaluates every piece
    over every pixel): for CPU tensors, where reading the plan back costs nothing. Each box's sum
    starts at -0.0 and adds ``weight * value`` in piece order with the reference's own tap arithmetic."""
    lay = check_for(x, plan) if lay is None else lay
    cdt = compute_dtype(x.dtype)
    out = empty_out(x)
    x4, o4 = view4(x, lay), view4(out, describe(out, spatial=True))
    o4.copy_(x4)
    ls = lay.lane_scale
    src, weight = plan.src.tolist(), plan.weight.tolist()
    dst_box, src_box = plan.dst_box.tolist(), plan.src_box.tolist()
    for i in range(lay.batch):
        live = [j for j in range(plan.pieces) if dst_box[i][j][0] < dst_box[i][j][1] and dst_box[i][j][2] < dst_box[i][j][3]]
        if not live:
            continue
        acc = torch.full((lay.planes, lay.rows, lay.lanes), -0.0, dtype=cdt)
        covered = torch.zeros((lay.rows, lay.lanes), dtype=torch.bool)
        for j in live:
            (dy0, dy1, dx0, dx1), (sy0, sy1, sx0, sx1) = dst_box[i][j], src_box[i][j]
            covered[dy0:dy1, dx0 * ls:dx1 * ls] = True
            w = torch.tensor(weight[i][j], dtype=cdt)
            if weight[i][j] == 0:
                continue                                          # adds -0.0: nothing changes
            s = x4[min(max(src[i][j], 0), lay.batch - 1)]
            d_rows = torch.arange(dy1 - dy0)
            lanes = torch.arange(dx0 * ls, dx1 * ls)
            d_cols, chan = lanes // ls - dx0, lanes % ls
            sizes = [torch.tensor(v) for v in (sy0, sy1 - sy0, dy1 - dy0, sx0, sx1 - sx0, dx1 - dx0)]

            def gather(ry, cx):
                return s[:, ry[:, None], cx * ls + chan].to(cdt)

            if plan.resize == "nearest":
                value = gather(_nearest(d_rows, *sizes[:3], lay.rows), _nearest(d_cols, *sizes[3:], lay.width))
            else:
                y0, y1, ly0, ly1 = _bilinear(d_rows, *sizes[:3], lay.rows)
                x0, x1, lx0, lx1 = _bilinear(d_cols, *sizes[3:], lay.width)
                ly0, ly1 = (t.to(cdt)[:, None] for t in (ly0, ly1))
                lx0, lx1 = (t.to(cdt)[None, :] for t in (lx0, lx1))
                top = _term(lx0, gather(y0, x0)) + _term(lx1, gather(y0, x1))
                bottom = _term(lx0, gather(y1, x0)) + _term(lx1, gather(y1, x1))
                value = _term(ly0, top) + _term(ly1, bottom)
            region = acc[:, dy0:dy1, dx0 * ls:dx1 * ls]
            region.copy_(region + w * value)
        o4[i] = torch.where(covered, _to_storage(acc, x.dtype), x4[i])
    return out
