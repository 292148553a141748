from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from fakes import (
    write_all_datasets,
    write_mnist,
    write_omniglot,
    write_pets,
    write_svhn,
    write_usps,
    write_weights,
)
from PIL import Image

from tlhelpers.data.torchvision_sets import (
    DATASETS,
    SPLITS,
    DatasetUnavailableError,
    load_dataset,
    omniglot_folder,
)
from tlhelpers.models.backbones import build_classifier


@pytest.fixture(scope="module")
def all_datasets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_all_datasets(root)
    return root


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def test_mnist_from_idx_files(tmp_path, offline):
    images, labels = write_mnist(tmp_path, n_train=12, n_test=3)["train"]
    for download in (False, True):  # present files are used as they are, never downloaded
        ds = load_dataset("mnist", "train", root=tmp_path, download=download)
        assert len(ds) == 12 and ds.targets.tolist() == labels.tolist()
        image, label = ds[11]
        assert np.array_equal(np.asarray(image), images[11]) and label == 1


def test_usps_from_libsvm_bz2(tmp_path, offline):
    written = write_usps(tmp_path, n_train=4, n_test=12)
    values, labels = written["test"]
    with bz2.open(tmp_path / "usps" / "usps.t.bz2", "rt") as f:
        assert f.readlines()[9].split()[0] == "10"  # the file's label 10 is digit 9
    for download in (False, True):
        ds = load_dataset("usps", "test", root=tmp_path, download=download)
        assert len(ds) == 12 and ds.classes == [str(d) for d in range(10)]
        image, label = ds[9]
        assert label == 9 and np.asarray(image).shape == (16, 16)
        expected = ((values[9] + 1) / 2 * 255).astype(np.uint8)  # torchvision's [-1, 1] -> uint8
        assert np.abs(np.asarray(image).astype(int) - expected).max() <= 1
        assert np.asarray(image)[0, 0] == 0 and np.asarray(image).max() >= 250
    assert load_dataset("usps", "train", root=tmp_path)[2][1] == 2


def test_svhn_from_mat(tmp_path, offline):
    images, labels = write_svhn(tmp_path, n_train=11, n_test=2)["train"]
    for download in (False, True):
        ds = load_dataset("svhn", "train", root=tmp_path, download=download)
        assert len(ds) == 11 and ds.targets == labels.tolist() and ds.targets[10] == 0  # stored as 10
        image, _ = ds[2]
        assert np.array_equal(np.asarray(image), images[2])


def test_omniglot_tree(tmp_path, offline):
    written = write_omniglot(tmp_path, n_alphabets=(2, 1), n_characters=2, n_drawings=3)
    for download in (False, True):
        ds = load_dataset("omniglot", "background", root=tmp_path, download=download)
        assert len(ds) == 12 and ds.classes == written["background"] and len(ds.classes) == 4
        assert ds.classes[0] == "Alphabet_of_the_Magi/character01"
        assert ds.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        image, label = ds[4]
        with Image.open(ds.samples[4][0]) as png:
            assert png.size == (105, 105) and png.mode == "1"
            reference = np.asarray(png.convert("L"))
        assert label == 1 and image.mode == "L" and np.array_equal(np.asarray(image), reference)
        assert 0 < (reference == 0).mean() < 0.3  # dark strokes on a white page
    # the folder one level above a single tree is accepted too
    (tmp_path / "omniglot-py" / "images_evaluation").rename(tmp_path / "evaluation")
    assert omniglot_folder(tmp_path / "omniglot-py").classes == ds.classes
    with pytest.raises(ValueError, match="no alphabet"):
        omniglot_folder(tmp_path / "nothing")


def test_omniglot_zip_alone_is_checked_and_unzipped_offline(tmp_path, offline, monkeypatch):
    import hashlib
    import shutil

    from torchvision.datasets import Omniglot

    written = write_omniglot(tmp_path, n_alphabets=(2, 1), n_characters=2, n_drawings=3)
    base = tmp_path / "omniglot-py"
    archive = shutil.make_archive(str(base / "images_background"), "zip", base, "images_background")
    shutil.rmtree(base / "images_background")
    md5 = hashlib.md5(Path(archive).read_bytes()).hexdigest()
    monkeypatch.setitem(Omniglot.zips_md5, "images_background", "0" * 32)
    with pytest.raises(DatasetUnavailableError, match="corrupt or truncated"):
        load_dataset("omniglot", "background", root=tmp_path, download=False)
    monkeypatch.setitem(Omniglot.zips_md5, "images_background", md5)
    ds = load_dataset("omniglot", "background", root=tmp_path, download=False)
    assert ds.classes == written["background"] and len(ds) == 12


def test_pets_layout(tmp_path, offline):
    breeds = ("basset_hound", "Abyssinian")
    rows = write_pets(tmp_path, breeds=breeds, n_trainval=2, n_test=1, size=(40, 30))
    assert [label for _, label in rows["test"]] == [0, 1]  # breed by breed, in class-id order
    for download in (False, True):
        ds = load_dataset("pets", "trainval", root=tmp_path, download=download)
        assert len(ds) == 4 and ds.classes == ["Abyssinian", "Basset Hound"]
        image, label = ds[2]
        assert label == 1 and image.size == (40, 30)
        with Image.open(tmp_path / "oxford-iiit-pet" / "images" / "basset_hound_1.jpg") as jpg:
            assert np.array_equal(np.asarray(image), np.asarray(jpg.convert("RGB")))
        # breeds differ in colour
        assert np.abs(np.asarray(ds[0][0]).astype(int) - np.asarray(image)).mean() > 20


def _pets_breeds_and_species(root: Path, split: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Pets' classes and ``(breed, species)`` targets as torchvision reads them, species 0 cat and 1 dog.

    torchvision 0.18+ reads the species as its "binary-category" target: the annotation list's
    species column (1 cat, 2 dog) minus one. torchvision 0.17 has no such target; then the species
    come from that column here, and the breeds from torchvision.
    """
    try:
        ds = torchvision.datasets.OxfordIIITPet(str(root), split, target_types=["category", "binary-category"])
        return ds.classes, [ds[i][1] for i in range(len(ds))]
    except ValueError as exc:
        if "binary-category" not in str(exc):
            raise
    ds = torchvision.datasets.OxfordIIITPet(str(root), split, target_types="category")
    lines = (root / "oxford-iiit-pet" / "annotations" / f"{split}.txt").read_text().splitlines()
    species = [int(line.split()[2]) - 1 for line in lines]
    assert len(species) == len(ds)
    return ds.classes, [(ds[i][1], species[i]) for i in range(len(ds))]


@pytest.mark.parametrize("targets_of", ["installed torchvision", "torchvision 0.17"])
def test_pets_species_and_default_breeds_as_torchvision_reads_them(tmp_path, monkeypatch, targets_of):
    if targets_of == "torchvision 0.17":  # its target types, whatever version is installed: the fallback
        monkeypatch.setattr(torchvision.datasets.OxfordIIITPet, "_VALID_TARGET_TYPES", ("category", "segmentation"))
    write_pets(tmp_path)
    classes, targets = _pets_breeds_and_species(tmp_path, "test")
    assert classes == ["Abyssinian", "American Bulldog", "Beagle", "Bengal"]
    assert len(targets) == 12 and [targets[i] for i in (0, 3, 6, 9)] == [(0, 0), (1, 1), (2, 1), (3, 0)]
    # the Pets rule, from the image names: a capitalised breed is a cat
    ids = [line.split()[0] for line in (tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt").read_text().splitlines()]
    assert [species for _, species in targets] == [0 if i[:1].isupper() else 1 for i in ids]


@pytest.mark.parametrize("name, split", [(n, s) for n in DATASETS for s in SPLITS[n]])
def test_present_files_are_used_as_they_are(all_datasets, offline, monkeypatch, name, split):
    # A spy on every torchvision dataset class: none may be asked to download when files are on
    # disk, so that no release's checksum check of a present (copied, fake) file reaches the network.
    asked = []
    for cls in ("MNIST", "USPS", "SVHN", "OxfordIIITPet", "Omniglot"):
        original = getattr(torchvision.datasets, cls)

        def spy(*args, _original=original, **kwargs):
            asked.append(kwargs.get("download", False))
            return _original(*args, **kwargs)

        monkeypatch.setattr(torchvision.datasets, cls, spy)
    before = _tree(all_datasets)
    ds = load_dataset(name, split, root=all_datasets, download=True)
    assert not any(asked)
    assert _tree(all_datasets) == before
    image, label = ds[len(ds) - 1]
    assert isinstance(image, Image.Image) and isinstance(label, int)
    assert len(ds) >= 12 and 0 <= label < len(ds.classes)


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow),
                                  pytest.param("vgg16", marks=pytest.mark.slow)])
def test_write_weights_are_loaded_offline(tmp_path, monkeypatch, offline, arch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    (path,) = write_weights(tmp_path, archs=(arch,))
    saved = torch.load(path, weights_only=True)
    built = build_classifier(arch, num_classes=5, reduced=False)
    assert built.weights_loaded and built.arch == arch
    state = built.model.state_dict()
    shared = [k for k in saved if k in state and state[k].shape == saved[k].shape]
    assert len(shared) >= len(saved) - 2  # all but the replaced head
    assert all(torch.equal(state[k], saved[k]) for k in shared)
    stamp = path.stat().st_mtime_ns
    assert write_weights(tmp_path, archs=(arch,)) == [path] and path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("name", DATASETS)
def test_offline_error_names_dataset_folder_and_fix(tmp_path, offline, name):
    split = {"pets": "trainval", "omniglot": "background"}.get(name, "train")
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, split, root=tmp_path, download=True)
    message = str(info.value)
    assert "\n" not in message
    assert name in message or "mnist" in message
    assert str(tmp_path) in message and "TLH_BUDGET=reduced" in message


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="TLH_BUDGET=reduced"):
        load_dataset("svhn", "test", root=tmp_path, download=False)


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="pets, mnist, usps, svhn, mnistm, omniglot"):
        load_dataset("cifar10", "train")
    with pytest.raises(ValueError, match="trainval, test"):
        load_dataset("pets", "train")
