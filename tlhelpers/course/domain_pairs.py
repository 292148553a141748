"""Source/target domain pairs by name, every image as a 3x32x32 uint8 tensor.

Reduced mode (offline, no download): ``uci_digits -> uci_digits_m``, the DANN paper's MNIST ->
MNIST-M in miniature: real handwritten 8x8 digits that ship with scikit-learn, to the same kind of
digits blended onto photo crops (:mod:`tlhelpers.course.uci_digits`). Also offline: ``fontdigits``
and ``mnistm_style``, digits rendered from fonts, plain and on photos (:mod:`tlhelpers.course.digits`).

Full mode (torchvision downloads), the DANN paper's digit pairs: ``mnist -> mnistm``,
``svhn -> mnist`` and ``mnist -> usps``. Channels and sizes differ across these datasets (MNIST and
USPS are grey, 28x28 and 16x16; SVHN and MNIST-M are colour, 32x32 and 28x28), so every domain
goes through the same stated transform: **bilinear resize to ``image_size`` (32) and grey images
copied into 3 identical channels**. Colour is not thrown away, and no domain gets a special case.

Example:
    >>> pair = load_pair("uci_digits", "uci_digits_m", n_train=1000, n_test=500)
    >>> pair.source_train.image_shape, pair.target_train.image_shape
    ((3, 32, 32), (3, 32, 32))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from tlhelpers.data.tensor_dataset import ImageTensorDataset

REDUCED_DOMAINS = ("uci_digits", "uci_digits_m", "fontdigits", "mnistm_style")
FULL_DOMAINS = ("mnist", "mnistm", "svhn", "usps")
#: The pairs the chapter trains, as (source, target).
PAIRS = (("uci_digits", "uci_digits_m"), ("mnist", "mnistm"), ("svhn", "mnist"), ("mnist", "usps"))
#: Target accuracies reported by Ganin et al. (JMLR 2016, Table 2) for the pairs it covers.
PAPER_TARGET_ACC = {
    ("mnist", "mnistm"): {"source_only": 0.5225, "dann": 0.7666},
    ("svhn", "mnist"): {"source_only": 0.5490, "dann": 0.7385},
}
DIGIT_CLASSES = [str(d) for d in range(10)]
#: What each domain is, in a line (for results files and figure captions).
DESCRIPTIONS = {
    "uci_digits": "real handwritten digits, 8x8, scikit-learn's copy of UCI optdigits (offline)",
    "uci_digits_m": "the same real handwritten digits blended on photo crops, MNIST-M recipe (offline)",
    "fontdigits": "digits rendered from matplotlib's fonts with affine jitter (generated)",
    "mnistm_style": "font digits blended on photo crops, MNIST-M recipe (generated)",
    "mnist": "MNIST handwritten digits, 28x28 grey (torchvision)",
    "mnistm": "MNIST-M, MNIST digits blended on BSDS500 photo crops (Ganin & Lempitsky)",
    "svhn": "SVHN house-number crops, 32x32 colour (torchvision)",
    "usps": "USPS handwritten digits, 16x16 grey (torchvision)",
}


@dataclass
class DomainPair:
    """Train and test sets of a source and a target domain, ready for the chapter's CNN.

    ``target_train`` still holds labels so the oracle baseline and scoring can use them; wrap it in
    :class:`tlhelpers.domain.paired.UnlabeledDataset` before adaptation.
    """

    source: str
    target: str
    source_train: ImageTensorDataset
    source_test: ImageTensorDataset
    target_train: ImageTensorDataset
    target_test: ImageTensorDataset

    @property
    def name(self) -> str:
        """``"source_target"``, for file names."""
        return f"{self.source}_{self.target}"


def _check_name(name: str) -> None:
    if name not in REDUCED_DOMAINS + FULL_DOMAINS:
        raise ValueError(
            f"unknown domain {name!r}; valid domains: {', '.join(REDUCED_DOMAINS + FULL_DOMAINS)}."
        )


def match_format(images: torch.Tensor, image_size: int = 32) -> torch.Tensor:
    """The chapter's stated transform: bilinear resize to ``image_size`` and grey to 3 channels.

    Args:
        images: uint8 images with 1 or 3 channels.
        image_size: output height and width.

    Returns:
        uint8 images of shape ``(N, 3, image_size, image_size)``.

    Raises:
        ValueError: on a dtype other than uint8 or a channel count other than 1 or 3.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 images (N, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}; "
            "convert them with tlhelpers.data.tensor_cache.to_tensor_dataset first."
        )
    if images.shape[-2:] != (image_size, image_size):
        resized = torch.nn.functional.interpolate(
            images.float(), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images


def check_compatible(source: ImageTensorDataset, target: ImageTensorDataset) -> None:
    """Raise unless source and target images share channels and size, and the class list.

    Raises:
        ValueError: naming the mismatch and :func:`match_format` as the fix.
    """
    if source.image_shape != target.image_shape:
        raise ValueError(
            f"source images are {source.image_shape} but target images are {target.image_shape}; "
            "apply tlhelpers.course.domain_pairs.match_format to both (resize to 32, grey to 3 channels)."
        )
    if source.num_classes != target.num_classes:
        raise ValueError(
            f"source has {source.num_classes} classes, target {target.num_classes}; "
            "domain adaptation here needs the same label set in both domains."
        )


def _full_domain(name: str, split: str, root: Path | None, image_size: int, download: bool) -> ImageTensorDataset:
    from tlhelpers.core.runtime import data_root
    from tlhelpers.data.tensor_cache import to_tensor_dataset
    from tlhelpers.data.torchvision_sets import DatasetUnavailableError, load_dataset

    folder = Path(root) if root is not None else data_root()
    try:  # files on disk: never touch the network
        raw = load_dataset(name, split, root=folder, download=False)
    except DatasetUnavailableError:
        if not download:
            raise
        raw = load_dataset(name, split, root=folder, download=True)
    cache = folder / "cache" / f"{name}_{split}_{image_size}.pt"
    cached = to_tensor_dataset(raw, image_size, cache_file=cache)
    return ImageTensorDataset(match_format(cached.images, image_size), cached.labels, DIGIT_CLASSES)


def load_domain(
    name: str,
    split: str = "train",
    *,
    root: str | Path | None = None,
    image_size: int = 32,
    n: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> ImageTensorDataset:
    """One domain's split as a 3-channel ``ImageTensorDataset`` of digits 0-9.

    Args:
        name: one of ``uci_digits``, ``uci_digits_m`` (scikit-learn's handwritten digits, offline),
            ``fontdigits``, ``mnistm_style`` (generated) or ``mnist``, ``mnistm``, ``svhn``,
            ``usps`` (torchvision).
        split: ``"train"`` or ``"test"``.
        root: data folder for the torchvision domains; :func:`tlhelpers.core.runtime.data_root` if None.
        image_size: output height and width.
        n: number of images (generated domains: how many to make, default 2000; real domains: a
            random subset of this size, default all; ``uci_digits*`` splits hold 1,078 and 719).
        seed: generator seed, or the subset's seed.
        download: allow a download when a real dataset's files are missing (never when present).

    Raises:
        ValueError: for an unknown domain name (listing the valid ones) or split.
        tlhelpers.data.torchvision_sets.DatasetUnavailableError: if files are missing and
            ``download`` is False or the network is unreachable.
    """
    _check_name(name)
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'.")
    if name in ("uci_digits", "uci_digits_m"):
        from tlhelpers.course import uci_digits

        if name == "uci_digits":
            ds = uci_digits.make_uci_digits(split, n=n, seed=seed)
        else:
            ds = uci_digits.make_uci_digits_m(split, n=n, image_size=image_size, seed=seed)
        return ImageTensorDataset(match_format(ds.images, image_size), ds.labels, ds.classes)
    if name in REDUCED_DOMAINS:
        from tlhelpers.course import digits

        make = digits.make_font_digits if name == "fontdigits" else digits.make_mnistm_style
        ds = make(split, n=n or 2000, image_size=image_size, seed=seed)
        return ImageTensorDataset(match_format(ds.images, image_size), ds.labels, ds.classes)
    ds = _full_domain(name, split, Path(root) if root is not None else None, image_size, download)
    if n is not None and n < len(ds):
        ds = ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n])
    return ds


def load_pair(
    source: str,
    target: str,
    *,
    root: str | Path | None = None,
    image_size: int = 32,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> DomainPair:
    """Train and test splits of a source and a target domain in the same 3x``image_size`` format.

    Args:
        source: the labelled domain's name (see :func:`load_domain`).
        target: the unlabelled domain's name.
        root, image_size, seed, download: as in :func:`load_domain`.
        n_train: images per training split (see ``n`` of :func:`load_domain`).
        n_test: images per test split.

    Raises:
        ValueError: for an unknown domain name, or ``source == target``.
    """
    _check_name(source)
    _check_name(target)
    if source == target:
        raise ValueError(f"source and target are both {source!r}; pick two different domains, e.g. {PAIRS[1]}.")
    load = functools.partial(load_domain, root=root, image_size=image_size, download=download)
    # Different seeds per domain and split, so generated domains never share a random stream.
    pair = DomainPair(
        source,
        target,
        load(source, "train", n=n_train, seed=seed),
        load(source, "test", n=n_test, seed=seed + 1),
        load(target, "train", n=n_train, seed=seed + 2),
        load(target, "test", n=n_test, seed=seed + 3),
    )
    check_compatible(pair.source_train, pair.target_train)
    return pair
