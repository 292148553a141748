"""The real datasets of full mode behind one call, ``load_dataset(name, split)``, offline-safe.

Files already on disk are always used as they are (no download is attempted, no checksum of a
present file can trigger one); only missing files are downloaded, and any download failure becomes
a ``DatasetUnavailableError`` with a one-line fix instead of a urllib traceback.

Folders under ``root``: ``oxford-iiit-pet/``, ``MNIST/raw/``, ``usps/``, ``svhn/`` and
``omniglot-py/images_background|images_evaluation/`` (torchvision's own layouts), and
``mnist_m/`` (the original MNIST-M archive's layout, see ``tlhelpers.data.mnistm``).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

DATASETS = ("pets", "mnist", "usps", "svhn", "mnistm", "omniglot")
SPLITS: dict[str, tuple[str, ...]] = {
    "pets": ("trainval", "test"),
    "mnist": ("train", "test"),
    "usps": ("train", "test"),
    "svhn": ("train", "test"),
    "mnistm": ("train", "test"),
    "omniglot": ("background", "evaluation"),
}
_DOWNLOAD_ERRORS = (urllib.error.URLError, OSError, RuntimeError)


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says how to fix it."""

    def __init__(self, name: str, folder: str | Path, reason: str = "", fix: str | None = None) -> None:
        why = f" ({' '.join(reason.split())})" if reason.strip() else ""
        if fix is None:
            fix = (
                f"connect to the internet, or put the extracted files in {folder}, "
                "or set TLH_BUDGET=reduced for the offline reduced budget"
            )
        super().__init__(f"dataset {name!r} is not available in {folder}{why}; {fix}.")
        self.name = name
        self.folder = Path(folder)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


class _SVHNMat(Dataset):
    """SVHN from its ``.mat`` file, read without torchvision's checksum (so copies work)."""

    def __init__(self, path: Path, transform: Callable | None = None) -> None:
        import numpy as np
        import scipy.io

        mat = scipy.io.loadmat(path)
        self.data = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)))  # (N, H, W, 3)
        labels = mat["y"].astype(np.int64).flatten()
        self.targets = [int(t) for t in np.where(labels == 10, 0, labels)]  # "10" is digit 0
        self.classes = [str(d) for d in range(10)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        image = Image.fromarray(self.data[i])
        return (self.transform(image) if self.transform else image), self.targets[i]


class ImageFiles(Dataset):
    """Items ``(PIL image, label)`` read from a list of image files, converted to one PIL mode.

    Subclasses fill ``samples`` (``(path, label)`` pairs) and ``classes``, then call
    :meth:`_index`; the datasets stored as image files (Omniglot, MNIST-M) share the rest.
    """

    mode = "RGB"
    samples: list[tuple[Path, int]]
    transform: Callable | None

    def _index(self) -> None:
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as img:
            image = img.convert(self.mode)
        return (self.transform(image) if self.transform else image), label


class OmniglotFolder(ImageFiles):
    """Omniglot-style images laid out ``alphabet/character/*.png``, as grey PIL images.

    Attributes:
        classes: ``"alphabet/character"`` names, sorted.
        targets: the class index of every item.
    """

    mode = "L"

    def __init__(self, folder: Path, transform: Callable | None = None) -> None:
        self.folder = folder
        self.transform = transform
        self.classes: list[str] = []
        self.samples: list[tuple[Path, int]] = []
        for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                files = sorted(character.glob("*.png"))
                if not files:
                    continue
                label = len(self.classes)
                self.classes.append(f"{alphabet.name}/{character.name}")
                self.samples.extend((f, label) for f in files)
        self._index()


def omniglot_folder(path: str | Path, transform: Callable | None = None) -> OmniglotFolder:
    """Return a dataset over an extracted Omniglot tree ``alphabet/character/*.png``.

    Args:
        path: the tree's folder (e.g. ``images_background``), or a folder that holds exactly
            one such tree one level down (e.g. ``omniglot-py``).
        transform: applied to each grey PIL image.

    Returns:
        Items ``(image, label)``; ``.classes`` as ``"alphabet/character"`` and ``.targets``.

    Raises:
        ValueError: if no ``alphabet/character/*.png`` files are found under ``path``.
    """
    path = Path(path)
    if path.is_dir() and any(path.glob("*/*/*.png")):
        return OmniglotFolder(path, transform)
    if path.is_dir():
        trees = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("*/*/*.png")))
        if len(trees) == 1:
            return OmniglotFolder(trees[0], transform)
        if len(trees) > 1:
            names = ", ".join(p.name for p in trees)
            raise ValueError(f"{path} holds several Omniglot trees ({names}); pass one of them.")
    raise ValueError(f"no alphabet/character/*.png images under {path}; pass an extracted Omniglot folder.")


def _load_mnist(root: Path, split: str, transform: Callable | None, download: bool) -> Any:
    from torchvision.datasets import MNIST

    train = split == "train"
    try:
        return MNIST(str(root), train=train, transform=transform, download=False)
    except RuntimeError:
        if not download:
            raise
    return MNIST(str(root), train=train, transform=transform, download=True)


def _omniglot_md5(split: str) -> str:
    from torchvision.datasets import Omniglot

    return Omniglot.zips_md5[f"images_{split}"]


def _unzip_checked(archive: Path, md5: str) -> None:
    """Check ``archive``'s MD5 and unzip it beside itself (torchvision, finding a verified zip,
    would neither download nor unzip it, so a copied zip alone would never load)."""
    from torchvision.datasets.utils import calculate_md5, extract_archive

    digest = calculate_md5(archive)
    if digest != md5:
        raise OSError(f"{archive} is corrupt or truncated (MD5 {digest}, expected {md5}); delete it and download again")
    extract_archive(str(archive), str(archive.parent))


def _load(name: str, split: str, root: Path, transform: Callable | None, download: bool) -> Any:
    """Load one dataset; raises torchvision's errors (wrapped by ``load_dataset``)."""
    if name == "mnist":
        return _load_mnist(root, split, transform, download)
    if name == "pets":
        from torchvision.datasets import OxfordIIITPet

        kwargs = {"split": split, "target_types": "category", "transform": transform}
        try:
            return OxfordIIITPet(str(root), download=False, **kwargs)
        except RuntimeError:
            if not download:
                raise
        return OxfordIIITPet(str(root), download=True, **kwargs)
    if name == "usps":
        from torchvision.datasets import USPS

        folder = root / "usps"
        file = folder / ("usps.bz2" if split == "train" else "usps.t.bz2")
        if not file.is_file():
            if not download:
                raise FileNotFoundError(f"{file} is missing")
            folder.mkdir(parents=True, exist_ok=True)
            USPS(str(folder), train=split == "train", download=True)
        # A present file is always read with download=False, so it is used as it is whatever a
        # torchvision release does with download=True (a checksum check could fetch it again).
        ds = USPS(str(folder), train=split == "train", transform=transform, download=False)
        ds.classes = [str(d) for d in range(10)]
        return ds
    if name == "svhn":
        folder = root / "svhn"
        file = folder / f"{split}_32x32.mat"
        if not file.is_file():
            if not download:
                raise FileNotFoundError(f"{file} is missing")
            from torchvision.datasets import SVHN

            folder.mkdir(parents=True, exist_ok=True)
            SVHN(str(folder), split=split, download=True)
        return _SVHNMat(file, transform)
    if name == "omniglot":
        folder = root / "omniglot-py" / f"images_{split}"
        if not any(folder.glob("*/*/*.png")):
            archive = folder.with_suffix(".zip")
            if archive.is_file():  # a copied zip: checked and unpacked here, no network needed
                _unzip_checked(archive, _omniglot_md5(split))
            elif not download:
                raise FileNotFoundError(f"{folder} holds no alphabet/character/*.png")
            else:
                from torchvision.datasets import Omniglot

                Omniglot(str(root), background=split == "background", download=True)
        return omniglot_folder(folder, transform)
    if name == "mnistm":
        from tlhelpers.data.mnistm import load_mnistm

        return load_mnistm(root, split, transform, download)
    raise AssertionError(name)


def dataset_folder(name: str, root: str | Path) -> Path:
    """Return the folder under ``root`` where the files of dataset ``name`` live."""
    sub = {"pets": "oxford-iiit-pet", "mnist": "MNIST/raw", "usps": "usps", "svhn": "svhn",
           "mnistm": "mnist_m", "omniglot": "omniglot-py"}[name]
    return Path(root) / sub


def load_dataset(
    name: str,
    split: str,
    root: str | Path | None = None,
    transform: Callable | None = None,
    download: bool = True,
) -> Any:
    """Load a real dataset of full mode, using files on disk and downloading only what is missing.

    Items are ``(PIL image or transform(image), int label)`` and the dataset has ``.classes``,
    for every dataset (``"mnistm"`` is the original archive, read by ``tlhelpers.data.mnistm``).

    Args:
        name: one of ``DATASETS``.
        split: pets ``"trainval"``/``"test"``; mnist, usps, svhn, mnistm ``"train"``/``"test"``;
            omniglot ``"background"``/``"evaluation"``.
        root: data folder; default ``tlhelpers.core.runtime.data_root()``.
        transform: applied to each image.
        download: allow downloading missing files.

    Returns:
        A map-style dataset.

    Raises:
        ValueError: on an unknown name or split, listing the valid ones.
        DatasetUnavailableError: if the files are missing and cannot be downloaded.
    """
    if name not in SPLITS:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}.")
    if split not in SPLITS[name]:
        raise ValueError(f"unknown split {split!r} for {name}; use one of {', '.join(SPLITS[name])}.")
    if root is None:
        from tlhelpers.core.runtime import data_root

        root = data_root()
    root = Path(root).expanduser()
    try:
        return _load(name, split, root, transform, download)
    except DatasetUnavailableError:
        raise
    except _DOWNLOAD_ERRORS as exc:
        raise DatasetUnavailableError(name, dataset_folder(name, root), _one_line(exc)) from exc


__all__ = [
    "DATASETS",
    "DatasetUnavailableError",
    "ImageFiles",
    "OmniglotFolder",
    "dataset_folder",
    "load_dataset",
    "omniglot_folder",
]
