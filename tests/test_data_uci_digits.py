from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tlhelpers.course.uci_digits import (
    TEST_FRACTION,
    load_uci_digits,
    make_uci_digits,
    make_uci_digits_m,
    split_indices,
)


def test_raw_digits_match_scikit_learn():
    # independent reference: scikit-learn's own loader
    from sklearn.datasets import load_digits

    images, labels = load_uci_digits()
    ref = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert np.array_equal(images, ref.images.astype(np.uint8)) and np.array_equal(labels, ref.target)


def test_split_is_fixed_stratified_and_disjoint():
    train, test = split_indices("train"), split_indices("test")
    assert len(train) + len(test) == 1797 and not set(train) & set(test)
    _, labels = load_uci_digits()
    counts, test_counts = np.bincount(labels, minlength=10), np.bincount(labels[test], minlength=10)
    assert np.all(np.abs(test_counts - TEST_FRACTION * counts) <= 1)
    with pytest.raises(ValueError, match="split"):
        split_indices("val")


def test_test_images_never_appear_in_training_subsets():
    test_pixels = {bytes(x.numpy().tobytes()) for x in make_uci_digits("test").images}
    assert len(test_pixels) > 700  # (almost) all test digits differ from each other
    for seed in range(3):
        train = make_uci_digits("train", n=500, seed=seed)
        assert not test_pixels & {bytes(x.numpy().tobytes()) for x in train.images}


def test_uci_digits_format_labels_and_classes():
    ds = make_uci_digits("test")
    assert ds.images.shape == (719, 1, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.classes == [str(d) for d in range(10)] and ds.labels.dtype == torch.int64
    images, labels = load_uci_digits()
    rows = split_indices("test")
    assert torch.equal(ds.labels, torch.from_numpy(labels[rows]))
    assert torch.equal(ds.images[:, 0], torch.from_numpy(np.round(images[rows] * (255 / 16)).astype(np.uint8)))
    sub = make_uci_digits("train", n=100, seed=1)
    assert len(sub) == 100 and torch.equal(sub.images, make_uci_digits("train", n=100, seed=1).images)
    assert not torch.equal(sub.images, make_uci_digits("train", n=100, seed=2).images)
    with pytest.raises(ValueError, match="n=0"):
        make_uci_digits("train", n=0)


def test_uci_digits_m_blends_the_same_digits_on_photos():
    plain = make_uci_digits("test", n=40, seed=0)
    blended = make_uci_digits_m("test", n=40, image_size=32, seed=0)
    assert blended.images.shape == (40, 3, 32, 32) and torch.equal(blended.labels, plain.labels)
    assert not torch.equal(blended.images[:, 0], blended.images[:, 1])  # colour
    up = F.interpolate(plain.images.float(), size=32, mode="bilinear", antialias=True, align_corners=False)
    digit = up.round().clamp(0, 255)
    # |photo - digit| = blended, so photo = digit +- blended: a valid 0..255 value exists per pixel
    lo, hi = digit - blended.images.float(), digit + blended.images.float()
    assert bool(((lo >= 0) | (hi <= 255)).all())
    assert torch.equal(blended.images, make_uci_digits_m("test", n=40, image_size=32, seed=0).images)
    with pytest.raises(ValueError, match="image_size"):
        make_uci_digits_m("test", image_size=4)
