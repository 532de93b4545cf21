"""timm's collate-time mixing: :class:`FastCollateMixup`, a DataLoader ``collate_fn``.

timm's training script, with its prefetcher on, mixes while the DataLoader collates uint8
samples (``timm.data.FastCollateMixup``): a Python loop over the samples, each widened to a
float32 numpy copy, blended, rounded and copied into the batch. Here the batch is built once
(one ``torch.stack`` of the samples), one plan is drawn for it, and the plan is applied in place
in one pass, with the soft targets from the same plan::

    from fastmix import FastCollateMixup      # was: from timm.data import FastCollateMixup
    collate = FastCollateMixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=1000)
    loader = DataLoader(dataset, batch_size=256, collate_fn=collate, num_workers=8)
    for images, target in loader:            # images (B, C, H, W) uint8 mixed, target (B, 1000) float32
        ...
"""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from typing import Optional, Sequence

import torch
from torch.utils.data import default_collate, get_worker_info

from .functional import apply, targets
from .plan import NONE, Plan
from .transforms import Mixup

MODES = ("batch", "pair", "elem", "half")


class FastCollateMixup(Mixup):
    """Mixup/CutMix while collating uint8 samples, with timm 1.0.31's ``FastCollateMixup`` arguments.

    Args: those of :class:`fastmix.Mixup` (timm's ``Mixup``), plus

        mode: ``"batch"``, ``"pair"``, ``"elem"`` as in :class:`fastmix.Mixup`, or ``"half"``
            (timm's): the first ``B // 2`` samples each mix with a partner from the second half
            (sample ``i`` with ``B - 1 - i``, one draw per sample) and only they are returned,
            so every image in the batch is seen once, mixed or not.
        multi_label: labels are dense ``(num_classes,)`` multi-hot vectors, smoothed towards 0.5
            (``y * (1 - ε) + ε / 2``) before mixing, as timm's ``multi_label``.

    Called with a list of ``(image, label)`` samples, each image a ``(C, H, W)`` uint8 numpy array
    or tensor (all of one shape), each label a class index (or a multi-hot vector), it returns
    ``(images, target)``: ``images`` ``(B, C, H, W)`` uint8, a new tensor mixed in place (its first
    ``B // 2`` rows in ``"half"`` mode, a view of the collated batch), rounded half to even like
    timm's ``np.rint``; ``target`` ``(B, num_classes)`` float32 (``B // 2`` rows in ``"half"``).
    The samples are never modified (timm's ``"half"`` and ``"pair"`` CutMix write into them).

    Beyond timm: odd batch sizes (timm asserts an even batch; the middle sample of an odd batch
    pairs with itself and stays as it is) and ``generator=``. The draws use torch's generator, not
    numpy's: in DataLoader workers a generator passed here is copied into every worker with the
    same state, so each worker derives its own stream from it and the seed torch gives the worker
    (``fastmix.sampling._stream``): workers draw different plans, reproducibly when the
    DataLoader is seeded; with ``generator`` None each worker's torch seed differs anyway.
    """

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                 cutmix_minmax: Optional[Sequence[float]] = None, prob: float = 1.0, switch_prob: float = 0.5,
                 mode: str = "batch", correct_lam: bool = True, label_smoothing: float = 0.1,
                 num_classes: int = 1000, multi_label: bool = False, *,
                 generator: Optional[torch.Generator] = None):
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
        super().__init__(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax,
                         prob=prob, switch_prob=switch_prob, mode="elem" if mode == "half" else mode,
                         correct_lam=correct_lam, label_smoothing=label_smoothing, num_classes=num_classes,
                         generator=generator, validate=True)
        self.mode = mode
        self.multi_label = bool(multi_label)

    @property
    def mode(self) -> str:
        """``"batch"``, ``"pair"``, ``"elem"`` or ``"half"`` (drawn per sample, on the first half)."""
        return self._collate_mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {value!r}")
        self._spec = self._spec.replace(mode="elem" if value == "half" else value)
        self._collate_mode = value

    def plan(self, x: torch.Tensor, *, mode: Optional[str] = None) -> Plan:
        """This call's plan for the collated batch ``x`` (B, C, H, W); in ``"half"`` mode the rows
        of the second half draw nothing (they are only read, as partners)."""
        mode = mode or self.mode
        if mode != "half":
            return super().plan(x, mode=mode)
        return _only_first_rows(super().plan(x, mode="elem"), x.shape[0] // 2)

    def __call__(self, batch, _=None):
        images = stack_images(batch)
        labels = default_collate([sample[1] for sample in batch])
        if self.multi_label:
            labels = _smoothed_multi_hot(labels, self.num_classes, self.label_smoothing)
        plan = self.plan(images)
        smoothing = 0.0 if self.multi_label else self.label_smoothing
        # targets first: they validate the labels before the images are written
        soft = targets(labels, plan, self.num_classes, smoothing, validate=True)
        apply(images, plan)
        if self.mode == "half":
            kept = images.shape[0] // 2
            return images[:kept], soft[:kept]
        return images, soft


def stack_images(batch) -> torch.Tensor:
    """The images of ``(image, label)`` samples as one new ``(B, C, H, W)`` uint8 tensor (one copy).

    Each image is a ``(C, H, W)`` uint8 numpy array or tensor; numpy arrays are wrapped without a
    copy (``torch.from_numpy``), so ``torch.stack`` writes each byte once.
    """
    if not isinstance(batch, Sequence) or len(batch) == 0:
        raise ValueError(f"batch: expected a non-empty list of (image, label) samples, got {batch!r:.80}")
    numpy = sys.modules.get("numpy")   # not a dependency: without it imported, no sample is an array
    images = []
    for i, sample in enumerate(batch):
        if not isinstance(sample, (tuple, list)) or len(sample) < 2:
            raise TypeError(f"batch[{i}]: expected an (image, label) pair, got {type(sample).__name__}")
        image = sample[0]
        if numpy is not None and isinstance(image, numpy.ndarray):
            if image.dtype != numpy.uint8:
                raise TypeError(f"batch[{i}][0]: expected a uint8 image, got numpy {image.dtype}")
            # from_numpy refuses negative strides (a flipped view, say): those few are copied first
            image = torch.from_numpy(image if min(image.strides, default=0) >= 0 else numpy.ascontiguousarray(image))
        elif not isinstance(image, torch.Tensor):
            raise TypeError(f"batch[{i}][0]: expected a numpy array or tensor, got {type(image).__name__}")
        elif image.dtype != torch.uint8:
            raise TypeError(f"batch[{i}][0]: expected a uint8 image, got {image.dtype}")
        if image.dim() != 3:
            raise ValueError(f"batch[{i}][0]: expected a (C, H, W) image, got shape {tuple(image.shape)}")
        if images and image.shape != images[0].shape:
            raise ValueError(f"batch[{i}][0]: shape {tuple(image.shape)} differs from batch[0]'s "
                             f"{tuple(images[0].shape)}")
        images.append(image)
    return torch.stack(images, out=_batch_buffer((len(images), *images[0].shape), images[0], numpy))


def _batch_buffer(shape, like: torch.Tensor, numpy) -> torch.Tensor:
    """An uninitialised uint8 tensor of ``shape`` for the collated batch.

    Inside a DataLoader worker it is allocated in shared memory, as ``default_collate`` does, so
    the batch reaches the main process without another copy. Elsewhere it is allocated by numpy
    when numpy is there: numpy advises the kernel to back large arrays with transparent huge
    pages, and first touching a fresh batch is otherwise a page fault every 4 KiB (a fresh
    256x3x224x224 torch tensor costs 25 ms more to fill than a reused one on a 2-core EPYC VM,
    numpy's 3 ms; ``fastmix bench --collate``).
    """
    if get_worker_info() is not None:
        storage = like._typed_storage()._new_shared(math.prod(shape), device=like.device)
        return like.new(storage).resize_(shape)
    if numpy is not None:
        return torch.from_numpy(numpy.empty(shape, numpy.uint8))
    return torch.empty(shape, dtype=torch.uint8)


def _only_first_rows(plan: Plan, rows: int) -> Plan:
    """``plan`` with every row from ``rows`` on left untouched (no region, own label only)."""
    keep = torch.arange(plan.batch_size, device=plan.device) < rows
    return replace(plan, lam_self=torch.where(keep, plan.lam_self, 1.0),
                   lam_partner=torch.where(keep, plan.lam_partner, 0.0),
                   box=torch.where(keep[:, None, None], plan.box, torch.zeros_like(plan.box)),
                   label_lam=torch.where(keep, plan.label_lam, 1.0),
                   kind=torch.where(keep, plan.kind, torch.full_like(plan.kind, NONE)))


def _smoothed_multi_hot(labels, num_classes: int, smoothing: float) -> torch.Tensor:
    """timm's ``multi_label`` targets before mixing: ``y * (1 - ε) + ε / 2`` as ``(B, K)`` float32."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 2 or labels.shape[1] != num_classes:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"multi_label: expects (num_classes,) = ({num_classes},) label vectors per sample, "
                         f"got a collated batch of {shape}")
    return labels.float() * (1.0 - smoothing) + 0.5 * smoothing
