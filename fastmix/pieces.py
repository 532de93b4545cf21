"""Piece plans: several partners per sample, each pasting a (possibly resized) box of itself.

RICAP, k-way Dirichlet Mixup and ResizeMix need more than the one partner and one weight per
sample of a :class:`~fastmix.plan.Plan`. A :class:`PiecePlan` gives every sample ``i`` ``S``
*pieces*; piece ``j`` is a source row ``src[i, j]``, a weight ``weight[i, j]``, a destination
box and a source box (``[y0, y1, x0, x1]``, half-open, in pixels)::

    out[i, :, y, x] = sum over the pieces j whose destination box covers (y, x) of
                          weight[i, j] * x[src[i, j], :, sy, sx]     ((y, x) mapped into src_box)
    out[i, :, y, x] = x[i, :, y, x]       where no piece covers (y, x)   (bit for bit)

A source box of the destination's size is a translation; another size is a resize, by the plan's
``resize`` rule (both exact integer / float32 arithmetic, the same in every backend):

- ``"nearest"``: destination offset ``d`` of an ``out``-long box reads source offset
  ``floor(d * in / out)`` (PyTorch's ``interpolate(mode="nearest")`` rule, in exact integers);
- ``"bilinear"``: ``s = max((d + 0.5) * (in / out) - 0.5, 0)``, ``i0 = floor(s)``,
  ``i1 = min(i0 + 1, in - 1)``, weights ``1 - (s - i0)`` and ``s - i0`` per axis
  (``interpolate(mode="bilinear", align_corners=False)``); for equal sizes this is the translation.

Terms of zero weight are left out (a NaN nobody draws from does not spread) and the sum starts
at -0.0, so a weight-1 translation copies exactly. Floats are summed in float32 (float64 for
float64); uint8 results round half to even and clamp to [0, 255], as :mod:`fastmix.reference`.

Label pieces: ``label_row (B, L)`` and ``label_weight (B, L)``; the soft target of sample ``i``
is ``sum_l label_weight[i, l] * smoothed(label of label_row[i, l])``. A piece's label weight is
its exact pixel share, ``weight * (destination area) / (H * W)``, and the sample's own label gets
the share of pixels no piece covers. :func:`piece_plan` builds these for any pieces.

This module is the specification (:func:`apply_pieces_reference`) and the dispatch
(:func:`apply_pieces`; ``fastmix::apply_pieces`` in :mod:`fastmix.ops` is the same pass as a
``torch.library`` op): CUDA tensors run the one out-of-place Triton pass of ``kernels/pieces.py``
(each output byte written once, only the source bytes a pixel needs read); CPU tensors the same
arithmetic in :mod:`fastmix.pieces_cpu` (bit for bit the reference); a batch that requires grad
(and anything else) the reference, which is vectorised torch and differentiable.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from . import _checks, ops
from .layout import Layout, describe, spatial_size
from .reference import compute_dtype, view4

RESIZE_MODES = ("nearest", "bilinear")
MAX_KERNEL_SIDE = 46340    # kernels/pieces.py's MAX_SIDE: larger images take the reference
PIECE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8)


@dataclass(frozen=True, eq=False)
class PiecePlan:
    """One step's pieces for a batch of ``B`` samples (tensors on the batch's device).

    Attributes:
        src: ``(B, S)`` int64, the row each piece is cut from.
        weight: ``(B, S)`` float32, the piece's blend weight.
        dst_box: ``(B, S, 4)`` int32 ``[y0, y1, x0, x1]`` where the piece lands (empty: nowhere).
        src_box: ``(B, S, 4)`` int32, the box of ``src`` it is cut from (other size: resized).
        label_row: ``(B, L)`` int64, rows whose labels make up the target.
        label_weight: ``(B, L)`` float32, their exact shares.
        size: ``(H, W)`` the boxes are in.
        resize: ``"nearest"`` or ``"bilinear"``, how a box of another size is sampled.

    Build one with :func:`piece_plan` (checks it and derives the label pieces) or draw one with
    the samplers of :mod:`fastmix.family`; a plan built by hand is checked when applied.
    """

    src: torch.Tensor
    weight: torch.Tensor
    dst_box: torch.Tensor
    src_box: torch.Tensor
    label_row: torch.Tensor
    label_weight: torch.Tensor
    size: tuple[int, int]
    resize: str = "nearest"
    checked: bool = field(default=False, repr=False)   # values already validated (or drawn by a sampler)

    @classmethod
    def trusted(cls, src, weight, dst_box, src_box, label_row, label_weight, size, resize="nearest") -> "PiecePlan":
        """A checked plan that fastmix built (a sampler's), made without the frozen dataclass's
        per-field ``setattr`` (as :meth:`fastmix.plan.Plan.trusted`: every step makes one)."""
        plan = object.__new__(cls)
        object.__setattr__(plan, "__dict__", {
            "src": src, "weight": weight, "dst_box": dst_box, "src_box": src_box, "label_row": label_row,
            "label_weight": label_weight, "size": size, "resize": resize, "checked": True})
        return plan

    @property
    def batch_size(self) -> int:
        return self.src.shape[0]

    @property
    def pieces(self) -> int:
        return self.src.shape[1]

    @property
    def device(self) -> torch.device:
        return self.src.device

    def to(self, device) -> "PiecePlan":
        return replace(self, src=self.src.to(device), weight=self.weight.to(device), dst_box=self.dst_box.to(device),
                       src_box=self.src_box.to(device), label_row=self.label_row.to(device),
                       label_weight=self.label_weight.to(device))

    def describe(self) -> list[dict]:
        """One dict per sample (reads the plan back to the host: for logging, not the hot path)."""
        rows = []
        for i in range(self.batch_size):
            rows.append({
                "pieces": [dict(src=int(s), weight=float(w), dst=d, src_box=b) for s, w, d, b in
                           zip(self.src[i].tolist(), self.weight[i].tolist(), self.dst_box[i].tolist(),
                               self.src_box[i].tolist())],
                "labels": list(zip(self.label_row[i].tolist(), self.label_weight[i].tolist())),
            })
        return rows


# --------------------------------------------------------------------------------------------
# building and checking plans
# --------------------------------------------------------------------------------------------

def _box_area(box: torch.Tensor) -> torch.Tensor:
    return (box[..., 1] - box[..., 0]).clamp_min(0) * (box[..., 3] - box[..., 2]).clamp_min(0)


def covered_pixels(dst_box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B,)`` int64: pixels of each sample that at least one of its destination boxes covers
    (the union, counted on a ``(B, H, W)`` mask)."""
    height, width = size
    rows = torch.arange(height, device=dst_box.device)
    cols = torch.arange(width, device=dst_box.device)
    in_r = (rows >= dst_box[..., 0, None]) & (rows < dst_box[..., 1, None])          # (B, S, H)
    in_c = (cols >= dst_box[..., 2, None]) & (cols < dst_box[..., 3, None])          # (B, S, W)
    return (in_r[..., :, None] & in_c[..., None, :]).any(1).sum((1, 2))


def label_pieces(src: torch.Tensor, weight: torch.Tensor, dst_box: torch.Tensor, size: tuple[int, int],
                 covered: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(label_row, label_weight)``, ``(B, S + 1)``: each piece's exact share
    ``weight * area / (H * W)`` and, last, the sample's own share of uncovered pixels
    (``covered``: pixels covered per sample, computed from the boxes when not given)."""
    batch = src.shape[0]
    pixels = float(size[0] * size[1])
    if covered is None:
        covered = covered_pixels(dst_box, size)
    share = (weight.double() * _box_area(dst_box).double() / pixels).float()
    own = (1.0 - covered.double() / pixels).float()
    rows = torch.cat([src.long(), torch.arange(batch, device=src.device)[:, None]], 1)
    return rows, torch.cat([share, own[:, None]], 1)


def piece_plan(src, weight, dst_box, src_box, size, resize: str = "nearest") -> PiecePlan:
    """A checked :class:`PiecePlan` from pieces given by hand, with its label pieces derived
    (each piece's pixel share; the sample's own label for the uncovered pixels). Reads the
    tensors back to check them (a host sync): for user plans, not the samplers' hot path."""
    plan = PiecePlan(src=src, weight=weight, dst_box=dst_box, src_box=src_box,
                     label_row=torch.zeros(0, dtype=torch.int64), label_weight=torch.zeros(0), size=size,
                     resize=resize)
    _check_fields(plan, labels=False)
    _check_values(plan, labels=False)
    rows, weights = label_pieces(plan.src, plan.weight, plan.dst_box, plan.size)
    return replace(plan, label_row=rows, label_weight=weights, checked=True)


def _check_size(size) -> tuple[int, int]:
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(_checks.is_number(s) for s in size)):
        raise TypeError(f"size: expected (H, W), got {size!r}")
    return _checks.integer("size[0]", size[0], low=1), _checks.integer("size[1]", size[1], low=1)


def _tensor(name: str, t, shape: tuple, dtypes: tuple, device=None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{name}: dtype {t.dtype}, expected {' or '.join(str(d) for d in dtypes)}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: shape {tuple(t.shape)}, expected {shape}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: on {t.device}, but the plan's src is on {device}")


def _check_fields(plan: PiecePlan, labels: bool = True) -> None:
    """Types, shapes and devices (no host sync)."""
    if not isinstance(plan.src, torch.Tensor) or plan.src.dim() != 2:
        raise ValueError(f"src: expected a (B, S) int64 tensor, got "
                         f"{tuple(plan.src.shape) if isinstance(plan.src, torch.Tensor) else type(plan.src).__name__}")
    batch, pieces = plan.src.shape
    device = plan.src.device
    _tensor("src", plan.src, (batch, pieces), (torch.int64,))
    _tensor("weight", plan.weight, (batch, pieces), (torch.float32,), device)
    _tensor("dst_box", plan.dst_box, (batch, pieces, 4), (torch.int32,), device)
    _tensor("src_box", plan.src_box, (batch, pieces, 4), (torch.int32,), device)
    if labels:
        if not isinstance(plan.label_row, torch.Tensor) or plan.label_row.dim() != 2:
            raise ValueError("label_row: expected a (B, L) int64 tensor")
        _tensor("label_row", plan.label_row, (batch, plan.label_row.shape[1]), (torch.int64,), device)
        _tensor("label_weight", plan.label_weight, tuple(plan.label_row.shape), (torch.float32,), device)
    _check_size(plan.size)
    if plan.resize not in RESIZE_MODES:
        raise ValueError(f"resize: expected 'nearest' or 'bilinear', got {plan.resize!r}")


def _check_boxes(name: str, box: torch.Tensor, size: tuple[int, int]) -> None:
    height, width = size
    y0, y1, x0, x1 = box.unbind(-1)
    bad = (y0 < 0) | (y1 < y0) | (y1 > height) | (x0 < 0) | (x1 < x0) | (x1 > width)
    if bool(bad.any()):
        i, j = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{name}: box {box[i, j].tolist()} of sample {i}, piece {j} is not a box inside the "
                         f"{height}x{width} image ([y0, y1, x0, x1] with 0 <= y0 <= y1 <= H, 0 <= x0 <= x1 <= W)")


def _check_values(plan: PiecePlan, labels: bool = True) -> None:
    """Every index in range, every box inside the image, every weight finite (a host sync)."""
    batch = plan.batch_size
    if plan.src.numel() and bool(((plan.src < 0) | (plan.src >= batch)).any()):
        bad = plan.src[(plan.src < 0) | (plan.src >= batch)][0]
        raise ValueError(f"src: row {int(bad)} is outside the batch [0, {batch})")
    if not bool(torch.isfinite(plan.weight).all()):
        raise ValueError("weight: must be finite")
    size = _check_size(plan.size)
    _check_boxes("dst_box", plan.dst_box, size)
    _check_boxes("src_box", plan.src_box, size)
    empty_src = _box_area(plan.src_box) == 0
    if bool((empty_src & (_box_area(plan.dst_box) > 0)).any()):
        i, j = (int(v) for v in (empty_src & (_box_area(plan.dst_box) > 0)).nonzero()[0])
        raise ValueError(f"src_box: sample {i}, piece {j} lands in a non-empty box but its source box "
                         f"{plan.src_box[i, j].tolist()} is empty")
    if labels:
        rows = plan.label_row
        if rows.numel() and bool(((rows < 0) | (rows >= batch)).any()):
            raise ValueError(f"label_row: a row is outside the batch [0, {batch})")
        if not bool(torch.isfinite(plan.label_weight).all()):
            raise ValueError("label_weight: must be finite")


def check_for(x: torch.Tensor, plan: PiecePlan) -> Layout:
    """Check ``plan`` against the batch ``x`` (values too, unless the plan is already checked) and
    return ``x``'s layout; raises before anything is written."""
    if not isinstance(plan, PiecePlan):
        raise TypeError(f"plan: expected a PiecePlan, got {type(plan).__name__}")
    _checks.batch("x", x, dims=(3, 4, 5), dtypes=PIECE_DTYPES, writable=False)
    _check_fields(plan)
    if plan.batch_size != x.shape[0]:
        raise ValueError(f"plan: drawn for a batch of {plan.batch_size}, x has {x.shape[0]} samples")
    if plan.device != x.device:
        raise ValueError(f"plan: on {plan.device}, but x is on {x.device}")
    if tuple(plan.size) != spatial_size(x):
        raise ValueError(f"plan: drawn for {tuple(plan.size)} images, x is {spatial_size(x)}")
    if not plan.checked:
        _check_values(plan)
    lay = describe(x, spatial=True)
    if lay is None:
        raise ValueError("x: its strides have no plane/row/lane description; pass x.contiguous()")
    return lay


# --------------------------------------------------------------------------------------------
# the reference
# --------------------------------------------------------------------------------------------

def _nearest(d: torch.Tensor, start, length_in, length_out, limit: int) -> torch.Tensor:
    """Source index of destination offsets ``d`` (exact integers), clamped into the axis."""
    return (start + (d * length_in) // length_out.clamp_min(1)).clamp(0, limit - 1)


def _bilinear(d: torch.Tensor, start, length_in, length_out, limit: int):
    """``(i0, i1, l0, l1)`` of destination offsets ``d``: the two source indices and weights (one
    tap of weight 1 where both would be the same pixel, at the far edge)."""
    scale = length_in.float() / length_out.clamp_min(1).float()
    s = ((d.float() + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = s.floor()
    l1 = s - i0
    i0 = i0.long()
    one = i0 + 1 >= length_in                                 # the far edge: both taps are one pixel
    l1 = torch.where(one, 0.0, l1)
    l0 = torch.where(one, 1.0, 1.0 - l1)
    i1 = torch.minimum(i0 + 1, length_in - 1)
    return ((start + i0).clamp(0, limit - 1), (start + i1).clamp(0, limit - 1), l0, l1)


def _term(weight, value):
    """``weight * value``, or the additive identity -0.0 where the weight is zero."""
    return torch.where(weight != 0, weight * value, -0.0)


def _to_storage(val: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return val.round().clamp(0, 255).to(dtype)
    return val.to(dtype)


def empty_out(x: torch.Tensor) -> torch.Tensor:
    """The output tensor: ``x``'s memory format when it is dense, else contiguous."""
    out = torch.empty_like(x)
    if describe(out, spatial=True) is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    return out


def apply_pieces_reference(x: torch.Tensor, plan: PiecePlan) -> torch.Tensor:
    """The plan's result for ``x`` as a new tensor (the specification; see the module docstring)."""
    return _every_piece_everywhere(x, plan, check_for(x, plan), flat_gather=False)


def _every_piece_everywhere(x: torch.Tensor, plan: PiecePlan, lay: Layout, flat_gather: bool) -> torch.Tensor:
    """Every piece evaluated over every pixel of the batch and kept where its box covers. The
    source pixels come by advanced indexing (the specification, differentiable), or with
    ``flat_gather`` by one ``index_select`` of their storage offsets (the CPU path's batched walk:
    the same elements, the same arithmetic, several times faster)."""
    cdt = compute_dtype(x.dtype)
    x4 = view4(x, lay)
    batch, planes, rows, lanes = x4.shape
    dev = x.device
    r = torch.arange(rows, device=dev)
    lane = torch.arange(lanes, device=dev)
    col, chan = lane // lay.lane_scale, lane % lay.lane_scale
    p_idx = torch.arange(planes, device=dev)[None, :, None, None]
    acc = torch.full(x4.shape, -0.0, dtype=cdt, device=dev)
    if flat_gather:   # x's elements as one 1-d view of its storage, from its first element on
        span = 1 + sum((n - 1) * st for n, st in zip(x4.shape, x4.stride()))
        storage = x4.as_strided((span,), (1,))
    covered = torch.zeros((batch, 1, rows, lanes), dtype=torch.bool, device=dev)
    for j in range(plan.pieces):
        dy0, dy1, dx0, dx1 = (plan.dst_box[:, j, k].long()[:, None] for k in range(4))
        sy0, sy1, sx0, sx1 = (plan.src_box[:, j, k].long()[:, None] for k in range(4))
        cov = (((r >= dy0) & (r < dy1))[:, None, :, None] & ((col >= dx0) & (col < dx1))[:, None, None, :])
        covered |= cov
        src = plan.src[:, j].clamp(0, batch - 1)[:, None, None, None]
        w = plan.weight[:, j].to(cdt)[:, None, None, None]

        def gather(ry, cx):                                   # (B, rows), (B, lanes) -> (B, P, rows, lanes)
            lanes_at = (cx * lay.lane_scale + chan)[:, None, None, :]
            if not flat_gather:
                return x4[src, p_idx, ry[:, None, :, None], lanes_at].to(cdt)
            # small (B, rows) and (B, lanes) parts first: two full-size integer adds, not four
            at_rows = (src[:, :, 0, 0] * x4.stride(0) + ry * x4.stride(2))[:, None, :, None]
            offsets = (at_rows + lanes_at * x4.stride(3)) + p_idx * x4.stride(1)
            return storage.index_select(0, offsets.reshape(-1)).view(x4.shape).to(cdt)

        if plan.resize == "nearest":
            value = gather(_nearest(r - dy0, sy0, sy1 - sy0, dy1 - dy0, rows),
                           _nearest(col - dx0, sx0, sx1 - sx0, dx1 - dx0, lay.width))
        else:
            y0, y1, ly0, ly1 = _bilinear(r - dy0, sy0, sy1 - sy0, dy1 - dy0, rows)
            x0, x1, lx0, lx1 = _bilinear(col - dx0, sx0, sx1 - sx0, dx1 - dx0, lay.width)
            ly0, ly1 = (t.to(cdt)[:, None, :, None] for t in (ly0, ly1))
            lx0, lx1 = (t.to(cdt)[:, None, None, :] for t in (lx0, lx1))
            top = _term(lx0, gather(y0, x0)) + _term(lx1, gather(y0, x1))
            bottom = _term(lx0, gather(y1, x0)) + _term(lx1, gather(y1, x1))
            value = _term(ly0, top) + _term(ly1, bottom)
        # no zero weight in the piece: _term(w, value) is w * value (read on the host: CPU only)
        term = w * value if flat_gather and bool((w != 0).all()) else _term(w, value)
        acc = torch.where(cov, acc + term, acc)
    out = empty_out(x)
    view4(out, describe(out, spatial=True)).copy_(torch.where(covered, _to_storage(acc, x.dtype), x4))
    return out


# --------------------------------------------------------------------------------------------
# targets and dispatch
# --------------------------------------------------------------------------------------------

def pieces_targets(labels: torch.Tensor, plan: PiecePlan, num_classes: int, smoothing: float = 0.0,
                   validate: Optional[bool] = None) -> torch.Tensor:
    """Soft targets ``(B, num_classes)`` float32: each label piece's smoothed label (class
    indices one-hot with off = smoothing / K, on = 1 - smoothing + off, as Mixup; soft ``(B, K)``
    labels as ``y * (1 - smoothing) + off``) mixed by the label weights. No host sync: class
    indices are range-checked where ``validate`` says (default: on CPU tensors only, as
    everywhere in fastmix); unchecked, an index outside ``[0, K)`` makes its row NaN."""
    smoothing = _checks.number("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    num_classes = _checks.labels("labels", labels, plan.batch_size, num_classes, plan.device,
                                 _checks.default_validate(validate, labels.device))
    return targets_known(labels, plan, num_classes, smoothing)


def targets_known(labels: torch.Tensor, plan: PiecePlan, num_classes: int, smoothing: float) -> torch.Tensor:
    """:func:`pieces_targets` for labels and arguments already checked (the transforms' call)."""
    off = smoothing / num_classes
    if labels.dim() == 1:
        # one-hot by scatter (F.one_hot reads the labels' range back to the host: a sync on a GPU);
        # a class index outside [0, K) makes its row NaN, as fastmix.reference's targets
        labels = labels.long()
        valid = (labels >= 0) & (labels < num_classes)
        one_hot = torch.zeros(labels.shape[0], num_classes, device=labels.device).scatter_(
            1, labels.clamp(0, num_classes - 1)[:, None], 1.0)
        smoothed = torch.where(valid[:, None], one_hot * (1.0 - smoothing) + off, float("nan"))
    else:
        smoothed = labels.float() * (1.0 - smoothing) + off
    weight = plan.label_weight[..., None]
    # a zero-weight piece is left out (a NaN row it names does not spread)
    return torch.where(weight != 0, weight * smoothed[plan.label_row], 0.0).sum(1)


def apply_pieces(x: torch.Tensor, plan: PiecePlan) -> torch.Tensor:
    """Apply ``plan`` to ``x`` out of place: the Triton pass where :func:`fastmix.ops.backend_for`
    picks Triton (CUDA, or ``FASTMIX_BACKEND=triton`` under the interpreter) and no gradient is
    wanted and the image sides fit its int32 index arithmetic; :func:`fastmix.pieces_cpu.apply_pieces_cpu`
    for CPU tensors; else (and whenever a gradient is wanted) the reference (vectorised, differentiable)."""
    lay = check_for(x, plan)                  # once: the walks below take the checked layout
    if ops.grad_wanted(x):
        return _every_piece_everywhere(x, plan, lay, flat_gather=False)
    return run_checked(x, plan, lay, ops.backend_for(x))


def run_checked(x: torch.Tensor, plan: PiecePlan, lay: Layout, backend: str) -> torch.Tensor:
    """The pass of a checked ``plan`` on ``x`` (described by ``lay``) with ``backend``, no gradient."""
    if backend == "triton" and max(plan.size) <= MAX_KERNEL_SIDE:
        from .kernels import pieces as kernel
        return kernel.apply_checked(x, plan, lay)
    if backend == "cpu":
        from .pieces_cpu import walk
        return walk(x, plan, lay)
    return _every_piece_everywhere(x, plan, lay, flat_gather=False)


def run_fields(x: torch.Tensor, src: torch.Tensor, weight: torch.Tensor, dst_box: torch.Tensor,
               src_box: torch.Tensor, resize: str) -> torch.Tensor:
    """``fastmix::apply_pieces``'s implementation: the pieces of a plan fastmix checked (the op
    checks nothing; every backend clamps or bounds-checks its indices, so no input makes it touch
    memory outside its tensors)."""
    if x.numel() == 0:
        return empty_out(x)
    lay = describe(x, spatial=True)
    if lay is None:
        x = x.contiguous()
        lay = describe(x, spatial=True)
    plan = PiecePlan.trusted(src, weight, dst_box, src_box, src, weight, spatial_size(x), resize)
    return run_checked(x, plan, lay, ops.backend_for(x))


def apply_known(x: torch.Tensor, plan: PiecePlan, known) -> torch.Tensor:
    """The transforms' apply: ``x`` checked once by :func:`fastmix.known.batch` (its facts in
    ``known``) and a plan fastmix drew for it, so nothing is checked or described again. A batch
    that requires grad takes the differentiable reference; in plain eager mode the op's
    implementation is called directly (what the dispatcher would do, minus its layers), else the
    registered op (``torch.compile`` sees one opaque op with a fake implementation)."""
    if ops.grad_wanted(x):
        return apply_pieces_reference(x, plan)
    if ops._plain_eager(x):
        if known.boxed is None:
            if x.numel() == 0:
                return empty_out(x)
            raise ValueError("x: its strides have no plane/row/lane description; pass x.contiguous()")
        return run_checked(x, plan, known.boxed, known.backend)
    return torch.ops.fastmix.apply_pieces(x, plan.src, plan.weight, plan.dst_box, plan.src_box, plan.resize)
