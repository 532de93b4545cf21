"""torchvision-shaped transforms: ``MixUp`` and ``CutMix`` as in ``torchvision.transforms.v2``.

A torchvision user changes one import::

    from fastmix import v2              # was: from torchvision.transforms import v2
    cutmix_or_mixup = torchvision.transforms.v2.RandomChoice([v2.CutMix(num_classes=100),
                                                              v2.MixUp(num_classes=100)])
    images, labels = cutmix_or_mixup(images, labels)

Same semantics as torchvision: one λ ~ Beta(α, α) per batch, the batch paired with itself
rolled by one (sample ``i`` with ``i - 1``), CutMix's label weight corrected to the box area,
targets ``(B, num_classes)`` float32 without smoothing. Differences: the images are mixed in
place (``inplace=False`` to keep them), nothing is read back to the host, ``generator=`` makes
runs reproducible, and torchvision itself is not needed.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import nn
from torch.utils import _pytree

from . import _checks, ops
from .functional import apply
from .layout import spatial_size
from .plan import ROLL, Plan
from .sampling import MixupSpec


def _default_labels(inputs: Any) -> torch.Tensor:
    """torchvision's heuristic: the second item of a tuple, or the ``"labels"`` key of a dict."""
    if isinstance(inputs, (tuple, list)) and len(inputs) >= 2:
        second = inputs[1]
        if isinstance(second, torch.Tensor):
            return second
        inputs = second if isinstance(second, dict) else inputs[0]
    if isinstance(inputs, dict):
        for key, value in inputs.items():
            if isinstance(key, str) and key.lower() == "labels":
                return value
    raise ValueError("labels_getter: could not find the labels; pass (images, labels), a dict with a 'labels' "
                     "key, or a labels_getter callable")


class _BaseMixUpCutMix(nn.Module):
    def __init__(self, *, alpha: float = 1.0, num_classes: Optional[int] = None,
                 labels_getter: Union[str, Callable[[Any], torch.Tensor]] = "default", inplace: bool = True,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        super().__init__()
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)
        self._spec = MixupSpec.checked(**self._spec_options(self.alpha), pairing=ROLL)
        self.num_classes = None if num_classes is None else int(_checks.number("num_classes", num_classes, low=1))
        if labels_getter == "default":
            self._labels_getter = _default_labels
        elif callable(labels_getter):
            self._labels_getter = labels_getter
        else:
            raise ValueError(f"labels_getter: expected 'default' or a callable, got {labels_getter!r}")
        self.inplace = bool(inplace)
        self.generator = generator
        self.validate = validate

    @staticmethod
    def _spec_options(alpha: float) -> dict:
        raise NotImplementedError

    def plan(self, images: torch.Tensor) -> Plan:
        """Draw this call's plan for ``images`` (nothing is applied)."""
        return self._spec.draw(images.shape[0], spatial_size(images) if self._spec.cutmix_on else None,
                               images.device, self.generator)

    def forward(self, *inputs: Any) -> Any:
        structure = inputs if len(inputs) > 1 else inputs[0]
        labels = self._labels_getter(structure)
        leaves, spec = _pytree.tree_flatten(structure)
        batches = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor) and leaf is not labels]
        if not batches:
            raise ValueError(f"{type(self).__name__}: no image batch found beside the labels")
        first = batches[0]
        for b in batches:
            _checks.batch("images", b, dims=self._dims, writable=self.inplace)
            if b.shape[0] != first.shape[0] or b.shape[-2:] != first.shape[-2:]:
                raise ValueError(f"images: batches of shapes {tuple(first.shape)} and {tuple(b.shape)} cannot share "
                                 f"one plan")
        if isinstance(labels, torch.Tensor) and labels.dim() == 1 and labels.dtype != torch.int64:
            raise TypeError(f"labels: class indices must be int64, got {labels.dtype}")
        k = _checks.labels("labels", labels, first.shape[0], self.num_classes, first.device,
                           _checks.default_validate(self.validate, first.device))
        plan = self.plan(first)
        soft = ops.targets_of(labels, plan, k, 0.0)
        mixed = {id(b): apply(b, plan, inplace=None if self.inplace else False) for b in batches}
        out = [soft if leaf is labels else mixed.get(id(leaf), leaf) for leaf in leaves]
        return _pytree.tree_unflatten(out, spec)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}, inplace={self.inplace}"


class MixUp(_BaseMixUpCutMix):
    """torchvision's ``v2.MixUp``: ``λ * x + (1 - λ) * x.roll(1, 0)`` with one λ ~ Beta(α, α) per batch.

    Takes ``(images, labels)`` (or a structure ``labels_getter`` understands) with images
    ``(B, ...)`` float/uint8 and labels int64 ``(B,)`` (or one-hot/soft ``(B, K)``, then
    ``num_classes`` may be omitted); returns the same structure with mixed images and
    ``(B, num_classes)`` float32 targets.
    """

    _dims = None

    @staticmethod
    def _spec_options(alpha: float) -> dict:
        return dict(mixup_alpha=alpha)


class CutMix(_BaseMixUpCutMix):
    """torchvision's ``v2.CutMix``: one box per batch of side ``sqrt(1 - λ)``, pasted from ``x.roll(1, 0)``.

    The label weight is corrected to the exact fraction of pixels kept. Images are
    ``(B, C, H, W)`` or ``(B, C, T, H, W)``; see :class:`MixUp` for the rest.
    """

    _dims = (4, 5)

    @staticmethod
    def _spec_options(alpha: float) -> dict:
        return dict(mixup_alpha=0.0, cutmix_alpha=alpha, box_style="torchvision")
