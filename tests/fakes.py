"""Tiny files in each full-mode dataset's real on-disk layout, for offline tests of full mode.

Every writer puts a few images where torchvision (or ``tlhelpers.data``) looks for the real
dataset under a data root, in the real file formats (JPEG, PNG, idx, libsvm ``.bz2``, MATLAB
``.mat``), so the course's full-mode code paths run without a network. ``write_weights`` does the
same for pretrained weights in the torch hub cache. Writers return what they wrote, so tests can
compare against it.

Example:
    >>> write_all_datasets(tmp_path)
    >>> load_dataset("mnist", "train", root=tmp_path, download=False)
"""

from __future__ import annotations

import bz2
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Real alphabet names (the folder names of Omniglot's two splits); more are named Alphabet_NN.
_BACKGROUND_ALPHABETS = ("Alphabet_of_the_Magi", "Anglo-Saxon_Futhorc", "Arcadian", "Armenian", "Balinese")
_EVALUATION_ALPHABETS = ("Angelic", "Atemayar_Qelisayer", "Atlantean", "Aurek-Besh", "Avesta")

#: Omniglot's real splits: ``(alphabet, characters)``; 30 alphabets and 964 characters in
#: ``images_background``, 20 and 659 in ``images_evaluation``, 20 drawings per character.
OMNIGLOT_ALPHABETS: dict[str, tuple[tuple[str, int], ...]] = {
    "background": (
        ("Alphabet_of_the_Magi", 20), ("Anglo-Saxon_Futhorc", 29), ("Arcadian", 26), ("Armenian", 41),
        ("Asomtavruli_(Georgian)", 40), ("Balinese", 24), ("Bengali", 46),
        ("Blackfoot_(Canadian_Aboriginal_Syllabics)", 14), ("Braille", 26), ("Burmese_(Myanmar)", 34),
        ("Cyrillic", 33), ("Early_Aramaic", 22), ("Futurama", 26), ("Grantha", 43), ("Greek", 24),
        ("Gujarati", 48), ("Hebrew", 22), ("Inuktitut_(Canadian_Aboriginal_Syllabics)", 16),
        ("Japanese_(hiragana)", 52), ("Japanese_(katakana)", 47), ("Korean", 40), ("Latin", 26),
        ("Malay_(Jawi_-_Arabic)", 40), ("Mkhedruli_(Georgian)", 41), ("N_Ko", 33),
        ("Ojibwe_(Canadian_Aboriginal_Syllabics)", 14), ("Sanskrit", 42), ("Syriac_(Estrangelo)", 23),
        ("Tagalog", 17), ("Tifinagh", 55),
    ),
    "evaluation": (
        ("Angelic", 20), ("Atemayar_Qelisayer", 26), ("Atlantean", 26), ("Aurek-Besh", 26), ("Avesta", 26),
        ("Ge_ez", 26), ("Glagolitic", 45), ("Gurmukhi", 45), ("Kannada", 41), ("Keble", 26), ("Malayalam", 47),
        ("Manipuri", 40), ("Mongolian", 30), ("Old_Church_Slavonic_(Cyrillic)", 45), ("Oriya", 46),
        ("Sylheti", 28), ("Syriac_(Serto)", 23), ("Tengwar", 25), ("Tibetan", 42), ("ULOG", 26),
    ),
}

#: Oxford-IIIT Pet's 37 breeds as in its file names: 12 cats (capitalised) and 25 dogs (lower case).
PETS_BREEDS: tuple[str, ...] = (
    "Abyssinian", "Bengal", "Birman", "Bombay", "British_Shorthair", "Egyptian_Mau", "Maine_Coon", "Persian",
    "Ragdoll", "Russian_Blue", "Siamese", "Sphynx",
    "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "boxer", "chihuahua",
    "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees", "havanese",
    "japanese_chin", "keeshond", "leonberger", "miniature_pinscher", "newfoundland", "pomeranian", "pug",
    "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "staffordshire_bull_terrier",
    "wheaten_terrier", "yorkshire_terrier",
)

#: The real sizes the laptop budget reads (images per split).
LAPTOP_SIZES: dict[str, dict[str, int]] = {
    "pets": {"trainval": 37 * 30, "test": 37 * 15},
    "mnist": {"train": 60_000, "test": 10_000},
    "mnistm": {"train": 59_001, "test": 9_001},
    "omniglot": {"background": 964 * 20, "evaluation": 659 * 20},
}

Split = tuple[np.ndarray, np.ndarray]


def _digit_images(n: int, seed: int, size: int = 28) -> Split:
    """``n`` white-on-black digits ``(n, size, size)`` uint8, labels cycling 0-9, shifted at random."""
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=round(size * 0.75))
    labels = np.arange(n, dtype=np.int64) % 10
    images = np.zeros((n, size, size), dtype=np.uint8)
    for i, digit in enumerate(labels):
        canvas = Image.new("L", (size, size), 0)
        dx, dy = rng.integers(-2, 3, size=2)
        centre = (size / 2 + dx, size / 2 + dy)
        ImageDraw.Draw(canvas).text(centre, str(digit), fill=255, font=font, anchor="mm")
        images[i] = np.asarray(canvas)
    return images, labels


def _digit_bank(n: int, seed: int, size: int = 28, bank: int = 6, shift: int = 2) -> Split:
    """Like :func:`_digit_images`, fast: ``bank`` drawings per digit, each image a copy shifted at random.

    The drawings vary in font size and stroke width; the copies are shifted by up to ``shift`` pixels
    each way with one vectorised gather, so 60,000 digits take well under a second.
    """
    rng = np.random.default_rng(seed)
    drawings = np.zeros((10, bank, size, size), dtype=np.uint8)
    for v in range(bank):
        font = ImageFont.load_default(size=round(size * (0.6 + 0.2 * v / max(1, bank - 1))))
        for digit in range(10):
            canvas = Image.new("L", (size, size), 0)
            ImageDraw.Draw(canvas).text((size / 2, size / 2), str(digit), fill=255, font=font, anchor="mm",
                                        stroke_width=v % 2, stroke_fill=255)
            drawings[digit, v] = np.asarray(canvas)
    labels = np.arange(n, dtype=np.int64) % 10
    padded = np.pad(drawings[labels, rng.integers(0, bank, n)], ((0, 0), (shift, shift), (shift, shift)))
    dy, dx = rng.integers(0, 2 * shift + 1, (2, n))
    rows = (dy[:, None] + np.arange(size))[:, :, None]
    cols = (dx[:, None] + np.arange(size))[:, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols], labels


def write_pets(
    root: str | Path,
    breeds: Sequence[str] = ("Abyssinian", "american_bulldog", "Bengal", "beagle"),
    n_trainval: int = 4,
    n_test: int = 3,
    size: tuple[int, int] = (64, 48),
) -> dict[str, list[tuple[str, int]]]:
    """Write Oxford-IIIT Pet's layout: ``oxford-iiit-pet/images/*.jpg`` and ``annotations/*.txt``.

    As in the real files, a capitalised breed is a cat (species 1) and a lower-case one a dog
    (species 2); class ids are 1-based in case-insensitive alphabetical order of the breeds, breed
    ids 1-based within a species, and both splits are listed breed by breed. Each breed has its own
    colour and stripe pattern; images ``<Breed>_1 .. _n_trainval`` are trainval, the rest test.

    Args:
        root: the data root.
        breeds: breed names as in the image file names.
        n_trainval: images per breed in ``trainval.txt``.
        n_test: images per breed in ``test.txt``.
        size: image ``(width, height)``.

    Returns:
        Per split, ``(image id, 0-based class index)`` in file order.
    """
    base = Path(root) / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "annotations").mkdir(exist_ok=True)
    ordered = sorted(breeds, key=str.lower)
    species = {b: 1 if b[:1].isupper() else 2 for b in ordered}
    breed_id = {b: 1 + [c for c in ordered if species[c] == species[b]].index(b) for b in ordered}
    width, height = size
    rows: dict[str, list[tuple[str, int]]] = {"trainval": [], "test": []}
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    for class_index, breed in enumerate(ordered):
        colour = np.array([97 * class_index + 40, 53 * class_index + 160, 180 - 41 * class_index]) % 256
        period = 4 + 3 * class_index
        for i in range(1, n_trainval + n_test + 1):
            yy, xx = np.mgrid[0:height, 0:width]
            stripes = ((xx + yy * (class_index % 2) + i) // period) % 2
            pixels = np.clip(colour[None, None] * (0.6 + 0.4 * stripes[..., None]) + 5 * i, 0, 255)
            image_id = f"{breed}_{i}"
            Image.fromarray(pixels.astype(np.uint8)).save(base / "images" / f"{image_id}.jpg", quality=95)
            split = "trainval" if i <= n_trainval else "test"
            rows[split].append((image_id, class_index))
            lines[split].append(f"{image_id} {class_index + 1} {species[breed]} {breed_id[breed]}\n")
    for split, text in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("".join(text))
    return rows


def write_mnist(root: str | Path, n_train: int = 30, n_test: int = 20, fast: bool = False) -> dict[str, Split]:
    """Write MNIST's uncompressed idx files in ``MNIST/raw/`` (as torchvision's download leaves them).

    Args:
        root: the data root.
        n_train: training images (60,000 in the real dataset).
        n_test: test images (10,000 in the real dataset).
        fast: shift copies of a few drawings per digit instead of drawing every image (for the real
            sizes: 70,000 digits in about a second).

    Returns:
        Per split (``"train"``, ``"test"``), images ``(N, 28, 28)`` uint8 and labels cycling 0-9.
    """
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n, seed in (("train", "train", n_train, 0), ("test", "t10k", n_test, 1)):
        images, labels = (_digit_bank if fast else _digit_images)(n, seed)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, n, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x0801, n) + labels.astype(np.uint8).tobytes()
        )
        written[split] = (images, labels)
    return written


def write_usps(root: str | Path, n_train: int = 30, n_test: int = 20) -> dict[str, Split]:
    """Write USPS's libsvm files ``usps/usps.bz2`` and ``usps/usps.t.bz2`` (bzip2-compressed).

    Each line is ``<digit + 1> 1:<v> ... 256:<v>`` with values in [-1, 1], as in the real files.

    Returns:
        Per split, the values ``(N, 16, 16)`` float32 and the digit labels 0-9.
    """
    folder = Path(root) / "usps"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, name, n, seed in (("train", "usps.bz2", n_train, 2), ("test", "usps.t.bz2", n_test, 3)):
        digits, labels = _digit_images(n, seed, size=16)
        values = (digits.astype(np.float32) / 255 * 2 - 1).round(4)
        lines = [
            f"{label + 1} " + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(row.ravel())) + "\n"
            for row, label in zip(values, labels)
        ]
        with bz2.open(folder / name, "wt") as f:
            f.writelines(lines)
        written[split] = (values, labels)
    return written


def write_svhn(root: str | Path, n_train: int = 30, n_test: int = 20) -> dict[str, Split]:
    """Write SVHN's ``svhn/train_32x32.mat`` and ``test_32x32.mat``: ``X (32, 32, 3, N)``, ``y (N, 1)``.

    As in the real files, digit 0 is stored as label 10.

    Returns:
        Per split, images ``(N, 32, 32, 3)`` uint8 (coloured digits on coloured ground) and labels 0-9.
    """
    import scipy.io

    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n, seed in (("train", n_train, 4), ("test", n_test, 5)):
        digits, labels = _digit_images(n, seed, size=32)
        rng = np.random.default_rng(seed)
        ground = rng.integers(0, 256, (n, 1, 1, 3))
        ink = rng.integers(0, 256, (n, 1, 1, 3))
        alpha = digits[..., None].astype(np.float64) / 255
        images = (ground * (1 - alpha) + ink * alpha).round().astype(np.uint8)
        y = np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": np.transpose(images, (1, 2, 3, 0)), "y": y})
        written[split] = (images, labels)
    return written


def _character_strokes(rng: np.random.Generator) -> list[np.ndarray]:
    """2-3 random strokes, each 3-4 points in [20, 85]^2: one character's shape."""
    return [rng.uniform(20, 85, (rng.integers(3, 5), 2)) for _ in range(rng.integers(2, 4))]


def write_omniglot(
    root: str | Path,
    n_alphabets: tuple[int, int] = (3, 2),
    n_characters: int = 6,
    n_drawings: int = 20,
    alphabets: Mapping[str, Sequence[tuple[str, int]]] | None = None,
) -> dict[str, list[str]]:
    """Write Omniglot's layout: ``omniglot-py/images_{background,evaluation}/<Alphabet>/characterNN/*.png``.

    Images are 105x105 one-bit PNGs (mode ``"1"``, like the real ones): black strokes on white.
    Each character has its own strokes; its drawings jitter them, as different people's drawings.

    Args:
        root: the data root.
        n_alphabets: alphabets in the background and the evaluation split.
        n_characters: characters per alphabet.
        n_drawings: drawings per character (20 in the real dataset).
        alphabets: per split (``"background"``, ``"evaluation"``), ``(alphabet, characters)`` pairs,
            e.g. :data:`OMNIGLOT_ALPHABETS` for the real splits; given, it replaces ``n_alphabets``
            and ``n_characters``.

    Returns:
        Per split (``"background"``, ``"evaluation"``), the ``"alphabet/character"`` class names.
    """
    if alphabets is None:
        alphabets = {
            split: [(names[a] if a < len(names) else f"Alphabet_{a + 1:02d}", n_characters) for a in range(count)]
            for split, count, names in zip(("background", "evaluation"), n_alphabets,
                                       (_BACKGROUND_ALPHABETS, _EVALUATION_ALPHABETS))
        }
    rng = np.random.default_rng(6)
    written: dict[str, list[str]] = {}
    character_id = 0
    for split in ("background", "evaluation"):
        written[split] = []
        for alphabet, characters in alphabets.get(split, ()):
            for c in range(1, characters + 1):
                character_id += 1
                folder = Path(root) / "omniglot-py" / f"images_{split}" / alphabet / f"character{c:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                strokes = _character_strokes(rng)
                for d in range(1, n_drawings + 1):
                    canvas = Image.new("1", (105, 105), 1)
                    draw = ImageDraw.Draw(canvas)
                    shift = rng.normal(0, 2, 2)
                    for stroke in strokes:
                        points = stroke + shift + rng.normal(0, 1.5, stroke.shape)
                        draw.line([tuple(p) for p in points], fill=0, width=3)
                    canvas.save(folder / f"{character_id:04d}_{d:02d}.png")
                written[split].append(f"{alphabet}/character{c:02d}")
    return written


def write_mnistm(root: str | Path, n_train: int = 30, n_test: int = 20, fast: bool = False) -> dict[str, Split]:
    """Write MNIST-M's extracted layout: ``mnist_m/mnist_m_{train,test}/*.png`` and label files.

    Each image is ``|ground - digit|`` per channel on a random colour gradient (the paper's blend,
    with gradients instead of photo patches); label lines read ``"00000000.png 5"``.

    Args:
        root: the data root.
        n_train: training images (59,001 in the real dataset).
        n_test: test images (9,001 in the real dataset).
        fast: digits from shifted copies of a few drawings (see :func:`write_mnist`), for the real sizes.

    Returns:
        Per split, images ``(N, 28, 28, 3)`` uint8 and labels 0-9.
    """
    base = Path(root) / "mnist_m"
    written = {}
    ramp = np.linspace(0, 1, 28)[None, :, None, None]
    for split, n, seed in (("train", n_train, 7), ("test", n_test, 8)):
        folder = base / f"mnist_m_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        digits, labels = (_digit_bank if fast else _digit_images)(n, seed)
        rng = np.random.default_rng(seed)
        start, end = rng.integers(0, 256, (2, n, 1, 1, 3))
        images = np.empty((n, 28, 28, 3), dtype=np.uint8)
        for i in range(0, n, 4096):  # in chunks: the float blend of 59,001 images would take 1 GB
            ground = start[i:i + 4096] + (end[i:i + 4096] - start[i:i + 4096]) * ramp
            images[i:i + 4096] = np.abs(ground - digits[i:i + 4096, ..., None]).round()
        lines = []
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(folder / f"{i:08d}.png", compress_level=1 if fast else 6)
            lines.append(f"{i:08d}.png {label}\n")
        (base / f"mnist_m_{split}_labels.txt").write_text("".join(lines))
        written[split] = (images, labels)
    return written


def write_all_datasets(root: str | Path) -> None:
    """Write every dataset of ``tlhelpers.data.torchvision_sets.DATASETS`` with small defaults."""
    write_pets(root)
    write_mnist(root)
    write_usps(root)
    write_svhn(root)
    write_omniglot(root)
    write_mnistm(root)


def write_laptop_datasets(root: str | Path) -> dict[str, dict[str, int]]:
    """Write stand-ins of the datasets the laptop budget reads, at their real sizes and formats.

    Oxford-IIIT Pet (37 breeds, 30 trainval + 15 test images each, 500x375 JPEG), MNIST (60,000 /
    10,000), MNIST-M (59,001 / 9,001 PNGs) and Omniglot (964 / 659 characters of 20 drawings in the
    real alphabets): the same number of files, of the same size, as the real downloads, so a run
    on them costs what a run on the real files costs (the pixels, and so the accuracies, differ).

    Args:
        root: the data root.

    Returns:
        Images written per dataset and split (:data:`LAPTOP_SIZES`).
    """
    write_pets(root, breeds=PETS_BREEDS, n_trainval=30, n_test=15, size=(500, 375))
    sizes = LAPTOP_SIZES
    write_mnist(root, n_train=sizes["mnist"]["train"], n_test=sizes["mnist"]["test"], fast=True)
    write_mnistm(root, n_train=sizes["mnistm"]["train"], n_test=sizes["mnistm"]["test"], fast=True)
    write_omniglot(root, alphabets=OMNIGLOT_ALPHABETS)
    return {name: dict(split) for name, split in sizes.items()}


def write_weights(
    torch_home: str | Path, archs: Sequence[str] = ("resnet50", "vgg16", "resnet18")
) -> list[Path]:
    """Save randomly initialised weights where torchvision looks for each arch's DEFAULT weights.

    The file is ``<torch_home>/hub/checkpoints/<last part of weights.url>``, the path torch.hub reads
    (without a hash check) before it would download. Existing files are kept. The global random
    state is left untouched.

    Args:
        torch_home: the folder ``TORCH_HOME`` will point at.
        archs: torchvision model names.

    Returns:
        The paths of the weight files, in ``archs`` order.
    """
    import torch
    from torchvision.models import get_model, get_model_weights

    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for arch in archs:
        path = folder / Path(urlparse(get_model_weights(arch).DEFAULT.url).path).name
        if not path.is_file():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                state = get_model(arch, weights=None).state_dict()
            torch.save(state, path)
        paths.append(path)
    return paths
