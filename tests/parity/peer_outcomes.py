"""What a mixed batch says happened, read from its pixels, for the parity tests against timm and
torchvision; and the two-sample tests that compare what the libraries drew.

Nothing here looks at a library's private state. Two kinds of batch make the pixels talk:

- ``ramp_batch``: sample ``i`` is the constant ``i + 1`` (float64). With a known partner ``j``
  a pixel equal to ``i + 1`` is the sample's own, one equal to ``j + 1`` was cut from the
  partner, and a value between is a Mixup with ``λ = (pixel - (j + 1)) / (i - j)``.
- ``one_hot_batch``: sample ``i`` is 1 in channel ``i`` and 0 elsewhere, so the channel that
  appears in a mixed sample names its partner, whatever the pairing.

Only torch is imported at module level: the peers and scipy are imported by the test modules,
which skip without them.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

import pytest
import torch

NONE, MIXUP, CUTMIX = 0, 1, 2
KINDS = ("untouched", "mixed", "cut")

# Every two-sample test here rejects at this level. The suite makes ~200 comparisons with fixed
# seeds, so a true null fails one of them with probability ~2%; the negative controls show what
# the tests detect at the sample sizes used.
ALPHA = 1e-4


def import_peer(name: str):
    """Import ``name`` or skip the whole module, with the reason. Any error counts as absent: a
    registry torchvision beside a CPU-only torch build fails with a RuntimeError, not an
    ImportError."""
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - the reason is reported in the skip
        pytest.skip(f"{name} is not usable here ({type(error).__name__}: {error})", allow_module_level=True)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramp_batch(batch: int, height: int, width: int) -> torch.Tensor:
    """``(B, 1, H, W)`` float64; sample ``i`` is ``i + 1`` everywhere."""
    values = torch.arange(1, batch + 1, dtype=torch.float64)
    return values.view(batch, 1, 1, 1).expand(batch, 1, height, width).contiguous()


def one_hot_batch(batch: int, height: int, width: int) -> torch.Tensor:
    """``(B, B, H, W)`` float64; sample ``i`` is 1 in channel ``i`` and 0 in the others."""
    eye = torch.eye(batch, dtype=torch.float64)
    return eye.view(batch, batch, 1, 1).expand(batch, batch, height, width).contiguous()


class Rows(NamedTuple):
    """Per row of ``(N calls, B rows)``: what happened, read from the pixels."""

    kind: torch.Tensor   # (N, B) int64: NONE, MIXUP or CUTMIX
    lam: torch.Tensor    # (N, B) float64: the Mixup weight of the sample itself (NaN elsewhere)
    box: torch.Tensor    # (N, B, 4) int64: [y0, y1, x0, x1] of the pixels cut from the partner (-1 elsewhere)


def read_ramp(out: torch.Tensor, partner: torch.Tensor) -> Rows:
    """Read ``(N, B, 1, H, W)`` (or ``(B, 1, H, W)``) outputs of :func:`ramp_batch` mixed with ``partner``.

    Raises AssertionError when a row is none of: untouched, one Mixup weight everywhere, the
    partner's pixels in exactly one rectangle and the sample's own elsewhere.
    """
    if out.dim() == 4:
        out = out[None]
    out = out.double()[:, :, 0]                                  # (N, B, H, W)
    n, b, height, width = out.shape
    own = torch.arange(1, b + 1, dtype=torch.float64).view(1, b, 1, 1)
    other = (partner.double() + 1).view(1, b, 1, 1)
    is_own, is_other = out == own, out == other
    untouched = is_own.flatten(2).all(2)
    # a row that shows its partner everywhere is a Mixup with λ = 0 or a box over the whole image:
    # the pixels cannot tell, so both libraries' such rows are read as λ = 0 (Beta(0.4, 0.4)
    # falls under 2**-25 about once in 1700 draws, and then blends to the partner exactly)
    whole = is_other.flatten(2).all(2)
    cut = (is_own | is_other).flatten(2).all(2) & is_other.flatten(2).any(2) & ~whole & (own != other).view(1, b)
    flat = out.flatten(2)
    uniform = (flat == flat[:, :, :1]).all(2)
    lam = (flat[:, :, 0] - other.view(1, b)) / (own - other).view(1, b)
    # timm blends with float32 weights whose sum is not exactly 1: λ can read a hair outside [0, 1]
    mixed = uniform & ~untouched & ~cut & (lam > -1e-6) & (lam < 1 + 1e-6)
    unreadable = ~(untouched | cut | mixed)
    assert not unreadable.any(), (
        f"rows {unreadable.nonzero()[:4].tolist()} (call, row) are neither untouched, mixed nor cut")
    rows_hit, cols_hit = is_other.any(3), is_other.any(2)         # (N, B, H), (N, B, W)
    y0 = rows_hit.int().argmax(2)
    y1 = height - rows_hit.flip(2).int().argmax(2)
    x0 = cols_hit.int().argmax(2)
    x1 = width - cols_hit.flip(2).int().argmax(2)
    rectangle = rows_hit[..., :, None] & cols_hit[..., None, :]
    not_a_box = cut & ~(rectangle == is_other).flatten(2).all(2)
    assert not not_a_box.any(), f"rows {not_a_box.nonzero()[:4].tolist()} (call, row): the cut pixels are no rectangle"
    kind = torch.where(cut, CUTMIX, torch.where(mixed, MIXUP, NONE))
    box = torch.where(cut[..., None], torch.stack([y0, y1, x0, x1], -1).long(), torch.full((n, b, 4), -1))
    return Rows(kind, torch.where(mixed, lam, torch.nan), box)


def read_partners(out: torch.Tensor) -> torch.Tensor:
    """The partner of each row of a mixed :func:`one_hot_batch` ``(B, B, H, W)``: the other channel
    its pixels show (the row itself when it shows none)."""
    b = out.shape[0]
    mass = out.double().flatten(2).sum(2).abs()                   # (B rows, B channels)
    mass[torch.arange(b), torch.arange(b)] = 0
    shown = mass > 0
    assert (shown.sum(1) <= 1).all(), f"rows {(shown.sum(1) > 1).nonzero().flatten().tolist()} show two partners"
    return torch.where(shown.any(1), mass.argmax(1), torch.arange(b))


def draws(rows: Rows, weight: torch.Tensor, mode: str) -> tuple[Rows, torch.Tensor]:
    """One entry per independent draw, of the rows and of their ``(N, B)`` label weights: a batch
    shares one draw (row 0 stands for it), a flipped pair one (rows ``i < B/2``), each row has
    its own in ``elem``. Asserts that the rows sharing a draw show the same kind, weight, box
    and label weight."""
    fields = (*rows, weight)
    b = rows.kind.shape[1]
    if mode == "batch":
        keep, mates = slice(0, 1), torch.zeros(b, dtype=torch.long)
    elif mode == "pair":
        keep, mates = slice(0, b // 2), torch.arange(b - 1, -1, -1)
    elif mode == "elem":
        keep, mates = slice(None), torch.arange(b)
    else:
        raise ValueError(f"mode: {mode!r}")
    for name, field in zip((*Rows._fields, "label weight"), fields):
        # λ read from two rows' pixels differs by the blend's rounding (timm's float32 weights:
        # up to ~3e-6 on this ramp); the rest is exact
        tolerance = 1e-5 if name == "lam" else 0.0
        same = ((field - field[:, mates]).abs() <= tolerance) | field.isnan()
        assert same.all(), f"{mode} mode: rows that share a draw differ in {name}"
    picked = [field[:, keep].reshape(-1, *field.shape[2:]) for field in fields]
    return Rows(*picked[:3]), picked[3]


def label_weights(targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, B)`` weight of each row's own label in ``(N, B, K)`` targets (labels distinct)."""
    rows = torch.arange(labels.shape[0])
    return targets[:, rows, labels].double()


def kind_counts(kind: torch.Tensor) -> list[int]:
    return [int((kind == k).sum()) for k in (NONE, MIXUP, CUTMIX)]


def assert_same_counts(ours: list[int], theirs: list[int], what: str) -> None:
    """Chi-square test of homogeneity on counts of untouched / mixed / cut draws."""
    from scipy import stats
    columns = [k for k in range(len(ours)) if ours[k] + theirs[k] > 0]
    if len(columns) < 2:
        assert [ours[k] > 0 for k in range(3)] == [theirs[k] > 0 for k in range(3)], (
            f"{what}: fastmix drew {dict(zip(KINDS, ours))}, the peer {dict(zip(KINDS, theirs))}")
        return
    table = [[ours[k] for k in columns], [theirs[k] for k in columns]]
    p = stats.chi2_contingency(table).pvalue
    assert p > ALPHA, (f"{what}: untouched/mixed/cut counts differ (chi-square p={p:.2g}): fastmix "
                       f"{dict(zip(KINDS, ours))}, peer {dict(zip(KINDS, theirs))}")


def assert_same_histogram(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    """Chi-square test of homogeneity on the counts of each value of an integer quantity (box
    sides): far stronger than KS against a rule that moves some values by one pixel. Values seen
    fewer than 10 times in both together share one bin."""
    from scipy import stats
    values = torch.cat([ours, theirs]).unique()
    table = [[int((sample == v).sum()) for v in values] for sample in (ours, theirs)]
    common = [k for k in range(len(values)) if table[0][k] + table[1][k] >= 10]
    rare = [k for k in range(len(values)) if k not in common]
    rows = [[row[k] for k in common] + ([sum(row[k] for k in rare)] if rare else []) for row in table]
    if len(rows[0]) < 2:
        return
    p = stats.chi2_contingency(rows).pvalue
    assert p > ALPHA, f"{what}: value counts differ (chi-square p={p:.2g}) over values {values.tolist()[:12]}"


def assert_same_distribution(ours: torch.Tensor, theirs: torch.Tensor, what: str, min_size: int = 30) -> None:
    """Two-sample Kolmogorov-Smirnov test (scipy's, exact or asymptotic as it chooses)."""
    from scipy import stats
    ours, theirs = ours.double().flatten(), theirs.double().flatten()
    assert ours.numel() >= min_size and theirs.numel() >= min_size, (
        f"{what}: too few draws to compare ({ours.numel()} fastmix, {theirs.numel()} peer)")
    result = stats.ks_2samp(ours.numpy(), theirs.numpy())
    assert result.pvalue > ALPHA, (
        f"{what}: distributions differ (KS D={result.statistic:.4f}, p={result.pvalue:.2g}, n={ours.numel()}, "
        f"m={theirs.numel()}); means {float(ours.mean()):.4f} (fastmix) vs {float(theirs.mean()):.4f} (peer)")


def assert_draws_match(ours: Rows, theirs: Rows, ours_weight: torch.Tensor, theirs_weight: torch.Tensor,
                       what: str) -> None:
    """Every comparison the parity suite makes between two sets of draws: kind counts, Mixup λ,
    box sides (KS and value counts) and positions, label weights (all draws, and those of cut
    draws)."""
    assert_same_counts(kind_counts(ours.kind), kind_counts(theirs.kind), what)
    pairs = {"mixup λ": (ours.kind == MIXUP, theirs.kind == MIXUP, ours.lam, theirs.lam)}
    cut_o, cut_t = ours.kind == CUTMIX, theirs.kind == CUTMIX
    for name, column in (("box height", lambda b: b[:, 1] - b[:, 0]), ("box width", lambda b: b[:, 3] - b[:, 2]),
                         ("box top", lambda b: b[:, 0]), ("box left", lambda b: b[:, 2])):
        pairs[name] = (cut_o, cut_t, column(ours.box), column(theirs.box))
    pairs["label weight of cut draws"] = (cut_o, cut_t, ours_weight, theirs_weight)
    for name, (mask_o, mask_t, values_o, values_t) in pairs.items():
        if int(mask_o.sum()) + int(mask_t.sum()) == 0:
            continue
        assert_same_distribution(values_o[mask_o], values_t[mask_t], f"{what}: {name}")
        if name in ("box height", "box width"):
            assert_same_histogram(values_o[mask_o], values_t[mask_t], f"{what}: {name}")
    assert_same_distribution(ours_weight, theirs_weight, f"{what}: label weight")
