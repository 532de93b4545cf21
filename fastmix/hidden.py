"""Manifold Mixup and PatchUp on any ``nn.Module``, by forward hooks: no change to the model's code.

    mm = ManifoldMixup(model, ["layer1", "layer2", "layer3"], alpha=2.0, num_classes=100)
    out, soft = mm(x, y)                 # runs model(x), mixing one chosen layer's output
    loss = torch.sum(-soft * out.log_softmax(1), 1).mean()

One call is one training step: it picks one of ``layers`` at random (``"input"`` mixes the batch
itself), hooks that submodule (``module.get_submodule(name)``) for this forward only, mixes its
output with a freshly drawn :class:`~fastmix.plan.Plan` out of place (``fastmix.functional.apply``
with ``inplace=False``: one pass, differentiable, the model's own tensors untouched), removes the
hook, and returns the model's output with the soft targets of the mix that happened. In eval
mode (``model.training`` False) nothing is hooked or mixed: the call is ``model(x)`` and the targets
are the plain (smoothed) one-hot rows. ``last_layer`` and ``last_plan`` tell what the last call did.

- :class:`ManifoldMixup` (Verma et al., ICML 2019): the whole activation ``(B, ...)``, any shape,
  ``h = lam h + (1 - lam) h[partner]``, ``lam ~ Beta(alpha, alpha)`` per sample; label weight lam.
- :class:`PatchUp` (Faramarzi et al., 2020): on feature maps ``(B, C, H, W)``, DropBlock-style
  blocks: block centres ~ Bernoulli(``gamma_adj``) per feature, ``gamma_adj = gamma * H W /
  (block_size² (H - block_size + 1)(W - block_size + 1))`` as the paper's code adjusts it, grown to
  ``block_size`` squares (stride-1 max pooling). Inside the blocks, ``"hard"`` swaps in the partner's
  features and ``"soft"`` takes ``lam h + (1 - lam) h[partner]``. Targets as in the paper, with
  ``c`` the changed fraction of the sample's features: hard ``(1 - c) y + c y[partner]``, soft
  ``(1 - c (1 - lam)) y + c (1 - lam) y[partner]``. The paper draws one block pattern for the
  whole batch; here each sample draws its own (same law per sample, exact per-sample targets).
  The blocks are the plan's region weight over the feature map viewed as ``(B, 1, C * H, W)``, so
  each channel has its own blocks and the mix is one pass.

The layer is chosen on the host (a CPU generator derived from ``generator``: no device sync);
everything else is drawn on the activation's device from ``generator``. A module that runs more
than once in a forward is mixed the first time only.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as nnf
from torch import nn

from . import _checks, ops
from .family_masks import _active, _MixArguments, draw_partner, mask_plan
from .functional import apply
from .partners import PERM
from .plan import MIXUP, Plan, drawn, drawn_mixup_plan, exact_complement
from .sampling import sample_beta, uniforms

__all__ = ["ManifoldMixup", "PatchUp", "INPUT"]

INPUT = "input"            # the layer name that mixes the batch itself, before the module runs
_CHOICE_SALT = 0x5DEECE66D  # derives the host-side layer-choice stream from generator's seed


def _layer_names(module: nn.Module, layers) -> tuple[str, ...]:
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers: expected a non-empty list of submodule names (or {INPUT!r}), got {layers!r}")
    names = []
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(f"layers: names must be strings, got {type(name).__name__} {name!r}")
        if name in names:
            raise ValueError(f"layers: {name!r} is named twice")
        if name == "":
            raise ValueError("layers: '' names the whole module; name one of its submodules")
        if name != INPUT:
            try:
                module.get_submodule(name)
            except AttributeError:
                known = [n for n, _ in module.named_modules() if n][:12]
                raise ValueError(f"layers: {name!r} is not a submodule of {type(module).__name__} "
                                 f"(its submodules include {known})") from None
        names.append(name)
    return tuple(names)


class _HiddenMix(_MixArguments):
    """The call both methods share: choose a layer, hook it for one forward, mix, build targets."""

    def __init__(self, module, layers, prob, pairing, label_smoothing, num_classes, generator, validate):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.layers = _layer_names(module, layers)
        super().__init__(prob, pairing, label_smoothing, num_classes, generator, validate)
        self._choice = None
        if generator is not None:
            self._choice = torch.Generator().manual_seed((generator.initial_seed() ^ _CHOICE_SALT) % (2**63))
        self.last_layer: Optional[str] = None
        self.last_plan: Optional[Plan] = None

    # -- what each method defines --
    def plan(self, h: torch.Tensor, layer: str) -> Plan:  # pragma: no cover - abstract
        raise NotImplementedError

    def mix(self, h: torch.Tensor, plan: Plan) -> torch.Tensor:
        """``h`` mixed by ``plan``, out of place and differentiable."""
        return apply(h, plan, inplace=False)

    # -- the step --
    def choose_layer(self) -> str:
        index = int(torch.randint(len(self.layers), (), generator=self._choice))
        return self.layers[index]

    def __call__(self, x: torch.Tensor, target: torch.Tensor, *, layer: Optional[str] = None):
        """``(module(x) with one layer mixed, soft targets (B, num_classes) float32)``.

        ``layer`` forces the layer this step (one of ``layers``); by default it is drawn uniformly.
        ``target``: class indices ``(B,)`` or soft labels ``(B, K)``.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if layer is not None and layer not in self.layers:
            raise ValueError(f"layer: {layer!r} is not one of layers {self.layers}")
        classes = _checks.labels("target", target, x.shape[0], self.num_classes, x.device,
                                 _checks.default_validate(self.validate, x.device))
        if not self.module.training:
            self.last_layer, self.last_plan = None, None
            keep = drawn_mixup_plan(torch.ones(x.shape[0], device=x.device),
                                    torch.arange(x.shape[0], device=x.device), None)
            return self.module(x), ops.targets_of(target, keep, classes, self.label_smoothing)
        name = self.choose_layer() if layer is None else layer
        if name == INPUT:
            plan = self._plan_checked(x, name)
            out = self.module(self.mix(x, plan))
        else:
            out, plan = self._forward_mixing(x, name)
        self.last_layer, self.last_plan = name, plan
        return out, ops.targets_of(target, plan, classes, self.label_smoothing)

    def _plan_checked(self, h, name: str) -> Plan:
        if not isinstance(h, torch.Tensor):
            raise TypeError(f"layers: {name!r} returned a {type(h).__name__}; only a tensor output can be mixed")
        if h.dim() < 2 or not (h.dtype.is_floating_point or h.dtype == torch.uint8):
            raise ValueError(f"layers: {name!r} gave shape {tuple(h.shape)} {h.dtype}; mixing needs a float "
                             f"batch (B, ...)")
        return self.plan(h, name)

    def _forward_mixing(self, x: torch.Tensor, name: str):
        submodule = self.module.get_submodule(name)
        state: dict = {}

        def hook(_module, _inputs, output):
            if "plan" in state:          # a module run twice in one forward is mixed the first time only
                return None
            if isinstance(output, torch.Tensor) and output.shape[0] != x.shape[0]:
                raise ValueError(f"layers: {name!r} gave a batch of {output.shape[0]}, the input has {x.shape[0]}")
            state["plan"] = self._plan_checked(output, name)
            return self.mix(output, state["plan"])

        handle = submodule.register_forward_hook(hook)
        try:
            out = self.module(x)
        finally:
            handle.remove()
        if "plan" not in state:
            raise RuntimeError(f"layers: {name!r} did not run in the forward pass, so nothing was mixed")
        return out, state["plan"]

    def _partner(self, batch: int, device):
        return draw_partner(self.pairing, batch, device, self.generator)


class ManifoldMixup(_HiddenMix):
    """Manifold Mixup (Verma et al., ICML 2019) by forward hooks on ``module``.

    Args:
        module: any ``nn.Module``; it is called as ``module(x)``.
        layers: names of submodules (``module.get_submodule``) whose output may be mixed, and/or
            ``"input"``; one is drawn uniformly per call.
        alpha: ``lam ~ Beta(alpha, alpha)`` per sample (the paper's 2.0).
        prob: probability that a sample is mixed.
        pairing: ``"perm"`` (a random permutation per step, as in the paper), ``"flip"``, ``"roll"``.
        label_smoothing, num_classes, generator, validate: as :class:`fastmix.Mixup`.

    ``out, soft = mm(x, target)``: see :mod:`fastmix.hidden`.
    """

    def __init__(self, module: nn.Module, layers: Union[str, Sequence[str]], alpha: float = 2.0, *,
                 prob: float = 1.0, pairing: str = PERM, label_smoothing: float = 0.0, num_classes: int = 1000,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        super().__init__(module, layers, prob, pairing, label_smoothing, num_classes, generator, validate)
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)

    def plan(self, h: torch.Tensor, layer: str = INPUT) -> Plan:
        """A whole-sample Mixup plan for activation ``h`` ``(B, ...)`` (any shape)."""
        batch, device = h.shape[0], h.device
        lam = sample_beta(self.alpha, batch, device, self.generator)
        partner, closed = self._partner(batch, device)
        lam = torch.where(_active(self.prob, partner, self.generator), lam, 1.0)
        return drawn_mixup_plan(lam, partner, closed)     # a Beta draw and a sampled partner: no read-back


class PatchUp(_HiddenMix):
    """PatchUp (Faramarzi et al., 2020) by forward hooks on ``module``: blocks of feature maps swapped
    (``mode="hard"``) or interpolated (``"soft"``) with a partner's.

    Args:
        module, layers, pairing, label_smoothing, num_classes, generator, validate: as
            :class:`ManifoldMixup`; the chosen layer must give ``(B, C, H, W)`` feature maps
            (``"input"``: the images).
        alpha: ``lam ~ Beta(alpha, alpha)`` per sample, the soft mode's weight (the paper's 2.0).
        patchup_prob: probability that a sample is patched.
        block_size: side of the blocks, odd (the paper's 7).
        gamma: the block-centre rate before the paper's adjustment (the paper's 0.9).
        mode: ``"hard"`` or ``"soft"``.

    The mixed feature map comes back contiguous (NCHW), whatever its layout was.
    """

    MODES = ("hard", "soft")

    def __init__(self, module: nn.Module, layers: Union[str, Sequence[str]], alpha: float = 2.0, *,
                 patchup_prob: float = 1.0, block_size: int = 7, gamma: float = 0.9, mode: str = "hard",
                 pairing: str = PERM, label_smoothing: float = 0.0, num_classes: int = 1000,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        patchup_prob = _checks.probability("patchup_prob", patchup_prob)
        super().__init__(module, layers, patchup_prob, pairing, label_smoothing, num_classes, generator, validate)
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)
        self.block_size = _checks.integer("block_size", block_size, low=1)
        if self.block_size % 2 == 0:
            raise ValueError(f"block_size: must be odd (blocks are centred on a feature), got {self.block_size}")
        self.gamma = _checks.probability("gamma", gamma)
        if mode not in self.MODES:
            raise ValueError(f"mode: expected 'hard' or 'soft', got {mode!r}")
        self.mode = mode

    @property
    def patchup_prob(self) -> float:
        return self.prob

    def rate(self, height: int, width: int) -> float:
        """The block-centre probability on an ``H x W`` map (the paper's ``adjust_gamma``, for
        non-square maps; the valid extent is at least one)."""
        size = self.block_size
        adjusted = self.gamma * height * width / (size ** 2 * max(height - size + 1, 1) * max(width - size + 1, 1))
        return min(adjusted, 1.0)

    def blocks(self, shape, device) -> torch.Tensor:
        """``(B, C, H, W)`` float32 0/1: the features inside the drawn blocks."""
        batch, channels, height, width = shape
        centres = uniforms(batch * channels * height * width, device, self.generator) < self.rate(height, width)
        centres = centres.view(batch, channels, height, width).float()
        return nnf.max_pool2d(centres, self.block_size, stride=1, padding=self.block_size // 2)

    def plan(self, h: torch.Tensor, layer: str = INPUT) -> Plan:
        """A plan for feature maps ``h`` ``(B, C, H, W)`` viewed as ``(B, 1, C * H, W)``."""
        if h.dim() != 4:
            raise ValueError(f"layers: PatchUp needs (B, C, H, W) feature maps at {layer!r}, got shape "
                             f"{tuple(h.shape)}")
        batch, channels, height, width = h.shape
        device = h.device
        lam = exact_complement(sample_beta(self.alpha, batch, device, self.generator))
        partner, closed = self._partner(batch, device)
        holes = self.blocks(h.shape, device).view(batch, channels * height, width)
        plan = mask_plan(1.0 - holes, partner, active=_active(self.prob, partner, self.generator), closed=closed)
        if self.mode == "hard":
            return drawn(plan)
        touched = plan.lam_partner == 1.0
        changed = plan.mask.double().mean((1, 2))
        lam_self = torch.where(touched, lam, 1.0)
        label = torch.where(touched, 1.0 - changed * (1.0 - lam.double()), 1.0).float()
        return drawn(replace(plan, lam_self=lam_self, lam_partner=1.0 - lam_self, label_lam=label,
                             kind=torch.where(touched, MIXUP, 0).to(torch.int8)))

    def mix(self, h: torch.Tensor, plan: Plan) -> torch.Tensor:
        batch, channels, height, width = h.shape
        flat = h.reshape(batch, 1, channels * height, width)
        return apply(flat, plan, inplace=False).reshape(batch, channels, height, width)
