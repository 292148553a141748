from __future__ import annotations

import pytest
import torch

from tlhelpers.data.tensor_dataset import ImageTensorDataset


def _toy(n_per_class: int = 10, num_classes: int = 3) -> ImageTensorDataset:
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 5)
    return ImageTensorDataset(images.contiguous(), labels, [f"c{i}" for i in range(num_classes)])


def test_getitem_scales_to_unit_float():
    ds = _toy()
    x, y = ds[7]
    assert x.dtype == torch.float32 and x.shape == (3, 4, 5)
    assert torch.allclose(x, torch.full((3, 4, 5), 7 / 255))
    assert isinstance(y, int) and y == 0
    assert len(ds) == 30 and ds.num_classes == 3 and ds.image_shape == (3, 4, 5)


def test_with_transform_shares_tensors():
    ds = _toy()
    other = ds.with_transform(lambda img: img.float() * 2)
    assert other.images is ds.images and other.labels is ds.labels
    assert other[3][0][0, 0, 0].item() == 6.0
    assert ds.transform is None


def test_subset_and_mask():
    ds = _toy()
    sub = ds.subset([0, 29])
    assert sub.labels.tolist() == [0, 2] and sub.classes == ds.classes
    mask = ds.labels == 1
    assert len(ds.subset(mask)) == 10
    with pytest.raises(ValueError, match="out of range"):
        ds.subset([30])


def test_split_is_stratified_disjoint_and_deterministic():
    ds = _toy(n_per_class=10)
    a, b = ds.split(0.7, seed=1)
    assert len(a) == 21 and len(b) == 9
    assert torch.bincount(a.labels).tolist() == [7, 7, 7]
    ids_a = set(a.images[:, 0, 0, 0].tolist())
    ids_b = set(b.images[:, 0, 0, 0].tolist())
    assert not ids_a & ids_b and len(ids_a | ids_b) == 30
    a2, _ = ds.split(0.7, seed=1)
    assert torch.equal(a.images, a2.images)
    a3, _ = ds.split(0.7, seed=2)
    assert not torch.equal(a.images, a3.images)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        _toy().split(fraction)


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), "uint8"),
        (torch.zeros(2, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), r"\(N, C, H, W\)"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 1]), "labels"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), "classes"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0.0, 1.0]), "int64"),
    ],
)
def test_validation_errors(images, labels, match):
    with pytest.raises(ValueError, match=match):
        ImageTensorDataset(images, labels, ["a", "b"])
