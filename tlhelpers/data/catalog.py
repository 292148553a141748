"""Every file full mode reads, chapter by chapter: where it goes, its size, its checksum, its source.

Datasets go under the data root (``TLH_DATA``, default ``data/``) in torchvision's layouts (MNIST-M
in its archive's layout); pretrained weights go in ``$TORCH_HOME/hub/checkpoints/`` (default
``~/.cache/torch``). Addresses and MD5 checksums are read from torchvision's dataset classes (and
:mod:`tlhelpers.data.mnistm`), weights file names and sizes from torchvision's weights enums, so
they follow the installed torchvision; only MNIST's host is pinned (:data:`MNIST_MIRROR`), since
torchvision versions list its mirrors in different orders. Dataset sizes are the byte counts their
publishers list (:data:`SIZES`); a size we could not find is shown as "not recorded", never guessed.

The README's files table is :func:`files_markdown` (``tools/update_results.py`` writes it), and
``tools/run_benchmarks.py`` asks :func:`missing_files` what a benchmark lacks before starting it.

Example:
    >>> missing_files(["pets"], ["resnet50"], data_root="data")
    ['data/oxford-iiit-pet/images.tar.gz (or unpacked: data/oxford-iiit-pet/images/)', ...]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from torchvision.models import WeightsEnum

#: Published sizes in bytes, by file name. Pets, MNIST, SVHN and Omniglot: the byte counts in
#: TensorFlow Datasets' url_checksums files (oxford_iiit_pet, mnist, svhn_cropped, omniglot), the
#: same files torchvision fetches (MNIST's also on LeCun's page). USPS and MNIST-M: not recorded.
SIZES: dict[str, int] = {
    "images.tar.gz": 791_918_971,
    "annotations.tar.gz": 19_173_078,
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
    "train_32x32.mat": 182_040_794,
    "test_32x32.mat": 64_275_384,
    "images_background.zip": 9_464_212,
    "images_evaluation.zip": 6_462_886,
}


#: The host MNIST's files are listed from. torchvision tries each of ``MNIST.mirrors`` in turn; their
#: order differs between versions (0.17 lists yann.lecun.com first, newer ones this mirror), so the
#: catalog, and the README's table made from it, names this one whichever torchvision is installed.
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"


@dataclass(frozen=True)
class DataFile:
    """One dataset file as its source publishes it.

    Attributes:
        dataset: the name :func:`tlhelpers.data.torchvision_sets.load_dataset` knows it by.
        path: where the file goes, relative to the data root.
        url: where it is downloaded from.
        md5: the MD5 checksum torchvision (or ``tlhelpers.data.mnistm``) checks.
        size: bytes, or None when not recorded.
        unpacked: what the loader reads once ``path`` is unpacked (relative to the data root), or
            None when it reads ``path`` itself.
        unpacks_offline: the loader unpacks ``path`` itself, without the network, when
            ``unpacked`` is missing (torchvision checks the MD5 of a present archive first).
    """

    dataset: str
    path: str
    url: str
    md5: str
    size: int | None
    unpacked: str | None = None
    unpacks_offline: bool = True

    def present(self, data_root: str | Path) -> bool:
        """True when the loader can read this file from ``data_root`` without the network."""
        root = Path(data_root)
        if self.unpacked is not None and (root / self.unpacked).exists():
            return True
        return (self.unpacked is None or self.unpacks_offline) and (root / self.path).is_file()

    def where(self, data_root: str | Path | None = None) -> str:
        """Where the file goes (and what it unpacks to), under ``data_root`` or relative to it."""
        def at(p: str) -> str:
            return p if data_root is None else str(Path(data_root) / p)

        if self.unpacked is None:
            return at(self.path)
        if self.unpacks_offline:
            return f"{at(self.path)} (or unpacked: {at(self.unpacked)})"
        return f"{at(self.unpacked)} (unpack {Path(self.path).name} there)"


@dataclass(frozen=True)
class WeightsFile:
    """The pretrained weights file of one architecture (its ``DEFAULT`` torchvision weights).

    Attributes:
        arch: the architecture name, e.g. ``"resnet50"``.
        weights: the torchvision weights, e.g. ``ResNet50_Weights.IMAGENET1K_V2``.
    """

    arch: str
    weights: WeightsEnum

    @property
    def file_name(self) -> str:
        """The file name torch.hub saves the weights under (the last part of the URL)."""
        return Path(urlparse(self.weights.url).path).name

    @property
    def path(self) -> str:
        """Where the file goes, relative to ``TORCH_HOME``."""
        return f"hub/checkpoints/{self.file_name}"

    @property
    def size_mib(self) -> float | None:
        """The file size torchvision records (``meta["_file_size"]``, MiB), or None."""
        size = self.weights.meta.get("_file_size")
        return float(size) if size is not None else None

    @property
    def sha256_prefix(self) -> str | None:
        """The start of the file's SHA-256, from its name (``resnet50-11ad3fa6.pth``); torch.hub checks it on download."""
        stem = Path(self.file_name).stem
        return stem.rsplit("-", 1)[1] if "-" in stem else None

    def location(self) -> Path:
        """The file's absolute path under the current ``TORCH_HOME``."""
        from tlhelpers.models.backbones import cached_weights_path

        return cached_weights_path(self.weights)

    def present(self) -> bool:
        """True when the weights file is in the torch hub cache."""
        return self.location().is_file()


@dataclass(frozen=True)
class Chapter:
    """What one chapter's full mode reads.

    Attributes:
        title: the chapter's topic.
        datasets: datasets of its notebook (and benchmark).
        archs: architectures whose pretrained weights it loads.
        benchmark_datasets: datasets only its benchmark reads.
    """

    title: str
    datasets: tuple[str, ...]
    archs: tuple[str, ...] = ()
    benchmark_datasets: tuple[str, ...] = ()


CHAPTERS: dict[str, Chapter] = {
    "1": Chapter("fine-tuning", ("pets",), ("resnet50",)),
    "2": Chapter("feature extraction", ("pets",), ("vgg16", "resnet50")),
    "3": Chapter("domain adaptation", ("mnist", "mnistm"), benchmark_datasets=("svhn", "usps")),
    "4": Chapter("few-shot learning", ("omniglot",)),
}


def _file(dataset: str, folder: str, url: str, md5: str, unpacked: str | None = None, offline: bool = True) -> DataFile:
    name = Path(urlparse(url).path).name
    return DataFile(dataset, f"{folder}/{name}" if folder else name, url, md5, SIZES.get(name),
                    f"{folder}/{unpacked}" if unpacked and folder else unpacked, offline)


def dataset_files(name: str) -> tuple[DataFile, ...]:
    """The files of dataset ``name`` (``"pets"``, ``"mnist"``, ``"usps"``, ``"svhn"``, ``"mnistm"``, ``"omniglot"``).

    Raises:
        ValueError: for an unknown dataset, listing the known ones.
    """
    from torchvision import datasets as tv

    if name == "pets":
        return tuple(_file(name, "oxford-iiit-pet", url, md5, Path(urlparse(url).path).name.split(".")[0] + "/")
                     for url, md5 in tv.OxfordIIITPet._RESOURCES)
    if name == "mnist":  # torchvision keeps the .gz files and reads the unpacked ones beside them
        return tuple(_file(name, "MNIST/raw", MNIST_MIRROR + gz, md5, gz[: -len(".gz")])
                     for gz, md5 in tv.MNIST.resources)
    if name == "usps":
        return tuple(_file(name, "usps", tv.USPS.split_list[s][0], tv.USPS.split_list[s][2]) for s in ("train", "test"))
    if name == "svhn":
        return tuple(_file(name, "svhn", tv.SVHN.split_list[s][0], tv.SVHN.split_list[s][2]) for s in ("train", "test"))
    if name == "mnistm":
        from tlhelpers.data import mnistm

        return (DataFile(name, mnistm.ARCHIVE, mnistm.URL, mnistm.MD5, SIZES.get(mnistm.ARCHIVE), f"{mnistm.FOLDER}/"),)
    if name == "omniglot":
        # load_dataset unzips a copied zip itself (after checking its MD5), so the zip is enough offline.
        return tuple(_file(name, "omniglot-py", f"{tv.Omniglot.download_url_prefix}/{split}.zip", md5, f"{split}/")
                     for split, md5 in tv.Omniglot.zips_md5.items())
    from tlhelpers.data.torchvision_sets import DATASETS

    raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}.")


def weights_file(arch: str) -> WeightsFile:
    """The file of ``arch``'s ``DEFAULT`` pretrained weights (what ``build_classifier`` loads).

    Raises:
        ValueError: for an unknown architecture or one without pretrained weights.
    """
    from tlhelpers.models.backbones import resolve_weights

    return WeightsFile(arch, resolve_weights(arch, "DEFAULT"))


def missing_files(
    datasets: Iterable[str] = (), archs: Iterable[str] = (), data_root: str | Path | None = None
) -> list[str]:
    """The files a full-mode run needs that are not on disk, one description each (empty: all there).

    Args:
        datasets: dataset names (see :func:`dataset_files`).
        archs: architectures whose ``DEFAULT`` weights are loaded.
        data_root: the data folder; default :func:`tlhelpers.core.runtime.data_root`.

    Returns:
        Paths of missing dataset files (with what they unpack to) and weights files, e.g.
        ``"data/svhn/train_32x32.mat"``; weights under the current ``TORCH_HOME``.
    """
    if data_root is None:
        from tlhelpers.core.runtime import data_root as default_root

        data_root = default_root(create=False)
    missing = [f.where(data_root) for name in dict.fromkeys(datasets) for f in dataset_files(name)
               if not f.present(data_root)]
    missing += [str(w.location()) for w in map(weights_file, dict.fromkeys(archs)) if not w.present()]
    return missing


def _size(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "not recorded"
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.1f} MiB ({n_bytes:,} bytes)"
    return f"{n_bytes / 2**10:.1f} KiB ({n_bytes:,} bytes)"


def _link(url: str) -> str:
    return f"[{urlparse(url).netloc}]({url})"


def _chapters_using(dataset: str | None = None, arch: str | None = None) -> str:
    used = []
    for key, ch in CHAPTERS.items():
        if dataset in ch.datasets or arch in ch.archs:
            used.append(key)
        elif dataset in ch.benchmark_datasets:
            used.append(f"{key} (benchmark)")
    return ", ".join(used)


def files_markdown() -> str:
    """The README's table: every file of full mode, which chapters read it, where it goes, size, checksum, source."""
    lines = [
        "| chapters | file | where it goes | size | checksum | download |",
        "|---|---|---|---|---|---|",
    ]
    datasets = dict.fromkeys(d for ch in CHAPTERS.values() for d in (*ch.datasets, *ch.benchmark_datasets))
    for name in datasets:
        for f in dataset_files(name):
            if f.unpacked is None:
                where = f"`{f.path}`"
            elif f.unpacks_offline:
                where = f"`{f.path}`, or unpacked: `{f.unpacked}`"
            else:
                where = f"`{f.unpacked}` (unpack {Path(f.path).name} there)"
            lines.append(f"| {_chapters_using(dataset=name)} | {Path(f.path).name} | data root: {where} | "
                         f"{_size(f.size)} | MD5 `{f.md5}` | {_link(f.url)} |")
    archs = dict.fromkeys(a for ch in CHAPTERS.values() for a in ch.archs)
    for arch in archs:
        w = weights_file(arch)
        size = "not recorded" if w.size_mib is None else f"{w.size_mib:.1f} MiB"
        check = "not recorded" if w.sha256_prefix is None else f"SHA-256 starts `{w.sha256_prefix}`"
        lines.append(f"| {_chapters_using(arch=arch)} | {w.file_name} ({w.weights}) | TORCH_HOME: `{w.path}` | "
                     f"{size} | {check} | torchvision: `{w.weights}.url` |")
    return "\n".join(lines)


__all__ = [
    "CHAPTERS",
    "SIZES",
    "Chapter",
    "DataFile",
    "WeightsFile",
    "dataset_files",
    "files_markdown",
    "missing_files",
    "weights_file",
]
