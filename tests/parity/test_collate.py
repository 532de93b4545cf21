"""fastmix.FastCollateMixup against timm's FastCollateMixup (skips where timm does not import).

Two kinds of parity, every mode (batch, pair, elem, half) and kind (Mixup, CutMix, switching):

- the same results for the same draws: fastmix draws a plan; timm is handed the same λ, CutMix
  flags and boxes (its ``_params_per_*`` draws and ``rand_bbox`` replaced for the call), and both
  collate the same random uint8 samples: pixels and targets must agree;
- the same distributions: many seeded draws of each, read off what they return (constant-colour
  samples), compared with two-sample KS tests (label weights) and proportion tests (rates of
  CutMix / untouched rows).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import fastmix

try:
    from timm.data import mixup as timm_mixup
except Exception as err:  # torchvision built for another torch raises RuntimeError, not ImportError
    pytest.skip(f"timm is not importable here: {type(err).__name__}: {err}", allow_module_level=True)

MODES = ("batch", "pair", "elem", "half")
KINDS = {"mixup": dict(mixup_alpha=0.8), "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
         "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)}


class Recording(fastmix.FastCollateMixup):
    """fastmix's collate, keeping the plan of its last call."""

    def plan(self, x, *, mode=None):
        self.last_plan = super().plan(x, mode=mode)
        return self.last_plan


def random_samples(batch_size, shape, as_tensor, seed):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(batch_size)]
    return [(torch.from_numpy(im) if as_tensor else im, int(rng.integers(0, 10))) for im in images]


def timm_with_draws(plan, mode, kwargs, monkeypatch):
    """timm's FastCollateMixup made to draw what ``plan`` drew: λ and CutMix flags per unit (the
    batch, a pair, a sample) and, in order, the CutMix boxes."""
    rows = plan.describe()
    units = {"batch": 1, "pair": len(rows) // 2, "elem": len(rows), "half": len(rows) // 2}[mode]
    lam = np.ones(units, np.float32)
    use_cutmix = np.zeros(units, bool)
    boxes = []
    for u, row in enumerate(rows[:units]):
        if row["kind"] == "mixup":
            lam[u] = row["lam_self"]
        elif row["kind"] == "cutmix":
            use_cutmix[u], lam[u] = True, 0.5     # any λ < 1: the box below decides the weight
            boxes.append(tuple(row["boxes"][0]))
    mixer = timm_mixup.FastCollateMixup(mode=mode, **kwargs)
    mixer._params_per_elem = lambda n: (lam[:n].copy(), use_cutmix[:n].copy())
    mixer._params_per_batch = lambda: (float(lam[0]), bool(use_cutmix[0]))
    queue = iter(boxes)
    monkeypatch.setattr(timm_mixup, "rand_bbox", lambda *args, **kw: next(queue))
    return mixer, lam, use_cutmix


def away_from_ties(samples, lam, use_cutmix, mode, out_rows):
    """(rows, C, H, W) bool: pixels whose float32 Mixup blend is not within 1e-3 of a rounding tie,
    where two correct float32 formulas (timm's ``a*x + b*y``, fastmix's ``lerp``) can round apart."""
    n = len(samples)
    ok = np.ones((out_rows,) + np.asarray(samples[0][0]).shape, bool)
    for i in range(out_rows):
        unit = {"batch": 0, "pair": min(i, n - 1 - i)}.get(mode, i)
        if lam[unit] != 1.0 and not use_cutmix[unit]:
            own = np.asarray(samples[i][0]).astype(np.float32)
            other = np.asarray(samples[n - 1 - i][0]).astype(np.float32)
            value = own * lam[unit] + other * (np.float32(1) - lam[unit])
            ok[i] = np.abs(value - np.floor(value) - 0.5) > 1e-3
    return ok


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mode", MODES)
def test_same_pixels_and_targets_for_the_same_draws(mode, kind, as_tensor, monkeypatch):
    kwargs = dict(KINDS[kind], label_smoothing=0.1, num_classes=10)
    drawn = set()
    for seed in range(4):
        samples = random_samples(8, (3, 12, 20), as_tensor, seed)
        ours = Recording(mode=mode, generator=torch.Generator().manual_seed(seed), **kwargs)
        images, target = ours(samples)
        theirs, lam, use_cutmix = timm_with_draws(ours.last_plan, mode, kwargs, monkeypatch)
        their_images, their_target = theirs(copy.deepcopy(samples))   # timm writes into half/pair samples
        assert their_images.shape == images.shape and their_images.dtype == images.dtype
        torch.testing.assert_close(target, their_target.float(), atol=1e-6, rtol=0,
                                   msg=lambda m: f"seed {seed}: targets differ: {m}")
        diff = (images.numpy().astype(int) - their_images.numpy().astype(int))
        assert np.abs(diff).max() <= 1, f"seed {seed}: pixels differ by {np.abs(diff).max()} levels"
        ok = away_from_ties(samples, lam, use_cutmix, mode, images.shape[0])
        assert not diff[ok].any(), f"seed {seed}: {int((diff[ok] != 0).sum())} pixels away from a tie differ"
        drawn |= {"cutmix" if cut else "mixup" for cut, weight in zip(use_cutmix, lam) if cut or weight < 1}
    assert drawn == {"mixup": {"mixup"}, "cutmix": {"cutmix"}, "switch": {"mixup", "cutmix"}}[kind], drawn


# --------------------------------------------------------------------------------------------
# distributions
# --------------------------------------------------------------------------------------------

def constant_samples(batch_size, size=16):
    colours = [np.array([(7 + 23 * i) % 256, (250 - 19 * i) % 256, (101 + 37 * i) % 256], np.uint8)
               for i in range(batch_size)]
    return [(np.broadcast_to(c[:, None, None], (3, size, size)).copy(), i) for i, c in enumerate(colours)], colours


def outcomes(collate, mode, calls, batch_size, size=16):
    """Own-label weight and kind ("none", "mixup", "cutmix") of each independent draw over
    ``calls`` collations of constant-colour samples (one row per batch in batch mode, one per
    pair in pair mode, every row otherwise); a CutMix row holds nothing but the two colours."""
    samples, colours = constant_samples(batch_size, size)
    rows = {"batch": 1, "pair": batch_size // 2}.get(mode)
    weights, kinds = [], []
    for _ in range(calls):
        images, target = collate(copy.deepcopy(samples))
        for i in range(rows or images.shape[0]):
            weight = float(target[i, i])
            own = (images[i] == torch.from_numpy(colours[i]).view(3, 1, 1)).all(0)
            other = (images[i] == torch.from_numpy(colours[batch_size - 1 - i]).view(3, 1, 1)).all(0)
            # read from the pixels: a Mixup row is one colour throughout, only a CutMix row shows both
            cut = bool((own | other).all() and own.any() and other.any())
            kind = "none" if bool(own.all()) else ("cutmix" if cut else "mixup")
            weights.append(weight)
            kinds.append(kind)
    return np.array(weights), np.array(kinds)


def ks_two_sample(a, b) -> float:
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def ks_critical(n, m, c=1.95) -> float:
    """Two-sample KS critical value at significance 0.001 (c(α) = sqrt(-ln(α / 2) / 2))."""
    return c * math.sqrt((n + m) / (n * m))


DISTRIBUTION_CASES = [pytest.param(kind, options, id=f"{kind}-{name}") for kind in KINDS
                      for name, options in [("default", {}), ("prob", dict(prob=0.6)),
                                            ("uncorrected", dict(correct_lam=False))]
                      if not (kind == "mixup" and name == "uncorrected")]   # no boxes to correct


@pytest.mark.parametrize("kind, options", DISTRIBUTION_CASES)
@pytest.mark.parametrize("mode", MODES)
def test_same_distributions(mode, kind, options):
    kwargs = dict(KINDS[kind], label_smoothing=0.0, num_classes=8, **options)
    calls = {"batch": 400, "pair": 100, "elem": 50, "half": 100}[mode]    # 400 independent draws each
    np.random.seed(12345)
    theirs = outcomes(timm_mixup.FastCollateMixup(mode=mode, **kwargs), mode, calls, 8)
    ours = outcomes(fastmix.FastCollateMixup(mode=mode, generator=torch.Generator().manual_seed(12345), **kwargs),
                    mode, calls, 8)
    for label in ("mixup", "cutmix"):
        a, b = theirs[0][theirs[1] == label], ours[0][ours[1] == label]
        assert (len(a) > 0) == (len(b) > 0), f"{label} rows: timm {len(a)}, fastmix {len(b)}"
        if len(a) > 10 and len(b) > 10:
            stat = ks_two_sample(a, b)
            assert stat < ks_critical(len(a), len(b)), f"{label} weights: KS {stat:.3f} over {len(a)}/{len(b)} draws"
    for label in ("none", "cutmix"):
        p_a, p_b = float(np.mean(theirs[1] == label)), float(np.mean(ours[1] == label))
        pooled = (p_a + p_b) / 2
        sigma = math.sqrt(pooled * (1 - pooled) * 2 / len(ours[1]))
        assert abs(p_a - p_b) <= 4 * sigma + 1e-9, f"rate of {label} draws: timm {p_a:.3f}, fastmix {p_b:.3f}"


def test_uncorrected_cutmix_with_an_empty_box_keeps_lambda_in_the_target():
    # on 2x2 images timm's cut = int(2 * sqrt(1 - λ)) is 0 for λ > 0.75: a quarter of Beta(1, 1) draws
    kwargs = dict(KINDS["cutmix"], label_smoothing=0.0, num_classes=8, correct_lam=False)
    np.random.seed(7)
    theirs = outcomes(timm_mixup.FastCollateMixup(mode="elem", **kwargs), "elem", 40, 8, size=2)
    ours = outcomes(fastmix.FastCollateMixup(mode="elem", generator=torch.Generator().manual_seed(7), **kwargs),
                    "elem", 40, 8, size=2)
    share = [float(np.mean(weights[kinds == "none"] < 1.0)) for weights, kinds in (theirs, ours)]
    assert share[0] > 0.9, f"timm: only {share[0]:.2f} of its untouched rows carry λ < 1"
    assert share[1] == pytest.approx(share[0], abs=0.1), f"untouched rows with λ < 1: timm {share[0]:.2f}, fastmix {share[1]:.2f}"
