"""RICAP, k-way Dirichlet Mixup and ResizeMix: transforms and samplers of piece plans.

Each transform is called like :class:`fastmix.Mixup`::

    op = fastmix.RICAP(beta=0.3, num_classes=1000)          # mode="batch": the paper's draw
    out, soft = op(x, target)          # out: a new tensor; soft: (B, num_classes) float32

and ``op.plan(x)`` draws the :class:`~fastmix.pieces.PiecePlan` alone (the functional path:
:func:`fastmix.pieces.apply_pieces`, :func:`fastmix.pieces.pieces_targets`). ``mode`` is timm's:
``"batch"`` (the default) draws once for the batch as each paper's code does (one boundary and
one crop per quadrant, one set of Dirichlet weights, one scale and box), ``"elem"`` once per
sample; ``prob`` decides for the batch or the sample accordingly, and an unselected sample keeps
itself (no pieces, its own label with weight 1). What each member draws, the layout of its
uniforms and the partner rule (a random affine permutation per partner slot, which a kernel can
compute: see :mod:`fastmix.piece_draws` for what that changes) are specified in
:mod:`fastmix.piece_draws`.

A step draws its uniforms in one ``torch.rand`` (the user's ``generator=`` or the default one,
rotated per rank under ``torch.distributed`` as the core transforms are), then computes the plan
where it is cheapest (:class:`_PieceDraw`): one Triton launch on CUDA that also writes the soft
targets (``kernels/sample_pieces.py``), Python floats on CPU tensors in batch mode, the torch
specification elsewhere and under ``torch.compile``. Nothing is read back to the host on a GPU.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import _checks, known, ops
from .family_masks import _FamilyArguments
from .layout import spatial_size
from .piece_draws import DirichletSpec, ResizeMixSpec, RicapSpec, multipliers
from .pieces import PIECE_DTYPES, PiecePlan, apply_known, targets_known
from .sampling import rank_offset, sampler_for, uniforms


class _PieceDraw:
    """One piece spec's draws for one (batch, size, device): the facts of a draw derived once
    (the uniforms it takes, the partner multipliers, where its function is computed, the kernel's
    launch), so a step only draws. ``sample`` returns ``(plan, targets or None)``."""

    def __init__(self, spec, batch: int, size, device):
        self.spec, self.batch, self.size = spec, batch, tuple(size)
        self.device = torch.device("cpu" if device is None else device)
        self.count = spec.count(batch)
        self.mults = multipliers(batch)
        self.sampler = sampler_for(self.device)
        if self.sampler == "numpy":
            # CPU tensors: a once-per-batch plan on Python floats (the project's decision for
            # batch modes, fastmix/host_draws.py); a per-sample one by the torch specification
            self.sampler = "host" if spec.mode == "batch" else "torch"
        self._table = None
        self.kernel = None
        if self.sampler == "triton":
            from .kernels.sample_pieces import PieceSampler
            self.kernel = PieceSampler(spec, batch, self.size, self.table())

    def table(self) -> torch.Tensor:
        """The multipliers on the device (made once; under compile a constant of the graph)."""
        if torch.compiler.is_compiling():
            return torch.tensor(self.mults, dtype=torch.int64, device=self.device)
        if self._table is None:
            self._table = torch.tensor(self.mults, dtype=torch.int64, device=self.device)
        return self._table

    def sample(self, generator: Optional[torch.Generator], labels=None, num_classes: int = 0,
               smoothing: float = 0.0, reuse: bool = False):
        """``(plan, targets)``: ``targets`` are ``labels``' soft targets when the sampler builds them
        in the same launch (CUDA), else None. ``reuse``: the plan lives only for the caller's step,
        so its tensors may be the sampler's kept rows."""
        u = uniforms(self.count, self.device, generator)
        offset = rank_offset(generator)
        sampler = "torch" if torch.compiler.is_compiling() else self.sampler
        if sampler == "triton":
            return self.kernel(u, offset, labels, num_classes, smoothing, reuse)
        if sampler == "host":
            return self.spec.host(u.tolist(), self.batch, self.size, offset, self.mults), None
        return self.spec.from_uniforms(u, self.batch, self.size, offset, self.table()), None


def _device(device) -> torch.device:
    return torch.device("cpu" if device is None else device)


# --------------------------------------------------------------------------------------------
# the samplers (the functional path)
# --------------------------------------------------------------------------------------------

def ricap_plan(batch: int, size: tuple[int, int], beta: float = 0.3, prob: float = 1.0, device=None,
               generator: Optional[torch.Generator] = None, *, mode: str = "batch") -> PiecePlan:
    """A RICAP plan (:class:`fastmix.piece_draws.RicapSpec`): four translated pieces per sample."""
    spec = RicapSpec.checked(beta, prob, mode)
    return spec._prepared(batch, tuple(size), _device(device)).sample(generator)[0]


def dirichlet_plan(batch: int, size: tuple[int, int], alpha: float = 1.0, k: int = 3, prob: float = 1.0,
                   device=None, generator: Optional[torch.Generator] = None, *, mode: str = "batch") -> PiecePlan:
    """A k-way Dirichlet Mixup plan (:class:`fastmix.piece_draws.DirichletSpec`): the sample and
    ``k - 1`` partners, whole images."""
    spec = DirichletSpec.checked(alpha, k, prob, mode)
    return spec._prepared(batch, tuple(size), _device(device)).sample(generator)[0]


def resizemix_plan(batch: int, size: tuple[int, int], scope: Sequence[float] = (0.1, 0.8),
                   interpolation: str = "nearest", prob: float = 1.0, device=None,
                   generator: Optional[torch.Generator] = None, *, mode: str = "batch") -> PiecePlan:
    """A ResizeMix plan (:class:`fastmix.piece_draws.ResizeMixSpec`): the whole partner resized
    into one box per sample."""
    spec = ResizeMixSpec.checked(scope, interpolation, prob, mode)
    return spec._prepared(batch, tuple(size), _device(device)).sample(generator)[0]


# --------------------------------------------------------------------------------------------
# the transforms
# --------------------------------------------------------------------------------------------

class _PieceMix(_FamilyArguments):
    """What the three transforms share: arguments (the family's), checks, ``plan`` and ``__call__``.
    The member's arguments are plain attributes; the spec made of them is re-made (and re-checked)
    when one of them changes."""

    def __init__(self, prob: float, label_smoothing: float, num_classes: int, generator: Optional[torch.Generator],
                 mode: str, validate: Optional[bool]):
        super().__init__(prob, label_smoothing, num_classes, generator, validate, mode)
        self._key = None
        self._spec()                                  # every argument checked at construction

    def _arguments(self) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def _make_spec(self, *arguments):  # pragma: no cover - abstract
        raise NotImplementedError

    def _spec(self):
        arguments = self._arguments()
        if arguments != self._key:
            self._current = self._make_spec(*arguments)
            self._key = arguments
        return self._current

    def plan(self, x: torch.Tensor) -> PiecePlan:
        """Draw this step's plan for the image batch ``x`` (nothing is applied)."""
        known.batch("x", x, dims=(4, 5), dtypes=PIECE_DTYPES, writable=False)
        return self._spec()._prepared(x.shape[0], spatial_size(x), x.device).sample(self.generator)[0]

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        """``(out, soft)``: the mixed batch (a new tensor; differentiable when ``x`` requires grad)
        and ``(B, num_classes)`` float32 targets of class indices ``(B,)`` or soft labels ``(B, K)``."""
        facts = known.batch("x", x, dims=(4, 5), dtypes=PIECE_DTYPES, writable=False)
        classes = _checks.labels("target", target, x.shape[0], self.num_classes, x.device,
                                 _checks.default_validate(self.validate, x.device))
        draw = self._spec()._prepared(x.shape[0], spatial_size(x), x.device)
        # the plan lives for this call only unless autograd keeps it for the backward
        plan, soft = draw.sample(self.generator, target, classes, self.label_smoothing, not ops.grad_wanted(x))
        if soft is None:
            soft = targets_known(target, plan, classes, self.label_smoothing)
        return apply_known(x, plan, facts), soft

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                         if k not in ("generator", "validate") and not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RICAP(_PieceMix):
    """RICAP: four quadrants at a Beta(beta, beta) boundary, each cropped from its own partner.

    Args:
        beta: Beta concentration of the boundary (positive).
        prob: probability that the batch (``mode="batch"``) or a sample (``"elem"``) is mixed.
        label_smoothing: ε of the targets (off = ε / K, on = 1 - ε + ε / K).
        num_classes: ``K``.
        mode: ``"batch"``: the paper's code, one boundary for the batch and one crop position
            (and one permutation) per quadrant; ``"elem"``: boundary and crops per sample.
        generator: a ``torch.Generator`` on the batch's device.
        validate: range-check class indices (default: on CPU tensors, as :class:`fastmix.Mixup`).
    """

    def __init__(self, beta: float = 0.3, prob: float = 1.0, label_smoothing: float = 0.0, num_classes: int = 1000,
                 *, mode: str = "batch", generator: Optional[torch.Generator] = None,
                 validate: Optional[bool] = None):
        self.beta = _checks.alpha("beta", beta, allow_zero=False)
        super().__init__(prob, label_smoothing, num_classes, generator, mode, validate)

    def _arguments(self) -> tuple:
        return self.beta, self.prob, self.mode

    def _make_spec(self, *arguments):
        return RicapSpec.checked(*arguments)


class DirichletMixup(_PieceMix):
    """k-way Mixup: the sample and ``k - 1`` partners blended with Dirichlet(alpha 1_k) weights.

    Args:
        alpha: Dirichlet concentration (positive).
        k: samples per mix (the sample itself and ``k - 1`` partners), 2 to 64.
        mode: ``"batch"``: one set of weights for the batch; ``"elem"``: per sample.
        prob, label_smoothing, num_classes, generator, validate: as :class:`RICAP`.
    """

    def __init__(self, alpha: float = 1.0, k: int = 3, prob: float = 1.0, label_smoothing: float = 0.0,
                 num_classes: int = 1000, *, mode: str = "batch", generator: Optional[torch.Generator] = None,
                 validate: Optional[bool] = None):
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)
        self.k = _checks.integer("k", k, low=2, high=64)
        super().__init__(prob, label_smoothing, num_classes, generator, mode, validate)

    def _arguments(self) -> tuple:
        return self.alpha, self.k, self.prob, self.mode

    def _make_spec(self, *arguments):
        return DirichletSpec.checked(*arguments)


class ResizeMix(_PieceMix):
    """ResizeMix: the whole partner resized into a box of side ``tau`` of the image, tau ~ U(scope).

    Args:
        scope: ``(min, max)`` of tau, with ``0 < min <= max <= 1``.
        interpolation: ``"nearest"`` or ``"bilinear"`` (``F.interpolate``'s rules,
            ``align_corners=False``; torchvision's name for it).
        mode: ``"batch"``: the paper's code, one tau, box and permutation for the batch;
            ``"elem"``: per sample. (``mode="nearest"``/``"bilinear"`` is refused: that is
            ``interpolation`` now.)
        prob, label_smoothing, num_classes, generator, validate: as :class:`RICAP`.
    """

    def __init__(self, scope: Sequence[float] = (0.1, 0.8), interpolation: str = "nearest", prob: float = 1.0,
                 label_smoothing: float = 0.0, num_classes: int = 1000, *, mode: str = "batch",
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        spec = ResizeMixSpec.checked(scope, interpolation, prob, mode)   # names interpolation= for an old mode=
        self.scope, self.interpolation = spec.scope, spec.interpolation
        super().__init__(prob, label_smoothing, num_classes, generator, mode, validate)

    def _arguments(self) -> tuple:
        return self.scope, self.interpolation, self.prob, self.mode

    def _make_spec(self, *arguments):
        return ResizeMixSpec.checked(*arguments)
