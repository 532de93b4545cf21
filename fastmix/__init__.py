"""fastmix: Mixup, CutMix, Cutout and Random Erasing as one fused in-place pass.

- :class:`Mixup` (timm's arguments), :class:`Cutout`, :class:`RandomErasing` — transforms.
- :class:`FastCollateMixup` — timm's collate-time Mixup/CutMix on uint8 samples (a ``collate_fn``).
- :mod:`fastmix.v2` — ``MixUp``/``CutMix`` shaped like ``torchvision.transforms.v2``.
- :class:`RICAP`, :class:`DirichletMixup`, :class:`ResizeMix`, :class:`FMix`, :class:`SaliencyMix` (images), :class:`ManifoldMixup`, :class:`PatchUp` (hidden
  layers, by forward hooks) — the mixup family beyond timm and torchvision.
- :mod:`fastmix.functional` — sample a :class:`Plan`, apply it to any tensor, build targets.

CUDA tensors run fused Triton kernels (``fastmix.kernels``), CPU tensors the CPU path
(``fastmix.cpu``), anything else the pure-PyTorch reference (``fastmix.reference``); see
``fastmix.ops`` for the dispatch rules and :func:`set_backend` to force one in-process.
"""
from . import functional, v2
from .collate import FastCollateMixup
from .plan import CUTMIX, ERASE, MIXUP, NONE, Plan
from .family import RICAP, DirichletMixup, ResizeMix
from .family_masks import FMix, SaliencyMix
from .hidden import ManifoldMixup, PatchUp
from .ops import set_backend
from .transmix import ClassTokenAttention, TransMix
from .transforms import Cutout, Mixup, RandomErasing

__version__ = "0.1.0"
__all__ = ["Mixup", "FastCollateMixup", "Cutout", "RandomErasing", "Plan", "RICAP", "DirichletMixup", "ResizeMix", "FMix", "SaliencyMix", "ManifoldMixup", "PatchUp", "TransMix", "ClassTokenAttention", "functional", "v2", "set_backend", "NONE", "MIXUP", "CUTMIX", "ERASE"]
