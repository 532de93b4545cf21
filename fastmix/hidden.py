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
from . import family_draws as fd
from .draws import TORCH, rotated
from .family_masks import _MixArguments, drawn_plan, mask_plan, partners_of
from .functional import apply
from .partners import PERM
from .plan import MIXUP, Plan, drawn, drawn_mixup_plan
from .sampling import rank_offset, sampler_for, uniforms

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


def manifold_rows(u: torch.Tensor, batch: int, pairing: str, alpha: float, prob: float, offset: float):
    """``(plan, live)`` of a hidden step from its uniforms (``family_draws``' layout, ``mode="elem"``):
    a whole-sample Mixup plan, lam ~ Beta(alpha, alpha) per sample where the sample is selected
    (``prob``) and not its own partner; the specification ``kernels/sample_masks.py`` fuses."""
    lam, selected = fd.unit_draws(u, batch, alpha, prob, offset)
    partner, closed = partners_of(pairing, batch, fd.rotation(u, "elem", batch, offset), u.device)
    live = selected & (partner != torch.arange(batch, device=u.device))
    return drawn_mixup_plan(torch.where(live, lam, 1.0), partner, closed), live


class _RowsDraw:
    """A hidden step's draw for one (batch, device, arguments): one ``torch.rand`` of the rows'
    uniforms and ``extra`` more, turned into :func:`manifold_rows`' plan by one fused launch on CUDA
    (with the soft targets when the labels are given) or by its torch ops elsewhere."""

    def __init__(self, op, batch: int, device, extra: int):
        self.op, self.batch, self.device = op, batch, torch.device(device)
        self.rows_count = fd.uniform_count("elem", batch)
        self.count = self.rows_count + extra
        self.fused = sampler_for(self.device) == "triton"
        if self.fused:
            from .kernels.sample_masks import RowsSampler
            self.kernel = RowsSampler(batch, "elem", op.pairing, op.alpha)

    def sample(self, labels=None, classes: int = 0, smoothing: float = 0.0):
        """``(uniforms, plan, live (B,): which rows are selected and not their own partner, targets or
        None)``; ``live`` is bool from the torch ops, int32 (non-zero: live) from the fused launch."""
        op = self.op
        u = uniforms(self.count, self.device, op.generator)
        offset = rank_offset(op.generator)
        if self.fused and self.batch and not torch.compiler.is_compiling():
            live = torch.empty(self.batch, dtype=torch.int32, device=self.device)
            rows, cycles, targets, _, _ = self.kernel(u, op.prob, offset, labels, classes, smoothing, live=live)
            return u, drawn_plan(rows, op.pairing, None, None, cycles), live, targets
        plan, live = manifold_rows(u, self.batch, op.pairing, op.alpha, op.prob, offset)
        return u, plan, live, None


class _HiddenMix(_MixArguments):
    """The call both methods share: choose a layer, hook it for one forward, mix, build targets."""

    def __init__(self, module, layers, prob, pairing, label_smoothing, num_classes, generator, validate):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.layers = _layer_names(module, layers)
        # mode "elem": both methods draw per sample (PatchUp keeps its own `mode`, hard or soft)
        super().__init__(prob, pairing, label_smoothing, num_classes, generator, validate, "elem")
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
        labels = (target, classes)
        if name == INPUT:
            plan, soft = self._plan_checked(x, name, labels)
            out = self.module(self.mix(x, plan))
        else:
            out, plan, soft = self._forward_mixing(x, name, labels)
        self.last_layer, self.last_plan = name, plan
        if soft is None:
            soft = ops.targets_of(target, plan, classes, self.label_smoothing)
        return out, soft

    def _plan_and_targets(self, h: torch.Tensor, name: str, labels=None, classes: int = 0, smoothing: float = 0.0):
        """``(plan, soft targets or None)``: a sampler that builds the targets in its own launch returns them."""
        return self.plan(h, name), None

    def _plan_checked(self, h, name: str, labels):
        if not isinstance(h, torch.Tensor):
            raise TypeError(f"layers: {name!r} returned a {type(h).__name__}; only a tensor output can be mixed")
        if h.dim() < 2 or not (h.dtype.is_floating_point or h.dtype == torch.uint8):
            raise ValueError(f"layers: {name!r} gave shape {tuple(h.shape)} {h.dtype}; mixing needs a float "
                             f"batch (B, ...)")
        return self._plan_and_targets(h, name, labels[0], labels[1], self.label_smoothing)

    def _forward_mixing(self, x: torch.Tensor, name: str, labels):
        submodule = self.module.get_submodule(name)
        state: dict = {}

        def hook(_module, _inputs, output):
            if "plan" in state:          # a module run twice in one forward is mixed the first time only
                return None
            if isinstance(output, torch.Tensor) and output.shape[0] != x.shape[0]:
                raise ValueError(f"layers: {name!r} gave a batch of {output.shape[0]}, the input has {x.shape[0]}")
            state["plan"], state["soft"] = self._plan_checked(output, name, labels)
            return self.mix(output, state["plan"])

        handle = submodule.register_forward_hook(hook)
        try:
            out = self.module(x)
        finally:
            handle.remove()
        if "plan" not in state:
            raise RuntimeError(f"layers: {name!r} did not run in the forward pass, so nothing was mixed")
        return out, state["plan"], state["soft"]

    def _rows_draw(self, batch: int, device, extra: int = 0) -> _RowsDraw:
        """The step's draw for this batch and device, prepared once (and again if an argument changed)."""
        draws = self.__dict__.setdefault("_draws", {})
        key = (batch, device, extra, ops.generation, self.pairing, self.alpha, self.prob)
        draw = draws.get(key)
        if draw is None:
            if len(draws) >= 8:
                draws.clear()
            draw = draws[key] = _RowsDraw(self, batch, device, extra)
        return draw

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_draws", "_patches")}


def _tables_of(source: Plan, plan: Plan) -> Plan:
    """``plan`` with ``source``'s cycle table, when the sampler wrote one (same partner tensor)."""
    for name in ("cycles", "segments"):
        if name in source.__dict__ and plan.partner is source.partner:
            plan.__dict__[name] = source.__dict__[name]
    return plan


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
        return self._plan_and_targets(h, layer)[0]

    def _plan_and_targets(self, h: torch.Tensor, name: str = INPUT, labels=None, classes: int = 0,
                          smoothing: float = 0.0):
        _, plan, _, targets = self._rows_draw(h.shape[0], h.device).sample(labels, classes, smoothing)
        return plan, targets


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
        """A plan for feature maps ``h`` ``(B, C, H, W)`` viewed as ``(B, 1, C * H, W)``: one
        ``torch.rand`` draws the rows (lam, prob, the partner rotation) and the block centres."""
        return self._plan_and_targets(h, layer)[0]

    def _plan_and_targets(self, h: torch.Tensor, name: str = INPUT, labels=None, classes: int = 0,
                          smoothing: float = 0.0):
        if h.dim() != 4:
            raise ValueError(f"layers: PatchUp needs (B, C, H, W) feature maps at {name!r}, got shape "
                             f"{tuple(h.shape)}")
        batch, channels, height, width = h.shape
        draw = self._rows_draw(batch, h.device, batch * channels * height * width)
        u, rows, live, _ = draw.sample()
        # the block centres' uniforms, float32 as drawn (compared with the rate in float32, as the kernel does)
        centres, offset = u[draw.rows_count:], rank_offset(self.generator)
        if offset:
            centres = rotated(centres, offset, TORCH).float()
        centres = centres.view(batch, channels, height, width)
        rate = self.rate(height, width)
        if draw.fused and batch and not torch.compiler.is_compiling():
            # a feature is in a block where the smallest uniform of its square is below the rate
            pooled = nnf.max_pool2d(-centres, self.block_size, stride=1, padding=self.block_size // 2)
            launch = self._patch_launch(batch, channels * height, width, rate)
            patched, rho, targets = launch(pooled, live, rows.lam_self, rows.partner, labels, classes, smoothing)
            return _tables_of(rows, drawn_plan(patched, self.pairing, (channels * height, width), rho)), targets
        holes = nnf.max_pool2d((centres < rate).float(), self.block_size, stride=1,
                               padding=self.block_size // 2).view(batch, channels * height, width)
        plan = _tables_of(rows, mask_plan(1.0 - holes, rows.partner, active=live, closed=rows._closed))
        if self.mode == "hard":
            return drawn(plan), None
        lam = rows.lam_self                      # lam where the row is live (1 where lam is 1: the same)
        touched = plan.lam_partner == 1.0
        changed = plan.mask.double().mean((1, 2))
        lam_self = torch.where(touched, lam, 1.0)
        label = torch.where(touched, 1.0 - changed * (1.0 - lam.double()), 1.0).float()
        return drawn(_tables_of(plan, replace(plan, lam_self=lam_self, lam_partner=1.0 - lam_self, label_lam=label,
                                              kind=torch.where(touched, MIXUP, 0).to(torch.int8)))), None

    def _patch_launch(self, batch: int, planes: int, width: int, rate: float):
        launches = self.__dict__.setdefault("_patches", {})
        key = (batch, planes, width, rate, self.mode)
        launch = launches.get(key)
        if launch is None:
            from .kernels.patchup import PatchLaunch
            if len(launches) >= 8:
                launches.clear()
            launch = launches[key] = PatchLaunch(batch, planes, width, self.mode == "soft", rate)
        return launch

    def mix(self, h: torch.Tensor, plan: Plan) -> torch.Tensor:
        batch, channels, height, width = h.shape
        flat = h.reshape(batch, 1, channels * height, width)
        return apply(flat, plan, inplace=False).reshape(batch, channels, height, width)
