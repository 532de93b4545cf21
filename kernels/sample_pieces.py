"""The piece samplers (RICAP, DirichletMixup, ResizeMix) as one Triton launch: a step's uniforms in,
its :class:`~fastmix.pieces.PiecePlan` (pieces and label pieces) and, given labels, its soft
targets out, so that a family step on a GPU is one ``torch.rand``, this launch and the piece pass.

The kernel computes, row by row and piece by piece, what ``fastmix/piece_draws.py`` specifies
(the same float64 arithmetic in the same order: Marsaglia-Tsang Gammas of ``kernels/draws.py``,
round half to even by the 1.5 * 2**52 trick, integer uniforms as ``min(floor(u (n + 1)), n)``, the
partner permutations ``(a i + c) mod B``), so that under the interpreter its plans equal the
specification's on the same uniforms: sources, boxes and label rows exactly, weights to float32
rounding (the Dirichlet softmax sums in another order).

A program owns ``BLOCK_B`` rows x ``SP`` pieces (``SP`` the pieces rounded up to a power of two;
``BLOCK_B * SP = 128`` values a program). With labels, a program owns one row and grid axis 1
splits the classes: every program recomputes its row's plan and the programs of class block 0
store it (``kernels/sample.py``'s layout).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmix import draws
from fastmix.piece_draws import RESIZE_PROB, RESIZE_TAU, RESIZE_X, RESIZE_Y, RICAP_CROP, RICAP_PROB, units

from .draws import bits, f64, log_gamma, uniform
from .launch import Bound
from .targets import smoothing_terms
from .sample import INDEX_LABELS, NO_LABELS, _stream_of, label_output
from .walk import ceil_div, pow2_at_least

G = tl.constexpr(draws.GAMMA_UNIFORMS)
METHOD_RICAP, METHOD_DIRICHLET, METHOD_RESIZEMIX = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
METHODS = {"RicapSpec": METHOD_RICAP.value, "DirichletSpec": METHOD_DIRICHLET.value,
           "ResizeMixSpec": METHOD_RESIZEMIX.value}
_RICAP_PROB, _RICAP_CROP = tl.constexpr(RICAP_PROB), tl.constexpr(RICAP_CROP)
_TAU, _Y, _X, _PROB = tl.constexpr(RESIZE_TAU), tl.constexpr(RESIZE_Y), tl.constexpr(RESIZE_X), tl.constexpr(RESIZE_PROB)


@triton.jit
def _round_half_even(v):
    return (v + 6755399441055744.0) - 6755399441055744.0


@triton.jit
def _uniform_int(u, high):
    """``piece_draws._uniform_int``: an integer uniform on ``0..high`` (float64 values)."""
    return tl.minimum(tl.floor(u * (high + 1.0)), high)


@triton.jit
def _partner(u_ptr, mult_ptr, tail, slot, valid, rows, batch, n_mult, offset):
    """Slot ``slot``'s partner of ``rows``: ``(a rows + c) mod batch`` from the slot's two uniforms
    (``piece_draws._partners``), int64."""
    ua = uniform(u_ptr + tail + 2 * slot, valid, offset)
    uc = uniform(u_ptr + tail + 2 * slot + 1, valid, offset)
    m = tl.minimum(tl.floor(ua * n_mult), n_mult - 1.0).to(tl.int32)
    a = tl.load(mult_ptr + tl.maximum(m, 0), mask=valid, other=1)
    c = tl.minimum(tl.floor(uc * batch), batch - 1.0).to(tl.int64)
    return (a.to(tl.int64) * rows + c) % batch


@triton.jit
def _pieces_plan_kernel(
    u_ptr, labels_ptr, mult_ptr,
    src_ptr, weight_ptr, dbox_ptr, sbox_ptr, label_row_ptr, label_weight_ptr, target_ptr,
    batch, height, width, tail, n_mult,           # tail: where the partner slots' uniforms start
    param_a, param_b, prob, offset,               # float64 bits: beta / alpha / scope, prob, rank offset
    num_classes, label_stride, on, off, keep,     # targets: one-hot on/off, soft labels y * keep + off
    METHOD: tl.constexpr, BATCH_MODE: tl.constexpr, UNIT: tl.constexpr, PIECES: tl.constexpr, SP: tl.constexpr,
    LABELS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # -- this program's rows and pieces --
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    in_batch = rows < batch
    rows64 = rows.to(tl.int64)
    rows2 = rows64[:, None]
    j = tl.arange(0, SP)[None, :]
    piece_ok = j < PIECES
    mask2 = in_batch[:, None] & piece_ok
    heights = tl.cast(height, tl.float64)
    widths = tl.cast(width, tl.float64)
    offset = f64(offset)
    if BATCH_MODE:
        unit = rows64 * 0
    else:
        unit = rows64
    base = u_ptr + unit * UNIT
    zero = tl.zeros([BLOCK_B, SP], tl.float64)
    # -- the plan: every piece's source, weight, boxes; the pixels the pieces cover --
    if METHOD == METHOD_RICAP:
        beta = f64(param_a) + tl.zeros([BLOCK_B], tl.float64)     # a tensor: log_gamma's tries are per row
        fy = 1.0 / (1.0 + tl.exp(log_gamma(base + G, in_batch, offset, beta) - log_gamma(base, in_batch, offset, beta)))
        fx = 1.0 / (1.0 + tl.exp(log_gamma(base + 3 * G, in_batch, offset, beta)
                                 - log_gamma(base + 2 * G, in_batch, offset, beta)))
        h = tl.minimum(tl.maximum(_round_half_even(fy * heights), 0.0), heights)[:, None]
        w = tl.minimum(tl.maximum(_round_half_even(fx * widths), 0.0), widths)[:, None]
        selected = uniform(base + _RICAP_PROB, in_batch, offset) < f64(prob)
        bottom = j >= 2                                   # quadrants: top-left, top-right, bottom-left, bottom-right
        right = (j % 2) == 1
        dy0 = tl.where(bottom, h, zero)
        dy1 = tl.where(bottom, heights, h + zero)
        dx0 = tl.where(right, w, zero)
        dx1 = tl.where(right, widths, w + zero)
        crop = base[:, None] + _RICAP_CROP + 2 * j
        sy0 = _uniform_int(uniform(crop, mask2, offset), heights - (dy1 - dy0))
        sx0 = _uniform_int(uniform(crop + 1, mask2, offset), widths - (dx1 - dx0))
        sy1 = sy0 + (dy1 - dy0)
        sx1 = sx0 + (dx1 - dx0)
        weight = zero + 1.0
        src = _partner(u_ptr, mult_ptr, tail, j, piece_ok, rows2, batch, n_mult, offset)
        covered = tl.where(selected, heights * widths, 0.0)
    elif METHOD == METHOD_DIRICHLET:
        alpha = f64(param_a) + zero
        log_g = log_gamma(base[:, None] + j * G, mask2, offset, alpha)
        log_g = tl.where(piece_ok, log_g, float("-inf"))
        e = tl.exp(log_g - tl.max(log_g, 1)[:, None])
        e = tl.where(piece_ok, e, 0.0)
        weight = e / tl.sum(e, 1)[:, None]                # G_j / sum G: Dirichlet(alpha 1_k)
        selected = uniform(base + PIECES * G, in_batch, offset) < f64(prob)
        dy0 = zero
        dy1 = zero + heights
        dx0 = zero
        dx1 = zero + widths
        sy0, sy1, sx0, sx1 = dy0, dy1, dx0, dx1
        slot = tl.maximum(j - 1, 0)
        partner = _partner(u_ptr, mult_ptr, tail, slot, piece_ok & (j >= 1), rows2, batch, n_mult, offset)
        src = tl.where(j == 0, rows2, partner)
        covered = tl.where(selected, heights * widths, 0.0)
    else:
        lo = f64(param_a)
        hi = f64(param_b)
        tau = lo + (hi - lo) * uniform(base + _TAU, in_batch, offset)
        bh = tl.minimum(tl.maximum(_round_half_even(tau * heights), 0.0), heights)
        bw = tl.minimum(tl.maximum(_round_half_even(tau * widths), 0.0), widths)
        y0 = _uniform_int(uniform(base + _Y, in_batch, offset), heights - bh)
        x0 = _uniform_int(uniform(base + _X, in_batch, offset), widths - bw)
        selected = uniform(base + _PROB, in_batch, offset) < f64(prob)
        dy0 = zero + y0[:, None]
        dy1 = zero + (y0 + bh)[:, None]
        dx0 = zero + x0[:, None]
        dx1 = zero + (x0 + bw)[:, None]
        sy0 = zero
        sy1 = zero + heights
        sx0 = zero
        sx1 = zero + widths
        weight = zero + 1.0
        src = _partner(u_ptr, mult_ptr, tail, j, piece_ok, rows2, batch, n_mult, offset)
        covered = tl.where(selected, bh * bw, 0.0)
    # -- unselected rows: no piece lands anywhere; the label pieces' exact shares --
    live = selected[:, None] & piece_ok
    dy0 = tl.where(live, dy0, 0.0)
    dy1 = tl.where(live, dy1, 0.0)
    dx0 = tl.where(live, dx0, 0.0)
    dx1 = tl.where(live, dx1, 0.0)
    weight32 = weight.to(tl.float32)
    pixels = heights * widths
    share = ((weight32.to(tl.float64) * ((dy1 - dy0) * (dx1 - dx0))) / pixels).to(tl.float32)
    share = tl.where(piece_ok, share, 0.0)
    own = (1.0 - covered / pixels).to(tl.float32)
    if tl.program_id(1) == 0:
        piece = rows2 * PIECES + j
        tl.store(src_ptr + piece, src, mask=mask2)
        tl.store(weight_ptr + piece, weight32, mask=mask2)
        tl.store(dbox_ptr + piece * 4, dy0.to(tl.int32), mask=mask2)
        tl.store(dbox_ptr + piece * 4 + 1, dy1.to(tl.int32), mask=mask2)
        tl.store(dbox_ptr + piece * 4 + 2, dx0.to(tl.int32), mask=mask2)
        tl.store(dbox_ptr + piece * 4 + 3, dx1.to(tl.int32), mask=mask2)
        tl.store(sbox_ptr + piece * 4, sy0.to(tl.int32), mask=mask2)
        tl.store(sbox_ptr + piece * 4 + 1, sy1.to(tl.int32), mask=mask2)
        tl.store(sbox_ptr + piece * 4 + 2, sx0.to(tl.int32), mask=mask2)
        tl.store(sbox_ptr + piece * 4 + 3, sx1.to(tl.int32), mask=mask2)
        label = rows2 * (PIECES + 1) + j
        tl.store(label_row_ptr + label, src, mask=mask2)
        tl.store(label_weight_ptr + label, share, mask=mask2)
        tl.store(label_row_ptr + rows64 * (PIECES + 1) + PIECES, rows64, mask=in_batch)
        tl.store(label_weight_ptr + rows64 * (PIECES + 1) + PIECES, own, mask=in_batch)
    # -- the soft targets of these rows: sum of the label pieces' smoothed labels --
    if LABELS != NO_LABELS:
        cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        cols3 = cols[None, None, :]
        in_k = cols < num_classes
        share3 = share[:, :, None]
        if LABELS == INDEX_LABELS:
            piece_class = tl.load(labels_ptr + src, mask=mask2, other=0)[:, :, None]
            hot = tl.where(cols3 == piece_class, on, off)
            hot = tl.where((piece_class >= 0) & (piece_class < num_classes), hot, float("nan"))
            own_class = tl.load(labels_ptr + rows64, mask=in_batch, other=0)[:, None]
            own_hot = tl.where(cols[None, :] == own_class, on, off)
            own_hot = tl.where((own_class >= 0) & (own_class < num_classes), own_hot, float("nan"))
        else:
            need = mask2[:, :, None] & (share3 != 0.0) & in_k[None, None, :]
            hot = tl.load(labels_ptr + src[:, :, None] * label_stride + cols3, mask=need, other=0.0)
            hot = hot.to(tl.float32) * keep + off
            own_hot = tl.load(labels_ptr + rows2 * label_stride + cols[None, :],
                              mask=in_batch[:, None] & in_k[None, :] & (own[:, None] != 0.0), other=0.0)
            own_hot = own_hot.to(tl.float32) * keep + off
        # a zero-weight label piece is left out (a NaN row it names does not spread)
        val = tl.sum(tl.where(share3 != 0.0, share3 * hot, 0.0), 1)
        val = val + tl.where(own[:, None] != 0.0, own[:, None] * own_hot, 0.0)
        tl.store(target_ptr + rows2 * num_classes + cols[None, :], val, mask=in_batch[:, None] & in_k[None, :])


# --------------------------------------------------------------------------------------------
# the launcher
# --------------------------------------------------------------------------------------------

VALUES_PER_PROGRAM = 128    # rows x pieces a program draws when it writes no targets
TARGET_TILE = 4096          # pieces x classes a program holds when it writes targets


class PieceSampler:
    """The sampler launch of one piece spec (``fastmix.piece_draws``) for one (batch, size):
    ``(PiecePlan, targets or None)`` from a step's uniforms ``u``, in one launch; ``labels`` (class
    indices ``(B,)`` or soft ``(B, K)``, already checked) also get their soft targets in it. The
    launch's grid, scalars and constexprs are derived once per (offset, labels' kind, classes,
    smoothing, label stride) and bound (``kernels/launch.py``). ``table``: the multipliers coprime
    to the batch (``piece_draws.multipliers``), on the device, made once by the caller."""

    def __init__(self, spec, batch: int, size, table: torch.Tensor):
        self.spec, self.batch, self.size, self.table = spec, batch, size, table
        self.method = METHODS[type(spec).__name__]
        self.pieces = spec.pieces
        self.sp = pow2_at_least(self.pieces)
        self.tail = units(spec.mode, batch) * spec.unit
        if self.method == METHOD_RESIZEMIX.value:
            self.params = (bits(spec.scope[0]), bits(spec.scope[1]))
        else:
            self.params = (bits(spec.beta if self.method == METHOD_RICAP.value else spec.alpha), 0)
        self._bound: dict = {}
        self.kept: dict = {}

    def _rows(self, device, reuse: bool):
        """The plan's six fields, kept per device and stream when the plan lives only for the
        caller's step (as ``kernels/sample.py``'s ``_Rows``), else new."""
        key = (device, _stream_of(device))
        rows = self.kept.get(key) if reuse else None
        if rows is None:
            b, s = self.batch, self.pieces
            rows = (torch.empty(b, s, dtype=torch.int64, device=device), torch.empty(b, s, device=device),
                    torch.empty(b, s, 4, dtype=torch.int32, device=device),
                    torch.empty(b, s, 4, dtype=torch.int32, device=device),
                    torch.empty(b, s + 1, dtype=torch.int64, device=device), torch.empty(b, s + 1, device=device))
            if reuse:
                self.kept[key] = rows
        return rows

    def _launch(self, offset: float, label_mode: int, num_classes: int, smoothing: float, label_stride: int) -> Bound:
        spec, batch, sp = self.spec, self.batch, self.sp
        if label_mode == NO_LABELS.value:
            block_b, block_k = VALUES_PER_PROGRAM // sp, 1
            grid = (ceil_div(batch, block_b), 1)
        else:
            block_b, block_k = 1, max(1, min(1024, pow2_at_least(num_classes), TARGET_TILE // sp))
            grid = (batch, ceil_div(num_classes, block_k))
        height, width = self.size
        scalars = (batch, height, width, self.tail, self.table.shape[0], *self.params, bits(spec.prob), bits(offset),
                   num_classes, label_stride, *smoothing_terms(smoothing, num_classes))
        meta = dict(METHOD=self.method, BATCH_MODE=spec.mode == "batch", UNIT=spec.unit, PIECES=self.pieces, SP=sp,
                    LABELS=label_mode, BLOCK_B=block_b, BLOCK_K=block_k, num_warps=4)
        return Bound(_pieces_plan_kernel, grid, 10, scalars, meta)

    def __call__(self, u: torch.Tensor, offset: float, labels, num_classes: int, smoothing: float,
                 reuse: bool = False):
        from fastmix.pieces import PiecePlan

        batch = self.batch
        rows = self._rows(u.device, reuse)
        label_mode, targets, label_stride = label_output(labels, batch, num_classes, u.device)
        plan = PiecePlan.trusted(*rows, self.size, self.spec.resize)
        if batch == 0:
            return plan, targets
        key = (offset, label_mode, num_classes, smoothing, label_stride)
        launch = self._bound.get(key)
        if launch is None:
            if len(self._bound) >= 8:
                self._bound.clear()
            launch = self._bound[key] = self._launch(offset, label_mode, num_classes, smoothing, label_stride)
        launch(u, u if labels is None else labels, self.table, *rows, rows[1] if targets is None else targets)
        return plan, targets
