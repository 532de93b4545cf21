"""``fastmix train``: the source's CIFAR-10 experiment, rerunnable, one row per mixing method.

The claim it reruns: a 4-conv/2-FC CNN on CIFAR-10, batch 128, Adam at 1e-3, 30 epochs, a
binary cross-entropy loss on soft targets, reaches about 74.5% test accuracy without Mixup and
76.5% with Mixup (alpha = 0.2 on about one image in five). Every arm (see
:mod:`fastmix.apps.train_arms`) trains the same network with the same optimiser, batch, loss and
schedule from the same seeds (same initialisation, same batch order); only the mix differs.

    fastmix train                                   # digits, default arms, 2 seeds: a few minutes on 2 CPU cores
    fastmix train --data ~/cifar-10-batches-py --epochs 30 --seeds 3 --device cuda
    fastmix train --arms none,mixup-source --list-arms

Writes ``results.json`` (every epoch of every run, the machine, the command), ``table.md`` and
``accuracy.png`` (with Pillow) into ``--out``, and prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from . import _machine, train_data, train_report
from .train_arms import ARMS, DEFAULT_ARMS, Arm, select_arms
from .train_report import EpochRecord, RunRecord

EPOCHS = 30              # the claim's schedule, on every data set but the smoke-test one
SYNTHETIC_EPOCHS = 1


class SourceCNN(nn.Module):
    """The claim's 4-conv/2-FC network, read as the Keras CIFAR-10 example it matches.

    conv 3x3 32 (same) - ReLU - conv 3x3 32 (valid) - ReLU - max pool 2 - dropout 0.25 -
    conv 3x3 64 (same) - ReLU - conv 3x3 64 (valid) - ReLU - max pool 2 - dropout 0.25 -
    FC 512 - ReLU - dropout 0.5 - FC ``num_classes``. Input ``(B, C, H, W)`` float32 with
    ``H, W >= 10``; output logits ``(B, num_classes)`` (the BCE loss puts a sigmoid on each).
    """

    def __init__(self, image_shape: Sequence[int], num_classes: int):
        super().__init__()
        channels, height, width = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten())
        side = (lambda n: ((n - 2) // 2 - 2) // 2)  # what the two valid convs and pools leave
        if side(height) < 1 or side(width) < 1:
            raise ValueError(f"image_shape: the network needs images of at least 10x10, got {tuple(image_shape)}")
        self.classifier = nn.Sequential(nn.Linear(64 * side(height) * side(width), 512), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Progress:
    """A tqdm bar per run when tqdm is installed (and ``use_tqdm``), else one line per epoch; on stderr."""

    def __init__(self, use_tqdm: Optional[bool] = None, stream=None):
        self.stream = stream or sys.stderr
        if use_tqdm is None:
            try:
                import tqdm  # noqa: F401
                use_tqdm = True
            except ImportError:
                use_tqdm = False
        self.use_tqdm = use_tqdm
        self._bar = None

    def start(self, label: str, total_steps: int) -> None:
        self.label = label
        if self.use_tqdm:
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, desc=label, file=self.stream, leave=False, dynamic_ncols=True)

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def epoch(self, record: EpochRecord, epochs: int) -> None:
        text = (f"epoch {record.epoch}/{epochs}: loss {record.train_loss:.4f}, test accuracy "
                f"{100 * record.test_accuracy:.1f}%, ECE {100 * record.test_ece:.1f}%, {record.seconds:.1f} s")
        if self._bar is not None:
            self._bar.set_postfix_str(text)
        else:
            print(f"{self.label} {text}", file=self.stream, flush=True)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _StepClock:
    """Time inside the mix and inside whole steps: wall clock on CPU, CUDA events on a GPU.

    Events keep the loop free of host syncs; they are read once per epoch (``settle``).
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: list = []
        self.mix_seconds = self.step_seconds = 0.0

    def now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def add(self, start, mixed, end) -> None:
        self.pending.append((start, mixed, end))

    def settle(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        for start, mixed, end in self.pending:
            if self.cuda:
                self.mix_seconds += start.elapsed_time(mixed) / 1e3
                self.step_seconds += start.elapsed_time(end) / 1e3
            else:
                self.mix_seconds += mixed - start
                self.step_seconds += end - start
        self.pending.clear()


def evaluate(model: nn.Module, split: train_data.Split, batch_size: int) -> tuple[float, float]:
    """Test accuracy and ECE of ``model`` on ``split``; confidence is the sigmoid of the top logit."""
    model.eval()
    confidence, correct = [], []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            logits = model(split.images[start:start + batch_size])
            top, predicted = logits.max(1)
            confidence.append(torch.sigmoid(top))
            correct.append(predicted == split.labels[start:start + batch_size])
    confidence, correct = torch.cat(confidence).cpu(), torch.cat(correct).cpu()
    return float(correct.double().mean()), train_report.expected_calibration_error(confidence, correct)


def train_run(arm: Arm, data: train_data.DataSet, seed: int, *, epochs: int, batch_size: int = 128,
              lr: float = 1e-3, progress: Optional[Progress] = None) -> RunRecord:
    """Train :class:`SourceCNN` on ``data`` (already on the training device) with ``arm``'s mix.

    The seed fixes the initialisation and dropout (torch's global generator, seeded here), the
    batch order (its own CPU generator) and the mix (a generator on the device, handed to the
    arm), so two arms with one seed start equal and see the same batches.
    """
    device = data.train.images.device
    torch.manual_seed(seed)
    model = SourceCNN(data.image_shape, data.num_classes).to(device)
    order = torch.Generator().manual_seed(seed)
    setup = arm.build(data.num_classes, torch.Generator(device=device).manual_seed(seed))
    if setup.wrap_model is not None:
        model = setup.wrap_model(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    clock, records = _StepClock(device), []
    mixed_images = torch.zeros((), dtype=torch.int64, device=device)  # read once at the end: no sync per step
    trained_images = 0
    steps_per_epoch = -(-len(data.train) // batch_size)
    if progress is not None:
        progress.start(f"{arm.name} seed {seed}", epochs * steps_per_epoch)
    for epoch in range(1, epochs + 1):
        started, loss_sum = time.perf_counter(), torch.zeros((), device=device)
        model.train()
        permutation = torch.randperm(len(data.train), generator=order).to(device)
        for first in range(0, len(data.train), batch_size):
            index = permutation[first:first + batch_size]
            images, labels = data.train.images[index], data.train.labels[index]
            original = images.clone()  # outside the timed region: only to count what the mix changed
            start = clock.now()
            inputs, targets = setup.mix(images, labels)
            mixed = clock.now()
            loss = loss_fn(model(inputs), targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            clock.add(start, mixed, clock.now())
            loss_sum += loss.detach() * len(index)
            mixed_images += (inputs != original).flatten(1).any(1).sum()
            trained_images += len(index)
            if progress is not None:
                progress.step()
        clock.settle()
        accuracy, ece = evaluate(model, data.test, batch_size)
        records.append(EpochRecord(epoch, float(loss_sum) / len(data.train), accuracy, ece,
                                   time.perf_counter() - started))
        if progress is not None:
            progress.epoch(records[-1], epochs)
    if progress is not None:
        progress.finish()
    return RunRecord(arm.name, seed, records, clock.mix_seconds, clock.step_seconds, int(mixed_images),
                     trained_images)


def run_experiment(data: train_data.DataSet, arms: Sequence[Arm], *, seeds: int, epochs: int, batch_size: int = 128,
                   lr: float = 1e-3, progress: Optional[Progress] = None) -> list[RunRecord]:
    """Every arm from seeds ``0 .. seeds-1`` (seed-major, so a stopped run has every arm for its first seeds)."""
    for name, value in (("seeds", seeds), ("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    if not arms:
        raise ValueError("arms: no arm to train")
    return [train_run(arm, data, seed, epochs=epochs, batch_size=batch_size, lr=lr, progress=progress)
            for seed in range(seeds) for arm in arms]


def machine_description(device: torch.device) -> str:
    return f"{_machine.describe(device)}; torch {torch.__version__}, Python {platform.python_version()}"


def _positive_int(text: str, low: int = 1) -> int:
    value = int(text)
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {'a positive' if low else 'a non-negative'} integer, got {text}")
    return value


def _thread_count(text: str) -> int:
    return _positive_int(text, low=0)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="digits",
                        help="'digits' (scikit-learn's, no download), 'cifar10' (torchvision's download), "
                             "'synthetic' (seconds), or the folder of a local CIFAR-10 (python format)")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                        help="comma-separated arm names, or 'all' (see --list-arms)")
    parser.add_argument("--list-arms", action="store_true", help="print the registered arms and exit")
    parser.add_argument("--seeds", type=_positive_int, default=2, help="seeds per arm (0 .. N-1)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help=f"epochs per run (default: the claim's {EPOCHS}; {SYNTHETIC_EPOCHS} for synthetic)")
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--size", type=int, default=16, help="side the 8x8 digits are upsampled to (>= 10)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    parser.add_argument("--download-dir", default="data", help="where --data cifar10 downloads to")
    parser.add_argument("--out", default="fastmix-train", help="folder for results.json, table.md, accuracy.png")
    parser.add_argument("--threads", type=_thread_count, default=1,
                        help="torch's CPU threads; this small CNN gains little from more, and on a shared "
                             "machine a thread pool's step times turn erratic; 0 keeps torch's default")
    parser.add_argument("--no-tqdm", action="store_true", help="plain progress lines even when tqdm is installed")


def main(args: argparse.Namespace, command: str) -> int:
    if args.list_arms:
        for arm in ARMS.values():
            print(f"{arm.name:14s} {arm.summary}")
        return 0
    try:
        arms = select_arms(args.arms)
    except ValueError as err:
        print(f"fastmix train: --{err}", file=sys.stderr)
        return 2
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    epochs = args.epochs if args.epochs is not None else (SYNTHETIC_EPOCHS if args.data == "synthetic" else EPOCHS)
    try:
        data = train_data.load(args.data, size=args.size, download_dir=args.download_dir).to(device)
    except (ValueError, ImportError, OSError) as err:
        print(f"fastmix train: --{err}", file=sys.stderr)
        return 2
    previous_threads = torch.get_num_threads()
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run_and_report(args, command, arms, data, device, epochs)
    finally:
        torch.set_num_threads(previous_threads)  # cli.main may be called in-process (tests)


def _run_and_report(args, command: str, arms: Sequence[Arm], data: train_data.DataSet, device: torch.device,
                    epochs: int) -> int:
    machine = machine_description(device)
    print(f"fastmix train: {data.name}, {len(data.train)} train / {len(data.test)} test images "
          f"{'x'.join(map(str, data.image_shape))}; arms {', '.join(a.name for a in arms)}; {args.seeds} seed(s) x "
          f"{epochs} epoch(s), batch {args.batch_size}, Adam lr {args.lr}; {machine}", flush=True)
    started = time.perf_counter()
    runs = run_experiment(data, arms, seeds=args.seeds, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                          progress=Progress(use_tqdm=False if args.no_tqdm else None))
    rows = train_report.summarise(runs, {a.name: a.summary for a in arms})
    table = train_report.format_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    minutes = (time.perf_counter() - started) / 60
    footer = (f"{data.name}, {args.seeds} seed(s) x {epochs} epoch(s), {minutes:.1f} min in all; {machine}\n"
              f"command: {command}")
    (out / "table.md").write_text(table + "\n\n" + footer + "\n")
    (out / "results.json").write_text(json.dumps({
        "command": command, "machine": machine, "data": data.name, "epochs": epochs, "seeds": args.seeds,
        "batch_size": args.batch_size, "lr": args.lr, "minutes": minutes,
        "arms": [asdict(r) for r in rows], "runs": [asdict(r) for r in runs]}, indent=1))
    print(table)
    print(footer)
    if train_report.write_plot(rows, out / "accuracy.png", f"fastmix train: test accuracy per epoch, {data.name}"):
        print(f"wrote {out / 'table.md'}, {out / 'results.json'} and the plot {out / 'accuracy.png'}")
    else:
        print(f'wrote {out / "table.md"} and {out / "results.json"}; no plot: Pillow is missing '
              f'(pip install "fastmix[train]")')
    return 0
