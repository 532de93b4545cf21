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

from . import _checks, known, ops
from .layout import spatial_size
from .plan import Plan
from .sampling import CutoutSpec, ErasingSpec, MixupSpec


def _spec_attribute(field: str, doc: str) -> property:
    """A timm attribute that lives in the transform's spec: reading it reads the spec, setting it
    re-checks the spec (timm users adjust ``mix_prob`` or ``mixup_alpha`` during training)."""
    return property(lambda self: getattr(self._spec, field),
                    lambda self, value: setattr(self, "_spec", self._spec.replace(**{field: value})), doc=doc)


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
        multi_label: targets are dense multi-hot ``(B, num_classes)`` (any dtype, taken as
            float like timm's ``target.float()``), smoothed towards 0.5 (``y * (1 - ε) + ε / 2``)
            instead of towards ``ε / K`` (timm 1.0's ``multi_label``).
        generator: a ``torch.Generator`` on the batch's device, for reproducible runs. In
            DataLoader workers each worker derives its own stream from it (and the worker's seed),
            so workers draw different plans, reproducibly. Not under ``torch.compile``: dynamo
            cannot put a ``torch.Generator`` into a graph; draw the plan eagerly
            (:meth:`plan`) and compile ``F.apply``/``F.targets`` with it.
        validate: check class indices are in range (default: CPU batches only, and never under
            ``torch.compile``, where the check would branch on data; see
            :func:`fastmix.functional.targets`).

    Calling it with ``(x, target)`` returns ``(x, soft_target)``: ``x`` is mixed in place
    (out of place and differentiable when it requires grad). Beyond timm: odd batch sizes
    (the middle sample pairs with itself and stays as it is), no Python loop over samples in
    any mode, ``uint8``/``bfloat16`` inputs, soft labels ``(B, K)``, and ``generator=``. Float
    class indices ``(B,)`` are truncated to integers, as timm's ``target.long()`` does.
    """

    mixup_alpha = _spec_attribute("mixup_alpha", "Beta concentration of Mixup (0: off).")
    cutmix_alpha = _spec_attribute("cutmix_alpha", "Beta concentration of CutMix (0: off).")
    cutmix_minmax = _spec_attribute("cutmix_minmax", "CutMix box side bounds as fractions, or None.")
    mix_prob = _spec_attribute("prob", "Probability that a batch / pair / sample is mixed.")
    switch_prob = _spec_attribute("switch_prob", "Probability of CutMix when both are on.")
    mode = _spec_attribute("mode", "'batch', 'pair' or 'elem'.")
    correct_lam = _spec_attribute("correct_lam", "CutMix label weight = the exact share of pixels kept.")

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                 cutmix_minmax: Optional[Sequence[float]] = None, prob: float = 1.0, switch_prob: float = 0.5,
                 mode: str = "batch", correct_lam: bool = True, label_smoothing: float = 0.1,
                 num_classes: int = 1000, multi_label: bool = False, *, generator: Optional[torch.Generator] = None,
                 validate: Optional[bool] = None):
        self._spec = MixupSpec.checked(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
                                       cutmix_minmax=cutmix_minmax, prob=prob, switch_prob=switch_prob, mode=mode,
                                       correct_lam=correct_lam)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, low=0.0, high=1.0,
                                              high_open=True)
        self.num_classes = _checks.integer("num_classes", num_classes, low=1)
        self.multi_label = bool(multi_label)
        self.generator = generator
        self.validate = validate
        self.mixup_enabled = True  # timm's switch for turning mixing off late in training

    def plan(self, x: torch.Tensor, *, mode: Optional[str] = None) -> Plan:
        """Draw this step's plan for batch ``x`` (nothing is applied); ``mode`` overrides
        ``self.mode`` for this draw (FastCollateMixup's ``"half"`` draws per sample)."""
        return self._sample(x, mode=mode)[0]

    def _sample(self, x: torch.Tensor, target: Optional[torch.Tensor] = None, *, mode: Optional[str] = None):
        """``(plan, soft targets or None)``: on CUDA one launch draws both (with ``target``)."""
        spec = self._spec if mode is None else self._spec.replace(mode=mode)
        return spec.sample(x.shape[0], spatial_size(x) if spec.cutmix_on else None, x.device, self.generator,
                           prob=None if self.mixup_enabled else 0.0, labels=target,
                           num_classes=self.num_classes, smoothing=self.label_smoothing)

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if not isinstance(x, torch.Tensor):
            _checks.tensor("x", x)
        needs_grad = x.requires_grad and torch.is_grad_enabled()      # ops.grad_wanted, written out
        spec = self._spec
        cut = spec.cutmix_alpha > 0
        facts = known.batch("x", x, dims=(4, 5) if cut else None, writable=not needs_grad)
        if self.multi_label or type(target) is not torch.Tensor or target.dim() != 1 or target.dtype.is_floating_point:
            target = self._as_timm_takes_it(target)                   # else: class indices, as timm takes them
        validate = self.validate
        _checks.labels("target", target, x.shape[0], self.num_classes, x.device,
                       _checks.default_validate(validate, x.device) if validate is None else validate)
        if self.multi_label:
            # timm smooths multi-hot targets towards 0.5; smoothing is affine, so smoothing the
            # mix equals mixing the smoothed targets
            plan = self.plan(x)
            soft = ops.targets_of(target, plan, self.num_classes, 0.0)
            if self.label_smoothing:
                soft.mul_(1.0 - self.label_smoothing).add_(0.5 * self.label_smoothing)
        else:
            draw = spec._prepared(x.shape[0], spatial_size(x) if cut else None, x.device)
            plan, soft = draw.sample(self.generator, spec.prob if self.mixup_enabled else 0.0, target, self.num_classes,
                                     self.label_smoothing, not needs_grad)
            if soft is None:
                soft = ops.targets_of(target, plan, self.num_classes, self.label_smoothing)
        return ops.apply_known(x, plan, facts, inplace=not needs_grad), soft

    def _as_timm_takes_it(self, target):
        """Targets as timm's ``mixup_target`` reads them: with ``multi_label`` a dense
        ``(B, num_classes)`` tensor taken as float; otherwise class indices ``(B,)`` or a
        ``(B, 1)`` column of them (timm's ``.view(-1, 1)``), float ones truncated towards zero
        (timm's ``.long()``). Anything else is left to the label checks."""
        if not isinstance(target, torch.Tensor):
            return target
        if self.multi_label:
            if target.dim() != 2 or target.shape[1] != self.num_classes:
                raise ValueError(f"target: multi_label=True expects dense targets (B, num_classes={self.num_classes}), "
                                 f"got shape {tuple(target.shape)}")
            return target if target.dtype.is_floating_point else target.float()
        if target.dim() == 2 and target.shape[1] == 1 and self.num_classes > 1:
            target = target[:, 0]
        if target.dim() == 1 and target.dtype.is_floating_point:
            return target.long()
        return target


class Cutout:
    """Cutout (DeVries & Taylor, 2017) on a batch, per sample, in place.

    ``n_holes`` squares of side ``length`` with uniform centres (clipped at the border), filled
    with ``fill`` (a number or one per channel); each sample is cut with probability ``p``.
    Labels are unchanged, so the call takes and returns the images only.
    """

    n_holes = _spec_attribute("n_holes", "Holes per sample.")
    length = _spec_attribute("length", "Side of a hole in pixels.")
    fill = _spec_attribute("fill", "Value inside the holes (one, or one per channel).")
    p = _spec_attribute("p", "Probability that a sample is cut.")

    def __init__(self, n_holes: int = 1, length: int = 16, fill: Union[float, Sequence[float]] = 0.0,
                 p: float = 1.0, *, generator: Optional[torch.Generator] = None):
        self._spec = CutoutSpec.checked(n_holes=n_holes, length=length, fill=fill, p=p)
        self.generator = generator

    def plan(self, x: torch.Tensor) -> Plan:
        return self._spec.draw(x.shape[0], spatial_size(x), x.device, self.generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        facts, inplace = _check_images(x, "fill", self._spec.fill)
        plan = self._spec.draw(x.shape[0], spatial_size(x), x.device, self.generator, reuse=inplace)
        return ops.apply_known(x, plan, facts, inplace)


class RandomErasing:
    """Random Erasing (Zhong et al., 2017) on a batch: an independent box per sample, in place.

    Arguments as torchvision's ``RandomErasing``: ``p`` per sample, box area ``U(scale)`` of
    the image, aspect ratio log-uniform in ``ratio``, ``value`` a number, one per channel, or
    ``"random"`` (N(0, 1) noise per pixel, for normalised float images).
    """

    p = _spec_attribute("p", "Probability that a sample is erased.")
    scale = _spec_attribute("scale", "Range of the erased area as a fraction of the image.")
    ratio = _spec_attribute("ratio", "Range of the erased box's aspect ratio.")
    value = _spec_attribute("value", "Fill: a number, one per channel, or 'random'.")

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                 ratio: Sequence[float] = (0.3, 3.3), value: Union[float, Sequence[float], str] = 0.0, *,
                 generator: Optional[torch.Generator] = None):
        self._spec = ErasingSpec.checked(p=p, scale=scale, ratio=ratio, value=value)
        self.generator = generator

    def plan(self, x: torch.Tensor) -> Plan:
        return self._spec.draw(x.shape[0], spatial_size(x), x.device, self.generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        facts, inplace = _check_images(x, "value", None if self._spec.random_value else self._spec.value)
        if self._spec.random_value and not x.dtype.is_floating_point:
            raise TypeError(f"x: value='random' draws N(0, 1) noise and needs a floating-point batch, got {x.dtype}")
        plan = self._spec.draw(x.shape[0], spatial_size(x), x.device, self.generator, reuse=inplace)
        return ops.apply_known(x, plan, facts, inplace)


def _check_images(x: torch.Tensor, name: str, fill):
    """``(Known facts, in place)`` of an image batch ``x`` that the fill (argument ``name``: a
    number, one per channel, or None) applies to; on uint8 every fill value must be one a uint8
    holds (timm and torchvision would write a wrapped or clamped value: 300 is refused here, not
    silently 255)."""
    _checks.tensor("x", x)
    inplace = not ops.grad_wanted(x)
    facts = known.batch("x", x, dims=(4, 5), writable=inplace)
    if isinstance(fill, tuple) and len(fill) not in (1, x.shape[1]):
        raise ValueError(f"{name}: {len(fill)} values for {x.shape[1]} channels")
    if fill is not None and x.dtype == torch.uint8:
        values = fill if isinstance(fill, tuple) else (fill,)
        bad = [v for v in values if not 0 <= v <= 255]
        if bad:
            raise ValueError(f"{name}: {bad[0]} does not fit a uint8 batch (0 to 255)")
    return facts, inplace
