"""What FMix, SaliencyMix and Manifold Mixup draw from a step's uniforms: the specification.

A step draws its randomness in one ``torch.rand(n)`` (:func:`uniform_count` says ``n``); everything
after it is a pure function of those uniforms, written here with torch ops (any device, and the
reference the fused kernels of ``kernels/sample_masks.py`` and ``kernels/saliency.py`` are tested
against on the same uniforms) and, for a once-per-batch draw on CPU tensors, on Python floats
(:func:`host_units`, the project's rule for CPU batch modes: ``fastmix/host_draws.py``).

Layout of the uniforms (every one rotated by the rank's offset first, as the core does)::

    [unit 0 | unit 1 | ... | unit U-1 | partner | noise (FMix only)]
    unit:    2 * GAMMA_UNIFORMS for lam ~ Beta(a, a) (fastmix.draws.beta), then 1 for prob
    units:   1 in mode="batch" (the papers' draw: one lam, one prob decision), B in mode="elem"
    partner: 1, the rotation of the partner rule below (pairing="perm")
    noise:   FMix's complex Fourier coefficients, two uniforms each (radius, angle): M * h * (w//2 + 1)
             coefficients, M = 1 mask in batch mode, B in elem mode

lam is rounded to the 2**-24 grid (``draws.on_grid``), as the core's is, so counts and boxes
computed from it with correctly rounded operations agree in every backend.

**The partner rule** (``pairing="perm"``). The papers draw ``torch.randperm(B)``; a kernel cannot
argsort cheaply, and a random permutation's cycles need a table built by pointer jumping (dozens
of small launches). fastmix draws a *random rotation* instead: sample ``i`` takes its partner's
pixels from ``(i + s) mod B``, with ``s = 1 + floor(u (B - 1))`` uniform on ``1 .. B-1``. The
cycles are closed forms: ``g = gcd(s, B)`` cycles ``c, c + s, c + 2s, ...`` of length ``B / g``,
which the sampler writes as the blend's walk table in the same launch. Statistical consequence:
each sample's partner is uniform over the *other* samples, as a derangement's would be (a random
permutation leaves a Poisson(1) number of samples paired with themselves, unmixed; a rotation
never does), and every image is used as a partner exactly once, as with any permutation. What is
lost is independence between the partners of different samples within one step (they share
``s``: B - 1 possible pairings instead of B!); across steps, with a shuffled loader, every pair of
images is equally likely to meet. ``pairing="flip"`` (timm) and ``"roll"`` (torchvision) stay.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import torch

from . import draws
from .host_draws import beta as _host_beta
from .partners import PARTNERS, PERM, Cycles, _closed_form, closed_form_partner
from .plan import Plan, drawn

G = draws.GAMMA_UNIFORMS
UNIT = 2 * G + 1           # a unit's uniforms: two Gamma draws (lam), the prob decision
U_PROB = 2 * G
MODES = ("batch", "elem")


def units(mode: str, batch: int) -> int:
    """Independent (lam, prob) draws a step makes: one per batch, or one per sample."""
    return min(batch, 1) if mode == "batch" else batch


def masks(mode: str, batch: int) -> int:
    """FMix masks a step draws: one per batch (the paper's), or one per sample."""
    return units(mode, batch)


def noise_start(mode: str, batch: int) -> int:
    """Index of FMix's first noise uniform."""
    return units(mode, batch) * UNIT + 1


def uniform_count(mode: str, batch: int, coefficients: int = 0) -> int:
    """Uniforms a step draws: the units, the partner's rotation, ``2 * coefficients`` for FMix's noise."""
    return noise_start(mode, batch) + 2 * coefficients


# --------------------------------------------------------------------------------------------
# lam, prob, partner: torch ops (the specification) and host floats (CPU batch mode)
# --------------------------------------------------------------------------------------------

def unit_draws(u: torch.Tensor, count: int, alpha: float, prob: float, offset: float):
    """``(lam, selected)`` of ``count`` units: float64 lam ~ Beta(alpha, alpha) on the 2**-24 grid,
    bool "this unit mixes" (its prob uniform below ``prob``)."""
    uu = draws.rotated(u[:count * UNIT], offset, draws.TORCH).view(count, UNIT)
    lam = draws.on_grid(draws.beta(uu[:, :G], uu[:, G:2 * G], alpha, draws.TORCH), draws.TORCH)
    return lam, uu[:, U_PROB] < prob


def rotation(u: torch.Tensor, mode: str, batch: int, offset: float) -> torch.Tensor:
    """The rotation ``s`` (0-d int64 on ``u``'s device): uniform on ``1 .. B-1``; 0 for B < 2."""
    at = units(mode, batch) * UNIT
    v = draws.rotated(u[at:at + 1], offset, draws.TORCH)[0]
    if batch < 2:
        return (v * 0.0).long()
    return (1.0 + torch.clamp(torch.floor(v * (batch - 1)), max=batch - 2.0)).long()


def partners(pairing: str, batch: int, shift, device) -> torch.Tensor:
    """``(B,)`` int64 partners: ``(i + s) mod B`` for ``"perm"`` (``shift`` a 0-d tensor or an int),
    timm's flip ``B-1-i`` or torchvision's roll ``i-1``."""
    if pairing == PERM:
        return (torch.arange(batch, device=device) + shift) % max(batch, 1)
    return PARTNERS[pairing](batch, device)


def partner_of_first(pairing: str, batch: int, shift: int) -> int:
    """The partner of row 0 (whose image SaliencyMix's batch mode takes its saliency from)."""
    return shift % max(batch, 1) if pairing == PERM else batch - 1


class HostUnit(NamedTuple):
    """A batch-mode step's one draw, on Python floats."""

    lam: float        # on the 2**-24 grid
    selected: bool    # the batch mixes (its prob uniform below prob)
    shift: int        # the partner rotation s


def host_units(u: list, batch: int, alpha: float, prob: float, offset: float) -> HostUnit:
    """:func:`unit_draws` and :func:`rotation` of a ``mode="batch"`` step on its first ``UNIT + 1``
    uniforms (Python floats: ``u[:UNIT + 1].tolist()``), with ``fastmix.host_draws``' arithmetic:
    the spec's float64 steps in the spec's order, equal to it within one grid step of lam (the
    fused sampler's tolerance; ``tests/test_masks_sampling.py``)."""
    if offset:
        u = [(v + offset) % 1.0 for v in u[:UNIT + 1]]
    lam = _host_beta(u, alpha)       # host_draws' unit starts with the same two Gamma blocks
    lam = math.floor(min(max(lam, 0.0), 1.0) * 2.0**24 + 0.5) / 2.0**24
    shift = 0 if batch < 2 else 1 + min(math.floor(u[UNIT] * (batch - 1)), batch - 2)
    return HostUnit(lam, u[U_PROB] < prob, shift)


def host_partners(pairing: str, batch: int, shift: int) -> torch.Tensor:
    """:func:`partners` on the CPU from a host ``shift``."""
    return partners(pairing, batch, shift, "cpu")


# --------------------------------------------------------------------------------------------
# FMix's noise and counts
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def fourier_scale(size: tuple, decay_power: float, device: torch.device) -> torch.Tensor:
    """``(h, w // 2 + 1)`` float32 amplitude ``1 / max(f, 1 / max(h, w)) ** decay_power`` of the
    real-FFT grid (``f`` the radial frequency in cycles per pixel), made once per device."""
    height, width = size
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)
    fx = torch.fft.rfftfreq(width, device=device, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return radius.clamp_min(1.0 / max(height, width)).pow(-float(decay_power)).float().contiguous()


def coefficients(count: int, size: tuple) -> int:
    """Complex Fourier coefficients of ``count`` masks on the real-FFT grid of ``size``."""
    return count * size[0] * (size[1] // 2 + 1)


def fourier_spectrum(u_noise: torch.Tensor, count: int, size: tuple, decay_power: float) -> torch.Tensor:
    """``(count, h, w // 2 + 1)`` complex64: each coefficient ``r (cos 2 pi v, sin 2 pi v)`` with
    ``r = sqrt(-2 log(1 - u))`` (Box-Muller: complex N(0, 2)), ``(u, v)`` its two uniforms (rotated,
    float64), rounded to float32 and scaled by :func:`fourier_scale`. The polynomial cosine is the
    draws' (``fastmix.draws.cos_2pi``), so the kernel computes the same float64 values."""
    height, width = size
    u = u_noise.double().view(count, height, width // 2 + 1, 2)
    radius = torch.sqrt(-2.0 * torch.log(1.0 - u[..., 0]))
    scale = fourier_scale(tuple(size), float(decay_power), u.device)
    real = (radius * draws.cos_2pi(u[..., 1], draws.TORCH)).float() * scale
    imag = (radius * draws.cos_2pi(u[..., 1] - 0.25, draws.TORCH)).float() * scale
    return torch.complex(real, imag)


def fourier_field(spectrum: torch.Tensor, size: tuple) -> torch.Tensor:
    """``(count, h, w)`` float32 low-pass noise: one batched inverse real FFT. Only the ranks of its
    values matter, so it is not normalised."""
    return torch.fft.irfft2(spectrum, s=tuple(size))


def fmix_counts(lam, numel: int, max_soft: float):
    """``(count, soft)`` float64: ``round(lam * numel)`` (half to even) pixels of the sample's own,
    and the half-width ``floor(numel * min(lam, 1 - lam, max_soft))`` of the softened edge."""
    lam = lam.double().clamp(0.0, 1.0)
    count = torch.round(lam * numel)
    soft = torch.floor(numel * torch.clamp(torch.minimum(lam, 1.0 - lam), max=float(max_soft)))
    return count, soft


def rows_of(mode: str, batch: int, device) -> Optional[torch.Tensor]:
    """Which unit (and FMix mask) each row uses: None in batch mode (all the first), else ``arange(B)``."""
    return None if mode == "batch" else torch.arange(batch, device=device)


# --------------------------------------------------------------------------------------------
# partners as plans take them, and plans the fused samplers drew
# --------------------------------------------------------------------------------------------

def partners_of(pairing: str, batch: int, shift, device):
    """``(partner, closed form or None)``: the rotation by ``shift`` (``"perm"``) or flip/roll."""
    if pairing == PERM:
        return partners(PERM, batch, shift, device), None
    return closed_form_partner(pairing, batch, device)


def drawn_plan(rows, pairing: str, size, mask=None, cycles=None) -> Plan:
    """A plan from a fused sampler's rows (``draws.PlanRows``' fields); ``cycles``: the
    ``(walk, cycle_start, segments)`` table the sampler wrote for a rotation, which the blend reads
    instead of computing one (``Plan.cycles``/``Plan.segments`` are cached properties: their slots)."""
    partner = rows[0]
    closed = _closed_form(pairing, partner) if pairing != PERM else None
    plan = Plan.trusted(*rows, size=size, mask=mask, closed=closed)
    if cycles is not None:
        plan.__dict__["cycles"] = Cycles(cycles[0], cycles[1])
        plan.__dict__["segments"] = cycles[2]
    return drawn(plan)
