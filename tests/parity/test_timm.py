"""Parity with the real timm (1.0.31, ``timm.data.mixup``): ``fastmix.Mixup`` draws what timm's
``Mixup`` draws, mixes what it mixes given the same draw, and takes the inputs it takes.

- Distributions: for every mode and option, both libraries mix a ramp batch many times with
  fixed seeds (numpy's for timm, a torch generator for fastmix); the pixels say what each draw
  was (untouched / mixed / cut, λ, the box), the targets its label weight; chi-square and KS
  tests compare them (``peer_outcomes.ALPHA``). ``elem`` mode gives the most draws per call and
  carries the power; ``pair`` and ``batch`` also check that the rows sharing a draw agree.
- Deterministic results: the partner each row shows (timm flips), and given timm's draw (read
  from its pixels) fastmix's functional API gives the same pixels and targets; given
  fastmix's draw, timm's own ``mixup_target`` gives fastmix's targets.
- Inputs: one table of inputs, each accepted by both or refused by both with the same
  exception type, or differing on purpose for the reason written next to it.

Skips without timm or scipy (the main CI environment has neither; ``make parity`` has both).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fastmix
import fastmix.functional as F
from parity.peer_outcomes import (CUTMIX, MIXUP, NONE, assert_draws_match, assert_same_counts, assert_same_histogram,
                           draws, import_peer, label_weights, one_hot_batch, ramp_batch, read_partners,
                           read_ramp, seeded)

timm_mixup = import_peer("timm.data.mixup")
import_peer("scipy.stats")

B, H, W = 16, 16, 20          # non-square, so a swapped H/W shows
LABELS = torch.arange(B)      # distinct: a row's own label weight is its target at its own class
FLIP = torch.arange(B - 1, -1, -1)
CALLS = {"elem": 128, "pair": 128, "batch": 512}   # 2048, 1024 and 512 draws per library

OPTIONS = {
    "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0),
    "prob": dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.6),
    "switch-prob": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.2),
    "no-correct-lam": dict(mixup_alpha=0.8, cutmix_alpha=1.0, correct_lam=False),
    "cutmix-minmax": dict(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8)),
    "minmax-and-mixup": dict(mixup_alpha=0.5, cutmix_minmax=(0.3, 0.9), switch_prob=0.4),
    "label-smoothing": dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1),
    "mixup-only": dict(mixup_alpha=0.4, cutmix_alpha=0.0),
    "cutmix-only": dict(mixup_alpha=0.0, cutmix_alpha=0.5),
}
MODES = ("batch", "pair", "elem")


def _args(option: dict, mode: str) -> dict:
    return dict(dict(label_smoothing=0.0, num_classes=B), **option, mode=mode)


def timm_calls(args: dict, calls: int, seed: int, batch=ramp_batch):
    """Outputs ``(N, ...)`` and targets ``(N, B, K)`` of ``calls`` calls of timm's Mixup."""
    np.random.seed(seed)
    mix = timm_mixup.Mixup(**args)
    outs, targets = zip(*(mix(batch(B, H, W), LABELS) for _ in range(calls)))
    return torch.stack(outs), torch.stack(targets)


def fastmix_calls(args: dict, calls: int, seed: int, batch=ramp_batch):
    mix = fastmix.Mixup(**args, generator=seeded(seed))
    outs, targets = zip(*(mix(batch(B, H, W), LABELS) for _ in range(calls)))
    return torch.stack(outs), torch.stack(targets)


def drawn(outs, targets, mode):
    """The draws of a run (see :func:`peer_outcomes.draws`)."""
    return draws(read_ramp(outs, FLIP), label_weights(targets, LABELS), mode)


# --------------------------------------------------------------------------------------------
# the same distributions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option", list(OPTIONS))
def test_same_draws_as_timm(option, mode):
    args = _args(OPTIONS[option], mode)
    theirs = drawn(*timm_calls(args, CALLS[mode], seed=100), mode)
    ours = drawn(*fastmix_calls(args, CALLS[mode], seed=100), mode)
    assert_draws_match(*ours[:1], *theirs[:1], ours[1], theirs[1], f"{option}, {mode} mode")


@pytest.mark.parametrize("option, wrong", [
    ("switch", dict(mixup_alpha=0.4)),
    ("switch", dict(switch_prob=0.4)),
    ("prob", dict(prob=0.5)),
    ("cutmix-only", dict(cutmix_alpha=1.0)),
    ("no-correct-lam", dict(correct_lam=True)),
    ("cutmix-minmax", dict(cutmix_minmax=(0.2, 0.7))),
], ids=["mixup-alpha", "switch-prob", "prob", "cutmix-alpha", "correct-lam", "minmax"])
def test_the_comparison_detects_a_wrong_option(option, wrong):
    """Negative controls at the elem-mode sample size: fastmix with one option off fails."""
    args = _args(OPTIONS[option], "elem")
    theirs = drawn(*timm_calls(args, CALLS["elem"], seed=7), "elem")
    ours = drawn(*fastmix_calls(dict(args, **wrong), CALLS["elem"], seed=7), "elem")
    with pytest.raises(AssertionError, match="differ"):
        assert_draws_match(*ours[:1], *theirs[:1], ours[1], theirs[1], f"fastmix with {wrong}")


def test_the_comparison_detects_torchvisions_box_rule_instead_of_timms():
    """timm's side ``int(H sqrt(1 - λ))`` against torchvision's ``2 int(H sqrt(1 - λ) / 2)`` on
    the same λ: at most one pixel apart, which KS alone cannot tell at this size; the counts of
    each side value can."""
    args = _args(OPTIONS["cutmix-only"], "elem")
    rows, _ = drawn(*timm_calls(args, CALLS["elem"], seed=7), "elem")
    lam = F.sample_beta(0.5, CALLS["elem"] * B, generator=seeded(8))
    box = F.box_from_lam(lam, (H, W), seeded(7), style="torchvision").long()
    timm_box = rows.box[rows.kind == CUTMIX]
    with pytest.raises(AssertionError, match="differ"):
        assert_same_histogram(box[:, 1] - box[:, 0], timm_box[:, 1] - timm_box[:, 0], "box height")


def test_empty_boxes_without_correct_lam_keep_lam_as_label_weight_like_timm():
    """With ``correct_lam=False`` timm's label weight is the drawn λ even when λ is so close to 1
    that the box is empty (10% of draws at α = 0.3 on 16×20); so is fastmix's."""
    args = _args(dict(mixup_alpha=0.0, cutmix_alpha=0.3, correct_lam=False), "elem")
    counts = []
    for outs, targets in (timm_calls(args, CALLS["elem"], seed=3), fastmix_calls(args, CALLS["elem"], seed=3)):
        rows, weight = drawn(outs, targets, "elem")
        untouched = rows.kind == NONE
        counts.append([int((untouched & (weight == 1)).sum()), int((untouched & (weight < 1)).sum()), 0])
    theirs, ours = counts
    assert theirs[1] > 100, f"timm showed only {theirs[1]} empty boxes with λ < 1: the control is too weak"
    assert_same_counts(ours, theirs, "untouched rows: label weight 1 / below 1")


# --------------------------------------------------------------------------------------------
# the same deterministic results
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option", ["mixup-only", "cutmix-only"])
def test_same_partners_as_timm_the_batch_flipped(option, mode):
    args = _args(OPTIONS[option], mode)
    (theirs,), _ = timm_calls(args, 1, seed=5, batch=one_hot_batch)
    (ours,), _ = fastmix_calls(args, 1, seed=5, batch=one_hot_batch)
    want = FLIP.tolist()
    got_theirs, got_ours = read_partners(theirs).tolist(), read_partners(ours).tolist()
    mixed = [i for i in range(B) if got_theirs[i] != i]
    assert len(mixed) > B // 2, f"timm mixed only rows {mixed}: the check is too weak"
    assert all(got_theirs[i] == want[i] for i in mixed), f"timm's partners {got_theirs}, expected {want}"
    assert all(got_ours[i] in (want[i], i) for i in range(B)), f"fastmix's partners {got_ours}, timm's {got_theirs}"


def _plan_of(rows, index: int) -> "F.Plan":
    """A fastmix plan with call ``index``'s draws as its pixels show them (flip partners)."""
    kind, lam, box = rows.kind[index], rows.lam[index], rows.box[index]
    if (kind == CUTMIX).any():
        assert not (kind == MIXUP).any()
        box = torch.where((kind == CUTMIX)[:, None], box, torch.zeros_like(box))
        return F.cutmix_plan(box, (H, W))
    return F.mixup_plan(torch.where(kind == MIXUP, lam, 1.0))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("option", ["mixup-only", "cutmix-only"])
def test_given_timms_draw_fastmix_gives_timms_pixels_and_targets(option, smoothing, mode):
    args = _args(dict(OPTIONS[option], label_smoothing=smoothing), mode)
    outs, targets = timm_calls(args, 8, seed=9)
    rows = read_ramp(outs, FLIP)
    assert ((rows.kind != NONE).sum() > 8), "timm mixed almost nothing: the check is too weak"
    for call in range(outs.shape[0]):
        plan = _plan_of(rows, call)
        ours = F.apply(ramp_batch(B, H, W), plan)
        torch.testing.assert_close(ours, outs[call], atol=1e-5, rtol=0, msg=f"call {call}: pixels")
        target = F.targets(LABELS, plan, num_classes=B, smoothing=smoothing)
        torch.testing.assert_close(target, targets[call].float(), atol=1e-6, rtol=0, msg=f"call {call}: targets")


@pytest.mark.parametrize("multi_label", [False, True], ids=["one-hot", "multi-label"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("option", ["mixup-only", "cutmix-only", "switch", "no-correct-lam"])
def test_given_fastmixs_draw_timms_mixup_target_gives_fastmixs_targets(option, smoothing, mode, multi_label):
    args = _args(dict(OPTIONS[option], label_smoothing=smoothing, multi_label=multi_label), mode)
    labels = torch.nn.functional.one_hot(LABELS, B).float() if multi_label else LABELS
    mix = fastmix.Mixup(**args, generator=seeded(21))
    for call in range(6):
        out, target = mix(ramp_batch(B, H, W), labels)
        rows = read_ramp(out, FLIP)
        kept = 1.0 - (rows.box[0, :, 1] - rows.box[0, :, 0]) * (rows.box[0, :, 3] - rows.box[0, :, 2]) / (H * W)
        lam = torch.where(rows.kind[0] == MIXUP, rows.lam[0], torch.where(rows.kind[0] == CUTMIX, kept, 1.0))
        if not args.get("correct_lam", True):
            # timm's label weight is the drawn λ, which the pixels of a cut row do not show:
            # compare the rows whose weight the pixels do fix
            known = rows.kind[0] != CUTMIX
        else:
            known = torch.ones(B, dtype=torch.bool)
        want = timm_mixup.mixup_target(labels, B, lam.float()[:, None], smoothing, multi_label)
        torch.testing.assert_close(target[known], want[known], atol=1e-6, rtol=0, msg=f"call {call}")


# --------------------------------------------------------------------------------------------
# the same accepted inputs and exception types
# --------------------------------------------------------------------------------------------

def _x(b=4, dtype=torch.float32):
    return torch.rand(b, 3, 8, 8, generator=seeded(0)).to(dtype)


SAME = "same"
INPUTS = [
    # (id, constructor kwargs, x, target, expected: SAME or (timm's outcome, fastmix's, why))
    ("int64-indices", {}, _x(), torch.arange(4), SAME),
    ("int32-indices", {}, _x(), torch.arange(4, dtype=torch.int32), SAME),
    ("uint8-indices", {}, _x(), torch.arange(4, dtype=torch.uint8), SAME),
    ("float-indices", {}, _x(), torch.tensor([0.0, 1.5, 2.9, 3.0]), SAME),
    ("numpy-num-classes", dict(num_classes=np.int64(10)), _x(), torch.arange(4), SAME),
    ("numpy-alpha-and-prob", dict(mixup_alpha=np.float32(0.5), prob=np.float64(0.5)), _x(), torch.arange(4), SAME),
    ("numpy-minmax", dict(cutmix_minmax=np.array([0.2, 0.8])), _x(), torch.arange(4), SAME),
    ("multi-label-dense-float", dict(multi_label=True), _x(), torch.eye(10)[:4], SAME),
    ("multi-label-dense-int", dict(multi_label=True), _x(), torch.eye(10)[:4].long(), SAME),
    ("multi-label-indices", dict(multi_label=True), _x(), torch.arange(4), SAME),
    ("multi-label-wrong-width", dict(multi_label=True), _x(), torch.zeros(4, 3), SAME),
    ("index-column", {}, _x(), torch.arange(4)[:, None], SAME),
    ("float-index-column", {}, _x(), torch.tensor([[0.5], [1.0], [2.0], [3.9]]), SAME),
    ("num-classes-10.7", dict(num_classes=10.7), _x(), torch.arange(4),
     (TypeError, ValueError, "fastmix rejects a non-integral count naming num_classes, when built")),
    ("odd-batch", {}, _x(3), torch.arange(3),
     (AssertionError, None, "fastmix mixes odd batches: the middle sample pairs with itself")),
    ("index-out-of-range", {}, _x(), torch.tensor([0, 1, 2, 10]),
     (RuntimeError, ValueError, "fastmix names target before writing; timm fails in scatter_")),
    ("uint8-images", {}, torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8), torch.arange(4),
     (RuntimeError, None, "fastmix blends uint8 and rounds; timm's in-place mul_ by a float fails")),
    ("soft-labels", {}, _x(), torch.softmax(torch.randn(4, 10, generator=seeded(1)), 1),
     ("wrong-shape", None, "fastmix mixes soft (B, K) labels; timm one-hots them into a (B*K, K) target")),
]


def _outcome(call):
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - the type is the outcome
        return type(error)


@pytest.mark.parametrize("name, kwargs, x, target, expected", INPUTS, ids=[
    row.values[0] if hasattr(row, "values") else row[0] for row in INPUTS])
def test_same_accepted_inputs_and_exception_types_as_timm(name, kwargs, x, target, expected):
    args = dict(dict(num_classes=10, label_smoothing=0.1), **kwargs)
    np.random.seed(0)
    theirs = _outcome(lambda: timm_mixup.Mixup(**args)(x.clone(), target.clone()))
    x_ours, target_ours = x.clone(), target.clone()
    ours = _outcome(lambda: fastmix.Mixup(**args, generator=seeded(0))(x_ours, target_ours))
    if expected == SAME:
        if isinstance(theirs, type):
            assert ours is theirs, f"{name}: timm raises {theirs.__name__}, fastmix gives {ours}"
            assert torch.equal(x_ours, x) and torch.equal(target_ours, target), f"{name}: fastmix wrote before raising"
        else:
            assert not isinstance(ours, type), f"{name}: timm accepts it, fastmix raises {ours.__name__}"
            assert ours[1].shape == theirs[1].shape and ours[1].dtype == theirs[1].dtype, (
                f"{name}: targets {tuple(ours[1].shape)} {ours[1].dtype}, timm's {tuple(theirs[1].shape)} "
                f"{theirs[1].dtype}")
            assert ours[0].shape == theirs[0].shape and ours[0].dtype == theirs[0].dtype
        return
    theirs_expected, ours_expected, why = expected
    if theirs_expected == "wrong-shape":
        assert theirs[1].shape != (x.shape[0], args["num_classes"]), f"{name}: timm changed; revisit ({why})"
    else:
        assert theirs is theirs_expected, f"{name}: timm gives {theirs}, expected {theirs_expected} ({why})"
    if ours_expected is None:
        assert not isinstance(ours, type) and ours[1].shape == (x.shape[0], args["num_classes"]), (
            f"{name}: fastmix gives {ours} ({why})")
    else:
        assert ours is ours_expected, f"{name}: fastmix gives {ours}, expected {ours_expected.__name__} ({why})"


@pytest.mark.parametrize("labels", [torch.tensor([0.0, 1.5, 2.9, 3.0]), torch.eye(10)[:4].long()],
                         ids=["float-indices", "multi-label-int"])
def test_unmixed_targets_of_timms_label_kinds_equal_timms(labels):
    """Where the outcome is deterministic (prob=0) the targets must be timm's exactly."""
    args = dict(num_classes=10, label_smoothing=0.2, prob=0.0, multi_label=labels.dim() == 2)
    _, theirs = timm_mixup.Mixup(**args)(_x(), labels.clone())
    _, ours = fastmix.Mixup(**args)(_x(), labels.clone())
    torch.testing.assert_close(ours, theirs, atol=1e-7, rtol=0)
