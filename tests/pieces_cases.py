"""What the piece-plan test files (``test_pieces*.py``) share: the members in both modes, the
one-hot batches that read pixel shares, hand-built plans, closed forms (nothing from the code
under test), and the bit comparison. ``tests/helpers.py`` holds what every test file shares.

Pixel shares are read from *one-hot channel* batches: sample ``c`` holds 1 in channel ``c`` and 0
elsewhere, so channel ``c`` of an output, averaged over its pixels, is exactly the share of sample
``c`` in it, whatever the method did (pasting, blending, resizing a constant is the constant).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastmix.family import DirichletMixup, RICAP, ResizeMix
from fastmix.pieces import piece_plan
from helpers import KERNEL_DEVICE, seeded

H, W = 8, 12
MODES = ("batch", "elem")

# (name, mode, build(**kwargs)): every member in both modes
MEMBERS = [
    ("ricap", lambda mode, **kw: RICAP(beta=0.3, mode=mode, **kw)),
    ("dirichlet", lambda mode, **kw: DirichletMixup(alpha=1.0, k=3, mode=mode, **kw)),
    ("resizemix_nearest", lambda mode, **kw: ResizeMix(scope=(0.1, 0.8), interpolation="nearest", mode=mode, **kw)),
    ("resizemix_bilinear", lambda mode, **kw: ResizeMix(scope=(0.3, 0.9), interpolation="bilinear", mode=mode, **kw)),
]
METHODS = [(f"{name}-{mode}", lambda mode=mode, make=make, **kw: make(mode, **kw))
           for name, make in MEMBERS for mode in MODES]
METHOD_IDS = [m[0] for m in METHODS]


def incomplete_beta(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its power series (x <= 1/2; symmetry above)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > 0.5:
        return 1.0 - incomplete_beta(1.0 - x, b, a)
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    total, coeff = 0.0, 1.0                         # coeff = (1 - b)_n / n!
    for n in range(200):
        total += coeff * a / (a + n) * x ** n
        coeff *= (n + 1 - b) / (n + 1)
    return math.exp(a * math.log(x) - log_beta) / a * total


def onehot_batch(b: int, dtype=torch.float32, channels_last=False, scale=1.0) -> torch.Tensor:
    x = torch.zeros(b, b, H, W, dtype=torch.float64)
    x[torch.arange(b), torch.arange(b)] = scale
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def shares(out: torch.Tensor, scale=1.0) -> torch.Tensor:
    """(B, B): share of sample c in output i, from the pixels of a one-hot batch."""
    return out.double().mean((2, 3)) / scale


def loop_oracle(x: torch.Tensor, src, weight, dst_box, src_box, resize: str) -> torch.Tensor:
    """Pixel by pixel (float64): each piece's source crop resized with F.interpolate into its
    destination box, weighted and summed; uncovered pixels keep their value."""
    out = x.double().clone()
    b = x.shape[0]
    for i in range(b):
        acc = torch.zeros_like(out[i])
        covered = torch.zeros(x.shape[2:], dtype=torch.bool)
        for j in range(src.shape[1]):
            y0, y1, x0, x1 = dst_box[i, j].tolist()
            sy0, sy1, sx0, sx1 = src_box[i, j].tolist()
            if y1 <= y0 or x1 <= x0:
                continue
            crop = x[int(src[i, j]), :, sy0:sy1, sx0:sx1].double()[None]
            kw = dict(mode=resize) if resize == "nearest" else dict(mode="bilinear", align_corners=False)
            piece = F.interpolate(crop, size=(y1 - y0, x1 - x0), **kw)[0]
            acc[:, y0:y1, x0:x1] += float(weight[i, j]) * piece
            covered[y0:y1, x0:x1] = True
        out[i] = torch.where(covered, acc, out[i])
    return out


def hand_plan(resize="nearest"):
    """Three samples, three pieces: a translation, a downscale and an upscale (overlapping)."""
    src = torch.tensor([[2, 0, 1], [1, 2, 2], [0, 0, 1]])
    weight = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.3, 0.7], [0.6, 0.4, 0.0]])
    dst = torch.tensor([[[0, 4, 0, 6], [2, 7, 3, 12], [0, 8, 0, 12]],
                        [[1, 5, 2, 8], [5, 8, 0, 3], [5, 8, 0, 3]],
                        [[0, 8, 0, 12], [3, 5, 4, 10], [0, 0, 0, 0]]], dtype=torch.int32)
    srcb = torch.tensor([[[3, 7, 5, 11], [0, 8, 0, 12], [0, 8, 0, 12]],
                         [[0, 4, 0, 6], [2, 4, 7, 9], [0, 8, 0, 12]],
                         [[0, 8, 0, 12], [1, 8, 2, 5], [0, 0, 0, 0]]], dtype=torch.int32)
    return piece_plan(src, weight, dst, srcb, (H, W), resize)


def uniform_hand_plan(batch: int, resize="nearest", weights=(0.5, 0.0, 1.0)):
    """Every row the same three boxes and weights (overlapping, one zero weight, one resize), each
    field one row expanded to the batch: the form batch-mode draws take on the CPU."""
    src = torch.stack([torch.arange(batch).roll(s) for s in (1, 0, 3)], 1)
    dst = torch.tensor([[0, 5, 0, 7], [2, 8, 4, 12], [3, 6, 1, 11]], dtype=torch.int32)
    srcb = torch.tensor([[2, 7, 3, 10], [0, 8, 0, 12], [1, 8, 0, 6]], dtype=torch.int32)
    return piece_plan(src, torch.tensor(weights).expand(batch, 3), dst.expand(batch, 3, 4), srcb.expand(batch, 3, 4),
                      (H, W), resize)


def raw_bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's elements as integers of its width (so -0.0 and +0.0 differ)."""
    return t.contiguous().view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def image_batch(dtype, channels_last, b=3, c=2, seed=0, device=KERNEL_DEVICE):
    gen = seeded(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, c, H, W), generator=gen, dtype=torch.uint8)
    else:
        x = torch.randn(b, c, H, W, generator=gen).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    return x.to(device)
