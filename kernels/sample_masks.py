"""FMix's and Manifold Mixup's samplers as Triton kernels, and the row helpers SaliencyMix's share.

A step of FMix on a GPU is five launches (six with soft edges)::

    torch.rand                      the step's uniforms (fastmix/family_draws.py lays them out)
    _fmix_sample_kernel             lam, prob, partner, the plan rows, the blend's cycle table, the
                                    soft targets, and the masks' complex Fourier coefficients
    torch.fft.irfft2                the low-pass noise fields, batched
    _fmix_select_kernel             each row's region weight: the top round(lam H W) pixels of its
                                    field, exactly (a radix select), without a sort
      (soft edges: torch.sort + _fmix_ramp_kernel, which needs every rank of the edge band)
    the blend                       kernels/blend.py

Every kernel computes what ``fastmix/family_draws.py`` and ``fastmix/family_masks.py`` specify, in
the same float64 arithmetic and order, and is tested equal to it on the same uniforms under the
interpreter (``tests/test_masks_sampling.py``): partners, boxes, counts and binary masks exactly,
weights to float32 rounding.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmix import family_draws
from fastmix.plan import CUTMIX, MIXUP, NONE

from .draws import bits, cos_2pi, f64, log_gamma, uniform
from .sample import INDEX_LABELS, NO_LABELS, block_k, label_arguments
from .launch import Bound
from .targets import _one_hot
from .walk import SEGMENT, ceil_div, pow2_at_least

G = tl.constexpr(family_draws.G)
UNIT = tl.constexpr(family_draws.UNIT)
U_PROB = tl.constexpr(family_draws.U_PROB)
PAIR_PERM, PAIR_FLIP, PAIR_ROLL = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
PAIRINGS = {"perm": 0, "flip": 1, "roll": 2}
ROWS_FMIX, ROWS_MIXUP = tl.constexpr(0), tl.constexpr(1)      # what a row of the plan is
KIND_NONE, KIND_MIXUP, KIND_CUTMIX = tl.constexpr(NONE), tl.constexpr(MIXUP), tl.constexpr(CUTMIX)
FULL_END = tl.constexpr(2**30)                                  # fastmix.layout.FULL


# --------------------------------------------------------------------------------------------
# row helpers: a unit's draw, the partner rule, its cycle table, the targets
# --------------------------------------------------------------------------------------------

@triton.jit
def unit_draw(u_ptr, unit, mask, offset, alpha, prob):
    """``family_draws.unit_draws`` for ``unit``: (lam on the 2**-24 grid, float64; selected)."""
    base = u_ptr + unit.to(tl.int64) * UNIT
    alpha = unit.to(tl.float64) * 0.0 + alpha        # one per row, as log_gamma's tries expect
    lam = 1.0 / (1.0 + tl.exp(log_gamma(base + G, mask, offset, alpha) - log_gamma(base, mask, offset, alpha)))
    lam = tl.floor(tl.minimum(tl.maximum(lam, 0.0), 1.0) * 16777216.0 + 0.5) / 16777216.0
    return lam, uniform(base + U_PROB, mask, offset) < prob


@triton.jit
def rotation(u_ptr, units, batch, offset):
    """``family_draws.rotation``: s uniform on 1 .. B-1 (int64; 0 for B < 2)."""
    v = uniform(u_ptr + units * UNIT, batch > 1, offset)
    s = 1.0 + tl.minimum(tl.floor(v * (batch - 1)), batch - 2.0)
    return tl.where(batch > 1, s, 0.0).to(tl.int64)


@triton.jit
def partner_of(rows, batch, shift, PAIRING: tl.constexpr):
    """``family_draws.partners``: (i + s) mod B, flip B-1-i, roll i-1 (int64)."""
    rows = rows.to(tl.int64)
    if PAIRING == PAIR_PERM:
        return (rows + shift) % tl.maximum(batch, 1)
    elif PAIRING == PAIR_FLIP:
        return batch - 1 - rows
    else:
        return (rows + batch - 1) % tl.maximum(batch, 1)


@triton.jit
def mixed_rows(u_ptr, rows, in_rows, batch, shift, offset, alpha, prob, PAIRING: tl.constexpr, ELEM: tl.constexpr):
    """A block of plan rows' draw: (lam, partner, live), ``live`` where the row is selected and
    not its own partner; per row in elem mode, unit 0's for every row in batch mode."""
    if ELEM:
        unit = rows
    else:
        unit = rows * 0
    lam, selected = unit_draw(u_ptr, unit, in_rows, offset, alpha, prob)
    partner = partner_of(rows, batch, shift, PAIRING)
    return lam, partner, selected & (partner != rows)


@triton.jit
def row_of_partner(image, batch, shift, PAIRING: tl.constexpr):
    """The row whose partner is ``image``: the partner rule's inverse, in closed form."""
    if PAIRING == PAIR_PERM:
        return (image - shift + batch) % tl.maximum(batch, 1)
    elif PAIRING == PAIR_FLIP:
        return batch - 1 - image
    else:
        return (image + 1) % tl.maximum(batch, 1)


@triton.jit
def store_rotation_cycles(walk_ptr, start_ptr, seg_ptr, j, batch, shift):
    """Entries ``j`` (0 .. B) of ``partners.cycles_of`` and ``Cycles.segments`` for the rotation by
    ``shift``, in closed form: ``g = gcd(s, B)`` cycles, cycle ``c`` walking ``c, c + s, ...`` (its
    head ``c`` is its smallest row, as pointer jumping orders them), each cut into ``S`` segments
    of ``SEGMENT``; with ``S > 1`` every segment hands its first row to the one before it."""
    a = tl.cast(batch, tl.int64)          # the loop carries int64 (shift is)
    b = tl.cast(shift, tl.int64)
    while b != 0:
        a, b = b, a % b
    length = batch // tl.maximum(a, 1)
    per = (length + SEGMENT - 1) // SEGMENT
    count = a * per
    in_walk = j < batch
    tl.store(walk_ptr + j, ((j // length + (j % length) * shift) % batch).to(tl.int32), mask=in_walk)
    tl.store(start_ptr + j, tl.where(j < a, j * length, batch).to(tl.int32), mask=j <= batch)
    valid = j < count
    cycle = j // per
    t = j % per
    closes = t == per - 1
    start = tl.where(valid, cycle * length + t * SEGMENT, batch)
    nxt = tl.where(valid, tl.where(closes, cycle * length, cycle * length + (t + 1) * SEGMENT), batch)
    after = tl.where(valid, tl.where(closes, cycle * per, j + 1), j)
    slot = tl.where(j == batch, batch, tl.where(valid & (after != j), j, 0))
    stride = batch + 1
    last = j <= batch
    tl.store(seg_ptr + j, start.to(tl.int32), mask=last)
    tl.store(seg_ptr + stride + j, nxt.to(tl.int32), mask=last)
    tl.store(seg_ptr + 2 * stride + j, after.to(tl.int32), mask=last)
    tl.store(seg_ptr + 3 * stride + j, slot.to(tl.int32), mask=last)


@triton.jit
def store_targets(labels_ptr, target_ptr, rows, in_batch, partner, label, num_classes, label_stride, on, off, keep,
                  LABELS: tl.constexpr, BLOCK_K: tl.constexpr):
    """``kernels/targets.py``'s soft targets of ``rows``, all classes in blocks of ``BLOCK_K``."""
    lam = label.to(tl.float32)[:, None]
    other_w = 1.0 - lam
    rows64 = rows.to(tl.int64)
    for k0 in range(0, num_classes, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        tile = in_batch[:, None] & (cols < num_classes)[None, :]
        if LABELS == INDEX_LABELS:
            own = _one_hot(tl.load(labels_ptr + rows64, mask=in_batch, other=0)[:, None], cols[None, :],
                           num_classes, on, off)
            other = _one_hot(tl.load(labels_ptr + partner, mask=in_batch, other=0)[:, None], cols[None, :],
                             num_classes, on, off)
        else:
            own = tl.load(labels_ptr + rows64[:, None] * label_stride + cols[None, :], mask=tile)
            own = own.to(tl.float32) * keep + off
            other = tl.load(labels_ptr + partner[:, None] * label_stride + cols[None, :],
                            mask=tl.where(other_w != 0.0, tile, False))
            other = other.to(tl.float32) * keep + off
        val = lam * own + tl.where(other_w != 0.0, other_w * other, 0.0)
        tl.store(target_ptr + rows64[:, None] * num_classes + cols[None, :], val, mask=tile)


@triton.jit
def store_rows(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, mask,
               partner, lam_self, lam_partner, y0, y1, x0, x1, label, kind):
    """One box per row and the rest of the row (``kernels/sample.py``'s layout)."""
    box = box_ptr + rows.to(tl.int64) * 4
    tl.store(box, y0.to(tl.int32), mask=mask)
    tl.store(box + 1, y1.to(tl.int32), mask=mask)
    tl.store(box + 2, x0.to(tl.int32), mask=mask)
    tl.store(box + 3, x1.to(tl.int32), mask=mask)
    tl.store(partner_ptr + rows, partner, mask=mask)
    tl.store(lam_self_ptr + rows, lam_self.to(tl.float32), mask=mask)
    tl.store(lam_partner_ptr + rows, lam_partner.to(tl.float32), mask=mask)
    tl.store(label_lam_ptr + rows, label.to(tl.float32), mask=mask)
    tl.store(kind_ptr + rows, kind.to(tl.int8), mask=mask)


@triton.jit
def order_key(value):
    """An int64 in [0, 2**32] ordered as the float32 ``value`` s are: -0.0 as 0.0 (torch's sort and
    argmax call them equal), NaN above everything (torch's argmax and descending sort put it first)."""
    raw = value.to(tl.int32, bitcast=True).to(tl.int64)
    raw = tl.where(value == 0.0, 0, raw)
    key = tl.where(raw >= 0, raw + 2147483648, -1 - raw)     # negative: 2**31 - 1 - (raw + 2**31)
    return tl.where(value != value, 4294967296, key)


# --------------------------------------------------------------------------------------------
# the samplers
# --------------------------------------------------------------------------------------------

@triton.jit
def _rows_sample_kernel(
    u_ptr, labels_ptr, scale_ptr,
    partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr,
    walk_ptr, start_ptr, seg_ptr, count_ptr, spectrum_ptr, target_ptr,
    batch, units, height, width, per_mask, coefficients, alpha, prob, offset, max_soft,
    num_classes, label_stride, on, off, keep,
    ROWS: tl.constexpr, PAIRING: tl.constexpr, ELEM: tl.constexpr, LABELS: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr,
):
    """FMix (``ROWS_FMIX``) or Manifold Mixup (``ROWS_MIXUP``) from the step's uniforms: program
    ``p`` writes the Fourier coefficients ``[p BLOCK_S, (p + 1) BLOCK_S)`` and the plan rows, cycle
    table entries and targets of rows ``[p BLOCK_B, (p + 1) BLOCK_B)``."""
    pid = tl.program_id(0)
    rotation_offset = f64(offset)
    # -- FMix: the complex Fourier coefficients of the masks (family_draws.fourier_spectrum) --
    if ROWS == ROWS_FMIX:
        c = pid.to(tl.int64) * BLOCK_S + tl.arange(0, BLOCK_S)
        in_c = c < coefficients
        noise = u_ptr + units * UNIT + 1 + 2 * c
        radius = tl.sqrt(-2.0 * tl.log(1.0 - uniform(noise, in_c, rotation_offset)))
        angle = uniform(noise + 1, in_c, rotation_offset)
        scale = tl.load(scale_ptr + c % per_mask, mask=in_c, other=0.0)
        tl.store(spectrum_ptr + 2 * c, (radius * cos_2pi(angle)).to(tl.float32) * scale, mask=in_c)
        tl.store(spectrum_ptr + 2 * c + 1, (radius * cos_2pi(angle - 0.25)).to(tl.float32) * scale, mask=in_c)
    # -- the plan rows (and the cycle table's entries 0 .. B) --
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    if pid * BLOCK_B <= batch:
        in_batch = rows < batch
        shift = rotation(u_ptr, units, batch, rotation_offset)
        lam, partner, live = mixed_rows(u_ptr, rows, in_batch, batch, shift, rotation_offset, f64(alpha), f64(prob),
                                        PAIRING, ELEM)
        zero = lam * 0.0
        if ROWS == ROWS_FMIX:
            numel = tl.cast(height, tl.float64) * width
            count = (lam * numel + 6755399441055744.0) - 6755399441055744.0      # round half to even
            soft = tl.floor(numel * tl.minimum(tl.minimum(lam, 1.0 - lam), f64(max_soft)))
            touched = live & (count < numel)
            label = tl.where(live, count / numel, 1.0)
            y1 = tl.where(touched, tl.cast(height, tl.float64), 0.0)
            x1 = tl.where(touched, tl.cast(width, tl.float64), 0.0)
            if ELEM:
                first, unit = in_batch, rows
            else:
                first, unit = rows == 0, rows * 0
            tl.store(count_ptr + 2 * unit, count.to(tl.int32), mask=first)
            tl.store(count_ptr + 2 * unit + 1, soft.to(tl.int32), mask=first)
            # a copy of the partner (lam_self 0, lam_partner 1) inside the region weight, where any is taken
            store_rows(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, in_batch,
                       partner, zero, tl.where(touched, 1.0, 0.0), zero, y1, zero, x1, label,
                       tl.where(touched, KIND_CUTMIX, KIND_NONE))
        else:
            mixes = live & (lam < 1.0)
            lam_self = tl.where(mixes, lam, 1.0)
            end = tl.where(mixes, FULL_END * 1.0, 0.0)
            store_rows(partner_ptr, lam_self_ptr, lam_partner_ptr, box_ptr, label_lam_ptr, kind_ptr, rows, in_batch,
                       partner, lam_self, 1.0 - lam_self, zero, end, zero, end, lam_self,
                       tl.where(mixes, KIND_MIXUP, KIND_NONE))
            label = lam_self
            tl.store(count_ptr + rows, live.to(tl.int32), mask=in_batch)     # which rows PatchUp may patch
        if PAIRING == PAIR_PERM:
            store_rotation_cycles(walk_ptr, start_ptr, seg_ptr, rows.to(tl.int64), batch, shift)
        if LABELS != NO_LABELS:
            store_targets(labels_ptr, target_ptr, rows, in_batch, partner, label, num_classes, label_stride, on, off,
                          keep, LABELS, BLOCK_K)


@triton.jit
def _fmix_select_kernel(noise_ptr, count_ptr, lam_partner_ptr, rho_ptr, numel, ELEM: tl.constexpr,
                        BLOCK: tl.constexpr):
    """Row ``b``'s region weight from its mask's field (``fmix_mask``, binary): the field's pixels
    ranked by value, descending, ties by position (torch's stable descending sort), and the first
    ``n`` kept. The ``n``-th key is found by a radix select (four passes of 8-bit digit histograms
    over the pixels whose higher digits match), then the pixels equal to it are kept in position
    order up to the one that completes ``n``: exact, no sort, one program per row."""
    row = tl.program_id(0)
    if ELEM:
        mask = row
    else:
        mask = row * 0
    base = noise_ptr + mask.to(tl.int64) * numel
    need = tl.load(count_ptr + 2 * mask)
    offs0 = tl.arange(0, BLOCK)
    bins = tl.arange(0, 256)
    prefix = tl.zeros([], tl.int64)
    # -- the n-th largest key, 8 bits at a time (keys descending: 2**32 - 1 - order_key) --
    for p in tl.static_range(4):
        shift = 24 - 8 * p
        hist = tl.zeros([256], tl.int32)
        for start in range(0, numel, BLOCK):
            offs = start + offs0
            inside = offs < numel
            key = 4294967295 - order_key(tl.load(base + offs, mask=inside, other=0.0))
            match = inside & ((key >> (shift + 8)) == (prefix >> (shift + 8)))
            hist += tl.histogram(((key >> shift) & 255).to(tl.int32), 256, mask=match)
        cum = tl.cumsum(hist, 0)
        digit = tl.sum((cum < need).to(tl.int32), 0)
        need -= tl.sum(tl.where(bins < digit, hist, 0), 0)
        prefix += digit.to(tl.int64) << shift
    # -- the position of the need-th pixel equal to it (-1: none is kept) --
    cutoff = tl.zeros([], tl.int32) - 1
    seen = tl.zeros([], tl.int32)
    for start in range(0, numel, BLOCK):
        offs = start + offs0
        inside = offs < numel
        key = 4294967295 - order_key(tl.load(base + offs, mask=inside, other=0.0))
        equal = inside & (key == prefix)
        ranks = tl.cumsum(equal.to(tl.int32), 0) + seen
        cutoff = tl.maximum(cutoff, tl.max(tl.where(equal & (ranks == need), offs, -1), 0))
        seen += tl.sum(equal.to(tl.int32), 0)
    # -- the row: rho = 1 outside the kept pixels, where the row takes anything --
    touched = tl.load(lam_partner_ptr + row) != 0.0
    out = rho_ptr + row.to(tl.int64) * numel
    for start in range(0, numel, BLOCK):
        offs = start + offs0
        inside = offs < numel
        key = 4294967295 - order_key(tl.load(base + offs, mask=inside, other=0.0))
        own = (key < prefix) | ((key == prefix) & (offs <= cutoff))
        tl.store(out + offs, tl.where(touched, tl.where(own, 0.0, 1.0), 0.0), mask=inside)


@triton.jit
def _fmix_ramp_kernel(order_ptr, count_ptr, lam_partner_ptr, rho_ptr, numel, ELEM: tl.constexpr,
                      BLOCK: tl.constexpr):
    """Soft edges (``fmix_mask`` with ``max_soft > 0``): the pixel of rank ``r`` (``order``, a stable
    descending sort of the field) gets own share 1 below ``n - s``, 0 from ``n + s``, a linear ramp
    between, and ``rho = 1 - own`` (float32) where the row takes anything."""
    row = tl.program_id(0)
    if ELEM:
        mask = row
    else:
        mask = row * 0
    rank = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = rank < numel
    count = tl.load(count_ptr + 2 * mask).to(tl.float64)
    soft = tl.load(count_ptr + 2 * mask + 1).to(tl.float64)
    low = count - soft
    high = count + soft
    r = rank.to(tl.float64)
    ramp = 1.0 - (r - low) / tl.maximum(high - low - 1.0, 1.0)
    own = tl.where(r < low, 1.0, tl.where(r >= high, 0.0, ramp)).to(tl.float32)
    touched = tl.load(lam_partner_ptr + row) != 0.0
    rho = tl.where(touched, 1.0 - own, 0.0)
    position = tl.load(order_ptr + mask.to(tl.int64) * numel + rank, mask=inside, other=0)
    tl.store(rho_ptr + row.to(tl.int64) * numel + position, rho, mask=inside)


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------

BLOCK_B, BLOCK_S = 32, 1024


def plan_tensors(batch: int, device, perm: bool):
    """Empty plan rows (``draws.PlanRows``' fields, one box) and, for ``"perm"``, the cycle table."""
    rows = (torch.empty(batch, dtype=torch.int64, device=device), torch.empty(batch, dtype=torch.float32, device=device),
            torch.empty(batch, dtype=torch.float32, device=device),
            torch.empty(batch, 1, 4, dtype=torch.int32, device=device),
            torch.empty(batch, dtype=torch.float32, device=device), torch.empty(batch, dtype=torch.int8, device=device))
    if not perm:
        return rows, None
    return rows, (torch.empty(batch, dtype=torch.int32, device=device),
                  torch.empty(batch + 1, dtype=torch.int32, device=device),
                  torch.empty(4, batch + 1, dtype=torch.int32, device=device))


class RowsSampler:
    """The sampler launch of FMix (``field_size`` given) or Manifold Mixup (``field_size`` None) for one
    (batch, size, mode, pairing, alpha, decay, max_soft): :meth:`__call__` turns a step's uniforms into
    ``(rows, cycles or None, targets or None, spectrum or None, counts or None)`` in one launch."""

    def __init__(self, batch: int, mode: str, pairing: str, alpha: float, field_size=None, image_size=None,
                 decay_power: float = 0.0, max_soft: float = 0.0, device=None):
        self.batch, self.mode, self.pairing = batch, mode, pairing
        self.fmix = field_size is not None
        self.units = family_draws.units(mode, batch)
        self.alpha, self.max_soft = alpha, max_soft
        self.height, self.width = image_size if image_size is not None else (1, 1)
        if self.fmix:
            self.field_size = tuple(field_size)
            self.masks = family_draws.masks(mode, batch)
            self.per_mask = field_size[0] * (field_size[1] // 2 + 1)
            self.coefficients = self.masks * self.per_mask
            self.scale = family_draws.fourier_scale(self.field_size, float(decay_power), torch.device(device))
        else:
            self.masks = self.per_mask = self.coefficients = 0
        self._bound: dict = {}

    def _launch(self, prob: float, offset: float, label_mode: int, num_classes: int, stride: int, on: float,
                off: float, keep: float) -> Bound:
        batch = self.batch
        block_classes = block_k(num_classes, BLOCK_B)
        grid = (max(ceil_div(self.coefficients, BLOCK_S), ceil_div(batch + 1, BLOCK_B)),)
        scalars = (batch, self.units, self.height, self.width, max(self.per_mask, 1), self.coefficients, bits(self.alpha),
                   bits(prob), bits(offset), bits(self.max_soft), num_classes, stride, on, off, keep)
        meta = dict(ROWS=ROWS_FMIX.value if self.fmix else ROWS_MIXUP.value, PAIRING=PAIRINGS[self.pairing],
                    ELEM=self.mode == "elem", LABELS=label_mode, BLOCK_B=BLOCK_B, BLOCK_K=block_classes,
                    BLOCK_S=BLOCK_S, num_warps=4)
        return Bound(_rows_sample_kernel, grid, 15, scalars, meta)

    def __call__(self, u: torch.Tensor, prob: float, offset: float, labels=None, num_classes: int = 0,
                 smoothing: float = 0.0, live=None):
        """``live``: Manifold Mixup's rows only, an int32 ``(B,)`` tensor that gets 1 for each row
        selected and not its own partner."""
        batch, device = self.batch, u.device
        rows, cycles = plan_tensors(batch, device, self.pairing == "perm")
        label_mode, stride, on, off, keep = label_arguments(labels, num_classes, smoothing)
        targets = None if label_mode == NO_LABELS.value else torch.empty(batch, num_classes, dtype=torch.float32,
                                                                         device=device)
        spectrum = counts = None
        if self.fmix:
            h, w = self.field_size
            spectrum = torch.empty(self.masks, h, w // 2 + 1, 2, dtype=torch.float32, device=device)
            counts = torch.empty(self.masks, 2, dtype=torch.int32, device=device)
        else:       # the rows' live flags (a buffer of its own even when nobody reads them)
            counts = live if live is not None else torch.empty(batch, dtype=torch.int32, device=device)
        if batch == 0:
            return rows, cycles, targets, spectrum, counts
        key = (prob, offset, label_mode, num_classes, stride, on, off)
        launch = self._bound.get(key)
        if launch is None:
            if len(self._bound) >= 8:
                self._bound.clear()
            launch = self._bound[key] = self._launch(prob, offset, label_mode, num_classes, stride, on, off, keep)
        table = cycles if cycles is not None else (u, u, u)
        launch(u, u if labels is None else labels, self.scale if self.fmix else u, *rows, *table, counts,
               spectrum if spectrum is not None else u,
               targets if targets is not None else u)
        return rows, cycles, targets, spectrum, counts if self.fmix else None


class MaskLaunch:
    """FMix's region weights ``(B, H, W)`` from the fields ``(M, H, W)`` and the sampler's counts:
    the select kernel (binary masks) or a stable sort and the ramp kernel (soft edges)."""

    def __init__(self, batch: int, size, mode: str, soft: bool):
        self.batch, self.size, self.soft = batch, tuple(size), soft
        self.numel = size[0] * size[1]
        elem = mode == "elem"
        block = min(4096, pow2_at_least(self.numel))
        if soft:
            self.launch = Bound(_fmix_ramp_kernel, (batch, ceil_div(self.numel, 1024)), 4, (self.numel,),
                                dict(ELEM=elem, BLOCK=1024, num_warps=4))
        else:
            self.launch = Bound(_fmix_select_kernel, (batch,), 4, (self.numel,),
                                dict(ELEM=elem, BLOCK=block, num_warps=8 if block >= 2048 else 4))

    def __call__(self, field: torch.Tensor, counts: torch.Tensor, lam_partner: torch.Tensor) -> torch.Tensor:
        rho = torch.empty(self.batch, *self.size, dtype=torch.float32, device=field.device)
        if self.batch == 0:
            return rho
        flat = field.reshape(field.shape[0], self.numel)
        if self.soft:
            flat = torch.sort(flat, dim=1, descending=True, stable=True).indices
        self.launch(flat, counts, lam_partner, rho)
        return rho
