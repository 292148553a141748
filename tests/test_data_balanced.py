"""Tests for tlhelpers.data.balanced."""

from __future__ import annotations

import pytest
import torch

from tlhelpers.data.balanced import balanced_indices


def test_breed_by_breed_order_gives_every_class():
    labels = torch.arange(37).repeat_interleave(20)  # stored class by class, like Pets' test list
    idx = balanced_indices(labels, 37 * 2, seed=0)
    assert torch.bincount(labels[idx], minlength=37).tolist() == [2] * 37
    assert len(set(idx.tolist())) == len(idx)
    assert labels[:12].unique().numel() == 1  # what "the first 12" would have shown


def test_uneven_classes_fill_up_from_the_others_without_repeats():
    labels = torch.tensor([0] * 10 + [1] * 2 + [2] * 10)
    idx = balanced_indices(labels, 12, seed=1)
    counts = torch.bincount(labels[idx], minlength=3).tolist()
    assert counts[1] == 2 and counts[0] + counts[2] == 10 and abs(counts[0] - counts[2]) <= 1
    assert len(set(idx.tolist())) == 12
    assert sorted(balanced_indices(labels, 100).tolist()) == list(range(22))  # capped at all items


def test_seeded_and_random_order():
    labels = torch.arange(5).repeat(10)
    a, b = balanced_indices(labels, 10, seed=3), balanced_indices(labels, 10, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, balanced_indices(labels, 10, seed=4))
    # classes do not come out in a fixed cycle 0, 1, 2, ...
    assert any(not torch.equal(labels[balanced_indices(labels, 5, seed=s)], torch.arange(5)) for s in range(5))


@pytest.mark.parametrize("labels, n, match", [(torch.zeros(2, 2), 3, "shape"), (torch.zeros(3), 0, "at least 1")])
def test_bad_input(labels, n, match):
    with pytest.raises(ValueError, match=match):
        balanced_indices(labels, n)
