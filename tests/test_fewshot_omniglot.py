from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlhelpers.data.omniglot import (
    load_character_folder,
    omniglot_protocol,
    rotate_classes,
    split_classes,
)
from tlhelpers.data.tensor_dataset import ImageTensorDataset


def _tiny(n_classes: int = 6, per_class: int = 3) -> ImageTensorDataset:
    images = torch.randint(0, 256, (n_classes * per_class, 1, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageTensorDataset(images, torch.arange(n_classes).repeat_interleave(per_class), [f"a/c{i}" for i in range(n_classes)])


def test_rotations_are_new_classes_with_rotated_images() -> None:
    ds = _tiny()
    rot = rotate_classes(ds)
    assert rot.num_classes == 24 and len(rot) == 4 * len(ds)
    first = (rot.labels == 6 + 2).nonzero().flatten()[0]  # class 2 at 90 degrees
    torch.testing.assert_close(rot.images[first], torch.rot90(ds.images[(ds.labels == 2).nonzero()[0, 0]], 1, (1, 2)))
    assert rot.classes[8] == "a/c2@90"
    with pytest.raises(ValueError, match="multiples of 90"):
        rotate_classes(ds, (0, 45))


def test_class_split_is_disjoint_and_protocol_rotates_both_sides() -> None:
    ds = _tiny()
    train, test = split_classes(ds, 4, seed=0)
    assert set(train.classes).isdisjoint(test.classes) and len(train.classes) == 4 and len(test.classes) == 2
    assert int(train.labels.max()) == 3 and len(train) + len(test) == len(ds)
    tr, te = omniglot_protocol(ds, n_train_classes=4)
    assert tr.num_classes == 16 and te.num_classes == 8
    assert omniglot_protocol(ds)[0].num_classes == 4 * round(6 * 1200 / 1623)
    with pytest.raises(ValueError, match="n_train_classes"):
        split_classes(ds, 6)


def test_character_folder_is_read_and_cached(tmp_path: Path) -> None:
    for a in ("Alpha", "Beta"):
        for c in ("character01", "character02"):
            folder = tmp_path / "tree" / a / c
            folder.mkdir(parents=True)
            for k in range(2):
                Image.fromarray(np.full((20, 20), 255 if k else 0, dtype=np.uint8)).save(folder / f"{k}.png")
    cache = tmp_path / "cache.pt"
    ds = load_character_folder(tmp_path / "tree", image_size=10, cache_file=cache, progress=False)
    assert ds.images.shape == (8, 1, 10, 10) and ds.classes[0] == "Alpha/character01"
    assert cache.exists()
    again = load_character_folder(tmp_path / "nowhere", image_size=10, cache_file=cache, progress=False)
    assert torch.equal(again.images, ds.images)


def test_packaged_subset_is_declared_licensed_and_loaded_offline(tmp_path: Path) -> None:
    import re
    import zipfile

    from tlhelpers.data.omniglot import SMALL_CHARACTERS, load_omniglot_small, small_archive

    archive = small_archive()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()  # tomllib needs 3.11
    section = re.search(r"^\[tool\.setuptools\.package-data\]\n(.*?)(?:^\[|\Z)", pyproject, re.M | re.S)
    assert section is not None
    for name in ("assets/omniglot_small1.zip", "assets/LICENSE", "assets/README.md"):
        assert f'"{name}"' in section.group(1), name
    assert "MIT" in (archive.parent / "LICENSE").read_text() and "Lake" in (archive.parent / "README.md").read_text()

    ds = load_omniglot_small(root=tmp_path, progress=False)
    assert ds.images.shape == (20 * SMALL_CHARACTERS, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.num_classes == SMALL_CHARACTERS and torch.bincount(ds.labels).eq(20).all()
    assert len({c.split("/")[0] for c in ds.classes}) == 5
    # independent decode of the first drawing straight from the zip
    with zipfile.ZipFile(archive) as zf:
        first = sorted(n for n in zf.namelist() if n.endswith(".png"))[0]
        with zf.open(first) as f:
            ref = np.array(Image.open(f).convert("L").resize((28, 28), Image.Resampling.LANCZOS))
    assert ds.classes[0] in first and torch.equal(ds.images[0, 0], torch.from_numpy(ref))
    caches = list((tmp_path / "cache").glob("omniglot_small1_28px_*.pt"))
    assert len(caches) == 1 and not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]  # temp tree removed
    assert torch.equal(load_omniglot_small(root=tmp_path).images, ds.images)  # from the cache


def test_held_out_characters_stay_out_with_all_their_rotations() -> None:
    ds = _tiny(n_classes=10, per_class=2)
    train, test = omniglot_protocol(ds, n_train_classes=7, seed=3)
    base = lambda names: {n.split("@")[0] for n in names}  # noqa: E731
    assert base(train.classes).isdisjoint(base(test.classes)) and len(base(test.classes)) == 3
    assert test.num_classes == 12 and {n.split("@")[1] for n in test.classes} == {"0", "90", "180", "270"}


def test_corrupt_cache_says_how_to_rebuild_it(tmp_path: Path) -> None:
    from tlhelpers.core.checkpoint import CheckpointError

    cache = tmp_path / "omniglot.pt"
    cache.write_bytes(b"\x00" * 64)  # a half-written download or copy
    with pytest.raises(CheckpointError, match="Omniglot cache .* truncated or corrupt.*delete it and call again") as info:
        load_character_folder(tmp_path / "no-tree-needed", cache_file=cache, progress=False)
    assert "resume=False" not in str(info.value)  # load_character_folder has no such argument
