"""Functional API: sample a plan once, apply it to any tensor, build targets from it.

    plan = F.mixup_cutmix_plan(B, (H, W), mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", device=x.device)
    x = F.apply(x, plan)                       # in place; out of place + autograd if x requires grad
    masks = F.apply_masks(masks, plan)         # the same boxes on (B, H, W) segmentation maps
    target = F.targets(y, plan, num_classes=1000, smoothing=0.1)

Because a plan is only tensors, the same plan can mix hidden activations (manifold mixup),
several inputs of one sample, or be logged and replayed.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _checks, known, ops
from .partners import flip_partner, roll_partner
from .plan import BUILT_HERE, Plan, cutmix_plan, mixup_plan
from .sampling import CutoutSpec, ErasingSpec, MixupSpec, box_from_lam, box_from_minmax, sample_beta

__all__ = ["apply", "apply_masks", "targets", "check_plan", "check_plan_fits", "Plan", "mixup_cutmix_plan", "mixup_plan",
           "cutmix_plan", "cutout_plan", "erasing_plan", "flip_partner", "roll_partner", "sample_beta",
           "box_from_lam", "box_from_minmax"]


def mixup_cutmix_plan(batch_size: int, size: Optional[tuple[int, int]], *, device=None,
                      generator: Optional[torch.Generator] = None, **options) -> Plan:
    """Draw a Mixup/CutMix plan with timm's ``Mixup`` semantics on ``device``: ``options`` are
    :class:`~fastmix.sampling.MixupSpec`'s (``mixup_alpha``, ``cutmix_alpha``, ``cutmix_minmax``,
    ``prob``, ``switch_prob``, ``mode``, ``correct_lam``, ``pairing``, ``box_style``). ``size`` is
    ``(H, W)``; None allows Mixup only (the plan then applies to any ``(B, ...)`` tensor)."""
    return MixupSpec.checked(**options).draw(batch_size, size, device, generator)


def cutout_plan(batch_size: int, size: tuple[int, int], *, device=None, generator: Optional[torch.Generator] = None,
                **options) -> Plan:
    """Draw a Cutout plan: ``options`` are :class:`~fastmix.sampling.CutoutSpec`'s
    (``n_holes``, ``length``, ``fill``, ``p``)."""
    return CutoutSpec.checked(**options).draw(batch_size, size, device, generator)


def erasing_plan(batch_size: int, size: tuple[int, int], *, device=None, generator: Optional[torch.Generator] = None,
                 **options) -> Plan:
    """Draw a Random Erasing plan: ``options`` are :class:`~fastmix.sampling.ErasingSpec`'s
    (``p``, ``scale``, ``ratio``, ``value``, ``attempts``)."""
    return ErasingSpec.checked(**options).draw(batch_size, size, device, generator)


def _field(field: str, value, shape: tuple, dtypes: tuple, device) -> None:
    """ValueError naming the plan field unless ``value`` is a tensor of ``shape`` (None: any size
    there), one of ``dtypes``, on ``device``: what the kernels index without bounds checks."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{field}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dim() != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        want = ", ".join("N" if d is None else str(d) for d in shape)
        raise ValueError(f"{field}: expected shape ({want}), got {tuple(value.shape)}")
    if value.dtype not in dtypes:
        raise ValueError(f"{field}: expected dtype {' or '.join(str(d) for d in dtypes)}, got {value.dtype}")
    if value.device != device:
        raise ValueError(f"{field}: on {value.device}, but the plan is on {device}")


def check_plan(plan: Plan, x: Optional[torch.Tensor] = None) -> None:
    """Raise a ValueError naming the field when ``plan``'s tensors are not what it documents: the
    shapes, dtypes and device the kernels index by (metadata only, free), and a partner that is a
    permutation of ``range(B)`` (:meth:`Plan.check_partner`: sampled plans skip it; a user-given
    partner is read once, a host sync on CUDA). Box coordinates and weights need no check: every
    backend clips boxes to the tensor, and a NaN weight gives NaN pixels, never a stray access.
    With ``x``, the tensor the plan applies to: the partner must have one row per sample of it, a
    per-channel fill one value per channel. A plan fastmix built from checked inputs (a sampler's,
    ``mixup_plan``'s, ``cutmix_plan``'s) has only its partner and fill count looked at again.
    """
    if not isinstance(plan, Plan):
        raise TypeError(f"plan: expected a fastmix Plan, got {type(plan).__name__}")
    compiling = torch.compiler.is_compiling()
    if not compiling and plan.__dict__.get(BUILT_HERE):
        # fields made by a sampler or constructor from checked inputs (never carried by replace)
        if x is not None and plan.fill is not None:
            _fill_fits(plan.fill, x)
        plan.check_partner()     # its values may have been written since: checked again when they were
        return
    batch_size = None if x is None else x.shape[0]
    if not isinstance(plan.partner, torch.Tensor):
        raise ValueError(f"partner: expected a torch.Tensor, got {type(plan.partner).__name__}")
    if batch_size is None and isinstance(plan.lam_self, torch.Tensor) and plan.lam_self.dim() == 1:
        batch_size = plan.lam_self.shape[0]     # then a partner of another length is the one named
    if batch_size is not None:
        _field("partner", plan.partner, (batch_size,), (torch.int64,), plan.partner.device)
    plan.check_partner()
    n, device = plan.batch_size, plan.device
    real = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
    for field in ("lam_self", "lam_partner", "label_lam"):
        _field(field, getattr(plan, field), (n,), real, device)
    _field("box", plan.box, (n, None, 4), (torch.int32,), device)
    _field("kind", plan.kind, (n,), (torch.int8,), device)
    if plan.fill is not None:
        _field("fill", plan.fill, (n, None), real + (torch.int64,), device)   # int64: exact mask ids
        if x is not None:
            _fill_fits(plan.fill, x)
    if plan.noise_seed is not None:
        _field("noise_seed", plan.noise_seed, (1,), (torch.int64,), device)
    if plan.mask is not None:
        if plan.size is None:
            raise ValueError("mask: a region mask needs the plan's size (H, W)")
        _field("mask", plan.mask, (n, *plan.size), real, device)


def _fill_fits(fill: torch.Tensor, x: torch.Tensor) -> None:
    channels = x.shape[1] if x.dim() >= 4 else 1
    if fill.shape[1] not in (1, channels):
        raise ValueError(f"fill: {fill.shape[1]} values per sample for {channels} channels")


def check_plan_fits(name: str, x: torch.Tensor, plan: Plan) -> None:
    """Raise (before anything is written) when ``plan`` cannot apply to tensor ``x``
    (:func:`check_plan`, then the plan against ``x``)."""
    check_plan(plan, x)
    if x.shape[0] != plan.batch_size:
        raise ValueError(f"{name}: batch of {x.shape[0]}, but the plan is for {plan.batch_size}")
    if x.device != plan.device:
        raise ValueError(f"{name}: on {x.device}, but the plan is on {plan.device}")
    if plan.size is not None:
        if x.dim() not in (3, 4, 5):
            raise ValueError(f"{name}: a plan with boxes needs (B, C, H, W), (B, C, T, H, W) or (B, H, W); "
                             f"got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != tuple(plan.size):
            raise ValueError(f"{name}: spatial size {tuple(x.shape[-2:])}, but the plan's boxes are for "
                             f"{tuple(plan.size)}")
    if plan.noise_seed is not None and not x.dtype.is_floating_point:
        raise TypeError(f"{name}: random-noise erasing draws N(0, 1) values and needs a floating-point "
                        f"tensor, got {x.dtype}")


def apply(x: torch.Tensor, plan: Plan, *, inplace: Optional[bool] = None) -> torch.Tensor:
    """Apply ``plan`` to ``x`` ``(B, ...)``: images, video, features.

    In place (``x`` is returned) unless ``x`` requires grad while grad mode is on, or
    ``inplace=False``: then a new tensor in ``x``'s layout, differentiable w.r.t. ``x``.
    Float32/16, bfloat16 and float64 blend in float32 (float64 in float64); uint8 blends in
    float32 and rounds half to even (timm's ``np.rint`` on its uint8 path).
    """
    needs_grad = isinstance(x, torch.Tensor) and ops.grad_wanted(x)
    if inplace is None:
        inplace = not needs_grad
    facts = known.batch("x", x, min_dim=2, writable=inplace)
    check_plan_fits("x", x, plan)
    if inplace and needs_grad:
        raise ValueError("inplace: x requires grad; in-place mixing would hide it from autograd")
    return ops.apply_known(x, plan, facts, inplace)


def apply_masks(masks: torch.Tensor, plan: Plan, *, ignore_index: int = 255) -> torch.Tensor:
    """Apply ``plan``'s boxes to integer segmentation maps ``(B, H, W)`` in place (never blended).

    CutMix rows copy the partner's box, Cutout/Erasing rows write ``ignore_index``, Mixup rows
    are left as they are; applied with the plan used for the images, masks and images match
    pixel for pixel. ``ignore_index`` must be a value ``masks``' dtype holds (uint8: 0 to 255,
    so -1 is refused; int8: -128 to 127, so the default 255 is refused).
    """
    facts = known.batch("masks", masks, dims=(3,), dtypes=_checks.MASK_DTYPES)
    info = torch.iinfo(masks.dtype)
    ignore_index = _checks.integer("ignore_index", ignore_index)
    if not info.min <= ignore_index <= info.max:
        raise ValueError(f"ignore_index: {ignore_index} does not fit masks of dtype {masks.dtype} "
                         f"({info.min} to {info.max})")
    mask_plan = plan.for_masks(ignore_index)
    check_plan_fits("masks", masks, mask_plan)
    return ops.apply_known(masks, mask_plan, facts, inplace=True)


def targets(labels: torch.Tensor, plan: Plan, num_classes: Optional[int] = None, smoothing: float = 0.0,
            *, validate: Optional[bool] = None) -> torch.Tensor:
    """Mixed soft targets ``(B, num_classes)`` float32 for ``plan``.

    ``labels`` are class indices ``(B,)`` (then ``num_classes`` is required) or soft/multi-hot
    ``(B, K)``. Smoothing uses timm's values (off = smoothing / K, on = 1 - smoothing + off).
    ``validate`` (default: on for CPU tensors, off for CUDA, where checking costs a host sync)
    checks that class indices lie in ``[0, num_classes)``; unchecked, a bad index gives a NaN
    row, never an out-of-bounds write.
    """
    check_plan(plan)
    smoothing = _checks.number("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    k = _checks.labels("labels", labels, plan.batch_size, num_classes, plan.device,
                       _checks.default_validate(validate, plan.device))
    return ops.targets_of(labels, plan, k, smoothing)
