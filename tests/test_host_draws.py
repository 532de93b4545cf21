"""The batch-mode draw on Python floats (``fastmix/host_draws.py``) gives the specification's plan
(``draws.mixup_rows`` with numpy and with torch) on the same uniforms, over every option: kinds,
partners and boxes exactly, weights within one step of λ's 2**-24 grid (the tolerance
``tests/test_fused_sampling.py`` holds the fused sampler to), and bit for bit in all but
``MAX_DIFFERENT_PER_THOUSAND`` draws in a thousand.

Why that tolerance, and why more is asked too:

- λ is rounded to the 2**-24 grid (``draws.on_grid``) before anything else uses it, and every
  weight of a plan is λ, 1 - λ, 0, 1 or a CutMix label ``1 - area / (H W)`` of integer box sides
  (the same correctly rounded float64 division, then the same rounding to float32). The host draw
  repeats the spec's float64 operations in the spec's order, so the only legitimate difference is
  the last bit of ``log``/``exp`` (glibc's ``math`` against numpy's or torch's vectorised loops).
  Such a bit moves λ before rounding by ~1e-16, which changes the rounded λ by one grid step
  only when λ lands within ~1e-16 of a rounding boundary (~1e-9 of the draws); a box moves only if
  that step also crosses an integer of the box rule. Hence |diff| <= 2**-24, boxes equal.
- One last bit can also flip a Marsaglia-Tsang acceptance test that sits on its bound, and then λ
  moves by far more: ``log(1 - 0) = 0`` against a right side of ~1e-16 of rounding noise (a tiny
  normal). Random draws meet that with probability ~1e-16; the edge rows here do meet it (test
  uniform exactly 0, normal ~1e-5), and agree because the arithmetic agrees bit for bit on this
  machine. Were they to differ somewhere, the edge rows would fail there, rightly: it would show
  a libm that differs in the last bit, which the fused sampler's tolerance does not cover.
- One grid step alone would hide a coarser grid or a λ never rounded (both stay within 2**-24
  of the spec), hence the bit-identical share and the check that every λ is on the grid;
  :func:`test_comparison_is_live` shows that a coarser grid fails.
- The torch spec once rounded alpha to float32 (``torch.where(use_cut, 0.8, 1.0)`` of two Python
  floats is a float32 tensor): 3-8% of its draws were a grid step off numpy's. ``draws.mixup_rows``
  keeps alpha in float64 now, and the torch spec is held to the same rules as numpy's.

Thousands of draws per option set are compared vectorised: ``mode="elem"`` of the same spec on
``n`` units gives row ``i`` unit ``i``'s draw, which is batch mode's draw of those uniforms (the
same function; with an even ``n`` no row is its own partner under flip or roll). Batch mode
itself is compared on fewer draws for batch sizes 0, 1, 2, 7 and 8 with both pairings, the whole
``PlanRows`` (dtypes, shapes, the row left alone) through :func:`host_draws.batch_rows`.
"""
from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmix import draws, host_draws
from fastmix.draws import GAMMA_TRIES, GAMMA_UNIFORMS, MIX_GAMMA_A, MIX_GAMMA_B, MIX_UNIFORMS, NUMPY, TORCH
from fastmix.host_draws import batch_rows, mixup_batch_draw
from fastmix.plan import CUTMIX, MIXUP, NONE
from fastmix.sampling import MixupSpec

STEP = 2.0**-24                       # one step of λ's grid
MAX_DIFFERENT_PER_THOUSAND = 1        # draws not bit-identical to a spec (expected: none; see above)
TOP = 1.0 - 2.0**-24                  # the largest float32 below 1
GOLDEN_OFFSET = (math.sqrt(5.0) - 1.0) / 2.0     # rank 1's offset under torch.distributed
SIZES = [(13, 17), (1, 1), (2, 3), (224, 224), (7, 300)]
DRAWS = 400                           # random draws per (option set, size), besides the edge rows

KINDS = {
    "mixup": dict(mixup_alpha=0.8),
    "mixup-tiny-alpha": dict(mixup_alpha=0.01),           # exp overflows: λ exactly 0 or 1
    "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    "cutmix-0.3": dict(mixup_alpha=0.0, cutmix_alpha=0.3),
    "both-switch-0.5": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
    "both-switch-0.2": dict(mixup_alpha=0.4, cutmix_alpha=2.0, switch_prob=0.2),
    "both-switch-0": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.0),
    "both-switch-1": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=1.0),
    "minmax": dict(mixup_alpha=0.8, cutmix_minmax=(0.2, 0.7)),
    "minmax-only": dict(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.9)),
}
BOX_RULES = list(itertools.product([True, False], ["timm", "torchvision"]))   # correct_lam, box_style


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _edge_rows() -> torch.Tensor:
    """Uniform rows at the edges: all 0 (z = 0 and every acceptance test ``log 1 < 0`` fails: no
    Marsaglia-Tsang try accepts), all ``1 - 2**-24``, the cosine's turning points, no try accepted
    in one gamma or both with large normals, only the first try rejected, and rows of edge values."""
    rows = [[v] * MIX_UNIFORMS for v in (0.0, TOP, 0.5, 0.25, 0.75, 2.0**-24)]
    gen = torch.Generator().manual_seed(7)
    large_normals = [TOP, 0.375, TOP, 0.125]      # |z| ~ 4: v <= 0 or far in the tail
    for i, row in enumerate(torch.rand(24, MIX_UNIFORMS, generator=gen).tolist()):
        for start in [(MIX_GAMMA_A,), (MIX_GAMMA_B,), (MIX_GAMMA_A, MIX_GAMMA_B)][i % 3]:
            tests = start + GAMMA_TRIES
            if i < 12:                # no try accepts: acceptance uniforms 0 (the test's right side is <= 0)
                row[tests:tests + GAMMA_TRIES] = [0.0] * GAMMA_TRIES
                if i % 2:
                    row[start:start + GAMMA_TRIES] = large_normals[:GAMMA_TRIES]
            else:                     # the first try rejected: a later one accepts (or none)
                row[tests] = 0.0
        rows.append(row)
    values = torch.tensor([0.0, 2.0**-24, 0.25, 0.5, 0.75, TOP])
    rows += values[torch.randint(0, len(values), (40, MIX_UNIFORMS), generator=gen)].tolist()
    return torch.tensor(rows, dtype=torch.float32)


EDGES = _edge_rows()


def _uniforms(*key) -> torch.Tensor:
    """``(edges + DRAWS, MIX_UNIFORMS)`` float32 uniforms (an even count), fixed per ``key``."""
    u = torch.rand(DRAWS, MIX_UNIFORMS, generator=torch.Generator().manual_seed(_seed(*key)))
    u = torch.cat([EDGES, u])
    return u[:len(u) // 2 * 2]


def _minmax_fits(spec, size) -> bool:
    """The sizes ``MixupSpec.sample`` accepts for ``cutmix_minmax`` (it refuses the rest)."""
    if spec.cutmix_minmax is None:
        return True
    (lo, hi), (height, width) = spec.cutmix_minmax, size
    return int(height * hi) > int(height * lo) and int(width * hi) > int(width * lo)


# --------------------------------------------------------------------------------------------
# per-draw values: the spec's (vectorised) and the host's
# --------------------------------------------------------------------------------------------

def _spec_draws(spec, u: torch.Tensor, size, prob, offset, ops) -> dict:
    """Each row of ``u``'s batch-mode values, by the spec: ``mode="elem"`` over all rows at once."""
    n = u.shape[0]
    flat = u.reshape(-1)
    with np.errstate(over="ignore"):
        rows = draws.mixup_rows(spec.replace(mode="elem"), flat.numpy() if ops is NUMPY else flat, n, size,
                                prob, offset, ops)
    return {name: np.asarray(getattr(rows, name)) for name in ("kind", "lam_self", "lam_partner", "label_lam")} | {
        "box": np.asarray(rows.box).reshape(n, 4)}


def _host_draws(spec, u: torch.Tensor, size, prob, offset) -> dict:
    out = [mixup_batch_draw(spec, row, size, prob, offset) for row in u.tolist()]
    lam_self = np.array([d.lam_self for d in out])
    return {"kind": np.array([d.kind for d in out], dtype=np.int8), "lam_self": lam_self.astype(np.float32),
            "lam_partner": (1.0 - lam_self).astype(np.float32),
            "label_lam": np.array([d.label_lam for d in out]).astype(np.float32),
            "box": np.array([d.box for d in out], dtype=np.int64).reshape(-1, 4)}


def _differences(want: dict, got: dict, u: torch.Tensor) -> list[str]:
    """What differs between two sets of per-draw values, each naming the draw and its values (and
    the draws' uniforms); empty when they agree at the tolerance (see the module docstring)."""
    problems = []
    for name in ("kind", "box"):
        bad = np.nonzero((want[name] != got[name]).reshape(len(u), -1).any(1))[0]
        problems += [f"{name} of draw {i}: spec {want[name][i].tolist()}, host {got[name][i].tolist()}, "
                     f"u={u[i].tolist()}" for i in bad[:3]]
    different = np.zeros(len(u), dtype=bool)
    for name in ("lam_self", "lam_partner", "label_lam"):
        a, b = want[name].astype(np.float64), got[name].astype(np.float64)
        different |= a != b
        bad = np.nonzero(np.abs(a - b) > STEP)[0]
        problems += [f"{name} of draw {i}: spec {a[i]!r}, host {b[i]!r} (more than 2**-24 apart), "
                     f"u={u[i].tolist()}" for i in bad[:3]]
    off_grid = np.nonzero(got["lam_self"].astype(np.float64) * 2.0**24 % 1.0 != 0.0)[0]
    problems += [f"lam_self of draw {i}: host {float(got['lam_self'][i])!r} is not on the 2**-24 grid"
                 for i in off_grid[:3]]
    if different.sum() * 1000 > MAX_DIFFERENT_PER_THOUSAND * len(u):
        first = np.nonzero(different)[0][:3].tolist()
        problems.append(f"{int(different.sum())} of {len(u)} draws not bit-identical (first {first}: "
                        + "; ".join(f"lam_self {want['lam_self'][i]!r} vs {got['lam_self'][i]!r}" for i in first) + ")")
    return problems


def _compare(spec, u, size, prob, offset, what, host_spec=None, host_prob=None, host_offset=None, with_torch=True):
    """``(problems, host kinds)``: the host draw (of ``host_spec`` etc. when given: the liveness
    test) against the numpy spec and against the torch spec, each bit-identical in all but ``MAX_DIFFERENT_PER_THOUSAND`` per thousand."""
    host_spec = host_spec or spec
    prob_h, offset_h = prob if host_prob is None else host_prob, offset if host_offset is None else host_offset
    got = _host_draws(host_spec, u, size, prob_h, offset_h)
    problems = [f"{what} [numpy]: {p}" for p in _differences(_spec_draws(spec, u, size, prob, offset, NUMPY), got, u)]
    if not with_torch:
        return problems, set(got["kind"].tolist())
    want = _spec_draws(spec, u, size, prob, offset, TORCH)
    problems += [f"{what} [torch]: {p}" for p in _differences(want, got, u)]
    return problems, set(got["kind"].tolist())


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0.0, GOLDEN_OFFSET], ids=["offset0", "offset-golden"])
@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0], ids=lambda p: f"prob{p}")
@pytest.mark.parametrize("kind", list(KINDS))
def test_host_draw_is_the_spec_draw(kind, prob, offset):
    """Every box rule, size and pairing of one kind, prob and offset: edge rows and random draws."""
    problems, draws_seen, kinds_seen = [], 0, set()
    # the box rules and sizes matter only to CutMix: Mixup alone draws them for two sizes
    combos = itertools.product(BOX_RULES, SIZES if MixupSpec.checked(**KINDS[kind]).cutmix_on else SIZES[:2])
    for n, ((correct_lam, box_style), size) in enumerate(combos):
        spec = MixupSpec.checked(**KINDS[kind], prob=prob, correct_lam=correct_lam, box_style=box_style,
                                 pairing=("flip", "roll")[n % 2])
        if not _minmax_fits(spec, size):
            continue
        what = f"{kind} prob={prob} offset={offset} correct_lam={correct_lam} box_style={box_style} size={size}"
        u = _uniforms(kind, prob, offset, correct_lam, box_style, size)
        # the torch spec (ten times slower here) on the first two sizes of each box rule
        found, kinds = _compare(spec, u, size, prob, offset, what, with_torch=size in SIZES[:2])
        problems, kinds_seen = problems + found, kinds_seen | kinds
        draws_seen += len(u)
    assert not problems, "\n".join(problems[:20])
    assert draws_seen >= 3000, f"only {draws_seen} draws compared"
    # the comparison met the kinds this option set can draw (else it compared nothing of interest)
    spec = MixupSpec.checked(**KINDS[kind])
    want = {NONE} if prob == 0.0 else (({MIXUP} if spec.mixup_alpha > 0 and spec.switch_prob < 1 else set())
                                       | ({CUTMIX} if spec.cutmix_on and (spec.mixup_alpha == 0 or spec.switch_prob > 0) else set()))
    assert want <= kinds_seen, f"{kind} prob={prob}: kinds drawn {sorted(kinds_seen)}, expected {sorted(want)}"


def _same_rows(want: draws.PlanRows, got: draws.PlanRows, what: str) -> list[str]:
    problems = []
    for name, a, b in zip(draws.PlanRows._fields, want, got):
        a = torch.as_tensor(a)
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{what}: {name} is {b.dtype} {tuple(b.shape)}, the spec's {a.dtype} {tuple(a.shape)}")
        elif a.dtype.is_floating_point:
            worst = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
            if worst > STEP:
                problems.append(f"{what}: {name} spec {a.tolist()}, host {b.tolist()}")
        elif not torch.equal(a, b):
            problems.append(f"{what}: {name} spec {a.tolist()}, host {b.tolist()}")
    return problems


@pytest.mark.parametrize("kind", list(KINDS))
def test_batch_rows_are_the_spec_rows(kind):
    """Batch mode itself, every batch size and pairing: the whole PlanRows, the alone row included."""
    problems = []
    u_all = _uniforms("rows", kind)
    for n, (batch, pairing, prob, offset) in enumerate(itertools.product(
            (0, 1, 2, 7, 8), ("flip", "roll"), (0.5, 1.0), (0.0, GOLDEN_OFFSET))):
        correct_lam, box_style = BOX_RULES[n % 4]
        spec = MixupSpec.checked(**KINDS[kind], prob=prob, correct_lam=correct_lam, box_style=box_style, pairing=pairing)
        size = SIZES[n % len(SIZES)]
        if not spec.cutmix_on and n % 3 == 0:
            size = None               # Mixup only: any shape
        elif not _minmax_fits(spec, size):
            size = SIZES[0]
        for i in [*range(4), *range(len(EDGES), len(EDGES) + 4)]:   # edge rows and random ones
            u = u_all[i]
            draw = mixup_batch_draw(spec, u.tolist(), size, prob, offset)
            got = batch_rows(draw, batch, pairing)
            what = f"{kind} B={batch} pairing={pairing} prob={prob} offset={offset} correct_lam={correct_lam} " \
                   f"box_style={box_style} size={size} draw {i} {draw}"
            with np.errstate(over="ignore"):
                problems += _same_rows(draws.mixup_rows(spec, u.numpy(), batch, size, prob, offset, NUMPY), got, what)
                problems += _same_rows(draws.mixup_rows(spec, u, batch, size, prob, offset, TORCH), got,
                                       what + " [torch]")
    assert not problems, "\n".join(problems[:20])


def test_alone_row():
    assert [host_draws.alone_row("flip", b) for b in (0, 1, 2, 7, 8)] == [None, 0, None, 3, None]
    assert [host_draws.alone_row("roll", b) for b in (0, 1, 2, 7, 8)] == [None, 0, None, None, None]


def test_edge_rows_reach_the_fallback():
    """The edge rows make no Marsaglia-Tsang try accept (then log G = log d + log(1 - u_boost) / alpha,
    the spec's ``chosen = 1``), in gamma A, in gamma B and in both, for every alpha drawn here."""
    alphas = {a for o in KINDS.values() for a in (o.get("mixup_alpha", 1.0), o.get("cutmix_alpha", 1.0)) if a > 0}
    for alpha in sorted(alphas):
        fell_back = set()
        for row in EDGES.double().tolist():
            for start in (MIX_GAMMA_A, MIX_GAMMA_B):
                g = row[start:start + GAMMA_UNIFORMS]
                lg = float(draws.log_gamma(np.array(g), alpha, NUMPY))
                if lg == math.log(alpha + draws.TWO_THIRDS) + math.log(1.0 - g[2 * GAMMA_TRIES]) / alpha:
                    fell_back.add(start)
        assert fell_back == {MIX_GAMMA_A, MIX_GAMMA_B}, f"alpha={alpha}: fallback reached in {sorted(fell_back)}"


def test_comparison_is_live(monkeypatch):
    """The comparison fails for a host draw of slightly different options, and for a λ on a coarser
    grid (within 2**-24 of the spec's everywhere: only the bit-identity share catches it)."""
    spec = MixupSpec.checked(mixup_alpha=0.8, cutmix_alpha=1.0, correct_lam=False)
    u, size = _uniforms("live"), (13, 17)
    assert not _compare(spec, u, size, 1.0, 0.0, "as is")[0]
    perturbed = {
        "switch_prob": dict(host_spec=spec.replace(switch_prob=0.4)),
        "box_style": dict(host_spec=spec.replace(box_style="torchvision")),
        "correct_lam": dict(host_spec=spec.replace(correct_lam=True)),
        "mixup_alpha": dict(host_spec=spec.replace(mixup_alpha=0.9)),
        "prob": dict(host_prob=0.9),
        "offset": dict(host_offset=2.0**-20),
    }
    for name, change in perturbed.items():
        assert _compare(spec, u, size, 1.0, 0.0, name, **change)[0], f"a host draw with another {name} passed"
    minmax = MixupSpec.checked(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.7))
    assert _compare(minmax, u, size, 1.0, 0.0, "minmax", host_spec=minmax.replace(cutmix_minmax=(0.2, 0.75)))[0]
    monkeypatch.setattr(host_draws, "_GRID", 2.0**23)
    problems = _compare(spec, u, size, 1.0, 0.0, "coarse grid")[0]
    assert problems and all("bit-identical" in p for p in problems), problems[:3]


float32_uniforms = st.lists(st.floats(0.0, 1.0, exclude_max=True, width=32), min_size=MIX_UNIFORMS,
                            max_size=MIX_UNIFORMS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(u=float32_uniforms, mixup_alpha=st.sampled_from([0.0, 0.05, 0.8, 1.0, 3.7]),
       cutmix_alpha=st.sampled_from([0.0, 0.2, 1.0, 2.5]), minmax=st.sampled_from([None, (0.1, 0.5), (0.4, 1.0)]),
       switch_prob=st.sampled_from([0.0, 0.3, 1.0]), prob=st.sampled_from([0.0, 0.5, 1.0]),
       correct_lam=st.booleans(), box_style=st.sampled_from(["timm", "torchvision"]),
       pairing=st.sampled_from(["flip", "roll"]), offset=st.sampled_from([0.0, 0.25, GOLDEN_OFFSET]),
       size=st.tuples(st.integers(1, 64), st.integers(1, 64)), batch=st.sampled_from([1, 2, 5, 8]))
def test_any_draw_any_options(u, mixup_alpha, cutmix_alpha, minmax, switch_prob, prob, correct_lam, box_style,
                              pairing, offset, size, batch):
    """Any float32 uniforms (hypothesis favours 0 and the ends) with any options, against numpy."""
    if mixup_alpha == 0 and cutmix_alpha == 0 and minmax is None:
        mixup_alpha = 1.0
    spec = MixupSpec.checked(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=minmax,
                             switch_prob=switch_prob, prob=prob, correct_lam=correct_lam, box_style=box_style,
                             pairing=pairing)
    if not _minmax_fits(spec, size):
        size = (64, 64)
    got = batch_rows(mixup_batch_draw(spec, u, size, prob, offset), batch, pairing)
    ut = torch.tensor(u, dtype=torch.float32)
    with np.errstate(over="ignore"):
        want = draws.mixup_rows(spec, ut.numpy(), batch, size, prob, offset, NUMPY)
    problems = _same_rows(want, got, f"{spec} size={size} offset={offset} B={batch} u={u}")
    assert not problems, "\n".join(problems)
