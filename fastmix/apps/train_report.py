"""What ``fastmix train`` reports: calibration error, the per-arm summary, the table, the plot.

The summary of an arm is over its seeds: test accuracy and expected calibration error (ECE)
after the last epoch as mean ± standard deviation, the share of training images the arm's mix
changed, and the share of step time spent mixing. The table is Markdown, ready for a README.
The plot (test accuracy per epoch, one line per arm, mean over seeds) needs Pillow.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

ECE_BINS = 15


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al., 2017): ``sum_b |accuracy_b - confidence_b| * n_b / N`` over equal-width bins.

    ``confidence`` ``(N,)`` in [0, 1] is the probability the model gives its predicted class,
    ``correct`` ``(N,)`` bool; bin ``b`` holds confidences in ``(b / bins, (b + 1) / bins]``
    (a confidence of exactly 0 goes to the first bin).
    """
    if confidence.shape != correct.shape or confidence.dim() != 1:
        raise ValueError(f"confidence, correct: expected two (N,) tensors, got {tuple(confidence.shape)} "
                         f"and {tuple(correct.shape)}")
    if confidence.numel() == 0:
        raise ValueError("confidence: no predictions to calibrate")
    confidence = confidence.double()
    # bucketize(right=False) puts x in bin b when edge[b-1] < x <= edge[b]: the (lo, hi] bins
    edges = torch.arange(1, bins, dtype=torch.float64) / bins
    index = torch.bucketize(confidence, edges, right=False)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    correct_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct.double())
    return float((correct_sum - conf_sum).abs().sum() / confidence.numel())


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    test_accuracy: float
    test_ece: float
    seconds: float


@dataclass(frozen=True)
class RunRecord:
    """One arm trained from one seed: per-epoch results and the run's mixing counters."""

    arm: str
    seed: int
    epochs: list[EpochRecord]
    mix_seconds: float     # time inside the arm's mix(x, y)
    step_seconds: float    # time of whole steps (mix, forward, backward, optimiser)
    mixed_images: int      # training images the mix changed
    trained_images: int    # training images seen

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    summary: str
    seeds: int
    accuracy: tuple[float, Optional[float]]   # mean, sd over seeds (None for one seed)
    ece: tuple[float, Optional[float]]
    mixed_share: float
    mix_time_share: float
    seconds_per_run: float
    accuracy_per_epoch: list[float]  # mean over seeds


def _mean_sd(values: Sequence[float]) -> tuple[float, Optional[float]]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(runs: Sequence[RunRecord], summaries: dict[str, str]) -> list[ArmSummary]:
    """One :class:`ArmSummary` per arm, in the order the arms first appear in ``runs``."""
    out = []
    for arm in dict.fromkeys(r.arm for r in runs):
        mine = [r for r in runs if r.arm == arm]
        n_epochs = min(len(r.epochs) for r in mine)
        out.append(ArmSummary(
            arm=arm, summary=summaries.get(arm, ""), seeds=len(mine),
            accuracy=_mean_sd([r.final.test_accuracy for r in mine]),
            ece=_mean_sd([r.final.test_ece for r in mine]),
            mixed_share=sum(r.mixed_images for r in mine) / max(1, sum(r.trained_images for r in mine)),
            mix_time_share=sum(r.mix_seconds for r in mine) / max(1e-12, sum(r.step_seconds for r in mine)),
            seconds_per_run=statistics.fmean(sum(e.seconds for e in r.epochs) for r in mine),
            accuracy_per_epoch=[statistics.fmean(r.epochs[e].test_accuracy for r in mine) for e in range(n_epochs)],
        ))
    return out


def _percent(mean_sd: tuple[float, Optional[float]]) -> str:
    mean, sd = mean_sd
    return f"{100 * mean:.1f}" if sd is None else f"{100 * mean:.1f} ± {100 * sd:.1f}"


def format_table(rows: Sequence[ArmSummary]) -> str:
    """The summary as a Markdown table (± is the standard deviation over seeds)."""
    lines = ["| arm | test accuracy % | ECE % (15 bins) | images mixed | mixing / step time | s / run | seeds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.arm} | {_percent(r.accuracy)} | {_percent(r.ece)} | {100 * r.mixed_share:.0f}% | "
                     f"{100 * r.mix_time_share:.1f}% | {r.seconds_per_run:.1f} | {r.seeds} |")
    return "\n".join(lines)


PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def write_plot(rows: Sequence[ArmSummary], path: Path, title: str) -> bool:
    """Draw test accuracy per epoch (one line per arm) into ``path``; False when Pillow is missing."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return False
    width, height, left, right, top, bottom = 720, 440, 60, 190, 36, 44
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    curves = [r.accuracy_per_epoch for r in rows if r.accuracy_per_epoch]
    n_epochs = max((len(c) for c in curves), default=1)
    low = min((min(c) for c in curves), default=0.0)
    low = math.floor(low * 10) / 10  # the y axis starts at the 10% step under the worst epoch
    x_of = (lambda e: left + (width - left - right) * (e / max(1, n_epochs - 1)))
    y_of = (lambda a: height - bottom - (height - top - bottom) * ((a - low) / max(1e-9, 1.0 - low)))
    draw.text((left, 10), title, fill="black", font=font)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for step in range(int(round(low * 10)), 11):
        y = y_of(step / 10)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((left - 34, y - 6), f"{10 * step}%", fill="black", font=font)
    for e in range(n_epochs):
        if n_epochs <= 12 or e % math.ceil(n_epochs / 12) == 0 or e == n_epochs - 1:
            x = x_of(e)
            draw.line([x, height - bottom, x, height - bottom + 4], fill="black")
            draw.text((x - 4, height - bottom + 8), str(e + 1), fill="black", font=font)
    draw.text(((width - right + left) / 2 - 20, height - 18), "epoch", fill="black", font=font)
    for i, row in enumerate(rows):
        colour = PALETTE[i % len(PALETTE)]
        points = [(x_of(e), y_of(a)) for e, a in enumerate(row.accuracy_per_epoch)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        legend_y = top + 8 + 18 * i
        draw.line([width - right + 12, legend_y + 6, width - right + 32, legend_y + 6], fill=colour, width=3)
        draw.text((width - right + 38, legend_y), f"{row.arm} {100 * row.accuracy[0]:.1f}%", fill="black", font=font)
    image.save(path)
    return True
