"""How a blend kernel program walks the batch: its tile, its cycle of the partner permutation, and
which pixels of a row lie in the row's region. Shared by the kernels of ``kernels/blend.py``.

One program owns one tile (a block of rows x lanes of one plane, the same in every sample) of one
*segment*: at most ``SEGMENT`` consecutive rows of a cycle of the partner permutation. Flip, roll
and identity cycles are closed forms (``WALK_FLIP``...); other permutations come as a table
(``walk``, ``Cycles.segments``) from ``fastmix.plan``, every entry of which is clamped into the
batch before it is used as an address.
"""
import triton
import triton.language as tl

from fastmix.partners import SEGMENT as _SEGMENT

# how a program finds the rows of its cycle (constexpr globals: the kernels read them, the
# launchers pass their .value)
WALK_TABLE, WALK_FLIP, WALK_ROLL, WALK_SELF = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2), tl.constexpr(3)
WALKS = {"flip": WALK_FLIP.value, "roll": WALK_ROLL.value, "self": WALK_SELF.value}   # Plan.pairing; "perm": table
SEGMENT = tl.constexpr(_SEGMENT)   # most rows a program walks in a row


@triton.jit
def tile(rows, lanes, stride_plane, stride_row, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr):
    """Program axis 0 -> a tile (plane, row block, lane block) of a sample: its first row and lane,
    its element rows/lanes, the in-bounds mask and the element offsets within a sample."""
    program = tl.program_id(0)
    row_blocks = tl.cdiv(rows, BLOCK_R)
    lane_blocks = tl.cdiv(lanes, BLOCK_L)
    plane = program // (row_blocks * lane_blocks)
    rest = program % (row_blocks * lane_blocks)
    row0 = (rest // lane_blocks) * BLOCK_R
    lane0 = (rest % lane_blocks) * BLOCK_L
    tile_rows = row0 + tl.arange(0, BLOCK_R)[:, None]
    tile_lanes = lane0 + tl.arange(0, BLOCK_L)[None, :]
    inside = (tile_rows < rows) & (tile_lanes < lanes)    # VEC-constant when lanes is a multiple of VEC
    offs = plane.to(tl.int64) * stride_plane + tile_rows.to(tl.int64) * stride_row + tile_lanes
    return plane, row0, lane0, tile_rows, tile_lanes, inside, offs


@triton.jit
def dense_offsets(plane, tile_rows, tile_lanes, rows, lanes):
    """The tile's element offsets in a dense ``planes x rows x lanes`` sample (the hand-off scratch),
    in int32: one sample has fewer than 2**31 elements (the launcher checks)."""
    return (plane * rows + tile_rows) * lanes + tile_lanes


@triton.jit
def segment(seg_ptr, j, batch, WALK: tl.constexpr):
    """``(start, length, next, after, slot)`` of segment ``j``: walk positions ``start`` to
    ``start + length - 1``, the position its last row reads (``next``), the segment that owns it
    (``after``; ``j`` when the segment is a whole cycle, whose last row reads its own first) and its
    hand-off slot. Flip pairs and self-cycles are whole cycles; torchvision's roll is one cycle of
    every row in segments of ``SEGMENT``; any other permutation reads ``Cycles.segments``' table,
    every entry clamped into the batch."""
    if WALK == WALK_TABLE:
        stride = batch + 1
        start = tl.minimum(tl.maximum(tl.load(seg_ptr + j), 0), batch)
        length = tl.minimum(tl.maximum(tl.load(seg_ptr + j + 1), start), batch) - start
        nxt = tl.minimum(tl.maximum(tl.load(seg_ptr + stride + j), 0), batch - 1)
        after = tl.minimum(tl.maximum(tl.load(seg_ptr + 2 * stride + j), 0), batch - 1)
        slot = tl.minimum(tl.maximum(tl.load(seg_ptr + 3 * stride + j), 0), 2 * tl.cdiv(batch, SEGMENT))
    elif WALK == WALK_ROLL:
        count = tl.cdiv(batch, SEGMENT)
        start = j * SEGMENT
        length = tl.minimum(SEGMENT, batch - start)
        nxt = ((j + 1) % count) * SEGMENT
        after = (j + 1) % count
        slot = j
    else:                       # flip: cycle j is (j, B-1-j), the middle of an odd batch alone; self
        start = j * 0
        if WALK == WALK_FLIP:
            length = tl.where(2 * j + 1 < batch, 2, 1)
        else:
            length = 1 + j * 0
        nxt = start
        after = j
        slot = start
    return start, length, nxt, after, slot


@triton.jit
def walk_row(walk_ptr, j, position, batch, WALK: tl.constexpr):
    """The row at walk ``position`` (within cycle ``j`` for flip pairs and self-cycles)."""
    if WALK == WALK_FLIP:
        return tl.where(position == 0, j, batch - 1 - j)
    elif WALK == WALK_ROLL:     # the single cycle 0, B-1, B-2, ..., 1
        return (batch - position) % batch
    elif WALK == WALK_SELF:
        return j + position * 0
    else:
        # clamped twice: no table, however built, makes the walk address memory outside the batch
        slot = tl.minimum(tl.maximum(position, 0), batch - 1)
        return tl.minimum(tl.maximum(tl.load(walk_ptr + slot), 0), batch - 1)


def ceil_div(a: int, b: int) -> int:
    """``triton.cdiv`` for the launchers in plain Python (Triton's is a JIT-aware function: ~4 us a call)."""
    return -(-a // b)


def pow2_at_least(n: int) -> int:
    """``triton.next_power_of_2`` in plain Python."""
    return 1 << max(0, int(n) - 1).bit_length()


def segment_count(walk: int, batch: int) -> int:
    """How many segments the walk has (an upper bound for a table): grid axis 1."""
    return {WALK_FLIP.value: (batch + 1) // 2, WALK_ROLL.value: ceil_div(batch, SEGMENT.value)}.get(walk, batch)


def handoff_slots(walk: int, batch: int) -> int:
    """Segments that may hand their first row over (scratch rows and counters to allocate)."""
    if walk == WALK_ROLL.value:
        return ceil_div(batch, SEGMENT.value) if batch > SEGMENT.value else 0
    if walk == WALK_TABLE.value:
        return 2 * ceil_div(batch, SEGMENT.value) + 1
    return 0


@triton.jit
def region(box_ptr, row, tile_rows, tile_lanes, inside, rows, box_width, lane_scale, BOXES: tl.constexpr,
            VEC: tl.constexpr, WHOLE_ROWS: tl.constexpr):
    """Which elements of the tile lie in the union of ``row``'s boxes, as two masks.

    ``whole`` is the region; ``body`` is its part whose lane bounds are rounded inwards to
    multiples of VEC. ``body`` is constant over aligned runs of VEC lanes, which is what lets
    Triton issue 128-bit accesses for it; the ragged edges (``whole & ~body``, fewer than VEC
    lanes per box row) go element by element. With ``WHOLE_ROWS`` every region is the whole
    sample or nothing, decided by one scalar, at no per-element cost.
    """
    if WHOLE_ROWS:
        live = tl.load(box_ptr + row * (BOXES * 4)) < tl.load(box_ptr + row * (BOXES * 4) + 1)
        whole = tl.where(live, inside, False)
        return whole, whole
    whole = (tile_rows < 0) & (tile_lanes < 0)
    body = whole
    for n in tl.static_range(BOXES):
        base = box_ptr + row * (BOXES * 4) + n * 4
        y0 = tl.minimum(tl.maximum(tl.load(base), 0), rows)
        y1 = tl.minimum(tl.maximum(tl.load(base + 1), 0), rows)
        x0 = tl.minimum(tl.maximum(tl.load(base + 2), 0), box_width) * lane_scale
        x1 = tl.minimum(tl.maximum(tl.load(base + 3), 0), box_width) * lane_scale
        in_rows = (tile_rows >= y0) & (tile_rows < y1)
        whole = whole | (in_rows & (tile_lanes >= x0) & (tile_lanes < x1))
        body = body | (in_rows & (tile_lanes >= tl.cdiv(x0, VEC) * VEC) & (tile_lanes < (x1 // VEC) * VEC))
    return whole, body


@triton.jit
def load_split(ptr, body, edge):
    """Load where ``body | edge`` (disjoint): ``body`` vectorises, ``edge`` goes element-wise."""
    return tl.where(body, tl.load(ptr, mask=body), tl.load(ptr, mask=edge))


@triton.jit
def gated(mask, weight):
    """``mask`` where ``weight != 0``, else all false. (Written with where, not ``&``: Triton
    3.6's interpreter mistypes a broadcast scalar float comparison.)"""
    return tl.where(weight != 0.0, mask, False)
