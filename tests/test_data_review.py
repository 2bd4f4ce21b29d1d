"""convzoo train's data specs, from a practitioner's review: '~' in a path, and a CIFAR-10 folder that torchvision
refuses says which files it expects and which differ (not "You can use download=True")."""

from __future__ import annotations

import os

import pytest

from convzoo.train import data as data_specs

# --- data paths -------------------------------------------------------------------------------------------------


def _write_cifar_files(folder, names):
    import pickle

    import numpy as np

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        with open(os.path.join(folder, name), "wb") as handle:
            if name == "batches.meta":
                pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, handle)
            else:
                pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                             "labels": rng.integers(0, 10, 4).tolist()}, handle)


CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def test_cifar10_path_expands_the_home_folder(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("HOME", str(tmp_path))
    _write_cifar_files(tmp_path / "data" / "cifar-10-batches-py", CIFAR_FILES)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    spec = data_specs.load("cifar10:~/data")
    assert (len(spec.train), len(spec.test)) == (20, 4)  # 5 batches of 4, one test batch of 4
    assert spec.meta["source"] == str(tmp_path / "data" / "cifar-10-batches-py")


def test_cifar10_names_the_missing_and_the_altered_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_files(folder, [n for n in CIFAR_FILES if n not in ("data_batch_3", "test_batch")])
    with pytest.raises(ValueError) as missing:
        data_specs.load(f"cifar10:{tmp_path}")
    message = str(missing.value)
    assert "lacks data_batch_3, test_batch" in message and "batches.meta" in message
    assert "download=True" not in message and "nothing is downloaded" in message
    _write_cifar_files(folder, ["data_batch_3", "test_batch"])  # a self-made folder: the MD5s cannot match
    with pytest.raises(ValueError) as altered:
        data_specs.load(f"cifar10:{tmp_path}")
    message = str(altered.value)
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch" in message
    assert "differ from the official CIFAR-10 files" in message and "download=True" not in message
