"""The arms of ``fastmix train``: each arm is one way of mixing the training batches.

An arm is a name, a one-line summary and a ``build(num_classes, generator)`` that returns an
:class:`ArmSetup`: the ``mix(x, y) -> (x, soft_targets)`` the training loop calls on every
batch (``x`` ``(B, C, H, W)`` float32 on the training device, ``y`` int64 ``(B,)``; the
targets come back ``(B, num_classes)`` float32, and ``x`` may be mixed in place), and
optionally ``wrap_model(model) -> model`` for methods that mix hidden activations (Manifold
Mixup, PatchUp: ``mix`` draws the plan and returns the targets, the wrapped model applies the
plan to a layer's output in training mode and behaves as the plain model in eval mode).

Adding a method of the mixup family is one call::

    register_arm(Arm("ricap", "RICAP, beta=0.3", lambda k, gen: ArmSetup(RICAP(..., generator=gen))))

``generator`` is a ``torch.Generator`` on the training device seeded from the run's seed, so
that every arm's draws are reproducible and independent of the model's initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .. import v2
from ..family import RICAP, DirichletMixup, ResizeMix
from ..family_masks import FMix, SaliencyMix
from ..transforms import Mixup

MixFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class ArmSetup:
    """What one training run of an arm uses: the batch mix and an optional model wrapper."""

    mix: MixFn
    wrap_model: Optional[Callable[[nn.Module], nn.Module]] = None


@dataclass(frozen=True)
class Arm:
    """One row of the experiment's table: ``build(num_classes, generator) -> ArmSetup``."""

    name: str
    summary: str
    build: Callable[[int, torch.Generator], ArmSetup]


ARMS: dict[str, Arm] = {}
DEFAULT_ARMS = ("none", "mixup-source", "timm", "cutmix")


def register_arm(arm: Arm, *, replace: bool = False) -> Arm:
    """Add ``arm`` to :data:`ARMS` (a ValueError if the name is taken, unless ``replace``)."""
    if not isinstance(arm, Arm):
        raise TypeError(f"arm: expected a fastmix.apps.train_arms.Arm, got {type(arm).__name__}")
    if not arm.name or "," in arm.name:
        raise ValueError(f"arm: a name must be non-empty and free of commas, got {arm.name!r}")
    if arm.name in ARMS and not replace:
        raise ValueError(f"arm: {arm.name!r} is already registered")
    ARMS[arm.name] = arm
    return arm


def select_arms(names: str) -> list[Arm]:
    """The arms named in a comma-separated list (``"all"`` for every registered arm)."""
    if names.strip() == "all":
        return list(ARMS.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ARMS]
    if unknown or not wanted:
        raise ValueError(f"arms: unknown arm(s) {unknown or names!r}; registered: {', '.join(ARMS)}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"arms: an arm is named twice in {names!r}")
    return [ARMS[n] for n in wanted]


def _no_mixing(num_classes: int, generator: torch.Generator) -> ArmSetup:
    def mix(x: torch.Tensor, y: torch.Tensor):
        return x, nn.functional.one_hot(y, num_classes).float()
    return ArmSetup(mix)


def _timm_mixup(**kwargs) -> Callable[[int, torch.Generator], ArmSetup]:
    def build(num_classes: int, generator: torch.Generator) -> ArmSetup:
        return ArmSetup(Mixup(num_classes=num_classes, generator=generator, **kwargs))
    return build


def _torchvision_cutmix(num_classes: int, generator: torch.Generator) -> ArmSetup:
    return ArmSetup(v2.CutMix(alpha=1.0, num_classes=num_classes, generator=generator))


register_arm(Arm("none", "no mixing: one-hot targets", _no_mixing))
# the source's recipe: alpha 0.2, each image mixed with probability 0.2 (about one in five)
register_arm(Arm("mixup-source", "the source's Mixup: alpha=0.2 on about one image in five",
                 _timm_mixup(mixup_alpha=0.2, prob=0.2, mode="elem", label_smoothing=0.0)))
# timm's usual ImageNet recipe (train.py --mixup 0.8 --cutmix 1.0 --smoothing 0.1, batch mode)
register_arm(Arm("timm", "timm's ImageNet recipe: Mixup 0.8 / CutMix 1.0, switch 0.5, smoothing 0.1",
                 _timm_mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.1)))
register_arm(Arm("cutmix", "torchvision-style CutMix, alpha=1.0, every batch", _torchvision_cutmix))


def _family(cls, **kwargs) -> Callable[[int, torch.Generator], ArmSetup]:
    def build(num_classes: int, generator: torch.Generator) -> ArmSetup:
        return ArmSetup(cls(num_classes=num_classes, generator=generator, **kwargs))
    return build


# the mixup family, with the papers' default arguments (not in DEFAULT_ARMS: `--arms all` runs them)
register_arm(Arm("fmix", "FMix, alpha=1.0, decay power 3", _family(FMix, alpha=1.0, decay_power=3.0, label_smoothing=0.0)))
register_arm(Arm("saliencymix", "SaliencyMix, beta=1.0", _family(SaliencyMix, beta=1.0, label_smoothing=0.0)))
register_arm(Arm("ricap", "RICAP, beta=0.3", _family(RICAP, beta=0.3, label_smoothing=0.0)))
register_arm(Arm("kway-mixup", "k-way Mixup, Dirichlet(1, 1, 1)", _family(DirichletMixup, alpha=1.0, k=3, label_smoothing=0.0)))
register_arm(Arm("resizemix", "ResizeMix, scope (0.1, 0.8)", _family(ResizeMix, scope=(0.1, 0.8), label_smoothing=0.0)))
