"""How a batch tensor is seen by the blend: ``B`` samples of ``P`` planes × ``R`` rows × ``L`` lanes.

Both backends (the reference in :mod:`fastmix.reference` and the Triton kernels in
:mod:`fastmix.kernels`) address a sample through this one description, so the two can never
disagree about which element is which. Lanes are always unit-stride, which is what lets the
kernel issue 128-bit accesses; planes and rows may have any stride (crops and slices work).

A box ``[y0, y1, x0, x1]`` covers rows ``y0..y1`` of every plane and lanes
``x0 * lane_scale .. x1 * lane_scale``:

======================  ===========  =====  =====  ==========  ===============
tensor                  P            R      L      lane_scale  channel of fill
======================  ===========  =====  =====  ==========  ===============
(B, C, H, W) NCHW       C            H      W      1           plane
(B, C, H, W) NHWC       1            H      W*C    C           lane % C
(B, C, T, H, W)         C*T          H      W      1           plane // T
(B, C, T, H, W) NDHWC   T            H      W*C    C           lane % C
(B, H, W) masks         1            H      W      1           0
(B, ...) whole-sample   1            1      N      1           0
======================  ===========  =====  =====  ==========  ===============
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

# A box coordinate meaning "to the end of the axis": whole-sample regions (Mixup rows) use it so
# that one plan applies to tensors of any shape. Both backends clip boxes to the tensor.
FULL = 1 << 30


class Layout(NamedTuple):
    """``batch`` samples of ``planes`` x ``rows`` x ``lanes`` (see the table above); build it with keywords."""

    batch: int
    planes: int
    rows: int
    lanes: int
    stride_batch: int
    stride_plane: int
    stride_row: int
    lane_scale: int = 1            # lanes per box column (channels in a channels_last row)
    channels: int = 1              # channels of the fill
    channel_in_lane: bool = False  # channels_last: channel = lane % channels
    planes_per_channel: int = 1    # video NCTHW: frames per channel

    @property
    def width(self) -> int:
        """Width of the box coordinate system (lanes per row divided by the lane scale)."""
        return self.lanes // self.lane_scale

    @property
    def sample_numel(self) -> int:
        return self.planes * self.rows * self.lanes

    def logical_index(self, planes: torch.Tensor, rows: torch.Tensor, lanes: torch.Tensor) -> torch.Tensor:
        """The NC(T)HW position within its sample of the element at (plane, row, lane), broadcast
        over the three int64 tensors: what the counter-based noise is indexed by, so that it does
        not depend on the memory layout (``kernels/blend.py`` computes the same)."""
        if self.channel_in_lane:
            channel, column = lanes % self.channels, lanes // self.channels
            return ((channel * self.planes + planes) * self.rows + rows) * self.width + column
        return (planes * self.rows + rows) * self.lanes + lanes


def _dense_span(sizes, strides) -> bool:
    """True when the elements of one sample fill a contiguous block of memory exactly."""
    expected = 1
    for size, stride in sorted(((s, t) for s, t in zip(sizes, strides) if s != 1), key=lambda st: st[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def describe(x: torch.Tensor, spatial: bool) -> Optional[Layout]:
    """Describe ``x`` for the blend, or return None when its strides have no such description.

    ``spatial`` is True when the plan has boxes (CutMix, Cutout, Erasing): then ``x`` must be
    ``(B, C, H, W)``, ``(B, C, T, H, W)`` or ``(B, H, W)``. Otherwise every region is the whole
    sample and any ``(B, ...)`` tensor whose samples are dense in memory is one flat row.
    A None return means "make it contiguous first" (the caller does that).
    """
    batch = x.shape[0]
    size, stride = x.shape, x.stride()
    if not spatial:
        if not _dense_span(size[1:], stride[1:]):
            return None
        numel = 1
        for s in size[1:]:
            numel *= s
        return Layout(batch=batch, planes=1, rows=1, lanes=numel, stride_batch=stride[0], stride_plane=numel,
                      stride_row=numel)
    if x.dim() == 3:
        _, height, width = size
        if stride[2] != 1 and width > 1:
            return None
        return Layout(batch=batch, planes=1, rows=height, lanes=width, stride_batch=stride[0],
                      stride_plane=height * stride[1], stride_row=stride[1])
    if x.dim() == 4:
        _, channels, height, width = size
        if stride[3] == 1 or width == 1:
            return Layout(batch=batch, planes=channels, rows=height, lanes=width, stride_batch=stride[0],
                          stride_plane=stride[1], stride_row=stride[2], channels=channels)
        if stride[1] == 1 and stride[3] == channels:
            return Layout(batch=batch, planes=1, rows=height, lanes=width * channels, stride_batch=stride[0],
                          stride_plane=0, stride_row=stride[2], lane_scale=channels, channels=channels,
                          channel_in_lane=True)
        return None
    if x.dim() == 5:
        _, channels, frames, height, width = size
        if (stride[4] == 1 or width == 1) and (stride[1] == frames * stride[2] or channels == 1):
            return Layout(batch=batch, planes=channels * frames, rows=height, lanes=width, stride_batch=stride[0],
                          stride_plane=stride[2], stride_row=stride[3], channels=channels,
                          planes_per_channel=frames)
        if stride[1] == 1 and stride[4] == channels:
            return Layout(batch=batch, planes=frames, rows=height, lanes=width * channels, stride_batch=stride[0],
                          stride_plane=stride[2], stride_row=stride[3], lane_scale=channels, channels=channels,
                          channel_in_lane=True, planes_per_channel=frames)
        return None
    raise ValueError(
        f"x: a plan with boxes (CutMix, Cutout, Erasing) needs (B, C, H, W), (B, C, T, H, W) or (B, H, W); "
        f"got shape {tuple(x.shape)}")


def spatial_size(x: torch.Tensor) -> tuple[int, int]:
    """The (H, W) that boxes are drawn in for an image, video or mask batch."""
    return int(x.shape[-2]), int(x.shape[-1])
