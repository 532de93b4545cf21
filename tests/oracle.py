"""A deliberately naive oracle: float64, one sample at a time, written straight from the table
in DESIGN.md. Slow and obviously right; both the reference and the kernels are held to it."""
from __future__ import annotations

import torch

from fastmix.plan import Plan
from fastmix.noise import normal as normal_from_counter


def region_mask(plan: Plan, i: int, x: torch.Tensor) -> torch.Tensor:
    """Bool mask of sample ``i``'s region, shaped like ``x[i]`` (boxes on the last two dims)."""
    if plan.size is None:
        full = bool(((plan.box[i, :, 0] < plan.box[i, :, 1]) & (plan.box[i, :, 2] < plan.box[i, :, 3])).any())
        return torch.full(x.shape[1:], full, dtype=torch.bool)
    height, width = x.shape[-2], x.shape[-1]
    mask = torch.zeros(height, width, dtype=torch.bool)
    for y0, y1, x0, x1 in plan.box[i].tolist():
        y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
        x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
        mask[y0:y1, x0:x1] = True
    return mask.expand(x.shape[1:])


def fill_value(plan: Plan, i: int, x: torch.Tensor) -> torch.Tensor:
    """Sample ``i``'s fill as a float64 tensor shaped like ``x[i]`` (channels on dim 0)."""
    shape = x.shape[1:]
    if plan.noise_seed is not None:
        numel = x[0].numel()
        logical = torch.arange(numel).view(shape)          # NC(T)HW order, whatever the memory layout
        return normal_from_counter(plan.noise_seed.reshape(()), i * numel + logical).double()
    if plan.fill is None:
        return torch.zeros(shape, dtype=torch.float64)
    fill = plan.fill[i].double()
    if fill.numel() == 1:
        return fill.expand(shape)
    return fill.view(-1, *([1] * (len(shape) - 1))).expand(shape)


def blend(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The plan applied to ``x``, in float64 (rounded half to even and clamped for uint8)."""
    src = x.detach().cpu().double()
    out = src.clone()
    for i in range(x.shape[0]):
        mask = region_mask(plan, i, x)
        a = float(plan.lam_self[i])
        b = float(plan.lam_partner[i])
        c = 1.0 - a - b
        rho = torch.ones(x.shape[1:], dtype=torch.float64)
        if plan.mask is not None:                     # out = (1 - rho) x + rho * blend, where rho > 0
            rho = plan.mask[i].double().expand(x.shape[1:])
            mask = mask & (rho > 0)
        val = (1.0 - rho) * src[i]
        if a != 0:
            val += rho * a * src[i]
        if b != 0:
            val += rho * b * src[int(plan.partner[i])]
        if c != 0 and (plan.fill is not None or plan.noise_seed is not None):
            val += rho * c * fill_value(plan, i, x)
        out[i][mask] = val[mask]
    if x.dtype == torch.uint8:
        out = out.round().clamp(0, 255)
    return out


def expected(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """:func:`blend` in ``x``'s dtype (rounded to nearest), for comparisons within a dtype's tolerance."""
    return blend(x, plan).to(x.dtype)


def targets(labels: torch.Tensor, plan: Plan, num_classes: int, smoothing: float) -> torch.Tensor:
    """Mixed smoothed targets in float64, one row at a time."""
    off = smoothing / num_classes
    out = torch.zeros(plan.batch_size, num_classes, dtype=torch.float64)

    def smooth(row: int) -> torch.Tensor:
        if labels.dim() == 1:
            t = torch.full((num_classes,), off, dtype=torch.float64)
            t[int(labels[row])] = 1.0 - smoothing + off
            return t
        return labels[row].double() * (1.0 - smoothing) + off

    for i in range(plan.batch_size):
        lam = float(plan.label_lam[i])
        out[i] = lam * smooth(i)
        if lam != 1.0:
            out[i] += (1.0 - lam) * smooth(int(plan.partner[i]))
    return out
