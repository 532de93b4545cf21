"""RICAP, k-way Dirichlet Mixup and ResizeMix: samplers of piece plans and their transforms.

Each transform is called like :class:`fastmix.Mixup`::

    op = fastmix.RICAP(beta=0.3, num_classes=1000)
    out, soft = op(x, target)          # out: a new tensor; soft: (B, num_classes) float32

and ``op.plan(x)`` draws the :class:`~fastmix.pieces.PiecePlan` alone (the functional path:
:func:`fastmix.pieces.apply_pieces`, :func:`fastmix.pieces.pieces_targets`). Every draw is per
sample, from one ``torch.rand`` call on the batch's device followed by torch ops (no host sync,
no Python loop over samples); ``prob`` selects samples, and a sample not selected keeps itself
(no pieces, its own label with weight 1). Partners come from random permutations of the batch
(the argsort of uniforms), one per partner slot, so any batch size works (B = 1 mixes with
itself). Beta and Gamma variates are :mod:`fastmix.draws`' (Marsaglia-Tsang from uniforms).

- RICAP (Takahashi et al., 2018): boundary ``w = round(W * Beta(b, b))``, ``h = round(H *
  Beta(b, b))`` (half to even); four quadrants (top-left ``h x w``, top-right ``h x (W - w)``,
  bottom-left, bottom-right), quadrant ``k`` cut from permutation ``k``'s partner at a crop
  position uniform over the positions where it fits; label weights = quadrant areas / (H W).
- DirichletMixup: ``w ~ Dirichlet(alpha * 1_k)`` per sample; the sample itself and ``k - 1``
  partners, whole images, blended with those weights (label weights = ``w``).
- ResizeMix (Qin et al., 2020): ``tau ~ U(scope)``; a ``round(tau H) x round(tau W)`` box at a
  uniform position receives the whole partner resized (``"nearest"`` or ``"bilinear"``); label
  weight of the sample's own label ``1 - box area / (H W)``, of the partner's the box's share.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import _checks, draws
from .layout import spatial_size
from .family_masks import _FamilyArguments
from .pieces import PIECE_DTYPES, RESIZE_MODES, PiecePlan, apply_pieces, label_pieces, pieces_targets
from .sampling import uniforms

G = draws.GAMMA_UNIFORMS


def _permutations(u: torch.Tensor) -> torch.Tensor:
    """``(m, B)`` uniforms -> ``m`` random permutations of the batch (argsort: on the device)."""
    return torch.argsort(u, dim=-1)


def _uniform_int(u: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """An integer uniform on ``0..high`` from a uniform in [0, 1) (float64), as int64."""
    return torch.minimum((u * (high + 1).double()).floor().long(), high)


def _boxes(y0, y1, x0, x1) -> torch.Tensor:
    return torch.stack([y0, y1, x0, x1], -1).to(torch.int32)


def _whole(shape, size, device) -> torch.Tensor:
    box = torch.zeros(*shape, 4, dtype=torch.int32, device=device)
    box[..., 1], box[..., 3] = size[0], size[1]
    return box


def _finish(src, weight, dst_box, src_box, size, selected, resize="nearest", covered=None) -> PiecePlan:
    """Empty the destination boxes of unselected samples, derive the label pieces in closed form
    (``covered``: pixels the pieces cover, when they tile the image), return the checked plan."""
    dst_box = torch.where(selected[:, None, None], dst_box, 0)
    if covered is not None:
        covered = torch.where(selected, covered, 0)
    rows, weights = label_pieces(src, weight, dst_box, size, covered)
    return PiecePlan(src=src, weight=weight, dst_box=dst_box, src_box=src_box, label_row=rows, label_weight=weights,
                     size=size, resize=resize, checked=True)


# --------------------------------------------------------------------------------------------
# the samplers
# --------------------------------------------------------------------------------------------

def ricap_plan(batch: int, size: tuple[int, int], beta: float = 0.3, prob: float = 1.0, device=None,
               generator: Optional[torch.Generator] = None) -> PiecePlan:
    """A RICAP plan (see the module docstring): four translated pieces per sample."""
    height, width = size
    per = 4 * G + 1 + 8
    u = uniforms(batch * per + 4 * batch, device, generator)
    us = u[:batch * per].double().view(batch, per)
    dev = us.device
    fy = draws.beta(us[:, 0:G], us[:, G:2 * G], beta, draws.TORCH)
    fx = draws.beta(us[:, 2 * G:3 * G], us[:, 3 * G:4 * G], beta, draws.TORCH)
    h = draws.round_half_even(fy * height, draws.TORCH).long().clamp(0, height)
    w = draws.round_half_even(fx * width, draws.TORCH).long().clamp(0, width)
    selected = us[:, 4 * G] < prob
    zero, full_h, full_w = torch.zeros_like(h), torch.full_like(h, height), torch.full_like(w, width)
    # quadrants: top-left, top-right, bottom-left, bottom-right
    qy0 = torch.stack([zero, zero, h, h], 1)
    qy1 = torch.stack([h, h, full_h, full_h], 1)
    qx0 = torch.stack([zero, w, zero, w], 1)
    qx1 = torch.stack([w, full_w, w, full_w], 1)
    qh, qw = qy1 - qy0, qx1 - qx0
    crop = us[:, 4 * G + 1:].view(batch, 4, 2)
    cy = _uniform_int(crop[..., 0], height - qh)
    cx = _uniform_int(crop[..., 1], width - qw)
    src = _permutations(u[batch * per:].view(4, batch)).t().contiguous()
    weight = torch.ones(batch, 4, device=dev)
    covered = torch.full((batch,), height * width, dtype=torch.int64, device=dev)
    return _finish(src, weight, _boxes(qy0, qy1, qx0, qx1), _boxes(cy, cy + qh, cx, cx + qw), size, selected,
                   covered=covered)


def dirichlet_plan(batch: int, size: tuple[int, int], alpha: float = 1.0, k: int = 3, prob: float = 1.0,
                   device=None, generator: Optional[torch.Generator] = None) -> PiecePlan:
    """A k-way Dirichlet Mixup plan: the sample and ``k - 1`` partners, whole images."""
    per = k * G + 1
    u = uniforms(batch * per + (k - 1) * batch, device, generator)
    us = u[:batch * per].double().view(batch, per)
    dev = us.device
    log_g = draws.log_gamma(us[:, :k * G].reshape(batch, k, G), alpha, draws.TORCH)
    weight = torch.softmax(log_g, dim=1).float()                          # G_j / sum G: Dirichlet(alpha 1_k)
    selected = us[:, k * G] < prob
    own = torch.arange(batch, device=dev)[:, None]
    src = torch.cat([own, _permutations(u[batch * per:].view(k - 1, batch)).t()], 1) if k > 1 else own
    box = _whole((batch, k), size, dev)
    covered = torch.full((batch,), size[0] * size[1], dtype=torch.int64, device=dev)
    return _finish(src.contiguous(), weight, box, box.clone(), size, selected, covered=covered)


def resizemix_plan(batch: int, size: tuple[int, int], scope: Sequence[float] = (0.1, 0.8), mode: str = "nearest",
                   prob: float = 1.0, device=None, generator: Optional[torch.Generator] = None) -> PiecePlan:
    """A ResizeMix plan: the whole partner resized into one box per sample."""
    height, width = size
    u = uniforms(batch * 4 + batch, device, generator)
    us = u[:batch * 4].double().view(batch, 4)
    dev = us.device
    tau = scope[0] + (scope[1] - scope[0]) * us[:, 0]
    bh = draws.round_half_even(tau * height, draws.TORCH).long().clamp(0, height)
    bw = draws.round_half_even(tau * width, draws.TORCH).long().clamp(0, width)
    y0 = _uniform_int(us[:, 1], height - bh)
    x0 = _uniform_int(us[:, 2], width - bw)
    selected = us[:, 3] < prob
    src = _permutations(u[batch * 4:].view(1, batch)).t().contiguous()
    dst = _boxes(y0, y0 + bh, x0, x0 + bw)[:, None]
    weight = torch.ones(batch, 1, device=dev)
    return _finish(src, weight, dst, _whole((batch, 1), size, dev), size, selected, resize=mode,
                   covered=bh * bw)


# --------------------------------------------------------------------------------------------
# the transforms
# --------------------------------------------------------------------------------------------

class _PieceMix(_FamilyArguments):
    """What the three transforms share: arguments (the family's), checks, ``plan`` and ``__call__``."""

    def __init__(self, prob: float, label_smoothing: float, num_classes: int,
                 generator: Optional[torch.Generator]):
        super().__init__(prob, label_smoothing, num_classes, generator)

    def _draw(self, batch: int, size: tuple[int, int], device) -> PiecePlan:
        raise NotImplementedError

    def plan(self, x: torch.Tensor) -> PiecePlan:
        """Draw this step's plan for the image batch ``x`` (nothing is applied)."""
        _checks.batch("x", x, dims=(4, 5), dtypes=PIECE_DTYPES, writable=False)
        return self._draw(x.shape[0], spatial_size(x), x.device)

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        """``(out, soft)``: the mixed batch (a new tensor) and ``(B, num_classes)`` float32 targets."""
        _checks.batch("x", x, dims=(4, 5), dtypes=PIECE_DTYPES, writable=False)
        _checks.labels("target", target, x.shape[0], self.num_classes, x.device,
                       _checks.default_validate(self.validate, x.device))
        plan = self._draw(x.shape[0], spatial_size(x), x.device)     # x is checked: no second check
        # the labels are checked (their range too, where that is free): not a second time
        return apply_pieces(x, plan), pieces_targets(target, plan, self.num_classes, self.label_smoothing,
                                                     validate=False)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in ("generator", "validate"))
        return f"{type(self).__name__}({args})"


class RICAP(_PieceMix):
    """RICAP: four quadrants at a Beta(beta, beta) boundary, each cropped from its own partner.

    Args:
        beta: Beta concentration of the boundary (positive).
        prob: probability that a sample is mixed (per sample).
        label_smoothing: ε of the targets (off = ε / K, on = 1 - ε + ε / K).
        num_classes: ``K``.
        generator: a ``torch.Generator`` on the batch's device.
    """

    def __init__(self, beta: float = 0.3, prob: float = 1.0, label_smoothing: float = 0.0, num_classes: int = 1000,
                 *, generator: Optional[torch.Generator] = None):
        self.beta = _checks.alpha("beta", beta, allow_zero=False)
        super().__init__(prob, label_smoothing, num_classes, generator)

    def _draw(self, batch, size, device):
        return ricap_plan(batch, size, self.beta, self.prob, device, self.generator)


class DirichletMixup(_PieceMix):
    """k-way Mixup: the sample and ``k - 1`` partners blended with Dirichlet(alpha 1_k) weights.

    Args:
        alpha: Dirichlet concentration (positive).
        k: samples per mix (the sample itself and ``k - 1`` partners), at least 2.
        prob, label_smoothing, num_classes, generator: as :class:`RICAP`.
    """

    def __init__(self, alpha: float = 1.0, k: int = 3, prob: float = 1.0, label_smoothing: float = 0.0,
                 num_classes: int = 1000, *, generator: Optional[torch.Generator] = None):
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)
        self.k = _checks.integer("k", k, low=2, high=64)
        super().__init__(prob, label_smoothing, num_classes, generator)

    def _draw(self, batch, size, device):
        return dirichlet_plan(batch, size, self.alpha, self.k, self.prob, device, self.generator)


class ResizeMix(_PieceMix):
    """ResizeMix: the whole partner resized into a box of side ``tau`` of the image, tau ~ U(scope).

    Args:
        scope: ``(min, max)`` of tau, with ``0 < min <= max <= 1``.
        mode: ``"nearest"`` or ``"bilinear"`` (``F.interpolate``'s rules, ``align_corners=False``).
        prob, label_smoothing, num_classes, generator: as :class:`RICAP`.
    """

    def __init__(self, scope: Sequence[float] = (0.1, 0.8), mode: str = "nearest", prob: float = 1.0,
                 label_smoothing: float = 0.0, num_classes: int = 1000, *,
                 generator: Optional[torch.Generator] = None):
        lo, hi = _checks.pair("scope", scope, positive=True)
        if hi > 1.0:
            raise ValueError(f"scope: max {hi} is larger than 1 (the box would exceed the image)")
        self.scope = (lo, hi)
        if mode not in RESIZE_MODES:
            raise ValueError(f"mode: expected 'nearest' or 'bilinear', got {mode!r}")
        self.mode = mode
        super().__init__(prob, label_smoothing, num_classes, generator)

    def _draw(self, batch, size, device):
        return resizemix_plan(batch, size, self.scope, self.mode, self.prob, device, self.generator)
