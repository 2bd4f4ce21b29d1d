"""Data specs for ``convzoo train``: a string names a data set on local disk; nothing is ever downloaded.

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes, shipped inside the
  package). The models take 32×32 RGB, so each image is upsampled bilinearly 8×8 → 32×32 (not zero-padded:
  upsampling keeps the digit filling the field, so every stride-2 stage still sees strokes rather than a
  mostly-empty border) and repeated over 3 channels. Split: a stratified 80/20 train/test split with a
  fixed seed (1437 / 360 images), the same for every run.
- ``cifar10:PATH``: torchvision's CIFAR-10 folder (``PATH/cifar-10-batches-py`` with the pickled batches),
  read by ``torchvision.datasets.CIFAR10(download=False)``.
- ``imagefolder:PATH``: ``PATH/train`` and ``PATH/val`` (or ``PATH/test``), one sub-folder per class, read by
  ``torchvision.datasets.ImageFolder`` and resized to 32×32.

Every spec gives ``DataSpec(train, test, num_classes)`` whose items are ((3, 32, 32) float tensor, int label).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, TensorDataset

IMAGE_SIZE = 32
SPECS = ("digits", "cifar10:PATH", "imagefolder:PATH")


@dataclass
class DataSpec:
    train: Dataset
    test: Dataset
    num_classes: int
    name: str


def _digits() -> DataSpec:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    images = torch.nn.functional.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                                             align_corners=False)
    images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(range(len(labels)), test_size=0.2, random_state=0,
                                           stratify=digits.target)
    train_idx, test_idx = torch.tensor(train_idx), torch.tensor(test_idx)
    return DataSpec(TensorDataset(images[train_idx], labels[train_idx]),
                    TensorDataset(images[test_idx], labels[test_idx]), 10, "digits")


def _normalize():
    from torchvision import transforms

    return transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _cifar10(path: str) -> DataSpec:
    from torchvision import datasets, transforms

    folder = os.path.join(path, "cifar-10-batches-py")
    if not os.path.isdir(folder):
        raise ValueError(f"cifar10:{path}: no folder {folder} (torchvision's CIFAR-10 format; nothing is downloaded)")
    transform = transforms.Compose([transforms.ToTensor(), _normalize()])
    try:
        train = datasets.CIFAR10(path, train=True, download=False, transform=transform)
        test = datasets.CIFAR10(path, train=False, download=False, transform=transform)
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise ValueError(f"cifar10:{path}: cannot read the data set: {str(error).splitlines()[0]}") from None
    return DataSpec(train, test, len(train.classes), "cifar10")


def _imagefolder(path: str) -> DataSpec:
    from torchvision import datasets, transforms

    train_dir = os.path.join(path, "train")
    test_dir = next((os.path.join(path, d) for d in ("val", "test") if os.path.isdir(os.path.join(path, d))), None)
    if not os.path.isdir(train_dir) or test_dir is None:
        raise ValueError(f"imagefolder:{path}: needs sub-folders train/ and val/ (or test/), one folder per class")
    transform = transforms.Compose([transforms.Resize((IMAGE_SIZE, IMAGE_SIZE)),
                                    transforms.Lambda(lambda im: im.convert("RGB")), transforms.ToTensor(),
                                    _normalize()])
    try:
        train = datasets.ImageFolder(train_dir, transform=transform)
        test = datasets.ImageFolder(test_dir, transform=transform)
    except (RuntimeError, OSError, FileNotFoundError) as error:
        raise ValueError(f"imagefolder:{path}: {str(error).splitlines()[0]}") from None
    if train.classes != test.classes:
        raise ValueError(f"imagefolder:{path}: train classes {train.classes} differ from test classes {test.classes}")
    return DataSpec(train, test, len(train.classes), "imagefolder")


def load(spec: str) -> DataSpec:
    """``'digits'`` | ``'cifar10:PATH'`` | ``'imagefolder:PATH'`` → DataSpec; ValueError names a bad spec."""
    kind, sep, path = spec.partition(":")
    if kind == "digits" and not sep:
        return _digits()
    if kind in ("cifar10", "imagefolder") and sep:
        if not path or not os.path.isdir(path):
            raise ValueError(f"data path {path!r} of {spec!r} is not a directory")
        return _cifar10(path) if kind == "cifar10" else _imagefolder(path)
    raise ValueError(f"unknown data spec {spec!r}; use one of: {', '.join(SPECS)}")
