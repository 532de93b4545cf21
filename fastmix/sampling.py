"""Samplers: what each transform draws, validated once and then only drawn.

Each operation has a *spec* — a frozen dataclass of its arguments, built by ``Spec.checked(...)``,
which applies every rule about them in one place (kornia's ``make_samplers`` idea) — and a
``sample(batch_size, size, device, generator)`` that returns a :class:`~fastmix.plan.Plan` (and,
given labels, the soft targets). The transforms (``fastmix.Mixup``, ``fastmix.v2``, ``Cutout``,
``RandomErasing``) and the functional samplers (``fastmix.functional.mixup_cutmix_plan`` ...)
both go through the specs.

A sample is one draw of float32 uniforms from the torch generator (``torch.rand``: the user's
``generator=`` or the default one, so runs are reproducible and a step captured in a CUDA graph
draws fresh plans on every replay), then a pure function of them (``fastmix/draws.py``, the
specification) computed where it is cheapest (:func:`sampler_for`): one Triton launch on CUDA
(``kernels/sample.py``, which also writes the soft targets), numpy on CPU tensors, torch ops
anywhere else and under ``torch.compile``. Nothing is read back to the host on a GPU.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

import torch

from . import _checks, draws, host_draws, ops
from .partners import FLIP, ROLL, SELF, _closed_form, _ClosedForm
from .plan import Plan

Generator = Optional[torch.Generator]
DeviceLike = Union[torch.device, str, None]

MODES = ("batch", "pair", "elem")
BOX_STYLES = ("timm", "torchvision")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


# --------------------------------------------------------------------------------------------
# the one draw, and where its function is computed
# --------------------------------------------------------------------------------------------

_worker_streams: dict = {}


def _stream(generator: Generator) -> Generator:
    """The generator to draw from in this process. In a DataLoader worker every worker holds a
    copy of the same generator state, so each derives its own stream, once, from the generator's
    seed and the seed torch gives the worker (different per worker and per epoch; reproducible
    when the DataLoader is seeded), as PyTorch does for its own seeds."""
    if generator is None or torch.compiler.is_compiling():   # compiled steps run in the main process
        return generator
    info = torch.utils.data.get_worker_info()
    if info is None:
        return generator
    key = (id(generator), os.getpid())
    if key not in _worker_streams:
        derived = torch.Generator(device=generator.device)
        derived.manual_seed((generator.initial_seed() * 0x9E3779B97F4A7C15 + info.seed) % (2**63))
        _worker_streams[key] = (generator, derived)   # the original is kept so its id stays unique
    return _worker_streams[key][1]


_DISTRIBUTED = torch.distributed.is_available()   # a build property: fixed for the process


def rank_offset(generator: Generator) -> float:
    """With the default generator under ``torch.distributed``, each rank rotates its uniforms by
    its own offset, so ranks seeded alike (as training scripts seed for equal initial weights)
    still draw different plans; an explicit ``generator=`` is used as it is."""
    if generator is not None or not _DISTRIBUTED or torch.compiler.is_compiling():
        return 0.0
    dist = torch.distributed
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return 0.0
    return (dist.get_rank() * _GOLDEN) % 1.0


def uniforms(n: int, device: DeviceLike, generator: Generator) -> torch.Tensor:
    """The step's randomness: ``n`` float32 uniforms in [0, 1), one draw (one launch on a GPU)."""
    return torch.rand(n, device=device, generator=_stream(generator))


def sampler_for(device: torch.device) -> str:
    """``"triton"`` (CUDA, eager), ``"numpy"`` (CPU tensors, eager) or ``"torch"`` (any device, and
    under ``torch.compile``, which fuses the torch ops itself); ``FASTMIX_BACKEND`` as for the blend."""
    if torch.compiler.is_compiling():
        return "torch"
    return {"triton": "triton", "cpu": "numpy"}.get(ops.backend_for(device), "torch")


def _plan_from_rows(rows: draws.PlanRows, pairing: str, size, fill=None, noise_seed=None) -> Plan:
    if not isinstance(rows.partner, torch.Tensor):                 # numpy rows (the CPU sampler)
        rows = draws.PlanRows(*(torch.from_numpy(v) for v in rows))
    return Plan.trusted(*rows, fill=fill, noise_seed=noise_seed, size=size, closed=_closed_form(pairing, rows.partner))


@functools.lru_cache(maxsize=64)
def _fill_row(values: tuple, device: torch.device) -> torch.Tensor:
    """``(1, C)`` float32 fill values on ``device``, made once per device (one small copy): a plan's
    fill is this row expanded to the batch (a view), so a step allocates and launches nothing for it."""
    return torch.tensor([values], dtype=torch.float32, device=device)


def _fill(value, batch: int, device) -> torch.Tensor:
    values = (value,) if isinstance(value, float) else tuple(value)
    return _fill_row(values, torch.device(device) if device is not None else torch.device("cpu")).expand(
        batch, len(values))


# --------------------------------------------------------------------------------------------
# the functional API's draws
# --------------------------------------------------------------------------------------------

def sample_beta(alpha: Union[float, Sequence[float]], n: int, device: DeviceLike = None,
                generator: Generator = None) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) as float32 (``(len(alpha), n)`` for several alphas), by
    the samplers' own method (``fastmix.draws.beta``: Marsaglia-Tsang in log space, float64)."""
    alphas = [float(alpha)] if _checks.is_number(alpha) else [float(a) for a in alpha]
    u = uniforms(len(alphas) * n * 2 * draws.GAMMA_UNIFORMS, device, generator).double()
    u = u.view(len(alphas), n, 2, draws.GAMMA_UNIFORMS)
    out = torch.stack([draws.beta(u[k, :, 0], u[k, :, 1], a, draws.TORCH) for k, a in enumerate(alphas)]).float()
    return out[0] if _checks.is_number(alpha) else out


def box_from_lam(lam: torch.Tensor, size: tuple[int, int], generator: Generator = None,
                 style: str = "timm") -> torch.Tensor:
    """A CutMix box of side ``sqrt(1 - lam)`` of the image around a uniform centre, clipped.

    ``style="timm"`` is timm's ``rand_bbox``: side ``cut = int(H * sqrt(1 - lam))``, rows
    ``[cy - cut // 2, cy + (cut + 1) // 2)``. ``style="torchvision"`` is ``v2.CutMix``: half-side
    ``int(0.5 * sqrt(1 - lam) * H)``, rows ``[cy - half, cy + half)``. Returns ``(n, 4)`` int32
    ``[y0, y1, x0, x1]``.
    """
    if style not in BOX_STYLES:
        raise ValueError(f"style: expected 'timm' or 'torchvision', got {style!r}")
    spec = MixupSpec(mixup_alpha=0.0, cutmix_alpha=1.0, box_style=style)
    u = uniforms(4 * lam.shape[0], lam.device, generator).double().view(-1, 4)
    return torch.stack(draws._cut_box(spec, lam.double(), u, size[0], size[1], draws.TORCH), 1).to(torch.int32)


def box_from_minmax(n: int, size: tuple[int, int], minmax: Sequence[float], device: DeviceLike = None,
                    generator: Generator = None) -> torch.Tensor:
    """timm's ``rand_bbox_minmax``: box sides uniform in ``[min, max)`` of the image, fully inside
    it (top-left corner uniform in ``[0, H - side]``)."""
    spec = MixupSpec.checked(cutmix_minmax=minmax)
    _check_minmax_fits(spec.cutmix_minmax, size)
    u = uniforms(4 * n, device, generator).double().view(-1, 4)
    return torch.stack(draws._cut_box(spec, None, u, size[0], size[1], draws.TORCH), 1).to(torch.int32)


def _check_minmax_fits(minmax, size) -> None:
    height, width = size
    lo, hi = minmax
    if int(height * hi) <= int(height * lo) or int(width * hi) <= int(width * lo):
        raise ValueError(f"cutmix_minmax: {tuple(minmax)} leaves no box size to draw on a {height}x{width} image")


# --------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------

class _Spec:
    def replace(self, **changes):
        """A re-checked copy with some arguments changed."""
        return self.checked(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})

    def _prepared(self, batch_size: int, size, device):
        """What a draw for this (batch, size, device) needs, derived once (:meth:`_prepare`; the
        last few are kept on the spec, which is frozen: a cache, not a field)."""
        prepared = self.__dict__.get("_draws")
        if prepared is None:
            prepared = {}
            object.__setattr__(self, "_draws", prepared)
        key = (batch_size, size, device, ops.generation)
        draw = prepared.get(key)
        if draw is None:
            draw = self._prepare(batch_size, size, device)
            if len(prepared) >= 8:
                prepared.clear()
            prepared[key] = draw
        return draw

    def __getstate__(self):
        # the prepared draws (a cache, with device kernels in it) stay in this process: a spec sent
        # to DataLoader workers prepares its own
        return {k: v for k, v in self.__dict__.items() if k != "_draws"}


@dataclass(frozen=True)
class MixupSpec(_Spec):
    """What a Mixup/CutMix step draws, with timm's ``Mixup`` semantics (torchvision's with
    ``pairing="roll", box_style="torchvision"``).

    ``mode`` decides how many independent draws there are: one for the batch (``"batch"``), one
    per flipped pair (``"pair"``), one per sample (``"elem"``). Each draw applies with
    probability ``prob``; when both Mixup and CutMix are on it is CutMix with probability
    ``switch_prob``; λ ~ Beta(alpha, alpha); a CutMix box has side ``sqrt(1 - λ)`` (or sides from
    ``cutmix_minmax``, which turns CutMix on with alpha 1, as timm does) and with ``correct_lam``
    (always with minmax) the label weight is the exact fraction of pixels kept.
    """

    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: Optional[tuple[float, float]] = None
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = "batch"
    correct_lam: bool = True
    pairing: str = FLIP
    box_style: str = "timm"

    @classmethod
    def checked(cls, mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                mode="batch", correct_lam=True, pairing=FLIP, box_style="timm") -> "MixupSpec":
        mixup_alpha = _checks.alpha("mixup_alpha", mixup_alpha, allow_zero=True)
        cutmix_alpha = _checks.alpha("cutmix_alpha", cutmix_alpha, allow_zero=True)
        if cutmix_minmax is not None:
            lo, hi = _checks.pair("cutmix_minmax", cutmix_minmax, positive=True)
            if hi > 1.0 or lo >= hi:
                raise ValueError(f"cutmix_minmax: expected 0 < min < max <= 1, got {tuple(cutmix_minmax)}")
            cutmix_minmax = (lo, hi)
            cutmix_alpha = 1.0  # timm: with minmax, alpha only decides that a mix happens
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("mixup_alpha, cutmix_alpha: one of them (or cutmix_minmax) must enable a mix")
        if mode not in MODES:
            raise ValueError(f"mode: expected 'batch', 'pair' or 'elem', got {mode!r}")
        if pairing not in (FLIP, ROLL):
            raise ValueError(f"pairing: expected 'flip' (timm) or 'roll' (torchvision), got {pairing!r}")
        if box_style not in BOX_STYLES:
            raise ValueError(f"box_style: expected 'timm' or 'torchvision', got {box_style!r}")
        return cls(mixup_alpha, cutmix_alpha, cutmix_minmax, _checks.probability("prob", prob),
                   _checks.probability("switch_prob", switch_prob), mode, bool(correct_lam), pairing, box_style)

    @property
    def cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0

    def sample(self, batch_size: int, size: Optional[tuple[int, int]], device: DeviceLike = None,
               generator: Generator = None, *, prob: Optional[float] = None, labels: Optional[torch.Tensor] = None,
               num_classes: int = 0, smoothing: float = 0.0, reuse: bool = False):
        """``(plan, targets)`` for ``batch_size`` samples of spatial ``size`` (None: Mixup only, any
        shape). ``prob`` overrides the spec's (timm's ``mixup_enabled=False`` draws with 0).
        ``targets`` are the soft targets of ``labels`` (checked) when the sampler builds them in the
        same launch (CUDA), else None (the caller builds them from the plan). ``reuse``: the plan
        lives only for the caller's in-place apply, so its tensors may be the kept rows of
        ``kernels/sample.py`` (the transforms' own calls)."""
        draw = self._prepared(batch_size, size, device)
        return draw.sample(generator, self.prob if prob is None else prob, labels, num_classes, smoothing, reuse)

    def _prepare(self, batch_size: int, size, device) -> "_MixupDraw":
        if self.cutmix_on and size is None:
            raise ValueError("size: CutMix needs the (H, W) of the images")
        if self.cutmix_minmax is not None:
            _check_minmax_fits(self.cutmix_minmax, size)
        return _MixupDraw(self, batch_size, size, device)

    def draw(self, batch_size: int, size: Optional[tuple[int, int]], device: DeviceLike = None,
             generator: Generator = None, prob: Optional[float] = None) -> Plan:
        """The plan of :meth:`sample`."""
        return self.sample(batch_size, size, device, generator, prob=prob)[0]


class _MixupDraw:
    """One Mixup/CutMix spec's draws for one (batch, size, device): the facts of a draw derived
    once — the uniforms it takes, where its function is computed, the plan's size — so a step only
    draws. ``sample`` returns ``(plan, targets or None)`` as :meth:`MixupSpec.sample` does."""

    def __init__(self, spec: MixupSpec, batch: int, size, device):
        self.spec, self.batch = spec, batch
        self.size = size if spec.cutmix_on else None
        self.device = torch.device("cpu" if device is None else device)
        self.count = draws.units(spec.mode, batch) * draws.MIX_UNIFORMS
        self.sampler = sampler_for(self.device)
        self.full_size = size
        # on CPU tensors a once-per-batch plan is drawn on Python floats (the project's decision:
        # fastmix/host_draws.py, equal to the spec at the fused sampler's tolerance)
        if self.sampler == "numpy" and spec.mode == "batch":
            self.sampler = "host"
        self.kernel = None
        if self.sampler == "triton":
            from .kernels import sample as kernels
            self.kernel = kernels.MixupSampler(spec, batch, size)

    def sample(self, generator: Generator, prob: float, labels, num_classes: int, smoothing: float,
               reuse: bool = False):
        spec = self.spec
        if torch.compiler.is_compiling():      # torch ops only: the compiler fuses them
            u = uniforms(self.count, self.device, generator)
            rows = draws.mixup_rows(spec, u, self.batch, self.size, prob, 0.0, draws.TORCH)
            return Plan.trusted(*rows, size=self.size, closed=_closed_form(spec.pairing, rows.partner)), None
        # eager: the same draw with each helper's eager branch written out (a step's host work is
        # its Python calls: fastmix bench --host, tests/test_host_budget.py)
        u = torch.rand(self.count, device=self.device,
                       generator=generator if generator is None else _stream(generator))
        offset = rank_offset(generator) if _DISTRIBUTED and generator is None else 0.0
        targets = None
        sampler = self.sampler
        if sampler == "triton":
            rows, targets = self.kernel(u, prob, offset, labels, num_classes, smoothing, reuse)
        elif sampler == "host":
            drawn = host_draws.mixup_batch_draw(spec, u.tolist(), self.full_size, prob, offset)
            rows = host_draws.expanded_rows(drawn, self.batch, spec.pairing)
        elif sampler == "numpy":
            rows = draws.mixup_rows(spec, u.numpy(), self.batch, self.size, prob, offset, draws.NUMPY)
        else:
            rows = draws.mixup_rows(spec, u, self.batch, self.size, prob, offset, draws.TORCH)
        if not isinstance(rows.partner, torch.Tensor):
            rows = draws.PlanRows(*(torch.from_numpy(v) for v in rows))
        # _plan_from_rows written out (its two calls are a tenth of a step's host work)
        closed = tuple.__new__(_ClosedForm, (spec.pairing, rows.partner, rows.partner._version))
        return Plan.trusted(*rows, size=self.size, closed=closed), targets


def fill_value(name: str, value) -> Union[float, tuple[float, ...]]:
    """A fill: one number, or one number per channel."""
    if _checks.is_number(value):
        return _checks.number(name, value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0:
        return tuple(_checks.number(f"{name}[{i}]", v) for i, v in enumerate(value))
    raise TypeError(f"{name}: expected a number or a sequence of numbers, got {value!r}")


@dataclass(frozen=True)
class CutoutSpec(_Spec):
    """Cutout (DeVries & Taylor, 2017): ``n_holes`` squares of side ``length`` per sample.

    Centres are uniform over the image, so holes near the border are clipped (the original
    code's behaviour); each sample is cut with probability ``p``. Labels are unchanged.
    """

    n_holes: int = 1
    length: int = 16
    fill: Union[float, tuple[float, ...]] = 0.0
    p: float = 1.0

    @classmethod
    def checked(cls, n_holes=1, length=16, fill=0.0, p=1.0) -> "CutoutSpec":
        return cls(_checks.integer("n_holes", n_holes, low=1), _checks.integer("length", length, low=0),
                   fill_value("fill", fill), _checks.probability("p", p))

    def uniforms_per_sample(self) -> int:
        return 2 * self.n_holes + 1

    def draw(self, batch_size: int, size: tuple[int, int], device: DeviceLike = None,
             generator: Generator = None, reuse: bool = False) -> Plan:
        """The plan (``reuse``: as for :meth:`MixupSpec.sample`)."""
        return self._prepared(batch_size, size, device).sample(generator, reuse)

    def _prepare(self, batch_size: int, size, device) -> "_EraseDraw":
        return _EraseDraw(self, draws.cutout_rows, batch_size, size, device, self.fill, with_seed=False)


@dataclass(frozen=True)
class ErasingSpec(_Spec):
    """Random Erasing (Zhong et al., 2017) with torchvision's/timm's draws, one box per sample.

    With probability ``p`` a sample gets a box of area ``U(scale) * H * W`` and aspect ratio
    ``exp(U(log ratio))``; as in torchvision, up to ``attempts`` draws are made and the first
    that fits the image wins (all drawn at once: no loop over samples or attempts). ``value``
    is a number, one number per channel, or ``"random"`` for N(0, 1) noise per pixel.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: Union[float, tuple[float, ...], str] = 0.0
    attempts: int = 10

    @classmethod
    def checked(cls, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, attempts=10) -> "ErasingSpec":
        scale = _checks.pair("scale", scale)
        if scale[0] < 0 or scale[1] > 1:
            raise ValueError(f"scale: expected values in [0, 1], got {tuple(scale)}")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"value: expected a number, a sequence of numbers or 'random', got {value!r}")
        else:
            value = fill_value("value", value)
        return cls(_checks.probability("p", p), scale, _checks.pair("ratio", ratio, positive=True), value,
                   _checks.integer("attempts", attempts, low=1))

    @property
    def random_value(self) -> bool:
        return isinstance(self.value, str)

    def uniforms_per_sample(self) -> int:
        return 2 * self.attempts + 3

    def draw(self, batch_size: int, size: tuple[int, int], device: DeviceLike = None,
             generator: Generator = None, reuse: bool = False) -> Plan:
        """The plan (``reuse``: as for :meth:`MixupSpec.sample`)."""
        return self._prepared(batch_size, size, device).sample(generator, reuse)

    def _prepare(self, batch_size: int, size, device) -> "_EraseDraw":
        return _EraseDraw(self, draws.erasing_rows, batch_size, size, device,
                          None if self.random_value else self.value, with_seed=self.random_value)


class _EraseDraw:
    """Cutout's or Erasing's draws for one (batch, size, device): one draw of uniforms (two more for
    the noise seed), its function computed where it is cheapest; ``sample`` returns the plan."""

    def __init__(self, spec, rows_of, batch: int, size, device, fill, with_seed: bool):
        self.spec, self.rows_of, self.batch, self.size, self.with_seed = spec, rows_of, batch, size, with_seed
        self.device = torch.device("cpu" if device is None else device)
        self.count = batch * spec.uniforms_per_sample() + (2 if with_seed else 0)
        self.fill = None if fill is None else _fill(fill, batch, self.device)   # a view: reused by every plan
        self.sampler = sampler_for(self.device)
        if self.sampler == "triton":
            from .kernels import sample as kernels
            self.kernel = kernels.EraseSampler(spec, batch, size, with_seed)

    def sample(self, generator: Generator, reuse: bool = False) -> Plan:
        u = uniforms(self.count, self.device, generator)
        sampler = "torch" if torch.compiler.is_compiling() else self.sampler
        if sampler == "triton":
            rows, seed = self.kernel(u, reuse)
        else:
            on = draws.NUMPY if sampler == "numpy" else draws.TORCH
            values = u.numpy() if sampler == "numpy" else u
            rows = self.rows_of(self.spec, values, self.batch, self.size, on)
            seed = draws.noise_seed(values, on) if self.with_seed else None
            if seed is not None and not isinstance(seed, torch.Tensor):
                seed = torch.from_numpy(seed)
        return _plan_from_rows(rows, SELF, self.size, fill=self.fill, noise_seed=seed)
