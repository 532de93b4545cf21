"""torchvision-shaped transforms: ``MixUp`` and ``CutMix`` as in ``torchvision.transforms.v2``.

A torchvision user changes one import::

    from fastmix import v2              # was: from torchvision.transforms import v2
    cutmix_or_mixup = torchvision.transforms.v2.RandomChoice([v2.CutMix(num_classes=100),
                                                              v2.MixUp(num_classes=100)])
    images, labels = cutmix_or_mixup(images, labels)

Same semantics as torchvision: one λ ~ Beta(α, α) per batch, the batch paired with itself
rolled by one (sample ``i`` with ``i - 1``), CutMix's label weight corrected to the box area,
targets ``(B, num_classes)`` float32 without smoothing, and torchvision's reading of a sample
(which leaf is the image batch, where the labels are, what is refused). Differences: the
images are mixed in place (``inplace=False`` to keep them), any ``(B, ...)`` rank for MixUp and
uint8 batches are taken, targets are float32 whatever the labels' float dtype, nothing is read
back to the host, ``generator=`` makes runs reproducible, and torchvision itself is not needed.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import torch
from torch import nn
from torch.utils import _pytree

from . import _checks, known, ops
from .functional import apply
from .layout import spatial_size
from .partners import ROLL
from .plan import Plan
from .sampling import MixupSpec

# --------------------------------------------------------------------------------------------
# the sample's structure, read as torchvision's v2 transforms read it (transforms/v2/_utils.py,
# _transform.py, _augment.py of torchvision 0.29). torchvision is never imported here: its
# tv_tensors are recognised only when the user's program has imported it, and without that no
# tv_tensor can exist.
# --------------------------------------------------------------------------------------------


def _tv_tensors():
    """torchvision's ``tv_tensors`` module when torchvision is imported, else None."""
    return sys.modules.get("torchvision.tv_tensors")


def _is_pure_tensor(value: Any) -> bool:
    """A ``torch.Tensor`` that is not a tv_tensor (torchvision's ``is_pure_tensor``)."""
    tv = _tv_tensors()
    return isinstance(value, torch.Tensor) and not (tv is not None and isinstance(value, tv.TVTensor))


def _is_refused(value: Any) -> bool:
    """PIL images, bounding boxes, keypoints and masks: torchvision's MixUp/CutMix refuse them
    (a box or a class map cannot be blended; CutMix of boxes is undefined there)."""
    tv = _tv_tensors()
    if tv is not None:
        kinds = tuple(k for k in (getattr(tv, n, None) for n in ("BoundingBoxes", "Mask", "KeyPoints")) if k)
        if isinstance(value, kinds):
            return True
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def _image_batches(leaves: list, labels: torch.Tensor) -> list:
    """The leaves to mix, by torchvision's rule: every ``tv_tensors.Image`` and ``Video`` of the
    sample; without any, the first pure tensor in depth-first order. Other tensors (ids, depth
    maps, a plain tensor beside an Image) pass through untouched. One deliberate difference:
    the labels are never taken as the image (torchvision does when they come first, e.g. in
    ``{"label": y, "image": x}``, and then mixes no image at all)."""
    tv = _tv_tensors()
    if tv is not None:
        explicit = [leaf for leaf in leaves if isinstance(leaf, (tv.Image, tv.Video))]
        if explicit:
            return explicit
    return [leaf for leaf in leaves if _is_pure_tensor(leaf) and leaf is not labels][:1]


def _default_labels(inputs: Any) -> torch.Tensor:
    """torchvision's default labels getter: the second item of a tuple/list when it is a tensor;
    else, in a dict (the second item, or the whole sample), the value under the key ``"labels"``
    (any case), failing that under the first key containing ``"label"`` (``"label"``,
    ``"class_label"``)."""
    if isinstance(inputs, (tuple, list)):
        if len(inputs) < 2:
            raise ValueError(f"labels_getter: the default getter takes the labels from the second item of the "
                             f"inputs, but got {len(inputs)} item(s); pass (images, labels) or a labels_getter")
        inputs = inputs[1]
    if _is_pure_tensor(inputs):
        return inputs
    if not isinstance(inputs, Mapping):
        raise ValueError(f"labels_getter: the default getter needs a dict or a pair whose second item is a tensor "
                         f"or a dict, got {type(inputs).__name__}; pass a labels_getter callable")
    keys = [key for key in inputs if isinstance(key, str)]
    key = next((k for k in keys if k.lower() == "labels"), None)
    if key is None:
        key = next((k for k in keys if "label" in k.lower()), None)
    if key is None:
        raise ValueError(f"labels_getter: no label-like key among {list(inputs)[:8]}; pass a labels_getter callable")
    return inputs[key]


def _no_labels(inputs: Any) -> None:
    return None


class _BaseMixUpCutMix(nn.Module):
    def __init__(self, *, alpha: float = 1.0, num_classes: Optional[int] = None,
                 labels_getter: Union[str, Callable[[Any], torch.Tensor], None] = "default", inplace: bool = True,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        super().__init__()
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)
        self._spec = MixupSpec.checked(**self._spec_options(self.alpha), pairing=ROLL)
        self.num_classes = None if num_classes is None else _checks.integer("num_classes", num_classes, low=1)
        if labels_getter == "default":
            self._labels_getter = _default_labels
        elif callable(labels_getter):
            self._labels_getter = labels_getter
        elif labels_getter is None:       # torchvision accepts it, then finds no labels at call time
            self._labels_getter = _no_labels
        else:
            raise ValueError(f"labels_getter: expected 'default', a callable or None, got {labels_getter!r}")
        self.inplace = bool(inplace)
        self.generator = generator
        self.validate = validate

    _dims: Optional[tuple] = None    # the ranks an image batch may have (None: any (B, ...))
    _boxes = False                   # the plan has boxes: every batch needs the same (H, W)

    @staticmethod
    def _spec_options(alpha: float) -> dict:
        raise NotImplementedError

    def plan(self, images: torch.Tensor) -> Plan:
        """Draw this call's plan for ``images`` (nothing is applied)."""
        return self._spec.draw(images.shape[0], spatial_size(images) if self._spec.cutmix_on else None,
                               images.device, self.generator)

    def forward(self, *inputs: Any) -> Any:
        if (len(inputs) == 2 and self._labels_getter is _default_labels and type(inputs[0]) is torch.Tensor
                and type(inputs[1]) is torch.Tensor and inputs[0] is not inputs[1]):
            return self._images_and_labels(*inputs)    # the common call: nothing to flatten
        structure = inputs if len(inputs) > 1 else inputs[0]
        leaves, spec = _pytree.tree_flatten(structure)
        if any(_is_refused(leaf) for leaf in leaves):
            raise ValueError(f"inputs: {type(self).__name__} does not mix PIL images, bounding boxes, keypoints or "
                             f"masks (as torchvision's); mix the images and labels, then apply the plan to masks "
                             f"with fastmix.functional.apply_masks")
        labels = self._labels_getter(structure)
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"labels: expected a tensor from labels_getter, got {type(labels).__name__}")
        if not any(leaf is labels for leaf in leaves):
            raise ValueError("labels_getter: returned a tensor that is not part of the inputs")
        batches = _image_batches(leaves, labels)
        if not batches:
            arrays = [leaf for leaf in leaves if type(leaf).__module__ == "numpy" and hasattr(leaf, "shape")]
            if arrays:
                raise TypeError(f"images: expected a torch.Tensor, got {type(arrays[0]).__name__}; convert it with "
                                f"torch.from_numpy")
            raise ValueError(f"inputs: {type(self).__name__} found no image batch beside the labels")
        first = batches[0]
        for b in batches:
            _checks.batch("images", b, dims=self._dims, writable=self.inplace)
            if (b.shape[0] != first.shape[0] or b.device != first.device
                    or (self._boxes and b.shape[-2:] != first.shape[-2:])):
                raise ValueError(f"images: batches of shapes {tuple(first.shape)} on {first.device} and "
                                 f"{tuple(b.shape)} on {b.device} cannot share one plan")
        # torchvision takes integer or bool one-hot (B, K) labels as float
        if labels.dim() == 2 and (labels.dtype == torch.bool or not (labels.dtype.is_floating_point
                                                                      or labels.dtype.is_complex)):
            labels_in = labels.float()
        else:
            labels_in = labels
        k = _checks.labels("labels", labels_in, first.shape[0], self.num_classes, first.device,
                           _checks.default_validate(self.validate, first.device))
        plan, soft = self._spec.sample(first.shape[0], spatial_size(first) if self._spec.cutmix_on else None,
                                       first.device, self.generator, labels=labels_in, num_classes=k)
        if soft is None:
            soft = ops.targets_of(labels_in, plan, k, 0.0)
        mixed = {id(b): self._mixed(b, plan) for b in batches}
        out = [soft if leaf is labels else mixed.get(id(leaf), leaf) for leaf in leaves]
        return _pytree.tree_unflatten(out, spec)

    def _images_and_labels(self, images: torch.Tensor, labels: torch.Tensor):
        """``forward(images, labels)`` with two plain tensors: what torchvision's reading of the
        sample gives for them (the images are the first plain tensor, the labels the second item),
        checked once, without flattening a structure."""
        facts = known.batch("images", images, dims=self._dims, writable=self.inplace)
        labels_in = labels.float() if labels.dim() == 2 and (labels.dtype == torch.bool or not (
            labels.dtype.is_floating_point or labels.dtype.is_complex)) else labels
        k = _checks.labels("labels", labels_in, images.shape[0], self.num_classes, images.device,
                           _checks.default_validate(self.validate, images.device))
        inplace = self.inplace and not ops.grad_wanted(images)
        plan, soft = self._spec.sample(images.shape[0], spatial_size(images) if self._boxes else None, images.device,
                                       self.generator, labels=labels_in, num_classes=k, reuse=inplace)
        if soft is None:
            soft = ops.targets_of(labels_in, plan, k, 0.0)
        return ops.apply_known(images, plan, facts, inplace), soft

    def _mixed(self, images: torch.Tensor, plan: Plan) -> torch.Tensor:
        """``images`` mixed by ``plan`` (in place unless ``inplace=False``); a tv_tensor stays one."""
        out = apply(images, plan, inplace=None if self.inplace else False)
        tv = _tv_tensors()
        if out is not images and tv is not None and isinstance(images, tv.TVTensor):
            out = tv.wrap(out, like=images)
        return out

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}, inplace={self.inplace}"


class MixUp(_BaseMixUpCutMix):
    """torchvision's ``v2.MixUp``: ``λ * x + (1 - λ) * x.roll(1, 0)`` with one λ ~ Beta(α, α) per batch.

    Takes ``(images, labels)`` or any structure of tuples, lists and dicts (the labels found by
    ``labels_getter``, by default as torchvision's: see :func:`_default_labels`) with images
    ``(B, ...)`` float/uint8 and labels as class indices ``(B,)`` or one-hot/soft ``(B, K)``
    (integer or bool ones taken as float, as torchvision does; then ``num_classes`` may be
    omitted). The images are every ``tv_tensors.Image``/``Video`` of the sample, else its first
    plain tensor (torchvision's rule, see :func:`_image_batches`); every other leaf passes
    through untouched, and PIL images, bounding boxes, keypoints and masks are refused with a
    ValueError as in torchvision. Returns the same structure with the images mixed (a
    tv_tensor stays one) and ``(B, num_classes)`` float32 targets in the labels' place.
    """

    @staticmethod
    def _spec_options(alpha: float) -> dict:
        return dict(mixup_alpha=alpha)


class CutMix(_BaseMixUpCutMix):
    """torchvision's ``v2.CutMix``: one box per batch of side ``sqrt(1 - λ)``, pasted from ``x.roll(1, 0)``.

    The label weight is corrected to the exact fraction of pixels kept. Images are
    ``(B, C, H, W)`` or ``(B, C, T, H, W)``; see :class:`MixUp` for the rest.
    """

    _dims = (4, 5)
    _boxes = True

    @staticmethod
    def _spec_options(alpha: float) -> dict:
        return dict(mixup_alpha=0.0, cutmix_alpha=alpha, box_style="torchvision")
