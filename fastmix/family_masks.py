"""FMix and SaliencyMix: mixes whose region is drawn from the images, applied as ordinary plans.

    fmix = FMix(alpha=1.0, decay_power=3.0, num_classes=1000)          # mode="batch": the paper's draw
    x, soft = fmix(x, y)                 # x mixed in place, soft (B, 1000) float32

Both are :class:`~fastmix.plan.Plan` s, so the kernels that apply Mixup and CutMix apply them in
the same one pass. A step draws one ``torch.rand`` (laid out in :mod:`fastmix.family_draws`) and
turns it into the plan on the batch's device, reading nothing back: on CUDA in a few Triton
launches around batched FFTs (``kernels/sample_masks.py``, ``kernels/saliency.py``: FMix five
launches a step with the blend, six with soft edges; SaliencyMix eight), elsewhere with the torch
ops of :func:`fmix_plan` and :func:`saliency_plan`, the specification the kernels are tested
against. On CPU tensors a ``mode="batch"`` step draws its lam, prob decision and partner rotation
on Python floats (``family_draws.host_units``).

- **FMix** (Harris et al., 2020): ``lam ~ Beta(alpha, alpha)`` and a real field of random complex
  Fourier noise whose amplitude falls as ``1 / f ** decay_power`` (:func:`fourier_noise`). A
  sample keeps its own pixels at the top ``round(lam * H * W)`` values of the field and takes its
  partner's elsewhere (:func:`fmix_mask`; with ``max_soft > 0`` the edge is a linear ramp over
  ranks, as in the paper). ``mode="batch"`` draws one lam and ONE mask for the batch, as the
  paper's code does; ``"elem"`` one of each per sample. The plan copies the partner
  (``lam_self = 0, lam_partner = 1``) inside the region weight ``mask = rho = 1 - own``; the label
  weight of a sample's own class is the exact mean of ``1 - rho``, its share of the output.
- **SaliencyMix** (Uddin et al., 2021): ``lam ~ Beta(beta, beta)``; a CutMix box of side
  ``sqrt(1 - lam)`` (timm's ``rand_bbox`` arithmetic) centred on the peak of a partner's
  spectral-residual saliency (:mod:`fastmix.saliency`), the partner's box pasted at the same place.
  ``mode="batch"`` is the authors' code: one lam and one box for the batch, centred on the peak of
  the saliency of row 0's partner (their ``input[rand_index[0]]``), so one saliency map is
  computed; ``"elem"``: a lam per sample, each box on its own partner's peak. Label weight = the
  exact kept area of the clipped box.

Partners (``pairing="perm"``, the default) are a random rotation ``i -> (i + s) mod B`` per step,
not the papers' ``randperm``: each sample's partner is uniform over the others, and the kernels
walk its cycles in closed form (the rule and its statistical consequence:
:mod:`fastmix.family_draws`). ``"flip"`` (timm) and ``"roll"`` (torchvision) are closed forms too.
``prob`` is the probability of mixing: per batch in ``"batch"`` mode, per sample in ``"elem"``; a
sample that is not mixed, or is its own partner, is left bit for bit as it is and keeps its label.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as nnf

from . import _checks, known, ops
from . import family_draws as fd
from .draws import rotated, TORCH
from .layout import spatial_size
from .family_draws import drawn_plan, partners_of
from .partners import PERM, closed_form_partner
from .plan import CUTMIX, NONE, Plan, drawn
from .saliency import saliency_host_plan, box_at, saliency_plan, spectral_residual_saliency
from .sampling import rank_offset, sampler_for, uniforms

__all__ = ["FMix", "SaliencyMix", "fourier_noise", "fmix_mask", "mask_plan", "spectral_residual_saliency",
           "box_at", "draw_partner", "fmix_plan", "saliency_plan", "PAIRINGS"]

PAIRINGS = (PERM, "flip", "roll")
FAMILY_MODES = fd.MODES


# --------------------------------------------------------------------------------------------
# partners
# --------------------------------------------------------------------------------------------

def draw_partner(pairing: str, batch_size: int, device, generator: Optional[torch.Generator] = None):
    """``(partner, closed form or None)`` drawn on its own: for ``"perm"`` a random rotation from one
    uniform (:mod:`fastmix.family_draws`), else timm's flip / torchvision's roll."""
    if pairing != PERM:
        return closed_form_partner(pairing, batch_size, device)
    u = uniforms(fd.UNIT + 1, device, generator)
    return partners_of(pairing, batch_size, fd.rotation(u, "batch", batch_size, 0.0), device)


# --------------------------------------------------------------------------------------------
# FMix: the mask, the plan
# --------------------------------------------------------------------------------------------

def fourier_noise(batch_size: int, size: tuple[int, int], decay_power: float, device=None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``(B, h, w)`` float32 low-pass noise drawn on its own: ``family_draws.fourier_spectrum`` of
    fresh uniforms, back through one batched inverse real FFT. Only its ranks matter to :func:`fmix_mask`."""
    n = fd.coefficients(batch_size, size)
    u = uniforms(2 * n, device, generator)
    return fd.fourier_field(fd.fourier_spectrum(u, batch_size, size, decay_power), size)


def fmix_mask(noise: torch.Tensor, lam: torch.Tensor, max_soft: float = 0.0) -> torch.Tensor:
    """``(B, H, W)`` float32 share of each sample's *own* pixel, from its ``noise`` field ``(B, H, W)``.

    The ``n = round(lam * H * W)`` largest values (rounded half to even; ties by position: a stable
    descending sort) get 1, the rest 0. With ``max_soft > 0`` the edge is softened as in the FMix
    paper: with ``s = floor(H * W * min(max_soft, lam, 1 - lam))``, the ranks ``[n - s, n + s)``
    ramp linearly from 1 to 0 (both ends included), so the mean share is still ``n / (H * W)``.
    """
    batch, height, width = noise.shape
    numel = height * width
    count, soft = fd.fmix_counts(lam, numel, max_soft)
    low, high = (count - soft)[:, None], (count + soft)[:, None]
    order = torch.argsort(noise.reshape(batch, numel), dim=1, descending=True, stable=True)
    positions = torch.arange(numel, device=noise.device, dtype=torch.float64).expand(batch, numel)
    rank = torch.empty_like(positions).scatter_(1, order, positions)
    ramp = 1.0 - (rank - low) / (high - low - 1.0).clamp_min(1.0)
    own = torch.where(rank < low, 1.0, torch.where(rank >= high, 0.0, ramp))
    return own.float().view(batch, height, width)


def mask_plan(own: torch.Tensor, partner: Optional[torch.Tensor] = None, pairing: str = "flip",
              active: Optional[torch.Tensor] = None, closed=None) -> Plan:
    """A plan that keeps a ``own`` ``(B, H, W)`` share of each sample's pixel and takes the rest
    from its partner: ``out = own * x + (1 - own) * x[partner]``, one pass, in place.

    Expressed as a copy of the partner (``lam_self = 0``, ``lam_partner = 1``) inside the region
    weight ``rho = 1 - own``; pixels with ``own == 1`` are left bit for bit. The label weight of
    the sample's own class is the exact mean of ``1 - rho`` (the share the blend gives it).
    ``partner`` defaults to ``pairing``'s closed form; rows with ``active`` False (default: all
    active) and rows that are their own partner do nothing and keep their label.
    """
    if own.dim() != 3:
        raise ValueError(f"own: expected (B, H, W), got shape {tuple(own.shape)}")
    batch, height, width = own.shape
    device = own.device
    if partner is None:
        partner, closed = closed_form_partner(pairing, batch, device)
    live = partner != torch.arange(batch, device=device)
    if active is not None:
        live = live & active
    rho = torch.where(live[:, None, None], 1.0 - own.float().clamp(0.0, 1.0), 0.0).contiguous()
    touched = live & (rho > 0).flatten(1).any(1)
    box = torch.zeros(batch, 1, 4, dtype=torch.int32, device=device)
    box[:, 0, 1], box[:, 0, 3] = height, width
    box = box * touched[:, None, None]
    label_lam = (1.0 - rho.double()).mean((1, 2)).float()
    zero = torch.zeros(batch, device=device)
    return Plan(partner=partner, lam_self=zero, lam_partner=torch.where(touched, 1.0, 0.0), box=box,
                label_lam=label_lam, kind=torch.where(touched, CUTMIX, NONE).to(torch.int8),
                size=(height, width), mask=rho, _closed=closed)


def _fields(u_noise, count: int, field_size, size, decay_power: float) -> torch.Tensor:
    """``(count, H, W)`` fields: drawn at ``field_size``, resized bilinearly to ``size`` if it differs."""
    field = fd.fourier_field(fd.fourier_spectrum(u_noise, count, field_size, decay_power), field_size)
    if tuple(field_size) != tuple(size):
        field = nnf.interpolate(field[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return field


def fmix_plan(u: torch.Tensor, batch: int, size, field_size=None, mode: str = "batch", pairing: str = PERM,
              alpha: float = 1.0, decay_power: float = 3.0, max_soft: float = 0.0, prob: float = 1.0,
              offset: float = 0.0) -> Plan:
    """FMix's plan from a step's uniforms ``u`` (``family_draws.uniform_count`` of them), with torch
    ops on ``u``'s device: the specification (see the module docstring)."""
    field_size = tuple(field_size or size)
    count = fd.units(mode, batch)
    lam, selected = fd.unit_draws(u, count, alpha, prob, offset)
    partner, closed = partners_of(pairing, batch, fd.rotation(u, mode, batch, offset), u.device)
    if count == 0:
        return drawn(mask_plan(torch.ones(0, *size, device=u.device), partner, closed=closed))
    start = fd.noise_start(mode, batch)
    u_noise = rotated(u[start:start + 2 * fd.coefficients(count, field_size)], offset, TORCH)
    own = fmix_mask(_fields(u_noise, count, field_size, size, decay_power), lam, max_soft)
    if mode == "batch":
        own, selected = own.expand(batch, *size), selected.expand(batch)
    return drawn(mask_plan(own, partner, active=selected, closed=closed))


def _fmix_host_plan(u: torch.Tensor, batch: int, size, field_size, pairing: str, alpha: float, decay_power: float,
                    max_soft: float, prob: float, offset: float) -> Plan:
    """:func:`fmix_plan` in ``mode="batch"`` on CPU tensors, lam, prob and the rotation on Python floats."""
    draw = fd.host_units(u[:fd.UNIT + 1].tolist(), batch, alpha, prob, offset)
    partner, closed = partners_of(pairing, batch, draw.shift, "cpu")
    if draw.selected:
        start = fd.noise_start("batch", batch)
        u_noise = rotated(u[start:start + 2 * fd.coefficients(1, field_size)], offset, TORCH)
        own = fmix_mask(_fields(u_noise, 1, field_size, size, decay_power),
                        torch.tensor([draw.lam], dtype=torch.float64), max_soft)
    else:                    # no row mixes: the spec's plan keeps every pixel whatever the field
        own = torch.ones(1, *size)
    return drawn(mask_plan(own.expand(batch, *size), partner, closed=closed))


# --------------------------------------------------------------------------------------------
# the transforms
# --------------------------------------------------------------------------------------------

def _check_pairing(pairing) -> str:
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing: expected one of {PAIRINGS}, got {pairing!r}")
    return pairing


class _FamilyArguments:
    """The arguments every family member checks alike: ``mode``, ``prob``, the targets' and
    ``generator``. ``mode`` is timm's: ``"batch"`` draws once for the batch (the papers' draw: one
    boundary, one λ or set of weights, one mask, one scale), ``"elem"`` once per sample."""

    def __init__(self, prob, label_smoothing, num_classes, generator, validate=None, mode="batch"):
        if mode not in FAMILY_MODES:
            raise ValueError(f"mode: expected 'batch' (one draw per batch) or 'elem' (per sample), got {mode!r}")
        self.mode = mode
        self.prob = _checks.probability("prob", prob)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, low=0.0, high=1.0,
                                              high_open=True)
        self.num_classes = _checks.integer("num_classes", num_classes, low=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.validate = validate


class _MixArguments(_FamilyArguments):
    """The family members with one partner per sample: ``pairing`` too."""

    def __init__(self, prob, pairing, label_smoothing, num_classes, generator, validate, mode="batch"):
        super().__init__(prob, label_smoothing, num_classes, generator, validate, mode)
        self.pairing = _check_pairing(pairing)


class _ImageMix(_MixArguments):
    """What FMix and SaliencyMix share: the call, the plan, the prepared draw per (batch, size, device)."""

    def _key(self) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, batch: int, size, device):  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw_for(self, x: torch.Tensor):
        """The draw prepared for ``x``'s batch, size and device (and this op's arguments), made once."""
        draws = self.__dict__.setdefault("_draws", {})
        size = spatial_size(x)
        key = (x.shape[0], size, x.device, ops.generation, self.mode, self.pairing) + self._key()
        draw = draws.get(key)
        if draw is None:
            if len(draws) >= 8:
                draws.clear()
            draw = draws[key] = self._prepare(x.shape[0], size, x.device)
        return draw

    def plan(self, x: torch.Tensor) -> Plan:
        """Draw this step's plan for batch ``x`` ``(B, C, H, W)`` or ``(B, C, T, H, W)`` (nothing is applied)."""
        known.batch("x", x, dims=(4, 5), writable=False)
        return self._draw_for(x).sample(x, self.prob, self.generator)[0]

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        """``(x mixed, soft targets (B, num_classes) float32)``: in place, or out of place and
        differentiable when ``x`` requires grad. ``target``: class indices ``(B,)`` or soft ``(B, K)``."""
        _checks.tensor("x", x)
        needs_grad = ops.grad_wanted(x)
        facts = known.batch("x", x, dims=(4, 5), writable=not needs_grad)
        classes = _checks.labels("target", target, x.shape[0], self.num_classes, x.device,
                                 _checks.default_validate(self.validate, x.device))
        plan, soft = self._draw_for(x).sample(x, self.prob, self.generator, target, classes, self.label_smoothing)
        if soft is None:
            soft = ops.targets_of(target, plan, classes, self.label_smoothing)
        return ops.apply_known(x, plan, facts, inplace=not needs_grad), soft

    def __getstate__(self):
        # prepared draws hold device kernels and cached tensors: each process prepares its own
        return {k: v for k, v in self.__dict__.items() if k != "_draws"}


def _sampler(device: torch.device, mode: str) -> str:
    """``"triton"`` (the fused kernels), ``"host"`` (CPU, batch mode: Python floats) or ``"torch"``."""
    sampler = sampler_for(device)
    if sampler == "numpy":
        return "host" if mode == "batch" else "torch"
    return sampler


class _FMixDraw:
    """FMix's draw for one (batch, size, device, arguments): the uniforms it takes and where its
    function is computed, derived once; :meth:`sample` is ``(plan, targets or None)``."""

    def __init__(self, op: "FMix", batch: int, size, device):
        self.op, self.batch, self.size, self.device = op, batch, tuple(size), torch.device(device)
        self.field_size = tuple(op.size or size)
        masks = fd.masks(op.mode, batch)
        self.count = fd.uniform_count(op.mode, batch, fd.coefficients(masks, self.field_size))
        self.sampler = _sampler(self.device, op.mode)
        if self.sampler == "triton":
            from .kernels import sample_masks
            self.kernel = sample_masks.RowsSampler(batch, op.mode, op.pairing, op.alpha, self.field_size, self.size,
                                                   op.decay_power, op.max_soft, self.device)
            self.masks = sample_masks.MaskLaunch(batch, self.size, op.mode, soft=op.max_soft > 0)

    def sample(self, x, prob: float, generator, labels=None, classes: int = 0, smoothing: float = 0.0):
        op, batch = self.op, self.batch
        u = uniforms(self.count, self.device, generator)
        offset = rank_offset(generator)
        sampler = "torch" if torch.compiler.is_compiling() else self.sampler
        if sampler == "triton" and batch:
            rows, cycles, targets, spectrum, counts = self.kernel(u, prob, offset, labels, classes, smoothing)
            field = fd.fourier_field(torch.view_as_complex(spectrum), self.field_size)
            if self.field_size != self.size:
                field = nnf.interpolate(field[:, None], size=self.size, mode="bilinear", align_corners=False)[:, 0]
            return drawn_plan(rows, op.pairing, self.size, self.masks(field, counts, rows[2]), cycles), targets
        if sampler == "host":
            return _fmix_host_plan(u, batch, self.size, self.field_size, op.pairing, op.alpha, op.decay_power,
                                   op.max_soft, prob, offset), None
        return fmix_plan(u, batch, self.size, self.field_size, op.mode, op.pairing, op.alpha, op.decay_power,
                         op.max_soft, prob, offset), None


class FMix(_ImageMix):
    """FMix (Harris et al., 2020, "FMix: Enhancing Mixed Sample Data Augmentation") on a batch.

    Args:
        alpha: ``lam ~ Beta(alpha, alpha)``, the share of a sample's own pixels.
        decay_power: ``δ`` of the noise's ``1 / f ** δ`` amplitude; larger gives smoother masks.
        max_soft: half-width of the softened edge as a fraction of the pixels (0: binary masks).
        size: ``(h, w)`` of the Fourier grid; None (default) uses the batch's ``(H, W)``. Another
            size draws the field there and resizes it bilinearly to ``(H, W)`` before the ranks are
            taken, so the pixel count stays exact.
        mode: ``"batch"`` (default; the paper's code: one lam and one mask for the whole batch,
            mixed by the partner rule) or ``"elem"`` (a lam and a mask per sample).
        prob: probability that the batch (``"batch"``) or a sample (``"elem"``) is mixed.
        pairing: ``"perm"`` (a random rotation of the batch per step: :mod:`fastmix.family_draws`),
            ``"flip"`` or ``"roll"``.
        label_smoothing, num_classes, generator, validate: as :class:`fastmix.Mixup`.

    ``fmix(x, target)`` returns ``(x, soft)``; ``fmix.plan(x)`` draws the plan only.
    """

    def __init__(self, alpha: float = 1.0, decay_power: float = 3.0, max_soft: float = 0.0,
                 size: Optional[Sequence[int]] = None, *, mode: str = "batch", prob: float = 1.0,
                 pairing: str = PERM, label_smoothing: float = 0.0, num_classes: int = 1000,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        super().__init__(prob, pairing, label_smoothing, num_classes, generator, validate, mode)
        self.alpha = _checks.alpha("alpha", alpha, allow_zero=False)
        self.decay_power = _checks.number("decay_power", decay_power, low=0.0)
        self.max_soft = _checks.number("max_soft", max_soft, low=0.0, high=0.5)
        if size is not None:
            if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
                raise ValueError(f"size: expected (h, w) or None, got {size!r}")
            size = tuple(_checks.integer("size", side, low=1) for side in size)
        self.size = size

    def _key(self) -> tuple:
        return (self.alpha, self.decay_power, self.max_soft, self.size)

    def _prepare(self, batch: int, size, device) -> _FMixDraw:
        return _FMixDraw(self, batch, size, device)


class _SaliencyDraw:
    """SaliencyMix's draw for one (batch, size, device, arguments), as :class:`_FMixDraw`."""

    def __init__(self, op: "SaliencyMix", batch: int, size, device):
        self.op, self.batch, self.size, self.device = op, batch, tuple(size), torch.device(device)
        self.count = fd.uniform_count(op.mode, batch)
        self.sampler = _sampler(self.device, op.mode)
        if self.sampler == "triton":
            from .kernels import saliency
            self.kernel = saliency.SaliencySampler(batch, self.size, op.mode, op.pairing, op.beta, op.sigma, self.device)

    def sample(self, x, prob: float, generator, labels=None, classes: int = 0, smoothing: float = 0.0):
        op = self.op
        u = uniforms(self.count, self.device, generator)
        offset = rank_offset(generator)
        sampler = "torch" if torch.compiler.is_compiling() else self.sampler
        if sampler == "triton" and self.batch:
            rows, cycles, targets = self.kernel(x.detach(), u, prob, offset, labels, classes, smoothing)
            return drawn_plan(rows, op.pairing, self.size, None, cycles), targets
        if sampler == "host":
            return saliency_host_plan(x, u, op.pairing, op.beta, op.sigma, prob, offset), None
        return saliency_plan(x, u, op.mode, op.pairing, op.beta, op.sigma, prob, offset), None


class SaliencyMix(_ImageMix):
    """SaliencyMix (Uddin et al., ICLR 2021) on a batch: CutMix with the box on a partner's saliency peak.

    Args:
        beta: ``lam ~ Beta(beta, beta)``; the box has side ``sqrt(1 - lam)`` of the image.
        sigma: the saliency map's Gaussian blur, in pixels.
        mode: ``"batch"`` (default; the authors' code: one lam and one box for the batch, centred
            on the saliency peak of row 0's partner, every row pasting its own partner's pixels
            there) or ``"elem"`` (a lam per sample, each box centred on its own partner's peak).
        prob, pairing, label_smoothing, num_classes, generator, validate: as :class:`FMix`.

    The peak is the argmax of :func:`spectral_residual_saliency` (the first in row-major order on
    ties); the label weight is the exact kept area of the clipped box.
    """

    def __init__(self, beta: float = 1.0, *, sigma: float = 2.5, mode: str = "batch", prob: float = 1.0,
                 pairing: str = PERM, label_smoothing: float = 0.0, num_classes: int = 1000,
                 generator: Optional[torch.Generator] = None, validate: Optional[bool] = None):
        super().__init__(prob, pairing, label_smoothing, num_classes, generator, validate, mode)
        self.beta = _checks.alpha("beta", beta, allow_zero=False)
        self.sigma = _checks.number("sigma", sigma, low=0.0, low_open=True)

    def _key(self) -> tuple:
        return (self.beta, self.sigma)

    def _prepare(self, batch: int, size, device) -> _SaliencyDraw:
        return _SaliencyDraw(self, batch, size, device)
