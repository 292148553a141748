from __future__ import annotations

import bz2
import socket
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlhelpers.data.torchvision_sets import (
    DATASETS,
    DatasetUnavailableError,
    load_dataset,
    omniglot_folder,
)


@pytest.fixture
def offline(monkeypatch):
    """Make every download fail fast, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def write_mnist(root: Path, n: int = 5) -> np.ndarray:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(n * 28 * 28, dtype=np.int64).reshape(n, 28, 28).astype(np.uint8)
    labels = (np.arange(n) * 3 % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, n, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + labels.tobytes())
    return images


def test_mnist_from_idx_files(tmp_path, offline):
    images = write_mnist(tmp_path)
    for download in (False, True):  # present files are used as they are, never downloaded
        ds = load_dataset("mnist", "train", root=tmp_path, download=download)
        assert len(ds) == 5 and ds.targets.tolist() == [0, 3, 6, 9, 2]
        image, label = ds[1]
        assert np.array_equal(np.asarray(image), images[1]) and label == 3


def test_usps_from_libsvm_bz2(tmp_path, offline):
    folder = tmp_path / "usps"
    folder.mkdir()
    values = np.linspace(-1, 1, 256)
    for name, label in (("usps.bz2", 4), ("usps.t.bz2", 10)):
        line = f"{label} " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(values)) + "\n"
        with bz2.open(folder / name, "wt") as f:
            f.write(line * 3)
    for download in (False, True):
        ds = load_dataset("usps", "test", root=tmp_path, download=download)
        assert len(ds) == 3
        image, label = ds[0]
        assert label == 9 and np.asarray(image).shape == (16, 16)
        assert np.asarray(image)[0, 0] == 0 and np.asarray(image)[15, 15] == 255
    assert load_dataset("usps", "train", root=tmp_path)[2][1] == 3


def test_svhn_from_mat(tmp_path, offline):
    import scipy.io

    folder = tmp_path / "svhn"
    folder.mkdir()
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    scipy.io.savemat(folder / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [5], [10]])})
    for download in (False, True):
        ds = load_dataset("svhn", "train", root=tmp_path, download=download)
        assert len(ds) == 4 and ds.targets == [0, 1, 5, 0]
        image, _ = ds[2]
        assert np.array_equal(np.asarray(image), x[..., 2])


def write_omniglot(base: Path) -> None:
    for alphabet in ("Alpha", "Beta"):
        for character in ("character01", "character02"):
            folder = base / alphabet / character
            folder.mkdir(parents=True)
            for k in range(3):
                Image.new("L", (105, 105), 255 - k).save(folder / f"{k}.png")


def test_omniglot_tree(tmp_path, offline):
    write_omniglot(tmp_path / "omniglot-py" / "images_background")
    for download in (False, True):
        ds = load_dataset("omniglot", "background", root=tmp_path, download=download)
        assert len(ds) == 12 and ds.classes[0] == "Alpha/character01" and len(ds.classes) == 4
        assert ds.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        image, label = ds[4]
        assert label == 1 and np.asarray(image)[0, 0] == 254
    # the folder one level above the tree is accepted too
    assert omniglot_folder(tmp_path / "omniglot-py").classes == ds.classes
    with pytest.raises(ValueError, match="no alphabet"):
        omniglot_folder(tmp_path / "nothing")


def test_pets_layout(tmp_path, offline):
    base = tmp_path / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    rows = [("Abyssinian_1", 1, 1), ("basset_hound_2", 2, 2), ("Abyssinian_3", 1, 1)]
    for i, (image_id, _, _) in enumerate(rows):
        Image.new("RGB", (40, 30), (i * 50, 0, 0)).save(base / "images" / f"{image_id}.jpg")
    for split in ("trainval", "test"):
        text = "".join(f"{image_id} {c} {s} 1\n" for image_id, c, s in rows)
        (base / "annotations" / f"{split}.txt").write_text(text)
    for download in (False, True):
        ds = load_dataset("pets", "trainval", root=tmp_path, download=download)
        assert len(ds) == 3 and ds.classes == ["Abyssinian", "Basset Hound"]
        image, label = ds[1]
        assert label == 1 and image.size == (40, 30)
        assert abs(int(np.asarray(image)[10, 10, 0]) - 50) < 10


@pytest.mark.parametrize("name", [n for n in DATASETS if n != "mnistm"] + ["mnistm"])
def test_offline_error_names_dataset_folder_and_fix(tmp_path, offline, name):
    split = {"pets": "trainval", "omniglot": "background"}.get(name, "train")
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, split, root=tmp_path, download=True)
    message = str(info.value)
    assert "\n" not in message
    assert name in message or "mnist" in message
    assert str(tmp_path) in message and "TLH_REDUCED=1" in message


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="TLH_REDUCED=1"):
        load_dataset("svhn", "test", root=tmp_path, download=False)


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="pets, mnist, usps, svhn, mnistm, omniglot"):
        load_dataset("cifar10", "train")
    with pytest.raises(ValueError, match="trainval, test"):
        load_dataset("pets", "train")
