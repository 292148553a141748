"""Data previews: the normalisation is undone exactly, tiles are titled with class names, augmented
copies differ for a random transform and not for a deterministic one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2
from torchvision.transforms._presets import ImageClassification

from tlhelpers.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, image_transforms, plain_preset
from tlhelpers.data.preview import denormalize, find_normalizations, show_augmentations, show_batch
from tlhelpers.data.tensor_dataset import ImageTensorDataset

CLASSES = [f"class {c}" for c in "abcdef"]


def _dataset(channels: int = 3, transform=None, n: int = 6, size: int = 8) -> ImageTensorDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    return ImageTensorDataset(images, torch.arange(n) % len(CLASSES), CLASSES, transform)


def _normalise(mean, std):
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def _tiles(fig: Figure) -> list[tuple[str, np.ndarray]]:
    return [(ax.get_title(), np.asarray(ax.images[0].get_array())) for ax in fig.axes if ax.images]


def _original(ds: ImageTensorDataset, i: int) -> np.ndarray:
    image = ds.images[i].float() / 255
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def _check_exact(fig: Figure, ds: ImageTensorDataset, count: int) -> None:
    """Every tile is one of the stored images, recovered exactly, titled with that image's class name."""
    tiles = _tiles(fig)
    assert len(tiles) == count
    for title, shown in tiles:
        matches = [i for i in range(len(ds)) if shown.shape == _original(ds, i).shape
                   and np.allclose(shown, _original(ds, i), atol=1e-6)]
        assert len(matches) == 1, title
        assert title == CLASSES[int(ds.labels[matches[0]])]


def test_imagenet_normalisation_in_the_dataset_transform_is_undone_exactly():
    ds = _dataset(transform=_normalise(IMAGENET_MEAN, IMAGENET_STD))
    x, _ = ds[0]
    assert x.min() < -0.5  # the items really are normalised: drawn as they are they would be clipped
    fig = show_batch(ds, n=4)
    assert isinstance(fig, Figure)
    _check_exact(fig, ds, 4)


def test_a_weights_preset_is_found_and_undone():
    ds = _dataset(transform=plain_preset(8))
    assert find_normalizations(ds.transform) == [(IMAGENET_MEAN, IMAGENET_STD)]
    _check_exact(show_batch(ds, n=6), ds, 6)


def test_one_channel_images_and_explicit_mean_std():
    ds = _dataset(channels=1, transform=_normalise([0.5], [0.25]))
    fig = show_batch(ds, n=3, mean=[0.5], std=[0.25], title="digits")
    _check_exact(fig, ds, 3)
    assert fig.texts and fig.texts[0].get_text() == "digits"  # the suptitle
    assert all(shown.ndim == 2 for _, shown in _tiles(fig))  # drawn grey, not as a colour image


def test_a_loader_over_a_subset_finds_transform_and_classes_through_the_wrappers():
    ds = _dataset(transform=_normalise(IMAGENET_MEAN, IMAGENET_STD))
    loader = DataLoader(Subset(ds, [1, 2, 3, 4]), batch_size=2)
    fig = show_batch(loader, n=3)
    tiles = _tiles(fig)
    assert [t for t, _ in tiles] == [CLASSES[i] for i in (1, 2, 3)]  # the loader's first items, in order
    for (_, shown), i in zip(tiles, (1, 2, 3)):
        np.testing.assert_allclose(shown, _original(ds, i), atol=1e-6)


def test_pil_images_and_given_class_names():
    ds = _dataset(n=3)
    items = [(Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()), int(ds.labels[i])) for i in range(3)]
    names = ["zero", "one", "two"]
    tiles = _tiles(show_batch(items, n=3, class_names=names))
    assert sorted(t for t, _ in tiles) == sorted(names)
    for title, shown in tiles:
        np.testing.assert_allclose(shown, _original(ds, names.index(title)), atol=1e-6)


def test_denormalize_inverts_normalize():
    x = torch.rand(2, 3, 5, 5)
    normalised = v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))(x)
    torch.testing.assert_close(denormalize(normalised, IMAGENET_MEAN, IMAGENET_STD), x)
    with pytest.raises(ValueError, match="channels"):
        denormalize(x, [0.5, 0.5], [0.5, 0.5])


def test_show_batch_leaves_the_global_random_state_alone():
    ds = _dataset(transform=v2.Compose([v2.RandomHorizontalFlip(), _normalise(IMAGENET_MEAN, IMAGENET_STD)]))
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first = _tiles(show_batch(ds, n=4, seed=3))
    assert torch.equal(torch.rand(3), expected)
    again = _tiles(show_batch(ds, n=4, seed=3))  # the same seed shows the same items, flipped the same way
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again))


def test_augmented_copies_differ_for_a_random_transform():
    ds = _dataset(size=16)
    train_tf = image_transforms(plain_preset(12), train=True)
    fig = show_augmentations(ds, 2, train_tf, n=5)
    tiles = _tiles(fig)
    assert [t for t, _ in tiles] == ["original"] + [f"augmented {i}" for i in range(1, 6)]
    np.testing.assert_allclose(tiles[0][1], _original(ds, 2), atol=1e-6)  # the stored image, untouched
    copies = [shown for _, shown in tiles[1:]]
    assert all(c.shape == (12, 12, 3) for c in copies)
    assert len({c.tobytes() for c in copies}) == 5
    assert CLASSES[2] in fig.texts[0].get_text()


def test_augmented_copies_are_identical_for_a_deterministic_transform():
    ds = _dataset(size=16)
    preset = ImageClassification(crop_size=12, resize_size=16)  # resize 16 (a no-op here), centre-crop 12
    eval_tf = image_transforms(preset, train=False)
    copies = [shown for _, shown in _tiles(show_augmentations(ds, 0, eval_tf, n=3))[1:]]
    assert len(copies) == 3 and all(np.array_equal(c, copies[0]) for c in copies)
    centre = _original(ds, 0)[2:14, 2:14]  # the preset's centre crop, de-normalised back to the stored pixels
    np.testing.assert_allclose(copies[0], centre, atol=1e-5)


def test_n_below_one_and_bad_arguments_raise():
    ds = _dataset()
    with pytest.raises(ValueError, match="n=0"):
        show_batch(ds, n=0)
    with pytest.raises(ValueError, match="n=0"):
        show_augmentations(ds, 0, lambda x: x, n=0)
    with pytest.raises(ValueError, match="out of range"):
        show_augmentations(ds, 6, lambda x: x)
    with pytest.raises(ValueError, match="both mean and std"):
        show_batch(ds, mean=[0.5])
    with pytest.raises(ValueError, match="empty"):
        show_batch(ds.subset([]))
