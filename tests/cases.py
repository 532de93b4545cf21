"""Batches and plans shared by the reference and kernel tests: every layout, dtype, kind and pairing."""
from __future__ import annotations

import torch

from dataclasses import replace

from fastmix import functional as F
from fastmix.partners import closed_form_partner
from fastmix.plan import Plan

LAYOUTS = ("nchw", "nhwc", "video", "video_cl", "crop", "features")
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8)
KINDS = ("mixup", "cutmix", "switch_elem", "cutout", "erase_const", "erase_noise")
PAIRINGS = ("flip", "roll", "perm")


def make_batch(layout: str, dtype: torch.dtype, batch: int, channels: int, height: int, width: int,
               generator: torch.Generator, device="cpu") -> torch.Tensor:
    """A random batch in the given layout; uint8 spans 0..255, floats N(0, 1)-ish scaled."""
    shapes = {"nchw": (batch, channels, height, width), "nhwc": (batch, channels, height, width),
              "video": (batch, channels, 2, height, width), "video_cl": (batch, channels, 2, height, width),
              "crop": (batch, channels, height + 3, width + 5), "features": (batch, channels * height * width + 1)}
    shape = shapes[layout]
    base = torch.rand(shape, generator=generator)
    x = (base * 255).round().to(dtype) if dtype == torch.uint8 else ((base - 0.5) * 8).to(dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "video_cl":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    elif layout == "crop":
        x = x[:, :, 1:1 + height, 2:2 + width]          # rows with a stride wider than the row
    return x.to(device)


def make_plan(kind: str, pairing: str, batch: int, size, channels: int, generator: torch.Generator) -> Plan:
    """A plan of one kind; ``size`` None means whole-sample regions only (Mixup)."""
    if kind == "mixup":
        plan = F.mixup_cutmix_plan(batch, None, mixup_alpha=1.0, mode="elem", generator=generator)
    elif kind == "cutmix":
        plan = F.mixup_cutmix_plan(batch, size, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                                   generator=generator)
    elif kind == "switch_elem":
        plan = F.mixup_cutmix_plan(batch, size, mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", prob=0.8,
                                   generator=generator)
    elif kind == "cutout":
        fill = [float(c) * 10 + 3 for c in range(channels)]
        return F.cutout_plan(batch, size, n_holes=3, length=max(2, size[0] // 2), fill=fill, p=0.9,
                             generator=generator)
    elif kind == "erase_const":
        return F.erasing_plan(batch, size, p=0.9, value=7.0, generator=generator)
    elif kind == "erase_noise":
        return F.erasing_plan(batch, size, p=0.9, value="random", generator=generator)
    else:
        raise ValueError(kind)
    return with_pairing(plan, pairing, generator)


def with_pairing(plan: Plan, pairing: str, generator: torch.Generator) -> Plan:
    """The same plan with another partner permutation: timm's flip or torchvision's roll as the
    samplers build them (closed forms the kernels walk without a table), or a random permutation."""
    if pairing == "perm":
        return replace(plan, partner=torch.randperm(plan.batch_size, generator=generator))
    partner, closed = closed_form_partner(pairing, plan.batch_size)
    return replace(plan, partner=partner, _closed=closed)


def spatial(layout: str) -> bool:
    return layout != "features"
