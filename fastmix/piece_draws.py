"""From uniforms to piece plans: RICAP, k-way Dirichlet Mixup and ResizeMix, specified once.

A step draws ``count(batch)`` float32 uniforms in one ``torch.rand`` and everything after is a pure
function of them, written here twice: with torch ops (:meth:`_PieceSpec.from_uniforms`, the
specification; any device, and ``torch.compile``) and on Python floats for a once-per-batch draw
(:meth:`_PieceSpec.host`, the CPU path's ``mode="batch"``, as :mod:`fastmix.host_draws` is for
Mixup). The fused Triton samplers (``kernels/sample_pieces.py``) compute the same function and
are tested equal to the specification on the same uniforms (``tests/test_pieces_sampling.py``).

Layout of the uniforms: ``units`` blocks of ``unit`` uniforms (one block for the batch in
``mode="batch"``, one per sample in ``mode="elem"``), then two per *partner slot*. Beta and Gamma
variates are :mod:`fastmix.draws`' (Marsaglia-Tsang in float64 from ``GAMMA_UNIFORMS`` uniforms).

Partners. Each slot's partners are the permutation ``i -> (a * i + c) mod B`` with ``c`` uniform on
``0..B-1`` and ``a`` uniform over the multipliers coprime to ``B`` (:func:`multipliers`), from the
slot's two uniforms: a kernel computes it per row in closed form, where the argsort of uniforms
(a uniformly random permutation) would need a sort. What that changes, statistically: every row's
partner is still uniform over the batch (``c`` alone makes it so) and slots are independent, and
for a prime ``B`` the map is even uniform on ordered pairs (the affine group is sharply
2-transitive), so any two rows draw a uniform pair of distinct partners, as under a random
permutation. But only ``B * phi(B)`` of the ``B!`` permutations occur: the partners of rows ``i``
and ``j`` differ by ``a * (i - j) mod B``, so neighbouring rows' partners are spread evenly, not
independently. A shuffled loader makes the rows' order random, which is where that would matter.

What a unit holds (see each spec's docstring): RICAP ``4 G + 9`` (two Beta boundaries, ``prob``,
a crop position per quadrant), DirichletMixup ``k G + 1`` (``k`` Gammas, ``prob``), ResizeMix 4
(``tau``, the box position, ``prob``); ``G = GAMMA_UNIFORMS``. In ``mode="batch"`` ``prob`` decides
for the batch, as timm's ``Mixup`` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from . import _checks, draws
from .host_draws import _log_gamma, beta as host_beta
from .pieces import RESIZE_MODES, PiecePlan, label_pieces
from .sampling import _Spec

G = draws.GAMMA_UNIFORMS
MODES = ("batch", "elem")
# RICAP's unit: boundary y (two Gammas), boundary x (two Gammas), prob, then (y, x) per quadrant
RICAP_PROB, RICAP_CROP = 4 * G, 4 * G + 1
RICAP_UNIT = 4 * G + 9
# ResizeMix's unit
RESIZE_TAU, RESIZE_Y, RESIZE_X, RESIZE_PROB = 0, 1, 2, 3
RESIZE_UNIT = 4
_ROUND = 6755399441055744.0        # 1.5 * 2**52: (v + R) - R rounds half to even (draws.round_half_even)


def multipliers(batch: int) -> list:
    """The ``a`` in ``1..B-1`` coprime to ``B`` (``[1]`` for ``B`` of 0, 1 or 2): the multipliers
    of the partner permutations ``i -> (a i + c) mod B``."""
    return [a for a in range(1, max(batch, 2)) if math.gcd(a, batch) == 1]


def units(mode: str, batch: int) -> int:
    return 1 if mode == "batch" else batch


def checked_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"mode: expected 'batch' (one draw per batch) or 'elem' (per sample), got {mode!r}")
    return mode


# --------------------------------------------------------------------------------------------
# the specification's building blocks (torch ops, float64)
# --------------------------------------------------------------------------------------------

def _unit_rows(u: torch.Tensor, batch: int, unit: int, mode: str) -> torch.Tensor:
    """``(B, unit)`` float64: each row's block of uniforms (the batch's one block, or its own)."""
    if mode == "batch":
        return u[:unit].view(1, unit).expand(batch, unit)
    return u[:batch * unit].view(batch, unit)


def _uniform_int(u: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """An integer uniform on ``0..high`` from a uniform in [0, 1) (float64), as int64."""
    return torch.minimum((u * (high + 1).double()).floor().long(), high)


def _partners(u: torch.Tensor, tail: int, slots: int, batch: int, table: torch.Tensor) -> torch.Tensor:
    """``(B, slots)`` int64: slot ``s``'s permutation ``(a_s i + c_s) mod B`` (the module docstring)."""
    if batch == 0:
        return torch.zeros(0, slots, dtype=torch.int64, device=u.device)
    pair = u[tail:tail + 2 * slots].view(slots, 2)
    n = table.shape[0]
    a = table[torch.clamp((pair[:, 0] * n).floor(), max=n - 1).long()]
    c = torch.clamp((pair[:, 1] * batch).floor(), max=batch - 1).long()
    rows = torch.arange(batch, device=u.device)
    return (rows[:, None] * a[None, :] + c[None, :]) % batch


def _boxes(y0, y1, x0, x1) -> torch.Tensor:
    return torch.stack([y0, y1, x0, x1], -1).to(torch.int32)


def _whole(shape, size, device) -> torch.Tensor:
    box = torch.zeros(*shape, 4, dtype=torch.int32, device=device)
    box[..., 1], box[..., 3] = size[0], size[1]
    return box


def _finish(src, weight, dst_box, src_box, size, selected, resize, covered) -> PiecePlan:
    """Empty the destination boxes of unselected samples, derive the label pieces in closed form
    (``covered``: pixels the pieces cover), return the checked plan."""
    dst_box = torch.where(selected[:, None, None], dst_box, 0)
    covered = torch.where(selected, covered, 0)
    rows, weights = label_pieces(src, weight, dst_box, size, covered)
    return PiecePlan.trusted(src, weight, dst_box, src_box, rows, weights, size, resize)


# --------------------------------------------------------------------------------------------
# the host's building blocks (Python floats, the same float64 arithmetic)
# --------------------------------------------------------------------------------------------

def _beta_host(u, start: int, alpha: float) -> float:
    """``draws.beta`` of the Gammas at ``u[start:]`` and ``u[start + G:]`` on floats."""
    return host_beta(u, alpha, start, start + G)


def _int_host(u: float, high: int) -> int:
    return min(math.floor(u * (high + 1)), high)


def _round_host(v: float, high: int) -> int:
    return int(min(max((v + _ROUND) - _ROUND, 0.0), high))


_aranges: dict = {}


def _arange(batch: int) -> torch.Tensor:
    """``arange(batch)`` on the CPU, made once per size (read only: nothing writes to it)."""
    rows = _aranges.get(batch)
    if rows is None:
        if len(_aranges) >= 16:
            _aranges.clear()
        rows = _aranges[batch] = torch.arange(batch)
    return rows


def _partners_host(u, tail: int, slots: int, batch: int, mults: list) -> torch.Tensor:
    """:func:`_partners` from floats: ``(B, slots)`` int64 on the CPU (two small tensors, two ops)."""
    if batch == 0:
        return torch.zeros(0, slots, dtype=torch.int64)
    n = len(mults)
    a = [mults[min(math.floor(u[tail + 2 * s] * n), n - 1)] for s in range(slots)]
    c = [min(math.floor(u[tail + 2 * s + 1] * batch), batch - 1) for s in range(slots)]
    return torch.addcmul(torch.tensor(c), _arange(batch)[:, None], torch.tensor(a)).remainder_(batch)


def _uniform_plan(src: torch.Tensor, weight: list, dst: list, src_box: list, size, resize: str,
                  covered: int) -> PiecePlan:
    """A batch-mode plan on the CPU: every row's pieces the same but their sources, each field one
    row expanded to the batch (stride 0, the form ``fastmix/pieces_cpu.py`` walks at once)."""
    batch, pieces = src.shape
    pixels = float(size[0] * size[1])
    shares = [w * ((b[1] - b[0]) * (b[3] - b[2])) / pixels for w, b in zip(weight, dst)]
    labels = torch.tensor(shares + [1.0 - covered / pixels], dtype=torch.float32)
    rows = torch.cat([src, _arange(batch)[:, None]], 1)
    return PiecePlan.trusted(src, torch.tensor(weight, dtype=torch.float32).expand(batch, pieces),
                             torch.tensor(dst, dtype=torch.int32).expand(batch, pieces, 4),
                             torch.tensor(src_box, dtype=torch.int32).expand(batch, pieces, 4), rows,
                             labels.expand(batch, pieces + 1), size, resize)


# --------------------------------------------------------------------------------------------
# the specs
# --------------------------------------------------------------------------------------------

class _PieceSpec(_Spec):
    """What the three specs share: the count of uniforms and the rotation."""

    unit: int
    slots: int
    mode: str
    resize = "nearest"

    def count(self, batch: int) -> int:
        """Uniforms a step takes (see the module docstring's layout)."""
        return units(self.mode, batch) * self.unit + 2 * self.slots

    def _prepare(self, batch: int, size, device):
        from .family import _PieceDraw
        return _PieceDraw(self, batch, size, device)

    @staticmethod
    def _host_uniforms(u, offset: float) -> list:
        return [(v + offset) % 1.0 for v in u] if offset else u


@dataclass(frozen=True)
class RicapSpec(_PieceSpec):
    """RICAP (Takahashi et al., 2018): boundary ``h = round(H Beta(beta, beta))`` and ``w = round(W
    Beta(beta, beta))`` (half to even); four quadrants (top-left ``h x w``, top-right ``h x (W - w)``,
    bottom-left, bottom-right), quadrant ``k`` cut from slot ``k``'s partner at a crop position
    uniform over those where it fits; label weights = quadrant areas / (H W).

    ``mode="batch"`` is the paper's code (``ricap`` in its repository): one boundary for the batch,
    and per quadrant one permutation and one crop position for the whole batch. ``"elem"`` draws
    the boundary and the four crop positions per sample."""

    beta: float = 0.3
    prob: float = 1.0
    mode: str = "batch"
    unit = RICAP_UNIT
    slots = 4
    pieces = 4

    @classmethod
    def checked(cls, beta=0.3, prob=1.0, mode="batch") -> "RicapSpec":
        return cls(_checks.alpha("beta", beta, allow_zero=False), _checks.probability("prob", prob), checked_mode(mode))

    def from_uniforms(self, u: torch.Tensor, batch: int, size, offset: float, table: torch.Tensor) -> PiecePlan:
        """The specification: the plan of ``batch`` samples of ``size`` from the uniforms ``u``."""
        height, width = size
        u = draws.rotated(u, offset, draws.TORCH)
        us = _unit_rows(u, batch, RICAP_UNIT, self.mode)
        dev = u.device
        fy = draws.beta(us[:, 0:G], us[:, G:2 * G], self.beta, draws.TORCH)
        fx = draws.beta(us[:, 2 * G:3 * G], us[:, 3 * G:4 * G], self.beta, draws.TORCH)
        h = draws.round_half_even(fy * height, draws.TORCH).long().clamp(0, height)
        w = draws.round_half_even(fx * width, draws.TORCH).long().clamp(0, width)
        selected = us[:, RICAP_PROB] < self.prob
        zero, full_h, full_w = torch.zeros_like(h), torch.full_like(h, height), torch.full_like(w, width)
        # quadrants: top-left, top-right, bottom-left, bottom-right
        qy0 = torch.stack([zero, zero, h, h], 1)
        qy1 = torch.stack([h, h, full_h, full_h], 1)
        qx0 = torch.stack([zero, w, zero, w], 1)
        qx1 = torch.stack([w, full_w, w, full_w], 1)
        qh, qw = qy1 - qy0, qx1 - qx0
        crop = us[:, RICAP_CROP:RICAP_UNIT].reshape(batch, 4, 2)
        cy = _uniform_int(crop[..., 0], height - qh)
        cx = _uniform_int(crop[..., 1], width - qw)
        src = _partners(u, units(self.mode, batch) * RICAP_UNIT, 4, batch, table)
        weight = torch.ones(batch, 4, device=dev)
        covered = torch.full((batch,), height * width, dtype=torch.int64, device=dev)
        return _finish(src, weight, _boxes(qy0, qy1, qx0, qx1), _boxes(cy, cy + qh, cx, cx + qw), size, selected,
                       "nearest", covered)

    def host(self, u: Sequence[float], batch: int, size, offset: float, mults: list) -> PiecePlan:
        """The ``mode="batch"`` plan of :meth:`from_uniforms` on Python floats (CPU tensors)."""
        height, width = size
        u = self._host_uniforms(u, offset)
        h = _round_host(_beta_host(u, 0, self.beta) * height, height)
        w = _round_host(_beta_host(u, 2 * G, self.beta) * width, width)
        src = _partners_host(u, RICAP_UNIT, 4, batch, mults)
        dst = [[0, h, 0, w], [0, h, w, width], [h, height, 0, w], [h, height, w, width]]
        crops = []
        for k, (y0, y1, x0, x1) in enumerate(dst):
            cy = _int_host(u[RICAP_CROP + 2 * k], height - (y1 - y0))
            cx = _int_host(u[RICAP_CROP + 2 * k + 1], width - (x1 - x0))
            crops.append([cy, cy + y1 - y0, cx, cx + x1 - x0])
        selected = u[RICAP_PROB] < self.prob
        if not selected:
            dst = [[0, 0, 0, 0]] * 4
        return _uniform_plan(src, [1.0] * 4, dst, crops, size, "nearest", height * width if selected else 0)


@dataclass(frozen=True)
class DirichletSpec(_PieceSpec):
    """k-way Mixup: weights ``w ~ Dirichlet(alpha 1_k)`` (``G_j / sum G`` of ``k`` Gamma(alpha)
    draws); the sample itself and ``k - 1`` partners (slots), whole images blended with ``w``
    (label weights = ``w``). ``mode="batch"``: one set of weights for the batch, as the k-way
    generalisation of Mixup's batch draw; ``"elem"``: per sample."""

    alpha: float = 1.0
    k: int = 3
    prob: float = 1.0
    mode: str = "batch"

    @classmethod
    def checked(cls, alpha=1.0, k=3, prob=1.0, mode="batch") -> "DirichletSpec":
        return cls(_checks.alpha("alpha", alpha, allow_zero=False), _checks.integer("k", k, low=2, high=64),
                   _checks.probability("prob", prob), checked_mode(mode))

    @property
    def unit(self) -> int:
        return self.k * G + 1

    @property
    def slots(self) -> int:
        return self.k - 1

    @property
    def pieces(self) -> int:
        return self.k

    def from_uniforms(self, u: torch.Tensor, batch: int, size, offset: float, table: torch.Tensor) -> PiecePlan:
        """The specification (see :meth:`RicapSpec.from_uniforms`)."""
        k = self.k
        u = draws.rotated(u, offset, draws.TORCH)
        us = _unit_rows(u, batch, self.unit, self.mode)
        dev = u.device
        log_g = draws.log_gamma(us[:, :k * G].reshape(batch, k, G), self.alpha, draws.TORCH)
        weight = torch.softmax(log_g, dim=1).float()                          # G_j / sum G: Dirichlet(alpha 1_k)
        selected = us[:, k * G] < self.prob
        own = torch.arange(batch, device=dev)[:, None]
        src = torch.cat([own, _partners(u, units(self.mode, batch) * self.unit, k - 1, batch, table)], 1)
        box = _whole((batch, k), size, dev)
        covered = torch.full((batch,), size[0] * size[1], dtype=torch.int64, device=dev)
        return _finish(src, weight, box, box.clone(), size, selected, "nearest", covered)

    def host(self, u: Sequence[float], batch: int, size, offset: float, mults: list) -> PiecePlan:
        """The ``mode="batch"`` plan on Python floats (softmax as max, exp, sum, divide)."""
        k = self.k
        u = self._host_uniforms(u, offset)
        log_g = [_log_gamma(u, j * G, self.alpha) for j in range(k)]
        top = max(log_g)
        e = [math.exp(v - top) for v in log_g]
        total = sum(e)
        src = torch.cat([_arange(batch)[:, None], _partners_host(u, self.unit, k - 1, batch, mults)], 1)
        whole = [0, size[0], 0, size[1]]
        selected = u[k * G] < self.prob
        dst = [whole if selected else [0, 0, 0, 0]] * k
        # the spec's weights are float32: the label shares are computed from the rounded ones
        weight = torch.tensor([v / total for v in e], dtype=torch.float32).tolist()
        return _uniform_plan(src, weight, dst, [whole] * k, size, "nearest", size[0] * size[1] if selected else 0)


@dataclass(frozen=True)
class ResizeMixSpec(_PieceSpec):
    """ResizeMix (Qin et al., 2020): ``tau ~ U(scope)``; a ``round(tau H) x round(tau W)`` box
    (half to even) at a uniform position where it fits receives the whole partner resized
    (``interpolation``: ``"nearest"`` or ``"bilinear"``); label weight of the sample's own label
    ``1 - box area / (H W)``, of the partner's the box's share. ``mode="batch"`` is the paper's
    code: one ``tau``, one box and one permutation for the batch; ``"elem"``: per sample."""

    scope: tuple = (0.1, 0.8)
    interpolation: str = "nearest"
    prob: float = 1.0
    mode: str = "batch"
    unit = RESIZE_UNIT
    slots = 1
    pieces = 1

    @classmethod
    def checked(cls, scope=(0.1, 0.8), interpolation="nearest", prob=1.0, mode="batch") -> "ResizeMixSpec":
        lo, hi = _checks.pair("scope", scope, positive=True)
        if hi > 1.0:
            raise ValueError(f"scope: max {hi} is larger than 1 (the box would exceed the image)")
        if interpolation not in RESIZE_MODES:
            raise ValueError(f"interpolation: expected 'nearest' or 'bilinear', got {interpolation!r}")
        if mode in RESIZE_MODES:
            raise ValueError(f"mode: {mode!r} is an interpolation; pass interpolation={mode!r} (mode is 'batch' "
                             "or 'elem', as on every family member)")
        return cls((lo, hi), interpolation, _checks.probability("prob", prob), checked_mode(mode))

    @property
    def resize(self) -> str:
        return self.interpolation

    def from_uniforms(self, u: torch.Tensor, batch: int, size, offset: float, table: torch.Tensor) -> PiecePlan:
        """The specification (see :meth:`RicapSpec.from_uniforms`)."""
        height, width = size
        lo, hi = self.scope
        u = draws.rotated(u, offset, draws.TORCH)
        us = _unit_rows(u, batch, RESIZE_UNIT, self.mode)
        dev = u.device
        tau = lo + (hi - lo) * us[:, RESIZE_TAU]
        bh = draws.round_half_even(tau * height, draws.TORCH).long().clamp(0, height)
        bw = draws.round_half_even(tau * width, draws.TORCH).long().clamp(0, width)
        y0 = _uniform_int(us[:, RESIZE_Y], height - bh)
        x0 = _uniform_int(us[:, RESIZE_X], width - bw)
        selected = us[:, RESIZE_PROB] < self.prob
        src = _partners(u, units(self.mode, batch) * RESIZE_UNIT, 1, batch, table)
        dst = _boxes(y0, y0 + bh, x0, x0 + bw)[:, None]
        weight = torch.ones(batch, 1, device=dev)
        return _finish(src, weight, dst, _whole((batch, 1), size, dev), size, selected, self.interpolation, bh * bw)

    def host(self, u: Sequence[float], batch: int, size, offset: float, mults: list) -> PiecePlan:
        """The ``mode="batch"`` plan on Python floats."""
        height, width = size
        lo, hi = self.scope
        u = self._host_uniforms(u, offset)
        tau = lo + (hi - lo) * u[RESIZE_TAU]
        bh, bw = _round_host(tau * height, height), _round_host(tau * width, width)
        y0, x0 = _int_host(u[RESIZE_Y], height - bh), _int_host(u[RESIZE_X], width - bw)
        selected = u[RESIZE_PROB] < self.prob
        dst = [[y0, y0 + bh, x0, x0 + bw] if selected else [0, 0, 0, 0]]
        return _uniform_plan(_partners_host(u, RESIZE_UNIT, 1, batch, mults), [1.0], dst, [[0, height, 0, width]],
                             size, self.interpolation, bh * bw if selected else 0)
