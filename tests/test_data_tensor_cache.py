from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tlhelpers.data.tensor_cache import to_tensor_dataset


class CountingImages:
    """A tiny PIL-yielding dataset that counts how many items were decoded."""

    def __init__(self, n: int = 6, mode: str = "RGB") -> None:
        rng = np.random.default_rng(0)
        self.arrays = [rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i in range(n)]
        self.mode = mode
        self.classes = ["a", "b"]
        self.calls = 0

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int):
        self.calls += 1
        return Image.fromarray(self.arrays[i]).convert(self.mode), i % 2


def test_resize_and_center_crop_match_pil_reference():
    ds = CountingImages(n=2)
    out = to_tensor_dataset(ds, image_size=10, progress=False)
    assert out.images.shape == (2, 3, 10, 10) and out.images.dtype == torch.uint8
    assert out.labels.tolist() == [0, 1] and out.classes == ["a", "b"]
    # independent reference for item 0 (20x30): shorter side 20 -> 10, width 30 -> 15, crop 2..12
    ref = Image.fromarray(ds.arrays[0]).resize((15, 10), Image.Resampling.BILINEAR)
    ref = np.asarray(ref)[:, 2:12]
    got = out.images[0].permute(1, 2, 0).numpy()
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_grey_images_become_rgb():
    out = to_tensor_dataset(CountingImages(n=2, mode="L"), image_size=8, progress=False)
    assert out.images.shape == (2, 3, 8, 8)
    assert torch.equal(out.images[:, 0], out.images[:, 1])


def test_cache_hit_does_not_decode(tmp_path):
    cache = tmp_path / "cache" / "pets_16.pt"
    ds = CountingImages()
    first = to_tensor_dataset(ds, 16, cache_file=cache, progress=False)
    assert ds.calls == 6 and cache.is_file()
    assert not list(cache.parent.glob("*.tmp"))  # no temp files left behind
    again = CountingImages()
    second = to_tensor_dataset(again, 16, cache_file=cache, progress=False)
    assert again.calls == 0
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_cache_miss_on_changed_key(tmp_path):
    cache = tmp_path / "c.pt"
    to_tensor_dataset(CountingImages(), 16, cache_file=cache, progress=False)
    other_size = CountingImages()
    assert to_tensor_dataset(other_size, 12, cache_file=cache, progress=False).image_shape == (3, 12, 12)
    assert other_size.calls == 6
    other_classes = CountingImages()
    out = to_tensor_dataset(other_classes, 12, cache_file=cache, progress=False, classes=["x", "y"])
    assert other_classes.calls == 6 and out.classes == ["x", "y"]
    shorter = CountingImages(n=4)
    assert len(to_tensor_dataset(shorter, 12, cache_file=cache, progress=False)) == 4
    assert shorter.calls == 4


def test_truncated_cache_is_recomputed_with_warning(tmp_path):
    cache = tmp_path / "c.pt"
    to_tensor_dataset(CountingImages(), 16, cache_file=cache, progress=False)
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])
    ds = CountingImages()
    with pytest.warns(UserWarning, match="recomputing"):
        out = to_tensor_dataset(ds, 16, cache_file=cache, progress=False)
    assert ds.calls == 6 and len(out) == 6
    # and the file was rewritten whole
    again = CountingImages()
    to_tensor_dataset(again, 16, cache_file=cache, progress=False)
    assert again.calls == 0


def test_rejects_tensor_items():
    class Tensors:
        classes = ["a"]

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.zeros(3, 4, 4), 0

    with pytest.raises(ValueError, match="PIL"):
        to_tensor_dataset(Tensors(), 4, progress=False)


def test_image_folder_cache_is_keyed_on_its_files_and_labels(tmp_path):
    from torchvision.datasets import ImageFolder

    rng = np.random.default_rng(1)
    for i, cls in enumerate(["cat", "cat", "cat", "dog", "dog"]):
        (tmp_path / "img" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(tmp_path / "img" / cls / f"{i}.png")
    decoded: list[str] = []

    def folder():
        def loader(path):
            decoded.append(path)
            with Image.open(path) as image:
                return image.convert("RGB")

        return ImageFolder(tmp_path / "img", loader=loader)

    cache = tmp_path / "cache.pt"
    first = to_tensor_dataset(folder(), 8, cache_file=cache, progress=False)
    assert first.labels.tolist() == [0, 0, 0, 1, 1] and len(decoded) == 5
    to_tensor_dataset(folder(), 8, cache_file=cache, progress=False)
    assert len(decoded) == 5  # unchanged folder: a cache hit
    (tmp_path / "img" / "cat" / "0.png").rename(tmp_path / "img" / "dog" / "0.png")  # same length and classes
    moved = to_tensor_dataset(folder(), 8, cache_file=cache, progress=False)
    assert len(decoded) == 10, "a file moved to another class folder must not reuse the cached labels"
    assert moved.labels.tolist() == ImageFolder(tmp_path / "img").targets == [0, 0, 1, 1, 1]
    assert torch.equal(moved.images[2], first.images[0])  # 0.png is now the first dog
