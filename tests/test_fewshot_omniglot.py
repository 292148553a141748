from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlhelpers.data.tensor_dataset import ImageTensorDataset
from tlhelpers.fewshot.omniglot import (
    load_character_folder,
    omniglot_protocol,
    rotate_classes,
    split_classes,
)


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
