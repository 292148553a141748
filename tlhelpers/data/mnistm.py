"""MNIST-M as published by Ganin & Lempitsky (2015): MNIST digits blended onto BSDS500 photo patches.

The files are the original archive's, extracted under the data root::

    root/mnist_m/mnist_m_train/00000000.png ...   (59,001 RGB images, 28x28)
    root/mnist_m/mnist_m_test/00000000.png ...    (9,001)
    root/mnist_m/mnist_m_train_labels.txt         (one "00000000.png 5" line per image)
    root/mnist_m/mnist_m_test_labels.txt

:func:`load_mnistm` reads the extracted folder when it is there, else extracts ``root/mnist_m.tar.gz``
(after checking its MD5), else downloads the archive; the network is never touched while files
are present. Reduced mode does not use this module: its offline stand-in is
``tlhelpers.course.digits.make_mnistm_style``.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from tlhelpers.data.torchvision_sets import DatasetUnavailableError, ImageFiles

#: Where the archive is published (the URL and checksum used by the pytorch-adapt library).
URL = "https://cornell.box.com/shared/static/jado7quprg6hzzdubvwzh9umr75damwi"
ARCHIVE = "mnist_m.tar.gz"
MD5 = "859df31c91afe82e80e5012ba928f279"
#: The archive's top folder, kept as the folder's name under the data root.
FOLDER = "mnist_m"
#: Images per split in the standard archive.
SIZES = {"train": 59_001, "test": 9_001}
CLASSES = [str(d) for d in range(10)]


def _split_files(folder: Path, split: str) -> tuple[Path, Path]:
    """The image folder and the label file of ``split`` under an extracted ``mnist_m`` folder."""
    return folder / f"mnist_m_{split}", folder / f"mnist_m_{split}_labels.txt"


class MNISTM(ImageFiles):
    """One split of an extracted MNIST-M folder; items are ``(PIL RGB image, int label)``.

    Args:
        folder: the extracted ``mnist_m`` folder.
        split: ``"train"`` or ``"test"``.
        transform: applied to each PIL image.

    Attributes:
        classes: ``"0"`` .. ``"9"``.
        targets: the label of every image, in the label file's order.

    Raises:
        ValueError: on an unknown split or a malformed label line.
        FileNotFoundError: if the label file, or an image it lists, is missing.
    """

    def __init__(self, folder: str | Path, split: str = "train", transform: Callable | None = None) -> None:
        if split not in SIZES:
            raise ValueError(f"split={split!r} is unknown; use one of {sorted(SIZES)}.")
        self.folder = Path(folder)
        self.transform = transform
        self.classes = list(CLASSES)
        images, labels_file = _split_files(self.folder, split)
        if not labels_file.is_file():
            raise FileNotFoundError(f"{labels_file} is missing; extract {ARCHIVE} in {self.folder.parent}.")
        present = {p.name for p in images.iterdir()} if images.is_dir() else set()
        self.samples: list[tuple[Path, int]] = []
        for number, line in enumerate(labels_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) > 9:
                raise ValueError(
                    f"{labels_file} line {number} is {line!r}, not '<file>.png <digit>'; extract {ARCHIVE} again."
                )
            if parts[0] not in present:
                raise FileNotFoundError(
                    f"{parts[0]} is listed in {labels_file.name} but missing from {images}; "
                    f"delete {self.folder} and extract {ARCHIVE} again."
                )
            self.samples.append((images / parts[0], int(parts[1])))
        self._index()


def _extract(archive: Path, root: Path) -> None:
    """Check ``archive``'s MD5 and extract it to ``root/mnist_m``, all or nothing.

    The archive is unpacked into a temporary folder beside the target and renamed at the end, so an
    interrupted extraction never leaves a ``mnist_m`` folder that looks complete.
    """
    from torchvision.datasets.utils import calculate_md5

    folder = root / FOLDER
    digest = calculate_md5(archive)
    if digest != MD5:
        raise DatasetUnavailableError(
            "mnistm", folder, f"{archive} is corrupt or truncated: MD5 {digest}, expected {MD5}",
            fix=f"delete {archive} and download it again",
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER}-extracting-", dir=root))
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # refuses absolute paths and links out of the folder
                tar.extractall(staging, filter="data")
            else:
                tar.extractall(staging)
        if not (staging / FOLDER).is_dir():
            raise DatasetUnavailableError(
                "mnistm", folder, f"{archive} has no top folder {FOLDER}/",
                fix=f"delete {archive} and download it again",
            )
        (staging / FOLDER).rename(folder)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetUnavailableError(
            "mnistm", folder, f"extracting {archive} failed ({type(exc).__name__}: {exc})",
            fix=f"delete {archive} and download it again",
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_mnistm(
    root: str | Path, split: str = "train", transform: Callable | None = None, download: bool = True
) -> MNISTM:
    """Return MNIST-M's ``split`` from ``root/mnist_m``, extracting or downloading only if missing.

    Order: the extracted folder; else ``root/mnist_m.tar.gz`` (MD5 checked, then extracted); else a
    download of :data:`URL` when ``download`` is True.

    Args:
        root: the data folder.
        split: ``"train"`` or ``"test"``.
        transform: applied to each PIL image.
        download: allow downloading the archive when neither the folder nor the archive is there.

    Returns:
        An :class:`MNISTM` dataset, :data:`SIZES` ``[split]`` images for the standard archive.

    Raises:
        ValueError: on an unknown split.
        DatasetUnavailableError: when the files are missing and cannot be downloaded, or the
            archive is corrupt.
    """
    if split not in SIZES:
        raise ValueError(f"split={split!r} is unknown; use one of {sorted(SIZES)}.")
    root = Path(root)
    folder = root / FOLDER
    images, labels_file = _split_files(folder, split)
    if folder.is_dir() and not (images.is_dir() and labels_file.is_file()):
        raise DatasetUnavailableError(
            "mnistm", folder, f"it lacks {images.name}/ or {labels_file.name}",
            fix=f"delete {folder} so that it is extracted or downloaded again",
        )
    if not folder.is_dir():
        archive = root / ARCHIVE
        if not archive.is_file():
            if not download:
                raise DatasetUnavailableError(
                    "mnistm", folder, f"neither {FOLDER}/ nor {ARCHIVE} is in {root}",
                    fix=f"put {ARCHIVE} ({URL}) or its extracted {FOLDER}/ in {root}, or allow the "
                    "download, or set TLH_BUDGET=reduced for the offline reduced budget",
                )
            from torchvision.datasets.utils import download_url

            try:
                download_url(URL, str(root), ARCHIVE, md5=MD5)
            except Exception as exc:  # URLError, HTTPError, checksum mismatch after download
                archive.unlink(missing_ok=True)  # so the next run downloads again, not "corrupt archive"
                raise DatasetUnavailableError(
                    "mnistm", folder, f"download failed: {type(exc).__name__}: {exc}"
                ) from exc
        _extract(archive, root)
    return MNISTM(folder, split, transform)


__all__ = ["ARCHIVE", "MD5", "MNISTM", "SIZES", "URL", "load_mnistm"]
