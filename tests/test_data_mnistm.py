"""Tests for tlhelpers.data.mnistm: the original MNIST-M files, read, extracted or reported missing."""

from __future__ import annotations

import hashlib
import tarfile

import numpy as np
import pytest
import torch
from fakes import write_mnist, write_mnistm

from tlhelpers.course.domain_pairs import load_domain
from tlhelpers.data import mnistm
from tlhelpers.data.mnistm import MNISTM, load_mnistm
from tlhelpers.data.torchvision_sets import DatasetUnavailableError, dataset_folder, load_dataset


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """``tmp_path/mnist_m.tar.gz`` built from a tiny extracted tree; MD5 constant set to match it."""
    source = tmp_path / "source"
    written = write_mnistm(source, n_train=6, n_test=4)
    path = tmp_path / "data" / mnistm.ARCHIVE
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source / "mnist_m", arcname="mnist_m")
    monkeypatch.setattr(mnistm, "MD5", hashlib.md5(path.read_bytes()).hexdigest())
    return path, written


def test_reads_extracted_layout_exactly(tmp_path, offline):
    written = write_mnistm(tmp_path, n_train=12, n_test=5)
    for split, n in (("train", 12), ("test", 5)):
        ds = load_dataset("mnistm", split, root=tmp_path, download=False)
        images, labels = written[split]
        assert isinstance(ds, MNISTM) and len(ds) == n
        assert ds.classes == [str(d) for d in range(10)] and ds.targets == labels.tolist()
        for i in (0, n - 1):
            image, label = ds[i]
            assert image.mode == "RGB" and image.size == (28, 28)
            assert np.array_equal(np.asarray(image), images[i]) and label == labels[i]
    assert dataset_folder("mnistm", tmp_path) == tmp_path / "mnist_m"


def test_transform_is_applied(tmp_path):
    write_mnistm(tmp_path, n_train=3, n_test=1)
    ds = load_mnistm(tmp_path, "train", transform=lambda im: np.asarray(im).shape)
    assert ds[0] == ((28, 28, 3), 0)


def test_extracts_local_archive_offline(archive, offline):
    path, written = archive
    root = path.parent
    ds = load_mnistm(root, "test", download=True)  # the archive is there: no download
    images, labels = written["test"]
    assert len(ds) == 4 and ds.targets == labels.tolist()
    assert np.array_equal(np.asarray(ds[3][0]), images[3])
    # the extraction went to its final place in one step and left no staging folder
    assert sorted(p.name for p in root.iterdir()) == ["mnist_m", mnistm.ARCHIVE]
    path.unlink()  # the extracted folder alone is enough from now on
    assert len(load_mnistm(root, "train", download=False)) == 6


def test_corrupt_archive_is_a_clear_error(archive, offline):
    path, _ = archive
    path.write_bytes(path.read_bytes()[:-50])  # truncated
    with pytest.raises(DatasetUnavailableError, match="corrupt or truncated") as info:
        load_dataset("mnistm", "train", root=path.parent, download=True)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "delete" in message
    assert not (path.parent / "mnist_m").exists()


def test_extraction_failure_leaves_nothing_behind(tmp_path, monkeypatch, offline):
    path = tmp_path / mnistm.ARCHIVE
    path.write_bytes(b"not a tar file")
    monkeypatch.setattr(mnistm, "MD5", hashlib.md5(b"not a tar file").hexdigest())
    with pytest.raises(DatasetUnavailableError, match="extracting"):
        load_mnistm(tmp_path, "train")
    assert [p.name for p in tmp_path.iterdir()] == [mnistm.ARCHIVE]


@pytest.mark.parametrize("download", [False, True])
def test_missing_everything_offline(tmp_path, offline, download):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnistm", "train", root=tmp_path, download=download)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "mnist_m") in message and "TLH_BUDGET=reduced" in message
    assert not (tmp_path / mnistm.ARCHIVE).exists()  # no partial download left to pass for the archive


def test_missing_image_names_the_file(tmp_path):
    write_mnistm(tmp_path, n_train=4, n_test=2)
    (tmp_path / "mnist_m" / "mnist_m_train" / "00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="00000002.png is listed in mnist_m_train_labels.txt"):
        MNISTM(tmp_path / "mnist_m", "train")
    with pytest.raises(DatasetUnavailableError, match="00000002.png"):
        load_dataset("mnistm", "train", root=tmp_path, download=False)


def test_incomplete_folder_and_bad_split(tmp_path):
    write_mnistm(tmp_path, n_train=2, n_test=2)
    (tmp_path / "mnist_m" / "mnist_m_test_labels.txt").unlink()
    with pytest.raises(DatasetUnavailableError, match="mnist_m_test_labels.txt"):
        load_mnistm(tmp_path, "test", download=False)
    with pytest.raises(ValueError, match="split='val' is unknown"):
        load_mnistm(tmp_path, "val")


def test_load_domain_gives_32px_colour_tensors(tmp_path, offline):
    # MNIST too, so that the old MNIST-blending code path would reach its tensor-dataset crash
    write_mnist(tmp_path, n_train=10, n_test=10)
    written = write_mnistm(tmp_path, n_train=10, n_test=6)
    ds = load_domain("mnistm", "train", root=tmp_path, download=False)
    assert ds.images.shape == (10, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == written["train"][1].tolist()
    assert (ds.images[:, 0].float() - ds.images[:, 1].float()).abs().mean() > 1  # colour kept
