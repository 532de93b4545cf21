"""Data sets for ``fastmix train``, each loaded whole into memory as normalised float32 tensors.

- ``digits``: scikit-learn's 8x8 handwritten digits (1797 images, shipped with scikit-learn, no
  download), upsampled bilinearly to ``size`` x ``size`` and repeated to 3 channels so that the
  CIFAR-10 network runs on it unchanged; a fixed stratified 80/20 split.
- a folder: a local CIFAR-10 in its standard python format (``data_batch_1`` .. ``data_batch_5``
  and ``test_batch``, pickled dicts of ``b"data"`` (N, 3072) uint8 and ``b"labels"``), or the
  folder holding ``cifar-10-batches-py``.
- ``cifar10``: torchvision's download of that format into ``download_dir``, then as above.
- ``synthetic``: a few hundred noisy class prototypes, for smoke tests; needs nothing.

Every split is normalised with the per-channel mean and standard deviation of its training
images. Nothing else is augmented: the experiment compares mixing methods alone.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_FOLDER = "cifar-10-batches-py"  # what the official archive (and torchvision) unpacks to


@dataclass(frozen=True)
class Split:
    """``images`` ``(N, C, H, W)`` float32 (normalised), ``labels`` ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class DataSet:
    name: str
    train: Split
    test: Split
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])

    def to(self, device: Union[str, torch.device]) -> "DataSet":
        move = (lambda s: Split(s.images.to(device), s.labels.to(device)))
        return DataSet(self.name, move(self.train), move(self.test), self.num_classes)


def load(spec: str, *, size: int = 16, download_dir: Union[str, Path] = "data") -> DataSet:
    """The data set ``spec`` names: ``"digits"``, ``"synthetic"``, ``"cifar10"`` or a folder path."""
    if spec == "digits":
        return digits(size)
    if spec == "synthetic":
        return synthetic()
    if spec == "cifar10":
        return cifar10_download(download_dir)
    if Path(spec).is_dir():
        return cifar10_folder(spec)
    raise ValueError(f"data: expected 'digits', 'synthetic', 'cifar10' or the folder of a local CIFAR-10, "
                     f"got {spec!r} (no such folder)")


def normalised(train: Split, test: Split) -> tuple[Split, Split]:
    """Both splits standardised per channel with the training images' mean and std."""
    dims = [0] + list(range(2, train.images.dim()))
    mean = train.images.mean(dims, keepdim=True)
    std = train.images.std(dims, keepdim=True).clamp_min(1e-6)
    return (Split((train.images - mean) / std, train.labels), Split((test.images - mean) / std, test.labels))


def digits(size: int = 16) -> DataSet:
    """scikit-learn's digits as ``(N, 3, size, size)``: 1437 training and 360 test images, 10 classes."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 10:
        raise ValueError(f"size: the network's two conv/pool stages need images of at least 10x10, got {size!r}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError('data: digits needs scikit-learn (pip install "fastmix[train]")') from err
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 0..16 grey levels
    images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.expand(-1, 3, -1, -1).contiguous()
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(torch.arange(len(labels)).numpy(), test_size=0.2, random_state=0,
                                           stratify=labels.numpy())
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    train, test = normalised(Split(images[train_idx], labels[train_idx]), Split(images[test_idx], labels[test_idx]))
    return DataSet(f"digits {size}x{size}", train, test, 10)


def synthetic(n_train: int = 256, n_test: int = 128, num_classes: int = 4, size: int = 16, seed: int = 0) -> DataSet:
    """Noisy copies of ``num_classes`` smooth random prototypes, ``(N, 3, size, size)``: seconds to train."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, 3, 4, 4, generator=gen)
    prototypes = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def split(n: int) -> Split:
        labels = torch.arange(n) % num_classes
        noise = 0.8 * torch.randn(n, 3, size, size, generator=gen)
        return Split(prototypes[labels] + noise, labels)

    train, test = normalised(split(n_train), split(n_test))
    return DataSet(f"synthetic {num_classes} classes {size}x{size}", train, test, num_classes)


def _read_cifar_batch(path: Path) -> Split:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # the official format is a pickled dict with bytes keys
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except (TypeError, KeyError) as err:
        raise ValueError(f"data: {path} is not a CIFAR-10 python batch (no b'data'/b'labels')") from err
    data = torch.as_tensor(data)
    if data.dtype != torch.uint8 or data.dim() != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"data: {path}: expected (N, 3072) uint8 pixels, got {tuple(data.shape)} {data.dtype}")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if labels.shape != (data.shape[0],) or bool(((labels < 0) | (labels > 9)).any()):
        raise ValueError(f"data: {path}: expected {data.shape[0]} labels in 0..9")
    return Split(data.view(-1, 3, 32, 32).float() / 255.0, labels)


def cifar10_folder(path: Union[str, Path]) -> DataSet:
    """A local CIFAR-10 in the python format (the folder of the batches, or the one holding it)."""
    path = Path(path)
    if (path / CIFAR10_FOLDER).is_dir():
        path = path / CIFAR10_FOLDER
    names = CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,)
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise ValueError(f"data: {path} is not a CIFAR-10 python folder; missing {', '.join(missing)}")
    parts = [_read_cifar_batch(path / n) for n in CIFAR10_TRAIN_FILES]
    train = Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    train, test = normalised(train, _read_cifar_batch(path / CIFAR10_TEST_FILE))
    return DataSet("CIFAR-10", train, test, 10)


def cifar10_download(download_dir: Union[str, Path]) -> DataSet:
    """CIFAR-10 through torchvision's downloader (needs torchvision and a network), then read locally."""
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as err:
        raise ImportError("data: cifar10 downloads through torchvision (pip install torchvision); or pass "
                          "the folder of a local CIFAR-10 as the data") from err
    try:
        CIFAR10(str(download_dir), train=True, download=True)
    except OSError as err:  # URLError included: no network
        raise OSError(f"data: could not download CIFAR-10 into {download_dir} ({err}); pass the folder of "
                      f"a local copy instead") from err
    return cifar10_folder(download_dir)
