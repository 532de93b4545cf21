"""``fastmix demo``: what each mix does to a batch, as a picture and as a checked table.

The picture (PNG, needs Pillow: ``pip install "fastmix[demo]"``) has one row per method of
:data:`METHODS` and one column per sample of a small image set drawn here (:func:`sample_images`:
gradients, stripes, shapes and line-drawn digits, no files), each tile captioned with its label
weights (``0.62 #3 + 0.38 #5``: 62% the label of sample 3, 38% that of sample 5). The table
mixes one-hot images (sample ``c`` is 1 in channel ``c``) with every method and checks each label
weight against the share of the output that came from that sample, which such images let one
read back for any number of partners.

To show another method, add a :class:`DemoMethod` to :data:`METHODS`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import v2
from ..family import RICAP, DirichletMixup, ResizeMix
from ..family_masks import FMix, SaliencyMix
from ..transforms import Cutout, Mixup, RandomErasing

# how one mix is called: (uint8 or float images (B, 3, H, W), int64 labels (B,)) -> (the images
# mixed, soft targets (B, num_classes) float32)
MixFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class DemoMethod:
    """One row of the picture and one block of the table.

    ``build(num_classes, generator)`` returns the :data:`MixFn` of the method. ``keeps_labels``
    marks methods that erase pixels without touching the labels (Cutout, Random Erasing): their
    table check is that every label weight stays 1, not that it equals the pixel share.
    """

    name: str
    build: Callable[[int, torch.Generator], MixFn]
    keeps_labels: bool = False


def _labels_kept(transform, num_classes: int) -> MixFn:
    """A transform of the images alone, with the labels' one-hot targets beside it."""
    def mix(images, labels):
        return transform(images), torch.nn.functional.one_hot(labels, num_classes).float()
    return mix


def _timm(**kwargs) -> Callable[[int, torch.Generator], MixFn]:
    """fastmix.Mixup with timm's arguments, per sample (mode "elem") so each column differs."""
    return lambda k, g: Mixup(**kwargs, mode="elem", label_smoothing=0.0, num_classes=k, generator=g)


METHODS: list[DemoMethod] = [
    DemoMethod("Mixup", _timm(mixup_alpha=1.0, cutmix_alpha=0.0)),
    DemoMethod("CutMix", _timm(mixup_alpha=0.0, cutmix_alpha=1.0)),
    DemoMethod("Mixup/CutMix", _timm(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)),
    DemoMethod("Cutout", lambda k, g: _labels_kept(Cutout(n_holes=1, length=48, fill=0.0, generator=g), k),
               keeps_labels=True),
    DemoMethod("Random Erasing", lambda k, g: _labels_kept(RandomErasing(p=1.0, value=(124, 116, 104),
                                                                         generator=g), k), keeps_labels=True),
    DemoMethod("v2.MixUp", lambda k, g: v2.MixUp(alpha=1.0, num_classes=k, generator=g)),
    DemoMethod("v2.CutMix", lambda k, g: v2.CutMix(alpha=1.0, num_classes=k, generator=g)),
    DemoMethod("RICAP", lambda k, g: RICAP(beta=0.3, mode="elem", label_smoothing=0.0, num_classes=k, generator=g)),
    DemoMethod("k-way Mixup", lambda k, g: DirichletMixup(alpha=1.0, k=3, mode="elem", label_smoothing=0.0, num_classes=k, generator=g)),
    DemoMethod("ResizeMix", lambda k, g: ResizeMix(scope=(0.1, 0.8), interpolation="bilinear", mode="elem", label_smoothing=0.0, num_classes=k, generator=g)),
    DemoMethod("FMix", lambda k, g: FMix(alpha=1.0, decay_power=3.0, pairing="flip", mode="elem", label_smoothing=0.0, num_classes=k, generator=g)),
    DemoMethod("SaliencyMix", lambda k, g: SaliencyMix(beta=1.0, pairing="flip", mode="elem", label_smoothing=0.0, num_classes=k, generator=g)),
]


def method_generator(method: DemoMethod, seed: int, device) -> torch.Generator:
    """Each method draws from its own generator, seeded by ``seed`` and its name, so adding a
    method leaves the others' draws (and the committed picture's rows) as they were."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + zlib.crc32(method.name.encode()))


# --------------------------------------------------------------------------------------------
# the image set
# --------------------------------------------------------------------------------------------

SAMPLE_NAMES = ("sunset", "stripes", "checks", "disc", "rings", "diamond", "two", "seven")

# seven-segment digits: segment endpoints in a unit box (x, y), y down
_SEGMENTS = {"a": ((0.25, 0.15), (0.75, 0.15)), "b": ((0.75, 0.15), (0.75, 0.5)), "c": ((0.75, 0.5), (0.75, 0.85)),
             "d": ((0.25, 0.85), (0.75, 0.85)), "e": ((0.25, 0.5), (0.25, 0.85)), "f": ((0.25, 0.15), (0.25, 0.5)),
             "g": ((0.25, 0.5), (0.75, 0.5))}
_DIGITS = {"two": "abged", "seven": "abc"}


def _stroke(yy, xx, start, end, width):
    """(H, W) bool: pixels within ``width`` of the segment ``start``-``end`` (unit coordinates)."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    t = (((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy)).clamp(0, 1)
    return (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 <= width ** 2


def _paint(mask, fg, bg):
    """(3, H, W) float in [0, 255]: ``fg`` where ``mask`` (bool or [0, 1] float), ``bg`` elsewhere."""
    m = mask.float()[None]
    return torch.tensor(fg, dtype=torch.float32)[:, None, None] * m + torch.tensor(bg, dtype=torch.float32)[
        :, None, None] * (1 - m)


def sample_images(size: int = 128, count: int = len(SAMPLE_NAMES)) -> torch.Tensor:
    """``count`` (at most 8) distinct synthetic images ``(count, 3, size, size)`` uint8, always the same."""
    if not 1 <= count <= len(SAMPLE_NAMES):
        raise ValueError(f"count: expected 1..{len(SAMPLE_NAMES)} samples, got {count}")
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = coords[:, None].expand(size, size), coords[None, :].expand(size, size)
    radius = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2).sqrt()
    images = {
        "sunset": _paint(yy, (70, 30, 120), (250, 170, 60)),
        "stripes": _paint(((xx + yy) * 6).floor() % 2 == 0, (30, 90, 200), (235, 240, 250)),
        "checks": _paint(((xx * 4).floor() + (yy * 4).floor()) % 2 == 0, (40, 160, 70), (20, 25, 20)),
        "disc": _paint(radius < 0.32, (210, 40, 40), (240, 225, 200)),
        "rings": _paint((radius * 10).floor() % 2 == 0, (20, 150, 150), (200, 245, 240)),
        "diamond": _paint((yy - 0.5).abs() + (xx - 0.5).abs() < 0.35, (250, 215, 40), (25, 35, 90)),
    }
    for name, segments in _DIGITS.items():
        mask = torch.zeros(size, size, dtype=torch.bool)
        for segment in segments:
            mask |= _stroke(yy, xx, *_SEGMENTS[segment], width=0.06)
        images[name] = _paint(mask, (250, 250, 250), (90, 90, 100) if name == "two" else (130, 60, 90))
    return torch.stack([images[n] for n in SAMPLE_NAMES[:count]]).round().to(torch.uint8)


# --------------------------------------------------------------------------------------------
# mixing the set, captions
# --------------------------------------------------------------------------------------------

@dataclass
class DemoRow:
    """One method applied to the image set: ``images`` (B, 3, H, W) uint8 on the CPU, ``targets``
    (B, B) float32 as the method returned them (labels are the samples' indices), ``captions``."""

    name: str
    images: torch.Tensor
    targets: torch.Tensor
    captions: list[str]


def caption(target_row: torch.Tensor, own: int) -> str:
    """``"0.62 #3 + 0.38 #5"``: the label weights of sample ``own``'s row to two decimals, its own
    label first, then the others, largest first (weights under 0.005 are left out)."""
    weights = [(float(w), k) for k, w in enumerate(target_row.tolist()) if w >= 0.005]
    weights.sort(key=lambda p: (p[1] != own, -p[0]))
    return " + ".join(f"{w:.2f} #{k}" for w, k in weights)


def mix_rows(seed: int = 0, size: int = 128, count: int = len(SAMPLE_NAMES), device="cpu",
             methods: Optional[list[DemoMethod]] = None) -> tuple[torch.Tensor, list[DemoRow]]:
    """The image set ``(count, 3, size, size)`` uint8 and one :class:`DemoRow` per method."""
    originals = sample_images(size, count)
    labels = torch.arange(count, device=device)
    rows = []
    for method in METHODS if methods is None else methods:
        mix = method.build(count, method_generator(method, seed, device))
        images, targets = mix(originals.clone().to(device), labels)
        rows.append(DemoRow(method.name, images.cpu(), targets.cpu(), [caption(t, i) for i, t in enumerate(targets.cpu())]))
    return originals, rows


# --------------------------------------------------------------------------------------------
# the picture
# --------------------------------------------------------------------------------------------

# Layout, in pixels: a column of row names LABEL_WIDTH wide, then one column per sample, each a
# TILE-wide tile and a GAP; every row (the originals first, then one per method) is a tile, a
# CAPTION-high caption under it and a GAP. Tile (row, col) starts at tile_origin(row, col).
TILE, CAPTION, GAP, LABEL_WIDTH = 128, 18, 6, 132


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """(width, height) of a picture of ``rows`` rows (originals included) and ``cols`` samples."""
    return LABEL_WIDTH + cols * (TILE + GAP), GAP + rows * (TILE + CAPTION + GAP)


def tile_origin(row: int, col: int) -> tuple[int, int]:
    """(x, y) of the top-left pixel of tile (row, col); row 0 holds the originals."""
    return LABEL_WIDTH + col * (TILE + GAP), GAP + row * (TILE + CAPTION + GAP)


def pillow_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def render(originals: torch.Tensor, rows: list[DemoRow], path: str) -> tuple[int, int]:
    """Draw the grid into a PNG at ``path`` (needs Pillow; the images must be TILE x TILE);
    returns its (width, height)."""
    from PIL import Image, ImageDraw, ImageFont

    if tuple(originals.shape[-2:]) != (TILE, TILE):
        raise ValueError(f"originals: tiles are {TILE}x{TILE}, got {tuple(originals.shape[-2:])}")
    size = grid_size(len(rows) + 1, originals.shape[0])
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    names = [f"#{i} {SAMPLE_NAMES[i]}" for i in range(originals.shape[0])]
    table = [("originals", originals, names)] + [(r.name, r.images, r.captions) for r in rows]
    for r, (name, images, captions) in enumerate(table):
        draw.text((6, tile_origin(r, 0)[1] + TILE // 2 - 6), name, fill=(0, 0, 0), font=font)
        for c in range(images.shape[0]):
            x, y = tile_origin(r, c)
            pixels = bytes(images[c].permute(1, 2, 0).reshape(-1).tolist())   # HWC bytes, no numpy needed
            canvas.paste(Image.frombytes("RGB", (TILE, TILE), pixels), (x, y))
            draw.text((x + 2, y + TILE + 3), captions[c], fill=(0, 0, 0), font=font)
    canvas.save(path, optimize=True)
    return size


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------

def check_table(batch: int = 4, size: int = TILE, seed: int = 0, device="cpu", out=print) -> bool:
    """Mix one-hot images with every method and print, per sample, its label weights and the
    share of its own pixels; True when every sample's label weights equal the shares of the
    samples its pixels came from (Cutout/Erasing: when every label weight stays 1).

    Sample ``c`` of the input is 1 in channel ``c`` and 0 elsewhere, so every method being
    linear in its inputs, channel ``c`` of an output averaged over the pixels is exactly the
    share of that output that came from sample ``c``, however many partners it had."""
    labels = torch.arange(batch, device=device)
    out(f"{'method':16s} {'sample':>6s}  {'label weights':24s} {'own pixel share':>15s}  check")
    ok = True
    for method in METHODS:
        x = torch.zeros(batch, 3 if method.keeps_labels else batch, size, size, device=device)  # RGB fills
        if not method.keeps_labels:
            x[labels, labels] = 1.0
        images, targets = method.build(batch, method_generator(method, seed, device))(x, labels)
        shares = images.double().mean((2, 3))
        for i in range(batch):
            row = targets[i]
            if method.keeps_labels:
                good = bool((row == torch.nn.functional.one_hot(labels[i], row.numel()).to(row.dtype)).all())
            else:
                good = bool((shares[i] - row.double()).abs().max() < 1e-4)
            ok &= good
            verdict = ("label kept" if method.keeps_labels else "ok") if good else "WRONG"
            share = float((images[i] == x[i]).double().mean()) if method.keeps_labels else float(shares[i, i])
            out(f"{method.name:16s} {i:6d}  {caption(row.cpu(), i):24s} {share:15.4f}  {verdict}")
    out("every label weight equals the share of the sample's own pixels (Cutout, Random Erasing: labels kept): "
        + ("yes" if ok else "NO"))
    return ok
