import importlib.util
import sys
from pathlib import Path

import pytest
from fakes import write_all_datasets, write_weights

from tlhelpers.data import mnistm
from tlhelpers.data.catalog import (
    CHAPTERS,
    SIZES,
    dataset_files,
    files_markdown,
    missing_files,
    weights_file,
)
from tlhelpers.data.torchvision_sets import DATASETS

ROOT = Path(__file__).resolve().parents[1]


def _update_results():
    spec = importlib.util.spec_from_file_location("update_results", ROOT / "tools" / "update_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_checksums_are_torchvisions_file_by_file():
    from torchvision.datasets import MNIST, SVHN, USPS, Omniglot, OxfordIIITPet

    expected = {
        "pets": {url.rsplit("/", 1)[1]: md5 for url, md5 in OxfordIIITPet._RESOURCES},
        "mnist": dict(MNIST.resources),
        "usps": {name: md5 for _, name, md5 in USPS.split_list.values()},
        "svhn": {SVHN.split_list[s][1]: SVHN.split_list[s][2] for s in ("train", "test")},
        "omniglot": {f"{split}.zip": md5 for split, md5 in Omniglot.zips_md5.items()},
        "mnistm": {mnistm.ARCHIVE: mnistm.MD5},
    }
    assert set(expected) == set(DATASETS)
    for name in DATASETS:
        assert {Path(f.path).name: f.md5 for f in dataset_files(name)} == expected[name]
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        dataset_files("cifar")


def test_mnist_host_is_pinned_whatever_torchvisions_mirror_order(monkeypatch):
    # torchvision 0.17 lists yann.lecun.com first, newer versions the PyTorch mirror: the catalog (and
    # the README's table) must not change with the installed version.
    from torchvision.datasets import MNIST

    from tlhelpers.data.catalog import MNIST_MIRROR

    assert MNIST_MIRROR in MNIST.mirrors, "the pinned host is one torchvision downloads from"
    expected = [MNIST_MIRROR + gz for gz, _ in MNIST.resources]
    for order in (MNIST.mirrors, MNIST.mirrors[::-1], ["http://yann.lecun.com/exdb/mnist/", MNIST_MIRROR]):
        monkeypatch.setattr(MNIST, "mirrors", list(order))
        assert [f.url for f in dataset_files("mnist")] == expected
    assert expected[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"


def test_sizes_are_recorded_only_for_files_of_the_catalog():
    names = {Path(f.path).name for d in DATASETS for f in dataset_files(d)}
    assert set(SIZES) <= names
    assert all(size > 0 for size in SIZES.values())
    unrecorded = {Path(f.path).name for d in DATASETS for f in dataset_files(d) if f.size is None}
    assert unrecorded == {"usps.bz2", "usps.t.bz2", mnistm.ARCHIVE}
    table = files_markdown()
    for line in table.splitlines()[2:]:
        assert ("not recorded" in line) == any(f"| {name} |" in line for name in unrecorded)


def test_weights_files_are_what_build_classifier_loads():
    from tlhelpers.models.backbones import cached_weights_path, resolve_weights

    for arch in dict.fromkeys(a for ch in CHAPTERS.values() for a in ch.archs):
        w = weights_file(arch)
        assert w.location() == cached_weights_path(resolve_weights(arch, "DEFAULT"))
        assert w.path == f"hub/checkpoints/{w.location().name}" and w.size_mib > 1
        assert w.sha256_prefix and w.sha256_prefix in w.file_name
    assert weights_file("resnet50").file_name == "resnet50-11ad3fa6.pth"  # IMAGENET1K_V2, the DEFAULT


def test_files_in_the_real_layouts_are_found(tmp_path, monkeypatch):
    data, torch_home = tmp_path / "data", tmp_path / "torch"
    write_all_datasets(data)
    write_weights(torch_home, archs=("resnet18",))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    assert missing_files(DATASETS, ["resnet18"], data_root=data) == []
    assert missing_files([], ["vgg16"], data_root=data) == [str(torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth")]


def test_missing_files_name_where_they_go(tmp_path):
    missing = missing_files(["svhn", "mnistm", "omniglot"], data_root=tmp_path)
    assert missing == [
        f"{tmp_path}/svhn/train_32x32.mat",
        f"{tmp_path}/svhn/test_32x32.mat",
        f"{tmp_path}/mnist_m.tar.gz (or unpacked: {tmp_path}/mnist_m)",
        f"{tmp_path}/omniglot-py/images_background.zip (or unpacked: {tmp_path}/omniglot-py/images_background)",
        f"{tmp_path}/omniglot-py/images_evaluation.zip (or unpacked: {tmp_path}/omniglot-py/images_evaluation)",
    ]


def test_archives_count_where_the_loader_unpacks_them_offline(tmp_path):
    for f in (*dataset_files("pets"), *dataset_files("omniglot")):
        (tmp_path / f.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f.path).touch()
    assert missing_files(["pets"], data_root=tmp_path) == []  # torchvision verifies and unpacks them
    assert missing_files(["omniglot"], data_root=tmp_path) == []  # load_dataset checks and unzips them


def test_readme_lists_the_catalogs_files():
    tool = _update_results()
    readme = (ROOT / "README.md").read_text()
    assert tool.section(readme, tool.FILES_START, tool.FILES_END) == files_markdown(), (
        "README.md's files table is stale: run `python tools/update_results.py`.")
