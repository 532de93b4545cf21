"""timm-shaped transforms: ``Mixup`` (Mixup/CutMix, three modes), ``Cutout``, ``RandomErasing``.

A timm user changes one import::

    from fastmix import Mixup          # was: from timm.data import Mixup
    mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=1000)
    x, target = mixup_fn(x, y)         # x mixed in place, target (B, 1000) float32

Each call samples a plan on the batch's device (no host sync) and applies it in one pass.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from . import _checks, ops
from .functional import apply
from .layout import spatial_size
from .plan import Plan, cutout_plan, erasing_plan, mixup_cutmix_plan


class Mixup:
    """Mixup and CutMix on a batch, with timm's ``Mixup`` arguments and meaning.

    Args:
        mixup_alpha: Beta(α, α) concentration for Mixup; 0 disables Mixup.
        cutmix_alpha: Beta(α, α) concentration for CutMix; 0 disables CutMix.
        cutmix_minmax: ``(min, max)`` box side as a fraction of the image; overrides
            ``cutmix_alpha`` (as in timm).
        prob: probability of mixing a batch / pair / sample.
        switch_prob: probability of CutMix instead of Mixup when both are enabled.
        mode: ``"batch"`` (one draw per batch), ``"pair"`` (per flipped pair), ``"elem"``
            (per sample).
        correct_lam: make CutMix's label weight the exact fraction of pixels kept.
        label_smoothing: ε of the targets (off = ε / K, on = 1 - ε + ε / K).
        num_classes: number of classes ``K`` of the targets.
        generator: a ``torch.Generator`` on the batch's device, for reproducible runs.
        validate: check class indices are in range (default: CPU batches only; see
            :func:`fastmix.functional.targets`).

    Calling it with ``(x, target)`` returns ``(x, soft_target)``: ``x`` is mixed in place
    (out of place and differentiable when it requires grad). Beyond timm: odd batch sizes
    (the middle sample pairs with itself and stays as it is), no Python loop over samples in
    any mode, ``uint8``/``bfloat16`` inputs, soft labels ``(B, K)``, and ``generator=``.
    """

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                 cutmix_minmax: Optional[Sequence[float]] = None, prob: float = 1.0, switch_prob: float = 0.5,
                 mode: str = "batch", correct_lam: bool = True, label_smoothing: float = 0.1,
                 num_classes: int = 1000, *, generator: Optional[torch.Generator] = None,
                 validate: Optional[bool] = None):
        self.mixup_alpha = _checks.alpha("mixup_alpha", mixup_alpha, allow_zero=True)
        self.cutmix_alpha = _checks.alpha("cutmix_alpha", cutmix_alpha, allow_zero=True)
        self.cutmix_minmax = None
        if cutmix_minmax is not None:
            lo, hi = _checks.pair("cutmix_minmax", cutmix_minmax, positive=True)
            if hi > 1.0 or lo >= hi:
                raise ValueError(f"cutmix_minmax: expected 0 < min < max <= 1, got {tuple(cutmix_minmax)}")
            self.cutmix_minmax = (lo, hi)
            self.cutmix_alpha = 1.0
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("mixup_alpha, cutmix_alpha: one of them (or cutmix_minmax) must enable a mix")
        self.mix_prob = _checks.probability("prob", prob)
        self.switch_prob = _checks.probability("switch_prob", switch_prob)
        if mode not in ("batch", "pair", "elem"):
            raise ValueError(f"mode: expected 'batch', 'pair' or 'elem', got {mode!r}")
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, low=0.0, high=1.0,
                                              high_open=True)
        self.num_classes = int(_checks.number("num_classes", num_classes, low=1))
        self.generator = generator
        self.validate = validate
        self.mixup_enabled = True  # timm's switch for turning mixing off late in training

    @property
    def _cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0 or self.cutmix_minmax is not None

    def plan(self, x: torch.Tensor, *, mode: Optional[str] = None) -> Plan:
        """Draw this step's plan for batch ``x`` (nothing is applied); ``mode`` overrides
        ``self.mode`` for this draw (FastCollateMixup's ``"half"`` draws per sample)."""
        return mixup_cutmix_plan(
            x.shape[0], spatial_size(x) if self._cutmix_on else None, mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha, cutmix_minmax=self.cutmix_minmax,
            prob=self.mix_prob if self.mixup_enabled else 0.0, switch_prob=self.switch_prob,
            mode=self.mode if mode is None else mode,
            correct_lam=self.correct_lam, pairing="flip", device=x.device, generator=self.generator)

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        _checks.batch("x", x, min_dim=2, dims=(4, 5) if self._cutmix_on else None,
                      writable=not (x.requires_grad and torch.is_grad_enabled()))
        checked = _checks.default_validate(self.validate, x.device)
        _checks.labels("target", target, x.shape[0], self.num_classes, x.device, checked)
        plan = self.plan(x)
        soft = ops.targets_of(target, plan, self.num_classes, self.label_smoothing, checked)
        return apply(x, plan), soft


class Cutout:
    """Cutout (DeVries & Taylor, 2017) on a batch, per sample, in place.

    ``n_holes`` squares of side ``length`` with uniform centres (clipped at the border), filled
    with ``fill`` (a number or one per channel); each sample is cut with probability ``p``.
    Labels are unchanged, so the call takes and returns the images only.
    """

    def __init__(self, n_holes: int = 1, length: int = 16, fill: Union[float, Sequence[float]] = 0.0,
                 p: float = 1.0, *, generator: Optional[torch.Generator] = None):
        self.n_holes = int(_checks.number("n_holes", n_holes, low=1))
        self.length = int(_checks.number("length", length, low=0))
        self.fill = _fill_value("fill", fill)
        self.p = _checks.probability("p", p)
        self.generator = generator

    def plan(self, x: torch.Tensor) -> Plan:
        return cutout_plan(x.shape[0], spatial_size(x), n_holes=self.n_holes, length=self.length, fill=self.fill,
                           p=self.p, device=x.device, generator=self.generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.fill)
        return apply(x, self.plan(x))


class RandomErasing:
    """Random Erasing (Zhong et al., 2017) on a batch: an independent box per sample, in place.

    Arguments as torchvision's ``RandomErasing``: ``p`` per sample, box area ``U(scale)`` of
    the image, aspect ratio log-uniform in ``ratio``, ``value`` a number, one per channel, or
    ``"random"`` (N(0, 1) noise per pixel, for normalised float images).
    """

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                 ratio: Sequence[float] = (0.3, 3.3), value: Union[float, Sequence[float], str] = 0.0, *,
                 generator: Optional[torch.Generator] = None):
        self.p = _checks.probability("p", p)
        self.scale = _checks.pair("scale", scale)
        if self.scale[0] < 0 or self.scale[1] > 1:
            raise ValueError(f"scale: expected values in [0, 1], got {tuple(scale)}")
        self.ratio = _checks.pair("ratio", ratio, positive=True)
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"value: expected a number, a sequence of numbers or 'random', got {value!r}")
            self.value = value
        else:
            self.value = _fill_value("value", value)
        self.generator = generator

    def plan(self, x: torch.Tensor) -> Plan:
        return erasing_plan(x.shape[0], spatial_size(x), p=self.p, scale=self.scale, ratio=self.ratio,
                            value=self.value, device=x.device, generator=self.generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, None if isinstance(self.value, str) else self.value)
        if isinstance(self.value, str) and not x.dtype.is_floating_point:
            raise TypeError(f"x: value='random' draws N(0, 1) noise and needs a floating-point batch, got {x.dtype}")
        return apply(x, self.plan(x))


def _fill_value(name: str, value) -> Union[float, tuple[float, ...]]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _checks.number(name, value)
    if isinstance(value, Sequence) and len(value) > 0:
        return tuple(_checks.number(f"{name}[{i}]", v) for i, v in enumerate(value))
    raise TypeError(f"{name}: expected a number or a sequence of numbers, got {value!r}")


def _check_images(x: torch.Tensor, fill) -> None:
    _checks.batch("x", x, dims=(4, 5), writable=not (x.requires_grad and torch.is_grad_enabled()))
    if isinstance(fill, tuple) and len(fill) not in (1, x.shape[1]):
        raise ValueError(f"fill: {len(fill)} values for {x.shape[1]} channels")
